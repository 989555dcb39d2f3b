// Feature kernels for the dialect tests; see feature_kernels.h.
#include "tests/kernels/sim/feature_kernels.h"

#include <algorithm>

#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

constexpr unsigned full_mask = 0xffffffffu;

__global__ void saxpy_kernel(int n, float a, const float* __restrict__ x, float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) y[i] = a * x[i] + y[i];
}

constexpr int transpose_tile = 32;
constexpr int transpose_rows = 8;

__global__ void transpose_kernel(int rows, int cols, const float* __restrict__ in, float* __restrict__ out) {
  // One column of padding puts tile[i][c] and tile[i+1][c] in different banks.
  __shared__ float tile[transpose_tile][transpose_tile + 1];
  int x = blockIdx.x * transpose_tile + threadIdx.x;
  int y = blockIdx.y * transpose_tile + threadIdx.y;
  for (int j = 0; j < transpose_tile; j += transpose_rows) {
    if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(y + j) * cols + x];
  }
  __syncthreads();
  x = blockIdx.y * transpose_tile + threadIdx.x;
  y = blockIdx.x * transpose_tile + threadIdx.y;
  for (int j = 0; j < transpose_tile; j += transpose_rows) {
    if (x < rows && y + j < cols) out[(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
  }
}

__device__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(full_mask, value, offset);
  return value;
}

__global__ void block_sum_kernel(int n, const float* __restrict__ x, float* __restrict__ sums) {
  __shared__ float warp_sums[32];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const float total = warp_sum(i < n ? x[i] : 0.0f);
  if (lane == 0) warp_sums[warp] = total;
  __syncthreads();
  if (warp == 0) {
    const float block_total = warp_sum(lane < static_cast<int>(blockDim.x / 32) ? warp_sums[lane] : 0.0f);
    if (lane == 0) sums[blockIdx.x] = block_total;
  }
}

__global__ void histogram_kernel(int n, const int* __restrict__ values, int bins, int* __restrict__ counts) {
  DYNAMIC_SHARED(int, local_counts);
  for (int b = threadIdx.x; b < bins; b += blockDim.x) local_counts[b] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    atomicAdd(&local_counts[values[i]], 1);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < bins; b += blockDim.x) atomicAdd(&counts[b], local_counts[b]);
}

__global__ void reverse_kernel(int n, const float* __restrict__ x, float* __restrict__ y) {
  DYNAMIC_SHARED(float, slice);
  const int base = blockIdx.x * blockDim.x;
  const int count = min(static_cast<int>(blockDim.x), n - base);
  if (static_cast<int>(threadIdx.x) < count) slice[threadIdx.x] = x[base + threadIdx.x];
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < count) y[base + threadIdx.x] = slice[count - 1 - threadIdx.x];
}

__device__ int warp_inclusive_scan(int value, int lane) {
  for (int delta = 1; delta < 32; delta *= 2) {
    const int below = __shfl_up_sync(full_mask, value, delta);
    if (lane >= delta) value += below;
  }
  return value;
}

