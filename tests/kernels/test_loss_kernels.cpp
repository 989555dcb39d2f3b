// The segmentation loss kernels against the CPU reference in double, on sim or cuda.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <memory>

#include "kernels/loss.h"
#include "tests/kernels/loss_cases.h"
#include "tests/test_util.h"

using namespace unet;
using test::loss_config, test::loss_configs, test::random_mask;
using test::DeviceBuffer, test::dev, test::kDevice;

namespace {

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
  for (const auto& [name, config] : loss_configs) {
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
                          loss_configs[4].second);
}

TEST_CASE("loss kernels: the value-only form gives the same value", "[loss]") {
  const int n = 3;
  const int64_t pixels = 35;
  const auto logits = test::random_uniform(n * pixels, 115, -4.0f, 4.0f);
  const auto target = random_mask(n * pixels, 116);
  for (const auto& [name, config] : loss_configs) {
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
    for (const auto& [name, config] : loss_configs) {
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
  for (const auto& [name, config] : loss_configs) {
    INFO(name);
    const KernelResult got = run(2, 5, logits, target, config);
    for (float v : got.loss) CHECK(std::isfinite(v));
    for (float v : got.dlogits) CHECK(std::isfinite(v));
    check_against_reference(2, 5, logits, target, config);
  }
}

TEST_CASE("loss kernels: Dice of an empty prediction, with an empty mask and with a tumour", "[loss]") {
  const LossConfig dice = loss_config(0, 1, 1, 1, true);
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
  const KernelResult first = run(n, pixels, logits, target, loss_configs[4].second);
  const KernelResult second = run(n, pixels, logits, target, loss_configs[4].second);
  CHECK(std::memcmp(first.loss.data(), second.loss.data(), sizeof(float) * loss_values) == 0);
  CHECK(std::memcmp(first.dlogits.data(), second.dlogits.data(), sizeof(float) * first.dlogits.size()) == 0);
}

TEST_CASE("loss kernels: two halves' sums, added, give the whole batch's loss and gradient", "[loss]") {
  // Data-parallel training with two ranks (kernels/loss.h): sums on each half, the batch sums added
  // (here on the host, in place of the all-reduce), then finish over the global batch.
  const int n = 4, half = 2;
  const int64_t pixels = 5000;  // several blocks a sample
  const auto logits = test::random_uniform(n * pixels, 120, -4.0f, 4.0f);
  const auto target = random_mask(n * pixels, 121);
  for (const auto& [name, config] : loss_configs) {
    INFO(name);
    const LossResult expected = reference(n, pixels, logits, target, config);
    const size_t half_size = static_cast<size_t>(half * pixels);
    std::vector<float> loss, dlogits;
    std::vector<std::unique_ptr<DeviceBuffer<float>>> inputs, targets, gradients;
    std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> workspaces;
    std::vector<double> total(loss_sum::count, 0.0);
    for (int h = 0; h < 2; ++h) {
      const auto begin = static_cast<long>(h * half_size), end = static_cast<long>((h + 1) * half_size);
      inputs.push_back(std::make_unique<DeviceBuffer<float>>(dev(), std::vector<float>(logits.begin() + begin,
                                                                                       logits.begin() + end)));
      targets.push_back(std::make_unique<DeviceBuffer<float>>(dev(), std::vector<float>(target.begin() + begin,
                                                                                        target.begin() + end)));
      gradients.push_back(std::make_unique<DeviceBuffer<float>>(dev(), half_size));
      const size_t workspace_bytes = SegmentationLoss<kDevice>::workspace(half, pixels);
      workspaces.push_back(std::make_unique<DeviceBuffer<uint8_t>>(dev(), workspace_bytes));
      gradients[h]->poison();
      workspaces[h]->poison();
      SegmentationLoss<kDevice>::sums(half, pixels, n, inputs[h]->data(), targets[h]->data(), config,
                                      gradients[h]->data(), workspaces[h]->data(), {});
      double sums[loss_sum::count];
      dev().synchronize();
      dev().copy_to_host(sums, SegmentationLoss<kDevice>::batch_sums(workspaces[h]->data()), sizeof sums);
      for (int k = 0; k < loss_sum::count; ++k) total[k] += sums[k];
    }
    for (int h = 0; h < 2; ++h) {
      DeviceBuffer<float> values(dev(), loss_values);
      values.poison();
      dev().copy_to_device(SegmentationLoss<kDevice>::batch_sums(workspaces[h]->data()), total.data(),
                           sizeof(double) * loss_sum::count);
      SegmentationLoss<kDevice>::finish(half, pixels, n, inputs[h]->data(), targets[h]->data(), config, values.data(),
                                        gradients[h]->data(), workspaces[h]->data(), {});
      const std::vector<float> part = gradients[h]->download();
      dlogits.insert(dlogits.end(), part.begin(), part.end());
      if (h == 0) loss = values.download();
      else CHECK(values.download() == loss);  // both halves form the same global loss
    }
    CHECK(test::relative_error(loss, expected.loss) < 1e-5);
    CHECK(test::relative_error(dlogits, expected.dlogits) < 1e-5);
  }
}

TEST_CASE("loss kernels: a batch without pixels is refused at the launch", "[loss]") {
  float* none = nullptr;
  CHECK_THROWS_AS(SegmentationLoss<kDevice>::forward_backward(0, 16, none, none, LossConfig{}, none, none, nullptr, {}),
                  Error);
  CHECK_THROWS_AS(SegmentationLoss<kDevice>::forward_backward(2, 0, none, none, LossConfig{}, none, none, nullptr, {}),
                  Error);
}
