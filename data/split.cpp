#include "data/split.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "engine/files.h"
#include "kernels/philox.h"

namespace unet {

namespace {

// Fisher-Yates with Philox draws: the same permutation on every machine (std::shuffle's is not
// specified, so it would differ between standard libraries).
template <class T>
void philox_shuffle(std::vector<T>& items, uint64_t seed, uint32_t epoch, RandomStream stream) {
  const PhiloxKey key = philox_key(seed);
  for (size_t i = items.size(); i > 1; --i) {
    const Philox4 r = philox4x32_10(philox_counter(static_cast<uint32_t>(i - 1), epoch, 0, stream), key);
    // A 64-bit draw modulo at most 2^31 items: the bias is below 2^-32.
    const size_t j = static_cast<size_t>(philox_u64(r, 0) % i);
    std::swap(items[i - 1], items[j]);
  }
}

int patient_count(double amount, int patients, const char* side) {
  if (!(amount >= 0)) throw Error(std::string("split: the ") + side + " amount must be zero or more");
  if (amount < 1) {
    const int count = static_cast<int>(std::lround(amount * patients));
    return amount > 0 ? std::max(count, 1) : 0;
  }
  if (amount != std::floor(amount)) {
    throw Error(std::string("split: ") + side + " " + std::to_string(amount) +
                " is neither a fraction below 1 nor a whole number of patients");
  }
  return static_cast<int>(amount);
}

// The patients in name order, checked for repeats.
std::vector<std::string> sorted_patients(const std::vector<std::string>& patients) {
  std::vector<std::string> order = patients;
  std::sort(order.begin(), order.end());
  if (std::adjacent_find(order.begin(), order.end()) != order.end()) {
    throw Error("split: patient '" + *std::adjacent_find(order.begin(), order.end()) + "' is listed twice");
  }
  return order;
}

}  // namespace

PatientSplit split_patients(const std::vector<std::string>& patients, double val, double test, uint64_t seed) {
  std::vector<std::string> order = sorted_patients(patients);
  const int n = static_cast<int>(order.size());
  const int test_count = patient_count(test, n, "test"), val_count = patient_count(val, n, "validation");
  if (test_count + val_count >= n) {
    throw Error("split: " + std::to_string(val_count) + " validation and " + std::to_string(test_count) +
                " test patients leave none of the " + std::to_string(n) + " to train on");
  }
  philox_shuffle(order, seed, 0, RandomStream::split);
  PatientSplit split;
  split.seed = seed;
  split.test.assign(order.begin(), order.begin() + test_count);
  split.val.assign(order.begin() + test_count, order.begin() + test_count + val_count);
  split.train.assign(order.begin() + test_count + val_count, order.end());
  for (auto* side : {&split.train, &split.val, &split.test}) std::sort(side->begin(), side->end());
  return split;
}

PatientSplit kfold_split(const std::vector<std::string>& patients, int folds, int fold, double test, uint64_t seed) {
  std::vector<std::string> order = sorted_patients(patients);
  const int n = static_cast<int>(order.size()), test_count = patient_count(test, n, "test");
  if (folds < 2) throw Error("split: --folds must be at least 2 (got " + std::to_string(folds) + ")");
  if (fold < 0 || fold >= folds) {
    throw Error("split: fold " + std::to_string(fold) + " is not in 0.." + std::to_string(folds - 1) + " (" +
                std::to_string(folds) + " folds)");
  }
  if (n - test_count < folds) {
    throw Error("split: " + std::to_string(folds) + " folds of the " + std::to_string(n - test_count) +
                " patients outside the test set leave a fold without validation patients");
  }
  philox_shuffle(order, seed, 0, RandomStream::split);
  PatientSplit split;
  split.seed = seed;
  split.folds = folds;
  split.fold = fold;
  split.test.assign(order.begin(), order.begin() + test_count);
  const int64_t rest = n - test_count;
  for (int part = 0; part < folds; ++part) {
    const auto begin = order.begin() + test_count + rest * part / folds;
    const auto end = order.begin() + test_count + rest * (part + 1) / folds;
    std::vector<std::string>& side = part == fold ? split.val : split.train;
    side.insert(side.end(), begin, end);
  }
  for (auto* side : {&split.train, &split.val, &split.test}) std::sort(side->begin(), side->end());
  return split;
}

Json split_to_json(const PatientSplit& split) {
  Json json = Json::object();
  json.set("seed", static_cast<int64_t>(split.seed));
  if (split.folds > 0) {
    json.set("folds", split.folds);
    json.set("fold", split.fold);
  }
  for (const auto& [name, side] : {std::pair{"train", &split.train}, {"val", &split.val}, {"test", &split.test}}) {
    Json list = Json::array();
    for (const auto& patient : *side) list.push(patient);
    json.set(name, list);
  }
  return json;
}

PatientSplit split_from_json(const Json& json, const std::string& source) {
  PatientSplit split;
  std::set<std::string> seen;
  try {
    split.seed = static_cast<uint64_t>(json.at("seed").as_integer());
    if (const Json* folds = json.find("folds")) {
      split.folds = static_cast<int>(folds->as_integer());
      split.fold = static_cast<int>(json.at("fold").as_integer());
      if (split.folds < 2 || split.fold < 0 || split.fold >= split.folds) throw Error("fold out of range");
    }
    for (const auto& [name, side] : {std::pair{"train", &split.train}, {"val", &split.val}, {"test", &split.test}}) {
      for (const Json& patient : json.at(name).items()) {
        if (!seen.insert(patient.as_string()).second) {
          throw Error("patient '" + patient.as_string() + "' is listed twice");
        }
        side->push_back(patient.as_string());
      }
    }
  } catch (const Error& error) {
    throw Error(source + ": not a patient split (" + error.what() + ")");
  }
  return split;
}

void save_split(const std::string& path, const PatientSplit& split) {
  write_file_atomic(path, split_to_json(split).dump() + "\n");
}

PatientSplit load_split(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return split_from_json(Json::parse(text), path);
  } catch (const Error& error) {
    const std::string what = error.what();
    if (what.rfind(path, 0) == 0) throw;
    throw Error(path + ": not a patient split (" + what + ")");
  }
}

