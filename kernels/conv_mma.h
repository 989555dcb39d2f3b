// conv_mma: the tensor-core block tile, operand slices and pipeline that the version-3 kernels of
// conv2d.cu and conv_transpose2d.cu are built from (docs/kernels/convolution.md, "Version 3"),
// for both elements: float (fp32 storage, TF32 mma) and bf16. Device code: include it after
// kernels/dialect.h, from kernels/*.cu only.
//
// The GEMM is the same implicit GEMM as version 2 (C = A B, each pass's Tiles class saying where
// each element of A and B comes from), on mma.sync instead of FFMA:
//
//   - the block tile (BlockTile): 128 threads (4 warps, 2 x 2) compute a kM x kN tile of C, warp
//     w owning rows (w / 2) kM / 2 .. and columns (w % 2) kN / 2 ..: a grid of 16 x 8 mma tiles
//     of fp32 accumulators per warp (BlockTile::Accumulator). Two tiles, 128 x 64 (LargeTile) and
//     64 x 64 (SmallTile), chosen per GEMM by kernels/tile_choice.h.
//   - a stage of shared memory holds K = Format::kTileK of each operand as a Slice, in one of two
//     layouts: K-contiguous [kWidth][K] (a pixel's channels, a weight row) or K-major [K][kWidth]
//     (K rows of M or N contiguous values), kWidth the block tile's M or N.
//   - the pipeline (multiply): the gathers are cp.async copies straight from global to shared
//     memory, zero-filled where A or B is padding or past an edge. Format::stages - 1 K-steps are
//     in flight while one is multiplied: per step, wait for the oldest group, one __syncthreads
//     (which both publishes that stage to every thread and ends all reads of the stage about to
//     be refilled), issue the copies of step + stages - 1 into that freed stage, commit, multiply.
//
// What differs between the elements is in Format<Element> and Slice<Element, ...> alone:
//
//   float (TF32): K-steps of 16, 3 stages, padded slices (K-contiguous rows of 16 + 4 floats,
//     K-major rows of kWidth + 8); fragments read element by element and rounded with
//     tf32_from_float (cvt.rna) as they leave shared memory, so the tensors stay fp32 and the mma
//     m16n8k8 sees exactly the operands cpu::conv2d_forward_tf32 rounds. A fragment load reads
//     element (g, t) of an 8 x 4 patch (g = lane / 4, t = lane % 4): bank (20 g + t) or
//     ((kWidth + 8) t + g) mod 32 is distinct for all 32 lanes, so the 32-bit loads are
//     conflict-free; every row stays 16-byte aligned for cp.async.
//   bf16: K-steps of 32, 4 stages (3 where a ReLU mask takes a third slice), XOR-swizzled
//     unpadded slices of 16-byte chunks of 8 bf16 (what a cp.async copies and an ldmatrix row
//     reads), fragments loaded with ldmatrix.x4 (.trans from K-major slices), mma m16n8k16.
//     The swizzle:
//     - K-contiguous, [rows][32]: a row is 64 bytes, 4 chunks. Chunk c of row r is stored at chunk
//       c ^ ((r >> 1) & 3) of the row.
//     - K-major, [32][kWidth] (kWidth = 64 or 128): a row is 8 or 16 chunks. Chunk c of row k is
//       stored at chunk c ^ (k & 7).
//     Why: an ldmatrix serves each of its 8 x 8 matrices in one pass over the 32 banks (128
//     bytes) if the matrix's 8 row addresses fall in 8 distinct 16-byte groups of banks. A
//     matrix's rows are 8 consecutive rows of a slice at the same logical chunk c. K-contiguous:
//     the byte offset mod 128 is 64 (r & 1) + 16 (c ^ ((r >> 1) & 3)), and (r & 1, (r >> 1) & 3)
//     takes all 8 values over the 8 rows. K-major: a row is a multiple of 128 bytes, so the offset
//     mod 128 is 16 ((c ^ k) & 7), 8 distinct values over k & 7. Without the swizzle all 8 rows of
//     a K-major matrix (and 4 pairs of a K-contiguous one) hit the same banks: an 8-way (2-way)
//     conflict. The cp.async stores (consecutive threads, consecutive chunks of a row) stay
//     conflict-free, since a row's chunks are only permuted.
//     Fragments (kernels/tensor_core.h's m16n8k16 layouts), per 16 x 16 A tile or 16 (n) x 16 (k)
//     B pair of n8 tiles, one ldmatrix.x4 each; lane l = 8 j + r addresses row r of matrix j:
//       A from K-contiguous [m][k], no .trans: matrix j = rows (j & 1) * 8, k (j >> 1) * 8: a[0..3]
//       A from K-major [k][m], .trans:         matrix j = k (j >> 1) * 8 + r, m (j & 1) * 8
//       B from K-contiguous [n][k], no .trans: matrix j = n (j >> 1) * 8 + r, k (j & 1) * 8:
//                                              b[0..1] of the first n8 tile, then of the second
//       B from K-major [k][n], .trans:         matrix j = k (j & 1) * 8 + r, n (j >> 1) * 8
//     .trans hands lane (g, t) column g, rows 2t and 2t+1 of the stored matrix, i.e. the element
//     pair along K that the fragment wants when K runs down the slice's rows.
//
// Copies (copy_slice): with kVector (every pointer 16-byte aligned, every channel count and pixel
// stride a multiple of 16 bytes' worth of elements) a 16-byte chunk never straddles a channel
// range's end or a tap, and each is one 16-byte cp.async, zero-filling (source size 0) past an
// edge, in the padding or past a channel count. Otherwise (the 3-channel first layer, the
// 1-channel head's gradient, odd strides or offsets) each element is moved alone
// (Format::copy_element): a 4-byte cp.async for a float, and for a bf16, which cp.async cannot
// move alone (it moves at least 4 bytes, aligned), a plain load and shared store through
// registers; the pipeline's barriers order those stores as they order the copies, and only the
// copy is slower: the mma and fragment path is the same.
//
// A Hopper version (wgmma reading shared memory through descriptors, TMA copies) would replace
// Format's fragment loads and mma and copy_slice, and keep the Tiles classes' index maths and the
// pipeline's shape (Tiles::copy would issue TMA requests, multiply's waits would become the
// stage's mbarrier).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/backend.h"
#include "kernels/conv_gemm.h"  // UNET_UNROLL, UNET_NO_UNROLL
#include "kernels/rounding.h"
#include "kernels/tensor_core.h"
#include "kernels/tile_choice.h"

