// NIfTI volumes (.nii, .nii.gz; NIfTI-1 and NIfTI-2) through Debian's niftilib, for predicting and
// scoring whole MRI volumes slice by slice with the 2-D model.
//
// Orientation, defined once: voxel (i, j, k) of a volume is pixel (row i, column j) of slice k.
// The first two voxel axes are the slice's rows and columns, so a volume built in numpy as
// np.stack(tiff_slices, axis=-1) (shape rows x columns x slices) reads back as those slices;
// the affine is never applied (nothing is reoriented or resampled in space), and masks are
// written on the input's own voxel grid with its header and affine.
//
// A case is one 3-D file (x, y, slice), one 4-D file (x, y, slice, channel), or nnU-Net's one
// file per channel (case_0000.nii.gz, case_0001.nii.gz, ... side by side, each 3-D, same grid).
// Its channels become a slice's three 8-bit channels as a TIFF slice's do: one channel is
// repeated in all three (grey), three are taken in order (pre-contrast, FLAIR, post-contrast).
// Intensities: uint8 as stored; uint16 scaled as a 16-bit TIFF, (255 v + 32767) / 65535; any
// other type (or stored with scl_slope/scl_inter other than the identity) mapped per channel of
// the volume from [min, max] to [0, 255], rounded (a constant channel is 0). docs/data.md.
//
// Every problem is one unet::Error "<path>: <reason>"; niftilib prints nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace unet {

struct NiftiVolume {
  std::string name;                      // the case: the file name without .nii[.gz] and the _0000 suffix
  std::vector<std::string> files;        // one 4-D file, or one file per channel; files[0] is the header kept
  int height = 0, width = 0, depth = 0;  // voxel axes i, j, k
  int channels = 0;                      // as stored (1 or 3)
  double spacing[3] = {1, 1, 1};         // mm along i, j, k (the header's pixdim; unknown units as mm)
  std::vector<uint8_t> slices;           // (depth, height, width, 3)
};

bool is_nifti_name(const std::string& path);  // ends in .nii or .nii.gz
// The case name of a NIfTI file name: "case_0000.nii.gz" and "case.nii" give "case".
std::string nifti_case_name(const std::string& path);

// Reads a case from its file (for the one-file-per-channel form, the _0000 file).
NiftiVolume read_nifti_volume(const std::string& path);
// The cases of a folder's NIfTI files, by name (for nnU-Net's form, one per _0000 file).
std::vector<std::string> find_nifti_cases(const std::string& folder);
// A label volume on `image`'s grid: (depth, height, width), 1 where the voxel is non-zero.
std::vector<uint8_t> read_nifti_mask(const std::string& path, const NiftiVolume& image);

// Writes a (depth, height, width) volume on the grid of `image` (its header, affine and spatial
// shape; one channel), atomically: the mask as uint8 0/1, or probabilities as float32.
void write_nifti_mask(const std::string& path, const NiftiVolume& image, const std::vector<uint8_t>& mask);
void write_nifti_probabilities(const std::string& path, const NiftiVolume& image,
                               const std::vector<float>& probability);

// Appends a case to `data` as one volume, its slices resized to size x size as load_dataset
// resizes (bilinear for images, nearest for masks). `mask` is (depth, height, width) or empty
// (no ground truth: an all-zero mask).
void append_volume(Dataset& data, const NiftiVolume& volume, const std::vector<uint8_t>& mask, int size);

// Probabilities (slices, from_height, from_width) resized bilinearly with pixel centres aligned
// (PyTorch's align_corners=False, edges replicated): how predictions return to a volume's grid.
std::vector<float> resize_probabilities(const std::vector<float>& probability, int slices, int from_height,
                                        int from_width, int to_height, int to_width);

}  // namespace unet
