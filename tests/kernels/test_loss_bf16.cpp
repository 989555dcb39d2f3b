// The segmentation loss's bf16 overloads on the device under test (cpu, sim or cuda): bf16 logits,
// fp32 targets and sums, bf16 dlogits. Against the double reference on the same (exactly widened)
// logits: the loss to fp32's accuracy, each dlogit within one rounding to bf16 (half a unit in the
// last place, 2^-9 relative) plus fp32's error; and bit for bit against the float reference where
// the gradient does not depend on the sums (Dice off).
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>

#include "kernels/loss.h"
#include "tests/kernels/bf16_test_util.h"
#include "tests/kernels/loss_cases.h"

using namespace unet;
using test::DeviceBuffer, test::dev, test::kDevice;
using test::loss_config, test::random_mask;

namespace {

const std::pair<const char*, LossConfig> configs[] = {
    {"BCE", loss_config(1, 0, 1, 1, false)},
    {"BCE, pos_weight 3", loss_config(1, 0, 3, 1, false)},
    {"Dice per sample", loss_config(0, 1, 1, 1, true)},
    {"weighted sum over the batch, pos_weight 2", loss_config(0.7f, 1.3f, 2, 1, false)},
};

// Every dlogit within 2^-8 of the reference, relative (one bf16 rounding is at most 2^-9).
bool within_a_rounding(const std::vector<bf16>& got, const std::vector<double>& expected) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = to_float(got[i]);
    if (!(std::abs(g - expected[i]) <= std::ldexp(std::abs(expected[i]), -8) + 1e-30)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("loss bf16: value and gradient equal the reference, dlogits rounded once", "[loss][bf16]") {
  // (N, P): odd sizes (the scalar path), multiples of 8 (the 16-byte path), several blocks per sample.
  const std::pair<int, int64_t> shapes[] = {{1, 37}, {3, 35}, {2, 32 * 32}, {3, 5000}, {1, 140000}};
  for (const auto& [name, config] : configs) {
    for (const auto& [n, pixels] : shapes) {
      INFO(name << ", N " << n << ", P " << pixels);
      const auto logits = test::random_bf16(n * pixels, 111 + pixels, -4.0f, 4.0f);
      const auto target = random_mask(n * pixels, 112 + pixels);
      std::vector<double> expected_loss(loss_values);
      std::vector<float> float_loss(loss_values);
      std::vector<bf16> expected_dlogits(logits.size());
      {
        const auto x = test::to_double(test::widened(logits));
        std::vector<double> gradient(x.size());
        cpu::segmentation_loss<double>(n, pixels, x.data(), test::to_double(target).data(), config,
                                       expected_loss.data(), gradient.data());
        cpu::segmentation_loss_bf16<float>(n, pixels, logits.data(), target.data(), config, float_loss.data(),
                                           expected_dlogits.data());
        CHECK(within_a_rounding(expected_dlogits, gradient));  // the float reference itself
        CHECK(test::relative_error(float_loss, expected_loss) < 1e-5);
        DeviceBuffer<bf16> dlogits_in(dev(), logits), ddlogits(dev(), logits.size());
        DeviceBuffer<float> dtarget(dev(), target), dloss(dev(), loss_values);
        DeviceBuffer<uint8_t> workspace(dev(), SegmentationLoss<kDevice>::workspace(n, pixels));
        dloss.poison();
        ddlogits.poison();
        workspace.poison();
        SegmentationLoss<kDevice>::forward_backward(n, pixels, dlogits_in.data(), dtarget.data(), config, dloss.data(),
                                                    ddlogits.data(), workspace.data(), {});
        const auto got = ddlogits.download();
        CHECK(test::relative_error(dloss.download(), expected_loss) < 1e-5);
        CHECK(within_a_rounding(got, gradient));
        if (config.dice_weight == 0.0f) CHECK(test::bits(got) == test::bits(expected_dlogits));

        // The value-only form gives the same value.
        DeviceBuffer<float> dloss_only(dev(), loss_values);
        SegmentationLoss<kDevice>::forward_backward(n, pixels, dlogits_in.data(), dtarget.data(), config,
                                                    dloss_only.data(), nullptr, workspace.data(), {});
        CHECK(dloss_only.download() == dloss.download());
      }
    }
  }
}

TEST_CASE("loss bf16: the halves over a global batch equal the reference's halves", "[loss][bf16]") {
  // Two ranks' samples of a global batch of 4, the sums added between the halves as the all-reduce
  // adds them; each rank's gradient then equals the whole batch's.
  const int global_n = 4, n = 2;
  const int64_t pixels = 64;
  const auto logits = test::random_bf16(global_n * pixels, 201, -4.0f, 4.0f);
  const auto target = random_mask(global_n * pixels, 202);
  const LossConfig config = configs[3].second;
  std::vector<double> expected_loss(loss_values);
  std::vector<double> gradient(logits.size());
  cpu::segmentation_loss<double>(global_n, pixels, test::to_double(test::widened(logits)).data(),
                                 test::to_double(target).data(), config, expected_loss.data(), gradient.data());

  std::vector<double> total(loss_sum::count, 0.0);
  std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> workspaces;
  std::vector<std::unique_ptr<DeviceBuffer<bf16>>> rank_logits, rank_dlogits;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> rank_targets;
  for (int rank = 0; rank < 2; ++rank) {
    const auto first = static_cast<ptrdiff_t>(rank * n * pixels), last = first + n * pixels;
    rank_logits.push_back(std::make_unique<DeviceBuffer<bf16>>(
        dev(), std::vector<bf16>(logits.begin() + first, logits.begin() + last)));
    rank_targets.push_back(std::make_unique<DeviceBuffer<float>>(
        dev(), std::vector<float>(target.begin() + first, target.begin() + last)));
    rank_dlogits.push_back(std::make_unique<DeviceBuffer<bf16>>(dev(), n * pixels));
    rank_dlogits.back()->poison();
    workspaces.push_back(
        std::make_unique<DeviceBuffer<uint8_t>>(dev(), SegmentationLoss<kDevice>::workspace(n, pixels)));
    SegmentationLoss<kDevice>::sums(n, pixels, global_n, rank_logits.back()->data(), rank_targets.back()->data(),
                                    config, rank_dlogits.back()->data(), workspaces.back()->data(), {});
    std::vector<double> sums(loss_sum::count);
    dev().synchronize();
    dev().copy_to_host(sums.data(), SegmentationLoss<kDevice>::batch_sums(workspaces.back()->data()),
                       sizeof(double) * loss_sum::count);
    for (int k = 0; k < loss_sum::count; ++k) total[k] += sums[k];
  }
  for (int rank = 0; rank < 2; ++rank) {
    INFO("rank " << rank);
    dev().copy_to_device(SegmentationLoss<kDevice>::batch_sums(workspaces[rank]->data()), total.data(),
                         sizeof(double) * loss_sum::count);
    DeviceBuffer<float> dloss(dev(), loss_values);
    SegmentationLoss<kDevice>::finish(n, pixels, global_n, rank_logits[rank]->data(), rank_targets[rank]->data(),
                                      config, dloss.data(), rank_dlogits[rank]->data(), workspaces[rank]->data(), {});
    CHECK(test::relative_error(dloss.download(), expected_loss) < 1e-5);
    const auto first = static_cast<ptrdiff_t>(rank * n * pixels);
    CHECK(within_a_rounding(rank_dlogits[rank]->download(),
                            std::vector<double>(gradient.begin() + first, gradient.begin() + first + n * pixels)));
  }
}