namespace unet::KERNEL_BACKEND::mma {

constexpr int kThreads = 128;
constexpr int kMaxBlocksPerSm = 4;  // 4 x 128 threads x <= 128 registers fill the register file

__device__ __forceinline__ int thread_index() { return static_cast<int>(threadIdx.x); }

// A kM x kN block tile of 4 warps (2 x 2), each computing a (kM / 2) x (kN / 2) tile of C.
template <int kBlockM, int kBlockN>
struct BlockTile {
  static constexpr int kM = kBlockM, kN = kBlockN;
  static constexpr int kWarpM = kM / 2, kWarpN = kN / 2;
  static constexpr int kTilesM = kWarpM / 16, kTilesN = kWarpN / 8;  // mma tiles of a warp
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "whole m16 tiles and pairs of n8 tiles per warp");
  using Accumulator = float[kTilesM][kTilesN][4];  // [m16 tile][n8 tile][c fragment]

  __device__ static int warp_row0() { return thread_index() / 32 / 2 * kWarpM; }
  __device__ static int warp_col0() { return thread_index() / 32 % 2 * kWarpN; }
  // The C element that accumulator acc[mi][ni][i] of this thread holds, as (row, column) in the
  // block tile (the mma's C layout: c[i] at (g + 8 (i >= 2), 2t + (i & 1))).
  __device__ static int accumulator_row(int mi, int i) {
    return warp_row0() + mi * 16 + (thread_index() % 32 >> 2) + (i >= 2 ? 8 : 0);
  }
  __device__ static int accumulator_col(int ni, int i) {
    return warp_col0() + ni * 8 + (thread_index() % 4) * 2 + (i & 1);
  }
};

