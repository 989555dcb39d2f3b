// conv_gemm: the fp32 block tile that the version-2 kernels of conv2d.cu and conv_transpose2d.cu are
// built from (docs/kernels/convolution.md). Device code: include it after kernels/dialect.h, from
// kernels/*.cu only.
//
// Every pass of both convolutions is a GEMM, C (M x N) = A (M x K) * B (K x N), whose A and B are
// never materialised: each pass has a Tiles class that gathers the block's next slices of A and B
// straight from its tensors (implicit GEMM), with zeros for padding and for rows, columns and K
// beyond the edges, and an epilogue that writes C. This file holds what they share:
//
//   - the block tile: 256 threads compute a kTileM x BN tile of C (128 x 64 or 128 x 128) in
//     K-steps of kTileK = 8. Thread (ty, tx) = (tid / 16, tid % 16) accumulates an 8 x BN/16
//     micro-tile: rows ty*4 + {0..3} and 64 + ty*4 + {0..3}, columns tx*4 + {0..3} (and
//     64 + tx*4 + {0..3} when BN = 128), so each K-step costs it 2 + BN/64 float4 reads from shared
//     memory for 8 * BN/16 FMAs. A warp's A reads are two broadcasts; its B reads are 16
//     consecutive float4s: no bank conflicts.
//   - the main loop, double-buffered: while the block multiplies the slices in one shared buffer,
//     each thread holds the next slices' values in registers (fetched from global memory before
//     the multiply, so their latency overlaps it) and stores them into the other buffer after; one
//     barrier per K-step.
//   - two gathers that fill a slice from rows of contiguous values, four per thread (a float4 when
//     the tensor's layout allows, kVector; four scalars otherwise):
//       RowGather<ROWS>     ROWS x 8 slice whose 8 K-values of a row are contiguous in memory
//                           (an activation's channels, a weight row): stored transposed, [k][row];
//       ColumnGather<COLS>  8 x COLS slice whose COLS values of a K-row are contiguous (a pixel's
//                           channels across the tile's columns): stored as is, [k][col].
//     Rows of shared memory are padded by 4 floats: a RowGather's transposed stores then hit 32
//     distinct banks per warp, and every row stays 16-byte aligned for float4 reads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "kernels/backend.h"

// Full unrolling keeps the micro-tile's accumulators in registers; UNET_NO_UNROLL keeps a loop
// rolled where unrolling would cost registers for nothing. Spelt for each compiler; they change
// nothing that is computed.
#if defined(__CUDACC__)
#define UNET_UNROLL _Pragma("unroll")
#define UNET_NO_UNROLL _Pragma("unroll 1")
#else
#define UNET_UNROLL _Pragma("GCC unroll 16")
#define UNET_NO_UNROLL _Pragma("GCC unroll 1")
#endif

