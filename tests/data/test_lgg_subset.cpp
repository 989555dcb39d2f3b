// The 10-patient LGG subset in ../shared/data/lgg-subset, where it is present (label data): it
// loads with the counts the issue states, in numeric slice order, and nothing under it changes.
// Without it every test exits 77, which CTest reports as skipped.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "data/dataset.h"
#include "data/resident.h"
#include "models/trainer.h"
#include "tests/data/data_test_util.h"

using namespace unet;
namespace fs = std::filesystem;

namespace {

const std::string subset = UNET_LGG_SUBSET;

void require_subset() {
  if (!fs::is_directory(fs::path(subset) / "kaggle_3m")) {
    std::printf("skipped: %s/kaggle_3m not found\n", subset.c_str());
    std::exit(77);
  }
}

}  // namespace

TEST_CASE("lgg subset: 10 patients, 433 slices, 154 with tumour, nothing written", "[lgg]") {
  require_subset();
  const auto before = test::snapshot(subset);
  const auto start = std::chrono::steady_clock::now();
  const Dataset data = load_dataset(subset);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("loaded %lld slices in %.3f s\n", static_cast<long long>(data.slices()), seconds);

  CHECK(data.layout == Layout::kaggle_3m);
  CHECK(data.patients.size() == 10);
  CHECK(data.slices() == 433);
  int tumour = 0;
  for (uint8_t t : data.tumour) tumour += t;
  CHECK(tumour == 154);
  CHECK(data.height == 256);
  CHECK(data.width == 256);
  for (const auto& size : data.file_sizes) CHECK(size == std::pair<int, int>{256, 256});  // the resize is a no-op
  // Masks are 0/255 on disk, 0/1 here; about 1% of pixels are tumour.
  int64_t tumour_pixels = 0;
  for (uint8_t m : data.masks) tumour_pixels += m;
  CHECK(*std::max_element(data.masks.begin(), data.masks.end()) == 1);
  CHECK(static_cast<double>(tumour_pixels) / data.masks.size() > 0.005);
  CHECK(static_cast<double>(tumour_pixels) / data.masks.size() < 0.02);
  // Slices in numeric order within each patient: _1, _2, ..., _10, ...
  int64_t previous_volume = -1, expected = 0;
  for (int64_t s = 0; s < data.slices(); ++s) {
    expected = data.volume[s] == previous_volume ? expected + 1 : 1;
    previous_volume = data.volume[s];
    const std::string stem = fs::path(data.files[s]).stem().string();
    REQUIRE(stem.substr(stem.rfind('_') + 1) == std::to_string(expected));
  }
  CHECK(test::snapshot(subset) == before);
}

TEST_CASE("lgg subset: unet dataset reports it and the load time", "[lgg]") {
  require_subset();
  const test::CommandResult result = test::run_unet("dataset --data '" + subset + "'");
  std::printf("%s", result.output.c_str());
  CHECK(result.exit_status == 0);
  CHECK_THAT(result.output, Catch::Contains("patients      10"));
  CHECK_THAT(result.output, Catch::Contains("slices        433 (154 with tumour, 35.6%)"));
}

TEST_CASE("lgg subset: the per-volume z-score table is sane", "[lgg]") {
  require_subset();
  const Dataset data = load_dataset(subset);
  const ZScoreTable table = volume_zscore(data);
  REQUIRE(table.mean.size() == 30);
  for (size_t i = 0; i < table.mean.size(); ++i) {
    CHECK(table.mean[i] > 0.0f);
    CHECK(table.mean[i] < 0.5f);  // mostly black background
    CHECK(table.stddev[i] > 0.01f);
    CHECK(table.stddev[i] < 0.5f);
  }
}

TEST_CASE("lgg subset: a small model overfits four real slices on cpu (training Dice > 0.9)", "[lgg]") {
  require_subset();
  const Dataset data = load_dataset(subset, {}, {64, false});
  std::vector<int32_t> chosen;  // four slices with tumour, from four patients
  for (int32_t s = 0; s < static_cast<int32_t>(data.slices()) && chosen.size() < 4; ++s) {
    if (data.tumour[s] && (chosen.empty() || data.volume[chosen.back()] != data.volume[s])) chosen.push_back(s);
  }
  REQUIRE(chosen.size() == 4);
  Device& cpu = device(DeviceKind::cpu);
  ResidentDataset resident(cpu, data, false);
  UNet model(UNetConfig{3, 8, 3}, cpu);
  model.parameters().initialize(1);
  AdamConfig adam;
  adam.lr = 3e-3;
  Trainer trainer(model, adam, LossConfig{1, 1}, {4, 64, 64, 3}, false);
  resident.eval_batch(chosen, {trainer.image().data(), 3, trainer.mask().data(), 1});
  const std::vector<float> mask = trainer.mask().to_host();

  const auto start = std::chrono::steady_clock::now();
  double dice = 0;
  int step = 0;
  std::vector<float> logits;
  for (; step < 300 && dice <= 0.9; ++step) {
    trainer.step(&logits);
    double intersection = 0, predicted = 0, truth = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      const double p = logits[i] > 0 ? 1 : 0;
      intersection += p * mask[i];
      predicted += p;
      truth += mask[i];
    }
    dice = 2 * intersection / (predicted + truth);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("overfit: Dice %.3f after %d steps, %.1f s\n", dice, step, seconds);
  CHECK(dice > 0.9);
  CHECK(seconds < 60);
}