// The two block tiles (kernels/tile_choice.h picks one per GEMM): warp tiles of 64 x 32 (64
// accumulators a thread) and 32 x 32 (32).
using LargeTile = BlockTile<kLargeMmaTile.m, kLargeMmaTile.n>;
using SmallTile = BlockTile<kSmallMmaTile.m, kSmallMmaTile.n>;

// The epilogue's walk over this thread's accumulators: store(row, col, value) for each, (row, col)
// within the block tile; the pass's store checks the edges and writes the output.
template <class Block, class Store>
__device__ __forceinline__ void for_each_accumulator(const typename Block::Accumulator& acc, const Store& store) {
  UNET_UNROLL
  for (int mi = 0; mi < Block::kTilesM; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < Block::kTilesN; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) store(Block::accumulator_row(mi, i), Block::accumulator_col(ni, i), acc[mi][ni][i]);
    }
  }
}

// A stored value as fp32, and an fp32 result as the element stored (bf16: rounded once, here).
__device__ __forceinline__ float widen(float value) { return value; }
__device__ __forceinline__ float widen(bf16 value) { return to_float(value); }
__device__ __forceinline__ void store(float& out, float value) { out = value; }
__device__ __forceinline__ void store(bf16& out, float value) { out = to_bf16(value); }

enum class Layout { k_contiguous, k_major };

// The element-specific pieces (the file comment): Format<float> is TF32, Format<bf16> bf16.
template <class Element>
struct Format;

template <>
struct Format<float> {
  static constexpr int kTileK = 16;  // K per stage
  static constexpr int kMmaK = 8;    // m16n8k8
  static constexpr int kChunk = 4;   // floats per 16-byte copy
  static constexpr int stages(bool /*masked*/) { return 3; }
  // A stored row of kCols floats, padded (the file comment: conflict-free fragment loads).
  static constexpr int row_length(Layout layout, int cols) { return cols + (layout == Layout::k_contiguous ? 4 : 8); }
  template <Layout kLayout, int kCols>
  __device__ static int offset(int row, int col) {
    return row * row_length(kLayout, kCols) + col;
  }
  __device__ static void copy_element(float* destination, const float* source, const float* fallback) {
    cp_async<4>(destination, source != nullptr ? source : fallback, source != nullptr ? 4 : 0);
  }
  // A fragment register: the operand rounded to TF32, or with kOperand false the stored bits
  // (a ReLU mask's, which a rounding could turn from a tiny positive value into 0).
  template <bool kOperand>
  __device__ static uint32_t fragment(float value) {
    return kOperand ? tf32_from_float(value) : float_bits(value);
  }
  // The warp's A fragments (m16 tiles from row m0) and B fragments (n8 tiles from column n0) of
  // the mma k-step at kk, element (mn, k) of the slice at(mn, k).
  template <class Slice, bool kOperand, int kTiles>
  __device__ static void load_a(const float* slice, int m0, int kk, uint32_t (&a)[kTiles][4]) {
    const int g = thread_index() % 32 >> 2, t = thread_index() % 4;
    UNET_UNROLL
    for (int mi = 0; mi < kTiles; ++mi) {
      const int m = m0 + mi * 16 + g, k = kk + t;
      a[mi][0] = fragment<kOperand>(slice[Slice::at(m, k)]);
      a[mi][1] = fragment<kOperand>(slice[Slice::at(m + 8, k)]);
      a[mi][2] = fragment<kOperand>(slice[Slice::at(m, k + 4)]);
      a[mi][3] = fragment<kOperand>(slice[Slice::at(m + 8, k + 4)]);
    }
  }
  template <class Slice, bool kOperand, int kTiles>
  __device__ static void load_b(const float* slice, int n0, int kk, uint32_t (&b)[kTiles][2]) {
    const int g = thread_index() % 32 >> 2, t = thread_index() % 4;
    UNET_UNROLL
    for (int ni = 0; ni < kTiles; ++ni) {
      const int n = n0 + ni * 8 + g, k = kk + t;
      b[ni][0] = fragment<kOperand>(slice[Slice::at(n, k)]);
      b[ni][1] = fragment<kOperand>(slice[Slice::at(n, k + 4)]);
    }
  }
  // g where the fused ReLU's output (its stored bits) is > 0 (sign clear, not zero, not NaN), else 0.
  __device__ static uint32_t mask(uint32_t g, uint32_t relu_output) {
    return relu_output != 0 && relu_output <= 0x7f800000u ? g : 0u;
  }
  __device__ static void mma(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    mma_tf32_m16n8k8(acc, a, b, acc);
  }
};

