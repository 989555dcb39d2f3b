// unet eval: scores weights on a dataset — per patient and in summary — as a table and as CSV.
#include <cstdio>
#include <filesystem>

#include "data/split.h"
#include "engine/files.h"
#include "engine/paths.h"
#include "models/checkpoint.h"
#include "models/evaluator.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/csv.h"
#include "tools/data_options.h"

namespace unet {

namespace {

std::string fixed(double value, int decimals = 4) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

}  // namespace

int command_eval(const Args& args) {
  DataOptions data_options;
  std::string weights, split_path, subset = "auto", csv, device_choice = "auto";
  bool largest_component = false, force = false;
  int batch = 8;
  Options options("eval", "Scores weights on a dataset: per patient (Dice, IoU, true and predicted tumour volume in\nvoxels) and in summary (per-volume Dice mean and median, slice and global Dice, IoU, BCE;\ndocs/metrics.md). With --split, only the patients of one side of a training run's split.");
  options.add("weights", &weights, "FILE", "weights (a run's best.safetensors, or any unet weights file)").required();
  add_data_options(options, &data_options, true);
  options.shown_default("image-size", "as the weights record").shown_default("zscore", "as the weights record");
  options.add("split", &split_path, "FILE", "a run's split.json: evaluate the patients of one side")
      .add("subset", &subset, "SIDE", "with --split: test, val, train or all (auto: test if any, else val)")
      .choices({"auto", "test", "val", "train", "all"})
      .flag("largest-component", &largest_component, "keep only the largest 3-D connected component per patient")
      .add("csv", &csv, "FILE", "also write the per-patient table (and a summary row) as CSV")
      .flag("force", &force, "replace --csv even if it is not a table unet eval wrote")
      .add("batch", &batch, "B", "slices per forward pass").at_least(1)
      .add("device", &device_choice, "DEVICE", "auto, cuda, cpu or sim").choices({"auto", "cuda", "cpu", "sim"});
  if (!options.parse(args)) return 0;
  if (options.given("subset") && split_path.empty()) throw UsageError("--subset needs --split");
  check_readable_file(weights, "weights");
  if (!split_path.empty()) check_readable_file(split_path, "split");
  const std::string table_header = patient_table_csv({});  // the header row alone
  if (!csv.empty()) {
    check_writable(csv);
    refuse_output_inside_input(csv, "--csv", data_options.data, "--data");
    refuse_replacing_another_kind(csv, "a table unet eval wrote", [&](const std::string& path) {
      return file_starts_with(path, table_header);
    }, force);
  }

  const SafeTensors file = SafeTensors::load(weights);
  Device& dev = device(resolve_device(device_choice, true));
  UNet model(read_config(file), dev);
  load_weights(file, model);
  const Preprocessing preprocessing = preprocessing_for(file, options, data_options.image_size, data_options.zscore);
  data_options.image_size = preprocessing.image_size;
  data_options.zscore = preprocessing.zscore;
  const Dataset data = load_dataset(data_options.data, data_options.find(), data_options.load());
  model.check_input({1, data.height, data.width, model.config().in_channels});

  std::vector<int32_t> slices;
  std::string which = "all patients";
  if (split_path.empty() || subset == "all") {
    for (int32_t s = 0; s < static_cast<int32_t>(data.slices()); ++s) slices.push_back(s);
  } else {
    const SplitSlices sides = split_slices(data, load_split(split_path));
    if (subset == "auto") subset = sides.test.empty() ? "val" : "test";
    slices = subset == "test" ? sides.test : subset == "val" ? sides.val : sides.train;
    which = "the " + subset + " patients of " + split_path;
    if (slices.empty()) throw Error(split_path + ": the " + subset + " side has no patients");
  }

  ResidentDataset resident(dev, data, data_options.zscore);
  Evaluator evaluator(model, resident, data, batch);
  const Evaluation result = evaluator.run(slices, largest_component);
  const MetricsSummary& s = result.summary;

  std::printf("%s on %s (%zu slices)%s\n\n", weights.c_str(), which.c_str(), slices.size(),
              largest_component ? ", largest 3-D component only" : "");
  std::printf("%-28s %7s %8s %8s %12s %12s\n", "patient", "slices", "Dice", "IoU", "true voxels", "predicted");
  for (const VolumeMetrics& v : s.volumes) {
    std::printf("%-28s %7d %8.4f %8.4f %12lld %12lld\n", v.name.c_str(), v.slices, v.confusion.dice(), v.confusion.iou(),
                static_cast<long long>(v.confusion.truth()), static_cast<long long>(v.confusion.predicted()));
  }
  std::printf("\nper-volume Dice  mean %.4f, median %.4f over %zu patients (%d without tumour or prediction, scored 1)\n",
              s.volume_dice_mean, s.volume_dice_median, s.volumes.size(), s.empty_volumes);
  std::printf("per-volume IoU   mean %.4f, median %.4f\n", s.volume_iou_mean, s.volume_iou_median);
  std::printf("slice Dice       %.4f (IoU %.4f) over the %d slices with tumour\n", s.slice_dice_mean, s.slice_iou_mean, s.tumour_slices);
  std::printf("global Dice      %.4f (IoU %.4f)\n", s.global_dice, s.global_iou);
  std::printf("BCE              %.5f\n", s.bce);
  // What predicting no tumour anywhere scores here: 1 for each patient without tumour, 0 for the rest.
  int without_tumour = 0;
  for (const VolumeMetrics& v : s.volumes) without_tumour += v.confusion.truth() == 0;
  std::printf("no-tumour baseline: per-volume Dice mean %.4f (%d of %zu patients have no tumour), slice and global Dice 0\n",
              s.volumes.empty() ? 0.0 : static_cast<double>(without_tumour) / static_cast<double>(s.volumes.size()),
              without_tumour, s.volumes.size());
  if (!csv.empty()) {
    const std::string summary_row = csv_line({"(summary: per-volume mean)", std::to_string(slices.size()),
                                              fixed(s.volume_dice_mean, 6), fixed(s.volume_iou_mean, 6), "", ""});
    const std::string table = patient_table_csv(s) + summary_row + "\n";
    write_file_atomic(csv, table);
    std::printf("wrote %s\n", csv.c_str());
  }
  return 0;
}

}  // namespace unet
