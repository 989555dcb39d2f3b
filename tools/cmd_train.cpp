// unet train: trains a U-Net on a folder of MRI slices and leaves a run folder behind
// (docs/training.md): log.jsonl, metrics.csv, split.json, best.safetensors (weights, by validation
// per-volume Dice), last.safetensors (resumable), val_patients.csv and overlays/.
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>

#include "data/split.h"
#include "engine/build_info.h"
#include "engine/files.h"
#include "models/checkpoint.h"
#include "models/trainer.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/csv.h"
#include "tools/data_options.h"
#include "tools/evaluate.h"
#include "tools/overlay.h"
#include "tools/progress.h"

namespace unet {

namespace {

namespace fs = std::filesystem;

volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_interrupt(int) { interrupted = 1; }

struct TrainFlags {
  DataOptions data;
  AugmentOptions augment;
  UNetConfig model;
  double val_frac = 0.1;
  int val_patients = -1;  // -1: use val_frac
  int test_patients = 0;
  int folds = 0, fold = 0;  // K-fold cross-validation: fold `fold` of `folds`; 0 folds: a plain split
  int epochs = 30, batch = 16, oversample = 1, warmup_steps = 0;
  double lr = 1e-4, weight_decay = 0;
  std::string lr_schedule = "constant", loss = "bce", device = "auto", graph = "on", out, init;
  int64_t seed = 0;
  bool resume = false;
  int64_t stop_after_steps = 0;  // testing: behave as if interrupted after this many steps

  // What identifies the run, keyed by option name: resuming with other values would not continue
  // the same run. --epochs, --device, --graph may change on resume.
  Json identity() const {
    Json json = Json::object();
    json.set("data", data.data);
    json.set("image-size", data.image_size);
    json.set("patient-pattern", data.patient_pattern);
    json.set("skip-bad", data.skip_bad);
    json.set("zscore", data.zscore);
    json.set("val-frac", val_frac);
    json.set("val-patients", val_patients);
    json.set("test-patients", test_patients);
    json.set("folds", folds);
    json.set("fold", fold);
    json.set("batch", batch);
    json.set("oversample", oversample);
    json.set("lr", lr);
    json.set("lr-schedule", lr_schedule);
    json.set("warmup-steps", warmup_steps);
    json.set("weight-decay", weight_decay);
    json.set("loss", loss);
    json.set("base-width", model.base_width);
    json.set("depth", model.depth);
    json.set("seed", seed);
    json.set("init", init);
    json.set("flip-h", augment.flip_h);
    json.set("flip-v", augment.flip_v);
    json.set("rotate", augment.rotate);
    json.set("zoom", augment.zoom);
    json.set("shift", augment.shift);
    json.set("no-augment", augment.none);
    return json;
  }

