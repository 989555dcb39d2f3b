// Adam and AdamW: the cpu device's kernel (adam.h), the reference's operations in the reference's
// order, with the weight-decay choice taken out of the loop and the finiteness test written as
// x - x == 0, so that the compiler vectorises the loop (with -fno-math-errno: kernels/CMakeLists.txt).
// Compiled with the baseline flags, like max_pool2d_fast_cpu.cpp: a memory-bound op gains nothing
// from wider vectors, and without FMA nothing is contracted, so on x86-64 the result is the
// reference's, bit for bit.
#include <cmath>
#include <cstdint>

#include "kernels/adam.h"

namespace unet::cpu::fast {

namespace {

struct StepScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay, eps;
  float neg_step_size, bias_correction2_sqrt, decay;
};

template <bool L2, bool Decoupled>
int32_t update(int64_t n, float* param, const float* grad, float* m, float* v, const StepScalars& k) {
  int32_t any_non_finite = 0;  // an OpenMP reduction of integers: the same result on any thread count
#pragma omp parallel for schedule(static) reduction(| : any_non_finite) if (n >= (int64_t{1} << 15))
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    float p = param[i];
    if constexpr (L2) g = g + k.weight_decay * p;
    if constexpr (Decoupled) p = p * k.decay;
    const float m_i = m[i] * k.beta1 + k.one_minus_beta1 * g;
    const float v_i = v[i] * k.beta2 + k.one_minus_beta2 * g * g;
    const float denom = std::sqrt(v_i) / k.bias_correction2_sqrt + k.eps;
    p = p + k.neg_step_size * m_i / denom;
    m[i] = m_i;
    v[i] = v_i;
    param[i] = p;
    any_non_finite |= !(p - p == 0.0f);  // false for NaN and infinities only
  }
  return any_non_finite;
}

}  // namespace

void adam_step(int64_t n, float* param, const float* grad, float* m, float* v, const AdamConfig& config, int64_t step,
               int32_t* non_finite) {
  // The per-step scalars exactly as the reference forms them.
  const double lr = scheduled_lr(config, step);
  const double beta1 = config.beta1, beta2 = config.beta2, weight_decay = config.weight_decay;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const StepScalars k{.beta1 = float(beta1),
                      .one_minus_beta1 = float(1.0 - beta1),
                      .beta2 = float(beta2),
                      .one_minus_beta2 = float(1.0 - beta2),
                      .weight_decay = float(weight_decay),
                      .eps = float(config.eps),
                      .neg_step_size = float(-(lr / bias_correction1)),
                      .bias_correction2_sqrt = float(std::sqrt(bias_correction2)),
                      .decay = float(1.0 - lr * weight_decay)};  // AdamW's
  const bool l2 = !config.decoupled_weight_decay && weight_decay != 0.0;
  const bool decoupled = config.decoupled_weight_decay && weight_decay != 0.0;
  const int32_t any_non_finite = l2          ? update<true, false>(n, param, grad, m, v, k)
                                 : decoupled ? update<false, true>(n, param, grad, m, v, k)
                                             : update<false, false>(n, param, grad, m, v, k);
  if (non_finite != nullptr && any_non_finite) *non_finite = 1;
}

}  // namespace unet::cpu::fast