__global__ void __launch_bounds__(1024) scan_1024_kernel(const int* __restrict__ x, int* __restrict__ y) {
  __shared__ int warp_totals[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  int value = warp_inclusive_scan(x[blockIdx.x * 1024 + threadIdx.x], lane);
  if (lane == 31) warp_totals[warp] = value;
  __syncthreads();
  if (warp == 0) warp_totals[lane] = warp_inclusive_scan(warp_totals[lane], lane);
  __syncthreads();
  if (warp > 0) value += warp_totals[warp - 1];
  y[blockIdx.x * 1024 + threadIdx.x] = value;
}

__global__ void index_3d_kernel(int* __restrict__ out) {
  const int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int global = block * blockDim.x * blockDim.y * blockDim.z + thread;
  const int packed[6] = {static_cast<int>(blockIdx.x),  static_cast<int>(blockIdx.y),
                         static_cast<int>(blockIdx.z),  static_cast<int>(threadIdx.x),
                         static_cast<int>(threadIdx.y), static_cast<int>(threadIdx.z)};
  for (int k = 0; k < 6; ++k) out[global * 6 + k] = packed[k];
}

struct Cubic {
  float c[4];
};
__constant__ Cubic cubic;

__global__ void polynomial_kernel(int n, const float* __restrict__ x, float* __restrict__ y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = fmaf(fmaf(fmaf(cubic.c[3], x[i], cubic.c[2]), x[i], cubic.c[1]), x[i], cubic.c[0]);
}

__global__ void warp_votes_kernel(const int* __restrict__ predicate, unsigned* __restrict__ results) {
  const int lane = threadIdx.x;
  const int p = predicate[lane];
  const unsigned ballot = __ballot_sync(full_mask, p);
  const int any = __any_sync(full_mask, p);
  const int all = __all_sync(full_mask, p);
  if (lane == 0) {
    results[0] = ballot;
    results[1] = static_cast<unsigned>(any);
    results[2] = static_cast<unsigned>(all);
  }
  if (lane < 16) {
    const unsigned low_ballot = __ballot_sync(0x0000ffffu, p);
    if (lane == 0) results[3] = low_ballot;
  } else {
    __syncwarp(0xffff0000u);
  }
}

__global__ void warp_shuffles_kernel(const float* __restrict__ x, float* __restrict__ results) {
  const int lane = threadIdx.x;
  const float v = x[lane];
  float maximum = v;
  for (int mask = 16; mask > 0; mask /= 2) maximum = fmaxf(maximum, __shfl_xor_sync(full_mask, maximum, mask));
  float segment_sum = v;
  for (int mask = 4; mask > 0; mask /= 2) segment_sum += __shfl_xor_sync(full_mask, segment_sum, mask, 8);
  results[lane * 5 + 0] = maximum;
  results[lane * 5 + 1] = segment_sum;
  results[lane * 5 + 2] = __shfl_sync(full_mask, v, 3);
  results[lane * 5 + 3] = __shfl_down_sync(full_mask, v, 5);
  results[lane * 5 + 4] = __shfl_up_sync(full_mask, v, 2, 16);
}

__global__ void vector_atomics_kernel(int n4, const float* __restrict__ x, int* max_bits, int* cas_slot,
                                      float* total) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n4) return;
  const float4 quad = __ldg(reinterpret_cast<const float4*>(x) + i);
  const float largest = fmaxf(fmaxf(quad.x, quad.y), fmaxf(quad.z, quad.w));
  // Non-negative floats order like their bit patterns.
  atomicMax(max_bits, __float_as_int(largest));
  atomicCAS(cas_slot, -1, i);  // the first thread to arrive claims the slot
  atomicAdd(total, (quad.x + quad.y) + (quad.z + quad.w));
}

__global__ void intrinsics_kernel(int n, const float* __restrict__ x, float* __restrict__ y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i];
  y[i * 5 + 0] = __expf(v);
  y[i * 5 + 1] = __logf(v);
  y[i * 5 + 2] = __fdividef(1.0f, v);
  y[i * 5 + 3] = rsqrtf(v);
  y[i * 5 + 4] = fmaf(v, v, 1.0f);
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

__global__ void return_before_barrier_kernel() {
  if (threadIdx.x == 5) return;
  __syncthreads();
}

__global__ void shuffle_with_returned_lanes_kernel() {
  if (threadIdx.x >= 16) return;
  (void)__shfl_xor_sync(full_mask, 1.0f, 1);
}

__global__ void empty_kernel() {}

__global__ void dynamic_shared_kernel(int bytes) {
  DYNAMIC_SHARED(unsigned char, scratch);
  for (int i = threadIdx.x; i < bytes; i += blockDim.x) scratch[i] = static_cast<unsigned char>(i);
}

__global__ void write_past_end_kernel(int n, float* y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = 1.0f;  // the bug: <= instead of <
}

}  // namespace unet::KERNEL_BACKEND

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void FeatureKernels<D>::saxpy(int n, float a, const float* x, float* y, Stream stream) {
  const int blocks = static_cast<int>(std::min<int64_t>(ceil_div(n, 128), 4));
  launch(KERNEL(saxpy_kernel), dim3(blocks), dim3(128), 0, stream, n, a, x, y);
}

template <DeviceKind D>
void FeatureKernels<D>::transpose(int rows, int cols, const float* in, float* out, Stream stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, transpose_tile)), static_cast<unsigned>(ceil_div(rows, transpose_tile)));
  launch(KERNEL(transpose_kernel), grid, dim3(transpose_tile, transpose_rows), 0, stream, rows, cols, in, out);
}

template <DeviceKind D>
void FeatureKernels<D>::block_sums(int n, int block_threads, const float* x, float* sums, Stream stream) {
  launch(KERNEL(block_sum_kernel), dim3(static_cast<unsigned>(ceil_div(n, block_threads))), dim3(block_threads), 0,
         stream, n, x, sums);
}

