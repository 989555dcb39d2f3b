// The segmentation losses: the CUDA kernels and their launchers (loss.h).
//
// Versions (run one alone with: test_kernels_sim "loss*"):
//   1  four launches (three when Dice's gradient is not needed: Dice off, or the value only):
//        loss_partials_kernel   grid (chunks, N) of 256 threads; each block strides over its
//                               sample's pixels, writes the BCE gradient (times bce_weight) into
//                               dlogits, and reduces its threads' BCE, sum(p*g), sum(p), sum(g)
//                               in a fixed tree to one partial record per block;
//        loss_sums_kernel       one block: each thread sums one sample's partials in chunk order
//                               (in double), then thread 0 sums the samples in sample order into
//                               the batch sums (kernels/loss.h: loss_sum);
//                               -- here data-parallel training adds the batch sums across ranks --
//        loss_finalise_kernel   one thread: the three loss values and Dice's gradient coefficients
//                               from the batch sums;
//        dice_gradient_kernel   the same grid as the first: adds Dice's gradient, which needs the
//                               finished sums, to dlogits.
//      The partition into blocks depends only on the shape, and no step uses atomics, so the
//      result is the same bits on every run. The passes are memory-bound: the first reads logits
//      and targets and writes dlogits (12 bytes a pixel), the third reads all three and writes
//      dlogits (16 bytes a pixel).
// bf16 logits and dlogits (loss_{partials,gradient}_kernel<version><bf16>, templates on the logits'
// element type): the same four launches with the partials and gradient kernels reading bf16
// logits; version 1 one pixel per thread, version 2 eight (a 16-byte load of logits, two of
// targets, a 16-byte store of dlogits) when P is a multiple of 8 and the pointers are 16-byte
// aligned. With Dice on, the partials kernel writes no gradient and loss_gradient_kernel<bf16>
// writes BCE's and Dice's together, rounded once (it reads logits and targets, 6 bytes a pixel,
// and writes 2); with Dice off the partials kernel writes it.
#include "kernels/loss.h"

#include <algorithm>
#include <cstdint>

#include "kernels/bf16_vector.h"
#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels

// Threads of the pass kernels: a power of two, which the tree reduction halves.
constexpr int loss_threads = 256;

// sigmoid(x), sigmoid(-x) and softplus(-x) = log(1 + exp(-x)) from expf(-|x|) alone, which lies in
// (0, 1]: nothing overflows for any finite x, and log(sigmoid(x)) is never taken directly.
struct Logistic {
  float p, q, softplus_neg;
};

__device__ __forceinline__ Logistic logistic(float x) {
  const float e = expf(-fabsf(x));
  const float large = 1.0f / (1.0f + e), small = e / (1.0f + e);
  if (x >= 0.0f) return {large, small, log1pf(e)};
  return {small, large, log1pf(e) - x};
}

// The record each block of the first pass leaves, and the per-sample sums of the sums kernel: the
// first four batch sums (kernels/loss.h), per block or per sample.
constexpr int loss_sums = loss_sum::sample_dice;

// Reduces the block's threads' sums in a fixed tree and writes the block's partial record.
__device__ __forceinline__ void write_block_partials(const float* sums, float* __restrict__ partials) {
  __shared__ float tree[loss_sums][loss_threads];
  const int t = threadIdx.x;
  for (int k = 0; k < loss_sums; ++k) tree[k][t] = sums[k];
  __syncthreads();
  for (int stride = loss_threads / 2; stride > 0; stride /= 2) {
    if (t < stride) {
      for (int k = 0; k < loss_sums; ++k) tree[k][t] += tree[k][t + stride];
    }
    __syncthreads();
  }
  if (t == 0) {
    float* record = partials + (int64_t{blockIdx.y} * gridDim.x + blockIdx.x) * loss_sums;
    for (int k = 0; k < loss_sums; ++k) record[k] = tree[k][0];
  }
}

