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
//   - shared memory, kStages = 3 stages of slices whose layout each pass chooses (its Tiles class):
//     K-contiguous rows [rows][kRowFloats] (a pixel's channels, a weight row), rows padded from 16
//     to kRowFloats = 20 floats, or K-major [kTileK][cols + 8] (16 rows of N contiguous values).
//     A fragment load reads element (row g, k t) of an 8 x 4 patch (g = lane / 4, t = lane % 4):
//     bank (20 g + t) or (72 t + g) mod 32 is distinct for all 32 lanes in either layout, so the
//     32-bit loads are conflict-free; every row stays 16-byte aligned for cp.async.
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
constexpr int kMaxBlocksPerSm = 4;  // 4 x 128 threads x <= 128 registers fill the register file
constexpr int kTileM = 128;
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kStages = 3;
constexpr int kRowFloats = kTileK + 4;          // a K-contiguous row
constexpr int kColumnFloats = kTileN + 8;       // a K-major row of an N-wide slice
constexpr int kWideColumnFloats = kTileM + 8;   // a K-major row of an M-wide slice
constexpr int kWarpM = 64;
constexpr int kWarpN = 32;

using Accumulator = float[kWarpM / 16][kWarpN / 8][4];  // [m16 tile][n8 tile][c fragment]

__device__ __forceinline__ int thread_index() { return static_cast<int>(threadIdx.x); }

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

// Fills a kRows x kCols slice of `tile` ([kRows][kLd]) with cp.async, one chunk of 4 floats
// (kVector: 16-byte copies, source and `fallback` 16-byte aligned) or of 1 float per copy:
// source(row, col) is where the chunk at (row, col) comes from, or null for zeros. `fallback` is
// any valid address of the tensor: a zero-filling copy reads nothing, but its source must still be
// a valid address. Each thread copies the same column of every kThreads / (kCols / chunk)-th row.
template <int kRows, int kCols, int kLd, bool kVector, class Source>
__device__ __forceinline__ void copy_chunks(float* tile, const Source& source, const float* fallback) {
  constexpr int kChunk = kVector ? 4 : 1;  // floats per copy
  constexpr int kChunksPerRow = kCols / kChunk;
  constexpr int kRowStep = kThreads / kChunksPerRow;
  static_assert(kRows % kRowStep == 0, "every thread copies the same number of rows");
  const int first_row = thread_index() / kChunksPerRow, col = thread_index() % kChunksPerRow * kChunk;
  UNET_UNROLL
  for (int row = first_row; row < kRows; row += kRowStep) {
    const float* src = source(row, col);
    float* dst = tile + row * kLd + col;
    if constexpr (kVector) {
      cp_async<16>(dst, src != nullptr ? src : fallback, src != nullptr ? 16 : 0);
    } else {
      cp_async<4>(dst, src != nullptr ? src : fallback, src != nullptr ? 4 : 0);
    }
  }
}

// The common case: row r's values c0 .. c0 + kCols - 1 of `width`, contiguous from row_source(r)
// (null: a row of zeros), zero past width (a multiple of 4 with kVector).
template <int kRows, int kCols, int kLd, bool kVector, class RowSource>
__device__ __forceinline__ void copy_slice(float* tile, const RowSource& row_source, const float* fallback, int c0,
                                           int width) {
  const auto source = [&](int row, int col) -> const float* {
    const float* src = row_source(row);
    return src != nullptr && c0 + col < width ? src + c0 + col : nullptr;
  };
  copy_chunks<kRows, kCols, kLd, kVector>(tile, source, fallback);
}

// The two slice layouts: element (row, k) of a K-contiguous [rows][kRowFloats] slice, and of a
// K-major [kTileK][kLd] slice (kLd = kColumnFloats for N = 64 columns, kTileM + 8 for 128).
__device__ __forceinline__ float k_contiguous(const float* slice, int row, int k) {
  return slice[row * kRowFloats + k];
}
template <int kLd>
__device__ __forceinline__ float k_major(const float* slice, int row, int k) {
  return slice[k * kLd + row];
}

// One K-step on a stage: the warp's 64 x 32 tile, two mma k-steps of 8. a(m, k) and b(n, k) read
// the stage's A and B elements (m, n within the block tile).
template <class ReadA, class ReadB>
__device__ __forceinline__ void multiply_stage(const ReadA& a, const ReadB& b, Accumulator& acc) {
  const int lane = thread_index() % 32, warp = thread_index() / 32;
  const int g = lane >> 2, t = lane & 3;
  const int m0 = (warp / 2) * kWarpM, n0 = (warp % 2) * kWarpN;
  UNET_UNROLL
  for (int kk = 0; kk < kTileK; kk += 8) {
    uint32_t a_frag[kWarpM / 16][4], b_frag[kWarpN / 8][2];
    UNET_UNROLL
    for (int mi = 0; mi < kWarpM / 16; ++mi) {
      const int m = m0 + mi * 16 + g, k = kk + t;
      a_frag[mi][0] = tf32_from_float(a(m, k));
      a_frag[mi][1] = tf32_from_float(a(m + 8, k));
      a_frag[mi][2] = tf32_from_float(a(m, k + 4));
      a_frag[mi][3] = tf32_from_float(a(m + 8, k + 4));
    }
    UNET_UNROLL
    for (int ni = 0; ni < kWarpN / 8; ++ni) {
      const int n = n0 + ni * 8 + g, k = kk + t;
      b_frag[ni][0] = tf32_from_float(b(n, k));
      b_frag[ni][1] = tf32_from_float(b(n, k + 4));
    }
    UNET_UNROLL
    for (int mi = 0; mi < kWarpM / 16; ++mi) {
      UNET_UNROLL
      for (int ni = 0; ni < kWarpN / 8; ++ni) mma_tf32_m16n8k8(acc[mi][ni], a_frag[mi], b_frag[ni], acc[mi][ni]);
    }
  }
}

// The main loop. Tiles provides kStageFloats (one stage's size), steps() (K-steps of this block),
// copy(stage) (cp.async of the current step's slices into one stage), advance() (to the next
// step) and multiply(stage, acc) (multiply_stage on a stage's slices). `shared` is the block's
// kStages * Tiles::kStageFloats floats of dynamic shared memory.
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
      tiles.copy(shared + stage * Tiles::kStageFloats);
      tiles.advance();
    }
    cp_async_commit_group();
  }
  for (int step = 0; step < steps; ++step) {
    cp_async_wait_group<kStages - 2>();
    __syncthreads();
    const int next = step + kStages - 1;
    if (next < steps) {
      tiles.copy(shared + next % kStages * Tiles::kStageFloats);
      tiles.advance();
    }
    cp_async_commit_group();
    tiles.multiply(shared + step % kStages * Tiles::kStageFloats, acc);
  }
  cp_async_wait_group<0>();  // only empty groups remain: nothing in flight when the block ends
}

}  // namespace unet::KERNEL_BACKEND::mma