template <DeviceKind D>
void FeatureKernels<D>::histogram(int n, const int* values, int bins, int* counts, Stream stream) {
  launch(KERNEL(histogram_kernel), dim3(3), dim3(96), bins * sizeof(int), stream, n, values, bins, counts);
}

template <DeviceKind D>
void FeatureKernels<D>::reverse_blocks(int n, int block_threads, const float* x, float* y, Stream stream) {
  launch(KERNEL(reverse_kernel), dim3(static_cast<unsigned>(ceil_div(n, block_threads))), dim3(block_threads),
         block_threads * sizeof(float), stream, n, x, y);
}

template <DeviceKind D>
void FeatureKernels<D>::scan_1024(int segments, const int* x, int* y, Stream stream) {
  launch(KERNEL(scan_1024_kernel), dim3(segments), dim3(1024), 0, stream, x, y);
}

template <DeviceKind D>
void FeatureKernels<D>::index_3d(const int grid[3], const int block[3], int* out, Stream stream) {
  launch(KERNEL(index_3d_kernel), dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), 0, stream,
         out);
}

template <DeviceKind D>
void FeatureKernels<D>::polynomial(int n, const float coefficients[4], const float* x, float* y, Stream stream) {
  Cubic value;
  for (int k = 0; k < 4; ++k) value.c[k] = coefficients[k];
  copy_to_constant(cubic, value, stream);
  launch(KERNEL(polynomial_kernel), dim3(static_cast<unsigned>(ceil_div(n, 64))), dim3(64), 0, stream, n, x, y);
}

template <DeviceKind D>
void FeatureKernels<D>::warp_votes(const int* predicate, unsigned* results, Stream stream) {
  launch(KERNEL(warp_votes_kernel), dim3(1), dim3(32), 0, stream, predicate, results);
}

template <DeviceKind D>
void FeatureKernels<D>::warp_shuffles(const float* x, float* results, Stream stream) {
  launch(KERNEL(warp_shuffles_kernel), dim3(1), dim3(32), 0, stream, x, results);
}

template <DeviceKind D>
void FeatureKernels<D>::vector_atomics(int n4, const float* x, int* max_bits, int* cas_slot, float* total,
                                       Stream stream) {
  launch(KERNEL(vector_atomics_kernel), dim3(static_cast<unsigned>(ceil_div(n4, 64))), dim3(64), 0, stream, n4, x,
         max_bits, cas_slot, total);
}

template <DeviceKind D>
void FeatureKernels<D>::intrinsics(int n, const float* x, float* y, Stream stream) {
  launch(KERNEL(intrinsics_kernel), dim3(static_cast<unsigned>(ceil_div(n, 64))), dim3(64), 0, stream, n, x, y);
}

template <DeviceKind D>
void FeatureKernels<D>::divergent_barrier(Stream stream) {
  launch(KERNEL(divergent_barrier_kernel), dim3(2), dim3(32), 0, stream);
}

template <DeviceKind D>
void FeatureKernels<D>::return_before_barrier(Stream stream) {
  launch(KERNEL(return_before_barrier_kernel), dim3(1), dim3(64), 0, stream);
}

template <DeviceKind D>
void FeatureKernels<D>::shuffle_with_returned_lanes(Stream stream) {
  launch(KERNEL(shuffle_with_returned_lanes_kernel), dim3(1), dim3(32), 0, stream);
}

template <DeviceKind D>
void FeatureKernels<D>::launch_block(int x, int y, int z, Stream stream) {
  launch(KERNEL(empty_kernel), dim3(1), dim3(x, y, z), 0, stream);
}

template <DeviceKind D>
void FeatureKernels<D>::launch_dynamic_shared(size_t bytes, bool opt_in, Stream stream) {
  if (opt_in) allow_dynamic_shared(KERNEL(dynamic_shared_kernel), bytes);
  launch(KERNEL(dynamic_shared_kernel), dim3(2), dim3(128), bytes, stream, static_cast<int>(bytes));
}

template <DeviceKind D>
void FeatureKernels<D>::write_past_end(int n, float* y, Stream stream) {
  launch(KERNEL(write_past_end_kernel), dim3(static_cast<unsigned>(ceil_div(n + 1, 64))), dim3(64), 0, stream, n, y);
}

template struct FeatureKernels<KERNEL_DEVICE>;

}  // namespace unet