__global__ void loss_partials_kernel(int64_t pixels_per_sample, const float* __restrict__ logits,
                                     const float* __restrict__ target, float pos_weight, float bce_gradient_scale,
                                     float* __restrict__ dlogits, float* __restrict__ partials) {
  const int64_t sample_start = blockIdx.y * pixels_per_sample;
  float sums[loss_sums] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < pixels_per_sample;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float x = logits[sample_start + i], g = target[sample_start + i];
    const Logistic l = logistic(x);
    const float weight = 1.0f + (pos_weight - 1.0f) * g;
    sums[loss_sum::bce] += (1.0f - g) * x + weight * l.softplus_neg;
    sums[loss_sum::intersection] += l.p * g;
    sums[loss_sum::predicted] += l.p;
    sums[loss_sum::truth] += g;
    if (dlogits != nullptr) dlogits[sample_start + i] = bce_gradient_scale * ((1.0f - g) - weight * l.q);
  }

  write_block_partials(sums, partials);
}

__device__ __forceinline__ double dice_loss(const double* sums, double smooth) {
  const double denominator = sums[loss_sum::predicted] + sums[loss_sum::truth] + smooth;
  return 1.0 - (2.0 * sums[loss_sum::intersection] + smooth) / denominator;
}

// dDice/dx_i = (a * g_i + b) * p_i * (1 - p_i); `scale` is the Dice weight (over N per sample).
__device__ __forceinline__ void write_dice_gradient(const double* sums, double smooth, double scale,
                                                    float* coefficients) {
  const double denominator = sums[loss_sum::predicted] + sums[loss_sum::truth] + smooth;
  coefficients[0] = static_cast<float>(-2.0 * scale / denominator);
  const double numerator = scale * (2.0 * sums[loss_sum::intersection] + smooth);
  coefficients[1] = static_cast<float>(numerator / (denominator * denominator));
}

__global__ void loss_sums_kernel(int n, int global_n, int chunks, LossConfig config,
                                 const float* __restrict__ partials, double* __restrict__ sample_sums,
                                 float* __restrict__ coefficients, double* __restrict__ batch_sums) {
  const double smooth = config.dice_smooth;
  for (int s = threadIdx.x; s < n; s += blockDim.x) {
    double* sums = sample_sums + int64_t{s} * loss_sums;
    for (int k = 0; k < loss_sums; ++k) sums[k] = 0.0;
    for (int64_t b = 0; b < chunks; ++b) {
      for (int k = 0; k < loss_sums; ++k) sums[k] += partials[(int64_t{s} * chunks + b) * loss_sums + k];
    }
    if (config.dice_per_sample) {
      write_dice_gradient(sums, smooth, double{config.dice_weight} / global_n, coefficients + 2 * s);
    }
  }
  __syncthreads();  // also makes the other threads' sample_sums visible to thread 0
  if (threadIdx.x != 0) return;

  double batch[loss_sum::count] = {0.0, 0.0, 0.0, 0.0, 0.0};
  for (int s = 0; s < n; ++s) {
    const double* sums = sample_sums + int64_t{s} * loss_sums;
    for (int k = 0; k < loss_sums; ++k) batch[k] += sums[k];
    batch[loss_sum::sample_dice] += dice_loss(sums, smooth);
  }
  for (int k = 0; k < loss_sum::count; ++k) batch_sums[k] = batch[k];
}

__global__ void loss_finalise_kernel(int global_n, int64_t pixels_per_sample, LossConfig config,
                                     const double* __restrict__ batch_sums, float* __restrict__ coefficients,
                                     float* __restrict__ loss) {
  const double smooth = config.dice_smooth;
  if (!config.dice_per_sample) write_dice_gradient(batch_sums, smooth, config.dice_weight, coefficients);
  const double bce = batch_sums[loss_sum::bce] / (static_cast<double>(global_n) * pixels_per_sample);
  const double dice =
      config.dice_per_sample ? batch_sums[loss_sum::sample_dice] / global_n : dice_loss(batch_sums, smooth);
  loss[0] = static_cast<float>(config.bce_weight * bce + config.dice_weight * dice);
  loss[1] = static_cast<float>(bce);
  loss[2] = static_cast<float>(dice);
}

