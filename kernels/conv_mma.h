// conv_mma: the tensor-core block tile that the version-3 kernels of conv2d.cu are built from
// (docs/kernels/convolution.md, "Version 3"). Device code: include it after kernels/dialect.h,
// from kernels/*.cu only.
//
// The GEMM is the same implicit GEMM as version 2 (C = A B, each pass's Tiles class gathering A and
// B from its tensors), on mma.sync instead of FFMA:
//
//   - the block tile: 128 threads (4 warps) compute a kTileM x kTileN = 128 x 64 tile of C in
//     K-steps of kTileK = 16. Warp w owns rows (w / 2) * 64 .. + 63 and columns (w % 2) * 32 .. + 31:
//     4 x 4 mma tiles of 16 x 8, i.e. 64 fp32 accumulators per thread (Accumulator).
//   - shared memory, kStages = 3 stages, each an A slice [kTileM][kRowFloats] and a B slice
//     [kTileN][kRowFloats], K contiguous in a row (A row = one pixel, B row = one output channel),
//     rows padded from 16 to kRowFloats = 20 floats. A fragment load reads row g, column t of an
//     8 x 4 patch (g = lane / 4, t = lane % 4): bank (20 g + t) mod 32 is distinct for all 32
//     lanes, so the 32-bit loads are conflict-free; every row stays 16-byte aligned for cp.async.
//   - the pipeline (multiply): the gathers are cp.async copies straight from global to shared
//     memory, zero-filled where A or B is padding or past an edge. kStages - 1 K-steps are in
//     flight while one is multiplied: per step, wait for the oldest group, one __syncthreads (which
//     both publishes that stage to every thread and ends all reads of the stage about to be
//     refilled), issue the copies of step + kStages - 1 into that freed stage, commit, multiply.
//   - rounding: fragments are converted with tf32_from_float (cvt.rna) as they are read from shared
//     memory, so the tensors stay fp32 and the mma sees exactly the operands that
//     cpu::conv2d_forward_tf32 rounds.
//
// A Hopper version (wgmma reading shared memory through descriptors, TMA copies) would replace
// multiply_stage and the copies, and keep the Tiles classes' index maths.
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/conv_gemm.h"  // UNET_UNROLL
#include "kernels/tensor_core.h"

