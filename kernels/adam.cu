// Adam and AdamW: the CUDA kernels and their launchers (adam.h).
//
// Versions (run one alone with: test_kernels_sim "adam*", bench_kernels --benchmark_filter=adam):
//   1  one thread per parameter. Thread 0 of each block reads the step from device memory and
//      computes the step's scalars (learning rate, bias corrections, in double) once for the block
//      into shared memory; then every thread updates its parameter, first and second moment.
//   2  four parameters per thread with 16-byte loads and stores, when the four buffers are 16-byte
//      aligned; the last n % 4 parameters are a scalar tail handled by extra threads of the same
//      launch. Otherwise it falls back to version 1.
// Memory-bound: 16 bytes read and 12 written per parameter, so the aim is the bandwidth of
// copying 28 bytes a parameter; one launch covers every parameter of the model.
// With a bf16 weight copy (adam.h) both versions also store each updated parameter rounded to
// bf16 (version 2 four at a time, one 8-byte store): 30 bytes a parameter.
//
// The non-finite flag: a thread whose updated parameter is NaN or infinite stores 1 into it. Every
// writer stores the same value, so the racing plain stores leave a deterministic result without an
// atomic, and a finite step costs one comparison a parameter and no store.
#include "kernels/adam.h"

#include <cstdint>

#include "kernels/dialect.h"
#include "kernels/rounding.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels

// The step's scalars, rounded to float where they meet a tensor, as PyTorch rounds its Python
// floats when they multiply a float32 tensor.
struct AdamScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  float neg_step_size;           // -lr(t) / (1 - beta1^t)
  float bias_correction2_sqrt;   // sqrt(1 - beta2^t)
  float l2_decay;                // Adam's weight decay on the gradient, or 0
  float decoupled_decay;         // AdamW's factor 1 - lr(t) * weight_decay, or 1
};

__device__ AdamScalars adam_scalars(const AdamConfig& config, int64_t step) {
  const double lr = scheduled_lr(config, step);
  const double beta1 = config.beta1, beta2 = config.beta2;
  AdamScalars s;
  s.beta1 = static_cast<float>(beta1);
  s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  s.eps = static_cast<float>(config.eps);
  s.neg_step_size = static_cast<float>(-(lr / (1.0 - pow(beta1, static_cast<double>(step)))));
  s.bias_correction2_sqrt = static_cast<float>(sqrt(1.0 - pow(beta2, static_cast<double>(step))));
  s.l2_decay = config.decoupled_weight_decay ? 0.0f : static_cast<float>(config.weight_decay);
  s.decoupled_decay = config.decoupled_weight_decay ? static_cast<float>(1.0 - lr * config.weight_decay) : 1.0f;
  return s;
}

// One parameter, in PyTorch's order of operations (adam.h). The weight-decay branches are skipped
// when the decay is off, as PyTorch skips them, so they cost no rounding.
__device__ __forceinline__ void adam_update(float& param, float grad, float& m, float& v, const AdamScalars& s) {
  if (s.l2_decay != 0.0f) grad = grad + s.l2_decay * param;        // grad.add(param, alpha=wd)
  if (s.decoupled_decay != 1.0f) param = param * s.decoupled_decay;  // param.mul_(1 - lr*wd)
  m = m * s.beta1 + s.one_minus_beta1 * grad;                        // exp_avg.mul_(b1).add_(g, alpha=1-b1)
  v = v * s.beta2 + s.one_minus_beta2 * grad * grad;                 // exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
  const float denom = sqrtf(v) / s.bias_correction2_sqrt + s.eps;   // (v.sqrt() / bc2_sqrt).add_(eps)
  param = param + s.neg_step_size * m / denom;                       // param.addcdiv_(m, denom, -step_size)
}

__device__ __forceinline__ void flag_non_finite(float param, int32_t* non_finite) {
  if (non_finite != nullptr && !isfinite(param)) *non_finite = 1;
}

