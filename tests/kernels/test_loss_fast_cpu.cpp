// The cpu device's loss kernels (cpu::fast, loss.h) against the reference in double: each loss at
// the model's batch and at sizes off the 16-lane and 4096-pixel blocks, extreme and NaN logits,
// NaN-poisoned outputs and workspace, a tight per-pixel check of the polynomial exp and log1p, and
// the same bits at 1 and 2 threads. Not bit for bit on small integers: exp and log1p round
// differently from libm's whatever the inputs.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/loss.h"
#include "tests/kernels/loss_cases.h"
#include "tests/test_util.h"

using namespace unet;
using test::loss_config, test::loss_configs, test::random_mask;

namespace {

struct Result {
  std::vector<float> loss, dlogits;
};

// The cpu device's launcher, over a workspace and outputs poisoned with NaN.
Result run(int n, int64_t pixels, const std::vector<float>& logits, const std::vector<float>& target,
           const LossConfig& config) {
  Result r{std::vector<float>(loss_values, NAN), std::vector<float>(logits.size(), NAN)};
  const size_t bytes = SegmentationLoss<DeviceKind::cpu>::workspace(n, pixels);
  std::vector<double> workspace(bytes / sizeof(double) + 1, NAN);
  SegmentationLoss<DeviceKind::cpu>::forward_backward(n, pixels, logits.data(), target.data(), config, r.loss.data(),
                                                      r.dlogits.data(), workspace.data(), {});
  return r;
}

void check_against_reference(int n, int64_t pixels, const std::vector<float>& logits, const std::vector<float>& target,
                             const LossConfig& config) {
  std::vector<double> loss(loss_values), dlogits(logits.size());
  cpu::segmentation_loss<double>(n, pixels, test::to_double(logits).data(), test::to_double(target).data(), config,
                                 loss.data(), dlogits.data());
  const Result got = run(n, pixels, logits, target, config);
  CHECK(test::relative_error(got.loss, loss) < 1e-6);
  CHECK(test::relative_error(got.dlogits, dlogits) < 1e-6);
}

}  // namespace

TEST_CASE("fast cpu loss: every loss equals the reference, at the model's batch and off the blocks", "[cpu][loss]") {
  // (samples, pixels): the model's batch of 16 128x128 slices; fewer pixels than one 16-pixel row
  // of lanes; a lane row plus one; a 4096-pixel block plus one; one sample of two blocks less one.
  const std::pair<int, int64_t> shapes[] = {{16, 128 * 128}, {3, 7}, {2, 17}, {3, 4097}, {1, 8191}};
  uint64_t seed = 1000;
  for (const auto& [n, pixels] : shapes) {
    const auto logits = test::random_uniform(n * pixels, seed += 2, -6.0f, 6.0f);
    const auto target = random_mask(n * pixels, seed + 1);
    for (const auto& [name, config] : loss_configs) {
      INFO(n << " x " << pixels << ", " << name);
      check_against_reference(n, pixels, logits, target, config);
    }
  }
}

TEST_CASE("fast cpu loss: one pixel's BCE and gradient to a few ulp, logits from -87 to 87", "[cpu][loss]") {
  // One pixel per call: the polynomial exp and log1p against libm's wherever exp(-|x|) is a normal
  // float (beyond, exp(-87) stands for it: see loss_fast_cpu.cpp).
  const LossConfig bce = loss_configs[1].second;
  for (int k = -8700; k <= 8700; ++k) {
    const float x = 0.01f * static_cast<float>(k);
    for (float g : {0.0f, 1.0f}) {
      INFO("x " << x << ", g " << g);
      double loss[loss_values], dlogits;
      const double xd = x, gd = g;
      cpu::segmentation_loss<double>(1, 1, &xd, &gd, bce, loss, &dlogits);
      const Result got = run(1, 1, {x}, {g}, bce);
      // A right prediction of background (g = 0, x < 0) cancels: x + softplus(-x) and
      // 1 - sigmoid(-x) are nearly 0 and carry the rounding of x and of 1, in the reference's float
      // arithmetic too. Everywhere else each is accurate relative to itself.
      const bool cancels = g == 0.0f && x < 0.0f;
      REQUIRE(std::abs(got.loss[1] - loss[1]) <= 4e-7 * std::abs(loss[1]) + (cancels ? 4e-7 * (1 - x) : 0.0));
      REQUIRE(std::abs(got.dlogits[0] - dlogits) <= 4e-7 * std::abs(dlogits) + (cancels ? 4e-7 : 0.0));
    }
  }
}

