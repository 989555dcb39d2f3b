#include "tools/volumes.h"

#include <filesystem>

#include "data/resident.h"
#include "engine/safetensors.h"
#include "models/checkpoint.h"
#include "models/evaluator.h"
#include "tools/common.h"

namespace unet {

namespace fs = std::filesystem;

Ensemble::Ensemble(const std::vector<std::string>& paths, Device& device, Precision precision) {
  if (paths.empty()) throw Error("no weights given (--weights FILE)");
  for (const std::string& path : paths) {
    check_readable_file(path, "weights");
    const SafeTensors file = SafeTensors::load(path);
    auto model = std::make_unique<UNet>(read_config(file), device, precision);
    load_weights(file, *model);
    if (!models_.empty() && model->config().in_channels != config().in_channels) {
      throw Error(path + ": its model takes " + std::to_string(model->config().in_channels) + " input channels but " +
                  paths.front() + "'s takes " + std::to_string(config().in_channels) +
                  " (an ensemble's weights must agree on their preprocessing)");
    }
    const std::optional<Preprocessing> recorded = read_preprocessing(file);
    if (models_.empty()) {
      recorded_ = recorded;
    } else if (recorded && recorded_ &&
               (recorded->image_size != recorded_->image_size || recorded->zscore != recorded_->zscore)) {
      throw Error(path + ": trained on " + std::to_string(recorded->image_size) + "x" +
                  std::to_string(recorded->image_size) + (recorded->zscore ? " z-scored" : "") + " slices but " +
                  paths.front() + " on " + std::to_string(recorded_->image_size) + "x" +
                  std::to_string(recorded_->image_size) + (recorded_->zscore ? " z-scored" : "") +
                  " (an ensemble's weights must agree on their preprocessing)");
    }
    models_.push_back(std::move(model));
  }
}

std::vector<const UNet*> Ensemble::models() const {
  std::vector<const UNet*> models;
  for (const auto& model : models_) models.push_back(model.get());
  return models;
}

std::string nifti_images_folder(const std::string& dir) {
  std::error_code error;
  for (const char* split : {"Ts", "Tr"}) {
    const fs::path images = fs::path(dir) / (std::string("images") + split);
    if (fs::is_directory(images, error) && fs::is_directory(fs::path(dir) / (std::string("labels") + split), error)) {
      return images.string();
    }
  }
  return "";
}

std::string nifti_label_of(const std::string& images_folder, const std::string& case_name) {
  const fs::path images(images_folder);
  const std::string split = images.filename().string().substr(6);  // "Ts" or "Tr"
  const fs::path labels = images.parent_path() / ("labels" + split);
  std::error_code error;
  for (const char* extension : {".nii.gz", ".nii"}) {
    const fs::path label = labels / (case_name + extension);
    if (fs::exists(label, error)) return label.string();
  }
  throw Error((labels / (case_name + ".nii.gz")).string() + ": no such file (the label of case " + case_name + ")");
}

std::vector<float> predict_volume(const Ensemble& ensemble, Device& device, const NiftiVolume& volume,
                                  const VolumeSettings& settings) {
  Dataset data;
  data.root = volume.files[0];
  append_volume(data, volume, {}, settings.image_size);
  ResidentDataset resident(device, data, settings.zscore);
  Evaluator evaluator(ensemble.models(), resident, data, settings.batch, settings.mirror);
  std::vector<int32_t> slices(static_cast<size_t>(data.slices()));
  for (int32_t s = 0; s < static_cast<int32_t>(slices.size()); ++s) slices[s] = s;
  return resize_probabilities(evaluator.probabilities(slices), volume.depth, settings.image_size, settings.image_size,
                              volume.height, volume.width);
}

}  // namespace unet
