// unet train: trains a U-Net on a folder of MRI slices and leaves a run folder behind
// (docs/training.md): log.jsonl, metrics.csv, split.json, best.safetensors (weights, by validation
// per-volume Dice), last.safetensors (resumable), val_patients.csv and overlays/.
#include <cstdio>

#include "models/training_run.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/data_options.h"

namespace unet {

namespace {

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

// The run's settings, typed, from the flags (the device already resolved).
TrainingConfig training_config(const TrainFlags& f, DeviceKind kind) {
  TrainingConfig config;
  config.data = f.data.data;
  config.find = f.data.find();
  config.load = f.data.load();
  config.zscore = f.data.zscore;
  config.val_fraction = f.val_frac;
  config.val_patients = f.val_patients;
  config.test_patients = f.test_patients;
  config.folds = f.folds;
  config.fold = f.fold;
  config.model = f.model;
  config.init = f.init;
  config.epochs = f.epochs;
  config.batch = f.batch;
  config.oversample = f.oversample;
  config.adam.lr = f.lr;
  config.adam.weight_decay = f.weight_decay;
  config.adam.decoupled_weight_decay = f.weight_decay > 0;
  config.adam.schedule = f.lr_schedule == "cosine" ? LrSchedule::cosine : LrSchedule::constant;
  config.adam.warmup_steps = f.warmup_steps;
  config.loss = parse_loss(f.loss);
  config.augment = f.augment.ranges();
  config.seed = static_cast<uint64_t>(f.seed);
  config.device = kind;
  config.graph = f.graph == "on";
  config.stop_after_steps = f.stop_after_steps;
  config.identity = f.identity();
  config.resumable.set("epochs", f.epochs);
  config.resumable.set("device", device_name(kind));
  config.resumable.set("graph", f.graph);
  return config;
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

  TrainingRun run(f.out, f.resume);
  if (f.resume) {
    const Json& state = run.resumed_state();
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
  }
  if (!f.init.empty() && !f.resume) check_readable_file(f.init, "--init");
  const TrainingConfig config = training_config(f, resolve_device(f.device, true));
  const int status = run.run(config);
  if (status == 0) std::printf("run folder %s (report: unet report %s)\n", f.out.c_str(), f.out.c_str());
  return status;
}

}  // namespace unet