TEST_CASE("fast cpu loss: logits of +-100 and +-1e4 give finite, correct values and gradients", "[cpu][loss]") {
  std::vector<float> logits, target;
  for (float x : {1e4f, -1e4f, 100.0f, -100.0f, 88.0f, -88.0f, 0.5f}) {
    for (float g : {0.0f, 1.0f}) {
      logits.push_back(x);
      target.push_back(g);
    }
  }
  for (const auto& [name, config] : loss_configs) {
    INFO(name);
    const Result got = run(2, 7, logits, target, config);
    for (float v : got.loss) CHECK(std::isfinite(v));
    for (float v : got.dlogits) CHECK(std::isfinite(v));
    check_against_reference(2, 7, logits, target, config);
  }
}

TEST_CASE("fast cpu loss: a NaN logit makes the loss NaN, as in the reference", "[cpu][loss]") {
  auto logits = test::random_uniform(2 * 40, 1100);
  logits[53] = NAN;
  const Result got = run(2, 40, logits, random_mask(80, 1101), loss_configs[5].second);
  CHECK(std::isnan(got.loss[0]));
  CHECK(std::isnan(got.dlogits[53]));
}

TEST_CASE("fast cpu loss: the halves, the value-only form and the launcher agree", "[cpu][loss]") {
  const int n = 3;
  const int64_t pixels = 5000;
  const auto logits = test::random_uniform(n * pixels, 1200, -4.0f, 4.0f);
  const auto target = random_mask(n * pixels, 1201);
  const LossConfig& config = loss_configs[4].second;
  const Result whole = run(n, pixels, logits, target, config);
  std::vector<double> sample_sums(3 * n, NAN), batch_sums(loss_sum::count, NAN);
  std::vector<double> scratch(cpu::fast::loss_sums_scratch(n, pixels) / sizeof(double), NAN);
  cpu::fast::loss_sums(n, pixels, logits.data(), target.data(), config, sample_sums.data(), batch_sums.data(),
                       scratch.data());
  std::vector<float> loss(loss_values, NAN);
  cpu::fast::loss_finish(n, pixels, n, logits.data(), target.data(), config, sample_sums.data(), batch_sums.data(),
                         loss.data(), nullptr);
  CHECK(loss == whole.loss);
}

TEST_CASE("fast cpu loss: the same bits at 1 and 2 threads", "[cpu][loss]") {
  const int n = 4;
  const int64_t pixels = 3 * 4096 + 100;  // several blocks per sample, so each thread has some
  const auto logits = test::random_uniform(n * pixels, 1300, -5.0f, 5.0f);
  const auto target = random_mask(n * pixels, 1301);
  const int saved = omp_get_max_threads();
  for (const auto& [name, config] : loss_configs) {
    INFO(name);
    omp_set_num_threads(1);
    const Result one = run(n, pixels, logits, target, config);
    omp_set_num_threads(2);
    const Result two = run(n, pixels, logits, target, config);
    CHECK(std::memcmp(one.loss.data(), two.loss.data(), sizeof(float) * loss_values) == 0);
    CHECK(std::memcmp(one.dlogits.data(), two.dlogits.data(), sizeof(float) * one.dlogits.size()) == 0);
  }
  omp_set_num_threads(saved);
}