  void restore(const Json& saved) {
    data.data = saved.at("data").as_string();
    data.image_size = static_cast<int>(saved.at("image-size").as_integer());
    data.patient_pattern = saved.at("patient-pattern").as_string();
    data.skip_bad = saved.at("skip-bad").as_bool();
    data.zscore = saved.at("zscore").as_bool();
    val_frac = saved.at("val-frac").as_number();
    val_patients = static_cast<int>(saved.at("val-patients").as_integer());
    test_patients = static_cast<int>(saved.at("test-patients").as_integer());
    if (const Json* saved_folds = saved.find("folds")) {  // runs from before folds have none
      folds = static_cast<int>(saved_folds->as_integer());
      fold = static_cast<int>(saved.at("fold").as_integer());
    }
    batch = static_cast<int>(saved.at("batch").as_integer());
    oversample = static_cast<int>(saved.at("oversample").as_integer());
    lr = saved.at("lr").as_number();
    lr_schedule = saved.at("lr-schedule").as_string();
    warmup_steps = static_cast<int>(saved.at("warmup-steps").as_integer());
    weight_decay = saved.at("weight-decay").as_number();
    loss = saved.at("loss").as_string();
    model.base_width = static_cast<int>(saved.at("base-width").as_integer());
    model.depth = static_cast<int>(saved.at("depth").as_integer());
    seed = saved.at("seed").as_integer();
    init = saved.at("init").as_string();
    augment.flip_h = saved.at("flip-h").as_number();
    augment.flip_v = saved.at("flip-v").as_number();
    augment.rotate = saved.at("rotate").as_number();
    augment.zoom = saved.at("zoom").as_number();
    augment.shift = saved.at("shift").as_number();
    augment.none = saved.at("no-augment").as_bool();
  }
};

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

std::string fixed(double value, int decimals = 4) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

const char* metrics_header =
    "epoch,step,train_loss,val_bce,val_dice_mean,val_dice_median,val_slice_dice,val_global_dice,val_iou_mean,"
    "val_iou_median,val_empty_patients,lr,seconds";

// One picture per patient: the slice with the most true tumour (or predicted, if it has none).
void write_overlay(const fs::path& path, const Dataset& data, const Evaluation& evaluation, int volume) {
  const int64_t plane = int64_t{data.height} * data.width;
  size_t best = evaluation.slices.size();
  int64_t best_area = -1;
  for (size_t at = 0; at < evaluation.slices.size(); ++at) {
    const int32_t s = evaluation.slices[at];
    if (data.volume[s] != volume) continue;
    int64_t area = 0;
    for (int64_t p = 0; p < plane; ++p) area += 2 * data.masks[s * plane + p] + evaluation.predicted[at * plane + p];
    if (area > best_area) {
      best_area = area;
      best = at;
    }
  }
  if (best == evaluation.slices.size()) return;
  const int32_t s = evaluation.slices[best];
  const std::vector<uint8_t> rgb = overlay(data.images.data() + s * plane * 3, data.masks.data() + s * plane,
                                           evaluation.predicted.data() + best * plane, data.height, data.width);
  write_png(path.string(), rgb.data(), data.height, data.width, 3);
}

void write_patient_table(const fs::path& path, const MetricsSummary& summary) {
  std::string text = "patient,slices,dice,iou,true_voxels,predicted_voxels\n";
  for (const VolumeMetrics& v : summary.volumes) {
    text += csv_line({v.name, std::to_string(v.slices), fixed(v.confusion.dice(), 6), fixed(v.confusion.iou(), 6),
                      std::to_string(v.confusion.truth()), std::to_string(v.confusion.predicted())}) +
            "\n";
  }
  write_file_atomic(path.string(), text);
}

// Best, median and worst patients by per-volume Dice, as pictures in overlays/.
void write_overlays(const fs::path& folder, const Dataset& data, const Evaluation& evaluation) {
  std::vector<std::pair<double, std::string>> ranked;
  for (const VolumeMetrics& v : evaluation.summary.volumes) ranked.emplace_back(v.confusion.dice(), v.name);
  if (ranked.empty()) return;
  std::sort(ranked.begin(), ranked.end());
  fs::create_directories(folder);
  const std::pair<const char*, size_t> picks[] = {{"1-best", ranked.size() - 1}, {"2-median", ranked.size() / 2}, {"3-worst", 0}};
  std::vector<size_t> drawn;  // with fewer than three patients, each is drawn once
  for (const auto& [label, index] : picks) {
    if (std::find(drawn.begin(), drawn.end(), index) != drawn.end()) continue;
    drawn.push_back(index);
    const std::string& patient = ranked[index].second;
    const auto volume = static_cast<int>(std::find(data.patients.begin(), data.patients.end(), patient) - data.patients.begin());
    write_overlay(folder / (std::string(label) + "_" + patient + ".png"), data, evaluation, volume);
  }
}

std::string summary_line(const MetricsSummary& s) {
  return "per-volume Dice mean " + fixed(s.volume_dice_mean) + " median " + fixed(s.volume_dice_median) + " (" +
         std::to_string(s.volumes.size()) + " patients, " + std::to_string(s.empty_volumes) + " without tumour or prediction)" +
         ", slice Dice " + fixed(s.slice_dice_mean) + ", global Dice " + fixed(s.global_dice) + ", IoU " +
         fixed(s.volume_iou_mean) + ", BCE " + fixed(s.bce);
}

}  // namespace

int command_train(const Args& args) {
  TrainFlags f;
  Options options("train", "Trains the U-Net on a folder of MRI slices (kaggle_3m, or images/ + masks/). Writes RUN_DIR:\nlog.jsonl, metrics.csv, split.json, best.safetensors (by validation per-volume Dice),\nlast.safetensors (resumable), val_patients.csv and overlays/. Ctrl-C finishes the step, saves\na resumable checkpoint and stops; --resume continues exactly where it stopped.");
  add_data_options(options, &f.data, true, /*data_required=*/false);
  options.add("val-frac", &f.val_frac, "F", "fraction of patients for validation (split by patient)").at_least(0)
      .add("val-patients", &f.val_patients, "N", "number of validation patients (instead of --val-frac)").at_least(0)
      .shown_default("from --val-frac")
      .add("test-patients", &f.test_patients, "N", "patients held out for `unet eval --split` only").at_least(0)
      .add("folds", &f.folds, "K", "K-fold cross-validation by patient (instead of --val-frac/--val-patients)")
      .shown_default("none")
      .add("fold", &f.fold, "I", "with --folds: validate on part I (0..K-1) and train on the others")
      .add("epochs", &f.epochs, "E", "passes over the training slices").at_least(1)
      .add("batch", &f.batch, "B", "slices per step").at_least(1)
      .add("lr", &f.lr, "LR", "Adam learning rate").at_least(0)
      .add("lr-schedule", &f.lr_schedule, "S", "constant or cosine (decay to 0 at the last step)").choices({"constant", "cosine"})
      .add("warmup-steps", &f.warmup_steps, "N", "linear learning-rate warm-up").at_least(0)
      .add("weight-decay", &f.weight_decay, "W", "AdamW's decoupled weight decay").at_least(0)
      .add("loss", &f.loss, "LOSS", "bce, dice or bce+dice").choices({"bce", "dice", "bce+dice"})
      .add("oversample", &f.oversample, "K", "show slices with tumour K times per epoch").at_least(1)
      .add("base-width", &f.model.base_width, "W", "channels of the first level (64: the specified model)").at_least(1)
      .add("depth", &f.model.depth, "D", "pooling steps (3: the specified model)").at_least(1)
      .add("init", &f.init, "FILE", "start from these weights instead of a fresh initialisation")
      .add("device", &f.device, "DEVICE", "auto (the GPU if there is one, else cpu), cuda, cpu or sim").choices({"auto", "cuda", "cpu", "sim"})
      .add("graph", &f.graph, "on|off", "replay each step as a CUDA graph").choices({"on", "off"})
      .add("seed", &f.seed, "S", "seed of the split, the initialisation, the shuffling and the augmentation").at_least(0)
      .add("out", &f.out, "RUN_DIR", "run folder to write").required()
      .flag("resume", &f.resume, "continue the run in RUN_DIR from its last checkpoint")
      .add("stop-after-steps", &f.stop_after_steps, "N", "stop as if interrupted after N steps (for testing resume)").at_least(0)
      .shown_default("never");
  add_augment_options(options, &f.augment);
  if (!options.parse(args)) return 0;
  if (!f.resume && f.data.data.empty()) throw UsageError("train: --data is required (unless resuming with --resume)");
  if (options.given("val-frac") && options.given("val-patients")) throw UsageError("give --val-frac or --val-patients, not both");
  if (f.val_patients < 0 && f.val_frac >= 1) throw UsageError("--val-frac: must be below 1 (or use --val-patients)");
  if (options.given("fold") && !options.given("folds")) throw UsageError("--fold needs --folds");
  if (options.given("folds")) {
    if (options.given("val-frac") || options.given("val-patients")) {
      throw UsageError("--folds chooses the validation patients: give it without --val-frac or --val-patients");
    }
    if (f.folds < 2) throw UsageError("--folds: " + std::to_string(f.folds) + " is below the minimum, 2");
    if (f.fold < 0 || f.fold >= f.folds) {
      throw UsageError("--fold: " + std::to_string(f.fold) + " is not in 0.." + std::to_string(f.folds - 1) + " (--folds " +
                       std::to_string(f.folds) + ")");
    }
  }

  // The run folder: new, or the same run continued.
  const fs::path run(f.out);
  const fs::path last = run / "last.safetensors", log = run / "log.jsonl";
  std::error_code error;
  std::optional<SafeTensors> checkpoint;
  Json state = Json::object();
  if (f.resume) {
    if (!fs::is_regular_file(last, error)) throw Error(f.out + ": nothing to resume (no last.safetensors)");
    checkpoint = SafeTensors::load(last.string());
    UNet probe(read_config(*checkpoint), device(DeviceKind::cpu));
    state = load_training_checkpoint(*checkpoint, probe);
    const Json& saved = state.at("identity");
    const Json now = f.identity();
    for (const auto& [key, value] : saved.members()) {
      if (options.given(key) && now.at(key).dump() != value.dump()) {
        throw Error("--" + key + " " + now.at(key).dump() + " differs from the run being resumed (" + value.dump() + ")");
      }
    }
    f.restore(saved);
    if (!options.given("epochs")) f.epochs = static_cast<int>(state.at("epochs").as_integer());
    // The same device and graph mode as before, unless asked otherwise: only they continue the run
    // bit for bit (cpu and sim agree to rounding, not to the bit).
    if (!options.given("device")) f.device = state.at("device").as_string();
    if (!options.given("graph")) f.graph = state.at("graph").as_string();
  } else if (fs::exists(log, error) || fs::exists(last, error)) {
    throw Error(f.out + " already holds a run (use --resume to continue it, or another --out)");
  }
  const LossConfig loss = parse_loss(f.loss);
  const AugmentRanges ranges = f.augment.ranges();
  fs::create_directories(run, error);
  if (error) throw Error(f.out + ": cannot create the run folder (" + error.message() + ")");
  check_writable((run / "x").string());

  const DeviceKind kind = resolve_device(f.device, true);
  if (kind == DeviceKind::cpu && f.model.base_width >= 32 && f.data.image_size >= 128) {
    std::fprintf(stderr, "note: training the full model on the CPU is slow; consider --base-width 8 --image-size 64\n");
  }
  Device& dev = device(kind);

  // Data: loaded once, split by patient, uploaded once.
  std::printf("loading %s ...\n", f.data.data.c_str());
  std::fflush(stdout);
  const Dataset data = load_dataset(f.data.data, f.data.find(), f.data.load());
  if (!data.skipped.empty()) std::printf("skipped %zu bad slices (--skip-bad)\n", data.skipped.size());
  const fs::path split_path = run / "split.json";
  const PatientSplit split =
      f.resume      ? load_split(split_path.string())
      : f.folds > 0 ? kfold_split(data.patients, f.folds, f.fold, f.test_patients, static_cast<uint64_t>(f.seed))
                    : split_patients(data.patients, f.val_patients >= 0 ? f.val_patients : f.val_frac, f.test_patients,
                                     static_cast<uint64_t>(f.seed));
  if (split.train.empty()) throw Error("no patients left for training (" + std::to_string(data.patients.size()) + " in the dataset)");
  if (!f.resume) save_split(split_path.string(), split);
  const SplitSlices sides = split_slices(data, split);
  std::printf("%zu patients: %zu train (%zu slices), %zu validation (%zu slices), %zu test%s\n", data.patients.size(),
              split.train.size(), sides.train.size(), split.val.size(), sides.val.size(), split.test.size(),
              split.folds > 0 ? (" (fold " + std::to_string(split.fold) + " of " + std::to_string(split.folds) + ")").c_str() : "");
  ResidentDataset resident(dev, data, f.data.zscore);
  const EpochSampler sampler(sides.train, data.tumour, f.oversample, f.batch, static_cast<uint64_t>(f.seed));

  // The model and its trainer.
  UNet model(f.model, dev);
  if (checkpoint) {
    load_training_checkpoint(*checkpoint, model);
  } else if (!f.init.empty()) {
    check_readable_file(f.init, "--init");
    load_weights(SafeTensors::load(f.init), model);
  } else {
    model.parameters().initialize(static_cast<uint64_t>(f.seed));
  }
  const int steps_per_epoch = sampler.steps_per_epoch();
  const int64_t total_steps = int64_t{steps_per_epoch} * f.epochs;
  AdamConfig adam;
  adam.lr = f.lr;
  adam.weight_decay = f.weight_decay;
  adam.decoupled_weight_decay = f.weight_decay > 0;
  adam.schedule = f.lr_schedule == "cosine" ? LrSchedule::cosine : LrSchedule::constant;
  adam.warmup_steps = f.warmup_steps;
  adam.total_steps = total_steps;
  const Shape batch_shape{f.batch, data.height, data.width, f.model.in_channels};
  Trainer trainer(model, adam, loss, batch_shape, f.graph == "on");
  trainer.set_batch_source([&](Stream stream) {
    resident.train_batch(trainer.clock().step(), steps_per_epoch, f.batch, ranges, static_cast<uint64_t>(f.seed),
                         {trainer.image().data(), f.model.in_channels, trainer.mask().data(), 1}, stream);
  });
  Evaluator evaluator(model, resident, data, f.batch);

  int64_t step = f.resume ? state.at("step").as_integer() : 0;
  double epoch_loss_sum = f.resume ? state.at("epoch_loss_sum").as_number() : 0.0;
  double best_dice = f.resume ? state.at("best_dice").as_number() : -1.0;
  int best_epoch = f.resume ? static_cast<int>(state.at("best_epoch").as_integer()) : -1;
  trainer.clock().set(step);

  const auto save_last = [&](int64_t done_steps, double loss_sum) {
    Json s = Json::object();
    s.set("step", done_steps);
    s.set("epochs", f.epochs);
    s.set("device", device_name(kind));
    s.set("graph", f.graph);
    s.set("epoch_loss_sum", loss_sum);
    s.set("best_dice", best_dice);
    s.set("best_epoch", best_epoch);
    s.set("identity", f.identity());
    save_training_checkpoint(last.string(), model, s);
  };

  {
    Json start = Json::object();
    start.set("event", f.resume ? "resume" : "start");
    start.set("started", utc_now());
    start.set("commit", build_info().commit);
    start.set("build", build_summary());
    start.set("device", device_name(kind));
    start.set("device_name", dev.info().name);
    start.set("flags", f.identity());
    start.set("epochs", f.epochs);
    start.set("step", step);
    start.set("steps_per_epoch", steps_per_epoch);
    append_line(log.string(), start.dump());
  }
  if (!f.resume) write_file_atomic((run / "metrics.csv").string(), std::string(metrics_header) + "\n");

  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  std::printf("training %s, depth %d on %s (%s): %d epochs of %d steps, batch %d, %dx%d%s\n", f.model.describe().c_str(),
              f.model.depth, device_name(kind), dev.info().name.c_str(), f.epochs, steps_per_epoch, f.batch, data.height,
              data.width, f.resume ? (", resuming at step " + std::to_string(step)).c_str() : "");
  std::fflush(stdout);

  const int64_t session_start_step = step;
  for (int epoch = static_cast<int>(step / steps_per_epoch); epoch < f.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    resident.set_order(sampler.order(epoch));
    Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(f.epochs), steps_per_epoch);
    const int64_t first = step % steps_per_epoch;  // not 0 when resuming mid-epoch
    for (int64_t k = first; k < steps_per_epoch; ++k) {
      const StepLosses losses = trainer.step();
      if (!std::isfinite(losses.total)) {
        progress.finish();
        std::error_code exists_error;
        const std::string kept = fs::exists(last, exists_error) ? "the last good checkpoint is " + last.string()
                                                                 : "no checkpoint was written";
        throw Error(std::string("the loss is not finite (") + (std::isnan(losses.total) ? "nan" : "inf") + ") at step " +
                    std::to_string(step + 1) + "; stopped, " + kept + " (check --init, or lower --lr)");
      }
      ++step;
      epoch_loss_sum += losses.total;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
      const double images_per_second = static_cast<double>(f.batch) * static_cast<double>(k + 1 - first) / seconds;
      progress.update(k + 1, "loss " + fixed(epoch_loss_sum / static_cast<double>(k + 1)) + " " + fixed(images_per_second, 1) + " img/s");
      const bool stop = interrupted != 0 || (f.stop_after_steps > 0 && step - session_start_step >= f.stop_after_steps);
      if (stop && step < total_steps) {
        progress.finish();
        save_last(step, epoch_loss_sum);
        Json event = Json::object();
        event.set("event", "interrupted");
        event.set("step", step);
        append_line(log.string(), event.dump());
        std::printf("stopped after step %lld (epoch %d, step %lld of %d); saved %s\ncontinue with: unet train --out %s --resume\n",
                    static_cast<long long>(step), epoch + 1, static_cast<long long>(k + 1), steps_per_epoch, last.c_str(),
                    f.out.c_str());
        return 130;
      }
    }
    progress.finish();
    const double train_loss = epoch_loss_sum / steps_per_epoch;
    epoch_loss_sum = 0;

    MetricsSummary val;
    if (!sides.val.empty()) val = evaluator.run(sides.val, false).summary;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    const double lr = scheduled_lr(adam, step);
    if (!sides.val.empty() && val.volume_dice_mean > best_dice) {
      best_dice = val.volume_dice_mean;
      best_epoch = epoch + 1;
      save_weights((run / "best.safetensors").string(), model);
    }
    save_last(step, 0.0);
    std::string row = csv_line({std::to_string(epoch + 1), std::to_string(step), fixed(train_loss, 6), fixed(val.bce, 6),
                                fixed(val.volume_dice_mean, 6), fixed(val.volume_dice_median, 6), fixed(val.slice_dice_mean, 6),
                                fixed(val.global_dice, 6), fixed(val.volume_iou_mean, 6), fixed(val.volume_iou_median, 6),
                                std::to_string(val.empty_volumes), fixed(lr, 8), fixed(seconds, 2)});
    if (sides.val.empty()) row = csv_line({std::to_string(epoch + 1), std::to_string(step), fixed(train_loss, 6), "", "", "", "", "", "", "", "", fixed(lr, 8), fixed(seconds, 2)});
    append_line((run / "metrics.csv").string(), row);
    Json record = Json::object();
    record.set("event", "epoch");
    record.set("epoch", epoch + 1);
    record.set("step", step);
    record.set("train_loss", train_loss);
    record.set("seconds", seconds);
    if (!sides.val.empty()) {
      record.set("val_bce", val.bce);
      record.set("val_dice_mean", val.volume_dice_mean);
      record.set("val_dice_median", val.volume_dice_median);
      record.set("val_slice_dice", val.slice_dice_mean);
      record.set("val_global_dice", val.global_dice);
      record.set("val_iou_mean", val.volume_iou_mean);
    }
    append_line(log.string(), record.dump());
    std::printf("epoch %d/%d: train loss %.4f, %s, %s\n", epoch + 1, f.epochs, train_loss,
                sides.val.empty() ? "no validation patients" : summary_line(val).c_str(), format_duration(seconds).c_str());
    std::fflush(stdout);
  }

  // The best model on the validation patients, in detail.
  if (!sides.val.empty() && best_epoch > 0) {
    load_weights(SafeTensors::load((run / "best.safetensors").string()), model);
    const Evaluation best = evaluator.run(sides.val, false);
    write_patient_table(run / "val_patients.csv", best.summary);
    write_overlays(run / "overlays", data, best);
    std::printf("best epoch %d: %s\n", best_epoch, summary_line(best.summary).c_str());
  }
  Json end = Json::object();
  end.set("event", "end");
  end.set("step", step);
  end.set("best_epoch", best_epoch);
  end.set("best_val_dice_mean", best_dice);
  end.set("finished", utc_now());
  append_line(log.string(), end.dump());
  std::printf("run folder %s (report: unet report %s)\n", f.out.c_str(), f.out.c_str());
  return 0;
}

}  // namespace unet
