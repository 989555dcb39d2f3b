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
//   3  one GEMM over the four taps on tensor cores in TF32 (kernels/conv_mma.h: a 128 x 64 block tile
//      of 4 warps on mma.sync m16n8k8, K-steps of 16 through a 3-stage cp.async pipeline, operands
//      rounded with cvt.rna as they leave shared memory; 16-byte copies where channels, strides and
//      pointers are multiples of 4 floats, 4-byte copies otherwise). forward: M = input pixels,
//      N = 4 Cout (column (tap, o), W read as a Cin x 4 Cout matrix), K = Cin, the bias and the
//      pixel shuffle in the epilogue, written through y's pixel stride. backward_data: M = input
//      pixels, N = Cin, K = (tap, Cout), a K-step's A rows gathered at the tap's output pixels.
//      backward_weight: M = Cin, N = 4 Cout, K = input pixels, split as version 2 splits them and
//      summed in order. Compared with cpu::conv_transpose2d_*_tf32. Not the default: version 0 is 2.
// backward_bias has one version: the deterministic two-pass column sum shared with conv2d
// (column_sum.h), over the output pixels.
// The bf16 overloads (fp32 arithmetic, bf16 activations, each bf16 output rounded once):
//   1  version 1's kernels reading and writing bf16, and backward_bias one thread per channel
//      summing the output pixels in order (backward_bias's only bf16 version).
//   3  version 3's GEMMs on mma.sync m16n8k16 bf16 (fp32 accumulators): the same block tile and
//      pipeline, K-steps of 32 bf16 in swizzled slices of 16-byte chunks, cp.async 16-byte copies
//      (zero-filled past a channel count) and ldmatrix.x4 (.trans for K-major slices). It needs
//      every row a copy starts at 16-byte aligned: pointers 16-byte aligned, pixel strides a
//      multiple of 8, and 4 Cout (forward) or Cout (the gradients) a multiple of 8; any other
//      layout (an odd channel slice, a dense odd channel count) falls back to version 1. The
//      default (version 0).
#include "kernels/conv_transpose2d.h"

#include <cassert>
#include <climits>
#include <cstdint>

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
// kernels: version 3, one GEMM over the four taps on tensor cores in TF32 (kernels/conv_mma.h)
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

// forward: A row = the pixel's input channels k0 .. k0 + 15 (K-contiguous); B = W as Cin x 4 Cout,
// K-major: row k is W(k0 + k, ., ., .), the block's 64 columns contiguous.
template <bool kVector>
struct UpForwardTiles3 {
  static constexpr int kSliceA = mma::kTileM * mma::kRowFloats;
  using Element = float;  // what conv_mma.h's main loop keeps in shared memory
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = kSliceA + mma::kTileK * mma::kColumnFloats;  // A, then B
  ConvTranspose2dShape shape;
  const float* x;
  int x_stride;
  const float* weight;
  int block_pixel, block_column;
  int k0 = 0;  // the K-step: input channels k0 .. k0 + 15

  __device__ int steps() const { return static_cast<int>(ceil_div(shape.c_in, mma::kTileK)); }
  __device__ void copy(float* stage) const {
    const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
    const auto a_row = [&](int row) -> const float* {
      return block_pixel + row < pixels ? x + int64_t{block_pixel + row} * x_stride : nullptr;
    };
    mma::copy_slice<mma::kTileM, mma::kTileK, mma::kRowFloats, kVector>(stage, a_row, x, k0, shape.c_in);
    const auto b_row = [&](int k) -> const float* {
      return k0 + k < shape.c_in ? weight + int64_t{k0 + k} * columns : nullptr;
    };
    mma::copy_slice<mma::kTileK, mma::kTileN, mma::kColumnFloats, kVector>(stage + kSliceA, b_row, weight,
                                                                            block_column, columns);
  }
  __device__ void advance() { k0 += mma::kTileK; }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    const float* b = stage + kSliceA;
    mma::multiply_stage([&](int m, int k) { return mma::k_contiguous(stage, m, k); },
                        [&](int n, int k) { return mma::k_major<mma::kColumnFloats>(b, n, k); }, acc);
  }
};

