// kernels/tile_choice.h: the version-3 block tile per GEMM shape, a pure function of the model its
// header states (rounds of 132 SMs x blocks per SM, cost rounds x blocks per SM x (M + N)). The
// blocks per SM below are the kernels' design points (scripts/check_sass.py): 4 on either tile,
// 3 for backward_data with the ReLU mask on the large tile.
#include <catch2/catch.hpp>

#include "kernels/tile_choice.h"
#include "models/unet_shapes.h"

using namespace unet;

namespace {

constexpr int kWaveOfLarge = kDesignSms * 4;  // large tiles in one wave at 4 blocks per SM

// The tile of conv2d's forward (M = pixels, N = Cout) and of its masked backward_data (N = Cin).
MmaTile forward_tile(const LayerShape& layer) {
  const int64_t pixels = int64_t{layer.n} * layer.h * layer.w;
  const int64_t columns = layer.kind == LayerKind::up_conv ? 4 * layer.c_out : layer.c_out;
  return choose_mma_tile(pixels, columns, 4, 4);
}
MmaTile masked_data_tile(const LayerShape& layer) {
  return choose_mma_tile(int64_t{layer.n} * layer.h * layer.w, layer.c_in, 3, 4);
}

}  // namespace

TEST_CASE("tile choice: rounds are whole waves of 132 SMs x blocks per SM", "[tile-choice]") {
  CHECK(mma_tile_rounds(128, 64, kLargeMmaTile, 4) == 1);
  CHECK(mma_tile_rounds(128 * kWaveOfLarge, 64, kLargeMmaTile, 4) == 1);
  CHECK(mma_tile_rounds(128 * kWaveOfLarge + 1, 64, kLargeMmaTile, 4) == 2);
  CHECK(mma_tile_rounds(128 * kDesignSms * 3 + 1, 64, kLargeMmaTile, 3) == 2);
  CHECK(mma_tile_rounds(64, 65, kSmallMmaTile, 4) == 1);  // 2 tiles
  CHECK(mma_tile_cost(64, 64, kSmallMmaTile, 4) == 4 * 128);
  CHECK(mma_tile_cost(64, 64, kLargeMmaTile, 3) == 3 * 192);
}

TEST_CASE("tile choice: the small tile where its grid fits one wave, the large one from a full wave on",
          "[tile-choice]") {
  // N = 64: the small grid has ceil(M / 64) tiles; it fits one wave (528 tiles) up to M = 528 x 64.
  CHECK(choose_mma_tile(64 * kWaveOfLarge, 64, 4, 4) == MmaTile::small);
  CHECK(choose_mma_tile(64 * kWaveOfLarge + 1, 64, 4, 4) == MmaTile::large);
  // M <= 64 leaves half of every large tile empty: small at any N.
  CHECK(choose_mma_tile(64, 64 * 100 * kWaveOfLarge, 4, 4) == MmaTile::small);
  CHECK(choose_mma_tile(1, 1, 4, 4) == MmaTile::small);
  // From one full wave of large tiles on, at equal occupancy, the large tile at every size.
  for (int64_t m = 128 * kWaveOfLarge; m < int64_t{128} * kWaveOfLarge * 20; m += 128 * 37 + 1) {
    for (int64_t n : {64, 100, 128, 512, 1024}) {
      INFO("M " << m << ", N " << n);
      CHECK(choose_mma_tile(m, n, 4, 4) == MmaTile::large);
    }
  }
  // Fewer large blocks per SM (3, the masked backward_data): a badly quantised last wave goes small.
  const int64_t slots3 = int64_t{kDesignSms} * 3;
  CHECK(choose_mma_tile(128 * (slots3 + slots3 * 29 / 100), 64, 3, 4) == MmaTile::small);  // 1.29 large waves
  CHECK(choose_mma_tile(128 * 4 * slots3, 64, 3, 4) == MmaTile::large);                     // 4 large waves
}

TEST_CASE("tile choice: at the U-Net's layers, large in training at batch 16, small at batch 1", "[tile-choice]") {
  // Training, batch 16 at 256x256: every grid is several waves, but the bottleneck's first
  // backward_data (1.29 waves at 3 blocks per SM).
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 16, 256, 256)) {
    if (layer.kind == LayerKind::max_pool) continue;
    INFO(layer.name);
    CHECK(forward_tile(layer) == MmaTile::large);
    if (layer.kind == LayerKind::conv3x3) {
      CHECK(masked_data_tile(layer) == (layer.name == "bottleneck.conv1" ? MmaTile::small : MmaTile::large));
    }
  }
  // Inference, batch 1 at 256x256: the layers below full resolution fill under half a wave on the
  // large tile and take the small one; the full-resolution ones (65,536 pixels, 0.97 waves) stay
  // large, decoder.2.up's 4 x 64 columns at 128x128 likewise.
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 1, 256, 256)) {
    if (layer.kind == LayerKind::max_pool) continue;
    INFO(layer.name);
    const bool full_resolution = layer.h == 256 || layer.name == "decoder.2.up";
    CHECK(forward_tile(layer) == (full_resolution ? MmaTile::large : MmaTile::small));
  }
}

TEST_CASE("tile choice: a pinned tile overrides the model while it lives", "[tile-choice]") {
  CHECK(PinnedMmaTile::choose(1, 1, 4, 4) == MmaTile::small);
  {
    PinnedMmaTile pinned(MmaTile::large);
    CHECK(PinnedMmaTile::choose(1, 1, 4, 4) == MmaTile::large);
    {
      PinnedMmaTile inner(MmaTile::small);
      CHECK(PinnedMmaTile::choose(int64_t{1} << 30, 1024, 4, 4) == MmaTile::small);
    }
    CHECK(PinnedMmaTile::choose(1, 1, 4, 4) == MmaTile::large);
  }
  CHECK(PinnedMmaTile::choose(int64_t{1} << 30, 1024, 4, 4) == MmaTile::large);
}