__global__ void dice_gradient_kernel(int64_t pixels_per_sample, bool per_sample, const float* __restrict__ logits,
                                     const float* __restrict__ target, const float* __restrict__ coefficients,
                                     float* __restrict__ dlogits) {
  const int64_t sample_start = blockIdx.y * pixels_per_sample;
  const float* c = coefficients + (per_sample ? 2 * blockIdx.y : 0);
  const float a = c[0], b = c[1];
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < pixels_per_sample;
       i += int64_t{gridDim.x} * blockDim.x) {
    const Logistic l = logistic(logits[sample_start + i]);
    dlogits[sample_start + i] += (a * target[sample_start + i] + b) * l.p * l.q;
  }
}

// bf16. One pixel's terms of the four sums, and its BCE gradient (times bce_weight / (N P)).
__device__ __forceinline__ float add_pixel(float x, float g, float pos_weight, float bce_gradient_scale,
                                           float* sums) {
  const Logistic l = logistic(x);
  const float weight = 1.0f + (pos_weight - 1.0f) * g;
  sums[loss_sum::bce] += (1.0f - g) * x + weight * l.softplus_neg;
  sums[loss_sum::intersection] += l.p * g;
  sums[loss_sum::predicted] += l.p;
  sums[loss_sum::truth] += g;
  return bce_gradient_scale * ((1.0f - g) - weight * l.q);
}

// The whole gradient of one pixel: BCE's plus Dice's (a * g + b) * p * (1 - p).
__device__ __forceinline__ float pixel_gradient(float x, float g, float pos_weight, float bce_gradient_scale, float a,
                                                float b) {
  const Logistic l = logistic(x);
  const float weight = 1.0f + (pos_weight - 1.0f) * g;
  return bce_gradient_scale * ((1.0f - g) - weight * l.q) + (a * g + b) * l.p * l.q;
}

// The kernels on low-precision logits, templates on their element type (specialised for bf16).
template <class Element>
__global__ void loss_partials_kernel1(int64_t pixels_per_sample, const Element* __restrict__ logits,
                                      const float* __restrict__ target, float pos_weight, float bce_gradient_scale,
                                      Element* __restrict__ dlogits, float* __restrict__ partials);
template <class Element>
__global__ void loss_partials_kernel2(int64_t pixels_per_sample, const Element* __restrict__ logits,
                                      const float* __restrict__ target, float pos_weight, float bce_gradient_scale,
                                      Element* __restrict__ dlogits, float* __restrict__ partials);
template <class Element>
__global__ void loss_gradient_kernel1(int64_t pixels_per_sample, bool per_sample, const Element* __restrict__ logits,
                                      const float* __restrict__ target, float pos_weight, float bce_gradient_scale,
                                      const float* __restrict__ coefficients, Element* __restrict__ dlogits);
template <class Element>
__global__ void loss_gradient_kernel2(int64_t pixels_per_sample, bool per_sample, const Element* __restrict__ logits,
                                      const float* __restrict__ target, float pos_weight, float bce_gradient_scale,
                                      const float* __restrict__ coefficients, Element* __restrict__ dlogits);

// Version 1: one pixel per thread per stride, as loss_partials_kernel.
template <>
__global__ void loss_partials_kernel1<bf16>(int64_t pixels_per_sample, const bf16* __restrict__ logits,
                                            const float* __restrict__ target, float pos_weight,
                                            float bce_gradient_scale, bf16* __restrict__ dlogits,
                                            float* __restrict__ partials) {
  const int64_t sample_start = blockIdx.y * pixels_per_sample;
  float sums[loss_sums] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < pixels_per_sample;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float gradient =
        add_pixel(to_float(logits[sample_start + i]), target[sample_start + i], pos_weight, bce_gradient_scale, sums);
    if (dlogits != nullptr) dlogits[sample_start + i] = to_bf16(gradient);
  }
  write_block_partials(sums, partials);
}

