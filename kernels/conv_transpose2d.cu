// conv_transpose2d: the CUDA kernels and their launchers (conv_transpose2d.h). The maths, the
// mapping to threads and what limits each version: docs/kernels/convolution.md.
//
// With kernel 2 and stride 2 every output pixel has exactly one source, (n, 2h + r, 2w + s) <-
// (n, h, w) through tap (r, s): conv_transpose2d_output_pixel, the one piece of index maths every
// kernel here (and the reference) uses. The op is then four independent 1x1 GEMMs, one per tap.
//
// Versions (run one alone with: test_kernels_sim "conv_transpose2d*",
// bench_kernels --benchmark_filter=conv_transpose2d; the launchers take `version`):
//   1  the simplest correct kernels: one thread per output element for forward and for
//      backward_data (a dot product over Cin, and over the four taps' Cout values); one thread per
//      weight element for backward_weight, looping over every input pixel (no workspace).
//   2  the fp32 block tile of conv2d's version 2 (kernels/conv_gemm.h). forward: for each tap
//      (blockIdx.z), M = input pixels, N = Cout, K = Cin, scattered to the tap's output pixels.
//      backward_data: M = input pixels, N = Cin, K = (tap, Cout): conv2d's forward with four taps
//      whose source pixels are the output pixels each input pixel fed. backward_weight: M = Cin,
//      N = (tap, Cout), K = input pixels, split into fixed chunks whose partial dW are summed in
//      order (column_sum.h): deterministic, no atomics.
//   3  one GEMM over the four taps on tensor cores (kernels/conv_mma.h: conv2d's block tile,
//      pipeline and slices, one set of tiles per pass for both elements,
//      conv_transpose2d_<pass>_kernel3<float | bf16, BlockTile, kVector>). forward: M = input
//      pixels, N = 4 Cout (column (tap, o), W read as a Cin x 4 Cout matrix), K = Cin, the bias and
//      the pixel shuffle in the epilogue, written through y's pixel stride. backward_data:
//      M = input pixels, N = Cin, K = (tap, Cout), a K-step's A rows gathered at the tap's output
//      pixels. backward_weight: M = Cin, N = 4 Cout, K = input pixels, split as version 2 splits
//      them and summed in order. 16-byte copies where channels, strides and pointers allow, element
//      by element otherwise (kVector). In TF32 (float: mma.sync m16n8k8, operands rounded with
//      cvt.rna as they leave shared memory) compared with cpu::conv_transpose2d_*_tf32, not the
//      default (version 0 is 2); in bf16 (mma.sync m16n8k16, ldmatrix, fp32 accumulators, each bf16
//      output rounded once) the default of the bf16 overloads.
// backward_bias has one version: the deterministic two-pass column sum shared with conv2d
// (column_sum.h), over the output pixels; in bf16 one thread per channel summing the output
// pixels in order.
// The bf16 overloads also have version 1: version 1's kernels reading and writing bf16 (fp32
// arithmetic, each bf16 output rounded once).
#include "kernels/conv_transpose2d.h"

#include <cassert>
#include <climits>
#include <cstdint>
#include <utility>

#include "kernels/column_sum.h"
#include "kernels/dialect.h"
#include "kernels/conv_gemm.h"
#include "kernels/conv_mma.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels: version 1

// Thread (p, tap, o): output pixel conv_transpose2d_output_pixel(p, tap), channel o.
__global__ void conv_transpose2d_forward_kernel1(ConvTranspose2dShape shape, const float* __restrict__ x,
                                                 int x_stride, const float* __restrict__ weight,
                                                 const float* __restrict__ bias, float* __restrict__ y,
                                                 int y_stride) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.n} * shape.h * shape.w * 4 * shape.c_out) return;
  const int o = static_cast<int>(index % shape.c_out);
  const int tap = static_cast<int>(index / shape.c_out % 4);
  const int64_t p = index / (4 * shape.c_out);
  float sum = bias == nullptr ? 0.0f : bias[o];
  for (int i = 0; i < shape.c_in; ++i) sum += x[p * x_stride + i] * weight[(int64_t{i} * 4 + tap) * shape.c_out + o];
  const int64_t q = conv_transpose2d_output_pixel(p, static_cast<int>(p % shape.w), shape.w, tap / 2, tap % 2);
  y[q * y_stride + o] = sum;
}

__global__ void conv_transpose2d_backward_data_kernel1(ConvTranspose2dShape shape, const float* __restrict__ dy,
                                                       int dy_stride, const float* __restrict__ weight, float beta,
                                                       float* __restrict__ dx, int dx_stride) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.n} * shape.h * shape.w * shape.c_in) return;
  const int i = static_cast<int>(index % shape.c_in);
  const int64_t p = index / shape.c_in;
  const int w = static_cast<int>(p % shape.w);
  float sum = 0.0f;
  for (int tap = 0; tap < 4; ++tap) {
    const float* g = dy + conv_transpose2d_output_pixel(p, w, shape.w, tap / 2, tap % 2) * dy_stride;
    const float* wt = weight + (int64_t{i} * 4 + tap) * shape.c_out;
    for (int o = 0; o < shape.c_out; ++o) sum += g[o] * wt[o];
  }
  float& out = dx[p * dx_stride + i];
  out = beta == 0.0f ? sum : beta * out + sum;  // beta = 0 overwrites, even NaN
}

