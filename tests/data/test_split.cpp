// The patient split (no patient on two sides, reproducible, written and read back) and the epoch
// orders (every sample each epoch, tumour oversampling, full batches, reproducible).
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "data/split.h"
#include "kernels/backend.h"
#include "tests/data/data_test_util.h"
#include "tests/test_util.h"

using namespace unet;
using test::error_of;

namespace {

std::vector<std::string> patient_names(int n) {
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back("TCGA_" + std::to_string(1000 + i * 37));
  return names;
}

// A dataset of `patients` volumes with `slices` slices each (no pixels: the split needs none).
Dataset dataset_of(const std::vector<std::string>& patients, int slices) {
  Dataset data;
  data.root = "/data";
  data.patients = patients;
  for (size_t v = 0; v < patients.size(); ++v) {
    for (int s = 0; s < slices; ++s) data.volume.push_back(static_cast<int32_t>(v));
  }
  return data;
}

}  // namespace

TEST_CASE("split: every patient on exactly one side, counts and fractions", "[split]") {
  const auto patients = patient_names(110);
  for (uint64_t seed : {0ull, 1ull, 42ull, 0xffffffffffffffffull}) {
    const PatientSplit split = split_patients(patients, 10, 0.1, seed);
    CHECK(split.val.size() == 10);
    CHECK(split.test.size() == 11);  // 0.1 of 110
    CHECK(split.train.size() == 89);
    std::multiset<std::string> all(split.train.begin(), split.train.end());
    all.insert(split.val.begin(), split.val.end());
    all.insert(split.test.begin(), split.test.end());
    CHECK(all == std::multiset<std::string>(patients.begin(), patients.end()));  // each exactly once
    CHECK(std::is_sorted(split.train.begin(), split.train.end()));
  }
  // A small fraction of few patients still takes one; zero takes none.
  const PatientSplit small = split_patients(patient_names(4), 0.1, 0, 3);
  CHECK(small.val.size() == 1);
  CHECK(small.test.empty());
  CHECK(small.train.size() == 3);
}

TEST_CASE("split: reproducible from the seed, different across seeds", "[split]") {
  const auto patients = patient_names(40);
  auto reversed = patients;
  std::reverse(reversed.begin(), reversed.end());
  const PatientSplit a = split_patients(patients, 5, 5, 7);
  const PatientSplit b = split_patients(reversed, 5, 5, 7);  // the input order does not matter
  CHECK(a.val == b.val);
  CHECK(a.test == b.test);
  CHECK(a.train == b.train);
  const PatientSplit c = split_patients(patients, 5, 5, 8);
  CHECK(c.val != a.val);
  // The test patients do not depend on how many validate.
  CHECK(split_patients(patients, 9, 5, 7).test == a.test);
  // A known answer, so that a change to the shuffle (which would silently move patients between
  // sides of existing runs) shows.
  const PatientSplit known = split_patients(patient_names(6), 1, 1, 1);
  CHECK(known.val == std::vector<std::string>{"TCGA_1037"});
  CHECK(known.test == std::vector<std::string>{"TCGA_1148"});
}

TEST_CASE("split: impossible requests are errors", "[split]") {
  const auto patients = patient_names(5);
  CHECK(error_of([&] { split_patients(patients, 3, 2, 1); }) ==
        "split: 3 validation and 2 test patients leave none of the 5 to train on");
  CHECK(error_of([&] { split_patients(patients, 1.5, 0, 1); }) ==
        "split: validation 1.500000 is neither a fraction below 1 nor a whole number of patients");
  CHECK(error_of([&] { split_patients(patients, -1, 0, 1); }) == "split: the validation amount must be zero or more");
  CHECK(error_of([&] { split_patients({"a", "b", "a"}, 1, 0, 1); }) == "split: patient 'a' is listed twice");
}