template <>
struct Format<bf16> {
  static constexpr int kTileK = 32;  // K per stage
  static constexpr int kMmaK = 16;   // m16n8k16
  static constexpr int kChunk = 8;   // bf16 per 16-byte copy
  static constexpr int stages(bool masked) { return masked ? 3 : 4; }
  static constexpr int row_length(Layout, int cols) { return cols; }  // swizzled, not padded
  template <Layout kLayout, int kCols>
  __device__ static int offset(int row, int col) {
    const int swizzle = kLayout == Layout::k_contiguous ? (row >> 1) & 3 : row & 7;
    return row * kCols + ((col / kChunk) ^ swizzle) * kChunk + col % kChunk;
  }
  __device__ static void copy_element(bf16* destination, const bf16* source, const bf16*) {
    *destination = source != nullptr ? *source : bf16{0};
  }
  // Fragments as Format<float>'s, through ldmatrix (the file comment's table); kOperand has no
  // effect: bf16 operands are stored as the mma takes them.
  template <class Slice, bool kOperand, int kTiles>
  __device__ static void load_a(const bf16* slice, int m0, int kk, uint32_t (&a)[kTiles][4]) {
    const int lane = thread_index() % 32, j = lane / 8, r = lane % 8;
    UNET_UNROLL
    for (int mi = 0; mi < kTiles; ++mi) {
      if constexpr (Slice::kLayout == Layout::k_contiguous) {
        ldmatrix<4, false>(a[mi], slice + Slice::at(m0 + mi * 16 + lane % 16, kk + lane / 16 * 8));
      } else {
        ldmatrix<4, true>(a[mi], slice + Slice::at(m0 + mi * 16 + (j & 1) * 8, kk + (j >> 1) * 8 + r));
      }
    }
  }
  template <class Slice, bool kOperand, int kTiles>
  __device__ static void load_b(const bf16* slice, int n0, int kk, uint32_t (&b)[kTiles][2]) {
    const int lane = thread_index() % 32, j = lane / 8, r = lane % 8;
    UNET_UNROLL
    for (int pair = 0; pair < kTiles / 2; ++pair) {
      uint32_t d[4];
      if constexpr (Slice::kLayout == Layout::k_contiguous) {
        ldmatrix<4, false>(d, slice + Slice::at(n0 + pair * 16 + (j >> 1) * 8 + r, kk + (j & 1) * 8));
      } else {
        ldmatrix<4, true>(d, slice + Slice::at(n0 + pair * 16 + (j >> 1) * 8, kk + (j & 1) * 8 + r));
      }
      b[2 * pair][0] = d[0], b[2 * pair][1] = d[1], b[2 * pair + 1][0] = d[2], b[2 * pair + 1][1] = d[3];
    }
  }
  // The fused ReLU's mask on a pair of bf16: each half of g kept where the same half of the ReLU's
  // output is > 0 (sign clear, not zero, not NaN: bits 0x0001 .. 0x7f80), else zeroed.
  __device__ static uint32_t mask(uint32_t g, uint32_t relu_output) {
    const auto positive = [](uint32_t half) { return half != 0 && half <= 0x7f80u; };
    return (positive(relu_output & 0xffffu) ? g & 0xffffu : 0u) |
           (positive(relu_output >> 16) ? g & 0xffff0000u : 0u);
  }
  __device__ static void mma(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    mma_bf16_m16n8k16(acc, a, b, acc);
  }
};