// Version 2: eight pixels per thread per stride; i indexes octets of the sample (P % 8 == 0).
template <>
__global__ void loss_partials_kernel2<bf16>(int64_t pixels_per_sample, const bf16* __restrict__ logits,
                                            const float* __restrict__ target, float pos_weight,
                                            float bce_gradient_scale, bf16* __restrict__ dlogits,
                                            float* __restrict__ partials) {
  const int64_t sample_start = blockIdx.y * pixels_per_sample;
  float sums[loss_sums] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < pixels_per_sample / bf16_per_octet;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t first = sample_start + i * bf16_per_octet;
    const Octet x = load_octet(logits + first);
    const float4 g0 = *reinterpret_cast<const float4*>(target + first);
    const float4 g1 = *reinterpret_cast<const float4*>(target + first + 4);
    const float g[bf16_per_octet] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
    Octet gradient;
    for (int j = 0; j < bf16_per_octet; ++j) {
      gradient.v[j] = add_pixel(x.v[j], g[j], pos_weight, bce_gradient_scale, sums);
    }
    if (dlogits != nullptr) store_octet(dlogits + first, gradient);
  }
  write_block_partials(sums, partials);
}

// The whole gradient, when Dice is on: the grid of the partials kernels.
template <>
__global__ void loss_gradient_kernel1<bf16>(int64_t pixels_per_sample, bool per_sample, const bf16* __restrict__ logits,
                                            const float* __restrict__ target, float pos_weight,
                                            float bce_gradient_scale, const float* __restrict__ coefficients,
                                            bf16* __restrict__ dlogits) {
  const int64_t sample_start = blockIdx.y * pixels_per_sample;
  const float* c = coefficients + (per_sample ? 2 * blockIdx.y : 0);
  const float a = c[0], b = c[1];
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < pixels_per_sample;
       i += int64_t{gridDim.x} * blockDim.x) {
    dlogits[sample_start + i] = to_bf16(pixel_gradient(to_float(logits[sample_start + i]), target[sample_start + i],
                                                       pos_weight, bce_gradient_scale, a, b));
  }
}

template <>
__global__ void loss_gradient_kernel2<bf16>(int64_t pixels_per_sample, bool per_sample, const bf16* __restrict__ logits,
                                            const float* __restrict__ target, float pos_weight,
                                            float bce_gradient_scale, const float* __restrict__ coefficients,
                                            bf16* __restrict__ dlogits) {
  const int64_t sample_start = blockIdx.y * pixels_per_sample;
  const float* c = coefficients + (per_sample ? 2 * blockIdx.y : 0);
  const float a = c[0], b = c[1];
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < pixels_per_sample / bf16_per_octet;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t first = sample_start + i * bf16_per_octet;
    const Octet x = load_octet(logits + first);
    const float4 g0 = *reinterpret_cast<const float4*>(target + first);
    const float4 g1 = *reinterpret_cast<const float4*>(target + first + 4);
    const float g[bf16_per_octet] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
    Octet gradient;
    for (int j = 0; j < bf16_per_octet; ++j) {
      gradient.v[j] = pixel_gradient(x.v[j], g[j], pos_weight, bce_gradient_scale, a, b);
    }
    store_octet(dlogits + first, gradient);
  }
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

