// gemm_cpu: the register-blocked fp32 GEMM core of the fast CPU convolutions (conv2d_fast_cpu.cpp,
// conv_transpose2d_fast_cpu.cpp). Every pass of both families is one of two implicit GEMMs:
//
//   tap_gemm     C(p, n) = epilogue(beta*C(p, n) + bias(n) + sum_{t, k} A_t(p, k) * B(t*K + k, n))
//                  p: output pixels (M), n: output channels (N), t: taps, k: the K channels of one tap.
//                  A_t(p, .) is the K-vector at a_base(p) + tap_offsets[t], the input pixel tap t of
//                  pixel p sees, read in place (from a zero-padded copy where taps reach past the
//                  border): no im2col copy. B is packed (pack_panels).
//                  Used by conv2d forward and backward_data, conv_transpose2d forward and backward_data.
//   reduce_gemm  C(m, t, n) = beta*C(m, t, n) + sum_q A(q, m) * B_t(q, n)
//                  q: pixels (the reduction), m and n: channels. B is read in place, one run of an
//                  image row of pixels per tap; A is packed per block of pixels, its ReLU mask
//                  applied on the way. Used by the weight gradients.
//
// The micro-kernel keeps a 6 x 16 tile of C in twelve 8-float registers (two for B, one for a
// broadcast A value: 15 of AVX2's 16): per k it loads 16 values of B, broadcasts 6 of A, and does
// 12 fused multiply-adds, so loads (8) stay below the FMA count and the FMA pipes stay busy.
//
// Blocking (for a core with 32 KiB L1d and >= 512 KiB L2, as on the AMD EPYC build machine: 32 KiB
// L1d, 1 MiB L2 per core):
//   - tap_gemm walks K in blocks of whole taps of about kDepthBlock = 256 values: one block of a
//     16-column B panel is 256 x 16 x 4 B = 16 KiB, half of L1, and is reused by every 6-pixel
//     micro-tile of a kRowBlock = 96 pixel tile; the tile's input rows (96 pixels plus the image
//     rows the taps reach, x K channels) stay in L2 across the N panels.
//   - reduce_gemm walks the pixels in blocks of whole image rows of about kBlockPixels = 512
//     pixels. Each thread packs a block's A (M x 512 x 4 B: 128 KiB at 64 channels, in L2) into
//     row tiles, so each micro-tile's broadcasts read one contiguous stream, then sweeps its C
//     tiles over the block, tap by tap and 16 columns at a time, the row tiles innermost, so they
//     share one tap's 16 columns of B (512 x 64 B = 32 KiB, from L1 and L2). Where there are many
//     row tiles (kPackedRowTiles) that B is first packed into one contiguous 32 KiB stream (zeros
//     where a tap's neighbour is outside the image); with few, B is read in place, one run per
//     image row. 512 was the fastest of 256, 512 and 1,024 pixels on the build machine
//     (docs/performance.md).
//
// Threads: tap_gemm hands out the pixel tiles dynamically; reduce_gemm splits its pixel rows into
// up to 16 chunks (a number fixed by the shape, split statically) whose partial sums are added in
// chunk order, or, where C is too large for 2 partial sums, its C tiles into one contiguous range
// per thread. Each C element is summed by one thread in one fixed order (taps, then channels;
// chunks, then rows, then pixels), so the results are the same bits for any thread count and
// schedule. No atomic sums.
//
// This header is compiled twice (kernels/CMakeLists.txt): with -mavx2 -mfma into namespace
// fast::avx2, where Vec8 is an __m256, and with the baseline flags into fast::generic, where Vec8
// is two generic 4-float vectors the compiler lowers to what the target has (SSE2 on any x86-64,
// NEON on aarch64).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#ifndef UNET_CPU_ISA
#error "gemm_cpu.h is compiled per instruction set: define UNET_CPU_ISA (avx2 or generic)"
#endif

#define UNET_ALWAYS_INLINE inline __attribute__((always_inline))

