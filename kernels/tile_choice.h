// tile_choice: which block tile a version-3 convolution GEMM runs on (kernels/conv_mma.h's
// BlockTile; docs/kernels/convolution.md, "Block tiles per layer"). Host code, a pure function
// of the GEMM's size, the same on sim and cuda: a run's kernels, and so its order of additions,
// depend on the shapes alone.
//
// The model (derived, not measured: no GPU has timed it yet). An H100/H200 (kDesignSms = 132
// SMs) runs a grid of `tiles` blocks in rounds = ceil(tiles / (kDesignSms x blocks_per_sm))
// waves, blocks_per_sm being the occupancy the kernel is designed for (conv_mma.h's
// blocks_per_sm, checked by scripts/check_sass.py), the blocks of an SM sharing its throughput. A
// block's time per K-step is charged in proportion to M + N, the rows of A and B it stages and
// loads as fragments: were it bound by its mma issue instead (M x N) the small tile would look
// cheaper still, so this is the small tile's pessimistic case. So
//     cost = rounds x blocks_per_sm x (M + N),
// and the small tile is chosen only where it is strictly cheaper. At equal occupancy a small
// round costs 2/3 of a large one: the small tile wins where its grid still fits one wave (the
// large grid at most about half a wave: the 512-channel layers at small batch, inference at batch
// 1) or where M <= 64 leaves half of every large tile empty, and from one full wave of large tiles
// on the large tile stays (its extra reuse of each staged row pays once the GPU is full). Where
// the large tile's stages allow fewer blocks per SM (backward_data with the ReLU mask: 3 against
// 4) the small tile also wins a badly quantised last wave (1.29 large waves against 1.94 small).
// backward_weight has no choice: it splits its pixels (K) into chunks until the grid has about
// 1024 blocks (conv_gemm.h's split_pixels), which fills the GPU at any layer shape.
#pragma once

#include <cstdint>
#include <optional>

namespace unet {

enum class MmaTile { large, small };

struct MmaTileShape {
  int m, n;
};
constexpr MmaTileShape kLargeMmaTile{128, 64};
constexpr MmaTileShape kSmallMmaTile{64, 64};

constexpr int kDesignSms = 132;

// The waves a GEMM of m x n outputs takes on `tile` at blocks_per_sm blocks per SM, rounded up.
constexpr int64_t mma_tile_rounds(int64_t m, int64_t n, MmaTileShape tile, int blocks_per_sm) {
  const int64_t tiles = (m + tile.m - 1) / tile.m * ((n + tile.n - 1) / tile.n);
  const int64_t slots = int64_t{kDesignSms} * blocks_per_sm;
  return (tiles + slots - 1) / slots;
}

constexpr int64_t mma_tile_cost(int64_t m, int64_t n, MmaTileShape tile, int blocks_per_sm) {
  return mma_tile_rounds(m, n, tile, blocks_per_sm) * blocks_per_sm * (tile.m + tile.n);
}

constexpr MmaTile choose_mma_tile(int64_t m, int64_t n, int large_blocks_per_sm, int small_blocks_per_sm) {
  return mma_tile_cost(m, n, kSmallMmaTile, small_blocks_per_sm) <
                 mma_tile_cost(m, n, kLargeMmaTile, large_blocks_per_sm)
             ? MmaTile::small
             : MmaTile::large;
}

// For tests (and benchmarks): while a PinnedMmaTile lives, every version-3 forward and
// backward_data GEMM runs on its tile instead of the model's, so that small test shapes cover
// both tiles. Not thread-safe: pin from the thread that launches.
class PinnedMmaTile {
 public:
  explicit PinnedMmaTile(MmaTile tile) : previous_(pinned()) { pinned() = tile; }
  ~PinnedMmaTile() { pinned() = previous_; }
  PinnedMmaTile(const PinnedMmaTile&) = delete;
  PinnedMmaTile& operator=(const PinnedMmaTile&) = delete;

  // The tile a launcher uses: the pinned one, else the model's choice.
  static MmaTile choose(int64_t m, int64_t n, int large_blocks_per_sm, int small_blocks_per_sm) {
    return pinned().value_or(choose_mma_tile(m, n, large_blocks_per_sm, small_blocks_per_sm));
  }

 private:
  // Defined once, in tile_choice.cpp (unet_base): an inline function's static would be one
  // symbol in both the sim and the cuda kernel libraries (scripts/check_symbols.sh).
  static std::optional<MmaTile>& pinned();
  std::optional<MmaTile> previous_;
};

}  // namespace unet