TEST_CASE("split: written to split.json and read back the same", "[split]") {
  test::TempDir dir;
  const PatientSplit split = split_patients(patient_names(12), 2, 2, 0xfedcba9876543210ull);
  save_split(dir / "split.json", split);
  const PatientSplit back = load_split(dir / "split.json");
  CHECK(back.seed == split.seed);
  CHECK(back.train == split.train);
  CHECK(back.val == split.val);
  CHECK(back.test == split.test);

  test::write_bytes(dir / "bad.json", {'{', '}'});
  CHECK(error_of([&] { load_split(dir / "bad.json"); }) ==
        dir / "bad.json" + ": not a patient split (JSON: missing key 'seed')");
  const std::string twice = R"({"seed": 1, "train": ["a", "b"], "val": ["b"], "test": []})";
  test::write_bytes(dir / "twice.json", std::vector<uint8_t>(twice.begin(), twice.end()));
  CHECK(error_of([&] { load_split(dir / "twice.json"); }) ==
        dir / "twice.json" + ": not a patient split (patient 'b' is listed twice)");
  CHECK_THAT(error_of([&] { load_split(dir / "missing.json"); }), Catch::StartsWith(dir / "missing.json" + ": cannot open"));
}

TEST_CASE("split: the slices of each side, and a split that does not fit the dataset", "[split]") {
  const auto patients = patient_names(6);
  const Dataset data = dataset_of(patients, 3);
  const PatientSplit split = split_patients(patients, 1, 1, 5);
  const SplitSlices slices = split_slices(data, split);
  CHECK(slices.train.size() == 12);
  CHECK(slices.val.size() == 3);
  CHECK(slices.test.size() == 3);
  std::map<int32_t, int> side_of_volume;
  for (auto* side : {&slices.train, &slices.val, &slices.test}) {
    for (int32_t s : *side) {
      const int32_t v = data.volume[s];
      const int side_index = side == &slices.train ? 0 : side == &slices.val ? 1 : 2;
      CHECK(side_of_volume.emplace(v, side_index).first->second == side_index);  // no volume on two sides
    }
  }
  CHECK(patients[data.volume[slices.val[0]]] == split.val[0]);

  PatientSplit missing = split;
  missing.train.pop_back();
  const std::string dropped = split.train.back();
  CHECK(error_of([&] { split_slices(data, missing); }) ==
        "split: patient '" + dropped + "' of /data is in none of the split's lists");
  PatientSplit extra = split;
  extra.test.push_back("TCGA_9999");
  CHECK(error_of([&] { split_slices(data, extra); }) == "split: patient 'TCGA_9999' of the split is not in /data");
}

TEST_CASE("sampler: each epoch holds every sample, in a new order, in full batches", "[sampler]") {
  std::vector<int32_t> train = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29};
  std::vector<uint8_t> tumour(30, 0);
  const EpochSampler sampler(train, tumour, 1, 4, 99);
  CHECK(sampler.steps_per_epoch() == 3);  // ceil(10 / 4)
  CHECK(sampler.samples_per_epoch() == 10);
  const auto first = sampler.order(0), second = sampler.order(1);
  REQUIRE(first.size() == 12);
  std::vector<int32_t> head(first.begin(), first.begin() + 10);
  std::sort(head.begin(), head.end());
  CHECK(head == train);
  // The last batch is completed from the start of the same order.
  CHECK(first[10] == first[0]);
  CHECK(first[11] == first[1]);
  CHECK(first != second);
  CHECK(sampler.order(0) == first);                             // reproducible
  CHECK(EpochSampler(train, tumour, 1, 4, 100).order(0) != first);  // and seeded

  // A batch larger than the data wraps around as often as needed.
  const EpochSampler wide({4, 8}, tumour, 1, 5, 1);
  CHECK(wide.steps_per_epoch() == 1);
  const auto order = wide.order(3);
  CHECK(std::count(order.begin(), order.end(), 4) + std::count(order.begin(), order.end(), 8) == 5);
}

TEST_CASE("sampler: tumour slices oversampled", "[sampler]") {
  std::vector<uint8_t> tumour = {1, 0, 0, 1, 0, 0};
  const EpochSampler sampler({0, 1, 2, 3, 4, 5}, tumour, 3, 2, 5);
  CHECK(sampler.samples_per_epoch() == 10);  // 4 without tumour + 2 x 3
  CHECK(sampler.steps_per_epoch() == 5);
  const auto order = sampler.order(0);
  CHECK(std::count(order.begin(), order.end(), 0) == 3);
  CHECK(std::count(order.begin(), order.end(), 3) == 3);
  CHECK(std::count(order.begin(), order.end(), 1) == 1);
  CHECK(error_of([&] { EpochSampler({0, 9}, tumour, 1, 2, 5); }) == "sampler: slice id 9 out of range");
  CHECK(error_of([&] { EpochSampler({}, tumour, 1, 2, 5); }) == "sampler: no training slices");
}