// Thread (i, tap, o): one weight, summed over every input pixel.
__global__ void conv_transpose2d_backward_weight_kernel1(ConvTranspose2dShape shape, const float* __restrict__ x,
                                                         int x_stride, const float* __restrict__ dy, int dy_stride,
                                                         float beta, float* __restrict__ dweight) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.c_in} * 4 * shape.c_out) return;
  const int o = static_cast<int>(index % shape.c_out);
  const int tap = static_cast<int>(index / shape.c_out % 4);
  const int i = static_cast<int>(index / (4 * shape.c_out));
  float sum = 0.0f;
  for (int64_t row = 0; row < int64_t{shape.n} * shape.h; ++row) {
    for (int w = 0; w < shape.w; ++w) {
      const int64_t p = row * shape.w + w;
      const int64_t q = conv_transpose2d_output_pixel(p, w, shape.w, tap / 2, tap % 2);
      sum += x[p * x_stride + i] * dy[q * dy_stride + o];
    }
  }
  float& out = dweight[index];
  out = beta == 0.0f ? sum : beta * out + sum;
}

// ---------------------------------------------------------------------------------------------
// kernels: bf16 version 1, the fp32 kernels above reading and writing bf16 (fp32 arithmetic, each
// bf16 output rounded once), and the bias gradient one thread per channel.

__global__ void conv_transpose2d_forward_bf16_kernel1(ConvTranspose2dShape shape, const bf16* __restrict__ x,
                                                      int x_stride, const bf16* __restrict__ weight,
                                                      const float* __restrict__ bias, bf16* __restrict__ y,
                                                      int y_stride) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.n} * shape.h * shape.w * 4 * shape.c_out) return;
  const int o = static_cast<int>(index % shape.c_out);
  const int tap = static_cast<int>(index / shape.c_out % 4);
  const int64_t p = index / (4 * shape.c_out);
  float sum = bias == nullptr ? 0.0f : bias[o];
  for (int i = 0; i < shape.c_in; ++i) {
    sum += to_float(x[p * x_stride + i]) * to_float(weight[(int64_t{i} * 4 + tap) * shape.c_out + o]);
  }
  const int64_t q = conv_transpose2d_output_pixel(p, static_cast<int>(p % shape.w), shape.w, tap / 2, tap % 2);
  y[q * y_stride + o] = to_bf16(sum);
}

__global__ void conv_transpose2d_backward_data_bf16_kernel1(ConvTranspose2dShape shape, const bf16* __restrict__ dy,
                                                            int dy_stride, const bf16* __restrict__ weight,
                                                            float beta, bf16* __restrict__ dx, int dx_stride) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.n} * shape.h * shape.w * shape.c_in) return;
  const int i = static_cast<int>(index % shape.c_in);
  const int64_t p = index / shape.c_in;
  const int w = static_cast<int>(p % shape.w);
  float sum = 0.0f;
  for (int tap = 0; tap < 4; ++tap) {
    const bf16* g = dy + conv_transpose2d_output_pixel(p, w, shape.w, tap / 2, tap % 2) * dy_stride;
    const bf16* wt = weight + (int64_t{i} * 4 + tap) * shape.c_out;
    for (int o = 0; o < shape.c_out; ++o) sum += to_float(g[o]) * to_float(wt[o]);
  }
  bf16& out = dx[p * dx_stride + i];
  out = to_bf16(beta == 0.0f ? sum : beta * to_float(out) + sum);  // beta = 0 overwrites, even NaN
}

__global__ void conv_transpose2d_backward_weight_bf16_kernel1(ConvTranspose2dShape shape, const bf16* __restrict__ x,
                                                              int x_stride, const bf16* __restrict__ dy,
                                                              int dy_stride, float beta,
                                                              float* __restrict__ dweight) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.c_in} * 4 * shape.c_out) return;
  const int o = static_cast<int>(index % shape.c_out);
  const int tap = static_cast<int>(index / shape.c_out % 4);
  const int i = static_cast<int>(index / (4 * shape.c_out));
  float sum = 0.0f;
  for (int64_t row = 0; row < int64_t{shape.n} * shape.h; ++row) {
    for (int w = 0; w < shape.w; ++w) {
      const int64_t p = row * shape.w + w;
      const int64_t q = conv_transpose2d_output_pixel(p, w, shape.w, tap / 2, tap % 2);
      sum += to_float(x[p * x_stride + i]) * to_float(dy[q * dy_stride + o]);
    }
  }
  float& out = dweight[index];
  out = beta == 0.0f ? sum : beta * out + sum;
}

// Thread o: db(o), the output pixels summed in order (deterministic; the fp32 overload's two-pass
// column sum reads float).
__global__ void conv_transpose2d_backward_bias_bf16_kernel1(ConvTranspose2dShape shape, const bf16* __restrict__ dy,
                                                            int dy_stride, float beta, float* __restrict__ dbias) {
  const int o = static_cast<int>(blockIdx.x * int64_t{blockDim.x} + threadIdx.x);
  if (o >= shape.c_out) return;
  float sum = 0.0f;
  for (int64_t q = 0; q < int64_t{shape.n} * 4 * shape.h * shape.w; ++q) sum += to_float(dy[q * dy_stride + o]);
  float& out = dbias[o];
  out = beta == 0.0f ? sum : beta * out + sum;
}

// ---------------------------------------------------------------------------------------------
// kernels: version 2, four 1x1 GEMMs on the block tile of kernels/conv_gemm.h

using gemm::kTileK;
using gemm::kTileM;

// forward, tap blockIdx.z: A (input pixels x Cin) is x; B (Cin x Cout) is the tap's weights,
// rows W(i, r, s, .).
template <int BN, bool kVector>
struct UpForwardTiles {
  ConvTranspose2dShape shape;
  const float* x;
  int x_stride;
  const float* weight;
  gemm::RowGather<kTileM, kVector> a;
  gemm::ColumnGather<BN, kVector> b;
  int pixel;
  int k0 = 0;  // input channels k0 .. k0 + 7