// The pixel shuffle: C(p, (tap, o)) + b(o) is y at the output pixel p fed through the tap, channel o.
template <bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_forward_kernel3(
    ConvTranspose2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ weight,
    const float* __restrict__ bias, float* __restrict__ y, int y_stride) {
  DYNAMIC_SHARED(float, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_column = blockIdx.y * mma::kTileN;
  UpForwardTiles3<kVector> tiles{shape, x, x_stride, weight, block_pixel, block_column};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
  UNET_UNROLL
  for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < mma::kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int pixel = block_pixel + mma::accumulator_row(mi, i), n = block_column + mma::accumulator_col(ni, i);
        if (pixel >= pixels || n >= columns) continue;
        const TapColumn column = tap_column(n, shape.c_out);
        const float value = acc[mi][ni][i] + (bias != nullptr ? bias[column.channel] : 0.0f);
        y[tap_output_pixel(pixel, shape.w, column.tap) * y_stride + column.channel] = value;
      }
    }
  }
}

// backward_data: K = (tap, Cout), one tap per K-step. A row = dy at the output pixel the input
// pixel fed through the tap, channels k0 .. k0 + 15; B row n = W(block_channel + n, tap, .), the
// same channels (both K-contiguous).
template <bool kVector>
struct UpDataTiles3 {
  static constexpr int kSliceA = mma::kTileM * mma::kRowFloats;
  using Element = float;  // what conv_mma.h's main loop keeps in shared memory
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = kSliceA + mma::kTileN * mma::kRowFloats;  // A, then B
  ConvTranspose2dShape shape;
  const float* dy;
  int dy_stride;
  const float* weight;
  int block_pixel, block_channel;
  int tap = 0, k0 = 0;  // the K-step: the tap, output channels k0 .. k0 + 15

  __device__ int steps() const { return 4 * static_cast<int>(ceil_div(shape.c_out, mma::kTileK)); }
  __device__ void copy(float* stage) const {
    const int pixels = shape.n * shape.h * shape.w;
    const auto a_row = [&](int row) -> const float* {
      const int pixel = block_pixel + row;
      return pixel < pixels ? dy + tap_output_pixel(pixel, shape.w, tap) * dy_stride : nullptr;
    };
    mma::copy_slice<mma::kTileM, mma::kTileK, mma::kRowFloats, kVector>(stage, a_row, dy, k0, shape.c_out);
    const auto b_row = [&](int row) -> const float* {
      const int i = block_channel + row;
      return i < shape.c_in ? weight + (int64_t{i} * 4 + tap) * shape.c_out : nullptr;
    };
    mma::copy_slice<mma::kTileN, mma::kTileK, mma::kRowFloats, kVector>(stage + kSliceA, b_row, weight, k0,
                                                                        shape.c_out);
  }
  __device__ void advance() {
    k0 += mma::kTileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    ++tap;
  }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    const float* b = stage + kSliceA;
    mma::multiply_stage([&](int m, int k) { return mma::k_contiguous(stage, m, k); },
                        [&](int n, int k) { return mma::k_contiguous(b, n, k); }, acc);
  }
};

template <bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_backward_data_kernel3(
    ConvTranspose2dShape shape, const float* __restrict__ dy, int dy_stride, const float* __restrict__ weight,
    float beta, float* __restrict__ dx, int dx_stride) {
  DYNAMIC_SHARED(float, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  UpDataTiles3<kVector> tiles{shape, dy, dy_stride, weight, block_pixel, block_channel};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  UNET_UNROLL
  for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < mma::kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int pixel = block_pixel + mma::accumulator_row(mi, i), c = block_channel + mma::accumulator_col(ni, i);
        if (pixel >= pixels || c >= shape.c_in) continue;
        float& out = dx[int64_t{pixel} * dx_stride + c];
        out = beta == 0.0f ? acc[mi][ni][i] : beta * out + acc[mi][ni][i];  // beta = 0 overwrites, even NaN
      }
    }
  }
}

// backward_weight, one chunk of input pixels (blockIdx.z): A (Cin x pixels) is x, K-major (a
// pixel's 128 channels of the block in a row); B (pixels x (tap, Cout)) is dy at the output pixel
// each input pixel fed through the column's tap, K-major. With kVector Cout is a multiple of 4, so
// a 4-float chunk of B never straddles two taps.
template <bool kVector>
struct UpWeightTiles3 {
  static constexpr int kSliceA = mma::kTileK * mma::kWideColumnFloats;
  using Element = float;  // what conv_mma.h's main loop keeps in shared memory
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = kSliceA + mma::kTileK * mma::kColumnFloats;  // A, then B
  ConvTranspose2dShape shape;
  const float* x;
  int x_stride;
  const float* dy;
  int dy_stride;
  int block_channel, block_column;  // the tile's first input channel and (tap, o) column of dW
  int begin, end;                   // this chunk's pixels
  int p0 = 0;                       // the K-step: pixels begin + p0 .. + 15

