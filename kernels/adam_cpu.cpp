// Adam and AdamW: the CPU reference (adam.h), in PyTorch 1.13's single-tensor order of operations.
#include <cmath>
#include <cstdint>

#include "kernels/adam.h"

namespace unet::cpu {

template <class T>
void adam_step(int64_t n, T* param, const T* grad, T* m, T* v, const AdamConfig& config, int64_t step,
               int32_t* non_finite) {
  // The per-step scalars in double, as PyTorch computes them in Python floats, then rounded to T
  // where they meet a tensor.
  const double lr = scheduled_lr(config, step);
  const double beta1 = config.beta1, beta2 = config.beta2, weight_decay = config.weight_decay;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const T neg_step_size = T(-(lr / bias_correction1));
  const T bias_correction2_sqrt = T(std::sqrt(bias_correction2));
  const T decay = T(1.0 - lr * weight_decay);  // AdamW's
  const bool l2 = !config.decoupled_weight_decay && weight_decay != 0.0;
  const bool decoupled = config.decoupled_weight_decay && weight_decay != 0.0;

  int32_t any_non_finite = 0;  // an OpenMP reduction of integers: the same result on any thread count
#pragma omp parallel for schedule(static) reduction(| : any_non_finite)
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (l2) g = g + T(weight_decay) * param[i];                // grad.add(param, alpha=wd)
    if (decoupled) param[i] = param[i] * decay;                // param.mul_(1 - lr*wd)
    m[i] = m[i] * T(beta1) + T(1.0 - beta1) * g;               // exp_avg.mul_(b1).add_(g, alpha=1-b1)
    v[i] = v[i] * T(beta2) + T(1.0 - beta2) * g * g;           // exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
    const T denom = std::sqrt(v[i]) / bias_correction2_sqrt + T(config.eps);  // (v.sqrt() / bc2_sqrt).add_(eps)
    param[i] = param[i] + neg_step_size * m[i] / denom;        // param.addcdiv_(m, denom, value=-step_size)
    any_non_finite |= !std::isfinite(param[i]);
  }
  if (non_finite != nullptr && any_non_finite) *non_finite = 1;
}

template void adam_step(int64_t, float*, const float*, float*, float*, const AdamConfig&, int64_t, int32_t*);
template void adam_step(int64_t, double*, const double*, double*, double*, const AdamConfig&, int64_t, int32_t*);

}  // namespace unet::cpu

namespace unet {

// The cpu device's launcher (adam.h): the reference above, in float; the step is host memory there.
template <>
void Adam<DeviceKind::cpu>::step(int64_t n, float* param, const float* grad, float* m, float* v,
                                 const AdamConfig& config, const int64_t* step, Stream, int, int32_t* non_finite) {
  cpu::adam_step(n, param, grad, m, v, config, *step, non_finite);
}

}  // namespace unet

// ---------------------------------------------------------------------------------------------
// bf16

namespace unet::cpu {

template <class T>
void adam_step_bf16(int64_t n, T* param, const T* grad, T* m, T* v, bf16* weight_copy, const AdamConfig& config,
                    int64_t step, int32_t* non_finite) {
  adam_step(n, param, grad, m, v, config, step, non_finite);
  if (weight_copy == nullptr) return;
  for (int64_t i = 0; i < n; ++i) weight_copy[i] = to_bf16(static_cast<float>(param[i]));
}

template void adam_step_bf16(int64_t, float*, const float*, float*, float*, bf16*, const AdamConfig&, int64_t,
                             int32_t*);
template void adam_step_bf16(int64_t, double*, const double*, double*, double*, bf16*, const AdamConfig&, int64_t,
                             int32_t*);

}  // namespace unet::cpu

namespace unet {

template <>
void Adam<DeviceKind::cpu>::step(int64_t n, float* param, const float* grad, float* m, float* v, bf16* weight_copy,
                                 const AdamConfig& config, const int64_t* step, Stream, int, int32_t* non_finite) {
  cpu::adam_step_bf16(n, param, grad, m, v, weight_copy, config, *step, non_finite);
}

}  // namespace unet