// One operand's slice of a stage: kWidth (the block tile's M or N) by Format::kTileK of K, in
// kLayout. Stored row-major as kRows x kCols (K-contiguous: [kWidth][K]; K-major: [K][kWidth]);
// element (row, col) of the stored layout is at offset(row, col), element (mn, k) of the operand
// at at(mn, k).
template <class Element, Layout kSliceLayout, int kWidth>
struct Slice {
  static constexpr Layout kLayout = kSliceLayout;
  static constexpr int kK = Format<Element>::kTileK;
  static constexpr int kRows = kLayout == Layout::k_contiguous ? kWidth : kK;
  static constexpr int kCols = kLayout == Layout::k_contiguous ? kK : kWidth;
  static constexpr int kElements = kRows * Format<Element>::row_length(kLayout, kCols);

  __device__ static int offset(int row, int col) { return Format<Element>::template offset<kLayout, kCols>(row, col); }
  __device__ static int at(int mn, int k) { return kLayout == Layout::k_contiguous ? offset(mn, k) : offset(k, mn); }
};

// Fills a slice: source(row, col) (stored coordinates) is where the 16-byte chunk (kVector) or the
// element (otherwise) at (row, col) comes from, or null for zeros. `fallback` is any valid,
// 16-byte aligned address of the tensor: a zero-filling cp.async reads nothing, but its source
// must still be a valid address. Each thread copies the same column of every kRowStep-th row.
template <class Slice, bool kVector, class Element, class Source>
__device__ __forceinline__ void copy_slice(Element* slice, const Source& source, const Element* fallback) {
  constexpr int kChunk = Format<Element>::kChunk, kChunksPerRow = Slice::kCols / kChunk;
  constexpr int kRowStep = kThreads / kChunksPerRow;
  static_assert(kThreads % kChunksPerRow == 0 && Slice::kRows % kRowStep == 0,
                "every thread copies the same number of chunks");
  const int first_row = thread_index() / kChunksPerRow, col = thread_index() % kChunksPerRow * kChunk;
  UNET_UNROLL
  for (int row = first_row; row < Slice::kRows; row += kRowStep) {
    Element* destination = slice + Slice::offset(row, col);
    if constexpr (kVector) {
      const Element* src = source(row, col);
      cp_async<16>(destination, src != nullptr ? src : fallback, src != nullptr ? 16 : 0);
    } else {
      // Not unrolled: one element's address live at a time keeps the fallback within the
      // registers of the 16-byte path (scripts/check_sass.py: no spills).
      UNET_NO_UNROLL
      for (int e = 0; e < kChunk; ++e) Format<Element>::copy_element(destination + e, source(row, col + e), fallback);
    }
  }
}

// Which operand a fused ReLU mask applies to (a slice of the same layout beside it in the stage).
enum class Mask { none, a, b };

// One K-step on a stage: the warp's tile, Format::kTileK / kMmaK mma k-steps. `mask` is the ReLU
// output's slice for the operand kMask names (unused with Mask::none).
template <class Block, class SliceA, class SliceB, Mask kMask, class Element>
__device__ __forceinline__ void multiply_stage(const Element* a, const Element* b, const Element* mask,
                                               typename Block::Accumulator& acc) {
  using F = Format<Element>;
  UNET_UNROLL
  for (int kk = 0; kk < F::kTileK; kk += F::kMmaK) {
    uint32_t fa[Block::kTilesM][4], fb[Block::kTilesN][2];
    F::template load_a<SliceA, true>(a, Block::warp_row0(), kk, fa);
    F::template load_b<SliceB, true>(b, Block::warp_col0(), kk, fb);
    if constexpr (kMask == Mask::a) {
      uint32_t relu[Block::kTilesM][4];
      F::template load_a<SliceA, false>(mask, Block::warp_row0(), kk, relu);
      UNET_UNROLL
      for (int mi = 0; mi < Block::kTilesM; ++mi) {
        UNET_UNROLL
        for (int i = 0; i < 4; ++i) fa[mi][i] = F::mask(fa[mi][i], relu[mi][i]);
      }
    } else if constexpr (kMask == Mask::b) {
      uint32_t relu[Block::kTilesN][2];
      F::template load_b<SliceB, false>(mask, Block::warp_col0(), kk, relu);
      UNET_UNROLL
      for (int ni = 0; ni < Block::kTilesN; ++ni) {
        UNET_UNROLL
        for (int i = 0; i < 2; ++i) fb[ni][i] = F::mask(fb[ni][i], relu[ni][i]);
      }
    }
    UNET_UNROLL
    for (int mi = 0; mi < Block::kTilesM; ++mi) {
      UNET_UNROLL
      for (int ni = 0; ni < Block::kTilesN; ++ni) F::mma(acc[mi][ni], fa[mi], fb[ni]);
    }
  }
}

