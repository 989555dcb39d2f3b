// What `unet predict` and `unet eval` share for ensembles and NIfTI volumes: several weights files
// loaded as one ensemble, and whole cases predicted slice by slice on their own voxel grid.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/nifti.h"
#include "engine/device.h"
#include "models/checkpoint.h"
#include "models/unet.h"

namespace unet {

// Weights files (`--weights`, repeated) on one device. They must agree on what their input is
// (its channels), else one unet::Error naming the first file that differs and how. Every model runs
// in `precision`, whatever precision its file records.
class Ensemble {
 public:
  Ensemble(const std::vector<std::string>& paths, Device& device, Precision precision);
  std::vector<const UNet*> models() const;
  const UNetConfig& config() const { return models_.front()->config(); }
  // The preprocessing the weights record (the same for every member, else the constructor refuses),
  // std::nullopt where the first file records none.
  const std::optional<Preprocessing>& recorded() const { return recorded_; }

 private:
  std::vector<std::unique_ptr<UNet>> models_;
  std::optional<Preprocessing> recorded_;
};

// nnU-Net's layout for scoring: DIR/imagesTs (or imagesTr) beside DIR/labelsTs (or labelsTr);
// returns the images folder, or "" where DIR is not laid out so.
std::string nifti_images_folder(const std::string& dir);
// The label of the case read from `image_path`: <labels folder>/<case>.nii.gz (or .nii).
std::string nifti_label_of(const std::string& images_folder, const std::string& case_name);

struct VolumeSettings {
  int image_size = 256;  // the model's: slices are resized to it and the probabilities back
  bool zscore = false;
  int batch = 8;
  bool mirror = false;  // --tta
};

// The mean probability of the ensemble for each voxel of `volume`: (depth, height, width).
std::vector<float> predict_volume(const Ensemble& ensemble, Device& device, const NiftiVolume& volume,
                                  const VolumeSettings& settings);

}  // namespace unet
