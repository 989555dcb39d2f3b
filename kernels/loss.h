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
//
// Data-parallel training (docs/distributed.md) splits the step in two around those sums: each rank
// computes its samples' batch sums (sums), the ranks add them (an all-reduce of loss_sum::count
// doubles), and the loss and its gradient are formed from the totals (finish), with N the global
// batch's sample count. The loss is then the global batch's, not an average of the ranks' losses.
// forward_backward is the two halves with nothing between them and N the local count.
//
// bf16 (the overloads taking bf16 logits): logits and dlogits are bf16, targets, sums, the loss and
// every intermediate fp32 (the batch sums double), as in fp32. Each dlogit is rounded to bf16 once,
// from the whole gradient: on sim and cuda, with Dice on, sums writes no gradient and finish writes
// BCE's and Dice's together; with Dice off sums writes it (on cpu finish always does). Either way
// dlogits is complete after finish.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"

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

// The batch sums the loss is formed from, in double: the BCE terms, sum(p*g), sum(p), sum(g), and
// the per-sample Dice losses (used when dice_per_sample). Each is a plain sum over samples, so the
// global batch's sums are the ranks' sums added.
namespace loss_sum {
enum : int { bce = 0, intersection, predicted, truth, sample_dice, count };
}

namespace cpu {

// dlogits may be nullptr (value only).
template <class T>
void segmentation_loss(int n, int64_t pixels_per_sample, const T* logits, const T* target, const LossConfig& config,
                       T* loss, T* dlogits);

// The two halves. sample_sums (n, 3): each sample's sum(p*g), sum(p), sum(g), kept for the
// per-sample Dice gradient; batch_sums (loss_sum::count). finish reads batch_sums as given (added
// across ranks, or not) and takes global_n as the global batch's sample count.
template <class T>
void loss_sums(int n, int64_t pixels_per_sample, const T* logits, const T* target, const LossConfig& config,
               double* sample_sums, double* batch_sums);
template <class T>
void loss_finish(int n, int64_t pixels_per_sample, int global_n, const T* logits, const T* target,
                 const LossConfig& config, const double* sample_sums, const double* batch_sums, T* loss, T* dlogits);

// The bf16 references (kernels/bf16_cpu.h): logits widened to T, targets to T, the references
// above, each dlogit rounded to bf16 once.
template <class T>
void segmentation_loss_bf16(int n, int64_t pixels_per_sample, const bf16* logits, const float* target,
                            const LossConfig& config, T* loss, bf16* dlogits);
template <class T>
void loss_sums_bf16(int n, int64_t pixels_per_sample, const bf16* logits, const float* target,
                    const LossConfig& config, double* sample_sums, double* batch_sums);
template <class T>
void loss_finish_bf16(int n, int64_t pixels_per_sample, int global_n, const bf16* logits, const float* target,
                      const LossConfig& config, const double* sample_sums, const double* batch_sums, T* loss,
                      bf16* dlogits);

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

  // The halves (see the top): sums writes the BCE gradient and the batch sums, which batch_sums
  // locates in the workspace (device memory, loss_sum::count doubles); finish forms the loss and adds
  // Dice's gradient from them, over a global batch of global_n samples (global_n >= n).
  static void sums(int n, int64_t pixels_per_sample, int global_n, const float* logits, const float* target,
                   const LossConfig& config, float* dlogits, void* workspace, Stream stream);
  static double* batch_sums(void* workspace);
  static void finish(int n, int64_t pixels_per_sample, int global_n, const float* logits, const float* target,
                     const LossConfig& config, float* loss, float* dlogits, void* workspace, Stream stream);

  // bf16 logits and dlogits, the same workspace. The pixel passes take eight pixels per thread (a
  // 16-byte load of logits, two of targets, a 16-byte store of dlogits) where P is a multiple of 8
  // and logits, target and dlogits are 16-byte aligned; otherwise one pixel per thread.
  static void forward_backward(int n, int64_t pixels_per_sample,
                               const bf16* logits,    // (N, P)
                               const float* target,   // (N, P), 0 or 1
                               const LossConfig& config,
                               float* loss,           // (3): total, BCE, Dice
                               bf16* dlogits,         // (N, P), overwritten; or nullptr for the value only
                               void* workspace,       // workspace(n, P) bytes
                               Stream stream, int version = 0);
  static void sums(int n, int64_t pixels_per_sample, int global_n,
                   const bf16* logits,   // (N, P)
                   const float* target,  // (N, P)
                   const LossConfig& config,
                   bf16* dlogits,        // (N, P), or nullptr: see the top for which half writes it
                   void* workspace, Stream stream);
  static void finish(int n, int64_t pixels_per_sample, int global_n,
                     const bf16* logits,   // (N, P)
                     const float* target,  // (N, P)
                     const LossConfig& config,
                     float* loss,          // (3)
                     bf16* dlogits,        // (N, P), complete on return; or nullptr
                     void* workspace, Stream stream);
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
template <>
void SegmentationLoss<DeviceKind::cpu>::sums(int, int64_t, int, const float*, const float*, const LossConfig&, float*,
                                             void*, Stream);
template <>
double* SegmentationLoss<DeviceKind::cpu>::batch_sums(void*);
template <>
void SegmentationLoss<DeviceKind::cpu>::finish(int, int64_t, int, const float*, const float*, const LossConfig&,
                                               float*, float*, void*, Stream);
// The cpu device's bf16 path: the bf16 references in float (loss_cpu.cpp).
template <>
void SegmentationLoss<DeviceKind::cpu>::forward_backward(int, int64_t, const bf16*, const float*, const LossConfig&,
                                                         float*, bf16*, void*, Stream, int);
template <>
void SegmentationLoss<DeviceKind::cpu>::sums(int, int64_t, int, const bf16*, const float*, const LossConfig&, bf16*,
                                             void*, Stream);
template <>
void SegmentationLoss<DeviceKind::cpu>::finish(int, int64_t, int, const bf16*, const float*, const LossConfig&,
                                               float*, bf16*, void*, Stream);

}  // namespace unet