  __device__ int steps() const { return static_cast<int>(ceil_div(end - begin, mma::kTileK)); }
  __device__ void copy(float* stage) const {
    const auto x_row = [&](int k) -> const float* {
      return begin + p0 + k < end ? x + int64_t{begin + p0 + k} * x_stride : nullptr;
    };
    mma::copy_slice<mma::kTileK, mma::kTileM, mma::kWideColumnFloats, kVector>(stage, x_row, x, block_channel,
                                                                                shape.c_in);
    const auto g_chunk = [&](int k, int col) -> const float* {
      const int pixel = begin + p0 + k, n = block_column + col;
      if (pixel >= end || n >= 4 * shape.c_out) return nullptr;
      const TapColumn column = tap_column(n, shape.c_out);
      return dy + tap_output_pixel(pixel, shape.w, column.tap) * dy_stride + column.channel;
    };
    mma::copy_chunks<mma::kTileK, mma::kTileN, mma::kColumnFloats, kVector>(stage + kSliceA, g_chunk, dy);
  }
  __device__ void advance() { p0 += mma::kTileK; }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    const float* b = stage + kSliceA;
    mma::multiply_stage([&](int m, int k) { return mma::k_major<mma::kWideColumnFloats>(stage, m, k); },
                        [&](int n, int k) { return mma::k_major<mma::kColumnFloats>(b, n, k); }, acc);
  }
};

// Writes this chunk's partial dW, laid out as dW: partial[chunk][i][(tap, o)].
template <bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_backward_weight_kernel3(
    ConvTranspose2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ dy,
    int dy_stride, int chunk, float* __restrict__ partial) {
  DYNAMIC_SHARED(float, shared);
  const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
  const int begin = blockIdx.z * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;
  const int block_channel = blockIdx.x * mma::kTileM, block_column = blockIdx.y * mma::kTileN;
  UpWeightTiles3<kVector> tiles{shape, x, x_stride, dy, dy_stride, block_channel, block_column, begin, end};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  float* out = partial + int64_t{blockIdx.z} * shape.c_in * columns;
  UNET_UNROLL
  for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < mma::kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int c = block_channel + mma::accumulator_row(mi, i), n = block_column + mma::accumulator_col(ni, i);
        if (c < shape.c_in && n < columns) out[int64_t{c} * columns + n] = acc[mi][ni][i];
      }
    }
  }
}