  __device__ UpForwardTiles(const ConvTranspose2dShape& shape_, const float* x_, int x_stride_, const float* weight_)
      : shape(shape_), x(x_), x_stride(x_stride_), weight(weight_) {
    pixel = blockIdx.x * kTileM + a.row;
  }
  __device__ int steps() const { return static_cast<int>(ceil_div(shape.c_in, kTileK)); }
  __device__ void load() {
    a.load(pixel < shape.n * shape.h * shape.w ? x + int64_t{pixel} * x_stride : nullptr, nullptr, k0, shape.c_in);
    const int i = k0 + b.k;
    b.load(i < shape.c_in ? weight + (int64_t{i} * 4 + blockIdx.z) * shape.c_out : nullptr, nullptr,
           blockIdx.y * BN, shape.c_out);
  }
  __device__ void advance() { k0 += kTileK; }
  template <int kLdA, int kLdB>
  __device__ void store(float (*as)[kLdA], float (*bs)[kLdB]) const {
    a.store(as);
    b.store(bs);
  }
};

// backward_data: A (input pixels x (tap, Cout)) is dy at the output pixel each input pixel fed
// through the tap; B^T (Cin x (tap, Cout)) is the weights, rows W(i, r, s, .).
template <int BN, bool kVector>
struct UpDataTiles {
  ConvTranspose2dShape shape;
  const float* dy;
  int dy_stride;
  const float* weight;
  gemm::RowGather<kTileM, kVector> a;
  gemm::RowGather<BN, kVector> b;
  int pixel, w;
  int tap = 0, k0 = 0;  // tap, output channels k0 .. k0 + 7

  __device__ UpDataTiles(const ConvTranspose2dShape& shape_, const float* dy_, int dy_stride_, const float* weight_)
      : shape(shape_), dy(dy_), dy_stride(dy_stride_), weight(weight_) {
    pixel = blockIdx.x * kTileM + a.row;
    w = pixel % shape.w;
  }
  __device__ int steps() const { return 4 * static_cast<int>(ceil_div(shape.c_out, kTileK)); }
  __device__ void load() {
    const bool valid = pixel < shape.n * shape.h * shape.w;
    const int64_t q = conv_transpose2d_output_pixel(pixel, w, shape.w, tap / 2, tap % 2);
    a.load(valid ? dy + q * dy_stride : nullptr, nullptr, k0, shape.c_out);
    const int i = blockIdx.y * BN + b.row;
    b.load(i < shape.c_in ? weight + (int64_t{i} * 4 + tap) * shape.c_out : nullptr, nullptr, k0, shape.c_out);
  }
  __device__ void advance() {
    k0 += kTileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    ++tap;
  }
  template <int kLdA, int kLdB>
  __device__ void store(float (*as)[kLdA], float (*bs)[kLdB]) const {
    a.store(as);
    b.store(bs);
  }
};

// backward_weight, one chunk of input pixels (blockIdx.z): A (Cin x pixels, stored K-major) is x;
// B (pixels x (tap, Cout)) is dy at the output pixel each input pixel fed through the column's
// tap. Thread t gathers B's pixel t / (BN / 4) and columns (t % (BN / 4)) * 4 + {0..3}, whose
// (tap, channel) are fixed for the whole loop; with kVector (Cout a multiple of 4) the four share
// one tap and are a float4. The output pixel is linear in the tap, so each column keeps one offset
// from the pixel's tap-(0, 0) output: conv_transpose2d_output_pixel(0, 0, W, r, s) pixels, plus
// its channel (-1: a column past the edge).
template <int BN, bool kVector>
struct UpWeightTiles {
  ConvTranspose2dShape shape;
  const float* dy;
  int dy_stride;
  const float* x;
  int x_stride;
  gemm::ColumnGather<kTileM, kVector> a;
  gemm::ColumnGather<BN, kVector> b;  // only its placement: the gather is by column below
  int offset[4];
  int end, step_count;
  int a_pixel;     // pixel a.k of the current step
  int b_pixel, w;  // pixel b.k of the current step, and its column

  __device__ UpWeightTiles(const ConvTranspose2dShape& shape_, const float* x_, int x_stride_, const float* dy_,
                           int dy_stride_, int chunk)
      : shape(shape_), dy(dy_), dy_stride(dy_stride_), x(x_), x_stride(x_stride_) {
    UNET_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int n = blockIdx.y * BN + b.col + j, tap = n / shape.c_out;
      const int64_t q = conv_transpose2d_output_pixel(0, 0, shape.w, tap / 2, tap % 2);
      offset[j] = n < 4 * shape.c_out ? static_cast<int>(q * dy_stride) + n % shape.c_out : -1;
    }
    const int pixels = shape.n * shape.h * shape.w;
    const int begin = blockIdx.z * chunk;
    end = pixels < begin + chunk ? pixels : begin + chunk;
    step_count = static_cast<int>(ceil_div(end - begin, kTileK));
    a_pixel = begin + a.k;
    b_pixel = begin + b.k;
    w = b_pixel % shape.w;
  }
  __device__ int steps() const { return step_count; }
  __device__ void load() {
    a.load(a_pixel < end ? x + int64_t{a_pixel} * x_stride : nullptr, nullptr, blockIdx.x * kTileM, shape.c_in);
    const bool pixel_valid = b.active() && b_pixel < end;
    const float* base = dy + conv_transpose2d_output_pixel(b_pixel, w, shape.w, 0, 0) * dy_stride;
    if constexpr (kVector) {
      b.values = pixel_valid && offset[0] >= 0 ? *reinterpret_cast<const float4*>(base + offset[0]) : gemm::zero4();
    } else {
      UNET_UNROLL
      for (int j = 0; j < 4; ++j) {
        gemm::set_element(b.values, j, pixel_valid && offset[j] >= 0 ? base[offset[j]] : 0.0f);
      }
    }
  }
  __device__ void advance() {
    a_pixel += kTileK;
    b_pixel += kTileK;
    w += kTileK;
    while (w >= shape.w) w -= shape.w;
  }
  template <int kLdA, int kLdB>
  __device__ void store(float (*as)[kLdA], float (*bs)[kLdB]) const {
    a.store(as);
    b.store(bs);
  }
};