// The main loop, for every pass and element. Tiles provides Element (what shared memory holds),
// Block, kStages (the pipeline's depth), kStageElements (one stage's size), steps() (K-steps of
// this block), copy(stage) (the current step's slices into one stage), advance() (to the next
// step) and multiply(stage, acc) (the mma tiles of a stage). `shared` is the block's
// kStages * kStageElements elements of dynamic shared memory.
template <class Tiles>
__device__ __forceinline__ void multiply(Tiles& tiles, typename Tiles::Element* shared,
                                         typename Tiles::Block::Accumulator& acc) {
  constexpr int kStages = Tiles::kStages;
  UNET_UNROLL
  for (int mi = 0; mi < Tiles::Block::kTilesM; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < Tiles::Block::kTilesN; ++ni) {
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

// A version-3 kernel's dynamic shared memory: its pipeline's stages.
template <class Tiles>
constexpr size_t shared_bytes() {
  return size_t{Tiles::kStages} * Tiles::kStageElements * sizeof(typename Tiles::Element);
}

// The blocks per SM a version-3 kernel is designed for: kMaxBlocksPerSm (the register file's
// limit, __launch_bounds__), or fewer where its stages do not fit that many times in an H100/H200
// SM's 228 KiB of shared memory, 1 KiB of it reserved per block. scripts/check_sass.py checks
// the same numbers against the compiled kernels.
template <class Tiles>
constexpr int blocks_per_sm() {
  constexpr size_t shared_per_sm = 228 * 1024, reserved_per_block = 1024;
  constexpr size_t fit = shared_per_sm / (shared_bytes<Tiles>() + reserved_per_block);
  return fit < kMaxBlocksPerSm ? static_cast<int>(fit) : kMaxBlocksPerSm;
}

// ---------------------------------------------------------------------------------------------
// The launch side (host code of the .cu files that include this header).

// The grid over an m x n GEMM (z chunks of K) in Block's tiles.
template <class Block>
dim3 grid(int64_t m, int64_t n, int64_t z = 1) {
  return dim3(static_cast<unsigned>(ceil_div(m, Block::kM)), static_cast<unsigned>(ceil_div(n, Block::kN)),
              static_cast<unsigned>(z));
}

// Launches a kernel built on Tiles with its pipeline's dynamic shared memory.
template <class Tiles, class... Params, class... Args>
void launch(KernelRef<Params...> kernel, dim3 grid, Stream stream, Args&&... args) {
  constexpr size_t bytes = shared_bytes<Tiles>();
  allow_dynamic_shared(kernel, bytes);
  KERNEL_BACKEND::launch(kernel, grid, dim3(kThreads), bytes, stream, std::forward<Args>(args)...);
}

// body.template operator()<Block>() on the block tile kernels/tile_choice.h picks (or a test
// pins) for an m x n GEMM whose kernels are designed for `large` and `small` blocks per SM on the
// two tiles: forward and backward_data (backward_weight splits K instead).
template <class Body>
void with_block_tile(int64_t m, int64_t n, int large, int small, Body&& body) {
  if (PinnedMmaTile::choose(m, n, large, small) == MmaTile::small) {
    body.template operator()<SmallTile>();
  } else {
    body.template operator()<LargeTile>();
  }
}

}  // namespace unet::KERNEL_BACKEND::mma
