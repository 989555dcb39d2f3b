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

// The epilogue's walk over this thread's accumulators: store(row, col, value) for each, (row, col)
// within the block tile; the pass's store checks the edges and writes the output.
template <class Store>
__device__ __forceinline__ void for_each_accumulator(const Accumulator& acc, const Store& store) {
  UNET_UNROLL
  for (int mi = 0; mi < kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) store(accumulator_row(mi, i), accumulator_col(ni, i), acc[mi][ni][i]);
    }
  }
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

// The main loop, for the TF32 and the bf16 tiles alike. Tiles provides Element (what shared memory
// holds), kStages (the pipeline's depth), kStageElements (one stage's size), steps() (K-steps of
// this block), copy(stage) (the current step's slices into one stage, as cp.async copies or, on a
// fallback path, plain stores), advance() (to the next step) and multiply(stage, acc) (the mma
// tiles of a stage). `shared` is the block's kStages * kStageElements elements of dynamic shared
// memory. A version 4 (wgmma, TMA) would keep this shape: its copy() a TMA request per stage, its
// waits on the stage's mbarrier instead of wait_group.
template <class Tiles>
__device__ __forceinline__ void multiply(Tiles& tiles, typename Tiles::Element* shared, Accumulator& acc) {
  constexpr int kStages = Tiles::kStages;
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
      tiles.copy(shared + stage * Tiles::kStageElements);
      tiles.advance();
    }
    cp_async_commit_group();
  }
  for (int step = 0; step < steps; ++step) {
    cp_async_wait_group<kStages - 2>();
    __syncthreads();
    const int next = step + kStages - 1;
    if (next < steps) {
      tiles.copy(shared + next % kStages * Tiles::kStageElements);
      tiles.advance();
    }
    cp_async_commit_group();
    tiles.multiply(shared + step % kStages * Tiles::kStageElements, acc);
  }
  cp_async_wait_group<0>();  // only empty groups remain: nothing in flight when the block ends
}

// ---------------------------------------------------------------------------------------------
// bf16: operands stored as bf16 in global and shared memory, fed to mma.sync m16n8k16 through
// ldmatrix; the same 128 x 64 block tile, warps and fp32 Accumulator as the TF32 kernels.
//
// A stage holds K = kBf16TileK = 32 (two mma k-steps) of each slice, in one of two layouts, both
// made of 16-byte chunks of 8 consecutive bf16 (what a cp.async copies and an ldmatrix row reads):
//   - K-contiguous, [rows][32]: a row is 64 bytes, 4 chunks. Chunk c of row r is stored at chunk
//     c ^ ((r >> 1) & 3) of the row.
//   - K-major, [32][kCols] (kCols = 64 or 128): a row is 8 or 16 chunks. Chunk c of row k is
//     stored at chunk c ^ (k & 7).
// Why these swizzles: an ldmatrix serves each of its 8 x 8 matrices in one pass over the 32 banks
// (128 bytes) if the matrix's 8 row addresses fall in 8 distinct 16-byte groups of banks. A
// matrix's rows are 8 consecutive rows of a slice at the same logical chunk c. K-contiguous: the
// byte offset mod 128 is 64 (r & 1) + 16 (c ^ ((r >> 1) & 3)), and (r & 1, (r >> 1) & 3) takes all
// 8 values over the 8 rows. K-major: a row is 128 or 256 bytes, so the offset mod 128 is
// 16 ((c ^ k) & 7), 8 distinct values over k & 7. Without the swizzle all 8 rows of a K-major
// matrix (and 4 pairs of a K-contiguous one) hit the same banks: an 8-way (2-way) conflict. The
// cp.async stores (consecutive threads, consecutive chunks of a row) stay conflict-free, since a
// row's chunks are only permuted.
//
// Fragments (kernels/tensor_core.h's m16n8k16 layouts), per 16 x 16 A tile or 16 (n) x 16 (k) B
// pair of n8 tiles, one ldmatrix.x4 each; lane l = 8 j + r addresses row r of matrix j:
//   A from K-contiguous [m][k], no .trans: matrix j = rows (j & 1) * 8, k (j >> 1) * 8: a[0..3]
//   A from K-major [k][m], .trans:         matrix j = k (j >> 1) * 8 + r, m (j & 1) * 8
//   B from K-contiguous [n][k], no .trans: matrix j = n (j >> 1) * 8 + r, k (j & 1) * 8: b[0..1] of
//                                          the first n8 tile, then of the second
//   B from K-major [k][n], .trans:         matrix j = k (j & 1) * 8 + r, n (j >> 1) * 8
// .trans hands lane (g, t) column g, rows 2t and 2t+1 of the stored matrix, i.e. the element pair
// along K that the fragment wants when K runs down the slice's rows.
//
// Copies: with kVector (every pointer 16-byte aligned, every channel count and pixel stride a
// multiple of 8) a chunk never straddles a channel range's end or a tap, and each is one 16-byte
// cp.async, zero-filling (source size 0) past an edge, in the padding or past a channel count.
// Otherwise (the 3-channel first layer, the 1-channel head's gradient, odd strides or offsets) the
// same tiles are gathered element by element through registers with plain loads and shared
// stores (cp.async moves at least 4 bytes and needs them aligned and inside the tensor's channel
// range, which an odd channel count or offset breaks); the pipeline's barriers order those stores
// as they order the copies, and only the copy is slower: the mma and ldmatrix path is the same.
constexpr int kBf16TileK = 32;
constexpr int kChunk = 8;  // bf16 per 16-byte chunk

