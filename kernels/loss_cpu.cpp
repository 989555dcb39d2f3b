// The segmentation losses: the CPU reference (loss.h).
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/loss.h"

#include "kernels/bf16_cpu.h"

namespace unet::cpu {

namespace {

// sigmoid(x), sigmoid(-x) and softplus(-x) = log(1 + exp(-x)) from exp(-|x|) alone, which lies in
// (0, 1]: nothing overflows for any finite x, and log(sigmoid(x)) is never taken directly (it is
// -inf once sigmoid(x) rounds to 0, at x below about -104 in fp32).
template <class T>
struct Logistic {
  T p, q, softplus_neg;
};

template <class T>
Logistic<T> logistic(T x) {
  const T e = std::exp(-std::abs(x));
  const T large = T(1) / (T(1) + e), small = e / (T(1) + e);
  if (x >= T(0)) return {large, small, std::log1p(e)};
  return {small, large, std::log1p(e) - x};
}

// Dice's sums over some set of pixels.
struct DiceSums {
  double intersection = 0, predicted = 0, truth = 0;  // sum(p*g), sum(p), sum(g)
};

double dice_loss(const DiceSums& s, double smooth) {
  return 1.0 - (2.0 * s.intersection + smooth) / (s.predicted + s.truth + smooth);
}

// dDice/dx_i = (a * g_i + b) * p_i * (1 - p_i), times `scale` (the Dice weight, over N per sample).
struct DiceGradient {
  double a, b;
};

DiceGradient dice_gradient(const DiceSums& s, double smooth, double scale) {
  const double denominator = s.predicted + s.truth + smooth;
  return {-2.0 * scale / denominator, scale * (2.0 * s.intersection + smooth) / (denominator * denominator)};
}

}  // namespace

template <class T>
void loss_sums(int n, int64_t pixels_per_sample, const T* logits, const T* target, const LossConfig& config,
               double* sample_sums, double* batch_sums) {
  const int64_t P = pixels_per_sample;
  const T w = T(config.pos_weight);
  // The sums are kept in double whatever T is: there are N*P terms.
  double bce = 0;
  std::vector<DiceSums> samples(n);
  for (int s = 0; s < n; ++s) {
    for (int64_t i = s * P; i < (s + 1) * P; ++i) {
      const T x = logits[i], g = target[i];
      const Logistic<T> l = logistic(x);
      bce += (T(1) - g) * x + (T(1) + (w - T(1)) * g) * l.softplus_neg;
      samples[s].intersection += l.p * g;
      samples[s].predicted += l.p;
      samples[s].truth += g;
    }
  }
  DiceSums batch;
  double dice_per_sample = 0;
  for (int s = 0; s < n; ++s) {
    batch.intersection += samples[s].intersection;
    batch.predicted += samples[s].predicted;
    batch.truth += samples[s].truth;
    dice_per_sample += dice_loss(samples[s], config.dice_smooth);
    sample_sums[3 * s] = samples[s].intersection;
    sample_sums[3 * s + 1] = samples[s].predicted;
    sample_sums[3 * s + 2] = samples[s].truth;
  }
  batch_sums[loss_sum::bce] = bce;
  batch_sums[loss_sum::intersection] = batch.intersection;
  batch_sums[loss_sum::predicted] = batch.predicted;
  batch_sums[loss_sum::truth] = batch.truth;
  batch_sums[loss_sum::sample_dice] = dice_per_sample;
}

template <class T>
void loss_finish(int n, int64_t pixels_per_sample, int global_n, const T* logits, const T* target,
                 const LossConfig& config, const double* sample_sums, const double* batch_sums, T* loss, T* dlogits) {
  const int64_t P = pixels_per_sample;
  const T w = T(config.pos_weight);
  const double smooth = config.dice_smooth;
  const DiceSums batch{batch_sums[loss_sum::intersection], batch_sums[loss_sum::predicted],
                       batch_sums[loss_sum::truth]};
  const double bce = batch_sums[loss_sum::bce] / (static_cast<double>(global_n) * P);
  const double dice = config.dice_per_sample ? batch_sums[loss_sum::sample_dice] / global_n : dice_loss(batch, smooth);
  loss[0] = T(config.bce_weight * bce + config.dice_weight * dice);
  loss[1] = T(bce);
  loss[2] = T(dice);
  if (dlogits == nullptr) return;

  const T bce_scale = T(config.bce_weight / (static_cast<double>(global_n) * P));
  for (int s = 0; s < n; ++s) {
    const DiceSums sample{sample_sums[3 * s], sample_sums[3 * s + 1], sample_sums[3 * s + 2]};
    const DiceGradient d = config.dice_per_sample ? dice_gradient(sample, smooth, config.dice_weight / global_n)
                                                  : dice_gradient(batch, smooth, config.dice_weight);
#pragma omp parallel for schedule(static)
    for (int64_t i = s * P; i < (s + 1) * P; ++i) {
      const T g = target[i];
      const Logistic<T> l = logistic(logits[i]);
      const T bce_gradient = (T(1) - g) - (T(1) + (w - T(1)) * g) * l.q;
      const T dice_gradient = T(d.a) * g + T(d.b);
      dlogits[i] = bce_scale * bce_gradient + dice_gradient * l.p * l.q;
    }
  }
}

template <class T>
void segmentation_loss(int n, int64_t pixels_per_sample, const T* logits, const T* target, const LossConfig& config,
                       T* loss, T* dlogits) {
  std::vector<double> sample_sums(3 * static_cast<size_t>(n));
  double batch_sums[loss_sum::count];
  loss_sums(n, pixels_per_sample, logits, target, config, sample_sums.data(), batch_sums);
  loss_finish(n, pixels_per_sample, n, logits, target, config, sample_sums.data(), batch_sums, loss, dlogits);
}

template void segmentation_loss(int, int64_t, const float*, const float*, const LossConfig&, float*, float*);
template void segmentation_loss(int, int64_t, const double*, const double*, const LossConfig&, double*, double*);
template void loss_sums(int, int64_t, const float*, const float*, const LossConfig&, double*, double*);
template void loss_sums(int, int64_t, const double*, const double*, const LossConfig&, double*, double*);
template void loss_finish(int, int64_t, int, const float*, const float*, const LossConfig&, const double*,
                          const double*, float*, float*);
template void loss_finish(int, int64_t, int, const double*, const double*, const LossConfig&, const double*,
                          const double*, double*, double*);

}  // namespace unet::cpu

