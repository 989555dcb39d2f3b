// The mma.sync throughput kernels (bench/mma_peak.h), in the kernel dialect so that sim runs them too.
#include "bench/mma_peak.h"

#include <string>

#include "kernels/dialect.h"
#include "kernels/error.h"
#include "kernels/tensor_core.h"

namespace unet::KERNEL_BACKEND {

constexpr int kChains = MmaPeak<KERNEL_DEVICE>::kChains;

__device__ __forceinline__ float a_value(int row, int column, int seed) {
  return static_cast<float>((3 * row + 5 * column + seed) % 7 - 3);
}
__device__ __forceinline__ float b_value(int row, int column, int seed) {
  return static_cast<float>((2 * row + 3 * column + seed) % 5 - 2);
}

// The lane's (16, 8) accumulator element c[i]: row g + 8 (i >= 2), column 2t + (i & 1) (tensor_core.h).
__device__ __forceinline__ int accumulator_index(int lane, int i) {
  return ((lane >> 2) + (i >= 2 ? 8 : 0)) * 8 + (lane & 3) * 2 + (i & 1);
}

// The sum of the chains, written as the warp's tile of out (blocks * kWarps, 16, 8).
__device__ __forceinline__ void write_tile(const float (&acc)[kChains][4], float* out) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = (static_cast<int>(blockIdx.x * blockDim.x) + static_cast<int>(threadIdx.x)) >> 5;
  for (int i = 0; i < 4; ++i) {
    float sum = 0;
    for (int c = 0; c < kChains; ++c) sum += acc[c][i];
    out[warp * 128 + accumulator_index(lane, i)] = sum;
  }
}

__global__ void mma_peak_bf16_kernel(int iterations, int seed, float* out) {
  const int lane = static_cast<int>(threadIdx.x) & 31, g = lane >> 2, t = lane & 3;
  uint32_t a[4], b[2];
  for (int r = 0; r < 4; ++r) {  // A(g + 8 (r & 1), 2t + 8 (r >> 1) and the next column)
    const int row = g + 8 * (r & 1), column = 2 * t + 8 * (r >> 1);
    a[r] = bf16x2_from_floats(a_value(row, column, seed), a_value(row, column + 1, seed));
  }
  for (int r = 0; r < 2; ++r) {  // B(2t + 8r and the next row, g)
    const int row = 2 * t + 8 * r;
    b[r] = bf16x2_from_floats(b_value(row, g, seed), b_value(row + 1, g, seed));
  }
  float acc[kChains][4] = {};
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) mma_bf16_m16n8k16(acc[c], a, b, acc[c]);
  }
  write_tile(acc, out);
}

__global__ void mma_peak_tf32_kernel(int iterations, int seed, float* out) {
  const int lane = static_cast<int>(threadIdx.x) & 31, g = lane >> 2, t = lane & 3;
  const uint32_t a[4] = {tf32_from_float(a_value(g, t, seed)), tf32_from_float(a_value(g + 8, t, seed)),
                         tf32_from_float(a_value(g, t + 4, seed)), tf32_from_float(a_value(g + 8, t + 4, seed))};
  const uint32_t b[2] = {tf32_from_float(b_value(t, g, seed)), tf32_from_float(b_value(t + 4, g, seed))};
  float acc[kChains][4] = {};
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) mma_tf32_m16n8k8(acc[c], a, b, acc[c]);
  }
  write_tile(acc, out);
}

}  // namespace unet::KERNEL_BACKEND

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
double MmaPeak<D>::flop(MmaShape shape, int blocks, int iterations) {
  const double k = shape == MmaShape::bf16_m16n8k16 ? 16 : 8;
  return 2.0 * 16 * 8 * k * kChains * iterations * double{kWarps} * blocks;
}

template <DeviceKind D>
void MmaPeak<D>::run(MmaShape shape, int blocks, int iterations, int seed, float* out, Stream stream) {
  if (blocks < 1 || iterations < 1 || iterations > kMostIterations || seed < 0) {
    throw Error("mma_peak: needs blocks >= 1, 1 <= iterations <= " + std::to_string(kMostIterations) +
                " and seed >= 0; got " + std::to_string(blocks) + ", " + std::to_string(iterations) + ", " +
                std::to_string(seed));
  }
  if (shape == MmaShape::bf16_m16n8k16) {
    launch(KERNEL(mma_peak_bf16_kernel), dim3(blocks), dim3(32 * kWarps), 0, stream, iterations, seed, out);
  } else {
    launch(KERNEL(mma_peak_tf32_kernel), dim3(blocks), dim3(32 * kWarps), 0, stream, iterations, seed, out);
  }
}

template struct MmaPeak<KERNEL_DEVICE>;

}  // namespace unet