__device__ __forceinline__ int k_contiguous_offset(int row, int k) {
  return row * kBf16TileK + ((k / kChunk) ^ ((row >> 1) & 3)) * kChunk + k % kChunk;
}
template <int kCols>
__device__ __forceinline__ int k_major_offset(int k, int col) {
  return k * kCols + ((col / kChunk) ^ (k & 7)) * kChunk + col % kChunk;
}

// Fills a slice of kRows x kCols stored elements (row, col: the layout's own rows and columns),
// element (row, col) at slice[offset(row, col)]: source(row, col) is where the chunk (kVector) or
// the element (otherwise) at (row, col) comes from, or null for zeros. `fallback` is any valid,
// 16-byte aligned address of the tensor: a zero-filling cp.async reads nothing there.
template <int kRows, int kCols, bool kVector, class Offset, class Source>
__device__ __forceinline__ void copy_bf16_slice(bf16* slice, const Offset& offset, const Source& source,
                                                const bf16* fallback) {
  constexpr int kChunksPerRow = kCols / kChunk;
  static_assert(kRows * kChunksPerRow % kThreads == 0, "every thread copies the same number of chunks");
  UNET_UNROLL
  for (int chunk = thread_index(); chunk < kRows * kChunksPerRow; chunk += kThreads) {
    const int row = chunk / kChunksPerRow, col = chunk % kChunksPerRow * kChunk;
    bf16* destination = slice + offset(row, col);
    if constexpr (kVector) {
      const bf16* src = source(row, col);
      cp_async<16>(destination, src != nullptr ? src : fallback, src != nullptr ? 16 : 0);
    } else {
      UNET_UNROLL
      for (int e = 0; e < kChunk; ++e) {
        const bf16* src = source(row, col + e);
        destination[e] = src != nullptr ? *src : bf16{0};
      }
    }
  }
}

// The warp's A fragments (4 m16 tiles) and B fragments (4 n8 tiles) of one k16 step at kk.
struct Bf16Fragments {
  uint32_t a[kWarpM / 16][4];
  uint32_t b[kWarpN / 8][2];
};

__device__ __forceinline__ int warp_row0() { return thread_index() / 32 / 2 * kWarpM; }
__device__ __forceinline__ int warp_col0() { return thread_index() / 32 % 2 * kWarpN; }

