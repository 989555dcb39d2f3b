// A training run (docs/training.md): the run folder, resuming, the patient split, epochs of Trainer
// steps, validation after each epoch, the choice of the best weights, checkpoints, logs and
// overlays. `unet train` parses its flags into a TrainingConfig and hands it over.
//
// The run folder:
//   log.jsonl         one JSON record per event (start/resume, epoch, interrupted, end)
//   metrics.csv       one row per epoch
//   split.json        the patient split (written once, read back on resume)
//   best.safetensors  the weights of the epoch with the best validation per-volume mean Dice
//   last.safetensors  a training checkpoint (weights, Adam's moments, the state below)
//   (both record the run's preprocessing: the image size and --zscore, models/checkpoint.h)
//   val_patients.csv  the best weights on each validation patient
//   overlays/         the best, median and worst validation patients' most tumorous slice
//
// Resuming continues bit for bit: the epoch's order, every augmentation and the learning rate are
// functions of the seed and the step, and last.safetensors holds the step, Adam's moments, the
// running epoch loss and the best epoch so far.
//
// Data parallel (docs/distributed.md): when the process is one of R ranks (Communicator::world()),
// each trains on its batch / R samples of every global batch, validation is sharded by patient and
// its per-slice scores summed across the ranks, and rank 0 alone writes the run folder and prints.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "data/dataset.h"
#include "engine/json.h"
#include "engine/optimizer.h"
#include "engine/precision.h"
#include "engine/safetensors.h"
#include "kernels/augment.h"
#include "kernels/loss.h"
#include "models/checkpoint.h"
#include "models/run_folder.h"
#include "models/unet_config.h"

namespace unet {

struct TrainingConfig {
  std::string data;  // the dataset folder
  FindOptions find;
  LoadOptions load;  // load.image_size: the slices' height and width
  bool zscore = false;
  // The split by patient: val_patients patients for validation, or val_fraction of them when -1.
  double val_fraction = 0.1;
  int val_patients = -1;
  int test_patients = 0;
  int folds = 0, fold = 0;  // K-fold cross-validation (data/split.h): fold `fold` of `folds`; 0 folds: as above
  UNetConfig model;
  std::string init;  // weights to start from; "" for a fresh initialisation from the seed
  int epochs = 30, batch = 16, oversample = 1;
  AdamConfig adam;  // total_steps is set by the run, from the epochs
  LossConfig loss;
  AugmentRanges augment;
  uint64_t seed = 0;
  DeviceKind device = DeviceKind::cpu;
  Precision precision = Precision::fp32;  // part of the run's identity (engine/precision.h)
  bool graph = true;
  int64_t stop_after_steps = 0;  // for testing resume: stop as if interrupted after this many steps (0: never)
  double collective_timeout = 300;  // seconds a rank waits for the others (data parallel only)

  // The command's settings, recorded in every checkpoint's state: `identity` (what makes the run
  // this run) under "identity", and `resumable` (what may change on resume) key by key at the top.
  Json identity = Json::object();
  Json resumable = Json::object();
};

class TrainingRun {
 public:
  // Opens and locks the run folder for the life of this object (models/run_folder.h). With
  // `resume`, reads its last checkpoint and checks best.safetensors (refusing a folder without a
  // checkpoint); without, refuses a folder that already holds a run.
  TrainingRun(std::filesystem::path folder, bool resume);

  // When resuming: the state last.safetensors was saved with (its "identity" holds the flags that
  // make the run, the other keys the step and what may change on resume).
  const Json& resumed_state() const { return state_; }

  // Trains until config.epochs are done (returns 0) or the run is interrupted (Ctrl-C, SIGTERM or
  // stop_after_steps; a checkpoint is saved and 130 returned; with several ranks, a signal to any of
  // them stops all at the same step). When resuming, `config` must be the run's own (restored from
  // resumed_state()). Throws unet::Error, also when the loss or a parameter stops being finite
  // (leaving the last good checkpoint as it was; the parameters are checked at the end of every
  // epoch and before every checkpoint).
  int run(const TrainingConfig& config);

 private:
  std::filesystem::path folder_;
  std::optional<RunFolder> lock_;  // held by rank 0, the run folder's one writer
  std::optional<SafeTensors> checkpoint_;  // last.safetensors when resuming
  Json state_ = Json::object();
};

}  // namespace unet
