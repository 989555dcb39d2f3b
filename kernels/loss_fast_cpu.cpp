// The segmentation losses: the cpu device's kernels (loss.h), the reference's definitions with
// exp and log1p as branch-free polynomials (Cephes' single-precision ones), so that the compiler
// vectorises the loops over pixels, and the pixels split over the threads in fixed blocks.
//
// Each sample's P pixels are cut into blocks of kBlock; a block's sums are kept in kLanes double
// accumulators (lane j sums pixels j, j + kLanes, ...), the lanes are added in order, then the
// blocks in order: the same bits for any thread count, though not the reference's bits (its one
// running sum is another order). exp and log1p agree with libm's to a few ulp; for |x| above 87,
// exp(-|x|) is taken as exp(-87) = 1.6e-38 (0 in libm), which moves p by less than that. With
// -fno-trapping-math (kernels/CMakeLists.txt) the choices between computed values vectorise.
// Compiled with the baseline flags, like max_pool2d_fast_cpu.cpp: the loss is about 1% of a
// training step (docs/performance.md), too little to be worth a second, AVX2, copy.
#include <algorithm>
#include <bit>
#include <cstdint>

#include "kernels/loss.h"

namespace unet::cpu::fast {

namespace {

constexpr int kLanes = 16;
constexpr int64_t kBlock = 4096;  // pixels per block: 64 KiB of logits and targets

// exp(y) for y <= 0: 2^n * exp(r), n = round(y / ln 2), |r| <= ln(2) / 2, exp(r) by Cephes' expf
// polynomial. y is clamped to -87 so that 2^n stays a normal float; NaN stays NaN.
inline float exp_nonpositive(float y) {
  y = std::max(y, -87.0f);                    // NaN stays NaN: std::max returns its first argument then
  constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (y * 1.44269504088896341f + round_magic) - round_magic;
  const float r = (y - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts: r is exact
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float exp_r = p * (r * r) + r + 1.0f;
  const float two_n = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return exp_r * two_n;
}

// log1p(e) for e in [0, 1]: log(u) of u = 1 + e by Cephes' logf polynomial (u halved above sqrt 2),
// plus (e - (u - 1)) / u, what rounding 1 + e lost.
inline float log1p_unit(float e) {
  const float u = 1.0f + e;
  // Computed before they are chosen between, so that the choice is a select, not a branch.
  const bool halve = u > 1.41421356f;
  const float half = 0.5f * u;
  const float x = halve ? half : u, k = halve ? 1.0f : 0.0f;
  const float f = x - 1.0f, z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z + k * -2.12194440e-4f - 0.5f * z;
  return (f + y + k * 0.693359375f) + (e - (u - 1.0f)) / u;
}

// The reference's logistic(): p = sigmoid(x), q = sigmoid(-x), softplus(-x), from e = exp(-|x|).
struct Logistic {
  float p, q, softplus_neg;
};

inline Logistic logistic(float x) {
  const float e = exp_nonpositive(-std::abs(x));
  const float large = 1.0f / (1.0f + e), small = e / (1.0f + e), softplus = log1p_unit(e);
  const float softplus_minus_x = softplus - x;
  const bool positive = x >= 0.0f;
  return {positive ? large : small, positive ? small : large, positive ? softplus : softplus_minus_x};
}

// One block's sums.
struct BlockSums {
  double bce, intersection, predicted, truth;
};

// The sums of `count` pixels, lane by lane, then the lanes in order.
BlockSums block_sums(int64_t count, const float* logits, const float* target, float w) {
  double bce[kLanes] = {}, intersection[kLanes] = {}, predicted[kLanes] = {}, truth[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float x = logits[i + j], g = target[i + j];
      const Logistic l = logistic(x);
      bce[j] += (1.0f - g) * x + (1.0f + (w - 1.0f) * g) * l.softplus_neg;
      intersection[j] += l.p * g;
      predicted[j] += l.p;
      truth[j] += g;
    }
  }
  for (int j = 0; i + j < count; ++j) {
    const float x = logits[i + j], g = target[i + j];
    const Logistic l = logistic(x);
    bce[j] += (1.0f - g) * x + (1.0f + (w - 1.0f) * g) * l.softplus_neg;
    intersection[j] += l.p * g;
    predicted[j] += l.p;
    truth[j] += g;
  }
  BlockSums sums{0, 0, 0, 0};
  for (int j = 0; j < kLanes; ++j) {
    sums.bce += bce[j];
    sums.intersection += intersection[j];
    sums.predicted += predicted[j];
    sums.truth += truth[j];
  }
  return sums;
}

int64_t blocks_per_sample(int64_t pixels_per_sample) { return (pixels_per_sample + kBlock - 1) / kBlock; }

double dice_loss(double intersection, double predicted, double truth, double smooth) {
  return 1.0 - (2.0 * intersection + smooth) / (predicted + truth + smooth);
}

}  // namespace

size_t loss_sums_scratch(int n, int64_t pixels_per_sample) {
  return sizeof(BlockSums) * static_cast<size_t>(n) * blocks_per_sample(pixels_per_sample);
}

void loss_sums(int n, int64_t pixels_per_sample, const float* logits, const float* target, const LossConfig& config,
               double* sample_sums, double* batch_sums, void* scratch) {
  const int64_t P = pixels_per_sample, blocks = blocks_per_sample(P), tasks = n * blocks;
  const float w = config.pos_weight;
  auto* block = static_cast<BlockSums*>(scratch);  // (n, blocks)
#pragma omp parallel for schedule(static) if (int64_t{n} * P >= 2 * kBlock)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t begin = task / blocks * P + task % blocks * kBlock;
    const int64_t count = std::min(kBlock, P - task % blocks * kBlock);
    block[task] = block_sums(count, logits + begin, target + begin, w);
  }
  double bce = 0, intersection = 0, predicted = 0, truth = 0, dice_per_sample = 0;
  for (int s = 0; s < n; ++s) {
    BlockSums sample{0, 0, 0, 0};
    for (int64_t b = 0; b < blocks; ++b) {
      const BlockSums& part = block[s * blocks + b];
      bce += part.bce;
      sample.intersection += part.intersection;
      sample.predicted += part.predicted;
      sample.truth += part.truth;
    }
    intersection += sample.intersection;
    predicted += sample.predicted;
    truth += sample.truth;
    dice_per_sample += dice_loss(sample.intersection, sample.predicted, sample.truth, config.dice_smooth);
    sample_sums[3 * s] = sample.intersection;
    sample_sums[3 * s + 1] = sample.predicted;
    sample_sums[3 * s + 2] = sample.truth;
  }
  batch_sums[loss_sum::bce] = bce;
  batch_sums[loss_sum::intersection] = intersection;
  batch_sums[loss_sum::predicted] = predicted;
  batch_sums[loss_sum::truth] = truth;
  batch_sums[loss_sum::sample_dice] = dice_per_sample;
}