namespace unet {

// The cpu device's launchers (loss.h): the reference above, in float. The workspace holds the batch
// sums (loss_sum::count) and the per-sample sums (N, 3), in double, for the two halves.
template <>
size_t SegmentationLoss<DeviceKind::cpu>::workspace(int n, int64_t) {
  return sizeof(double) * (loss_sum::count + 3 * static_cast<size_t>(n));
}

template <>
void SegmentationLoss<DeviceKind::cpu>::forward_backward(int n, int64_t pixels_per_sample, const float* logits,
                                                         const float* target, const LossConfig& config, float* loss,
                                                         float* dlogits, void*, Stream, int) {
  cpu::segmentation_loss(n, pixels_per_sample, logits, target, config, loss, dlogits);
}

template <>
void SegmentationLoss<DeviceKind::cpu>::sums(int n, int64_t pixels_per_sample, int, const float* logits,
                                             const float* target, const LossConfig& config, float*, void* workspace,
                                             Stream) {
  // The gradient is written by finish: on the cpu one pass over the pixels forms it whole.
  double* batch = batch_sums(workspace);
  cpu::loss_sums(n, pixels_per_sample, logits, target, config, batch + loss_sum::count, batch);
}

template <>
double* SegmentationLoss<DeviceKind::cpu>::batch_sums(void* workspace) {
  return static_cast<double*>(workspace);
}

template <>
void SegmentationLoss<DeviceKind::cpu>::finish(int n, int64_t pixels_per_sample, int global_n, const float* logits,
                                               const float* target, const LossConfig& config, float* loss,
                                               float* dlogits, void* workspace, Stream) {
  const double* batch = batch_sums(workspace);
  cpu::loss_finish(n, pixels_per_sample, global_n, logits, target, config, batch + loss_sum::count, batch, loss,
                   dlogits);
}

}  // namespace unet

// ---------------------------------------------------------------------------------------------
// bf16

