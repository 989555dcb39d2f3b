// The segmentation losses' CPU reference: dL/dlogits against central differences, in double, for
// each loss and their weighted sum, and values and gradients against PyTorch (tests/oracle/loss.py).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "engine/safetensors.h"
#include "kernels/loss.h"
#include "tests/kernels/loss_cases.h"
#include "tests/test_util.h"

using namespace unet;
using test::loss_config;

namespace {

std::vector<double> random_mask(size_t count, uint64_t seed) {
  auto mask = test::to_double(test::random_uniform(count, seed, 0.0f, 1.0f));
  for (double& g : mask) g = g < 0.3 ? 1.0 : 0.0;
  return mask;
}

}  // namespace

TEST_CASE("loss reference: dL/dlogits matches central differences", "[loss]") {
  const int n = 3;
  const int64_t pixels = 7;
  const auto logits = test::to_double(test::random_uniform(n * pixels, 71, -3.0f, 3.0f));
  const auto target = random_mask(n * pixels, 72);
  const std::pair<const char*, LossConfig> cases[] = {
      {"BCE", loss_config(1, 0, 1, 1, false)},
      {"BCE, pos_weight 3", loss_config(1, 0, 3, 1, false)},
      {"Dice over the batch", loss_config(0, 1, 1, 1, false)},
      {"Dice per sample", loss_config(0, 1, 1, 1, true)},
      {"weighted sum, per sample, pos_weight 2", loss_config(0.7f, 1.3f, 2, 0.5f, true)},
      {"weighted sum over the batch", loss_config(1, 1, 1, 1, false)},
  };
  for (const auto& [name, config] : cases) {
    INFO(name);
    std::vector<double> loss(loss_values), dlogits(logits.size());
    cpu::segmentation_loss(n, pixels, logits.data(), target.data(), config, loss.data(), dlogits.data());
    CHECK(loss[0] == Approx(config.bce_weight * loss[1] + config.dice_weight * loss[2]).epsilon(1e-12));
    const auto numerical = test::numerical_gradient(logits, [&](const std::vector<double>& x) {
      std::vector<double> value(loss_values);
      cpu::segmentation_loss<double>(n, pixels, x.data(), target.data(), config, value.data(), nullptr);
      return value[0];
    });
    CHECK(test::relative_error(dlogits, numerical) < 1e-6);
  }
}

TEST_CASE("loss reference: equals PyTorch's BCE-with-logits and an autograd soft Dice", "[loss]") {
  const auto oracle = SafeTensors::load(UNET_ORACLE_DIR "/loss.safetensors");
  // torch's (N, 1, H, W) has one channel, so its memory is already the (N, P) the loss takes.
  for (const std::string name :
       {"bce", "bce_pos_weight", "dice_batch", "dice_per_sample", "combined", "combined_batch", "extreme"}) {
    INFO("case " << name);
    const std::string prefix = name == "extreme" ? "extreme." : "";
    const std::vector<int64_t>& dims = oracle.get(prefix + "logits").shape;
    const int n = static_cast<int>(dims[0]);
    const int64_t pixels = dims[1] * dims[2] * dims[3];
    const auto logits = oracle.floats(prefix + "logits");
    const auto target = oracle.floats(prefix + "target");
    const auto c = oracle.floats(name + ".config", {5});
    const LossConfig config = loss_config(c[0], c[1], c[2], c[3], c[4] != 0.0f);

    std::vector<float> loss(loss_values), dlogits(logits.size());
    cpu::segmentation_loss(n, pixels, logits.data(), target.data(), config, loss.data(), dlogits.data());
    CHECK(test::relative_error(loss, oracle.floats(name + ".loss")) < 1e-5);
    CHECK(test::relative_error(dlogits, oracle.floats(name + ".dlogits")) < 1e-5);
  }
}

TEST_CASE("loss reference: logits of 1e4 give finite, exact BCE", "[loss]") {
  const std::vector<double> logits = {1e4, -1e4}, target = {0.0, 1.0};
  std::vector<double> loss(loss_values), dlogits(2);
  cpu::segmentation_loss(1, 2, logits.data(), target.data(), loss_config(1, 0, 1, 1, false), loss.data(),
                         dlogits.data());
  CHECK(loss[1] == 1e4);  // each pixel costs |x|: softplus(1e4)
  CHECK(dlogits == std::vector<double>{0.5, -0.5});
}

TEST_CASE("loss reference: two halves' sums, added, give the whole batch's loss and gradient", "[loss]") {
  // What data-parallel training does with two ranks (kernels/loss.h): each half computes its sums,
  // the sums are added, and each half forms the loss and its gradient over the global batch.
  const int n = 4, half = 2;
  const int64_t pixels = 9;
  const auto logits = test::to_double(test::random_uniform(n * pixels, 73, -3.0f, 3.0f));
  const auto target = random_mask(n * pixels, 74);
  const LossConfig cases[] = {loss_config(1, 0, 3, 1, false), loss_config(0.7f, 1.3f, 2, 0.5f, true),
                              loss_config(1, 1, 1, 1, false)};
  for (const LossConfig& config : cases) {
    INFO("bce " << config.bce_weight << ", dice " << config.dice_weight << ", per sample " << config.dice_per_sample);
    std::vector<double> whole_loss(loss_values), whole_dlogits(logits.size());
    cpu::segmentation_loss(n, pixels, logits.data(), target.data(), config, whole_loss.data(), whole_dlogits.data());

    const int64_t offset = half * pixels;  // where the second half starts
    std::vector<double> sample_sums(3 * n), sums_a(loss_sum::count), sums_b(loss_sum::count);
    cpu::loss_sums(half, pixels, logits.data(), target.data(), config, sample_sums.data(), sums_a.data());
    cpu::loss_sums(half, pixels, logits.data() + offset, target.data() + offset, config, sample_sums.data() + 3 * half,
                   sums_b.data());
    std::vector<double> total(loss_sum::count);
    for (int k = 0; k < loss_sum::count; ++k) total[k] = sums_a[k] + sums_b[k];
    std::vector<double> loss_a(loss_values), loss_b(loss_values), dlogits(logits.size());
    cpu::loss_finish(half, pixels, n, logits.data(), target.data(), config, sample_sums.data(), total.data(),
                     loss_a.data(), dlogits.data());
    cpu::loss_finish(half, pixels, n, logits.data() + offset, target.data() + offset, config,
                     sample_sums.data() + 3 * half, total.data(), loss_b.data(), dlogits.data() + offset);
    CHECK(loss_a == loss_b);
    CHECK(test::relative_error(loss_a, whole_loss) < 1e-14);
    CHECK(test::relative_error(dlogits, whole_dlogits) < 1e-14);
  }
}