template <int BN, bool kVector>
__global__ __launch_bounds__(gemm::kThreads, 2) void conv_transpose2d_forward_kernel2(
    ConvTranspose2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ weight,
    const float* __restrict__ bias, float* __restrict__ y, int y_stride, bool vector_out) {
  UpForwardTiles<BN, kVector> tiles(shape, x, x_stride, weight);
  gemm::Accumulator<BN> acc;
  gemm::multiply<BN>(tiles, acc);

  const int pixels = shape.n * shape.h * shape.w, tap = blockIdx.z;
  UNET_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int pixel = blockIdx.x * kTileM + gemm::micro_row(i);
    if (pixel >= pixels) continue;
    const int64_t q = conv_transpose2d_output_pixel(pixel, pixel % shape.w, shape.w, tap / 2, tap % 2);
    UNET_UNROLL
    for (int half = 0; half < gemm::micro_cols<BN> / 4; ++half) {
      const int o = blockIdx.y * BN + gemm::micro_col(4 * half);
      float4 v = gemm::micro_quad<BN>(acc, i, half);
      if (bias != nullptr) {
        UNET_UNROLL
        for (int j = 0; j < 4; ++j) {
          if (o + j < shape.c_out) gemm::set_element(v, j, gemm::element(v, j) + bias[o + j]);
        }
      }
      gemm::update4(y + q * y_stride, o, shape.c_out, v, 0.0f, vector_out);
    }
  }
}

template <int BN, bool kVector>
__global__ __launch_bounds__(gemm::kThreads, 2) void conv_transpose2d_backward_data_kernel2(
    ConvTranspose2dShape shape, const float* __restrict__ dy, int dy_stride, const float* __restrict__ weight,
    float beta, float* __restrict__ dx, int dx_stride, bool vector_out) {
  UpDataTiles<BN, kVector> tiles(shape, dy, dy_stride, weight);
  gemm::Accumulator<BN> acc;
  gemm::multiply<BN>(tiles, acc);

  const int pixels = shape.n * shape.h * shape.w;
  UNET_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int pixel = blockIdx.x * kTileM + gemm::micro_row(i);
    if (pixel >= pixels) continue;
    UNET_UNROLL
    for (int half = 0; half < gemm::micro_cols<BN> / 4; ++half) {
      gemm::update4(dx + int64_t{pixel} * dx_stride, blockIdx.y * BN + gemm::micro_col(4 * half), shape.c_in,
                    gemm::micro_quad<BN>(acc, i, half), beta, vector_out);
    }
  }
}

// Writes this chunk's partial dW, laid out as dW: partial[chunk][i][(tap, o)].
template <int BN, bool kVector>
__global__ __launch_bounds__(gemm::kThreads, 2) void conv_transpose2d_backward_weight_kernel2(
    ConvTranspose2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ dy,
    int dy_stride, int chunk, float* __restrict__ partial) {
  UpWeightTiles<BN, kVector> tiles(shape, x, x_stride, dy, dy_stride, chunk);
  gemm::Accumulator<BN> acc;
  gemm::multiply<BN>(tiles, acc);

  const int columns = 4 * shape.c_out;
  float* out = partial + int64_t{blockIdx.z} * shape.c_in * columns;
  UNET_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int channel = blockIdx.x * kTileM + gemm::micro_row(i);
    if (channel >= shape.c_in) continue;
    UNET_UNROLL
    for (int j = 0; j < gemm::micro_cols<BN>; ++j) {
      const int n = blockIdx.y * BN + gemm::micro_col(j);
      if (n < columns) out[int64_t{channel} * columns + n] = acc[i][j];
    }
  }
}


// ---------------------------------------------------------------------------------------------
// kernels: version 3, one GEMM over the four taps on tensor cores (kernels/conv_mma.h), one set of
// tiles for both elements: float (TF32 mma, cvt.rna as operands leave shared memory) or bf16
// (ldmatrix, bf16 mma); the first template argument names the element in the SASS, Block is the
// block tile, kVector picks 16-byte cp.async copies or element-by-element ones.
//
// Column n of a (4 Cout)-wide GEMM is (tap, o) = (n / Cout, n % Cout), the layout of a weight row
// W(i, ., ., .): forward multiplies x by W read as a Cin x 4 Cout matrix and scatters column n to
// the tap's output pixel (the pixel shuffle); backward_weight is its transpose over the pixels.

// The (tap, channel) of GEMM column n.
struct TapColumn {
  int tap, channel;
};
__device__ __forceinline__ TapColumn tap_column(int n, int c_out) { return {n / c_out, n % c_out}; }

__device__ __forceinline__ int64_t tap_output_pixel(int pixel, int width, int tap) {
  return conv_transpose2d_output_pixel(pixel, pixel % width, width, tap / 2, tap % 2);
}

