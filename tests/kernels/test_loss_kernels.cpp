// The segmentation loss kernels against the CPU reference in double, on sim or cuda.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "kernels/loss.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::dev, test::kDevice;

namespace {

LossConfig make_config(float bce_weight, float dice_weight, float pos_weight, float smooth, bool per_sample) {
  LossConfig config;
  config.bce_weight = bce_weight;
  config.dice_weight = dice_weight;
  config.pos_weight = pos_weight;
  config.dice_smooth = smooth;
  config.dice_per_sample = per_sample;
  return config;
}

const std::pair<const char*, LossConfig> configs[] = {
    {"BCE", make_config(1, 0, 1, 1, false)},
    {"BCE, pos_weight 3", make_config(1, 0, 3, 1, false)},
    {"Dice over the batch", make_config(0, 1, 1, 1, false)},
    {"Dice per sample", make_config(0, 1, 1, 1, true)},
    {"weighted sum, per sample, pos_weight 2", make_config(0.7f, 1.3f, 2, 0.5f, true)},
    {"weighted sum over the batch", make_config(1, 1, 1, 1, false)},
};

std::vector<float> random_mask(size_t count, uint64_t seed) {
  auto mask = test::random_uniform(count, seed, 0.0f, 1.0f);
  for (float& g : mask) g = g < 0.3f ? 1.0f : 0.0f;
  return mask;
}

struct LossResult {
  std::vector<double> loss, dlogits;
};

LossResult reference(int n, int64_t pixels, const std::vector<float>& logits, const std::vector<float>& target,
                     const LossConfig& config) {
  LossResult r{std::vector<double>(loss_values), std::vector<double>(logits.size())};
  cpu::segmentation_loss<double>(n, pixels, test::to_double(logits).data(), test::to_double(target).data(), config,
                                 r.loss.data(), r.dlogits.data());
  return r;
}

// The kernels' loss and gradient (empty when `gradient` is false: the value-only form).
struct KernelResult {
  std::vector<float> loss, dlogits;
};

KernelResult run(int n, int64_t pixels, const std::vector<float>& logits, const std::vector<float>& target,
                 const LossConfig& config, bool gradient = true) {
  DeviceBuffer<float> dlogits_in(dev(), logits), dtarget(dev(), target), dloss(dev(), loss_values);
  DeviceBuffer<float> ddlogits(dev(), gradient ? logits.size() : 0);
  DeviceBuffer<uint8_t> workspace(dev(), SegmentationLoss<kDevice>::workspace(n, pixels));
  dloss.poison();
  ddlogits.poison();
  workspace.poison();  // the kernels must not rely on a clean workspace
  SegmentationLoss<kDevice>::forward_backward(n, pixels, dlogits_in.data(), dtarget.data(), config, dloss.data(),
                                              gradient ? ddlogits.data() : nullptr, workspace.data(), {});
  return {dloss.download(), ddlogits.download()};
}

void check_against_reference(int n, int64_t pixels, const std::vector<float>& logits,
                             const std::vector<float>& target, const LossConfig& config) {
  const LossResult expected = reference(n, pixels, logits, target, config);
  const KernelResult got = run(n, pixels, logits, target, config);
  CHECK(test::relative_error(got.loss, expected.loss) < 1e-5);
  CHECK(test::relative_error(got.dlogits, expected.dlogits) < 1e-5);
}

}  // namespace

TEST_CASE("loss kernels: value and gradient equal the reference", "[loss]") {
  // (N, P): a single pixel, odd sizes, the model's logits at a reduced 2x32x32, several blocks per
  // sample.
  const std::pair<int, int64_t> shapes[] = {{1, 1}, {1, 37}, {3, 35}, {2, 17 * 33}, {2, 32 * 32}, {3, 5000}};
  for (const auto& [name, config] : configs) {
    for (const auto& [n, pixels] : shapes) {
      INFO(name << ", N " << n << ", P " << pixels);
      const auto logits = test::random_uniform(n * pixels, 111 + pixels, -4.0f, 4.0f);
      const auto target = random_mask(n * pixels, 112 + pixels);
      check_against_reference(n, pixels, logits, target, config);
    }
  }
  INFO("N 1, P 140000: more than the 64 blocks' worth of 2048 pixels, so the blocks stride");
  const int64_t pixels = 140000;
  check_against_reference(1, pixels, test::random_uniform(pixels, 113, -4.0f, 4.0f), random_mask(pixels, 114),
                          configs[4].second);
}