namespace {

// Blocks per sample: about 8 pixels a thread, at most 64 blocks (a sample of 256x256 pixels gets
// 32). A function of the shape alone, so the reduction's order never changes.
int loss_chunks(int64_t pixels_per_sample) {
  constexpr int64_t pixels_per_thread = 8, max_chunks = 64;
  return static_cast<int>(std::min(ceil_div(pixels_per_sample, loss_threads * pixels_per_thread), max_chunks));
}

// The workspace: the batch sums (loss_sum::count) and the per-sample sums (N, 4) in double first
// (for alignment), Dice's gradient coefficients (N, 2), then the blocks' partial records
// (N, chunks, 4).
struct LossWorkspace {
  double* batch_sums;
  double* sample_sums;
  float* coefficients;
  float* partials;
};

LossWorkspace carve(void* workspace, int n) {
  auto* batch_sums = static_cast<double*>(workspace);
  double* sample_sums = batch_sums + loss_sum::count;
  auto* coefficients = reinterpret_cast<float*>(sample_sums + int64_t{n} * loss_sums);
  return {batch_sums, sample_sums, coefficients, coefficients + int64_t{n} * 2};
}

}  // namespace

template <DeviceKind D>
size_t SegmentationLoss<D>::workspace(int n, int64_t pixels_per_sample) {
  const int64_t records = int64_t{n} * loss_chunks(pixels_per_sample);
  return sizeof(double) * (loss_sum::count + int64_t{n} * loss_sums) +
         sizeof(float) * (int64_t{n} * 2 + records * loss_sums);
}

template <DeviceKind D>
void SegmentationLoss<D>::forward_backward(int n, int64_t pixels_per_sample, const float* logits, const float* target,
                                           const LossConfig& config, float* loss, float* dlogits, void* workspace,
                                           Stream stream, int /*version: only 1*/) {
  sums(n, pixels_per_sample, n, logits, target, config, dlogits, workspace, stream);
  finish(n, pixels_per_sample, n, logits, target, config, loss, dlogits, workspace, stream);
}

template <DeviceKind D>
void SegmentationLoss<D>::sums(int n, int64_t pixels_per_sample, int global_n, const float* logits,
                               const float* target, const LossConfig& config, float* dlogits, void* workspace,
                               Stream stream) {
  // N = 0, P = 0 (no mean to take) or N > 65535 (gridDim.y) fail at the launch, naming the kernel.
  const int chunks = loss_chunks(pixels_per_sample);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(n));
  const LossWorkspace w = carve(workspace, n);
  const auto bce_gradient_scale =
      static_cast<float>(config.bce_weight / (static_cast<double>(global_n) * pixels_per_sample));
  launch(KERNEL(loss_partials_kernel), grid, dim3(loss_threads), 0, stream, pixels_per_sample, logits, target,
         config.pos_weight, bce_gradient_scale, dlogits, w.partials);
  launch(KERNEL(loss_sums_kernel), dim3(1), dim3(loss_threads), 0, stream, n, global_n, chunks, config, w.partials,
         w.sample_sums, w.coefficients, w.batch_sums);
}

template <DeviceKind D>
double* SegmentationLoss<D>::batch_sums(void* workspace) {
  return carve(workspace, 0).batch_sums;
}

template <DeviceKind D>
void SegmentationLoss<D>::finish(int n, int64_t pixels_per_sample, int global_n, const float* logits,
                                 const float* target, const LossConfig& config, float* loss, float* dlogits,
                                 void* workspace, Stream stream) {
  const LossWorkspace w = carve(workspace, n);
  launch(KERNEL(loss_finalise_kernel), dim3(1), dim3(1), 0, stream, global_n, pixels_per_sample, config,
         static_cast<const double*>(w.batch_sums), w.coefficients, loss);
  if (dlogits != nullptr && config.dice_weight != 0.0f) {
    const dim3 grid(static_cast<unsigned>(loss_chunks(pixels_per_sample)), static_cast<unsigned>(n));
    launch(KERNEL(dice_gradient_kernel), grid, dim3(loss_threads), 0, stream, pixels_per_sample,
           config.dice_per_sample, logits, target, static_cast<const float*>(w.coefficients), dlogits);
  }
}