// ---------------------------------------------------------------------------------------------
// kernels: bf16 version 3, the same three GEMMs on mma.sync m16n8k16 bf16
//
// The block tile and the pipeline are conv_mma.h's (128 x 64 tile of 4 warps, each a 64 x 32 tile
// of m16n8 accumulators, mma::multiply's 3 stages), with bf16 slices: K-steps of 32 bf16, every
// row of a slice a whole number of 16-byte chunks of 8 bf16, filled by 16-byte cp.async (zero-
// filled past an edge: a chunk's source bytes stop at the tensor's channel count) and read by
// ldmatrix.x4. The chunks are swizzled instead of padded: chunk c of row r lives at chunk
// c ^ swizzle(r), so that the 8 rows an ldmatrix matrix reads, all at the same logical chunk, hit 8
// different 16-byte bank groups (conflict-free) while the copies stay 16-byte aligned.
namespace bf16_tile {

constexpr int kTileK = 32;  // bf16 per K-step
constexpr int kChunk = 8;   // bf16 per 16-byte chunk

// Slice rows of 4 chunks (64 bytes) pair up per 128-byte line, hence row >> 1; wider rows use row & 7.
template <int kChunks>
__device__ __forceinline__ int swizzle(int row) {
  static_assert(kChunks == 4 || kChunks == 8 || kChunks == 16, "rows of 4, 8 or 16 chunks");
  return kChunks == 4 ? (row >> 1) & 3 : row & 7;
}

template <int kChunks>
__device__ __forceinline__ bf16* chunk_at(bf16* slice, int row, int chunk) {
  return slice + (row * kChunks + (chunk ^ swizzle<kChunks>(row))) * kChunk;
}

// The 16-byte source of a chunk: `source` valid for `count` bf16 (1 .. 8), or count 0 for zeros.
struct ChunkSource {
  const bf16* source;
  int count;
};

// The chunk that starts at element `first` of a row of `width` values at `row` (null: zeros).
__device__ __forceinline__ ChunkSource row_chunk(const bf16* row, int first, int width) {
  if (row == nullptr || first >= width) return {nullptr, 0};
  return {row + first, width - first < kChunk ? width - first : kChunk};
}

// Fills a slice of kRows rows of kChunks chunks with cp.async, chunk (row, c) from source(row, c);
// `fallback` is a valid address of the tensor for the zero-filling copies (which read nothing).
template <int kRows, int kChunks, class Source>
__device__ __forceinline__ void copy_slice(bf16* slice, const Source& source, const bf16* fallback) {
  constexpr int kRowStep = mma::kThreads / kChunks;
  static_assert(kRows % kRowStep == 0, "every thread copies the same number of chunks");
  const int first_row = mma::thread_index() / kChunks, chunk = mma::thread_index() % kChunks;
  UNET_UNROLL
  for (int row = first_row; row < kRows; row += kRowStep) {
    const ChunkSource from = source(row, chunk);
    cp_async<16>(chunk_at<kChunks>(slice, row, chunk), from.count > 0 ? from.source : fallback,
                 2 * from.count);
  }
}

// The fragments of one k16 step from a slice: the A tile (m0 .. m0 + 15) or two B tiles (n0 .. n0 + 15).
// K-contiguous slices ([rows][K], kChunks = kTileK / 8) are read as stored; K-major slices
// ([K][cols]) with .trans, whose matrices are 8 k-rows of 8 columns.
template <int kChunks>
__device__ __forceinline__ void a_fragment_k_contiguous(uint32_t (&a)[4], bf16* slice, int m0, int kk) {
  const int lane = mma::thread_index() % 32, j = lane >> 3, r = lane & 7;
  ldmatrix<4, false>(a, chunk_at<kChunks>(slice, m0 + r + (j & 1) * 8, kk / kChunk + (j >> 1)));
}
template <int kChunks>
__device__ __forceinline__ void a_fragment_k_major(uint32_t (&a)[4], bf16* slice, int m0, int kk) {
  const int lane = mma::thread_index() % 32, j = lane >> 3, r = lane & 7;
  ldmatrix<4, true>(a, chunk_at<kChunks>(slice, kk + r + (j >> 1) * 8, m0 / kChunk + (j & 1)));
}
// b: {tile n0's b[0], b[1], tile n0 + 8's b[0], b[1]}.
template <int kChunks>
__device__ __forceinline__ void b_fragments_k_contiguous(uint32_t (&b)[4], bf16* slice, int n0, int kk) {
  const int lane = mma::thread_index() % 32, j = lane >> 3, r = lane & 7;
  ldmatrix<4, false>(b, chunk_at<kChunks>(slice, n0 + r + (j >> 1) * 8, kk / kChunk + (j & 1)));
}
template <int kChunks>
__device__ __forceinline__ void b_fragments_k_major(uint32_t (&b)[4], bf16* slice, int n0, int kk) {
  const int lane = mma::thread_index() % 32, j = lane >> 3, r = lane & 7;
  ldmatrix<4, true>(b, chunk_at<kChunks>(slice, kk + r + (j & 1) * 8, n0 / kChunk + (j >> 1)));
}

// One K-step on a stage: the warp's 64 x 32 tile, two mma k-steps of 16. load_a(a, m0, kk) and
// load_b(b, n0, kk) are the fragment loads above on the stage's slices.
template <class LoadA, class LoadB>
__device__ __forceinline__ void multiply_stage(const LoadA& load_a, const LoadB& load_b, mma::Accumulator& acc) {
  const int warp = mma::thread_index() / 32;
  const int m0 = (warp / 2) * mma::kWarpM, n0 = (warp % 2) * mma::kWarpN;
  UNET_UNROLL
  for (int kk = 0; kk < kTileK; kk += 16) {
    uint32_t a[mma::kWarpM / 16][4], b[mma::kWarpN / 8][2];
    UNET_UNROLL
    for (int mi = 0; mi < mma::kWarpM / 16; ++mi) load_a(a[mi], m0 + mi * 16, kk);
    UNET_UNROLL
    for (int ni = 0; ni < mma::kWarpN / 8; ni += 2) {
      uint32_t pair[4];
      load_b(pair, n0 + ni * 8, kk);
      b[ni][0] = pair[0];
      b[ni][1] = pair[1];
      b[ni + 1][0] = pair[2];
      b[ni + 1][1] = pair[3];
    }
    UNET_UNROLL
    for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
      UNET_UNROLL
      for (int ni = 0; ni < mma::kWarpN / 8; ++ni) mma_bf16_m16n8k16(acc[mi][ni], a[mi], b[ni], acc[mi][ni]);
    }
  }
}