SplitSlices split_slices(const Dataset& data, const PatientSplit& split) {
  std::map<std::string, int> side_of;  // 0 train, 1 val, 2 test
  for (const auto& patient : split.train) side_of[patient] = 0;
  for (const auto& patient : split.val) side_of[patient] = 1;
  for (const auto& patient : split.test) side_of[patient] = 2;
  std::vector<int> volume_side(data.patients.size());
  for (size_t v = 0; v < data.patients.size(); ++v) {
    const auto found = side_of.find(data.patients[v]);
    if (found == side_of.end()) {
      throw Error("split: patient '" + data.patients[v] + "' of " + data.root + " is in none of the split's lists");
    }
    volume_side[v] = found->second;
    side_of.erase(found);
  }
  if (!side_of.empty()) {
    throw Error("split: patient '" + side_of.begin()->first + "' of the split is not in " + data.root);
  }
  SplitSlices slices;
  for (int64_t s = 0; s < data.slices(); ++s) {
    auto& side = volume_side[data.volume[s]] == 0 ? slices.train : volume_side[data.volume[s]] == 1 ? slices.val : slices.test;
    side.push_back(static_cast<int32_t>(s));
  }
  return slices;
}

EpochSampler::EpochSampler(std::vector<int32_t> slices, const std::vector<uint8_t>& tumour, int oversample, int batch,
                           uint64_t seed)
    : batch_(batch), seed_(seed) {
  if (batch < 1) throw Error("sampler: batch must be at least 1");
  if (oversample < 1) throw Error("sampler: oversampling must be at least 1");
  if (slices.empty()) throw Error("sampler: no training slices");
  std::sort(slices.begin(), slices.end());
  for (const int32_t s : slices) {
    if (s < 0 || static_cast<size_t>(s) >= tumour.size()) throw Error("sampler: slice id " + std::to_string(s) + " out of range");
    const int copies = tumour[s] ? oversample : 1;
    pool_.insert(pool_.end(), copies, s);
  }
  steps_per_epoch_ = static_cast<int>((pool_.size() + batch - 1) / batch);
}

std::vector<int32_t> EpochSampler::order(int64_t epoch) const {
  std::vector<int32_t> shuffled = pool_;
  philox_shuffle(shuffled, seed_, static_cast<uint32_t>(epoch), RandomStream::shuffle);
  std::vector<int32_t> out(static_cast<size_t>(steps_per_epoch_) * batch_);
  for (size_t i = 0; i < out.size(); ++i) out[i] = shuffled[i % shuffled.size()];
  return out;
}

}  // namespace unet
