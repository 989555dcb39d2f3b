// Datasets on disk: finding the slices of a folder in either layout, and loading them into memory.
//
//   kaggle_3m     one folder per patient, <case>_<n>.tif with its mask <case>_<n>_mask.tif; the
//                 slices of a patient are one volume, ordered by n numerically (2 before 10). The
//                 root may also be a folder that holds kaggle_3m/ (as the Kaggle download does).
//   images/masks  images/ and masks/ side by side, an image and its mask sharing a file stem
//                 (a.png and a.tif match); a patient id from each stem by a regular expression
//                 (its first group), or else each image is its own patient. Slices of a patient
//                 are ordered by name, numbers numerically.
//
// Image files are .tif, .tiff, .png, .jpg, .jpeg and .bmp (any case); other files (README.md,
// data.csv), hidden files and folders are ignored. Every problem (an image without its mask or
// the reverse, a mask whose size differs from its image, an unreadable, truncated, empty or
// non-image file, an image name that is not a regular file (a FIFO, never opened), an empty folder,
// a path that does not exist) is one unet::Error naming the file and the reason, unless skip_bad
// is set: the slice is then left out and listed in `skipped`.
// Nothing is ever written under the root.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace unet {

enum class Layout { kaggle_3m, images_masks };
const char* layout_name(Layout layout);  // "kaggle_3m", "images/masks"

struct SliceFiles {
  std::string image, mask;  // paths
  std::string patient;
};

struct DatasetFiles {
  std::string root;  // the folder the layout was found in
  Layout layout = Layout::kaggle_3m;
  std::vector<SliceFiles> slices;    // by patient name, then slice order
  std::vector<std::string> skipped;  // "<path>: <reason>", with skip_bad
};

struct FindOptions {
  std::string patient_pattern;  // images/masks: regular expression; its first group is the patient id
  bool skip_bad = false;
};

DatasetFiles find_slices(const std::string& root, const FindOptions& options = {});

struct LoadOptions {
  int image_size = 256;  // slices are resized to image_size x image_size
  bool skip_bad = false;
};

// Every slice in memory, resized: what is uploaded to a device once (data/resident.h).
struct Dataset {
  std::string root;
  Layout layout = Layout::kaggle_3m;
  int height = 0, width = 0;
  std::vector<uint8_t> images;       // (slices, height, width, 3): pre-contrast, FLAIR, post-contrast
  std::vector<uint8_t> masks;        // (slices, height, width), 0 or 1
  std::vector<int32_t> volume;       // (slices) index into `patients`: one volume per patient
  std::vector<std::string> patients;  // (volumes) in name order, numbers numerically
  std::vector<std::string> files;    // (slices) each slice's image path
  std::vector<uint8_t> tumour;       // (slices) 1 if its mask has a tumour pixel
  std::vector<std::pair<int, int>> file_sizes;  // (slices) width and height as stored, before resizing
  std::vector<std::string> skipped;  // "<path>: <reason>", with skip_bad

  int64_t slices() const { return static_cast<int64_t>(volume.size()); }
};

Dataset load_dataset(const DatasetFiles& files, const LoadOptions& options = {});
Dataset load_dataset(const std::string& root, const FindOptions& find = {}, const LoadOptions& load = {});

// Per volume and channel, the mean and standard deviation of its intensities in [0, 1] over all
// its slices' pixels (population deviation; 1 where a channel is constant): the table the batch
// builder z-scores with (kernels/augment.h), as the dataset authors' reference normalises volumes.
struct ZScoreTable {
  std::vector<float> mean;    // (volumes, 3)
  std::vector<float> stddev;  // (volumes, 3)
};
ZScoreTable volume_zscore(const Dataset& data);

}  // namespace unet
