// unet train: trains a U-Net on a folder of MRI slices and leaves a run folder behind
// (docs/training.md): log.jsonl, metrics.csv, split.json, best.safetensors (weights, by validation
// per-volume Dice), last.safetensors (resumable), val_patients.csv and overlays/. Under a launcher
// (mpirun -np R unet train ...) each process is one rank of a data-parallel run (docs/distributed.md).
#include <cstdio>

#include "engine/comm.h"
#include "engine/paths.h"
#include "models/training_run.h"
#if UNET_WITH_NCCL
#include "engine/nccl_link.h"
#endif
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/data_options.h"

namespace unet {

namespace {

// What the flags write into: the run's own settings where a flag is one already (most are), the
// rest in the form a user types them, for training_config().
struct TrainFlags {
  TrainingConfig run;
  DataOptions data;
  AugmentOptions augment;
  std::string lr_schedule = "constant", loss = "bce", device = "auto", precision = "auto", graph = "on", out;
  int64_t seed = 0;
  bool resume = false;
};

// Every flag of unet train, once: the parser, the run's identity (log.jsonl's "flags", the
// checkpoint's "identity"), what resume restores and what it refuses all read this table. A flag
// that changes what the run computes has FlagRole::identity; one that may change on resume,
// FlagRole::resumable; one that does neither, no role. A new flag is its TrainingConfig field and
// one line here (and a line in training_config() only if users type it in another form).
void describe_flags(Options& options, TrainFlags& f) {
  constexpr FlagRole identity = FlagRole::identity, resumable = FlagRole::resumable;
  add_data_options(options, &f.data, true, /*data_required=*/false, identity);
  options.add("val-frac", &f.run.val_fraction, "F", "fraction of patients for validation (split by patient)").at_least(0)
      .role(identity)
      .add("val-patients", &f.run.val_patients, "N", "number of validation patients (instead of --val-frac)").at_least(0)
      .shown_default("from --val-frac").role(identity)
      .add("test-patients", &f.run.test_patients, "N", "patients held out for `unet eval --split` only").at_least(0)
      .role(identity)
      .add("folds", &f.run.folds, "K", "K-fold cross-validation by patient (instead of --val-frac/--val-patients)")
      .shown_default("none").role(identity)
      .add("fold", &f.run.fold, "I", "with --folds: validate on part I (0..K-1) and train on the others")
      .role(identity)
      .add("epochs", &f.run.epochs, "E", "passes over the training slices").at_least(1).role(resumable)
      .add("batch", &f.run.batch, "B", "slices per step").at_least(1).role(identity)
      .add("lr", &f.run.adam.lr, "LR", "Adam learning rate").at_least(0).role(identity)
      .add("lr-schedule", &f.lr_schedule, "S", "constant or cosine (decay to 0 at the last step)")
      .choices({"constant", "cosine"}).role(identity)
      .add("warmup-steps", &f.run.adam.warmup_steps, "N", "linear learning-rate warm-up").at_least(0).role(identity)
      .add("weight-decay", &f.run.adam.weight_decay, "W", "AdamW's decoupled weight decay").at_least(0).role(identity)
      .add("loss", &f.loss, "LOSS", "bce, dice or bce+dice").choices({"bce", "dice", "bce+dice"}).role(identity)
      .add("oversample", &f.run.oversample, "K", "show slices with tumour K times per epoch").at_least(1).role(identity)
      .add("base-width", &f.run.model.base_width, "W", "channels of the first level (64: the specified model)")
      .at_least(1).role(identity)
      .add("depth", &f.run.model.depth, "D", "pooling steps (3: the specified model)").at_least(1).role(identity)
      .add("init", &f.run.init, "FILE", "start from these weights instead of a fresh initialisation").role(identity)
      // Resuming keeps the device and graph mode unless asked otherwise: only they continue the run
      // bit for bit (cpu and sim agree to rounding, not to the bit).
      .add("device", &f.device, "DEVICE", "auto (the GPU if there is one, else cpu), cuda, cpu or sim")
      .choices({"auto", "cuda", "cpu", "sim"}).role(resumable)
      .add("graph", &f.graph, "on|off", "replay each step as a CUDA graph").choices({"on", "off"}).role(resumable)
      .add("seed", &f.seed, "S", "seed of the split, the initialisation, the shuffling and the augmentation")
      .at_least(0).role(identity)
      .add("out", &f.out, "RUN_DIR", "run folder to write").required()
      .flag("resume", &f.resume, "continue the run in RUN_DIR from its last checkpoint")
      .add("stop-after-steps", &f.run.stop_after_steps, "N", "stop as if interrupted after N steps (for testing resume)")
      .at_least(0).shown_default("never")
      .add("collective-timeout", &f.run.collective_timeout, "SECONDS",
           "under mpirun: how long a rank waits for the others in a collective before it gives up")
      .at_least(1);
  // The precision changes every value the run computes, so unlike the device it may not change on
  // resume (saved as resolved, like the device).
  add_precision_option(options, &f.precision, identity);
  add_augment_options(options, &f.augment, identity);
}

// The run's settings, typed, from the flags (the device already resolved).
TrainingConfig training_config(const TrainFlags& f, DeviceKind kind, const Options& options) {
  TrainingConfig config = f.run;
  config.data = f.data.data;
  config.find = f.data.find();
  config.load = f.data.load();
  config.zscore = f.data.zscore;
  config.adam.decoupled_weight_decay = config.adam.weight_decay > 0;
  config.adam.schedule = f.lr_schedule == "cosine" ? LrSchedule::cosine : LrSchedule::constant;
  config.loss = parse_loss(f.loss);
  config.augment = f.augment.ranges();
  config.seed = static_cast<uint64_t>(f.seed);
  config.device = kind;
  config.precision = parse_precision(f.precision);
  config.graph = f.graph == "on";
  config.identity = options.saved(FlagRole::identity);
  config.resumable = options.saved(FlagRole::resumable);
  return config;
}

}  // namespace

int command_train(const Args& args) {
  TrainFlags f;
  Options options("train",
                  "Trains the U-Net on a folder of MRI slices (kaggle_3m, or images/ + masks/). Writes RUN_DIR:\n"
                  "log.jsonl, metrics.csv, split.json, best.safetensors (by validation per-volume Dice),\n"
                  "last.safetensors (resumable), val_patients.csv and overlays/. Ctrl-C finishes the step, saves\n"
                  "a resumable checkpoint and stops; --resume continues exactly where it stopped.");
  describe_flags(options, f);
  int threads = 0;
  add_threads_option(options, &threads);
  if (!options.parse(args)) return 0;
  apply_threads(threads);
  if (!f.resume && f.data.data.empty()) throw UsageError("train: --data is required (unless resuming with --resume)");
  check_validation_flags(options, f.run);

  if (!f.data.data.empty()) f.data.data = canonical_path(f.data.data).string();  // resumable from anywhere
  if (!f.resume) {  // refused before the run folder is touched
    refuse_output_inside_input(f.out, "--out", f.data.data, "--data");
    if (!f.run.init.empty()) {
      check_readable_file(f.run.init, "--init");
      check_weights_file(f.run.init, f.run.model);
    }
  }
  TrainingRun run(f.out, f.resume);
  if (f.resume) {
    options.restore(run.resumed_state().at("identity"), FlagRole::identity);
    options.restore(run.resumed_state(), FlagRole::resumable);
    refuse_output_inside_input(f.out, "--out", f.data.data, "--data");
  }
  const Communicator& comm = Communicator::world();
  check_batch_among_ranks(f.run.batch, comm.size());
#if UNET_WITH_NCCL
  // Before anything touches the cuda device: each rank takes the GPU of its rank on the machine.
  const bool may_use_gpu = f.device == "cuda" || f.device == "auto";
  if (comm.launched() && may_use_gpu && cuda_available()) select_local_gpu(comm.local_rank());
#endif
  const DeviceKind kind = resolve_device(f.device, comm.rank() == 0);
  f.device = device_name(kind);  // saved as resolved: a resumed run stays on it
  // A run saved before --precision existed computed in fp32, whatever its device's default is now.
  if (f.resume && run.resumed_state().at("identity").find("precision") == nullptr) f.precision = "fp32";
  f.precision = precision_name(resolve_precision(f.precision, kind));
  const TrainingConfig config = training_config(f, kind, options);
  const int status = run.run(config);
  if (status == 0 && comm.rank() == 0) {
    std::printf("run folder %s (report: unet report %s)\n", f.out.c_str(), f.out.c_str());
  }
  return status;
}

}  // namespace unet
