// The segmentation losses: the CPU reference (loss.h).
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/loss.h"

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
void segmentation_loss(int n, int64_t pixels_per_sample, const T* logits, const T* target, const LossConfig& config,
                       T* loss, T* dlogits) {
  const int64_t P = pixels_per_sample;
  const T w = T(config.pos_weight);
  // The sums are kept in double whatever T is: there are N*P terms.
  double bce_sum = 0;
  std::vector<DiceSums> samples(n);
  for (int s = 0; s < n; ++s) {
    for (int64_t i = s * P; i < (s + 1) * P; ++i) {
      const T x = logits[i], g = target[i];
      const Logistic<T> l = logistic(x);
      bce_sum += (T(1) - g) * x + (T(1) + (w - T(1)) * g) * l.softplus_neg;
      samples[s].intersection += l.p * g;
      samples[s].predicted += l.p;
      samples[s].truth += g;
    }
  }
  const double smooth = config.dice_smooth;
  DiceSums batch;
  double dice_per_sample = 0;
  for (const DiceSums& s : samples) {
    batch.intersection += s.intersection;
    batch.predicted += s.predicted;
    batch.truth += s.truth;
    dice_per_sample += dice_loss(s, smooth);
  }
  const double bce = bce_sum / (static_cast<double>(n) * P);
  const double dice = config.dice_per_sample ? dice_per_sample / n : dice_loss(batch, smooth);
  loss[0] = T(config.bce_weight * bce + config.dice_weight * dice);
  loss[1] = T(bce);
  loss[2] = T(dice);
  if (dlogits == nullptr) return;

  const T bce_scale = T(config.bce_weight / (static_cast<double>(n) * P));
  for (int s = 0; s < n; ++s) {
    const DiceGradient d = config.dice_per_sample ? dice_gradient(samples[s], smooth, config.dice_weight / n)
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

template void segmentation_loss(int, int64_t, const float*, const float*, const LossConfig&, float*, float*);
template void segmentation_loss(int, int64_t, const double*, const double*, const LossConfig&, double*, double*);

}  // namespace unet::cpu

namespace unet {

// The cpu device's launchers (loss.h): the reference above, in float.
template <>
size_t SegmentationLoss<DeviceKind::cpu>::workspace(int, int64_t) {
  return 0;
}

template <>
void SegmentationLoss<DeviceKind::cpu>::forward_backward(int n, int64_t pixels_per_sample, const float* logits,
                                                         const float* target, const LossConfig& config, float* loss,
                                                         float* dlogits, void*, Stream, int) {
  cpu::segmentation_loss(n, pixels_per_sample, logits, target, config, loss, dlogits);
}

}  // namespace unet