// forward: A row = the pixel's input channels k0 .. k0 + K - 1 (K-contiguous); B = W as
// Cin x 4 Cout, K-major: row k is W(k0 + k, ., ., .), the block's columns contiguous.
template <class T, class TileShape, bool kVector>
struct UpForwardTiles3 {
  using Element = T;
  using Block = TileShape;
  using SliceA = mma::Slice<Element, mma::Layout::k_contiguous, Block::kM>;
  using SliceB = mma::Slice<Element, mma::Layout::k_major, Block::kN>;
  static constexpr int kTileK = mma::Format<Element>::kTileK;
  static constexpr int kStages = mma::Format<Element>::stages(false);
  static constexpr int kStageElements = SliceA::kElements + SliceB::kElements;  // A, then B
  ConvTranspose2dShape shape;
  const Element* x;
  int x_stride;
  const Element* weight;
  int block_pixel, block_column;
  int k0 = 0;  // the K-step: input channels k0 .. k0 + kTileK - 1

  __device__ int steps() const { return static_cast<int>(ceil_div(shape.c_in, kTileK)); }
  __device__ void copy(Element* stage) const {
    const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
    const auto a = [&](int row, int col) -> const Element* {
      const int pixel = block_pixel + row;
      return pixel < pixels && k0 + col < shape.c_in ? x + int64_t{pixel} * x_stride + k0 + col : nullptr;
    };
    mma::copy_slice<SliceA, kVector>(stage, a, x);
    const auto b = [&](int k, int col) -> const Element* {
      const int n = block_column + col;
      return k0 + k < shape.c_in && n < columns ? weight + int64_t{k0 + k} * columns + n : nullptr;
    };
    mma::copy_slice<SliceB, kVector>(stage + SliceA::kElements, b, weight);
  }
  __device__ void advance() { k0 += kTileK; }
  __device__ void multiply(const Element* stage, typename Block::Accumulator& acc) const {
    mma::multiply_stage<Block, SliceA, SliceB, mma::Mask::none>(stage, stage + SliceA::kElements, stage, acc);
  }
};

// The pixel shuffle: C(p, (tap, o)) + b(o) is y at the output pixel p fed through the tap, channel o.
template <class Element, class Block, bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_forward_kernel3(
    ConvTranspose2dShape shape, const Element* __restrict__ x, int x_stride, const Element* __restrict__ weight,
    const float* __restrict__ bias, Element* __restrict__ y, int y_stride) {
  DYNAMIC_SHARED(Element, shared);
  const int block_pixel = blockIdx.x * Block::kM, block_column = blockIdx.y * Block::kN;
  UpForwardTiles3<Element, Block, kVector> tiles{shape, x, x_stride, weight, block_pixel, block_column};
  typename Block::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
  mma::for_each_accumulator<Block>(acc, [&](int row, int col, float sum) {
    const int pixel = block_pixel + row, n = block_column + col;
    if (pixel >= pixels || n >= columns) return;
    const TapColumn column = tap_column(n, shape.c_out);
    const float value = sum + (bias != nullptr ? bias[column.channel] : 0.0f);
    mma::store(y[tap_output_pixel(pixel, shape.w, column.tap) * y_stride + column.channel], value);
  });
}

// backward_data: K = (tap, Cout), one tap per K-step. A row = dy at the output pixel the input
// pixel fed through the tap, channels k0 .. k0 + K - 1; B row n = W(block_channel + n, tap, .),
// the same channels (both K-contiguous).
template <class T, class TileShape, bool kVector>
struct UpDataTiles3 {
  using Element = T;
  using Block = TileShape;
  using SliceA = mma::Slice<Element, mma::Layout::k_contiguous, Block::kM>;
  using SliceB = mma::Slice<Element, mma::Layout::k_contiguous, Block::kN>;
  static constexpr int kTileK = mma::Format<Element>::kTileK;
  static constexpr int kStages = mma::Format<Element>::stages(false);
  static constexpr int kStageElements = SliceA::kElements + SliceB::kElements;  // A, then B
  ConvTranspose2dShape shape;
  const Element* dy;
  int dy_stride;
  const Element* weight;
  int block_pixel, block_channel;
  int tap = 0, k0 = 0;  // the K-step: the tap, output channels k0 .. k0 + kTileK - 1

  __device__ int steps() const { return 4 * static_cast<int>(ceil_div(shape.c_out, kTileK)); }
  __device__ void copy(Element* stage) const {
    const int pixels = shape.n * shape.h * shape.w;
    const auto a = [&](int row, int col) -> const Element* {
      const int pixel = block_pixel + row;
      if (pixel >= pixels || k0 + col >= shape.c_out) return nullptr;
      return dy + tap_output_pixel(pixel, shape.w, tap) * dy_stride + k0 + col;
    };
    mma::copy_slice<SliceA, kVector>(stage, a, dy);
    const auto b = [&](int row, int col) -> const Element* {
      const int i = block_channel + row;
      return i < shape.c_in && k0 + col < shape.c_out ? weight + (int64_t{i} * 4 + tap) * shape.c_out + k0 + col
                                                      : nullptr;
    };
    mma::copy_slice<SliceB, kVector>(stage + SliceA::kElements, b, weight);
  }
  __device__ void advance() {
    k0 += kTileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    ++tap;
  }
  __device__ void multiply(const Element* stage, typename Block::Accumulator& acc) const {
    mma::multiply_stage<Block, SliceA, SliceB, mma::Mask::none>(stage, stage + SliceA::kElements, stage, acc);
  }
};