TEST_CASE("loss kernels: the value-only form gives the same value", "[loss]") {
  const int n = 3;
  const int64_t pixels = 35;
  const auto logits = test::random_uniform(n * pixels, 115, -4.0f, 4.0f);
  const auto target = random_mask(n * pixels, 116);
  for (const auto& [name, config] : configs) {
    INFO(name);
    const KernelResult with_gradient = run(n, pixels, logits, target, config);
    const KernelResult value_only = run(n, pixels, logits, target, config, false);
    CHECK(value_only.loss == with_gradient.loss);
  }
}

TEST_CASE("loss kernels: all-background and all-foreground masks", "[loss]") {
  const int n = 2;
  const int64_t pixels = 45;
  const auto logits = test::random_uniform(n * pixels, 117, -4.0f, 4.0f);
  for (float fill : {0.0f, 1.0f}) {
    for (const auto& [name, config] : configs) {
      INFO(name << ", every target " << fill);
      check_against_reference(n, pixels, logits, std::vector<float>(n * pixels, fill), config);
    }
  }
}

TEST_CASE("loss kernels: logits of +-100 and +-1e4 give finite, correct values and gradients", "[loss]") {
  // Every pair of (logit, target): right and confidently wrong.
  std::vector<float> logits, target;
  for (float x : {1e4f, -1e4f, 100.0f, -100.0f, 0.5f}) {
    for (float g : {0.0f, 1.0f}) {
      logits.push_back(x);
      target.push_back(g);
    }
  }
  for (const auto& [name, config] : configs) {
    INFO(name);
    const KernelResult got = run(2, 5, logits, target, config);
    for (float v : got.loss) CHECK(std::isfinite(v));
    for (float v : got.dlogits) CHECK(std::isfinite(v));
    check_against_reference(2, 5, logits, target, config);
  }
}

TEST_CASE("loss kernels: Dice of an empty prediction, with an empty mask and with a tumour", "[loss]") {
  const LossConfig dice = make_config(0, 1, 1, 1, true);
  const int n = 2;
  const int64_t pixels = 16;
  for (float x : {-100.0f, -1e4f}) {
    INFO("every logit " << x);
    const std::vector<float> logits(n * pixels, x);
    // Nothing predicted and nothing there: the smoothing makes that a perfect score, Dice 0.
    const KernelResult empty = run(n, pixels, logits, std::vector<float>(n * pixels, 0.0f), dice);
    CHECK(empty.loss[2] == Approx(0.0).margin(1e-6));
    for (float v : empty.dlogits) CHECK(v == Approx(0.0).margin(1e-6));
    // Nothing predicted, 4 tumour pixels per sample: Dice = 1 - s / (4 + s) with s = 1.
    std::vector<float> target(n * pixels, 0.0f);
    for (int s = 0; s < n; ++s) std::fill_n(target.begin() + s * pixels, 4, 1.0f);
    // The gradient is p(1-p) times a modest factor: 0, or a denormal float at x = -100, whose
    // few significant bits make a relative comparison meaningless.
    const KernelResult missed = run(n, pixels, logits, target, dice);
    CHECK(missed.loss[2] == Approx(0.8).epsilon(1e-6));
    for (float v : missed.dlogits) CHECK(std::abs(v) < 1e-30f);
  }
}

TEST_CASE("loss kernels: the same inputs give the same bits", "[loss]") {
  const int n = 3;
  const int64_t pixels = 5000;
  const auto logits = test::random_uniform(n * pixels, 118, -4.0f, 4.0f);
  const auto target = random_mask(n * pixels, 119);
  const KernelResult first = run(n, pixels, logits, target, configs[4].second);
  const KernelResult second = run(n, pixels, logits, target, configs[4].second);
  CHECK(std::memcmp(first.loss.data(), second.loss.data(), sizeof(float) * loss_values) == 0);
  CHECK(std::memcmp(first.dlogits.data(), second.dlogits.data(), sizeof(float) * first.dlogits.size()) == 0);
}

TEST_CASE("loss kernels: a batch without pixels is refused at the launch", "[loss]") {
  float* none = nullptr;
  CHECK_THROWS_AS(SegmentationLoss<kDevice>::forward_backward(0, 16, none, none, LossConfig{}, none, none, nullptr, {}),
                  Error);
  CHECK_THROWS_AS(SegmentationLoss<kDevice>::forward_backward(2, 0, none, none, LossConfig{}, none, none, nullptr, {}),
                  Error);
}
