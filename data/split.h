// The patient split and the order of each epoch's samples.
//
// Slices are split by patient, never by slice: neighbouring slices of one volume are nearly the
// same image, so a patient on two sides would leak the validation answers into training. The
// split is a pure function of the patient names and the seed, is written to the run folder as
// split.json, and is read back for evaluation, which then sees exactly the patients training did
// not.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "engine/json.h"

namespace unet {

struct PatientSplit {
  uint64_t seed = 0;
  int folds = 0, fold = 0;  // a K-fold cross-validation split's K and index; 0 folds: a plain split
  std::vector<std::string> train, val, test;  // each in name order
};

// `val` and `test` below 1 are fractions of the patients (rounded to nearest, at least one when
// not zero), whole numbers from 1 up are counts. The patients are shuffled by the seed
// (Philox, RandomStream::split); the first `test` go to test, the next `val` to validation, the
// rest to training, so the test patients do not depend on how many validate.
PatientSplit split_patients(const std::vector<std::string>& patients, double val, double test, uint64_t seed);

// Fold `fold` (0 .. folds-1, as nnU-Net numbers them) of a K-fold split by patient: the same
// shuffle as split_patients sets the `test` amount apart (the same test patients as a plain split
// with that seed), then cuts the rest, in shuffled order, into `folds` contiguous parts whose sizes
// differ by at most one. Fold i validates on part i and trains on the others, so the K validation
// parts are disjoint and cover every patient outside the test set.
PatientSplit kfold_split(const std::vector<std::string>& patients, int folds, int fold, double test, uint64_t seed);

// {"seed": S, ["folds": K, "fold": i,] "train": [...], "val": [...], "test": [...]}; a split.json
// without "folds" (a plain split, or one written before folds existed) reads as 0 folds.
Json split_to_json(const PatientSplit& split);
// Throws unet::Error naming `source` if the JSON is not a split or names a patient twice.
PatientSplit split_from_json(const Json& json, const std::string& source);
void save_split(const std::string& path, const PatientSplit& split);  // atomic
PatientSplit load_split(const std::string& path);

// The dataset's slice ids on each side. The split and the dataset must name the same patients:
// otherwise it is one unet::Error naming the first patient found on one side only.
struct SplitSlices {
  std::vector<int32_t> train, val, test;
};
SplitSlices split_slices(const Dataset& data, const PatientSplit& split);

// The order of each epoch: every training slice once, those with tumour `oversample` times,
// shuffled by (seed, epoch) (Philox, RandomStream::shuffle). An epoch is ceil(samples / batch)
// steps; the last batch is completed from the start of the same order, so every batch is full and
// the step's shapes never change (a captured graph replays them).
class EpochSampler {
 public:
  EpochSampler(std::vector<int32_t> slices, const std::vector<uint8_t>& tumour /*(all slices)*/, int oversample,
               int batch, uint64_t seed);

  int batch() const { return batch_; }
  int steps_per_epoch() const { return steps_per_epoch_; }
  int64_t samples_per_epoch() const { return static_cast<int64_t>(pool_.size()); }
  std::vector<int32_t> order(int64_t epoch) const;  // (steps_per_epoch * batch) slice ids

 private:
  std::vector<int32_t> pool_;  // each sample of an epoch, in slice order
  int batch_;
  int steps_per_epoch_;
  uint64_t seed_;
};

}  // namespace unet