namespace unet::cpu::fast::UNET_CPU_ISA {

constexpr int kTileRows = 6;       // micro-tile: 6 rows (pixels, or channels in reduce_gemm)
constexpr int kTileColumns = 16;   // by 16 columns: two 8-float vectors
constexpr int kDepthBlock = 256;   // K values per block of tap_gemm (B block: 16 KiB)
constexpr int kRowBlock = 96;      // pixels per tap_gemm tile: 16 micro-tiles share a B block

// Below this many multiply-adds a parallel region costs more than it saves (the gradient checks
// run thousands of tiny convolutions).
inline bool worth_parallel(int64_t macs) { return macs >= (int64_t{1} << 16); }

#if defined(__AVX2__) && defined(__FMA__)

struct Vec8 {
  __m256 v;
};
// Lanes [0, count) of a partial vector; the others are neither read nor written.
struct Mask {
  __m256i lanes;
  int count;
};
UNET_ALWAYS_INLINE Mask first_lanes(int count) {
  return {_mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), count};
}
UNET_ALWAYS_INLINE Vec8 zero() { return {_mm256_setzero_ps()}; }
UNET_ALWAYS_INLINE Vec8 broadcast(float x) { return {_mm256_set1_ps(x)}; }
UNET_ALWAYS_INLINE Vec8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
UNET_ALWAYS_INLINE Vec8 load(const float* p, Mask m) { return {_mm256_maskload_ps(p, m.lanes)}; }
UNET_ALWAYS_INLINE void store(float* p, Vec8 a) { _mm256_storeu_ps(p, a.v); }
// Through a scalar loop: vmaskmovps stores are microcoded, and slow, on AMD's Zen cores.
UNET_ALWAYS_INLINE void store(float* p, Vec8 a, Mask m) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, a.v);
  for (int j = 0; j < m.count && j < 8; ++j) p[j] = lanes[j];
}
UNET_ALWAYS_INLINE Vec8 fma(Vec8 a, Vec8 b, Vec8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
UNET_ALWAYS_INLINE Vec8 add(Vec8 a, Vec8 b) { return {_mm256_add_ps(a.v, b.v)}; }
UNET_ALWAYS_INLINE Vec8 mul(Vec8 a, Vec8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
// max(a, 0) that maps NaN to 0 as the reference's `sum > 0 ? sum : 0` does.
UNET_ALWAYS_INLINE Vec8 relu(Vec8 a) {
  return {_mm256_and_ps(a.v, _mm256_cmp_ps(a.v, _mm256_setzero_ps(), _CMP_GT_OQ))};
}
// value where test > 0, else 0 (the fused ReLU's mask on a gradient).
UNET_ALWAYS_INLINE Vec8 where_positive(Vec8 test, Vec8 value) {
  return {_mm256_and_ps(value.v, _mm256_cmp_ps(test.v, _mm256_setzero_ps(), _CMP_GT_OQ))};
}

#else

// Two of GCC's and Clang's generic 4-float vectors: one SSE register each on baseline x86-64, one
// NEON register on aarch64.
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

struct Vec8 {
  Float4 low, high;
};
struct Mask {
  int count;
};
UNET_ALWAYS_INLINE Mask first_lanes(int count) { return {count}; }
UNET_ALWAYS_INLINE Vec8 zero() { return {Float4{}, Float4{}}; }
UNET_ALWAYS_INLINE Vec8 broadcast(float x) { return {Float4{} + x, Float4{} + x}; }
UNET_ALWAYS_INLINE Vec8 load(const float* p) {
  Vec8 r;
  std::memcpy(&r.low, p, sizeof r.low);
  std::memcpy(&r.high, p + 4, sizeof r.high);
  return r;
}
UNET_ALWAYS_INLINE Vec8 load(const float* p, Mask m) {
  float lanes[8] = {};
  for (int j = 0; j < m.count && j < 8; ++j) lanes[j] = p[j];
  return load(lanes);
}
UNET_ALWAYS_INLINE void store(float* p, Vec8 a) {
  std::memcpy(p, &a.low, sizeof a.low);
  std::memcpy(p + 4, &a.high, sizeof a.high);
}
UNET_ALWAYS_INLINE void store(float* p, Vec8 a, Mask m) {
  float lanes[8];
  store(lanes, a);
  for (int j = 0; j < m.count && j < 8; ++j) p[j] = lanes[j];
}
UNET_ALWAYS_INLINE Vec8 fma(Vec8 a, Vec8 b, Vec8 c) { return {a.low * b.low + c.low, a.high * b.high + c.high}; }
UNET_ALWAYS_INLINE Vec8 add(Vec8 a, Vec8 b) { return {a.low + b.low, a.high + b.high}; }
UNET_ALWAYS_INLINE Vec8 mul(Vec8 a, Vec8 b) { return {a.low * b.low, a.high * b.high}; }
// value where test > 0 (all-ones lanes; false for NaN), else 0.
UNET_ALWAYS_INLINE Float4 where_positive(Float4 test, Float4 value) {
  return reinterpret_cast<Float4>(reinterpret_cast<Int4>(value) & (test > 0.0f));
}
UNET_ALWAYS_INLINE Vec8 where_positive(Vec8 test, Vec8 value) {
  return {where_positive(test.low, value.low), where_positive(test.high, value.high)};
}
UNET_ALWAYS_INLINE Vec8 relu(Vec8 a) { return where_positive(a, a); }

#endif

// The first min(count, 8) lanes: a plain vector access when all eight are real.
UNET_ALWAYS_INLINE Vec8 load_first(const float* p, int count) {
  return count >= 8 ? load(p) : load(p, first_lanes(count));
}
UNET_ALWAYS_INLINE void store_first(float* p, Vec8 a, int count) {
  if (count >= 8) {
    store(p, a);
  } else {
    store(p, a, first_lanes(count));
  }
}

// A 16-column slice of C: the first `columns` are real (both masks cover them), the rest padding.
struct Columns {
  int count;
  Mask low, high;
  explicit Columns(int columns)
      : count(columns), low(first_lanes(std::min(columns, 8))), high(first_lanes(std::max(columns - 8, 0))) {}
  bool full() const { return count == kTileColumns; }
};

template <int Rows>
struct Tile {
  Vec8 acc[Rows][2];
};

// The micro-kernel: acc(m, 0..15) += sum_{k < depth} a[m][k * a_step] * b[k * b_step + 0..15], B's
// 16 values all real memory (packed, padded, or followed by more of the buffer).
template <int Rows>
UNET_ALWAYS_INLINE void multiply_accumulate(Tile<Rows>& t, int64_t depth, const float* const* a, int64_t a_step,
                                            const float* b, int64_t b_step) {
  int64_t offset = 0;
  for (int64_t k = 0; k < depth; ++k, offset += a_step, b += b_step) {
    const Vec8 b0 = load(b);
    const Vec8 b1 = load(b + 8);
#pragma GCC unroll 6
    for (int m = 0; m < Rows; ++m) {
      const Vec8 am = broadcast(a[m][offset]);
      t.acc[m][0] = fma(am, b0, t.acc[m][0]);
      t.acc[m][1] = fma(am, b1, t.acc[m][1]);
    }
  }
}

template <int Rows>
UNET_ALWAYS_INLINE void load_row(Tile<Rows>& t, int m, const float* c, const Columns& columns) {
  t.acc[m][0] = columns.full() ? load(c) : load(c, columns.low);
  t.acc[m][1] = columns.full() ? load(c + 8) : load(c + 8, columns.high);
}

template <int Rows>
UNET_ALWAYS_INLINE void store_row(const Tile<Rows>& t, int m, float* c, const Columns& columns) {
  if (columns.full()) {
    store(c, t.acc[m][0]);
    store(c + 8, t.acc[m][1]);
  } else {
    store(c, t.acc[m][0], columns.low);
    store(c + 8, t.acc[m][1], columns.high);
  }
}

// acc = beta * C (beta = 0 reads nothing, so NaN in C is overwritten).
template <int Rows>
UNET_ALWAYS_INLINE void start_row(Tile<Rows>& t, int m, const float* c, float beta, const Columns& columns) {
  if (beta == 0.0f) {
    t.acc[m][0] = t.acc[m][1] = zero();
    return;
  }
  load_row(t, m, c, columns);
  if (beta != 1.0f) {
    t.acc[m][0] = mul(broadcast(beta), t.acc[m][0]);
    t.acc[m][1] = mul(broadcast(beta), t.acc[m][1]);
  }
}

// Scratch owned by the calling thread, grown and never shrunk: after the first training step the
// passes allocate nothing. `slot` tells apart the buffers one pass uses at the same time; slots 2
// and 3 (in every thread of its team) and 4 are reduce_gemm's, and column_sums uses 4 too.
inline std::vector<float>& scratch(int slot) {
  thread_local std::vector<float> buffers[5];
  return buffers[slot];
}

// B (K, N), given as b(k, n), packed into ceil(N / 16) panels of K x 16 values, the columns past N
// zero: the micro-kernel then reads whole, contiguous 16-value rows.
template <class B>
void pack_panels(int64_t depth, int columns, B b, std::vector<float>& panels) {
  const int count = (columns + kTileColumns - 1) / kTileColumns;
  panels.resize(static_cast<size_t>(count) * depth * kTileColumns);
  for (int j = 0; j < count; ++j) {
    float* panel = panels.data() + static_cast<int64_t>(j) * depth * kTileColumns;
    for (int64_t k = 0; k < depth; ++k) {
      for (int n = 0; n < kTileColumns; ++n) {
        const int column = j * kTileColumns + n;
        panel[k * kTileColumns + n] = column < columns ? b(k, column) : 0.0f;
      }
    }
  }
}

struct TapGemm {
  int64_t rows;                // M: output pixels
  int taps;                    // A_t for t < taps
  int depth;                   // K: channels of one tap's A row
  int columns;                 // N
  const float* panels;         // B (taps * depth, columns) packed by pack_panels
  const float* bias;           // (columns), or nullptr
  bool relu;
  float beta;                  // C = beta*C + ...; 0 overwrites
  const int64_t* tap_offsets;  // (taps): A_t(p) = a_base(p) + tap_offsets[t]
};

// a_base(p): where pixel p's A rows start; c_row(p): C(p, .), N values. The callers make every A
// row exist (a zero-padded copy of the input where taps reach past the border), so the micro-kernel
// needs no bounds checks.
template <class ABase, class CRow>
void tap_gemm(const TapGemm& g, ABase a_base, CRow c_row) {
  const int panel_count = (g.columns + kTileColumns - 1) / kTileColumns;
  const int taps_per_block = std::max(1, kDepthBlock / std::max(g.depth, 1));
  const int64_t tiles = (g.rows + kRowBlock - 1) / kRowBlock;
  const int64_t panel_size = int64_t{g.taps} * g.depth * kTileColumns;
#pragma omp parallel if (worth_parallel(g.rows * g.taps * g.depth * g.columns))
  {
    const float* a_rows[kRowBlock];  // the tile's A and C rows, looked up once for every block and panel
    float* c_rows[kRowBlock];
    // Dynamic: under a hypervisor one core may run slower than the other, and the first to finish
    // takes more tiles. The bits do not change: each tile is one thread's, summed in one order.
#pragma omp for schedule(dynamic)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t p0 = tile * kRowBlock;
      const int tile_rows = static_cast<int>(std::min<int64_t>(kRowBlock, g.rows - p0));
      for (int r = 0; r < tile_rows; ++r) {
        a_rows[r] = a_base(p0 + r);
        c_rows[r] = c_row(p0 + r);
      }
      for (int t0 = 0; t0 < g.taps; t0 += taps_per_block) {
        const int t1 = std::min(g.taps, t0 + taps_per_block);
        for (int j = 0; j < panel_count; ++j) {
          const int n0 = j * kTileColumns;
          const Columns columns(std::min(kTileColumns, g.columns - n0));
          const float* block = g.panels + j * panel_size + int64_t{t0} * g.depth * kTileColumns;
          for (int r0 = 0; r0 < tile_rows; r0 += kTileRows) {
            const int rows = std::min(kTileRows, tile_rows - r0);
            Tile<kTileRows> tile_acc;
            for (int m = 0; m < kTileRows; ++m) {
              if (m >= rows) {
                tile_acc.acc[m][0] = tile_acc.acc[m][1] = zero();
              } else if (t0 > 0) {
                load_row(tile_acc, m, c_rows[r0 + m] + n0, columns);
              } else {
                start_row(tile_acc, m, c_rows[r0 + m] + n0, g.beta, columns);
                if (g.bias) {
                  tile_acc.acc[m][0] = add(tile_acc.acc[m][0], load(g.bias + n0, columns.low));
                  tile_acc.acc[m][1] = add(tile_acc.acc[m][1], load(g.bias + n0 + 8, columns.high));
                }
              }
            }
            // Rows past the tile's end repeat its first row: real memory, results never stored.
            const float* base[kTileRows];
            for (int m = 0; m < kTileRows; ++m) base[m] = a_rows[r0 + (m < rows ? m : 0)];
            for (int t = t0; t < t1; ++t) {
              const float* a[kTileRows];
              for (int m = 0; m < kTileRows; ++m) a[m] = base[m] + g.tap_offsets[t];
              multiply_accumulate<kTileRows>(tile_acc, g.depth, a, 1,
                                             block + int64_t{t - t0} * g.depth * kTileColumns, kTileColumns);
            }
            for (int m = 0; m < rows; ++m) {
              if (g.relu && t1 == g.taps) {
                tile_acc.acc[m][0] = relu(tile_acc.acc[m][0]);
                tile_acc.acc[m][1] = relu(tile_acc.acc[m][1]);
              }
              store_row(tile_acc, m, c_rows[r0 + m] + n0, columns);
            }
          }
        }
      }
    }
  }
}

// One run of pixels of reduce_gemm, for one tap and one row of pixels: the pixels w in
// [first, first + count) of the row, with B_t(q, n) = b[(w - first) * b_step + n].
struct Segment {
  int first = 0;
  int count = 0;
  const float* b = nullptr;
  int64_t b_step = 0;
};

struct ReduceGemm {
  int rows;               // M
  int taps;
  int columns;            // N of each tap
  int64_t pixel_rows;     // the reduction walks these rows of pixels (one Segment per row and tap)
  int row_pixels;         // pixels per row: pixel q = row * row_pixels + w
  const float* a;         // A(q, m) = a[q * a_step + m], or 0 where mask[q * mask_step + m] > 0 fails
  int64_t a_step;
  const float* mask;      // or nullptr
  int64_t mask_step;
  float beta;
  float* c;               // C(m, t, n) = c[m * ldc + t * columns + n]
  int64_t ldc;
  bool b_padded = false;  // B rows may be read past N, up to the last 16-column tile (read in place there)
};

// Pixel rows per block of reduce_gemm: about kBlockPixels pixels (the blocking above).
constexpr int kBlockPixels = 512;
inline int64_t block_rows(int row_pixels) { return std::max(1, kBlockPixels / std::max(row_pixels, 1)); }

// reduce_gemm's row tiles: 6 rows each, except that where the last would have 2 (M = 6j + 2, as
// at 32, 128 and 512 channels) the last 8 rows are two tiles of 4. A tile of 2 rows keeps 4
// accumulators in flight, fewer than the FMA latency times the pipes (4 x 2), and takes as long
// as a tile of 4.
struct RowTiles {
  int rows;
  int count() const { return (rows + kTileRows - 1) / kTileRows; }
  bool split() const { return rows % kTileRows == 2 && rows > kTileRows; }
  int first(int i) const { return split() && i == count() - 1 ? rows - 4 : i * kTileRows; }
  int size(int i) const { return split() && i >= count() - 2 ? 4 : std::min(kTileRows, rows - i * kTileRows); }
};

// From this many row tiles on, reduce_gemm packs each tap's B for the block (pack_reduction_columns)
// and the row tiles share the copy; below, the copy would cost more than its contiguous reads save,
// and B is read in place. Measured on the build machine (docs/performance.md): packing gains 5-25%
// on the 128- and 256-channel weight gradients and loses up to 10% at 32 and 64.
constexpr int kPackedRowTiles = 16;

// A(q, m) of the block's pixels [q0, q0 + pixels), masked, transposed into the row tiles:
// pack[(i * pixels + q - q0) * 6 + m - first(i)] for the tile i that holds m, so the micro-kernel's
// broadcasts walk one contiguous stream, and the ReLU's mask costs no pass of its own. Each entry
// is written as 8 values in increasing order, the next entry overwriting the extra ones: the pack
// has 2 floats of slack.
inline void pack_reduction_rows(const ReduceGemm& g, int64_t q0, int64_t pixels, float* pack) {
  const RowTiles tiles{g.rows};
  for (int i = 0; i < tiles.count(); ++i) {
    const int m0 = tiles.first(i), count = tiles.size(i);
    const float* a = g.a + q0 * g.a_step + m0;
    float* out = pack + i * pixels * kTileRows;
    if (g.mask == nullptr) {
      for (int64_t q = 0; q < pixels; ++q) store(out + q * kTileRows, load_first(a + q * g.a_step, count));
      continue;
    }
    const float* mask = g.mask + q0 * g.mask_step + m0;
    for (int64_t q = 0; q < pixels; ++q) {
      const Vec8 value = load_first(a + q * g.a_step, count);
      store(out + q * kTileRows, where_positive(load_first(mask + q * g.mask_step, count), value));
    }
  }
}

// The block's B_t(q, n0 .. n0 + 16), packed from its rows' segments: pack[(q - q0) * 16 + n], zero
// where a row's segment has no pixel q and past N. One contiguous stream, whatever the segments'
// lengths and strides.
inline void pack_reduction_columns(const ReduceGemm& g, const Segment* segments, int64_t rows, int n0, float* pack) {
  const int columns = std::min(kTileColumns, g.columns - n0);
  const bool whole = columns == kTileColumns || g.b_padded;
  for (int64_t row = 0; row < rows; ++row) {
    const Segment& s = segments[row];
    const int first = s.count > 0 ? s.first : 0, last = s.count > 0 ? s.first + s.count : 0;
    float* out = pack + row * g.row_pixels * kTileColumns;
    std::fill(out, out + first * kTileColumns, 0.0f);
    for (int w = first; w < last; ++w) {
      const float* b = s.b + int64_t{w - first} * s.b_step + n0;
      store(out + w * kTileColumns, whole ? load(b) : load_first(b, columns));
      store(out + w * kTileColumns + 8, whole ? load(b + 8) : load_first(b + 8, std::max(columns - 8, 0)));
    }
    std::fill(out + last * kTileColumns, out + g.row_pixels * kTileColumns, 0.0f);
  }
}

// The segments of pixel rows [row0, row1) for tap t, in a buffer of the calling thread: looked up
// once per block and tap, not once per row tile.
template <class SegmentOf>
const Segment* block_segments(SegmentOf segment_of, int t, int64_t row0, int64_t row1) {
  thread_local std::vector<Segment> segments;
  segments.resize(static_cast<size_t>(row1 - row0));
  for (int64_t row = row0; row < row1; ++row) segments[row - row0] = segment_of(t, row);
  return segments.data();
}

// C rows [m0, m0 + Rows) of tap t and columns [n0, n0 + 16), plus the block's packed A rows
// (tile_pack) times B over the segments of its `rows` rows, B's columns at b_column (n0 where B is
// read in place, 0 where it was packed: then one segment spans the block); the first block of a
// sum starts from beta*C. Not inlined: each tile function allocates its own registers, and the
// 12 accumulators stay in them (inlined into reduce_rows, GCC kept them on the stack).
template <int Rows>
__attribute__((noinline)) void reduce_tile(const ReduceGemm& g, const float* tile_pack, const Segment* segments,
                                           int64_t rows, int b_column, int m0, int t, int n0, bool first_block) {
  const Columns columns(std::min(kTileColumns, g.columns - n0));
  float* c = g.c + int64_t{m0} * g.ldc + int64_t{t} * g.columns + n0;
  Tile<Rows> tile;
  for (int m = 0; m < Rows; ++m) {
    if (first_block) {
      start_row(tile, m, c + m * g.ldc, g.beta, columns);
    } else {
      load_row(tile, m, c + m * g.ldc, columns);
    }
  }
  for (int64_t row = 0; row < rows; ++row) {
    const Segment& s = segments[row];
    if (s.count <= 0) continue;
    const float* a[Rows];
    for (int m = 0; m < Rows; ++m) a[m] = tile_pack + (row * g.row_pixels + s.first) * kTileRows + m;
    multiply_accumulate<Rows>(tile, s.count, a, kTileRows, s.b + b_column, s.b_step);
  }
  for (int m = 0; m < Rows; ++m) store_row(tile, m, c + m * g.ldc, columns);
}

inline void reduce_tile_rows(int tile_rows, const ReduceGemm& g, const float* tile_pack, const Segment* segments,
                             int64_t rows, int b_column, int m0, int t, int n0, bool first_block) {
  switch (tile_rows) {
    case 6: return reduce_tile<6>(g, tile_pack, segments, rows, b_column, m0, t, n0, first_block);
    case 5: return reduce_tile<5>(g, tile_pack, segments, rows, b_column, m0, t, n0, first_block);
    case 4: return reduce_tile<4>(g, tile_pack, segments, rows, b_column, m0, t, n0, first_block);
    case 3: return reduce_tile<3>(g, tile_pack, segments, rows, b_column, m0, t, n0, first_block);
    case 2: return reduce_tile<2>(g, tile_pack, segments, rows, b_column, m0, t, n0, first_block);
    default: return reduce_tile<1>(g, tile_pack, segments, rows, b_column, m0, t, n0, first_block);
  }
}

// The C tiles [first, last) (tap, column tile, row tile, in that order) summed over pixel rows
// [row_begin, row_end), block by block, in the calling thread: a block's A is packed once for all
// of them, and its B, where packed, once per tap and column tile for all the row tiles.
template <class SegmentOf>
void reduce_rows(const ReduceGemm& g, SegmentOf segment_of, int64_t row_begin, int64_t row_end, int64_t first,
                 int64_t last) {
  const RowTiles row_tiles{g.rows};
  const int column_tiles = (g.columns + kTileColumns - 1) / kTileColumns;
  const int64_t rows_per_block = block_rows(g.row_pixels);
  const bool pack_all = row_tiles.count() >= kPackedRowTiles;
  const bool pack_last = g.columns % kTileColumns != 0 && !g.b_padded;  // a partial last column tile
  std::vector<float>& a_pack = scratch(3);
  a_pack.resize(static_cast<size_t>(row_tiles.count() * kTileRows * rows_per_block * g.row_pixels + 8 - kTileRows));
  std::vector<float>& b_pack = scratch(2);
  if (pack_all || pack_last) b_pack.resize(static_cast<size_t>(rows_per_block * g.row_pixels * kTileColumns));
  for (int64_t row0 = row_begin; row0 < row_end && first < last; row0 += rows_per_block) {
    const int64_t row1 = std::min(row_end, row0 + rows_per_block);
    const int64_t pixels = (row1 - row0) * g.row_pixels;
    const bool first_block = row0 == row_begin;
    pack_reduction_rows(g, row0 * g.row_pixels, pixels, a_pack.data());
    const Segment packed{0, static_cast<int>(pixels), b_pack.data(), kTileColumns};
    int64_t packed_tap_column = -1;  // the tap and column tile b_pack holds
    int segments_tap = -1;
    const Segment* segments = nullptr;
    for (int64_t tile = first; tile < last; ++tile) {
      const int i = static_cast<int>(tile % row_tiles.count());
      const int64_t tap_column = tile / row_tiles.count();
      const int t = static_cast<int>(tap_column / column_tiles);
      const int n0 = static_cast<int>(tap_column % column_tiles) * kTileColumns;
      const float* tile_pack = a_pack.data() + i * pixels * kTileRows;
      if (t != segments_tap) segments = block_segments(segment_of, t, row0, row1);
      segments_tap = t;
      // A partial last column tile is packed too: the micro-kernel then reads 16 real columns.
      if (pack_all || (pack_last && n0 + kTileColumns > g.columns)) {
        if (tap_column != packed_tap_column) pack_reduction_columns(g, segments, row1 - row0, n0, b_pack.data());
        packed_tap_column = tap_column;
        reduce_tile_rows(row_tiles.size(i), g, tile_pack, &packed, 1, 0, row_tiles.first(i), t, n0, first_block);
      } else {
        reduce_tile_rows(row_tiles.size(i), g, tile_pack, segments, row1 - row0, n0, row_tiles.first(i), t, n0,
                         first_block);
      }
    }
  }
}

// The threads split the pixel rows into chunks, each chunk one thread's: every thread then packs
// and reads only its own pixels. The number of chunks is fixed by the shape (so the bits do not
// depend on the thread count): 16, or for a large C the largest power of two whose partial sums
// fit in kPartialValues (4 MiB), the sums added in chunk order. Where not even 2 fit (C over
// 512 Ki values: 256 channels and more) the threads split the C tiles instead and each sweeps
// every pixel.
constexpr int64_t kPartialValues = int64_t{1} << 20;
constexpr int64_t kMostChunks = 16;

inline int64_t pixel_chunks(int64_t c_values, int64_t pixel_rows) {
  int64_t chunks = kMostChunks;
  while (chunks > 1 && chunks * c_values > kPartialValues) chunks /= 2;
  return std::min(chunks, pixel_rows);
}

// C(m, t*N + n) = beta*C + the chunks' partial sums (M, taps*N), in chunk order.
inline void add_partial_sums(const ReduceGemm& g, const float* partials, int64_t chunks) {
  const int64_t width = int64_t{g.taps} * g.columns, size = g.rows * width;
#pragma omp parallel for schedule(static) if (worth_parallel(size * chunks * 16))
  for (int m = 0; m < g.rows; ++m) {
    for (int64_t j = 0; j < width; j += 8) {
      const int count = static_cast<int>(std::min<int64_t>(8, width - j));
      Vec8 sum = load_first(partials + m * width + j, count);
      for (int64_t chunk = 1; chunk < chunks; ++chunk) {
        sum = add(sum, load_first(partials + chunk * size + m * width + j, count));
      }
      float* c = g.c + m * g.ldc + j;
      if (g.beta != 0.0f) sum = add(mul(broadcast(g.beta), load_first(c, count)), sum);
      store_first(c, sum, count);
    }
  }
}

// segment_of(t, row): the Segment of pixel row `row` for tap t, at n = 0.
template <class SegmentOf>
void reduce_gemm(const ReduceGemm& g, SegmentOf segment_of, int64_t macs) {
  const int64_t tiles = int64_t{RowTiles{g.rows}.count()} * g.taps *
                        ((g.columns + kTileColumns - 1) / kTileColumns);
  const int64_t size = int64_t{g.rows} * g.taps * g.columns;
  const int64_t chunks = pixel_chunks(size, g.pixel_rows);
  if (chunks <= 1) {
#pragma omp parallel if (worth_parallel(macs))
    {
      const int threads = omp_get_num_threads(), thread = omp_get_thread_num();
      reduce_rows(g, segment_of, 0, g.pixel_rows, tiles * thread / threads, tiles * (thread + 1) / threads);
    }
    return;
  }
  std::vector<float>& partials = scratch(4);
  partials.resize(static_cast<size_t>(chunks * size));
  // Static, unlike tap_gemm's tiles: each thread sizes its packing buffers on first use, and with
  // a dynamic schedule a thread that took no chunk in one call would allocate in the next.
#pragma omp parallel for schedule(static) if (worth_parallel(macs))
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    ReduceGemm part = g;
    part.c = partials.data() + chunk * size;
    part.ldc = int64_t{g.taps} * g.columns;
    part.beta = 0.0f;
    reduce_rows(part, segment_of, g.pixel_rows * chunk / chunks, g.pixel_rows * (chunk + 1) / chunks, 0, tiles);
  }
  add_partial_sums(g, partials.data(), chunks);
}

