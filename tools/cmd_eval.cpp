// unet eval: scores weights on a dataset — per patient and in summary — as a table and as CSV, and
// as nnU-Net's summary.json. Slice datasets are scored at --image-size; NIfTI cases (nnU-Net's
// imagesTs/labelsTs) on their own voxel grid.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "data/nifti.h"
#include "data/split.h"
#include "engine/files.h"
#include "engine/text.h"
#include "engine/paths.h"
#include "models/checkpoint.h"
#include "models/evaluator.h"
#include "models/summary_json.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/csv.h"
#include "tools/data_options.h"
#include "tools/volumes.h"

namespace unet {

namespace {

struct Scored {
  MetricsSummary summary;
  std::string which;                        // what was scored, for the first line
  size_t slices = 0;
  std::vector<std::string> references;      // per volume, for summary.json
};

// Every case of an imagesTs/labelsTs folder, predicted on its own grid and scored there.
Scored score_nifti(const std::string& images, const Ensemble& ensemble, Device& dev, const VolumeSettings& settings,
                   bool largest_component, bool hd95) {
  const std::vector<std::string> cases = find_nifti_cases(images);
  if (cases.empty()) throw Error(images + ": no NIfTI cases (.nii, .nii.gz)");
  std::vector<std::string> labels, names;
  for (const std::string& path : cases) {  // all read first: a bad file stops before any work
    const NiftiVolume volume = read_nifti_volume(path);
    labels.push_back(nifti_label_of(images, volume.name));
    read_nifti_mask(labels.back(), volume);
    names.push_back(volume.name);
  }
  Scored scored;
  scored.which = "the " + std::to_string(cases.size()) + " NIfTI cases of " + images;
  MetricsAccumulator metrics(names);
  std::vector<double> hd95_voxels(cases.size()), hd95_mm(cases.size());
  for (size_t c = 0; c < cases.size(); ++c) {
    const NiftiVolume volume = read_nifti_volume(cases[c]);
    const std::vector<uint8_t> truth = read_nifti_mask(labels[c], volume);
    const std::vector<float> probability = predict_volume(ensemble, dev, volume, settings);
    std::vector<uint8_t> predicted(probability.size());
    for (size_t i = 0; i < predicted.size(); ++i) predicted[i] = probability[i] > 0.5f;
    if (largest_component) keep_largest_component(predicted, volume.depth, volume.height, volume.width);
    const int64_t plane = int64_t{volume.height} * volume.width;
    std::vector<float> mask(static_cast<size_t>(plane)), logits(static_cast<size_t>(plane));
    for (int k = 0; k < volume.depth; ++k) {
      for (int64_t p = 0; p < plane; ++p) {
        mask[p] = truth[k * plane + p];
        const double q = std::clamp(static_cast<double>(probability[k * plane + p]), 1e-7, 1 - 1e-7);
        logits[p] = static_cast<float>(std::log(q / (1 - q)));
      }
      metrics.add_slice(static_cast<int>(c), predicted.data() + k * plane, mask.data(), plane,
                        bce_sum(logits.data(), mask.data(), plane));
    }
    scored.slices += static_cast<size_t>(volume.depth);
    if (hd95) {
      const double voxel[3] = {1, 1, 1};
      const double mm[3] = {volume.spacing[2], volume.spacing[0], volume.spacing[1]};  // (depth, height, width)
      hd95_voxels[c] = unet::hd95(predicted.data(), truth.data(), volume.depth, volume.height, volume.width, voxel);
      hd95_mm[c] = unet::hd95(predicted.data(), truth.data(), volume.depth, volume.height, volume.width, mm);
    }
  }
  scored.summary = metrics.summary();
  for (size_t c = 0; c < cases.size(); ++c) {
    scored.summary.volumes[c].hd95_voxels = hd95_voxels[c];
    scored.summary.volumes[c].hd95_mm = hd95_mm[c];
  }
  if (hd95) summarise_hd95(scored.summary);
  scored.references = labels;
  return scored;
}

}  // namespace

int command_eval(const Args& args) {
  DataOptions data_options;
  std::vector<std::string> weights;
  std::string split_path, subset = "auto", csv, summary_json, device_choice = "auto", precision = "auto";
  bool largest_component = false, tta = false, hd95 = false, force = false;
  int batch = 8;
  Options options("eval", "Scores weights on a dataset: per patient (Dice, IoU, true and predicted tumour volume in\nvoxels) and in summary (per-volume Dice mean and median, slice and global Dice, IoU, BCE;\ndocs/metrics.md). With --split, only the patients of one side of a training run's split.\nA folder with imagesTs/ and labelsTs/ (nnU-Net's layout) is scored case by case on each\nvolume's own grid. Several --weights are an ensemble: their probabilities are averaged.");
  options.add("weights", &weights, "FILE", "weights (a run's best.safetensors); repeated: an ensemble").required();
  add_data_options(options, &data_options, true);
  options.shown_default("image-size", "as the weights record").shown_default("zscore", "as the weights record");
  options.add("split", &split_path, "FILE", "a run's split.json: evaluate the patients of one side")
      .add("subset", &subset, "SIDE", "with --split: test, val, train or all (auto: test if any, else val)")
      .choices({"auto", "test", "val", "train", "all"})
      .flag("largest-component", &largest_component, "keep only the largest 3-D connected component per patient")
      .flag("tta", &tta, "test-time augmentation: average the probabilities of the 4 mirrorings")
      .flag("hd95", &hd95, "also the 95th-percentile Hausdorff distance per patient (voxels; mm for NIfTI)")
      .add("csv", &csv, "FILE", "also write the per-patient table (and a summary row) as CSV")
      .add("summary-json", &summary_json, "FILE", "also write nnU-Net v2's summary.json (an empty case is null)")
      .flag("force", &force, "replace --csv even if it is not a table unet eval wrote")
      .add("batch", &batch, "B", "slices per forward pass").at_least(1)
      .add("device", &device_choice, "DEVICE", "auto, cuda, cpu or sim").choices({"auto", "cuda", "cpu", "sim"});
  add_precision_option(options, &precision);
  int threads = 0;
  add_threads_option(options, &threads);
  if (!options.parse(args)) return 0;
  apply_threads(threads);
  if (options.given("subset") && split_path.empty()) throw UsageError("--subset needs --split");
  for (const std::string& path : weights) check_readable_file(path, "weights");
  if (!split_path.empty()) check_readable_file(split_path, "split");
  const std::string table_header = patient_table_csv({});  // the header row alone
  if (!csv.empty()) {
    check_writable(csv);
    refuse_output_inside_input(csv, "--csv", data_options.data, "--data");
    refuse_replacing_another_kind(csv, "a table unet eval wrote", [&](const std::string& path) {
      return file_starts_with(path, table_header);
    }, force);
  }
  if (!summary_json.empty()) {
    check_writable(summary_json);
    refuse_output_inside_input(summary_json, "--summary-json", data_options.data, "--data");
  }
  const std::string nifti_images = nifti_images_folder(data_options.data);
  if (!nifti_images.empty() && !split_path.empty()) {
    throw UsageError("--split: for slice datasets (" + data_options.data + " is nnU-Net's imagesTs/labelsTs layout)");
  }

  Device& dev = device(resolve_device(device_choice, true));
  const Ensemble ensemble(weights, dev, resolve_precision(precision, dev.kind()));
  const Preprocessing preprocessing =
      preprocessing_for(ensemble.recorded(), weights.front(), options, data_options.image_size, data_options.zscore);
  data_options.image_size = preprocessing.image_size;
  data_options.zscore = preprocessing.zscore;
  Scored scored;
  if (!nifti_images.empty()) {
    for (const UNet* model : ensemble.models()) {
      model->check_input({1, data_options.image_size, data_options.image_size, model->config().in_channels});
    }
    scored = score_nifti(nifti_images, ensemble, dev, {data_options.image_size, data_options.zscore, batch, tta},
                         largest_component, hd95);
  } else {
    const Dataset data = load_dataset(data_options.data, data_options.find(), data_options.load());
    for (const UNet* model : ensemble.models()) model->check_input({1, data.height, data.width, model->config().in_channels});
    std::vector<int32_t> slices;
    scored.which = "all patients";
    if (split_path.empty() || subset == "all") {
      for (int32_t s = 0; s < static_cast<int32_t>(data.slices()); ++s) slices.push_back(s);
    } else {
      const PatientSplit split = load_split(split_path);
      const SplitSlices sides = split_slices(data, split);
      if (subset == "auto") subset = sides.test.empty() ? "val" : "test";
      slices = subset == "test" ? sides.test : subset == "val" ? sides.val : sides.train;
      scored.which = "the " + subset + " patients of " + split_path +
                     (split.folds > 0 ? " (fold " + std::to_string(split.fold) + " of " + std::to_string(split.folds) + ")" : "");
      if (slices.empty()) throw Error(split_path + ": the " + subset + " side has no patients");
    }
    ResidentDataset resident(dev, data, data_options.zscore);
    Evaluator evaluator(ensemble.models(), resident, data, batch, tta);
    scored.summary = evaluator.run(slices, largest_component, 0.0f, hd95).summary;
    scored.slices = slices.size();
    for (const VolumeMetrics& v : scored.summary.volumes) scored.references.push_back(v.name);
  }
  const MetricsSummary& s = scored.summary;

  std::string how = largest_component ? ", largest 3-D component only" : "";
  if (weights.size() > 1) how += ", ensemble of " + std::to_string(weights.size());
  if (tta) how += ", mirroring (TTA)";
  std::printf("%s on %s (%zu slices)%s\n\n", weights.front().c_str(), scored.which.c_str(), scored.slices, how.c_str());
  std::printf("%-28s %7s %8s %8s %12s %12s%s\n", "patient", "slices", "Dice", "IoU", "true voxels", "predicted",
              !hd95 ? "" : nifti_images.empty() ? "  HD95 (voxels)" : "  HD95 (voxels, mm)");
  for (const VolumeMetrics& v : s.volumes) {
    std::printf("%-28s %7d %8.4f %8.4f %12lld %12lld", v.name.c_str(), v.slices, v.confusion.dice(), v.confusion.iou(),
                static_cast<long long>(v.confusion.truth()), static_cast<long long>(v.confusion.predicted()));
    if (hd95) std::printf("  %8.3f", v.hd95_voxels);
    if (hd95 && !nifti_images.empty()) std::printf(" %8.3f", v.hd95_mm);
    std::printf("\n");
  }
  std::printf("\nper-volume Dice  mean %.4f, median %.4f over %zu patients (%d without tumour or prediction, scored 1)\n",
              s.volume_dice_mean, s.volume_dice_median, s.volumes.size(), s.empty_volumes);
  std::printf("per-volume IoU   mean %.4f, median %.4f\n", s.volume_iou_mean, s.volume_iou_median);
  std::printf("slice Dice       %.4f (IoU %.4f) over the %d slices with tumour\n", s.slice_dice_mean, s.slice_iou_mean, s.tumour_slices);
  std::printf("global Dice      %.4f (IoU %.4f)\n", s.global_dice, s.global_iou);
  std::printf("BCE              %.5f\n", s.bce);
  if (hd95) {
    std::printf("HD95             mean %.3f voxels", s.hd95_voxels_mean);
    if (!nifti_images.empty()) std::printf(", %.3f mm", s.hd95_mm_mean);
    std::printf(" over %zu patients (%d left out: tumour in only one of prediction and truth)\n",
                s.volumes.size() - static_cast<size_t>(s.hd95_undefined), s.hd95_undefined);
  }
  // What predicting no tumour anywhere scores here: 1 for each patient without tumour, 0 for the rest.
  int without_tumour = 0;
  for (const VolumeMetrics& v : s.volumes) without_tumour += v.confusion.truth() == 0;
  std::printf("no-tumour baseline: per-volume Dice mean %.4f (%d of %zu patients have no tumour), slice and global Dice 0\n",
              s.volumes.empty() ? 0.0 : static_cast<double>(without_tumour) / static_cast<double>(s.volumes.size()),
              without_tumour, s.volumes.size());
  if (!csv.empty()) {
    std::vector<std::string> summary_row = {"(summary: per-volume mean)", std::to_string(scored.slices),
                                            fixed(s.volume_dice_mean, 6), fixed(s.volume_iou_mean, 6), "", ""};
    if (hd95) {
      summary_row.push_back(fixed(s.hd95_voxels_mean, 6));
      summary_row.push_back(nifti_images.empty() ? "" : fixed(s.hd95_mm_mean, 6));
    }
    const std::string table = patient_table_csv(s) + csv_line(summary_row) + "\n";
    write_file_atomic(csv, table);
    std::printf("wrote %s\n", csv.c_str());
  }
  if (!summary_json.empty()) {
    std::vector<std::string> predictions;
    for (const VolumeMetrics& v : s.volumes) predictions.push_back(v.name);
    write_file_atomic(summary_json, nnunet_summary(s.volumes, scored.references, predictions, hd95).dump() + "\n");
    std::printf("wrote %s (nnU-Net's layout: a case without tumour or prediction is null there, not 1)\n",
                summary_json.c_str());
  }
  return 0;
}

}  // namespace unet