constexpr int kChunksK = kTileK / kChunk;                // a K-contiguous row: 4 chunks
constexpr int kChunksM = mma::kTileM / kChunk;           // a K-major row of an M-wide slice: 16
constexpr int kChunksN = mma::kTileN / kChunk;           // a K-major row of an N-wide slice: 8
constexpr int kSliceM = mma::kTileM * kTileK;            // bf16 in a 128 x 32 slice
constexpr int kSliceN = mma::kTileN * kTileK;            // bf16 in a 64 x 32 slice
constexpr int kStageFloats = (kSliceM + kSliceN) / 2;    // one stage (A, then B), in mma::multiply's floats

__device__ __forceinline__ bf16* slice_a(const float* stage) {
  return reinterpret_cast<bf16*>(const_cast<float*>(stage));
}
__device__ __forceinline__ bf16* slice_b(const float* stage) { return slice_a(stage) + kSliceM; }

}  // namespace bf16_tile

// forward: A = x, K-contiguous; B = W as Cin x 4 Cout, K-major (4 Cout even: rows 16-byte aligned).
struct UpForwardTilesBf16 {
  using Element = float;  // bf16 pairs in float-sized shared memory: bf16_tile's layouts
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = bf16_tile::kStageFloats;
  ConvTranspose2dShape shape;
  const bf16* x;
  int x_stride;
  const bf16* weight;
  int block_pixel, block_column;
  int k0 = 0;  // the K-step: input channels k0 .. k0 + 31

  __device__ int steps() const { return static_cast<int>(ceil_div(shape.c_in, bf16_tile::kTileK)); }
  __device__ void copy(float* stage) const {
    using namespace bf16_tile;
    const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
    const auto a = [&](int row, int chunk) {
      const int pixel = block_pixel + row;
      return row_chunk(pixel < pixels ? x + int64_t{pixel} * x_stride : nullptr, k0 + chunk * kChunk, shape.c_in);
    };
    copy_slice<mma::kTileM, kChunksK>(slice_a(stage), a, x);
    const auto b = [&](int k, int chunk) {
      const bf16* row = k0 + k < shape.c_in ? weight + int64_t{k0 + k} * columns : nullptr;
      return row_chunk(row, block_column + chunk * kChunk, columns);
    };
    copy_slice<bf16_tile::kTileK, kChunksN>(slice_b(stage), b, weight);
  }
  __device__ void advance() { k0 += bf16_tile::kTileK; }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    using namespace bf16_tile;
    multiply_stage(
        [&](uint32_t(&a)[4], int m0, int kk) { a_fragment_k_contiguous<kChunksK>(a, slice_a(stage), m0, kk); },
        [&](uint32_t(&b)[4], int n0, int kk) { b_fragments_k_major<kChunksN>(b, slice_b(stage), n0, kk); }, acc);
  }
};

__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_forward_bf16_kernel3(
    ConvTranspose2dShape shape, const bf16* __restrict__ x, int x_stride, const bf16* __restrict__ weight,
    const float* __restrict__ bias, bf16* __restrict__ y, int y_stride) {
  DYNAMIC_SHARED(float, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_column = blockIdx.y * mma::kTileN;
  UpForwardTilesBf16 tiles{shape, x, x_stride, weight, block_pixel, block_column};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
  UNET_UNROLL
  for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < mma::kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int pixel = block_pixel + mma::accumulator_row(mi, i), n = block_column + mma::accumulator_col(ni, i);
        if (pixel >= pixels || n >= columns) continue;
        const TapColumn column = tap_column(n, shape.c_out);
        const float value = acc[mi][ni][i] + (bias != nullptr ? bias[column.channel] : 0.0f);
        y[tap_output_pixel(pixel, shape.w, column.tap) * y_stride + column.channel] = to_bf16(value);
      }
    }
  }
}

// backward_data: K = (tap, Cout), one tap per K-step; A = dy at the tap's output pixels and B = the
// weight rows W(i, tap, .), both K-contiguous (Cout a multiple of 8: rows 16-byte aligned).
struct UpDataTilesBf16 {
  using Element = float;  // bf16 pairs in float-sized shared memory: bf16_tile's layouts
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = bf16_tile::kStageFloats;
  ConvTranspose2dShape shape;
  const bf16* dy;
  int dy_stride;
  const bf16* weight;
  int block_pixel, block_channel;
  int tap = 0, k0 = 0;  // the K-step: the tap, output channels k0 .. k0 + 31

