// The segmentation losses, each returning its value and dL/dlogits together.
//
// For logits x and targets g in {0, 1} over N samples of P pixels, p = sigmoid(x):
//
//   BCE   = mean over all N*P pixels of  (1-g)*x + (1 + (w-1)*g) * softplus(-x)
//           with softplus(-x) = log(1 + exp(-|x|)) + max(-x, 0): stable, finite for |x| = 1e4;
//           w is the positive-class weight (PyTorch's pos_weight). dBCE/dx = ((1-g) - (1+(w-1)g) *
//           sigmoid(-x)) / (N*P), which is (p - g) / (N*P) when w = 1.
//   Dice  = 1 - (2*sum(p*g) + s) / (sum(p) + sum(g) + s), the sums over the whole batch, or per
//           sample and then averaged over samples (per_sample), with smoothing s.
//           dDice/dx_i = -(2 g_i (S_p + S_g + s) - (2 S_pg + s)) / (S_p + S_g + s)^2 * p_i (1 - p_i)
//           (divided by N when per sample).
//   total = bce_weight * BCE + dice_weight * Dice
//
// The kernels make one pass over the pixels that writes the BCE gradient and per-block partial
// sums (BCE, and for Dice sum(p*g), sum(p), sum(g)), then combine the partials in a fixed order:
// deterministic, no atomics. When Dice is on, its gradient needs the finished sums, so a second
// pass adds it to dlogits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"

namespace unet {

struct LossConfig {
  float bce_weight = 1.0f;
  float dice_weight = 0.0f;
  float pos_weight = 1.0f;     // BCE's weight on positive pixels
  float dice_smooth = 1.0f;    // s
  bool dice_per_sample = false;
};

// loss[0] = total, loss[1] = BCE, loss[2] = Dice (1 - coefficient).
constexpr int loss_values = 3;

namespace cpu {

// dlogits may be nullptr (value only).
template <class T>
void segmentation_loss(int n, int64_t pixels_per_sample, const T* logits, const T* target, const LossConfig& config,
                       T* loss, T* dlogits);

}  // namespace cpu

template <DeviceKind D>
struct SegmentationLoss {
  static constexpr int versions = 1;

  static size_t workspace(int n, int64_t pixels_per_sample);
  static void forward_backward(int n, int64_t pixels_per_sample,
                               const float* logits,   // (N, P): N samples of P = H*W pixels, one channel
                               const float* target,   // (N, P), 0 or 1
                               const LossConfig& config,
                               float* loss,           // (3): total, BCE, Dice
                               float* dlogits,        // (N, P), overwritten; or nullptr for the value only
                               void* workspace,       // workspace(n, P) bytes
                               Stream stream, int version = 0);
};

extern template struct SegmentationLoss<DeviceKind::sim>;
extern template struct SegmentationLoss<DeviceKind::cuda>;

// The cpu device: the reference in float, on the calling thread (no stream, one version), defined in
// loss_cpu.cpp. Declared here so that the compiler checks each against the launcher above.
template <>
size_t SegmentationLoss<DeviceKind::cpu>::workspace(int, int64_t);
template <>
void SegmentationLoss<DeviceKind::cpu>::forward_backward(int, int64_t, const float*, const float*, const LossConfig&,
                                                         float*, float*, void*, Stream, int);

}  // namespace unet