void loss_finish(int n, int64_t pixels_per_sample, int global_n, const float* logits, const float* target,
                 const LossConfig& config, const double* sample_sums, const double* batch_sums, float* loss,
                 float* dlogits) {
  const int64_t P = pixels_per_sample;
  const double smooth = config.dice_smooth;
  const double batch_denominator = batch_sums[loss_sum::predicted] + batch_sums[loss_sum::truth] + smooth;
  const double bce = batch_sums[loss_sum::bce] / (static_cast<double>(global_n) * P);
  const double dice = config.dice_per_sample
                          ? batch_sums[loss_sum::sample_dice] / global_n
                          : dice_loss(batch_sums[loss_sum::intersection], batch_sums[loss_sum::predicted],
                                      batch_sums[loss_sum::truth], smooth);
  loss[0] = static_cast<float>(config.bce_weight * bce + config.dice_weight * dice);
  loss[1] = static_cast<float>(bce);
  loss[2] = static_cast<float>(dice);
  if (dlogits == nullptr) return;

  const float w = config.pos_weight;
  const float bce_scale = static_cast<float>(config.bce_weight / (static_cast<double>(global_n) * P));
  for (int s = 0; s < n; ++s) {
    // dDice/dx_i = (a g_i + b) p_i (1 - p_i), as the reference's dice_gradient.
    const double intersection = config.dice_per_sample ? sample_sums[3 * s] : batch_sums[loss_sum::intersection];
    const double denominator =
        config.dice_per_sample ? sample_sums[3 * s + 1] + sample_sums[3 * s + 2] + smooth : batch_denominator;
    const double scale = config.dice_per_sample ? config.dice_weight / global_n : config.dice_weight;
    const float a = static_cast<float>(-2.0 * scale / denominator);
    const float b = static_cast<float>(scale * (2.0 * intersection + smooth) / (denominator * denominator));
    const float* x = logits + s * P;
    const float* g = target + s * P;
    float* out = dlogits + s * P;
#pragma omp parallel for schedule(static) if (P >= 2 * kBlock)
    for (int64_t i = 0; i < P; ++i) {
      const Logistic l = logistic(x[i]);
      const float bce_gradient = (1.0f - g[i]) - (1.0f + (w - 1.0f) * g[i]) * l.q;
      out[i] = bce_scale * bce_gradient + (a * g[i] + b) * l.p * l.q;
    }
  }
}

}  // namespace unet::cpu::fast