  __device__ int steps() const { return 4 * static_cast<int>(ceil_div(shape.c_out, bf16_tile::kTileK)); }
  __device__ void copy(float* stage) const {
    using namespace bf16_tile;
    const int pixels = shape.n * shape.h * shape.w;
    const auto a = [&](int row, int chunk) {
      const int pixel = block_pixel + row;
      const bf16* source = pixel < pixels ? dy + tap_output_pixel(pixel, shape.w, tap) * dy_stride : nullptr;
      return row_chunk(source, k0 + chunk * kChunk, shape.c_out);
    };
    copy_slice<mma::kTileM, kChunksK>(slice_a(stage), a, dy);
    const auto b = [&](int row, int chunk) {
      const int i = block_channel + row;
      const bf16* source = i < shape.c_in ? weight + (int64_t{i} * 4 + tap) * shape.c_out : nullptr;
      return row_chunk(source, k0 + chunk * kChunk, shape.c_out);
    };
    copy_slice<mma::kTileN, kChunksK>(slice_b(stage), b, weight);
  }
  __device__ void advance() {
    k0 += bf16_tile::kTileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    ++tap;
  }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    using namespace bf16_tile;
    multiply_stage(
        [&](uint32_t(&a)[4], int m0, int kk) { a_fragment_k_contiguous<kChunksK>(a, slice_a(stage), m0, kk); },
        [&](uint32_t(&b)[4], int n0, int kk) { b_fragments_k_contiguous<kChunksK>(b, slice_b(stage), n0, kk); }, acc);
  }
};

__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_backward_data_bf16_kernel3(
    ConvTranspose2dShape shape, const bf16* __restrict__ dy, int dy_stride, const bf16* __restrict__ weight,
    float beta, bf16* __restrict__ dx, int dx_stride) {
  DYNAMIC_SHARED(float, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  UpDataTilesBf16 tiles{shape, dy, dy_stride, weight, block_pixel, block_channel};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  UNET_UNROLL
  for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < mma::kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int pixel = block_pixel + mma::accumulator_row(mi, i), c = block_channel + mma::accumulator_col(ni, i);
        if (pixel >= pixels || c >= shape.c_in) continue;
        bf16& out = dx[int64_t{pixel} * dx_stride + c];
        // Read, added in fp32, rounded once; beta = 0 overwrites, even NaN.
        out = to_bf16(beta == 0.0f ? acc[mi][ni][i] : beta * to_float(out) + acc[mi][ni][i]);
      }
    }
  }
}

// backward_weight, one chunk of input pixels (blockIdx.z): A = x, K-major (a pixel's 128 channels
// of the block in a row); B = dy at each column's tap, K-major (Cout a multiple of 8: a chunk of 8
// columns never straddles two taps).
struct UpWeightTilesBf16 {
  using Element = float;  // bf16 pairs in float-sized shared memory: bf16_tile's layouts
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = bf16_tile::kStageFloats;
  ConvTranspose2dShape shape;
  const bf16* x;
  int x_stride;
  const bf16* dy;
  int dy_stride;
  int block_channel, block_column;
  int begin, end;  // this chunk's pixels
  int p0 = 0;      // the K-step: pixels begin + p0 .. + 31

  __device__ int steps() const { return static_cast<int>(ceil_div(end - begin, bf16_tile::kTileK)); }
  __device__ void copy(float* stage) const {
    using namespace bf16_tile;
    const auto a = [&](int k, int chunk) {
      const int pixel = begin + p0 + k;
      return row_chunk(pixel < end ? x + int64_t{pixel} * x_stride : nullptr, block_channel + chunk * kChunk,
                       shape.c_in);
    };
    copy_slice<bf16_tile::kTileK, kChunksM>(slice_a(stage), a, x);
    const auto b = [&](int k, int chunk) -> ChunkSource {
      const int pixel = begin + p0 + k, n = block_column + chunk * kChunk;
      if (pixel >= end || n >= 4 * shape.c_out) return {nullptr, 0};
      const TapColumn column = tap_column(n, shape.c_out);
      return {dy + tap_output_pixel(pixel, shape.w, column.tap) * dy_stride + column.channel, kChunk};
    };
    copy_slice<bf16_tile::kTileK, kChunksN>(slice_b(stage), b, dy);
  }
  __device__ void advance() { p0 += bf16_tile::kTileK; }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    using namespace bf16_tile;
    multiply_stage([&](uint32_t(&a)[4], int m0, int kk) { a_fragment_k_major<kChunksM>(a, slice_a(stage), m0, kk); },
                   [&](uint32_t(&b)[4], int n0, int kk) { b_fragments_k_major<kChunksN>(b, slice_b(stage), n0, kk); },
                   acc);
  }
};

