// Adam and AdamW, as torch.optim.Adam / AdamW compute them, in one launch over every parameter.
//
// The engine keeps all parameters in one flat buffer (and their gradients, first and second
// moments in three more), so a single elementwise kernel updates the whole model. For step t
// (1-based) and learning rate lr(t):
//
//   Adam:  g = grad + weight_decay * param              (L2, only when weight_decay != 0)
//   AdamW: param = param * (1 - lr(t) * weight_decay)   (decoupled)
//   m = m * beta1 + g * (1 - beta1)
//   v = v * beta2 + g * g * (1 - beta2)
//   param = param - (lr(t) / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// in that order of operations (PyTorch's single-tensor path); the bias corrections are computed in
// double, as PyTorch computes them in Python floats. The step t is read from device memory (the
// training clock, kernels/clock.h) and the learning-rate schedule is evaluated in the kernel, so a
// step captured once as a CUDA graph stays correct when replayed.
//
// With `non_finite` (one int32 in device memory, or host memory for the CPU reference), a step
// that leaves any parameter NaN or infinite sets it to 1; nothing else writes it, so it stays set
// until the caller clears it. That is how training notices poisoned weights while the loss is still
// finite, for the price of one comparison a parameter and no reduction.
//
// With `weight_copy` (the bf16 precision mode), the same launch also writes each updated parameter
// rounded to bf16 (nearest even, NaN kept), the copy of the fp32 master weights that the bf16
// kernels read; the master weights and both moments stay fp32.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"

namespace unet {

enum class LrSchedule { constant, cosine };

// Doubles, as PyTorch holds them (Python floats): 1 - beta2 is computed in double and only then
// rounded to float where it meets a tensor, as PyTorch does.
struct AdamConfig {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // AdamW
  // Schedule: linear warm-up from 0 over warmup_steps, then constant, or cosine decay to 0 at
  // total_steps.
  LrSchedule schedule = LrSchedule::constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
};

// lr(t) for 1-based step t. Internal linkage: compiled into each kernel library separately.
UNET_HOST_DEVICE static inline double scheduled_lr(const AdamConfig& config, int64_t step) {
  double lr = config.lr;
  if (config.warmup_steps > 0 && step <= config.warmup_steps) {
    return lr * static_cast<double>(step) / static_cast<double>(config.warmup_steps);
  }
  if (config.schedule == LrSchedule::cosine && config.total_steps > config.warmup_steps) {
    const double progress = static_cast<double>(step - config.warmup_steps) /
                            static_cast<double>(config.total_steps - config.warmup_steps);
    lr *= 0.5 * (1.0 + cos(3.14159265358979323846 * (progress < 1.0 ? progress : 1.0)));
  }
  return lr;
}

namespace cpu {

template <class T>
void adam_step(int64_t n, T* param, const T* grad, T* m, T* v, const AdamConfig& config, int64_t step,
               int32_t* non_finite = nullptr);
// The same step, then weight_copy[i] = param[i] rounded to bf16.
template <class T>
void adam_step_bf16(int64_t n, T* param, const T* grad, T* m, T* v, bf16* weight_copy, const AdamConfig& config,
                    int64_t step, int32_t* non_finite = nullptr);

}  // namespace cpu

template <DeviceKind D>
struct Adam {
  static constexpr int versions = 2;

  static void step(int64_t n,
                   float* param,          // (n) all parameters, flat
                   const float* grad,     // (n)
                   float* m,              // (n) first moments
                   float* v,              // (n) second moments
                   const AdamConfig& config,
                   const int64_t* step,   // (1) device memory: the 1-based step being taken
                   Stream stream, int version = 0,
                   int32_t* non_finite = nullptr);  // (1) device memory: set to 1 if a parameter is not finite

  // The same step also writing the bf16 copy of the updated parameters (nullptr: none, as above).
  // Version 2 stores four bf16 in one 8-byte store where weight_copy is 8-byte aligned (and the
  // fp32 buffers allow version 2); otherwise version 1.
  static void step(int64_t n,
                   float* param,          // (n)
                   const float* grad,     // (n)
                   float* m,              // (n)
                   float* v,              // (n)
                   bf16* weight_copy,     // (n) the updated param in bf16, or nullptr
                   const AdamConfig& config,
                   const int64_t* step,   // (1) device memory
                   Stream stream, int version = 0,
                   int32_t* non_finite = nullptr);  // (1) device memory
};

extern template struct Adam<DeviceKind::sim>;
extern template struct Adam<DeviceKind::cuda>;

// The cpu device: the reference in float, on the calling thread (no stream, one version), defined in
// adam_cpu.cpp. Declared here so that the compiler checks each against the launcher above.
template <>
void Adam<DeviceKind::cpu>::step(int64_t, float*, const float*, float*, float*, const AdamConfig&, const int64_t*,
                                 Stream, int, int32_t*);
template <>
void Adam<DeviceKind::cpu>::step(int64_t, float*, const float*, float*, float*, bf16*, const AdamConfig&,
                                 const int64_t*, Stream, int, int32_t*);

}  // namespace unet
