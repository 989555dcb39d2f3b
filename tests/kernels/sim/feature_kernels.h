// Small kernels that each exercise one feature of the kernel dialect, so the sim runtime is proven
// feature by feature against plain host computations (tests/kernels/sim/test_sim_features.cpp), and the same
// kernels run on cuda when a GPU is present. Misuse kernels check that errors are reported.
#pragma once

#include <cstddef>

#include "kernels/backend.h"

namespace unet {

template <DeviceKind D>
struct FeatureKernels {
  // y = a * x + y with a grid-stride loop over a grid smaller than the data.
  static void saxpy(int n, float a, const float* x /*(n)*/, float* y /*(n)*/, Stream stream);
  // out = in^T through a 32x33 shared tile (bank padding) with 32x8 blocks.
  static void transpose(int rows, int cols, const float* in /*(rows, cols)*/, float* out /*(cols, rows)*/,
                        Stream stream);
  // One sum per block of `block_threads` elements: warp shuffles, then shared memory and __syncthreads.
  static void block_sums(int n, int block_threads, const float* x /*(n)*/, float* sums /*(ceil(n/block))*/,
                         Stream stream);
  // counts[b] = number of values equal to b, through a dynamic-shared-memory private histogram and
  // integer atomics.
  static void histogram(int n, const int* values /*(n)*/, int bins, int* counts /*(bins)*/, Stream stream);
  // Reverses each block's slice of x through dynamic shared memory.
  static void reverse_blocks(int n, int block_threads, const float* x /*(n)*/, float* y /*(n)*/, Stream stream);
  // Inclusive prefix sum of each 1024-element segment: a 1024-thread block, __shfl_up_sync.
  static void scan_1024(int segments, const int* x /*(segments, 1024)*/, int* y /*(segments, 1024)*/, Stream stream);
  // out[global linear thread] = that thread's (blockIdx, threadIdx), packed: a 3-D grid of 3-D blocks.
  static void index_3d(const int grid[3], const int block[3], int* out /*(threads, 6)*/, Stream stream);
  // y = c0 + c1 x + c2 x^2 + c3 x^3 with the coefficients in __constant__ memory.
  static void polynomial(int n, const float coefficients[4], const float* x /*(n)*/, float* y /*(n)*/,
                         Stream stream);
  // One warp: full-warp ballot/any/all of predicate != 0, and a ballot over lanes 0-15 only while
  // lanes 16-31 take the other branch.
  static void warp_votes(const int* predicate /*(32)*/, unsigned* results /*(4)*/, Stream stream);
  // One warp: xor all-reduce max, width-8 segment sums, broadcast of lane 3, shuffle down/up.
  static void warp_shuffles(const float* x /*(32)*/, float* results /*(32, 5)*/, Stream stream);
  // float4 loads through __ldg, atomicMax, atomicCAS and atomicAdd(float) on one counter.
  static void vector_atomics(int n4, const float* x /*(n4 * 4), 16-byte aligned*/, int* max_bits /*(1)*/,
                             int* cas_slot /*(1)*/, float* total /*(1)*/, Stream stream);
  // The fast-math intrinsics: (__expf, __logf, __fdividef, rsqrtf, fmaf) of x, per element.
  static void intrinsics(int n, const float* x /*(n), positive*/, float* y /*(n, 5)*/, Stream stream);

  // Misuse, reported by the sim runtime (and, where CUDA reports it too, by cuda).
  static void divergent_barrier(Stream stream);        // threads at two different __syncthreads
  static void return_before_barrier(Stream stream);    // one thread returns, the others wait
  static void shuffle_with_returned_lanes(Stream stream);
  static void launch_block(int x, int y, int z, Stream stream);             // any block shape
  static void launch_dynamic_shared(size_t bytes, bool opt_in, Stream stream);
  static void write_past_end(int n, float* y /*(n)*/, Stream stream);      // writes y[n]
};

extern template struct FeatureKernels<DeviceKind::sim>;
extern template struct FeatureKernels<DeviceKind::cuda>;

}  // namespace unet