// Writes this chunk's partial dW (fp32), laid out as dW: partial[chunk][i][(tap, o)].
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv_transpose2d_backward_weight_bf16_kernel3(
    ConvTranspose2dShape shape, const bf16* __restrict__ x, int x_stride, const bf16* __restrict__ dy,
    int dy_stride, int chunk, float* __restrict__ partial) {
  DYNAMIC_SHARED(float, shared);
  const int pixels = shape.n * shape.h * shape.w, columns = 4 * shape.c_out;
  const int begin = blockIdx.z * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;
  const int block_channel = blockIdx.x * mma::kTileM, block_column = blockIdx.y * mma::kTileN;
  UpWeightTilesBf16 tiles{shape, x, x_stride, dy, dy_stride, block_channel, block_column, begin, end};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  float* out = partial + int64_t{blockIdx.z} * shape.c_in * columns;
  UNET_UNROLL
  for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
    UNET_UNROLL
    for (int ni = 0; ni < mma::kWarpN / 8; ++ni) {
      UNET_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int c = block_channel + mma::accumulator_row(mi, i), n = block_column + mma::accumulator_col(ni, i);
        if (c < shape.c_in && n < columns) out[int64_t{c} * columns + n] = acc[mi][ni][i];
      }
    }
  }
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

// Version 3's dynamic shared memory: its pipeline's stages, within the 48 KiB a kernel may take
// without opting in (allow_dynamic_shared).
template <class Tiles>
constexpr size_t shared_bytes() {
  constexpr size_t bytes = size_t{mma::kStages} * Tiles::kStageElements * sizeof(float);
  static_assert(bytes <= 48 * 1024);
  return bytes;
}

dim3 mma_grid(int64_t m, int64_t n, int64_t z = 1) {
  return dim3(static_cast<unsigned>(ceil_div(m, mma::kTileM)), static_cast<unsigned>(ceil_div(n, mma::kTileN)),
              static_cast<unsigned>(z));
}

// Whether bf16 version 3's 16-byte copies fit: every pointer 16-byte aligned and every count (pixel
// strides, weight row lengths) a multiple of 8 bf16.
bool chunks_fit(std::initializer_list<const void*> pointers, std::initializer_list<int64_t> counts) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  for (int64_t c : counts) {
    if (c % 8 != 0) return false;
  }
  return true;
}

template <bool kVector>
void launch_forward3(const ConvTranspose2dShape& shape, const float* x, int x_stride, const float* weight,
                     const float* bias, float* y, int y_stride, Stream stream) {
  const auto kernel = KERNEL(conv_transpose2d_forward_kernel3<kVector>);
  constexpr size_t bytes = shared_bytes<UpForwardTiles3<kVector>>();
  launch(kernel, mma_grid(pixel_count(shape), 4 * shape.c_out), dim3(mma::kThreads), bytes, stream, shape, x,
         x_stride, weight, bias, y, y_stride);
}

template <bool kVector>
void launch_backward_data3(const ConvTranspose2dShape& shape, const float* dy, int dy_stride, const float* weight,
                           float beta, float* dx, int dx_stride, Stream stream) {
  const auto kernel = KERNEL(conv_transpose2d_backward_data_kernel3<kVector>);
  constexpr size_t bytes = shared_bytes<UpDataTiles3<kVector>>();
  launch(kernel, mma_grid(pixel_count(shape), shape.c_in), dim3(mma::kThreads), bytes, stream, shape, dy, dy_stride,
         weight, beta, dx, dx_stride);
}

