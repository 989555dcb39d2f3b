// Phantom data: a synthetic dataset in the kaggle_3m layout, written as real uncompressed TIFFs
// through libtiff, so everything downstream (discovery, decoding, the split, training) runs on it
// exactly as on the LGG data. It is the demo's default data and what tests use where they must
// not depend on the real subset.
//
// Each patient is a stack of axial slices through an ellipsoidal "brain": an ellipse whose size
// follows the slice's height in the stack, textured by a few patient-specific waves, with a
// brighter rim, two darker ventricles and per-pixel noise, in three channels of different
// contrast (pre-contrast, FLAIR, post-contrast) and a per-patient gain. Each patient has one
// ellipsoidal lesion spanning about a third of its slices, brighter in FLAIR than anything else;
// the masks are the lesion's pixels (255), and everything is a function of the seed (Philox,
// RandomStream::phantom).
#pragma once

#include <cstdint>
#include <string>

namespace unet {

struct PhantomOptions {
  int patients = 4;
  int slices = 20;  // per patient
  int size = 256;   // slices are size x size
  uint64_t seed = 1;
};

struct PhantomSummary {
  int slices = 0;
  int tumour_slices = 0;
};

// Writes <root>/PHANTOM_P<nnn>/PHANTOM_P<nnn>_<k>.tif and _mask.tif for each patient and slice.
// `root` must not exist or be an empty folder: nothing is ever overwritten.
PhantomSummary write_phantom(const std::string& root, const PhantomOptions& options);

}  // namespace unet