// Fused epilogue: dx = beta dx + sum, the prior widened and the sum added in fp32, one rounding.
template <class Element, class Block, bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_backward_data_kernel3(
    ConvTranspose2dShape shape, const Element* __restrict__ dy, int dy_stride, const Element* __restrict__ weight,
    float beta, Element* __restrict__ dx, int dx_stride) {
  DYNAMIC_SHARED(Element, shared);
  const int block_pixel = blockIdx.x * Block::kM, block_channel = blockIdx.y * Block::kN;
  UpDataTiles3<Element, Block, kVector> tiles{shape, dy, dy_stride, weight, block_pixel, block_channel};
  typename Block::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  mma::for_each_accumulator<Block>(acc, [&](int row, int col, float sum) {
    const int pixel = block_pixel + row, c = block_channel + col;
    if (pixel >= pixels || c >= shape.c_in) return;
    Element& out = dx[int64_t{pixel} * dx_stride + c];
    mma::store(out, beta == 0.0f ? sum : beta * mma::widen(out) + sum);  // beta = 0 overwrites, even NaN
  });
}

// backward_weight, one chunk of input pixels (blockIdx.z): A (Cin x pixels) is x, K-major (a
// pixel's channels of the block in a row); B (pixels x (tap, Cout)) is dy at the output pixel each
// input pixel fed through the column's tap, K-major. With kVector Cout is a multiple of a 16-byte
// chunk, so a chunk of B never straddles two taps.
template <class T, class TileShape, bool kVector>
struct UpWeightTiles3 {
  using Element = T;
  using Block = TileShape;
  using SliceA = mma::Slice<Element, mma::Layout::k_major, Block::kM>;
  using SliceB = mma::Slice<Element, mma::Layout::k_major, Block::kN>;
  static constexpr int kTileK = mma::Format<Element>::kTileK;
  static constexpr int kStages = mma::Format<Element>::stages(false);
  static constexpr int kStageElements = SliceA::kElements + SliceB::kElements;  // A, then B
  ConvTranspose2dShape shape;
  const Element* x;
  int x_stride;
  const Element* dy;
  int dy_stride;
  int block_channel, block_column;  // the tile's first input channel and (tap, o) column of dW
  int begin, end;                   // this chunk's pixels
  int p0 = 0;                       // the K-step: pixels begin + p0 .. + kTileK - 1

  __device__ int steps() const { return static_cast<int>(ceil_div(end - begin, kTileK)); }
  __device__ void copy(Element* stage) const {
    const auto a = [&](int k, int col) -> const Element* {
      const int pixel = begin + p0 + k, i = block_channel + col;
      return pixel < end && i < shape.c_in ? x + int64_t{pixel} * x_stride + i : nullptr;
    };
    mma::copy_slice<SliceA, kVector>(stage, a, x);
    const auto b = [&](int k, int col) -> const Element* {
      const int pixel = begin + p0 + k, n = block_column + col;
      if (pixel >= end || n >= 4 * shape.c_out) return nullptr;
      const TapColumn column = tap_column(n, shape.c_out);
      return dy + tap_output_pixel(pixel, shape.w, column.tap) * dy_stride + column.channel;
    };
    mma::copy_slice<SliceB, kVector>(stage + SliceA::kElements, b, dy);
  }
  __device__ void advance() { p0 += kTileK; }
  __device__ void multiply(const Element* stage, typename Block::Accumulator& acc) const {
    mma::multiply_stage<Block, SliceA, SliceB, mma::Mask::none>(stage, stage + SliceA::kElements, stage, acc);
  }
};