namespace unet::cpu {

namespace {

template <class T>
std::vector<T> widen_targets(const float* target, int64_t count) {
  return std::vector<T>(target, target + count);
}

}  // namespace

template <class T>
void loss_sums_bf16(int n, int64_t pixels_per_sample, const bf16* logits, const float* target,
                    const LossConfig& config, double* sample_sums, double* batch_sums) {
  const int64_t count = n * pixels_per_sample;
  const std::vector<T> wide_logits = widen_bf16<T>(logits, count, 1, 1);
  const std::vector<T> wide_target = widen_targets<T>(target, count);
  loss_sums(n, pixels_per_sample, wide_logits.data(), wide_target.data(), config, sample_sums, batch_sums);
}

template <class T>
void loss_finish_bf16(int n, int64_t pixels_per_sample, int global_n, const bf16* logits, const float* target,
                      const LossConfig& config, const double* sample_sums, const double* batch_sums, T* loss,
                      bf16* dlogits) {
  const int64_t count = n * pixels_per_sample;
  const std::vector<T> wide_logits = widen_bf16<T>(logits, count, 1, 1);
  const std::vector<T> wide_target = widen_targets<T>(target, count);
  std::vector<T> gradient(dlogits == nullptr ? 0 : static_cast<size_t>(count));
  loss_finish(n, pixels_per_sample, global_n, wide_logits.data(), wide_target.data(), config, sample_sums, batch_sums,
              loss, dlogits == nullptr ? nullptr : gradient.data());
  if (dlogits != nullptr) round_to_bf16(gradient, count, 1, 1, dlogits);
}

template <class T>
void segmentation_loss_bf16(int n, int64_t pixels_per_sample, const bf16* logits, const float* target,
                            const LossConfig& config, T* loss, bf16* dlogits) {
  std::vector<double> sample_sums(3 * static_cast<size_t>(n));
  double batch_sums[loss_sum::count];
  loss_sums_bf16<T>(n, pixels_per_sample, logits, target, config, sample_sums.data(), batch_sums);
  loss_finish_bf16(n, pixels_per_sample, n, logits, target, config, sample_sums.data(), batch_sums, loss, dlogits);
}

template void segmentation_loss_bf16(int, int64_t, const bf16*, const float*, const LossConfig&, float*, bf16*);
template void segmentation_loss_bf16(int, int64_t, const bf16*, const float*, const LossConfig&, double*, bf16*);
template void loss_sums_bf16<float>(int, int64_t, const bf16*, const float*, const LossConfig&, double*, double*);
template void loss_sums_bf16<double>(int, int64_t, const bf16*, const float*, const LossConfig&, double*, double*);
template void loss_finish_bf16(int, int64_t, int, const bf16*, const float*, const LossConfig&, const double*,
                               const double*, float*, bf16*);
template void loss_finish_bf16(int, int64_t, int, const bf16*, const float*, const LossConfig&, const double*,
                               const double*, double*, bf16*);

}  // namespace unet::cpu

namespace unet {

// As in fp32, finish writes the whole gradient (one pass over the pixels forms it).
template <>
void SegmentationLoss<DeviceKind::cpu>::forward_backward(int n, int64_t pixels_per_sample, const bf16* logits,
                                                         const float* target, const LossConfig& config, float* loss,
                                                         bf16* dlogits, void*, Stream, int) {
  cpu::segmentation_loss_bf16(n, pixels_per_sample, logits, target, config, loss, dlogits);
}

template <>
void SegmentationLoss<DeviceKind::cpu>::sums(int n, int64_t pixels_per_sample, int, const bf16* logits,
                                             const float* target, const LossConfig& config, bf16*, void* workspace,
                                             Stream) {
  double* batch = batch_sums(workspace);
  cpu::loss_sums_bf16<float>(n, pixels_per_sample, logits, target, config, batch + loss_sum::count, batch);
}

template <>
void SegmentationLoss<DeviceKind::cpu>::finish(int n, int64_t pixels_per_sample, int global_n, const bf16* logits,
                                               const float* target, const LossConfig& config, float* loss,
                                               bf16* dlogits, void* workspace, Stream) {
  const double* batch = batch_sums(workspace);
  cpu::loss_finish_bf16(n, pixels_per_sample, global_n, logits, target, config, batch + loss_sum::count, batch, loss,
                        dlogits);
}

}  // namespace unet
