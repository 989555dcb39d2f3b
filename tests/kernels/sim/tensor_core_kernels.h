// Kernels that exercise the tensor-core instructions of the dialect (kernels/tensor_core.h) one at
// a time, for known-answer tests on sim and on cuda (tests/kernels/sim/test_tensor_core_features.cpp), and
// misuse kernels whose errors the sim runtime must report (tests/kernels/sim/test_sim_errors.cpp).
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace unet {

template <DeviceKind D>
struct TensorCoreKernels {
  // One warp, one mma: d = a b + c, each lane loading its fragments as the PTX ISA lays them out.
  // a (16, 8) and b (8, 8) row-major, rounded to tf32 by tf32_from_float; c, d (16, 8).
  static void mma_tf32(const float* a, const float* b, const float* c, float* d, Stream stream);
  // a (16, 16), b (16, 8) row-major, rounded to bf16 by bf16x2_from_floats; c, d (16, 8).
  static void mma_bf16(const float* a, const float* b, const float* c, float* d, Stream stream);
  // One warp: matrices (4, 8, 8) of b16 values staged in shared memory, then loaded by ldmatrix
  // x1, x2, x4, x1.trans, x2.trans, x4.trans; registers (6 variants, 32 lanes, 4) receives each
  // lane's d[0 .. N-1] as returned (the rest untouched).
  static void ldmatrix(const uint16_t* matrices, uint32_t* registers, Stream stream);
  // 64 threads, cp.async into dynamic shared memory (first set to -1) in three groups (4-byte copies of x[0..63];
  // 16-byte copies of x[64..127] by threads 0-15; 8-byte copies of x[128 + 2t] with src-size 4 by
  // threads 0-31, zero-filling the upper half) and a 4-byte src-size-0 copy per thread. out (64, 8)
  // per thread t: [0] its 4-byte destination before any wait, [1] after wait_group<2>, [2] its
  // 16-byte destination's first value after wait_group<2>, [3] the same after wait_group<0>,
  // [4, 5] its 8-byte destination, [6] its zero-filled value, [7] thread t+1's 4-byte value
  // after a __syncthreads. x (192).
  static void cp_async_groups(const float* x, float* out, Stream stream);
  // 64 threads: thread t copies x[t] into shared memory with cp.async, waits for it, then (after a
  // __syncthreads when `barrier`) writes thread t-1's element to y[t] (y[0] = x[0]).
  static void neighbour_after_wait(bool barrier, const float* x, float* y, Stream stream);
  // tf32[i] = cvt.rna.tf32.f32(x[i]); bf16x2[i] = cvt.rn.bf16x2.f32 of (low x[i], high -x[i]).
  static void conversions(int n, const float* x, uint32_t* tf32, uint32_t* bf16x2, Stream stream);

  // Misuse, reported by the sim runtime.
  static void divergent_mma(Stream stream);            // lanes 0-15 and 16-31 at two different mma calls
  static void mma_with_returned_lanes(Stream stream);  // lanes 16-31 return before the mma
  static void unrounded_tf32_mma(Stream stream);       // an operand with low mantissa bits set
  static void misaligned_ldmatrix(Stream stream);      // lane 3's row address is 8 bytes off
  static void misaligned_cp_async(Stream stream);      // a 16-byte copy to a 4-byte-aligned address
};

extern template struct TensorCoreKernels<DeviceKind::sim>;
extern template struct TensorCoreKernels<DeviceKind::cuda>;

}  // namespace unet