// Writes this chunk's partial dW (fp32), laid out as dW: partial[chunk][i][(tap, o)].
template <class Element, class Block, bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_backward_weight_kernel3(
    ConvTranspose2dShape shape, const Element* __restrict__ x, int x_stride, const Element* __restrict__ dy,
    int dy_stride, int chunk, float* __restrict__ partial) {
  DYNAMIC_SHARED(Element, shared);
  const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
  const int begin = blockIdx.z * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;
  const int block_channel = blockIdx.x * Block::kM, block_column = blockIdx.y * Block::kN;
  UpWeightTiles3<Element, Block, kVector> tiles{shape, x, x_stride, dy, dy_stride, block_channel, block_column,
                                                begin, end};
  typename Block::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  float* out = partial + int64_t{blockIdx.z} * shape.c_in * columns;
  mma::for_each_accumulator<Block>(acc, [&](int row, int col, float sum) {
    const int c = block_channel + row, n = block_column + col;
    if (c < shape.c_in && n < columns) out[int64_t{c} * columns + n] = sum;
  });
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

namespace {

int64_t pixel_count(const ConvTranspose2dShape& shape) { return int64_t{shape.n} * shape.h * shape.w; }
int64_t weight_count(const ConvTranspose2dShape& shape) { return int64_t{shape.c_in} * 4 * shape.c_out; }

// Version 2 indexes pixels and weights with int: 2^31 of either is far beyond any tensor that fits
// in a GPU's memory. (Asserted, not thrown: the kernel libraries define no exception types.)
void check_shape([[maybe_unused]] const ConvTranspose2dShape& shape) {
  assert(pixel_count(shape) <= INT_MAX / 4 && weight_count(shape) <= INT_MAX);
}

dim3 gemm_grid(int64_t m, int64_t n, int bn, int64_t z) {
  return dim3(static_cast<unsigned>(ceil_div(m, gemm::kTileM)), static_cast<unsigned>(ceil_div(n, bn)),
              static_cast<unsigned>(z));
}

int tile_width(int64_t n) { return n <= 64 ? 64 : 128; }

// The weight gradient's GEMM is Cin x (4 Cout) over the input pixels.
gemm::PixelSplit weight_split(const ConvTranspose2dShape& shape) {
  const int64_t columns = 4 * int64_t{shape.c_out};
  const int64_t tiles = ceil_div(shape.c_in, gemm::kTileM) * ceil_div(columns, tile_width(columns));
  return gemm::split_pixels(pixel_count(shape), tiles);
}

// Version 3 (both elements), launched through conv_mma.h's mma::grid, mma::launch and
// mma::with_block_tile.

// body.template operator()<kVector>() for the run-time choice of copies.
template <class Body>
void with_copies(bool vector, Body&& body) {
  if (vector) {
    body.template operator()<true>();
  } else {
    body.template operator()<false>();
  }
}

// Whether bf16 version 3's 16-byte copies fit: every pointer 16-byte aligned and every count
// (channels, pixel strides, weight row lengths) a multiple of 8 bf16.
bool octets_fit(std::initializer_list<const void*> pointers, std::initializer_list<int64_t> counts) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  for (int64_t c : counts) {
    if (c % 8 != 0) return false;
  }
  return true;
}

template <class Element>
void forward3(const ConvTranspose2dShape& shape, const Element* x, int x_stride, const Element* weight,
              const float* bias, Element* y, int y_stride, bool vector, Stream stream) {
  with_copies(vector, [&]<bool kVector>() {
    const int large = mma::blocks_per_sm<UpForwardTiles3<Element, mma::LargeTile, kVector>>();
    const int small = mma::blocks_per_sm<UpForwardTiles3<Element, mma::SmallTile, kVector>>();
    mma::with_block_tile(pixel_count(shape), 4 * shape.c_out, large, small, [&]<class Block>() {
      mma::launch<UpForwardTiles3<Element, Block, kVector>>(
          KERNEL(conv_transpose2d_forward_kernel3<Element, Block, kVector>),
          mma::grid<Block>(pixel_count(shape), 4 * shape.c_out), stream, shape, x, x_stride, weight, bias, y,
          y_stride);
    });
  });
}

template <class Element>
void backward_data3(const ConvTranspose2dShape& shape, const Element* dy, int dy_stride, const Element* weight,
                    float beta, Element* dx, int dx_stride, bool vector, Stream stream) {
  with_copies(vector, [&]<bool kVector>() {
    const int large = mma::blocks_per_sm<UpDataTiles3<Element, mma::LargeTile, kVector>>();
    const int small = mma::blocks_per_sm<UpDataTiles3<Element, mma::SmallTile, kVector>>();
    mma::with_block_tile(pixel_count(shape), shape.c_in, large, small, [&]<class Block>() {
      mma::launch<UpDataTiles3<Element, Block, kVector>>(
          KERNEL(conv_transpose2d_backward_data_kernel3<Element, Block, kVector>),
          mma::grid<Block>(pixel_count(shape), shape.c_in), stream, shape, dy, dy_stride, weight, beta, dx,
          dx_stride);
    });
  });
}

// backward_weight's one block tile (it splits the pixels instead: kernels/tile_choice.h).
using WeightTile3 = mma::LargeTile;

// Version 3 splits the pixels as version 2 does (weight_split), so that backward_weight_workspace
// is one size for every version but the first; the partials are summed in order (column_sum.h).
template <DeviceKind D, class Element>
void backward_weight3(const ConvTranspose2dShape& shape, const Element* x, int x_stride, const Element* dy,
                      int dy_stride, float beta, float* dweight, void* workspace, bool vector, Stream stream) {
  const gemm::PixelSplit split = weight_split(shape);
  auto* partial = static_cast<float*>(workspace);
  if (split.splits > 0) {
    with_copies(vector, [&]<bool kVector>() {
      mma::launch<UpWeightTiles3<Element, WeightTile3, kVector>>(
          KERNEL(conv_transpose2d_backward_weight_kernel3<Element, WeightTile3, kVector>),
          mma::grid<WeightTile3>(shape.c_in, 4 * shape.c_out, split.splits), stream, shape, x, x_stride, dy, dy_stride,
          static_cast<int>(split.chunk), partial);
    });
  }
  ColumnSum<D>::sum_partials(split.splits, weight_count(shape), partial, beta, dweight, stream);
}

}  // namespace

template <DeviceKind D>
void ConvTranspose2d<D>::forward(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                 const float* weight, const float* bias, float* y, int y_stride, Stream stream,
                                 int version) {
  if (pixel_count(shape) * shape.c_out == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv_transpose2d_forward_kernel1), pixel_count(shape) * 4 * shape.c_out, stream, shape, x,
                x_stride, weight, bias, y, y_stride);
    return;
  }
  if (version == tensor_core_version) {
    forward3(shape, x, x_stride, weight, bias, y, y_stride, quads_fit({x, weight}, {shape.c_in, x_stride}), stream);
    return;
  }
  const bool vector_in = quads_fit({x, weight}, {shape.c_in, shape.c_out, x_stride});
  const bool vector_out = quads_fit({y}, {shape.c_out, y_stride});
  gemm::with_tile(tile_width(shape.c_out), vector_in, [&]<int BN, bool kVector>() {
    launch(KERNEL(conv_transpose2d_forward_kernel2<BN, kVector>), gemm_grid(pixel_count(shape), shape.c_out, BN, 4),
           dim3(gemm::kThreads), 0, stream, shape, x, x_stride, weight, bias, y, y_stride, vector_out);
  });
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_data(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                       const float* weight, float beta, float* dx, int dx_stride, Stream stream,
                                       int version) {
  if (pixel_count(shape) * shape.c_in == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv_transpose2d_backward_data_kernel1), pixel_count(shape) * shape.c_in, stream, shape, dy,
                dy_stride, weight, beta, dx, dx_stride);
    return;
  }
  const bool vector_in = quads_fit({dy, weight}, {shape.c_out, dy_stride});
  if (version == tensor_core_version) {
    backward_data3(shape, dy, dy_stride, weight, beta, dx, dx_stride, vector_in, stream);
    return;
  }
  const bool vector_out = quads_fit({dx}, {shape.c_in, dx_stride});
  gemm::with_tile(tile_width(shape.c_in), vector_in, [&]<int BN, bool kVector>() {
    launch(KERNEL(conv_transpose2d_backward_data_kernel2<BN, kVector>),
           gemm_grid(pixel_count(shape), shape.c_in, BN, 1), dim3(gemm::kThreads), 0, stream, shape, dy, dy_stride,
           weight, beta, dx, dx_stride, vector_out);
  });
}

