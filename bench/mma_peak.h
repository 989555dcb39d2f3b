// The raw mma.sync throughput of the card: the most our version-3 kernels (mma.sync, not Hopper's
// wgmma) can reach, measured rather than taken from a datasheet (docs/performance.md).
//
// Every warp runs `iterations` rounds of kChains independent mma.sync on operands that never leave
// its registers: no memory access in the loop, and kChains accumulator chains per warp (kWarps
// warps a block, blocks enough to fill the card) so that the scheduler always has an mma whose
// inputs are ready. A and B are small integers made from (row, column, seed), the same in every
// warp, so every product and sum is exact in fp32 and the result is known:
//
//   out[w] = kChains * iterations * A B   for every warp w, a (16, 8) row-major tile,
//   bf16 m16n8k16: A(i, k) = (3i + 5k + seed) % 7 - 3 (16 x 16), B(k, j) = (2k + 3j + seed) % 5 - 2 (16 x 8)
//   tf32 m16n8k8:  the same formulas on A (16 x 8) and B (8 x 8)
//
// exact while kChains * iterations * 96 < 2^24 (|A B| <= 16 x 3 x 2), i.e. iterations <= 21,000.
// The result is written so that no compiler can drop the work, and is what the sim test checks.
#pragma once

#include <cstddef>

#include "kernels/backend.h"

namespace unet {

enum class MmaShape { bf16_m16n8k16, tf32_m16n8k8 };

template <DeviceKind D>
struct MmaPeak {
  static constexpr int kChains = 8;  // accumulators a warp keeps in flight
  static constexpr int kWarps = 4;   // warps a block: one per scheduler of an SM
  static constexpr int kMostIterations = 21000;

  // Floating-point operations of one launch (2 M N K per mma).
  static double flop(MmaShape shape, int blocks, int iterations);
  static size_t out_count(int blocks) { return static_cast<size_t>(blocks) * kWarps * 16 * 8; }
  static void run(MmaShape shape, int blocks, int iterations, int seed,
                  float* out,  // (blocks * kWarps, 16, 8)
                  Stream stream);
};

extern template struct MmaPeak<DeviceKind::sim>;
extern template struct MmaPeak<DeviceKind::cuda>;

}  // namespace unet