// A fragments from a K-contiguous [kTileM][32] slice.
__device__ __forceinline__ void load_a_k_contiguous(const bf16* slice, int kk, uint32_t (&a)[kWarpM / 16][4]) {
  const int lane = thread_index() % 32;
  UNET_UNROLL
  for (int mi = 0; mi < kWarpM / 16; ++mi) {
    const int m = warp_row0() + mi * 16 + lane % 16, k = kk + lane / 16 * 8;
    ldmatrix<4, false>(a[mi], slice + k_contiguous_offset(m, k));
  }
}

// A fragments from a K-major [32][kTileM] slice.
__device__ __forceinline__ void load_a_k_major(const bf16* slice, int kk, uint32_t (&a)[kWarpM / 16][4]) {
  const int lane = thread_index() % 32, j = lane / 8, r = lane % 8;
  UNET_UNROLL
  for (int mi = 0; mi < kWarpM / 16; ++mi) {
    const int k = kk + (j >> 1) * 8 + r, m = warp_row0() + mi * 16 + (j & 1) * 8;
    ldmatrix<4, true>(a[mi], slice + k_major_offset<kTileM>(k, m));
  }
}

// B fragments from a K-contiguous [kTileN][32] slice (rows: n).
__device__ __forceinline__ void load_b_k_contiguous(const bf16* slice, int kk, uint32_t (&b)[kWarpN / 8][2]) {
  const int lane = thread_index() % 32, j = lane / 8, r = lane % 8;
  UNET_UNROLL
  for (int pair = 0; pair < kWarpN / 16; ++pair) {
    const int n = warp_col0() + pair * 16 + (j >> 1) * 8 + r, k = kk + (j & 1) * 8;
    uint32_t d[4];
    ldmatrix<4, false>(d, slice + k_contiguous_offset(n, k));
    b[2 * pair][0] = d[0], b[2 * pair][1] = d[1], b[2 * pair + 1][0] = d[2], b[2 * pair + 1][1] = d[3];
  }
}

// B fragments from a K-major [32][kTileN] slice (rows: k).
__device__ __forceinline__ void load_b_k_major(const bf16* slice, int kk, uint32_t (&b)[kWarpN / 8][2]) {
  const int lane = thread_index() % 32, j = lane / 8, r = lane % 8;
  UNET_UNROLL
  for (int pair = 0; pair < kWarpN / 16; ++pair) {
    const int k = kk + (j & 1) * 8 + r, n = warp_col0() + pair * 16 + (j >> 1) * 8;
    uint32_t d[4];
    ldmatrix<4, true>(d, slice + k_major_offset<kTileN>(k, n));
    b[2 * pair][0] = d[0], b[2 * pair][1] = d[1], b[2 * pair + 1][0] = d[2], b[2 * pair + 1][1] = d[3];
  }
}

// The fused ReLU's mask on a pair of bf16: each half of g kept where the same half of the ReLU's
// output is > 0 (sign clear, not zero, not NaN: bits 0x0001 .. 0x7f80), else zeroed.
__device__ __forceinline__ uint32_t mask_pair(uint32_t g, uint32_t relu_output) {
  const auto positive = [](uint32_t half) { return half != 0 && half <= 0x7f80u; };
  return (positive(relu_output & 0xffffu) ? g & 0xffffu : 0u) | (positive(relu_output >> 16) ? g & 0xffff0000u : 0u);
}

// The warp's 16 mma of one k16 step.
__device__ __forceinline__ void multiply_fragments(const Bf16Fragments& f, Accumulator& acc) {
  UNET_UNROLL
  for (int mi = 0; mi < kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < kWarpN / 8; ++ni) mma_bf16_m16n8k16(acc[mi][ni], f.a[mi], f.b[ni], acc[mi][ni]);
  }
}

}  // namespace unet::KERNEL_BACKEND::mma