namespace unet::KERNEL_BACKEND::gemm {

constexpr int kThreads = 256;
constexpr int kTileM = 128;
constexpr int kTileK = 8;
constexpr int kPad = 4;

template <int BN>
constexpr int micro_cols = BN / 16;  // the thread's micro-tile is 8 x micro_cols

template <int BN>
struct alignas(16) SharedTiles {
  float a[2][kTileK][kTileM + kPad];  // [buffer][k][row]
  float b[2][kTileK][BN + kPad];      // [buffer][k][column]
};

template <int BN>
using Accumulator = float[8][micro_cols<BN>];

__device__ __forceinline__ int thread_index() { return static_cast<int>(threadIdx.x); }

// The block-tile row of the thread's micro-tile row i, and the column of its micro-tile column j.
__device__ __forceinline__ int micro_row(int i) { return (i / 4) * 64 + (thread_index() / 16) * 4 + i % 4; }
__device__ __forceinline__ int micro_col(int j) { return (j / 4) * 64 + (thread_index() % 16) * 4 + j % 4; }

__device__ __forceinline__ float4 zero4() { return make_float4(0.0f, 0.0f, 0.0f, 0.0f); }

__device__ __forceinline__ float element(const float4& v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

__device__ __forceinline__ void set_element(float4& v, int j, float value) {
  switch (j) {
    case 0: v.x = value; break;
    case 1: v.y = value; break;
    case 2: v.z = value; break;
    default: v.w = value; break;
  }
}

// Four consecutive values src[c..c+3] that lie below `limit`, zero past it or where src is null;
// each kept only where mask[c + j] > 0 when there is a mask (a ReLU's output). kVector: one float4
// (the caller guarantees 16-byte alignment and that limit is a multiple of 4).
template <bool kVector>
__device__ __forceinline__ float4 gather4(const float* src, const float* mask, int c, int limit) {
  float4 v = zero4();
  if (src == nullptr) return v;
  if constexpr (kVector) {
    if (c < limit) {
      v = *reinterpret_cast<const float4*>(src + c);
      if (mask != nullptr) {
        const float4 m = *reinterpret_cast<const float4*>(mask + c);
        v.x = m.x > 0.0f ? v.x : 0.0f;
        v.y = m.y > 0.0f ? v.y : 0.0f;
        v.z = m.z > 0.0f ? v.z : 0.0f;
        v.w = m.w > 0.0f ? v.w : 0.0f;
      }
    }
  } else {
    UNET_UNROLL
    for (int j = 0; j < 4; ++j) {
      if (c + j < limit && (mask == nullptr || mask[c + j] > 0.0f)) set_element(v, j, src[c + j]);
    }
  }
  return v;
}

// A ROWS x 8 slice whose 8 K-values per row are contiguous in memory, stored transposed. Thread t
// gathers row t / 2, K-values (t % 2) * 4 + {0..3}; threads past 2 * ROWS gather nothing.
template <int kRows, bool kVector>
struct RowGather {
  int row, quad;
  float4 values;

  __device__ RowGather() : row(thread_index() / 2), quad(thread_index() % 2 * 4), values(zero4()) {}
  // Known at compile time where the slice needs every thread: keeps a register free.
  __device__ bool active() const { return 2 * kRows >= kThreads || row < kRows; }

  // src: the row's K-value 0 (null: a row of zeros); the slice is K-values k0 .. k0 + 7 of width.
  __device__ __forceinline__ void load(const float* src, const float* mask, int k0, int width) {
    values = gather4<kVector>(active() ? src : nullptr, mask, k0 + quad, width);
  }
  template <int kLd>
  __device__ __forceinline__ void store(float (*tile)[kLd]) const {
    if (!active()) return;
    tile[quad + 0][row] = values.x;
    tile[quad + 1][row] = values.y;
    tile[quad + 2][row] = values.z;
    tile[quad + 3][row] = values.w;
  }
};

// An 8 x COLS slice whose COLS values per K-row are contiguous in memory, stored as is. Thread t
// gathers K-row t / (COLS / 4), columns (t % (COLS / 4)) * 4 + {0..3}.
template <int kCols, bool kVector>
struct ColumnGather {
  int k, col;
  float4 values;

  __device__ ColumnGather() : k(thread_index() / (kCols / 4)), col(thread_index() % (kCols / 4) * 4), values(zero4()) {}
  __device__ bool active() const { return 2 * kCols >= kThreads || k < kTileK; }

  // src: the K-row's column 0 (null: zeros); the slice is columns n0 .. n0 + COLS - 1 of width.
  __device__ __forceinline__ void load(const float* src, const float* mask, int n0, int width) {
    values = gather4<kVector>(active() ? src : nullptr, mask, n0 + col, width);
  }
  template <int kLd>
  __device__ __forceinline__ void store(float (*tile)[kLd]) const {
    if (active()) *reinterpret_cast<float4*>(&tile[k][col]) = values;
  }
};

// One K-step on the slices in shared memory: acc += a^T-slice * b-slice for the thread's micro-tile.
template <int BN>
__device__ __forceinline__ void multiply_slices(const float (*a)[kTileM + kPad], const float (*b)[BN + kPad],
                                                Accumulator<BN>& acc) {
  const int ty = thread_index() / 16 * 4, tx = thread_index() % 16 * 4;
  UNET_UNROLL
  for (int k = 0; k < kTileK; ++k) {
    float av[8], bv[micro_cols<BN>];
    const float4 a0 = *reinterpret_cast<const float4*>(&a[k][ty]);
    const float4 a1 = *reinterpret_cast<const float4*>(&a[k][64 + ty]);
    UNET_UNROLL
    for (int j = 0; j < 4; ++j) {
      av[j] = element(a0, j);
      av[4 + j] = element(a1, j);
    }
    UNET_UNROLL
    for (int half = 0; half < micro_cols<BN> / 4; ++half) {
      const float4 bq = *reinterpret_cast<const float4*>(&b[k][half * 64 + tx]);
      UNET_UNROLL
      for (int j = 0; j < 4; ++j) bv[half * 4 + j] = element(bq, j);
    }
    UNET_UNROLL
    for (int i = 0; i < 8; ++i) {
      UNET_UNROLL
      for (int j = 0; j < micro_cols<BN>; ++j) acc[i][j] += av[i] * bv[j];
    }
  }
}

// The main loop. Tiles provides steps() (K-steps of this block, the same for all its threads),
// load() (the current step's slices, global memory to registers), advance() (to the next step)
// and store(a, b) (registers to one buffer of shared memory).
template <int BN, class Tiles>
__device__ __forceinline__ void multiply(Tiles& tiles, Accumulator<BN>& acc) {
  __shared__ SharedTiles<BN> shared;
  UNET_UNROLL
  for (int i = 0; i < 8; ++i) {
    UNET_UNROLL
    for (int j = 0; j < micro_cols<BN>; ++j) acc[i][j] = 0.0f;
  }
  const int steps = tiles.steps();
  if (steps == 0) return;
  tiles.load();
  tiles.store(shared.a[0], shared.b[0]);
  __syncthreads();
  for (int step = 0; step < steps; ++step) {
    const int current = step % 2;
    const bool more = step + 1 < steps;
    if (more) {
      tiles.advance();
      tiles.load();  // in flight while this step multiplies
    }
    multiply_slices<BN>(shared.a[current], shared.b[current], acc);
    if (more) tiles.store(shared.a[1 - current], shared.b[1 - current]);
    __syncthreads();
  }
}

// The epilogue's write of four consecutive values of C to row[n .. n + 3] (those below limit):
// out = v where beta is 0 (even over NaN), else beta * out + v. vector: one float4 (aligned, and
// limit a multiple of 4).
__device__ __forceinline__ void update4(float* row, int n, int limit, float4 v, float beta, bool vector) {
  if (vector) {
    if (n >= limit) return;
    float4* out = reinterpret_cast<float4*>(row + n);
    if (beta != 0.0f) {
      const float4 old = *out;
      v = make_float4(beta * old.x + v.x, beta * old.y + v.y, beta * old.z + v.z, beta * old.w + v.w);
    }
    *out = v;
    return;
  }
  UNET_UNROLL
  for (int j = 0; j < 4; ++j) {
    if (n + j >= limit) break;
    float& out = row[n + j];
    out = beta == 0.0f ? element(v, j) : beta * out + element(v, j);
  }
}

// The thread's micro-tile columns 4h .. 4h + 3 of row i, as a float4.
template <int BN>
__device__ __forceinline__ float4 micro_quad(const Accumulator<BN>& acc, int i, int h) {
  return make_float4(acc[i][4 * h], acc[i][4 * h + 1], acc[i][4 * h + 2], acc[i][4 * h + 3]);
}

// Where the pixels of a split-K reduction go: `splits` chunks of `chunk` pixels (a multiple of the
// K-step), enough blocks to fill the GPU about four times over with `tiles` output tiles, but no
// chunk under 256 pixels. A function of the shape alone: the order of additions never changes.
struct PixelSplit {
  int64_t chunk;
  int64_t splits;
};
static inline PixelSplit split_pixels(int64_t pixels, int64_t tiles) {
  constexpr int64_t target_blocks = 1024, min_chunk = 256;
  const int64_t wanted =
      std::clamp<int64_t>(ceil_div(target_blocks, tiles), 1, std::max<int64_t>(1, ceil_div(pixels, min_chunk)));
  const int64_t chunk = std::max<int64_t>(kTileK, ceil_div(ceil_div(pixels, wanted), kTileK) * kTileK);
  return {chunk, ceil_div(pixels, chunk)};
}

// The K-steps of pixels [begin, end) of chunk `split`.
__device__ __forceinline__ int split_steps(int pixels, int chunk, int split) {
  const int begin = split * chunk;
  const int end = pixels < begin + chunk ? pixels : begin + chunk;
  return static_cast<int>(ceil_div(end - begin, kTileK));
}

// Runs body.template operator()<BN, kVector>() for the block-tile width (64 or 128) and the gather
// kind chosen at run time: the one place that lists the instantiations.
template <class Body>
void with_tile(int bn, bool vector, Body&& body) {
  if (bn == 64 && vector) {
    body.template operator()<64, true>();
  } else if (bn == 64) {
    body.template operator()<64, false>();
  } else if (vector) {
    body.template operator()<128, true>();
  } else {
    body.template operator()<128, false>();
  }
}

}  // namespace unet::KERNEL_BACKEND::gemm