// out(n) = beta*out(n) + sum_{q < rows} in(q, n) * (mask(q, n) > 0 if mask) for n < columns, with
// in(q, n) = in[q * stride + n] and mask likewise. The rows are summed in chunks of kSumRows (a
// number fixed by the shape, one thread's each, so every cache line is read once), 64 columns at a
// time, and the chunks' sums added in chunk order.
constexpr int64_t kSumRows = 256;
constexpr int kSumGroups = 8;  // 8-column groups per sweep of a chunk: 8 accumulators

inline void column_sums(int64_t rows, int columns, const float* in, int64_t stride, const float* mask,
                        int64_t mask_stride, float beta, float* out) {
  const int groups = (columns + 7) / 8;
  const int64_t chunks = std::max<int64_t>(1, (rows + kSumRows - 1) / kSumRows);
  const int64_t width = int64_t{groups} * 8;
  std::vector<float>& partials = scratch(4);
  partials.resize(static_cast<size_t>(chunks * width));
#pragma omp parallel for schedule(static) if (worth_parallel(rows * columns * 4))
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t q0 = chunk * kSumRows, q1 = std::min(rows, q0 + kSumRows);
    for (int g0 = 0; g0 < groups; g0 += kSumGroups) {
      const int sweep = std::min(kSumGroups, groups - g0);
      Vec8 sum[kSumGroups];
      for (int j = 0; j < sweep; ++j) sum[j] = zero();
      for (int64_t q = q0; q < q1; ++q) {
        for (int j = 0; j < sweep; ++j) {
          const int n0 = (g0 + j) * 8;
          const Vec8 value = load_first(in + q * stride + n0, columns - n0);
          sum[j] = add(sum[j], mask ? where_positive(load_first(mask + q * mask_stride + n0, columns - n0), value)
                                    : value);
        }
      }
      for (int j = 0; j < sweep; ++j) store(partials.data() + chunk * width + (g0 + j) * 8, sum[j]);
    }
  }
  for (int n0 = 0; n0 < columns; n0 += 8) {
    const int count = columns - n0;
    Vec8 total = load(partials.data() + n0);
    for (int64_t chunk = 1; chunk < chunks; ++chunk) total = add(total, load(partials.data() + chunk * width + n0));
    if (beta != 0.0f) total = add(mul(broadcast(beta), load_first(out + n0, count)), total);
    store_first(out + n0, total, count);
  }
}

}  // namespace unet::cpu::fast::UNET_CPU_ISA