namespace {

float bce_gradient_scale(const LossConfig& config, int global_n, int64_t pixels_per_sample) {
  return static_cast<float>(config.bce_weight / (static_cast<double>(global_n) * pixels_per_sample));
}

// Version 2 of the bf16 pixel passes: whole octets in every sample, aligned.
bool loss_octets_fit(int64_t pixels_per_sample, const bf16* logits, const float* target, const bf16* dlogits) {
  return octets_fit({logits, target, dlogits}, {pixels_per_sample});
}

}  // namespace

template <DeviceKind D>
void SegmentationLoss<D>::forward_backward(int n, int64_t pixels_per_sample, const bf16* logits, const float* target,
                                           const LossConfig& config, float* loss, bf16* dlogits, void* workspace,
                                           Stream stream, int /*version: chosen by the layout*/) {
  sums(n, pixels_per_sample, n, logits, target, config, dlogits, workspace, stream);
  finish(n, pixels_per_sample, n, logits, target, config, loss, dlogits, workspace, stream);
}

template <DeviceKind D>
void SegmentationLoss<D>::sums(int n, int64_t pixels_per_sample, int global_n, const bf16* logits,
                               const float* target, const LossConfig& config, bf16* dlogits, void* workspace,
                               Stream stream) {
  const int chunks = loss_chunks(pixels_per_sample);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(n));
  const LossWorkspace w = carve(workspace, n);
  const float scale = bce_gradient_scale(config, global_n, pixels_per_sample);
  bf16* bce_only = config.dice_weight == 0.0f ? dlogits : nullptr;  // with Dice, finish writes the gradient
  if (loss_octets_fit(pixels_per_sample, logits, target, dlogits)) {
    launch(KERNEL(loss_partials_kernel2<bf16>), grid, dim3(loss_threads), 0, stream, pixels_per_sample, logits, target,
           config.pos_weight, scale, bce_only, w.partials);
  } else {
    launch(KERNEL(loss_partials_kernel1<bf16>), grid, dim3(loss_threads), 0, stream, pixels_per_sample, logits, target,
           config.pos_weight, scale, bce_only, w.partials);
  }
  launch(KERNEL(loss_sums_kernel), dim3(1), dim3(loss_threads), 0, stream, n, global_n, chunks, config, w.partials,
         w.sample_sums, w.coefficients, w.batch_sums);
}

template <DeviceKind D>
void SegmentationLoss<D>::finish(int n, int64_t pixels_per_sample, int global_n, const bf16* logits,
                                 const float* target, const LossConfig& config, float* loss, bf16* dlogits,
                                 void* workspace, Stream stream) {
  const LossWorkspace w = carve(workspace, n);
  launch(KERNEL(loss_finalise_kernel), dim3(1), dim3(1), 0, stream, global_n, pixels_per_sample, config,
         static_cast<const double*>(w.batch_sums), w.coefficients, loss);
  if (dlogits == nullptr || config.dice_weight == 0.0f) return;
  const dim3 grid(static_cast<unsigned>(loss_chunks(pixels_per_sample)), static_cast<unsigned>(n));
  const float scale = bce_gradient_scale(config, global_n, pixels_per_sample);
  const auto coefficients = static_cast<const float*>(w.coefficients);
  if (loss_octets_fit(pixels_per_sample, logits, target, dlogits)) {
    launch(KERNEL(loss_gradient_kernel2<bf16>), grid, dim3(loss_threads), 0, stream, pixels_per_sample,
           config.dice_per_sample, logits, target, config.pos_weight, scale, coefficients, dlogits);
  } else {
    launch(KERNEL(loss_gradient_kernel1<bf16>), grid, dim3(loss_threads), 0, stream, pixels_per_sample,
           config.dice_per_sample, logits, target, config.pos_weight, scale, coefficients, dlogits);
  }
}

template struct SegmentationLoss<KERNEL_DEVICE>;

}  // namespace unet
