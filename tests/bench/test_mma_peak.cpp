// The mma.sync throughput kernels (bench/mma_peak.h) compute what they claim: every warp's tile is
// kChains x iterations x A B, exactly (small integers). A kernel that dropped a chain, skipped
// iterations or loaded a fragment in the wrong layout gives another tile, so bench_kernels' FLOP
// count for the peak rows is the work the kernel really does. On sim (always) and, compiled for
// cuda, where a GPU is present.
#include <catch2/catch.hpp>

#include <vector>

#include "bench/mma_peak.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer;

namespace {

constexpr DeviceKind kDevice = DeviceKind::UNET_TEST_DEVICE;
using Peak = MmaPeak<kDevice>;

// The header's A (16, k) and B (k, 8) and the tile every warp must write: chains x iterations x A B.
std::vector<float> expected_tile(int k, int iterations, int seed) {
  std::vector<float> tile(16 * 8);
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      double sum = 0;
      for (int kk = 0; kk < k; ++kk) sum += double((3 * i + 5 * kk + seed) % 7 - 3) * ((2 * kk + 3 * j + seed) % 5 - 2);
      tile[i * 8 + j] = static_cast<float>(sum * Peak::kChains * iterations);
    }
  }
  return tile;
}

void check_every_warp(MmaShape shape, int k) {
  const int blocks = 2, iterations = 3, seed = 4;
  DeviceBuffer<float> out(device(kDevice), Peak::out_count(blocks));
  out.poison();
  Peak::run(shape, blocks, iterations, seed, out.data(), {});
  const std::vector<float> got = out.download();
  const std::vector<float> tile = expected_tile(k, iterations, seed);
  for (int warp = 0; warp < blocks * Peak::kWarps; ++warp) {
    INFO("warp " << warp);
    CHECK(std::vector<float>(got.begin() + warp * 128, got.begin() + (warp + 1) * 128) == tile);
  }
}

}  // namespace

TEST_CASE("mma peak: bf16 m16n8k16 warps write chains x iterations x A B", "[bench][mma-peak]") {
  check_every_warp(MmaShape::bf16_m16n8k16, 16);
}

TEST_CASE("mma peak: tf32 m16n8k8 warps write chains x iterations x A B", "[bench][mma-peak]") {
  check_every_warp(MmaShape::tf32_m16n8k8, 8);
}

TEST_CASE("mma peak: the FLOP count is 2 M N K per mma", "[bench][mma-peak]") {
  CHECK(Peak::flop(MmaShape::bf16_m16n8k16, 3, 5) == 2.0 * 16 * 8 * 16 * Peak::kChains * 5 * Peak::kWarps * 3);
  CHECK(Peak::flop(MmaShape::tf32_m16n8k8, 3, 5) == 2.0 * 16 * 8 * 8 * Peak::kChains * 5 * Peak::kWarps * 3);
}

TEST_CASE("mma peak: iterations past exactness are refused", "[bench][mma-peak]") {
  DeviceBuffer<float> out(device(kDevice), Peak::out_count(1));
  CHECK_THROWS_WITH(Peak::run(MmaShape::bf16_m16n8k16, 1, Peak::kMostIterations + 1, 0, out.data(), {}),
                    Catch::Contains("iterations <= 21000"));
}