TEST_CASE("split: K folds are disjoint, cover every patient outside the test set, and are fixed by the seed",
          "[split]") {
  const auto patients = patient_names(23);
  const int folds = 5;
  const PatientSplit plain = split_patients(patients, 2, 3, 11);
  std::multiset<std::string> validated;
  for (int fold = 0; fold < folds; ++fold) {
    const PatientSplit split = kfold_split(patients, folds, fold, 3, 11);
    CHECK(split.folds == folds);
    CHECK(split.fold == fold);
    CHECK(split.test == plain.test);  // the same test patients as a plain split with this seed
    CHECK((split.val.size() == 4 || split.val.size() == 5));  // 20 patients in 5 parts
    CHECK(split.train.size() + split.val.size() == 20);
    std::set<std::string> sides(split.train.begin(), split.train.end());
    for (const auto& p : split.val) CHECK(sides.insert(p).second);  // no patient trains and validates
    for (const auto& p : split.test) CHECK(sides.insert(p).second);
    CHECK(sides.size() == patients.size());
    validated.insert(split.val.begin(), split.val.end());
    CHECK(kfold_split(patients, folds, fold, 3, 11).val == split.val);  // fixed by the seed
  }
  // Every patient outside the test set validates exactly once.
  std::multiset<std::string> expected(patients.begin(), patients.end());
  for (const auto& p : plain.test) expected.erase(p);
  CHECK(validated == expected);
  CHECK(kfold_split(patients, folds, 0, 3, 12).val != kfold_split(patients, folds, 0, 3, 11).val);
  // Sizes as even as they can be: 7 patients in 3 folds are 2, 2 and 3.
  std::vector<size_t> sizes;
  for (int fold = 0; fold < 3; ++fold) sizes.push_back(kfold_split(patient_names(7), 3, fold, 0, 1).val.size());
  std::sort(sizes.begin(), sizes.end());
  CHECK(sizes == std::vector<size_t>{2, 2, 3});
}

TEST_CASE("split: impossible fold requests are errors", "[split]") {
  const auto patients = patient_names(6);
  CHECK(error_of([&] { kfold_split(patients, 5, 5, 0, 1); }) == "split: fold 5 is not in 0..4 (5 folds)");
  CHECK(error_of([&] { kfold_split(patients, 5, -1, 0, 1); }) == "split: fold -1 is not in 0..4 (5 folds)");
  CHECK(error_of([&] { kfold_split(patients, 1, 0, 0, 1); }) == "split: --folds must be at least 2 (got 1)");
  CHECK(error_of([&] { kfold_split(patients, 5, 0, 2, 1); }) ==
        "split: 5 folds of the 4 patients outside the test set leave a fold without validation patients");
}

TEST_CASE("split: a fold is recorded in split.json, and a split.json without folds still reads", "[split]") {
  test::TempDir dir;
  const PatientSplit split = kfold_split(patient_names(10), 5, 3, 1, 9);
  save_split(dir / "split.json", split);
  const PatientSplit back = load_split(dir / "split.json");
  CHECK(back.folds == 5);
  CHECK(back.fold == 3);
  CHECK(back.val == split.val);
  CHECK(back.train == split.train);
  const std::string old = R"({"seed": 1, "train": ["a", "b"], "val": ["c"], "test": []})";
  test::write_bytes(dir / "old.json", std::vector<uint8_t>(old.begin(), old.end()));
  const PatientSplit plain = load_split(dir / "old.json");
  CHECK(plain.folds == 0);
  CHECK(plain.val == std::vector<std::string>{"c"});
  const std::string bad = R"({"seed": 1, "folds": 5, "fold": 5, "train": ["a"], "val": ["c"], "test": []})";
  test::write_bytes(dir / "bad.json", std::vector<uint8_t>(bad.begin(), bad.end()));
  CHECK(error_of([&] { load_split(dir / "bad.json"); }) == dir / "bad.json" + ": not a patient split (fold out of range)");
}
