// The metrics' definitions (models/metrics.h), on cases small enough to count by hand.
#include <catch2/catch.hpp>

#include <cmath>

#include "models/metrics.h"

using namespace unet;

TEST_CASE("metrics: Dice and IoU by hand, and the empty case scores 1", "[metrics]") {
  const std::vector<uint8_t> predicted = {1, 1, 0, 0, 1};
  const std::vector<float> mask = {1, 0, 1, 0, 1};
  const Confusion c = confusion_of(predicted.data(), mask.data(), 5);
  CHECK((c.tp == 2 && c.fp == 1 && c.fn == 1 && c.tn == 1));
  CHECK(c.dice() == Approx(4.0 / 6.0));
  CHECK(c.iou() == Approx(2.0 / 4.0));
  CHECK(Confusion{}.dice() == 1.0);
  CHECK(Confusion{0, 0, 0, 7}.iou() == 1.0);
}

TEST_CASE("metrics: per-volume, slice and global aggregation", "[metrics]") {
  MetricsAccumulator metrics({"A", "B", "C"});
  const std::vector<float> tumour = {1, 1, 0, 0}, none = {0, 0, 0, 0};
  const std::vector<uint8_t> exact = {1, 1, 0, 0}, half = {1, 0, 0, 0}, nothing = {0, 0, 0, 0}, false_alarm = {0, 0, 1, 0};
  metrics.add_slice(0, exact.data(), tumour.data(), 4, 0.0);        // A: perfect slice
  metrics.add_slice(0, nothing.data(), none.data(), 4, 0.0);        // A: empty slice, not counted in slice Dice
  metrics.add_slice(1, half.data(), tumour.data(), 4, 0.0);         // B: Dice 2/3
  metrics.add_slice(2, nothing.data(), none.data(), 4, 0.0);        // C: no tumour, no prediction -> 1
  const MetricsSummary s = metrics.summary();
  REQUIRE(s.volumes.size() == 3);
  CHECK(s.volumes[0].confusion.dice() == 1.0);
  CHECK(s.volumes[1].confusion.dice() == Approx(2.0 / 3.0));
  CHECK(s.empty_volumes == 1);
  CHECK(s.volume_dice_mean == Approx((1.0 + 2.0 / 3.0 + 1.0) / 3));
  CHECK(s.volume_dice_median == 1.0);
  CHECK(s.tumour_slices == 2);
  CHECK(s.slice_dice_mean == Approx((1.0 + 2.0 / 3.0) / 2));
  CHECK(s.global_dice == Approx(2.0 * 3 / (2 * 3 + 0 + 1)));  // TP 3, FN 1

  MetricsAccumulator alarm({"D"});
  alarm.add_slice(0, false_alarm.data(), none.data(), 4, 0.0);  // no tumour, one false pixel -> 0
  CHECK(alarm.summary().volume_dice_mean == 0.0);
  CHECK(alarm.summary().empty_volumes == 0);
}

TEST_CASE("metrics: BCE of logits is stable and matches the definition", "[metrics]") {
  const std::vector<float> logits = {0.0f, 2.0f, -3.0f, 1e4f, -1e4f}, mask = {1, 0, 1, 1, 0};
  double expected = 0;
  for (int i = 0; i < 5; ++i) {
    const double x = logits[i], p = 1 / (1 + std::exp(-x)), g = mask[i];
    expected += (std::abs(x) > 100) ? 0.0 : -(g * std::log(p) + (1 - g) * std::log(1 - p));
  }
  CHECK(bce_sum(logits.data(), mask.data(), 5) == Approx(expected));
  const std::vector<float> wrong = {-1e4f};
  const std::vector<float> one = {1.0f};
  CHECK(bce_sum(wrong.data(), one.data(), 1) == Approx(1e4));  // finite, not inf
}

TEST_CASE("metrics: the largest 3-D connected component is kept (26-connectivity)", "[metrics]") {
  // Two slices of 4x4: a 3-voxel blob touching diagonally across slices, and a single far voxel.
  std::vector<uint8_t> v(2 * 4 * 4, 0);
  v[0 * 16 + 0 * 4 + 0] = 1;
  v[0 * 16 + 0 * 4 + 1] = 1;
  v[1 * 16 + 1 * 4 + 2] = 1;  // diagonal neighbour of (0,0,1) in 3-D
  v[1 * 16 + 3 * 4 + 3] = 1;  // alone
  keep_largest_component(v, 2, 4, 4);
  CHECK(v[0] == 1);
  CHECK(v[1] == 1);
  CHECK(v[16 + 6] == 1);
  CHECK(v[16 + 15] == 0);
}