template <DeviceKind D>
size_t ConvTranspose2d<D>::backward_weight_workspace(const ConvTranspose2dShape& shape, int version) {
  if (version == 1) return 0;
  return static_cast<size_t>(weight_split(shape).splits * weight_count(shape)) * sizeof(float);
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_weight(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                         const float* dy, int dy_stride, float beta, float* dweight,
                                         void* workspace, Stream stream, int version) {
  if (weight_count(shape) == 0) return;
  check_shape(shape);
  assert((2 * int64_t{shape.w} + 2) * dy_stride <= INT_MAX);  // UpWeightTiles' column offsets are int
  if (version == 1) {
    launch_flat(KERNEL(conv_transpose2d_backward_weight_kernel1), weight_count(shape), stream, shape, x, x_stride, dy,
                dy_stride, beta, dweight);
    return;
  }
  const bool vector_in = quads_fit({x, dy}, {shape.c_in, shape.c_out, x_stride, dy_stride});
  if (version == tensor_core_version) {
    backward_weight3<D>(shape, x, x_stride, dy, dy_stride, beta, dweight, workspace, vector_in, stream);
    return;
  }
  const gemm::PixelSplit split = weight_split(shape);
  const int64_t splits = split.splits, columns = 4 * int64_t{shape.c_out};
  const int chunk = static_cast<int>(split.chunk);
  auto* partial = static_cast<float*>(workspace);
  if (splits > 0) {
    gemm::with_tile(tile_width(columns), vector_in, [&]<int BN, bool kVector>() {
      launch(KERNEL(conv_transpose2d_backward_weight_kernel2<BN, kVector>), gemm_grid(shape.c_in, columns, BN, splits),
             dim3(gemm::kThreads), 0, stream, shape, x, x_stride, dy, dy_stride, chunk, partial);
    });
  }
  ColumnSum<D>::sum_partials(splits, weight_count(shape), partial, beta, dweight, stream);
}

template <DeviceKind D>
size_t ConvTranspose2d<D>::backward_bias_workspace(const ConvTranspose2dShape& shape) {
  return ColumnSum<D>::workspace(4 * pixel_count(shape), shape.c_out);
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_bias(const ConvTranspose2dShape& shape, const float* dy, int dy_stride, float beta,
                                       float* dbias, void* workspace, Stream stream) {
  ColumnSum<D>::sum(4 * pixel_count(shape), shape.c_out, dy, dy_stride, nullptr, 0, beta, dbias, workspace, stream);
}

// bf16: version 3 (16-byte copies where every pointer is 16-byte aligned and every channel count,
// pixel stride and weight row a multiple of 8 bf16, element-by-element ones otherwise), or version 1.
template <DeviceKind D>
void ConvTranspose2d<D>::forward(const ConvTranspose2dShape& shape, const bf16* x, int x_stride, const bf16* weight,
                                 const float* bias, bf16* y, int y_stride, Stream stream, int version) {
  if (pixel_count(shape) * shape.c_out == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv_transpose2d_forward_bf16_kernel1), pixel_count(shape) * 4 * shape.c_out, stream, shape,
                x, x_stride, weight, bias, y, y_stride);
    return;
  }
  forward3(shape, x, x_stride, weight, bias, y, y_stride,
           octets_fit({x, weight}, {shape.c_in, x_stride, 4 * shape.c_out}), stream);
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_data(const ConvTranspose2dShape& shape, const bf16* dy, int dy_stride,
                                       const bf16* weight, float beta, bf16* dx, int dx_stride, Stream stream,
                                       int version) {
  if (pixel_count(shape) * shape.c_in == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv_transpose2d_backward_data_bf16_kernel1), pixel_count(shape) * shape.c_in, stream, shape,
                dy, dy_stride, weight, beta, dx, dx_stride);
    return;
  }
  backward_data3(shape, dy, dy_stride, weight, beta, dx, dx_stride, octets_fit({dy, weight}, {dy_stride, shape.c_out}),
                 stream);
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_weight(const ConvTranspose2dShape& shape, const bf16* x, int x_stride,
                                         const bf16* dy, int dy_stride, float beta, float* dweight, void* workspace,
                                         Stream stream, int version) {
  if (weight_count(shape) == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv_transpose2d_backward_weight_bf16_kernel1), weight_count(shape), stream, shape, x,
                x_stride, dy, dy_stride, beta, dweight);
    return;
  }
  backward_weight3<D>(shape, x, x_stride, dy, dy_stride, beta, dweight, workspace,
                      octets_fit({x, dy}, {shape.c_in, shape.c_out, x_stride, dy_stride}), stream);
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_bias(const ConvTranspose2dShape& shape, const bf16* dy, int dy_stride, float beta,
                                       float* dbias, void*, Stream stream) {
  if (shape.c_out == 0) return;
  launch_flat(KERNEL(conv_transpose2d_backward_bias_bf16_kernel1), shape.c_out, stream, shape, dy, dy_stride, beta,
              dbias);
}

template struct ConvTranspose2d<KERNEL_DEVICE>;

}  // namespace unet