// Version 3 splits the pixels as version 2 does (weight_split), so that backward_weight_workspace
// is one size for every version but the first.
template <bool kVector>
void launch_backward_weight3(const ConvTranspose2dShape& shape, const float* x, int x_stride, const float* dy,
                             int dy_stride, float* partial, Stream stream) {
  const auto kernel = KERNEL(conv_transpose2d_backward_weight_kernel3<kVector>);
  constexpr size_t bytes = shared_bytes<UpWeightTiles3<kVector>>();
  const gemm::PixelSplit split = weight_split(shape);
  launch(kernel, mma_grid(shape.c_in, 4 * shape.c_out, split.splits), dim3(mma::kThreads), bytes, stream, shape, x,
         x_stride, dy, dy_stride, static_cast<int>(split.chunk), partial);
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
    auto* run = quads_fit({x, weight}, {shape.c_in, x_stride}) ? &launch_forward3<true> : &launch_forward3<false>;
    run(shape, x, x_stride, weight, bias, y, y_stride, stream);
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
    auto* run = vector_in ? &launch_backward_data3<true> : &launch_backward_data3<false>;
    run(shape, dy, dy_stride, weight, beta, dx, dx_stride, stream);
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
  const gemm::PixelSplit split = weight_split(shape);
  const int64_t splits = split.splits, columns = 4 * int64_t{shape.c_out};
  const int chunk = static_cast<int>(split.chunk);
  auto* partial = static_cast<float*>(workspace);
  const bool vector_in = quads_fit({x, dy}, {shape.c_in, shape.c_out, x_stride, dy_stride});
  if (splits > 0 && version == tensor_core_version) {
    auto* run = vector_in ? &launch_backward_weight3<true> : &launch_backward_weight3<false>;
    run(shape, x, x_stride, dy, dy_stride, partial, stream);
  } else if (splits > 0) {
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

// bf16: version 3 where every row its copies start at is 16-byte aligned (pointers 16-byte aligned,
// pixel strides and the weight rows a multiple of 8 bf16), version 1 otherwise and at version 1.
template <DeviceKind D>
void ConvTranspose2d<D>::forward(const ConvTranspose2dShape& shape, const bf16* x, int x_stride, const bf16* weight,
                                 const float* bias, bf16* y, int y_stride, Stream stream, int version) {
  if (pixel_count(shape) * shape.c_out == 0) return;
  check_shape(shape);
  if (version != 1 && chunks_fit({x, weight}, {x_stride, 4 * shape.c_out})) {
    launch(KERNEL(conv_transpose2d_forward_bf16_kernel3), mma_grid(pixel_count(shape), 4 * shape.c_out),
           dim3(mma::kThreads), shared_bytes<UpForwardTilesBf16>(), stream, shape, x, x_stride, weight, bias, y,
           y_stride);
    return;
  }
  launch_flat(KERNEL(conv_transpose2d_forward_bf16_kernel1), pixel_count(shape) * 4 * shape.c_out, stream, shape, x,
              x_stride, weight, bias, y, y_stride);
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_data(const ConvTranspose2dShape& shape, const bf16* dy, int dy_stride,
                                       const bf16* weight, float beta, bf16* dx, int dx_stride, Stream stream,
                                       int version) {
  if (pixel_count(shape) * shape.c_in == 0) return;
  check_shape(shape);
  if (version != 1 && chunks_fit({dy, weight}, {dy_stride, shape.c_out})) {
    launch(KERNEL(conv_transpose2d_backward_data_bf16_kernel3), mma_grid(pixel_count(shape), shape.c_in),
           dim3(mma::kThreads), shared_bytes<UpDataTilesBf16>(), stream, shape, dy, dy_stride, weight, beta, dx,
           dx_stride);
    return;
  }
  launch_flat(KERNEL(conv_transpose2d_backward_data_bf16_kernel1), pixel_count(shape) * shape.c_in, stream, shape, dy,
              dy_stride, weight, beta, dx, dx_stride);
}

template <DeviceKind D>
void ConvTranspose2d<D>::backward_weight(const ConvTranspose2dShape& shape, const bf16* x, int x_stride,
                                         const bf16* dy, int dy_stride, float beta, float* dweight, void* workspace,
                                         Stream stream, int version) {
  if (weight_count(shape) == 0) return;
  check_shape(shape);
  if (version != 1 && chunks_fit({x, dy}, {x_stride, dy_stride, shape.c_out})) {
    const gemm::PixelSplit split = weight_split(shape);
    auto* partial = static_cast<float*>(workspace);
    if (split.splits > 0) {
      launch(KERNEL(conv_transpose2d_backward_weight_bf16_kernel3), mma_grid(shape.c_in, 4 * shape.c_out, split.splits),
             dim3(mma::kThreads), shared_bytes<UpWeightTilesBf16>(), stream, shape, x, x_stride, dy, dy_stride,
             static_cast<int>(split.chunk), partial);
    }
    ColumnSum<D>::sum_partials(split.splits, weight_count(shape), partial, beta, dweight, stream);
    return;
  }
  launch_flat(KERNEL(conv_transpose2d_backward_weight_bf16_kernel1), weight_count(shape), stream, shape, x, x_stride,
              dy, dy_stride, beta, dweight);
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
