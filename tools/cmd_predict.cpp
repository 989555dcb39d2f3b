// unet predict: masks and overlay pictures for MRI slices, with or without ground truth.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "data/dataset.h"
#include "data/image.h"
#include "data/nifti.h"
#include "engine/paths.h"
#include "models/checkpoint.h"
#include "models/evaluator.h"
#include "models/overlay.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/data_options.h"
#include "tools/volumes.h"

namespace unet {

namespace {

namespace fs = std::filesystem;

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".tif" || ext == ".tiff" || ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

bool is_mask_name(const fs::path& path) {
  const std::string stem = path.stem().string();
  return stem.size() > 5 && stem.compare(stem.size() - 5, 5, "_mask") == 0;
}

// The mask beside an image, <stem>_mask.<any image extension>, or "".
std::string mask_beside(const fs::path& image) {
  for (const char* ext : {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".TIF", ".PNG"}) {
    const fs::path candidate = image.parent_path() / (image.stem().string() + "_mask" + ext);
    std::error_code error;
    if (fs::is_regular_file(candidate, error)) return candidate.string();
  }
  return "";
}

struct Inputs {
  Dataset data;
  std::vector<bool> truth;  // (slices) whether the slice has a ground-truth mask
};

// The slices to predict: a dataset folder (kaggle_3m, or images/ + masks/) with its masks, or
// image files (a file, or a folder's image files) with a <stem>_mask file beside them where there
// is one. A folder of images is one volume (one patient's slices, for --zscore).
Inputs gather(const std::string& input, int size) {
  std::error_code error;
  if (!fs::exists(input, error)) throw Error(input + ": no such file or folder");
  std::vector<fs::path> images;
  if (fs::is_directory(input, error)) {
    // Subfolders (patients, or images/ and masks/) make a dataset; a flat folder is loose images.
    for (const auto& entry : fs::directory_iterator(input, error)) {
      if (entry.is_directory() && entry.path().filename().string()[0] != '.') {
        Inputs inputs{load_dataset(input, {}, {size, false}), {}};
        inputs.truth.assign(static_cast<size_t>(inputs.data.slices()), true);
        return inputs;
      }
      if (entry.is_regular_file() && entry.path().filename().string()[0] != '.' && is_image_file(entry.path()) &&
          !is_mask_name(entry.path())) {
        images.push_back(entry.path());
      }
    }
    if (images.empty()) throw Error(input + ": no image files (.tif, .png, .jpg, .bmp) in this folder");
  } else {
    images.push_back(input);
  }
  std::sort(images.begin(), images.end());

  Inputs inputs;
  Dataset& data = inputs.data;
  data.root = input;
  data.patients.push_back(fs::path(input).filename().string());
  data.height = data.width = size;
  const int64_t plane = int64_t{size} * size;
  for (const fs::path& path : images) {
    const Image image = read_image(path.string());
    std::vector<uint8_t> rgb(static_cast<size_t>(image.height) * image.width * 3);
    slice_channels(image, rgb.data());
    rgb = resize_bilinear(rgb, image.height, image.width, 3, size, size);
    std::vector<uint8_t> mask(static_cast<size_t>(plane), 0);
    const std::string mask_path = mask_beside(path);
    inputs.truth.push_back(!mask_path.empty());
    if (!mask_path.empty()) {
      const Image mask_image = read_image(mask_path);
      if (mask_image.width != image.width || mask_image.height != image.height) {
        throw Error(mask_path + ": its size differs from its image's");
      }
      std::vector<uint8_t> stored(static_cast<size_t>(mask_image.height) * mask_image.width);
      mask_pixels(mask_image, stored.data());
      mask = resize_nearest(stored, mask_image.height, mask_image.width, 1, size, size);
    }
    data.images.insert(data.images.end(), rgb.begin(), rgb.end());
    data.tumour.push_back(std::any_of(mask.begin(), mask.end(), [](uint8_t m) { return m != 0; }));
    data.masks.insert(data.masks.end(), mask.begin(), mask.end());
    data.volume.push_back(0);
    data.files.push_back(path.string());
    data.file_sizes.emplace_back(image.width, image.height);
  }
  return inputs;
}

// NIfTI input: a .nii/.nii.gz file, or a folder holding some.
bool is_nifti_input(const std::string& input) {
  std::error_code error;
  if (!fs::is_directory(input, error)) return is_nifti_name(input);
  for (const auto& entry : fs::directory_iterator(input, error)) {
    if (entry.is_regular_file() && is_nifti_name(entry.path().string())) return true;
  }
  return false;
}

void create_output_folder(const std::string& out) {
  std::error_code error;
  fs::create_directories(out, error);
  if (error) throw Error(out + ": cannot create the folder (" + error.message() + ")");
  check_writable((fs::path(out) / "x").string());
}

// Each case's mask as <out>/<case>.nii.gz on its own grid (and its probabilities, if asked). Every
// case is read once first, so a bad one stops the command before anything is written.
int predict_volumes(const std::string& input, const std::string& out, const Ensemble& ensemble, Device& dev,
                    const VolumeSettings& settings, double threshold, bool probabilities) {
  std::error_code error;
  if (!fs::exists(input, error)) throw Error(input + ": no such file or folder");
  const std::vector<std::string> cases = fs::is_directory(input, error) ? find_nifti_cases(input)
                                                                        : std::vector<std::string>{input};
  for (const std::string& path : cases) read_nifti_volume(path);
  create_output_folder(out);
  auto target = [&](const std::string& name) { return (fs::path(out) / name).string(); };
  for (const std::string& path : cases) {
    const NiftiVolume volume = read_nifti_volume(path);
    const std::vector<float> probability = predict_volume(ensemble, dev, volume, settings);
    std::vector<uint8_t> mask(probability.size());
    for (size_t i = 0; i < mask.size(); ++i) mask[i] = probability[i] > threshold;
    write_nifti_mask(target(volume.name + ".nii.gz"), volume, mask);
    if (probabilities) write_nifti_probabilities(target(volume.name + "_probabilities.nii.gz"), volume, probability);
  }
  std::printf("wrote %zu NIfTI masks%s to %s (each on its input's grid)\n", cases.size(),
              probabilities ? " and probabilities" : "", out.c_str());
  return 0;
}

}  // namespace

int command_predict(const Args& args) {
  std::vector<std::string> weights;
  std::string input, out, device_choice = "auto", precision = "auto";
  double threshold = 0.5;
  int size = 256, batch = 8;
  bool zscore = false, tta = false, probabilities = false;
  Options options("predict", "Writes, for each input slice, <name>_pred.png (the predicted mask, 0/255) and\n<name>_overlay.png (FLAIR in grey, ground truth outlined in red where a mask exists, prediction\nin green). Input: an image file, a folder of images (masks beside them as <name>_mask.<ext>\nare used when present), or a dataset folder. Pictures are at --image-size resolution.\nNIfTI input (case.nii.gz, nnU-Net's case_0000.nii.gz with its other channels beside it, or a\nfolder of either) gives <case>.nii.gz, a uint8 0/1 mask on the input's grid, header and affine;\nslices are resized to --image-size and the probabilities back (docs/data.md). Several --weights\nare an ensemble: their probabilities are averaged.");
  options.add("weights", &weights, "FILE", "weights (a run's best.safetensors); repeated: an ensemble").required()
      .add("input", &input, "PATH", "an image file, a NIfTI case, or a folder").required()
      .add("out", &out, "DIR", "folder for the pictures or masks (created if missing)").required()
      .add("threshold", &threshold, "T", "tumour where the predicted probability exceeds T")
      .add("image-size", &size, "N", "resize inputs to N x N").at_least(1)
      .shown_default("as the weights record")
      .flag("zscore", &zscore, "normalise each channel by its volume's mean and standard deviation")
      .shown_default("as the weights record")
      .flag("tta", &tta, "test-time augmentation: average the probabilities of the 4 mirrorings")
      .flag("probabilities", &probabilities,
            "also write probabilities: <case>_probabilities.nii.gz (float32), or <name>_prob.png (0..255)")
      .add("batch", &batch, "B", "slices per forward pass").at_least(1)
      .add("device", &device_choice, "DEVICE", "auto, cuda, cpu or sim").choices({"auto", "cuda", "cpu", "sim"});
  add_precision_option(options, &precision);
  int threads = 0;
  add_threads_option(options, &threads);
  if (!options.parse(args)) return 0;
  apply_threads(threads);
  if (!(threshold > 0 && threshold < 1)) throw UsageError("--threshold: must be between 0 and 1");
  for (const std::string& path : weights) check_readable_file(path, "weights");
  // A file's folder is the input too: pictures or masks beside a patient's files would join its data.
  std::error_code input_error;
  const bool input_is_folder = fs::is_directory(input, input_error);
  const std::string input_folder = input_is_folder ? input : fs::path(input).parent_path().string();
  refuse_output_inside_input(out, "--out", input_folder.empty() ? "." : input_folder,
                             input_is_folder ? "--input" : "the folder of --input");

  Device& dev = device(resolve_device(device_choice, true));
  const Ensemble ensemble(weights, dev, resolve_precision(precision, dev.kind()));
  const Preprocessing preprocessing = preprocessing_for(ensemble.recorded(), weights.front(), options, size, zscore);
  size = preprocessing.image_size;
  zscore = preprocessing.zscore;
  for (const UNet* model : ensemble.models()) model->check_input({1, size, size, model->config().in_channels});
  if (is_nifti_input(input)) {
    return predict_volumes(input, out, ensemble, dev, {size, zscore, batch, tta}, threshold, probabilities);
  }
  const Inputs inputs = gather(input, size);
  const Dataset& data = inputs.data;
  create_output_folder(out);

  ResidentDataset resident(dev, data, zscore);
  Evaluator evaluator(ensemble.models(), resident, data, batch, tta);
  std::vector<int32_t> all(static_cast<size_t>(data.slices()));
  for (int32_t s = 0; s < static_cast<int32_t>(all.size()); ++s) all[s] = s;
  const auto logit_threshold = static_cast<float>(std::log(threshold / (1 - threshold)));  // sigmoid(x) > T
  const Evaluation result = evaluator.run(all, false, logit_threshold);
  const int64_t plane = int64_t{size} * size;
  int with_truth = 0;
  for (size_t at = 0; at < result.slices.size(); ++at) {
    const int32_t s = result.slices[at];
    const uint8_t* predicted = result.predicted.data() + at * plane;
    const bool truth = inputs.truth[s];
    with_truth += truth;
    const std::string name = fs::path(data.files[s]).stem().string();
    std::vector<uint8_t> grey(static_cast<size_t>(plane));
    for (int64_t p = 0; p < plane; ++p) grey[p] = predicted[p] ? 255 : 0;
    write_png((fs::path(out) / (name + "_pred.png")).string(), grey.data(), size, size, 1);
    const std::vector<uint8_t> rgb = overlay(data.images.data() + s * plane * 3, truth ? data.masks.data() + s * plane : nullptr,
                                             predicted, size, size);
    write_png((fs::path(out) / (name + "_overlay.png")).string(), rgb.data(), size, size, 3);
  }
  if (probabilities) {
    const std::vector<float> probability = evaluator.probabilities(result.slices);
    for (size_t at = 0; at < result.slices.size(); ++at) {
      std::vector<uint8_t> grey(static_cast<size_t>(plane));
      for (int64_t p = 0; p < plane; ++p) grey[p] = static_cast<uint8_t>(std::lround(255 * probability[at * plane + p]));
      const std::string name = fs::path(data.files[result.slices[at]]).stem().string();
      write_png((fs::path(out) / (name + "_prob.png")).string(), grey.data(), size, size, 1);
    }
  }
  std::printf("wrote %zu masks and overlays to %s", result.slices.size(), out.c_str());
  if (with_truth == static_cast<int>(result.slices.size())) {
    std::printf(" (all with ground truth: global Dice %.4f, slice Dice %.4f over the %d slices with tumour)",
                result.summary.global_dice, result.summary.slice_dice_mean, result.summary.tumour_slices);
  }
  std::printf("\n");
  return 0;
}

}  // namespace unet