__device__ __forceinline__ uint64_t bf16_quad(const float4& p) {
  return uint64_t{bf16_bits(p.x)} | (uint64_t{bf16_bits(p.y)} << 16) | (uint64_t{bf16_bits(p.z)} << 32) |
         (uint64_t{bf16_bits(p.w)} << 48);
}

// Thread 0 reads the step and computes the scalars for its block; the others wait for them.
__device__ __forceinline__ AdamScalars block_scalars(const AdamConfig& config, const int64_t* step) {
  __shared__ AdamScalars scalars;
  if (threadIdx.x == 0) scalars = adam_scalars(config, *step);
  __syncthreads();
  return scalars;
}

__global__ void adam_kernel1(int64_t n, float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, bf16* __restrict__ weight_copy,
                             AdamConfig config, const int64_t* __restrict__ step, int32_t* non_finite) {
  const AdamScalars scalars = block_scalars(config, step);
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  adam_update(param[i], grad[i], m[i], v[i], scalars);
  flag_non_finite(param[i], non_finite);
  if (weight_copy != nullptr) weight_copy[i] = to_bf16(param[i]);
}

// Threads [0, n/4) take four parameters each; the next n % 4 threads take one each.
__global__ void adam_kernel2(int64_t n, float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, bf16* __restrict__ weight_copy,
                             AdamConfig config, const int64_t* __restrict__ step, int32_t* non_finite) {
  const AdamScalars scalars = block_scalars(config, step);
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t quads = n / 4;
  if (i < quads) {
    float4 p = reinterpret_cast<const float4*>(param)[i];
    const float4 g = reinterpret_cast<const float4*>(grad)[i];
    float4 first = reinterpret_cast<const float4*>(m)[i];
    float4 second = reinterpret_cast<const float4*>(v)[i];
    adam_update(p.x, g.x, first.x, second.x, scalars);
    adam_update(p.y, g.y, first.y, second.y, scalars);
    adam_update(p.z, g.z, first.z, second.z, scalars);
    adam_update(p.w, g.w, first.w, second.w, scalars);
    reinterpret_cast<float4*>(param)[i] = p;
    reinterpret_cast<float4*>(m)[i] = first;
    reinterpret_cast<float4*>(v)[i] = second;
    flag_non_finite(p.x, non_finite);
    flag_non_finite(p.y, non_finite);
    flag_non_finite(p.z, non_finite);
    flag_non_finite(p.w, non_finite);
    if (weight_copy != nullptr) reinterpret_cast<uint64_t*>(weight_copy)[i] = bf16_quad(p);
  } else if (i < quads + n % 4) {
    const int64_t j = 4 * quads + (i - quads);
    adam_update(param[j], grad[j], m[j], v[j], scalars);
    flag_non_finite(param[j], non_finite);
    if (weight_copy != nullptr) weight_copy[j] = to_bf16(param[j]);
  }
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void Adam<D>::step(int64_t n, float* param, const float* grad, float* m, float* v, const AdamConfig& config,
                   const int64_t* step, Stream stream, int version, int32_t* non_finite) {
  Adam<D>::step(n, param, grad, m, v, nullptr, config, step, stream, version, non_finite);
}

template <DeviceKind D>
void Adam<D>::step(int64_t n, float* param, const float* grad, float* m, float* v, bf16* weight_copy,
                   const AdamConfig& config, const int64_t* step, Stream stream, int version, int32_t* non_finite) {
  if (n == 0) return;
  const bool copy_fits = reinterpret_cast<uintptr_t>(weight_copy) % 8 == 0;  // four bf16 a store
  if (version != 1 && quads_fit({param, grad, m, v}, {}) && copy_fits) {
    launch_flat(KERNEL(adam_kernel2), n / 4 + n % 4, stream, n, param, grad, m, v, weight_copy, config, step,
                non_finite);
    return;
  }
  launch_flat(KERNEL(adam_kernel1), n, stream, n, param, grad, m, v, weight_copy, config, step, non_finite);
}

template struct Adam<KERNEL_DEVICE>;

}  // namespace unet