namespace unet::KERNEL_BACKEND::mma {

constexpr int kThreads = 128;
constexpr int kBlocksPerSm = 4;  // 4 x 128 threads x <= 128 registers fill the register file
constexpr int kTileM = 128;
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kStages = 3;
constexpr int kRowFloats = kTileK + 4;
constexpr int kWarpM = 64;
constexpr int kWarpN = 32;
constexpr int kStageFloats = (kTileM + kTileN) * kRowFloats;
constexpr size_t kSharedBytes = size_t{kStages} * kStageFloats * sizeof(float);  // 46,080

using Accumulator = float[kWarpM / 16][kWarpN / 8][4];  // [m16 tile][n8 tile][c fragment]

__device__ __forceinline__ int thread_index() { return static_cast<int>(threadIdx.x); }
__device__ __forceinline__ float* stage_a(float* shared, int stage) { return shared + stage * kStageFloats; }
__device__ __forceinline__ float* stage_b(float* shared, int stage) {
  return stage_a(shared, stage) + kTileM * kRowFloats;
}

// The C element that accumulator acc[mi][ni][i] of this thread holds, as (row, column) in the
// block tile (the mma's C layout: c[i] at (g + 8 (i >= 2), 2t + (i & 1))).
__device__ __forceinline__ int accumulator_row(int mi, int i) {
  const int lane = thread_index() % 32, warp = thread_index() / 32;
  return (warp / 2) * kWarpM + mi * 16 + (lane >> 2) + (i >= 2 ? 8 : 0);
}
__device__ __forceinline__ int accumulator_col(int ni, int i) {
  const int lane = thread_index() % 32, warp = thread_index() / 32;
  return (warp % 2) * kWarpN + ni * 8 + (lane & 3) * 2 + (i & 1);
}

// Copies a kRows x kTileK slice whose K-values are contiguous in each row into `tile`
// ([kRows][kRowFloats]): row r's values k0 .. k0 + 15 of `width`, from row_source(r) (null: a row
// of zeros), zero past width. kVector: 16-byte copies (row_source's pointers, `fallback` and width
// multiples of 4 floats and 16-byte aligned); else 4-byte copies. `fallback` is any valid address
// of the tensor: a zero-filling copy reads nothing, but its source must still be a valid address.
template <int kRows, bool kVector, class RowSource>
__device__ __forceinline__ void copy_slice(float* tile, const RowSource& row_source, const float* fallback, int k0,
                                           int width) {
  constexpr int kChunk = kVector ? 4 : 1;                    // floats per copy
  constexpr int kChunksPerRow = kTileK / kChunk;
  constexpr int kRowStep = kThreads / kChunksPerRow;
  static_assert(kRows % kRowStep == 0, "every thread copies the same number of rows");
  const int first_row = thread_index() / kChunksPerRow, k = thread_index() % kChunksPerRow * kChunk;
  UNET_UNROLL
  for (int row = first_row; row < kRows; row += kRowStep) {
    const float* src = row_source(row);
    const bool valid = src != nullptr && k0 + k < width;
    float* dst = tile + row * kRowFloats + k;
    if constexpr (kVector) {
      cp_async<16>(dst, valid ? src + k0 + k : fallback, valid ? 16 : 0);
    } else {
      cp_async<4>(dst, valid ? src + k0 + k : fallback, valid ? 4 : 0);
    }
  }
}

// One K-step on a stage: the warp's 64 x 32 tile, two mma k-steps of 8.
__device__ __forceinline__ void multiply_stage(const float* a, const float* b, Accumulator& acc) {
  const int lane = thread_index() % 32, warp = thread_index() / 32;
  const int g = lane >> 2, t = lane & 3;
  const float* a_warp = a + (warp / 2) * kWarpM * kRowFloats;
  const float* b_warp = b + (warp % 2) * kWarpN * kRowFloats;
  UNET_UNROLL
  for (int kk = 0; kk < kTileK; kk += 8) {
    uint32_t a_frag[kWarpM / 16][4], b_frag[kWarpN / 8][2];
    UNET_UNROLL
    for (int mi = 0; mi < kWarpM / 16; ++mi) {
      const float* p = a_warp + (mi * 16 + g) * kRowFloats + kk + t;
      a_frag[mi][0] = tf32_from_float(p[0]);
      a_frag[mi][1] = tf32_from_float(p[8 * kRowFloats]);
      a_frag[mi][2] = tf32_from_float(p[4]);
      a_frag[mi][3] = tf32_from_float(p[8 * kRowFloats + 4]);
    }
    UNET_UNROLL
    for (int ni = 0; ni < kWarpN / 8; ++ni) {
      const float* p = b_warp + (ni * 8 + g) * kRowFloats + kk + t;
      b_frag[ni][0] = tf32_from_float(p[0]);
      b_frag[ni][1] = tf32_from_float(p[4]);
    }
    UNET_UNROLL
    for (int mi = 0; mi < kWarpM / 16; ++mi) {
      UNET_UNROLL
      for (int ni = 0; ni < kWarpN / 8; ++ni) mma_tf32_m16n8k8(acc[mi][ni], a_frag[mi], b_frag[ni], acc[mi][ni]);
    }
  }
}

// The main loop. Tiles provides steps() (K-steps of this block), copy(a, b) (cp.async of the
// current step's slices into one stage) and advance() (to the next step). `shared` is the
// block's kSharedBytes of dynamic shared memory.
template <class Tiles>
__device__ __forceinline__ void multiply(Tiles& tiles, float* shared, Accumulator& acc) {
  UNET_UNROLL
  for (int mi = 0; mi < kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) acc[mi][ni][i] = 0.0f;
    }
  }
  const int steps = tiles.steps();
  // Every iteration commits one group, empty or not, so that wait_group<kStages - 2> always
  // means "the group of this step has landed".
  for (int stage = 0; stage < kStages - 1; ++stage) {
    if (stage < steps) {
      tiles.copy(stage_a(shared, stage), stage_b(shared, stage));
      tiles.advance();
    }
    cp_async_commit_group();
  }
  for (int step = 0; step < steps; ++step) {
    cp_async_wait_group<kStages - 2>();
    __syncthreads();
    const int next = step + kStages - 1;
    if (next < steps) {
      tiles.copy(stage_a(shared, next % kStages), stage_b(shared, next % kStages));
      tiles.advance();
    }
    cp_async_commit_group();
    multiply_stage(stage_a(shared, step % kStages), stage_b(shared, step % kStages), acc);
  }
  cp_async_wait_group<0>();  // only empty groups remain: nothing in flight when the block ends
}

}  // namespace unet::KERNEL_BACKEND::mma
