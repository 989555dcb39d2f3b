// conv2d: the CUDA kernels and their launchers (conv2d.h). The maths, the mapping to threads and
// what limits each version: docs/kernels/convolution.md.
//
// Versions (run one alone with: test_kernels_sim "conv2d*", bench_kernels --benchmark_filter=conv2d;
// the launchers take `version`):
//   1  the simplest correct kernels: one thread per output element for forward (a dot product over
//      the k*k*Cin window) and backward_data (over the k*k*Cout window, the taps flipped); one
//      thread per weight element for backward_weight, looping over every pixel (no workspace).
//   2  implicit GEMM on fp32 CUDA cores (kernels/conv_gemm.h): a 128 x 64 or 128 x 128 block tile
//      of 256 threads, each accumulating 8 x 4 or 8 x 8 outputs in registers, K-steps of 8 through
//      double-buffered shared memory, float4 loads and stores where channels, strides and pointers
//      allow. forward: M = pixels, N = Cout, K = (tap, Cin). backward_data: the same GEMM with the
//      weights read transposed and the taps flipped, K = (tap, Cout). backward_weight: M = (tap,
//      Cin), N = Cout, K = pixels, split into fixed chunks, each writing a partial dW into the
//      workspace, then summed in order (column_sum.h): deterministic, no atomics. A small Cout (at
//      most 8, such as the 1x1 output head) has its own forward and backward_weight, one thread per
//      pixel or per weight column reading contiguous channels, since a GEMM tile would be mostly
//      empty.
//   3  implicit GEMM on tensor cores in TF32 (kernels/conv_mma.h): the same GEMMs as version 2, a
//      128 x 64 block tile of 4 warps on mma.sync m16n8k8, K-steps of 16 through a 3-stage
//      cp.async pipeline, operands rounded with cvt.rna as they leave shared memory (fp32
//      storage); forward fuses bias and ReLU, the gradients the ReLU mask (copied beside g,
//      applied as it leaves shared memory); backward_weight splits the pixels into fixed chunks
//      and sums their partials in order, like version 2. Compared with cpu::conv2d_*_tf32, not
//      with the fp32 reference. Not the default: version 0 stays version 2.
// backward_bias has one version: the deterministic two-pass column sum shared with
// conv_transpose2d (column_sum.h), masked by the ReLU's output.
#include "kernels/conv2d.h"

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdint>

#include "kernels/column_sum.h"
#include "kernels/dialect.h"
#include "kernels/conv_gemm.h"
#include "kernels/conv_mma.h"
#include "kernels/rounding.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels: version 1

__device__ __forceinline__ bool inside_image(const Conv2dShape& shape, int h, int w) {
  return h >= 0 && h < shape.h && w >= 0 && w < shape.w;
}

// Version 1 runs on fp32 or bf16 tensors (T): values are widened as they are read and a bf16
// output rounded once, as it is written; every sum is fp32.
__device__ __forceinline__ float widen(float value) { return value; }
__device__ __forceinline__ float widen(bf16 value) { return to_float(value); }
__device__ __forceinline__ void store(float& out, float value) { out = value; }
__device__ __forceinline__ void store(bf16& out, float value) { out = to_bf16(value); }

// g = dy, or dy where the fused ReLU's output is positive.
template <class T>
__device__ __forceinline__ float output_gradient(const T* dy, int dy_stride, const T* relu_output,
                                                 int relu_output_stride, int64_t pixel, int o) {
  const float g = widen(dy[pixel * dy_stride + o]);
  return relu_output == nullptr || widen(relu_output[pixel * relu_output_stride + o]) > 0.0f ? g : 0.0f;
}

template <class T>
__global__ void conv2d_forward_kernel1(Conv2dShape shape, const T* __restrict__ x, int x_stride,
                                       const T* __restrict__ weight, const float* __restrict__ bias, bool relu,
                                       T* __restrict__ y, int y_stride) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.n} * shape.h * shape.w * shape.c_out) return;
  const int64_t p = index / shape.c_out;
  const int o = static_cast<int>(index % shape.c_out);
  const int h = static_cast<int>(p / shape.w % shape.h), w = static_cast<int>(p % shape.w), pad = shape.k / 2;
  float sum = bias == nullptr ? 0.0f : bias[o];
  for (int r = 0; r < shape.k; ++r) {
    for (int s = 0; s < shape.k; ++s) {
      if (!inside_image(shape, h + r - pad, w + s - pad)) continue;
      const T* in = x + (p + (r - pad) * shape.w + (s - pad)) * x_stride;
      const T* wt = weight + ((int64_t{o} * shape.k + r) * shape.k + s) * shape.c_in;
      for (int i = 0; i < shape.c_in; ++i) sum += widen(in[i]) * widen(wt[i]);
    }
  }
  store(y[p * y_stride + o], relu ? fmaxf(sum, 0.0f) : sum);
}

template <class T>
__global__ void conv2d_backward_data_kernel1(Conv2dShape shape, const T* __restrict__ dy, int dy_stride,
                                             const T* __restrict__ relu_output, int relu_output_stride,
                                             const T* __restrict__ weight, float beta, T* __restrict__ dx,
                                             int dx_stride) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (index >= int64_t{shape.n} * shape.h * shape.w * shape.c_in) return;
  const int64_t p = index / shape.c_in;
  const int i = static_cast<int>(index % shape.c_in);
  const int h = static_cast<int>(p / shape.w % shape.h), w = static_cast<int>(p % shape.w), pad = shape.k / 2;
  float sum = 0.0f;
  // Output pixel p + (pad - r, pad - s) saw this input pixel through tap (r, s).
  for (int r = 0; r < shape.k; ++r) {
    for (int s = 0; s < shape.k; ++s) {
      if (!inside_image(shape, h + pad - r, w + pad - s)) continue;
      const int64_t source = p + (pad - r) * shape.w + (pad - s);
      for (int o = 0; o < shape.c_out; ++o) {
        const float g = output_gradient(dy, dy_stride, relu_output, relu_output_stride, source, o);
        sum += g * widen(weight[((int64_t{o} * shape.k + r) * shape.k + s) * shape.c_in + i]);
      }
    }
  }
  T& out = dx[p * dx_stride + i];
  store(out, beta == 0.0f ? sum : beta * widen(out) + sum);  // beta = 0 overwrites, even NaN
}

template <class T>
__global__ void conv2d_backward_weight_kernel1(Conv2dShape shape, const T* __restrict__ x, int x_stride,
                                               const T* __restrict__ dy, int dy_stride,
                                               const T* __restrict__ relu_output, int relu_output_stride,
                                               float beta, float* __restrict__ dweight) {
  const int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int window = shape.k * shape.k * shape.c_in;
  if (index >= int64_t{shape.c_out} * window) return;
  const int o = static_cast<int>(index / window);
  const int tap = static_cast<int>(index % window) / shape.c_in, i = static_cast<int>(index % shape.c_in);
  const int pad = shape.k / 2, dr = tap / shape.k - pad, ds = tap % shape.k - pad;
  float sum = 0.0f;
  // The pixels whose shifted pixel (h + dr, w + ds) lies inside the image.
  for (int n = 0; n < shape.n; ++n) {
    for (int h = max(0, -dr); h < min(shape.h, shape.h - dr); ++h) {
      for (int w = max(0, -ds); w < min(shape.w, shape.w - ds); ++w) {
        const int64_t p = (int64_t{n} * shape.h + h) * shape.w + w;
        const float g = output_gradient(dy, dy_stride, relu_output, relu_output_stride, p, o);
        sum += g * widen(x[(p + dr * shape.w + ds) * x_stride + i]);
      }
    }
  }
  float& out = dweight[index];
  out = beta == 0.0f ? sum : beta * out + sum;
}

// The bf16 bias gradient's first pass: as column_sum's chunk kernel (column_sum.cu), on bf16 g and
// mask. A block of 32 x 8 threads owns 32 channels of one chunk of pixels; thread (c, lane) adds
// pixels lane, lane + 8, ... in order, the 8 lanes' sums are added in order through shared memory
// and written as partial[chunk][o]. ColumnSum::sum_partials then adds the chunks in order.
constexpr int kBiasColumns = 32;
constexpr int kBiasLanes = 8;

__global__ void conv2d_backward_bias_chunk_kernel(int64_t pixels, int c_out, int64_t chunk, const bf16* __restrict__ dy,
                                                  int dy_stride, const bf16* __restrict__ relu_output,
                                                  int relu_output_stride, float* __restrict__ partial) {
  __shared__ float lane_sums[kBiasLanes][kBiasColumns];
  const int o = blockIdx.x * kBiasColumns + threadIdx.x;
  const int64_t begin = blockIdx.y * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;
  float sum = 0.0f;
  if (o < c_out) {
    for (int64_t p = begin + threadIdx.y; p < end; p += kBiasLanes) {
      sum += output_gradient(dy, dy_stride, relu_output, relu_output_stride, p, o);
    }
  }
  lane_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || o >= c_out) return;
  float total = 0.0f;
  for (int lane = 0; lane < kBiasLanes; ++lane) total += lane_sums[lane][threadIdx.x];
  partial[blockIdx.y * int64_t{c_out} + o] = total;
}

// ---------------------------------------------------------------------------------------------
// kernels: version 2, implicit GEMM (kernels/conv_gemm.h)

using gemm::kTileK;
using gemm::kTileM;

// forward: A (pixels x (tap, Cin)) is x at each pixel shifted by the tap, zero outside the image;
// B^T (Cout x (tap, Cin)) is the OHWI weights, one row per output channel.
template <int BN, bool kVector>
struct ForwardTiles {
  Conv2dShape shape;
  const float* x;
  int x_stride;
  gemm::RowGather<kTileM, kVector> a;
  gemm::RowGather<BN, kVector> b;
  int pixel, h, w;           // the pixel of the A row this thread gathers
  const float* weight_row;   // the output channel of the B row it gathers, or null
  int r = 0, s = 0, k0 = 0;  // the K-step: tap (r, s), channels k0 .. k0 + 7

  __device__ ForwardTiles(const Conv2dShape& shape_, const float* x_, int x_stride_, const float* weight)
      : shape(shape_), x(x_), x_stride(x_stride_) {
    pixel = blockIdx.x * kTileM + a.row;
    h = pixel / shape.w % shape.h;
    w = pixel % shape.w;
    const int o = blockIdx.y * BN + b.row;
    weight_row = o < shape.c_out ? weight + int64_t{o} * shape.k * shape.k * shape.c_in : nullptr;
  }
  __device__ int steps() const { return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_in, kTileK)); }
  __device__ void load() {
    const int dr = r - shape.k / 2, ds = s - shape.k / 2;
    const bool inside = pixel < shape.n * shape.h * shape.w && inside_image(shape, h + dr, w + ds);
    a.load(inside ? x + int64_t{pixel + dr * shape.w + ds} * x_stride : nullptr, nullptr, k0, shape.c_in);
    b.load(weight_row ? weight_row + (r * shape.k + s) * shape.c_in : nullptr, nullptr, k0, shape.c_in);
  }
  __device__ void advance() {
    k0 += kTileK;
    if (k0 < shape.c_in) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
  template <int kLdA, int kLdB>
  __device__ void store(float (*as)[kLdA], float (*bs)[kLdB]) const {
    a.store(as);
    b.store(bs);
  }
};

// backward_data: A (pixels x (tap, Cout)) is g at the output pixel that saw this pixel through the
// tap, (pad - r, pad - s) away; B ((tap, Cout) x Cin) is the weights, rows W(o, r, s, .).
template <int BN, bool kVector>
struct DataTiles {
  Conv2dShape shape;
  const float* dy;
  int dy_stride;
  const float* relu_output;
  int relu_output_stride;
  const float* weight;
  gemm::RowGather<kTileM, kVector> a;
  gemm::ColumnGather<BN, kVector> b;
  int pixel, h, w;
  int r = 0, s = 0, k0 = 0;  // tap (r, s), output channels k0 .. k0 + 7

  __device__ DataTiles(const Conv2dShape& shape_, const float* dy_, int dy_stride_, const float* relu_output_,
                       int relu_output_stride_, const float* weight_)
      : shape(shape_),
        dy(dy_),
        dy_stride(dy_stride_),
        relu_output(relu_output_),
        relu_output_stride(relu_output_stride_),
        weight(weight_) {
    pixel = blockIdx.x * kTileM + a.row;
    h = pixel / shape.w % shape.h;
    w = pixel % shape.w;
  }
  __device__ int steps() const { return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_out, kTileK)); }
  __device__ void load() {
    const int dr = shape.k / 2 - r, ds = shape.k / 2 - s;
    const bool inside = pixel < shape.n * shape.h * shape.w && inside_image(shape, h + dr, w + ds);
    const int64_t source = pixel + dr * shape.w + ds;
    a.load(inside ? dy + source * dy_stride : nullptr,
           inside && relu_output ? relu_output + source * relu_output_stride : nullptr, k0, shape.c_out);
    const int o = k0 + b.k;
    const int64_t row = (int64_t{o} * shape.k * shape.k + r * shape.k + s) * shape.c_in;
    b.load(o < shape.c_out ? weight + row : nullptr, nullptr, blockIdx.y * BN, shape.c_in);
  }
  __device__ void advance() {
    k0 += kTileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
  template <int kLdA, int kLdB>
  __device__ void store(float (*as)[kLdA], float (*bs)[kLdB]) const {
    a.store(as);
    b.store(bs);
  }
};

// backward_weight, one chunk of pixels (blockIdx.z): A ((tap, Cin) x pixels, stored K-major) is x at
// each pixel shifted by the row's tap; B (pixels x Cout) is g. Thread t gathers A's pixel t / 32
// and rows (t % 32) * 4 + {0..3}, whose (tap, channel) are fixed for the whole loop; with kVector
// (Cin a multiple of 4) the four share one tap and are a float4.
template <int BN, bool kVector>
struct WeightTiles {
  Conv2dShape shape;
  const float* x;
  int x_stride;
  const float* dy;
  int dy_stride;
  const float* relu_output;
  int relu_output_stride;
  gemm::ColumnGather<BN, kVector> b;
  int a_k, a_col;  // the A elements this thread gathers: pixel a_k of each step, rows a_col + {0..3}
  int dr[4], ds[4], channel[4];
  bool row_valid[4];
  int end;  // this chunk's end
  int step_count;
  int a_pixel, h, w;  // pixel a_k of the current step, and its row and column
  int b_pixel;        // pixel b.k of the current step
  float4 a_values;

  __device__ WeightTiles(const Conv2dShape& shape_, const float* x_, int x_stride_, const float* dy_, int dy_stride_,
                         const float* relu_output_, int relu_output_stride_, int chunk)
      : shape(shape_),
        x(x_),
        x_stride(x_stride_),
        dy(dy_),
        dy_stride(dy_stride_),
        relu_output(relu_output_),
        relu_output_stride(relu_output_stride_) {
    a_k = gemm::thread_index() / 32;
    a_col = gemm::thread_index() % 32 * 4;
    const int window = shape.k * shape.k * shape.c_in;
    UNET_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int m = blockIdx.x * kTileM + a_col + j;
      const int tap = m / shape.c_in;
      row_valid[j] = m < window;
      dr[j] = tap / shape.k - shape.k / 2;
      ds[j] = tap % shape.k - shape.k / 2;
      channel[j] = m % shape.c_in;
    }
    const int pixels = shape.n * shape.h * shape.w;
    const int begin = blockIdx.z * chunk;
    end = pixels < begin + chunk ? pixels : begin + chunk;
    step_count = static_cast<int>(ceil_div(end - begin, kTileK));
    a_pixel = begin + a_k;
    h = a_pixel / shape.w % shape.h;
    w = a_pixel % shape.w;
    b_pixel = begin + b.k;
    a_values = gemm::zero4();
  }
  __device__ int steps() const { return step_count; }
  __device__ bool gathers(int j) const {
    return a_pixel < end && row_valid[j] && inside_image(shape, h + dr[j], w + ds[j]);
  }
  __device__ const float* source(int j) const {
    return x + int64_t{a_pixel + dr[j] * shape.w + ds[j]} * x_stride + channel[j];
  }
  __device__ void load() {
    if (kVector) {
      a_values = gathers(0) ? *reinterpret_cast<const float4*>(source(0)) : gemm::zero4();
    } else {
      UNET_UNROLL
      for (int j = 0; j < 4; ++j) gemm::set_element(a_values, j, gathers(j) ? *source(j) : 0.0f);
    }
    const bool pixel_valid = b_pixel < end;
    b.load(pixel_valid ? dy + int64_t{b_pixel} * dy_stride : nullptr,
           pixel_valid && relu_output ? relu_output + int64_t{b_pixel} * relu_output_stride : nullptr,
           blockIdx.y * BN, shape.c_out);
  }
  __device__ void advance() {
    a_pixel += kTileK;
    b_pixel += kTileK;
    for (w += kTileK; w >= shape.w; w -= shape.w) {
      if (++h == shape.h) h = 0;
    }
  }
  template <int kLdA, int kLdB>
  __device__ void store(float (*as)[kLdA], float (*bs)[kLdB]) const {
    *reinterpret_cast<float4*>(&as[a_k][a_col]) = a_values;
    b.store(bs);
  }
};

template <int BN, bool kVector>
__global__ __launch_bounds__(gemm::kThreads, 2) void conv2d_forward_kernel2(
    Conv2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ weight,
    const float* __restrict__ bias, bool relu, float* __restrict__ y, int y_stride, bool vector_out) {
  ForwardTiles<BN, kVector> tiles(shape, x, x_stride, weight);
  gemm::Accumulator<BN> acc;
  gemm::multiply<BN>(tiles, acc);

  const int pixels = shape.n * shape.h * shape.w;
  UNET_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int pixel = blockIdx.x * kTileM + gemm::micro_row(i);
    if (pixel >= pixels) continue;
    UNET_UNROLL
    for (int half = 0; half < gemm::micro_cols<BN> / 4; ++half) {
      const int o = blockIdx.y * BN + gemm::micro_col(4 * half);
      float4 v = gemm::micro_quad<BN>(acc, i, half);
      UNET_UNROLL
      for (int j = 0; j < 4; ++j) {
        float value = gemm::element(v, j) + (bias != nullptr && o + j < shape.c_out ? bias[o + j] : 0.0f);
        gemm::set_element(v, j, relu ? fmaxf(value, 0.0f) : value);
      }
      gemm::update4(y + int64_t{pixel} * y_stride, o, shape.c_out, v, 0.0f, vector_out);
    }
  }
}

template <int BN, bool kVector>
__global__ __launch_bounds__(gemm::kThreads, 2) void conv2d_backward_data_kernel2(
    Conv2dShape shape, const float* __restrict__ dy, int dy_stride, const float* __restrict__ relu_output,
    int relu_output_stride, const float* __restrict__ weight, float beta, float* __restrict__ dx, int dx_stride,
    bool vector_out) {
  DataTiles<BN, kVector> tiles(shape, dy, dy_stride, relu_output, relu_output_stride, weight);
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

// Writes this chunk's partial dW, laid out as dW: partial[chunk][o][(tap, i)].
template <int BN, bool kVector>
__global__ __launch_bounds__(gemm::kThreads, 2) void conv2d_backward_weight_kernel2(
    Conv2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ dy, int dy_stride,
    const float* __restrict__ relu_output, int relu_output_stride, int chunk, float* __restrict__ partial) {
  WeightTiles<BN, kVector> tiles(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, chunk);
  gemm::Accumulator<BN> acc;
  gemm::multiply<BN>(tiles, acc);

  const int window = shape.k * shape.k * shape.c_in;
  float* out = partial + int64_t{blockIdx.z} * shape.c_out * window;
  UNET_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int m = blockIdx.x * kTileM + gemm::micro_row(i);
    if (m >= window) continue;
    UNET_UNROLL
    for (int j = 0; j < gemm::micro_cols<BN>; ++j) {
      const int o = blockIdx.y * BN + gemm::micro_col(j);
      if (o < shape.c_out) out[int64_t{o} * window + m] = acc[i][j];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// kernels: version 2, few output channels (Cout <= kThinOutputs, e.g. the 1x1 head)

constexpr int kThinOutputs = 8;

// One thread per pixel computes all (at most kMaxOut) outputs, reading each tap's Cin contiguous
// values once (float4s with kVector); every thread of a warp reads the same weights (a broadcast).
template <int kMaxOut, bool kVector>
__global__ void conv2d_forward_thin_kernel2(Conv2dShape shape, const float* __restrict__ x, int x_stride,
                                            const float* __restrict__ weight, const float* __restrict__ bias,
                                            bool relu, float* __restrict__ y, int y_stride) {
  const int pixel = blockIdx.x * blockDim.x + threadIdx.x;
  if (pixel >= shape.n * shape.h * shape.w) return;
  const int h = pixel / shape.w % shape.h, w = pixel % shape.w, pad = shape.k / 2;
  const int window = shape.k * shape.k * shape.c_in;
  float acc[kMaxOut];
  UNET_UNROLL
  for (int o = 0; o < kMaxOut; ++o) acc[o] = bias != nullptr && o < shape.c_out ? bias[o] : 0.0f;
  for (int r = 0; r < shape.k; ++r) {
    for (int s = 0; s < shape.k; ++s) {
      if (!inside_image(shape, h + r - pad, w + s - pad)) continue;
      const float* in = x + int64_t{pixel + (r - pad) * shape.w + (s - pad)} * x_stride;
      const float* wt = weight + (r * shape.k + s) * shape.c_in;
      for (int i = 0; i < shape.c_in; i += kVector ? 4 : 1) {
        if (kVector) {
          const float4 v = *reinterpret_cast<const float4*>(in + i);
          UNET_UNROLL
          for (int o = 0; o < kMaxOut; ++o) {
            if (o >= shape.c_out) break;
            const float4 u = __ldg(reinterpret_cast<const float4*>(wt + int64_t{o} * window + i));
            acc[o] += v.x * u.x + v.y * u.y + v.z * u.z + v.w * u.w;
          }
        } else {
          const float v = in[i];
          UNET_UNROLL
          for (int o = 0; o < kMaxOut; ++o) {
            if (o >= shape.c_out) break;
            acc[o] += v * __ldg(wt + int64_t{o} * window + i);
          }
        }
      }
    }
  }
  UNET_UNROLL
  for (int o = 0; o < kMaxOut; ++o) {
    if (o < shape.c_out) y[int64_t{pixel} * y_stride + o] = relu ? fmaxf(acc[o], 0.0f) : acc[o];
  }
}

constexpr int kThinColumns = 64;  // weight columns (tap, channel) per block
constexpr int kThinLanes = 4;     // pixel lanes per column

// One chunk of pixels (blockIdx.y) and 64 weight columns (tap, i) per block: thread (lane, column)
// adds pixels lane, lane + 4, ... of the chunk for every output channel. A warp reads 32
// consecutive channels of one pixel (coalesced) and the same g (a broadcast); the lanes' sums
// are then added in order through shared memory into partial[chunk][o][(tap, i)].
template <int kMaxOut>
__global__ void conv2d_backward_weight_thin_kernel2(Conv2dShape shape, const float* __restrict__ x, int x_stride,
                                                    const float* __restrict__ dy, int dy_stride,
                                                    const float* __restrict__ relu_output, int relu_output_stride,
                                                    int chunk, float* __restrict__ partial) {
  __shared__ float lane_sums[kThinLanes][kMaxOut][kThinColumns];
  const int window = shape.k * shape.k * shape.c_in;
  const int local = gemm::thread_index() % kThinColumns, lane = gemm::thread_index() / kThinColumns;
  const int column = blockIdx.x * kThinColumns + local;
  const int tap = column / shape.c_in, i = column % shape.c_in;
  const int dr = tap / shape.k - shape.k / 2, ds = tap % shape.k - shape.k / 2;
  const int pixels = shape.n * shape.h * shape.w;
  const int begin = blockIdx.y * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;

  float acc[kMaxOut];
  UNET_UNROLL
  for (int o = 0; o < kMaxOut; ++o) acc[o] = 0.0f;
  int pixel = begin + lane, h = pixel / shape.w % shape.h, w = pixel % shape.w;
  for (; pixel < end; pixel += kThinLanes) {
    if (column < window && inside_image(shape, h + dr, w + ds)) {
      const float v = x[int64_t{pixel + dr * shape.w + ds} * x_stride + i];
      UNET_UNROLL
      for (int o = 0; o < kMaxOut; ++o) {
        if (o >= shape.c_out) break;
        acc[o] += output_gradient(dy, dy_stride, relu_output, relu_output_stride, pixel, o) * v;
      }
    }
    for (w += kThinLanes; w >= shape.w; w -= shape.w) {
      if (++h == shape.h) h = 0;
    }
  }
  UNET_UNROLL
  for (int o = 0; o < kMaxOut; ++o) lane_sums[lane][o][local] = acc[o];
  __syncthreads();
  if (lane != 0 || column >= window) return;
  for (int o = 0; o < shape.c_out; ++o) {
    float total = 0.0f;
    for (int l = 0; l < kThinLanes; ++l) total += lane_sums[l][o][local];
    partial[(int64_t{blockIdx.y} * shape.c_out + o) * window + column] = total;
  }
}

// ---------------------------------------------------------------------------------------------
// kernels: version 3, implicit GEMM on tensor cores in TF32 (kernels/conv_mma.h)

// forward: A row = the pixel's channels k0 .. k0 + 15 at the tap's shifted pixel (null outside the
// image), B row = the output channel's weights of the tap, the same channels.
template <bool kVector>
struct ForwardTiles3 {
  using Element = float;
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = (mma::kTileM + mma::kTileN) * mma::kRowFloats;  // A, then B
  Conv2dShape shape;
  const float* x;
  int x_stride;
  const float* weight;
  int block_pixel, block_channel;
  int r = 0, s = 0, k0 = 0;  // the K-step: tap (r, s), channels k0 .. k0 + 15

  __device__ int steps() const {
    return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_in, mma::kTileK));
  }
  __device__ void copy(float* stage) const {
    float* a = stage;
    float* b = stage + mma::kTileM * mma::kRowFloats;
    const int dr = r - shape.k / 2, ds = s - shape.k / 2;
    const int pixels = shape.n * shape.h * shape.w;
    const auto a_row = [&](int row) -> const float* {
      const int pixel = block_pixel + row;
      if (pixel >= pixels || !inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return nullptr;
      return x + int64_t{pixel + dr * shape.w + ds} * x_stride;
    };
    mma::copy_slice<mma::kTileM, mma::kTileK, mma::kRowFloats, kVector>(a, a_row, x, k0, shape.c_in);
    const int window = shape.k * shape.k * shape.c_in, tap = (r * shape.k + s) * shape.c_in;
    const auto b_row = [&](int row) -> const float* {
      const int o = block_channel + row;
      return o < shape.c_out ? weight + int64_t{o} * window + tap : nullptr;
    };
    mma::copy_slice<mma::kTileN, mma::kTileK, mma::kRowFloats, kVector>(b, b_row, weight, k0, shape.c_in);
  }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    const float* b = stage + mma::kTileM * mma::kRowFloats;
    mma::multiply_stage([&](int m, int k) { return mma::k_contiguous(stage, m, k); },
                        [&](int n, int k) { return mma::k_contiguous(b, n, k); }, acc);
  }
  __device__ void advance() {
    k0 += mma::kTileK;
    if (k0 < shape.c_in) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
};

template <bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_forward_kernel3(
    Conv2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ weight,
    const float* __restrict__ bias, bool relu, float* __restrict__ y, int y_stride) {
  DYNAMIC_SHARED(float, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  ForwardTiles3<kVector> tiles{shape, x, x_stride, weight, block_pixel, block_channel};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  mma::for_each_accumulator(acc, [&](int row, int col, float sum) {
    const int pixel = block_pixel + row, o = block_channel + col;
    if (pixel >= pixels || o >= shape.c_out) return;
    const float value = sum + (bias != nullptr ? bias[o] : 0.0f);
    y[int64_t{pixel} * y_stride + o] = relu ? fmaxf(value, 0.0f) : value;
  });
}

// backward_data: A row = g at the output pixel that saw this pixel through the tap, (pad - r,
// pad - s) away, output channels k0 .. k0 + 15 (K-contiguous); with kMasked the ReLU's output at
// the same place, applied as A leaves shared memory; B = W(o, t, .), one K-major row per output
// channel o, the block's 64 input channels contiguous.
template <bool kVector, bool kMasked>
struct DataTiles3 {
  static constexpr int kSliceA = mma::kTileM * mma::kRowFloats;
  static constexpr int kSliceB = mma::kTileK * mma::kColumnFloats;
  using Element = float;
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = kSliceA + kSliceB + (kMasked ? kSliceA : 0);  // A, B, then the mask
  Conv2dShape shape;
  const float* dy;
  int dy_stride;
  const float* relu_output;
  int relu_output_stride;
  const float* weight;
  int block_pixel, block_channel;
  int r = 0, s = 0, k0 = 0;  // the K-step: tap (r, s), output channels k0 .. k0 + 15

  __device__ int steps() const {
    return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_out, mma::kTileK));
  }
  // The flat index of the output pixel whose gradient row `row` of A reads, or -1 (padding).
  __device__ int64_t source_pixel(int row) const {
    const int pixel = block_pixel + row, dr = shape.k / 2 - r, ds = shape.k / 2 - s;
    if (pixel >= shape.n * shape.h * shape.w) return -1;
    if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return -1;
    return pixel + dr * shape.w + ds;
  }
  __device__ void copy(float* stage) const {
    const auto a_row = [&](int row) -> const float* {
      const int64_t source = source_pixel(row);
      return source < 0 ? nullptr : dy + source * dy_stride;
    };
    mma::copy_slice<mma::kTileM, mma::kTileK, mma::kRowFloats, kVector>(stage, a_row, dy, k0, shape.c_out);
    if constexpr (kMasked) {
      const auto mask_row = [&](int row) -> const float* {
        const int64_t source = source_pixel(row);
        return source < 0 ? nullptr : relu_output + source * relu_output_stride;
      };
      mma::copy_slice<mma::kTileM, mma::kTileK, mma::kRowFloats, kVector>(stage + kSliceA + kSliceB, mask_row,
                                                                          relu_output, k0, shape.c_out);
    }
    const auto b_row = [&](int k) -> const float* {
      const int o = k0 + k;
      return o < shape.c_out ? weight + (int64_t{o} * shape.k * shape.k + r * shape.k + s) * shape.c_in : nullptr;
    };
    mma::copy_slice<mma::kTileK, mma::kTileN, mma::kColumnFloats, kVector>(stage + kSliceA, b_row, weight,
                                                                            block_channel, shape.c_in);
  }
  __device__ void advance() {
    k0 += mma::kTileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    const float* b = stage + kSliceA;
    const float* mask = stage + kSliceA + kSliceB;
    const auto a = [&](int m, int k) {
      const float g = mma::k_contiguous(stage, m, k);
      return !kMasked || mma::k_contiguous(mask, m, k) > 0.0f ? g : 0.0f;
    };
    mma::multiply_stage(a, [&](int n, int k) { return mma::k_major<mma::kColumnFloats>(b, n, k); }, acc);
  }
};

template <bool kVector, bool kMasked>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_backward_data_kernel3(
    Conv2dShape shape, const float* __restrict__ dy, int dy_stride, const float* __restrict__ relu_output,
    int relu_output_stride, const float* __restrict__ weight, float beta, float* __restrict__ dx, int dx_stride) {
  DYNAMIC_SHARED(float, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  DataTiles3<kVector, kMasked> tiles{shape, dy, dy_stride, relu_output, relu_output_stride, weight, block_pixel,
                                     block_channel};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  mma::for_each_accumulator(acc, [&](int row, int col, float sum) {
    const int pixel = block_pixel + row, c = block_channel + col;
    if (pixel >= pixels || c >= shape.c_in) return;
    float& out = dx[int64_t{pixel} * dx_stride + c];
    out = beta == 0.0f ? sum : beta * out + sum;  // beta = 0 overwrites, even NaN
  });
}

// backward_weight, one chunk of pixels (blockIdx.z): A ((tap, Cin) x pixels) is x at each pixel
// shifted by the row's tap, stored K-major (a pixel's 128 (tap, i) values in a row; with kVector
// Cin is a multiple of 4, so a 4-float chunk never straddles two taps); B (pixels x Cout) is g,
// K-major, with the ReLU's output beside it when kMasked.
template <bool kVector, bool kMasked>
struct WeightTiles3 {
  static constexpr int kSliceA = mma::kTileK * mma::kWideColumnFloats;
  static constexpr int kSliceB = mma::kTileK * mma::kColumnFloats;
  using Element = float;
  static constexpr int kStages = mma::kStages;
  static constexpr int kStageElements = kSliceA + kSliceB + (kMasked ? kSliceB : 0);  // A, B, then the mask
  Conv2dShape shape;
  const float* x;
  int x_stride;
  const float* dy;
  int dy_stride;
  const float* relu_output;
  int relu_output_stride;
  int block_row, block_channel;  // the tile's first (tap, i) row of dW and first output channel
  int begin, end;                // this chunk's pixels
  int p0 = 0;                    // the K-step: pixels begin + p0 .. + 15

  __device__ int steps() const { return static_cast<int>(ceil_div(end - begin, mma::kTileK)); }
  __device__ void copy(float* stage) const {
    const int window = shape.k * shape.k * shape.c_in;
    const auto a_chunk = [&](int k, int col) -> const float* {
      const int pixel = begin + p0 + k, m = block_row + col;
      if (pixel >= end || m >= window) return nullptr;
      const int tap = m / shape.c_in, dr = tap / shape.k - shape.k / 2, ds = tap % shape.k - shape.k / 2;
      if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return nullptr;
      return x + int64_t{pixel + dr * shape.w + ds} * x_stride + m % shape.c_in;
    };
    mma::copy_chunks<mma::kTileK, mma::kTileM, mma::kWideColumnFloats, kVector>(stage, a_chunk, x);
    const auto g_row = [&](int k) -> const float* {
      return begin + p0 + k < end ? dy + int64_t{begin + p0 + k} * dy_stride : nullptr;
    };
    mma::copy_slice<mma::kTileK, mma::kTileN, mma::kColumnFloats, kVector>(stage + kSliceA, g_row, dy,
                                                                            block_channel, shape.c_out);
    if constexpr (kMasked) {
      const auto mask_row = [&](int k) -> const float* {
        return begin + p0 + k < end ? relu_output + int64_t{begin + p0 + k} * relu_output_stride : nullptr;
      };
      mma::copy_slice<mma::kTileK, mma::kTileN, mma::kColumnFloats, kVector>(stage + kSliceA + kSliceB, mask_row,
                                                                              relu_output, block_channel, shape.c_out);
    }
  }
  __device__ void advance() { p0 += mma::kTileK; }
  __device__ void multiply(const float* stage, mma::Accumulator& acc) const {
    const float* b = stage + kSliceA;
    const float* mask = stage + kSliceA + kSliceB;
    const auto g = [&](int n, int k) {
      const float value = mma::k_major<mma::kColumnFloats>(b, n, k);
      return !kMasked || mma::k_major<mma::kColumnFloats>(mask, n, k) > 0.0f ? value : 0.0f;
    };
    mma::multiply_stage([&](int m, int k) { return mma::k_major<mma::kWideColumnFloats>(stage, m, k); }, g, acc);
  }
};

// Writes this chunk's partial dW, laid out as dW: partial[chunk][o][(tap, i)].
template <bool kVector, bool kMasked>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_backward_weight_kernel3(
    Conv2dShape shape, const float* __restrict__ x, int x_stride, const float* __restrict__ dy, int dy_stride,
    const float* __restrict__ relu_output, int relu_output_stride, int chunk, float* __restrict__ partial) {
  DYNAMIC_SHARED(float, shared);
  const int pixels = shape.n * shape.h * shape.w, window = shape.k * shape.k * shape.c_in;
  const int begin = blockIdx.z * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;
  const int block_row = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  WeightTiles3<kVector, kMasked> tiles{shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride,
                                       block_row, block_channel, begin, end};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  float* out = partial + int64_t{blockIdx.z} * shape.c_out * window;
  mma::for_each_accumulator(acc, [&](int row, int col, float sum) {
    const int m = block_row + row, o = block_channel + col;
    if (m < window && o < shape.c_out) out[int64_t{o} * window + m] = sum;
  });
}

// ---------------------------------------------------------------------------------------------
// kernels: version 3 in bf16 (kernels/conv_mma.h, "bf16"): the GEMMs of the TF32 version 3, on
// bf16 tensors through swizzled stages, ldmatrix and mma.sync m16n8k16. The first template
// argument (always bf16) names the element type, so that the bf16 kernels stand apart from the
// TF32 ones in the SASS; kVector picks 16-byte cp.async copies or gathers through registers.

// The pipeline's depth: 4 stages where the slices are small, 3 where the ReLU mask doubles the
// gradient's slice (so that each kernel keeps its blocks per SM: scripts/check_sass.py).
constexpr int bf16_stages(bool masked) { return masked ? 3 : 4; }

// forward: A = x at the tap's shifted pixel, K-contiguous [128 pixels][32 channels]; B = the
// weights of the tap, K-contiguous [64 output channels][32 channels]. No .trans.
template <bool kVector>
struct ForwardTilesBf16 {
  using Element = bf16;
  static constexpr int kStages = bf16_stages(false);
  static constexpr int kSliceA = mma::kTileM * mma::kBf16TileK;
  static constexpr int kStageElements = kSliceA + mma::kTileN * mma::kBf16TileK;  // A, then B
  Conv2dShape shape;
  const bf16* x;
  int x_stride;
  const bf16* weight;
  int block_pixel, block_channel;
  int r = 0, s = 0, k0 = 0;  // the K-step: tap (r, s), channels k0 .. k0 + 31

  __device__ int steps() const {
    return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_in, mma::kBf16TileK));
  }
  __device__ void copy(bf16* stage) const {
    const int dr = r - shape.k / 2, ds = s - shape.k / 2;
    const int pixels = shape.n * shape.h * shape.w;
    const auto a = [&](int row, int col) -> const bf16* {
      const int pixel = block_pixel + row;
      if (pixel >= pixels || k0 + col >= shape.c_in) return nullptr;
      if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return nullptr;
      return x + int64_t{pixel + dr * shape.w + ds} * x_stride + k0 + col;
    };
    mma::copy_bf16_slice<mma::kTileM, mma::kBf16TileK, kVector>(stage, mma::k_contiguous_offset, a, x);
    const int window = shape.k * shape.k * shape.c_in, tap = (r * shape.k + s) * shape.c_in;
    const auto b = [&](int row, int col) -> const bf16* {
      const int o = block_channel + row;
      return o < shape.c_out && k0 + col < shape.c_in ? weight + int64_t{o} * window + tap + k0 + col : nullptr;
    };
    mma::copy_bf16_slice<mma::kTileN, mma::kBf16TileK, kVector>(stage + kSliceA, mma::k_contiguous_offset, b, weight);
  }
  __device__ void advance() {
    k0 += mma::kBf16TileK;
    if (k0 < shape.c_in) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
  __device__ void multiply(const bf16* stage, mma::Accumulator& acc) const {
    UNET_UNROLL
    for (int kk = 0; kk < mma::kBf16TileK; kk += 16) {
      mma::Bf16Fragments f;
      mma::load_a_k_contiguous(stage, kk, f.a);
      mma::load_b_k_contiguous(stage + kSliceA, kk, f.b);
      mma::multiply_fragments(f, acc);
    }
  }
};

// Fused epilogue: bias, ReLU, one rounding to bf16.
template <class Element, bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_forward_kernel3(
    Conv2dShape shape, const Element* __restrict__ x, int x_stride, const Element* __restrict__ weight,
    const float* __restrict__ bias, bool relu, Element* __restrict__ y, int y_stride) {
  static_assert(sizeof(Element) == 2, "the bf16 version 3");
  DYNAMIC_SHARED(bf16, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  ForwardTilesBf16<kVector> tiles{shape, x, x_stride, weight, block_pixel, block_channel};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  mma::for_each_accumulator(acc, [&](int row, int col, float sum) {
    const int pixel = block_pixel + row, o = block_channel + col;
    if (pixel >= pixels || o >= shape.c_out) return;
    const float value = sum + (bias != nullptr ? bias[o] : 0.0f);
    y[int64_t{pixel} * y_stride + o] = to_bf16(relu ? fmaxf(value, 0.0f) : value);
  });
}

// backward_data: A = g at the output pixel that saw this pixel through the tap, K-contiguous
// [128 pixels][32 output channels], the ReLU's output beside it with kMasked (applied to the A
// fragments); B = W(o, tap, .), K-major [32 output channels][64 input channels]: .trans.
template <bool kVector, bool kMasked>
struct DataTilesBf16 {
  using Element = bf16;
  static constexpr int kStages = bf16_stages(kMasked);
  static constexpr int kSliceA = mma::kTileM * mma::kBf16TileK;
  static constexpr int kSliceB = mma::kBf16TileK * mma::kTileN;
  static constexpr int kStageElements = kSliceA + kSliceB + (kMasked ? kSliceA : 0);  // A, B, then the mask
  Conv2dShape shape;
  const bf16* dy;
  int dy_stride;
  const bf16* relu_output;
  int relu_output_stride;
  const bf16* weight;
  int block_pixel, block_channel;
  int r = 0, s = 0, k0 = 0;  // the K-step: tap (r, s), output channels k0 .. k0 + 31

  __device__ int steps() const {
    return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_out, mma::kBf16TileK));
  }
  // The output pixel whose gradient row `row` of A reads, or -1 (padding).
  __device__ int64_t source_pixel(int row) const {
    const int pixel = block_pixel + row, dr = shape.k / 2 - r, ds = shape.k / 2 - s;
    if (pixel >= shape.n * shape.h * shape.w) return -1;
    if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return -1;
    return pixel + dr * shape.w + ds;
  }
  __device__ void copy(bf16* stage) const {
    const auto a = [&](const bf16* tensor, int stride) {
      return [=, this](int row, int col) -> const bf16* {
        const int64_t source = source_pixel(row);
        return source < 0 || k0 + col >= shape.c_out ? nullptr : tensor + source * stride + k0 + col;
      };
    };
    mma::copy_bf16_slice<mma::kTileM, mma::kBf16TileK, kVector>(stage, mma::k_contiguous_offset, a(dy, dy_stride), dy);
    if constexpr (kMasked) {
      mma::copy_bf16_slice<mma::kTileM, mma::kBf16TileK, kVector>(stage + kSliceA + kSliceB, mma::k_contiguous_offset,
                                                                  a(relu_output, relu_output_stride), relu_output);
    }
    const auto b = [&](int k, int col) -> const bf16* {
      const int o = k0 + k, i = block_channel + col;
      if (o >= shape.c_out || i >= shape.c_in) return nullptr;
      return weight + (int64_t{o} * shape.k * shape.k + r * shape.k + s) * shape.c_in + i;
    };
    mma::copy_bf16_slice<mma::kBf16TileK, mma::kTileN, kVector>(stage + kSliceA, mma::k_major_offset<mma::kTileN>, b,
                                                                weight);
  }
  __device__ void advance() {
    k0 += mma::kBf16TileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
  __device__ void multiply(const bf16* stage, mma::Accumulator& acc) const {
    UNET_UNROLL
    for (int kk = 0; kk < mma::kBf16TileK; kk += 16) {
      mma::Bf16Fragments f;
      mma::load_a_k_contiguous(stage, kk, f.a);
      if constexpr (kMasked) {
        uint32_t mask[mma::kWarpM / 16][4];
        mma::load_a_k_contiguous(stage + kSliceA + kSliceB, kk, mask);
        UNET_UNROLL
        for (int mi = 0; mi < mma::kWarpM / 16; ++mi) {
          UNET_UNROLL
          for (int i = 0; i < 4; ++i) f.a[mi][i] = mma::mask_pair(f.a[mi][i], mask[mi][i]);
        }
      }
      mma::load_b_k_major(stage + kSliceA, kk, f.b);
      mma::multiply_fragments(f, acc);
    }
  }
};

// Fused epilogue: dx = bf16(beta dx + sum), the prior read as bf16 and the sum added in fp32.
template <class Element, bool kVector, bool kMasked>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_backward_data_kernel3(
    Conv2dShape shape, const Element* __restrict__ dy, int dy_stride, const Element* __restrict__ relu_output,
    int relu_output_stride, const Element* __restrict__ weight, float beta, Element* __restrict__ dx, int dx_stride) {
  static_assert(sizeof(Element) == 2, "the bf16 version 3");
  DYNAMIC_SHARED(bf16, shared);
  const int block_pixel = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  DataTilesBf16<kVector, kMasked> tiles{shape, dy, dy_stride, relu_output, relu_output_stride, weight, block_pixel,
                                        block_channel};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  mma::for_each_accumulator(acc, [&](int row, int col, float sum) {
    const int pixel = block_pixel + row, c = block_channel + col;
    if (pixel >= pixels || c >= shape.c_in) return;
    bf16& out = dx[int64_t{pixel} * dx_stride + c];
    out = to_bf16(beta == 0.0f ? sum : beta * to_float(out) + sum);  // beta = 0 overwrites, even NaN
  });
}

// backward_weight, one chunk of pixels (blockIdx.z): A ((tap, Cin) x pixels) = x at each pixel
// shifted by the row's tap, K-major [32 pixels][128 (tap, i)] (with kVector, Cin a multiple of 8,
// so a chunk of 8 never straddles two taps); B = g, K-major [32 pixels][64 output channels], the
// ReLU's output beside it with kMasked (applied to the B fragments). Both .trans.
template <bool kVector, bool kMasked>
struct WeightTilesBf16 {
  using Element = bf16;
  static constexpr int kStages = bf16_stages(kMasked);
  static constexpr int kSliceA = mma::kBf16TileK * mma::kTileM;
  static constexpr int kSliceB = mma::kBf16TileK * mma::kTileN;
  static constexpr int kStageElements = kSliceA + kSliceB + (kMasked ? kSliceB : 0);  // A, B, then the mask
  Conv2dShape shape;
  const bf16* x;
  int x_stride;
  const bf16* dy;
  int dy_stride;
  const bf16* relu_output;
  int relu_output_stride;
  int block_row, block_channel;  // the tile's first (tap, i) row of dW and first output channel
  int begin, end;                // this chunk's pixels
  int p0 = 0;                    // the K-step: pixels begin + p0 .. + 31

  __device__ int steps() const { return static_cast<int>(ceil_div(end - begin, mma::kBf16TileK)); }
  __device__ void copy(bf16* stage) const {
    const int window = shape.k * shape.k * shape.c_in;
    const auto a = [&](int k, int col) -> const bf16* {
      const int pixel = begin + p0 + k, m = block_row + col;
      if (pixel >= end || m >= window) return nullptr;
      const int tap = m / shape.c_in, dr = tap / shape.k - shape.k / 2, ds = tap % shape.k - shape.k / 2;
      if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return nullptr;
      return x + int64_t{pixel + dr * shape.w + ds} * x_stride + m % shape.c_in;
    };
    mma::copy_bf16_slice<mma::kBf16TileK, mma::kTileM, kVector>(stage, mma::k_major_offset<mma::kTileM>, a, x);
    const auto b = [&](const bf16* tensor, int stride) {
      return [=, this](int k, int col) -> const bf16* {
        const int pixel = begin + p0 + k, o = block_channel + col;
        return pixel < end && o < shape.c_out ? tensor + int64_t{pixel} * stride + o : nullptr;
      };
    };
    mma::copy_bf16_slice<mma::kBf16TileK, mma::kTileN, kVector>(stage + kSliceA, mma::k_major_offset<mma::kTileN>,
                                                                b(dy, dy_stride), dy);
    if constexpr (kMasked) {
      mma::copy_bf16_slice<mma::kBf16TileK, mma::kTileN, kVector>(
          stage + kSliceA + kSliceB, mma::k_major_offset<mma::kTileN>, b(relu_output, relu_output_stride), relu_output);
    }
  }
  __device__ void advance() { p0 += mma::kBf16TileK; }
  __device__ void multiply(const bf16* stage, mma::Accumulator& acc) const {
    UNET_UNROLL
    for (int kk = 0; kk < mma::kBf16TileK; kk += 16) {
      mma::Bf16Fragments f;
      mma::load_a_k_major(stage, kk, f.a);
      mma::load_b_k_major(stage + kSliceA, kk, f.b);
      if constexpr (kMasked) {
        uint32_t mask[mma::kWarpN / 8][2];
        mma::load_b_k_major(stage + kSliceA + kSliceB, kk, mask);
        UNET_UNROLL
        for (int ni = 0; ni < mma::kWarpN / 8; ++ni) {
          UNET_UNROLL
          for (int i = 0; i < 2; ++i) f.b[ni][i] = mma::mask_pair(f.b[ni][i], mask[ni][i]);
        }
      }
      mma::multiply_fragments(f, acc);
    }
  }
};

// Writes this chunk's partial dW (fp32), laid out as dW: partial[chunk][o][(tap, i)].
template <class Element, bool kVector, bool kMasked>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_backward_weight_kernel3(
    Conv2dShape shape, const Element* __restrict__ x, int x_stride, const Element* __restrict__ dy, int dy_stride,
    const Element* __restrict__ relu_output, int relu_output_stride, int chunk, float* __restrict__ partial) {
  static_assert(sizeof(Element) == 2, "the bf16 version 3");
  DYNAMIC_SHARED(bf16, shared);
  const int pixels = shape.n * shape.h * shape.w, window = shape.k * shape.k * shape.c_in;
  const int begin = blockIdx.z * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;
  const int block_row = blockIdx.x * mma::kTileM, block_channel = blockIdx.y * mma::kTileN;
  WeightTilesBf16<kVector, kMasked> tiles{shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride,
                                          block_row, block_channel, begin, end};
  mma::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  float* out = partial + int64_t{blockIdx.z} * shape.c_out * window;
  mma::for_each_accumulator(acc, [&](int row, int col, float sum) {
    const int m = block_row + row, o = block_channel + col;
    if (m < window && o < shape.c_out) out[int64_t{o} * window + m] = sum;
  });
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

namespace {

int64_t pixel_count(const Conv2dShape& shape) { return int64_t{shape.n} * shape.h * shape.w; }
int64_t window(const Conv2dShape& shape) { return int64_t{shape.k} * shape.k * shape.c_in; }

// Version 2 indexes pixels and weights with int: 2^31 of either is far beyond any tensor that fits
// in a GPU's memory. (Asserted, not thrown: the kernel libraries define no exception types.)
void check_shape([[maybe_unused]] const Conv2dShape& shape) {
  assert(pixel_count(shape) <= INT_MAX && int64_t{shape.c_out} * window(shape) <= INT_MAX);
}

// Version 3's dynamic shared memory: its pipeline's stages.
template <class Tiles>
constexpr size_t shared_bytes() {
  return size_t{Tiles::kStages} * Tiles::kStageElements * sizeof(typename Tiles::Element);
}

dim3 mma_grid(int64_t m, int64_t n) {
  return dim3(static_cast<unsigned>(ceil_div(m, mma::kTileM)), static_cast<unsigned>(ceil_div(n, mma::kTileN)));
}

template <bool kVector, bool kMasked>
void launch_backward_data3(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                           int relu_output_stride, const float* weight, float beta, float* dx, int dx_stride,
                           Stream stream) {
  const auto kernel = KERNEL(conv2d_backward_data_kernel3<kVector, kMasked>);
  constexpr size_t bytes = shared_bytes<DataTiles3<kVector, kMasked>>();
  allow_dynamic_shared(kernel, bytes);
  launch(kernel, mma_grid(pixel_count(shape), shape.c_in), dim3(mma::kThreads), bytes, stream, shape, dy, dy_stride,
         relu_output, relu_output_stride, weight, beta, dx, dx_stride);
}

// How version 3 splits a weight gradient's pixels: enough chunks to fill the GPU (as version 2).
gemm::PixelSplit weight_split3(const Conv2dShape& shape) {
  const int64_t tiles = ceil_div(window(shape), mma::kTileM) * ceil_div(shape.c_out, mma::kTileN);
  return gemm::split_pixels(pixel_count(shape), tiles);
}

template <bool kVector, bool kMasked>
void launch_backward_weight3(const Conv2dShape& shape, const float* x, int x_stride, const float* dy,
                             int dy_stride, const float* relu_output, int relu_output_stride, float* partial,
                             Stream stream) {
  const auto kernel = KERNEL(conv2d_backward_weight_kernel3<kVector, kMasked>);
  constexpr size_t bytes = shared_bytes<WeightTiles3<kVector, kMasked>>();
  allow_dynamic_shared(kernel, bytes);
  const gemm::PixelSplit split = weight_split3(shape);
  const dim3 grid(static_cast<unsigned>(ceil_div(window(shape), mma::kTileM)),
                  static_cast<unsigned>(ceil_div(shape.c_out, mma::kTileN)), static_cast<unsigned>(split.splits));
  launch(kernel, grid, dim3(mma::kThreads), bytes, stream, shape, x, x_stride, dy, dy_stride, relu_output,
         relu_output_stride, static_cast<int>(split.chunk), partial);
}

dim3 gemm_grid(int64_t m, int64_t n, int bn, int64_t z = 1) {
  return dim3(static_cast<unsigned>(ceil_div(m, gemm::kTileM)), static_cast<unsigned>(ceil_div(n, bn)),
              static_cast<unsigned>(z));
}

// How version 2 computes a weight gradient: which kernel, and how it splits the pixels.
struct WeightPlan {
  bool thin;
  int bn;
  gemm::PixelSplit split;
};

WeightPlan weight_plan(const Conv2dShape& shape) {
  const int64_t pixels = pixel_count(shape);
  if (shape.c_out <= kThinOutputs) {
    return {true, 0, gemm::split_pixels(pixels, ceil_div(window(shape), kThinColumns))};
  }
  const int bn = shape.c_out <= 64 ? 64 : 128;
  const int64_t tiles = ceil_div(window(shape), gemm::kTileM) * ceil_div(shape.c_out, bn);
  return {false, bn, gemm::split_pixels(pixels, tiles)};
}

}  // namespace

template <DeviceKind D>
void Conv2d<D>::forward(const Conv2dShape& shape, const float* x, int x_stride, const float* weight,
                        const float* bias, bool relu, float* y, int y_stride, Stream stream, int version) {
  if (pixel_count(shape) * shape.c_out == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv2d_forward_kernel1<float>), pixel_count(shape) * shape.c_out, stream, shape, x, x_stride, weight,
                bias, relu, y, y_stride);
    return;
  }
  if (version == tensor_core_version) {
    const dim3 grid = mma_grid(pixel_count(shape), shape.c_out);
    if (quads_fit({x, weight}, {shape.c_in, x_stride})) {
      launch(KERNEL(conv2d_forward_kernel3<true>), grid, dim3(mma::kThreads), shared_bytes<ForwardTiles3<true>>(),
             stream, shape, x, x_stride, weight, bias, relu, y, y_stride);
    } else {
      launch(KERNEL(conv2d_forward_kernel3<false>), grid, dim3(mma::kThreads), shared_bytes<ForwardTiles3<false>>(),
             stream, shape, x, x_stride, weight, bias, relu, y, y_stride);
    }
    return;
  }
  const bool vector_in = quads_fit({x, weight}, {shape.c_in, x_stride});
  if (shape.c_out <= kThinOutputs) {
    const dim3 grid = blocks_for(pixel_count(shape), 128);
    if (shape.c_out == 1 && vector_in) {
      launch(KERNEL(conv2d_forward_thin_kernel2<1, true>), grid, dim3(128), 0, stream, shape, x, x_stride, weight,
             bias, relu, y, y_stride);
    } else if (shape.c_out == 1) {
      launch(KERNEL(conv2d_forward_thin_kernel2<1, false>), grid, dim3(128), 0, stream, shape, x, x_stride, weight,
             bias, relu, y, y_stride);
    } else if (vector_in) {
      launch(KERNEL(conv2d_forward_thin_kernel2<kThinOutputs, true>), grid, dim3(128), 0, stream, shape, x, x_stride,
             weight, bias, relu, y, y_stride);
    } else {
      launch(KERNEL(conv2d_forward_thin_kernel2<kThinOutputs, false>), grid, dim3(128), 0, stream, shape, x,
             x_stride, weight, bias, relu, y, y_stride);
    }
    return;
  }
  const bool vector_out = quads_fit({y}, {shape.c_out, y_stride});
  gemm::with_tile(shape.c_out <= 64 ? 64 : 128, vector_in, [&]<int BN, bool kVector>() {
    launch(KERNEL(conv2d_forward_kernel2<BN, kVector>), gemm_grid(pixel_count(shape), shape.c_out, BN),
           dim3(gemm::kThreads), 0, stream, shape, x, x_stride, weight, bias, relu, y, y_stride, vector_out);
  });
}

template <DeviceKind D>
void Conv2d<D>::backward_data(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                              int relu_output_stride, const float* weight, float beta, float* dx, int dx_stride,
                              Stream stream, int version) {
  if (pixel_count(shape) * shape.c_in == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv2d_backward_data_kernel1<float>), pixel_count(shape) * shape.c_in, stream, shape, dy, dy_stride,
                relu_output, relu_output_stride, weight, beta, dx, dx_stride);
    return;
  }
  const bool vector_in = quads_fit({dy, weight}, {shape.c_out, shape.c_in, dy_stride}) &&
                         (relu_output == nullptr || quads_fit({relu_output}, {relu_output_stride}));
  if (version == tensor_core_version) {
    const bool masked = relu_output != nullptr;
    auto* run = vector_in ? (masked ? &launch_backward_data3<true, true> : &launch_backward_data3<true, false>)
                          : (masked ? &launch_backward_data3<false, true> : &launch_backward_data3<false, false>);
    run(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride, stream);
    return;
  }
  const bool vector_out = quads_fit({dx}, {shape.c_in, dx_stride});
  gemm::with_tile(shape.c_in <= 64 ? 64 : 128, vector_in, [&]<int BN, bool kVector>() {
    launch(KERNEL(conv2d_backward_data_kernel2<BN, kVector>), gemm_grid(pixel_count(shape), shape.c_in, BN),
           dim3(gemm::kThreads), 0, stream, shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx,
           dx_stride, vector_out);
  });
}

template <DeviceKind D>
size_t Conv2d<D>::backward_weight_workspace(const Conv2dShape& shape, int version) {
  if (version == 1) return 0;
  if (version == tensor_core_version) {
    return static_cast<size_t>(weight_split3(shape).splits * shape.c_out * window(shape)) * sizeof(float);
  }
  return static_cast<size_t>(weight_plan(shape).split.splits * shape.c_out * window(shape)) * sizeof(float);
}

template <DeviceKind D>
void Conv2d<D>::backward_weight(const Conv2dShape& shape, const float* x, int x_stride, const float* dy,
                                int dy_stride, const float* relu_output, int relu_output_stride, float beta,
                                float* dweight, void* workspace, Stream stream, int version) {
  const int64_t weights = shape.c_out * window(shape);
  if (weights == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv2d_backward_weight_kernel1<float>), weights, stream, shape, x, x_stride, dy, dy_stride, relu_output,
                relu_output_stride, beta, dweight);
    return;
  }
  auto* partial = static_cast<float*>(workspace);
  if (version == tensor_core_version) {
    const bool vector_in = quads_fit({x, dy}, {shape.c_in, shape.c_out, x_stride, dy_stride}) &&
                           (relu_output == nullptr || quads_fit({relu_output}, {relu_output_stride}));
    const bool masked = relu_output != nullptr;
    auto* run = vector_in ? (masked ? &launch_backward_weight3<true, true> : &launch_backward_weight3<true, false>)
                          : (masked ? &launch_backward_weight3<false, true> : &launch_backward_weight3<false, false>);
    const int64_t splits = weight_split3(shape).splits;
    if (splits > 0) run(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, partial, stream);
    ColumnSum<D>::sum_partials(splits, weights, partial, beta, dweight, stream);
    return;
  }
  const WeightPlan plan = weight_plan(shape);
  if (plan.split.splits > 0) {
    const int chunk = static_cast<int>(plan.split.chunk);
    const int64_t splits = plan.split.splits;
    if (plan.thin) {
      const dim3 grid(static_cast<unsigned>(ceil_div(window(shape), kThinColumns)),
                      static_cast<unsigned>(splits));
      if (shape.c_out == 1) {
        launch(KERNEL(conv2d_backward_weight_thin_kernel2<1>), grid, dim3(gemm::kThreads), 0, stream, shape, x,
               x_stride, dy, dy_stride, relu_output, relu_output_stride, chunk, partial);
      } else {
        launch(KERNEL(conv2d_backward_weight_thin_kernel2<kThinOutputs>), grid, dim3(gemm::kThreads), 0, stream,
               shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, chunk, partial);
      }
    } else {
      const bool vector_in = quads_fit({x, dy}, {shape.c_in, shape.c_out, x_stride, dy_stride}) &&
                             (relu_output == nullptr || quads_fit({relu_output}, {relu_output_stride}));
      gemm::with_tile(plan.bn, vector_in, [&]<int BN, bool kVector>() {
        launch(KERNEL(conv2d_backward_weight_kernel2<BN, kVector>),
               gemm_grid(window(shape), shape.c_out, BN, splits), dim3(gemm::kThreads), 0, stream, shape,
               x, x_stride, dy, dy_stride, relu_output, relu_output_stride, chunk, partial);
      });
    }
  }
  ColumnSum<D>::sum_partials(plan.split.splits, weights, partial, beta, dweight, stream);
}

template <DeviceKind D>
size_t Conv2d<D>::backward_bias_workspace(const Conv2dShape& shape) {
  return ColumnSum<D>::workspace(pixel_count(shape), shape.c_out);
}

template <DeviceKind D>
void Conv2d<D>::backward_bias(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                              int relu_output_stride, float beta, float* dbias, void* workspace, Stream stream) {
  ColumnSum<D>::sum(pixel_count(shape), shape.c_out, dy, dy_stride, relu_output, relu_output_stride, beta, dbias,
                    workspace, stream);
}

// bf16: version 1, or version 3 (the default); backward_bias has one version.
namespace {

// Whether the bf16 version 3 may copy 16 bytes at once: every pointer 16-byte aligned and every
// count (channels, pixel strides) a multiple of 8 bf16.
bool octets_fit(std::initializer_list<const void*> pointers, std::initializer_list<int64_t> counts) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  for (int64_t c : counts) {
    if (c % 8 != 0) return false;
  }
  return true;
}

bool mask_octets_fit(const bf16* relu_output, int relu_output_stride) {
  return relu_output == nullptr || octets_fit({relu_output}, {relu_output_stride});
}

template <bool kVector, bool kMasked>
void launch_backward_data_bf16(const Conv2dShape& shape, const bf16* dy, int dy_stride, const bf16* relu_output,
                               int relu_output_stride, const bf16* weight, float beta, bf16* dx, int dx_stride,
                               Stream stream) {
  const auto kernel = KERNEL(conv2d_backward_data_kernel3<bf16, kVector, kMasked>);
  constexpr size_t bytes = shared_bytes<DataTilesBf16<kVector, kMasked>>();
  allow_dynamic_shared(kernel, bytes);
  launch(kernel, mma_grid(pixel_count(shape), shape.c_in), dim3(mma::kThreads), bytes, stream, shape, dy, dy_stride,
         relu_output, relu_output_stride, weight, beta, dx, dx_stride);
}

template <bool kVector, bool kMasked>
void launch_backward_weight_bf16(const Conv2dShape& shape, const bf16* x, int x_stride, const bf16* dy,
                                 int dy_stride, const bf16* relu_output, int relu_output_stride, float* partial,
                                 Stream stream) {
  const auto kernel = KERNEL(conv2d_backward_weight_kernel3<bf16, kVector, kMasked>);
  constexpr size_t bytes = shared_bytes<WeightTilesBf16<kVector, kMasked>>();
  allow_dynamic_shared(kernel, bytes);
  const gemm::PixelSplit split = weight_split3(shape);
  const dim3 grid(static_cast<unsigned>(ceil_div(window(shape), mma::kTileM)),
                  static_cast<unsigned>(ceil_div(shape.c_out, mma::kTileN)), static_cast<unsigned>(split.splits));
  launch(kernel, grid, dim3(mma::kThreads), bytes, stream, shape, x, x_stride, dy, dy_stride, relu_output,
         relu_output_stride, static_cast<int>(split.chunk), partial);
}

}  // namespace

template <DeviceKind D>
void Conv2d<D>::forward(const Conv2dShape& shape, const bf16* x, int x_stride, const bf16* weight, const float* bias,
                        bool relu, bf16* y, int y_stride, Stream stream, int version) {
  if (pixel_count(shape) * shape.c_out == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv2d_forward_kernel1<bf16>), pixel_count(shape) * shape.c_out, stream, shape, x, x_stride,
                weight, bias, relu, y, y_stride);
    return;
  }
  const dim3 grid = mma_grid(pixel_count(shape), shape.c_out);
  if (octets_fit({x, weight}, {shape.c_in, x_stride})) {
    launch(KERNEL(conv2d_forward_kernel3<bf16, true>), grid, dim3(mma::kThreads),
           shared_bytes<ForwardTilesBf16<true>>(), stream, shape, x, x_stride, weight, bias, relu, y, y_stride);
  } else {
    launch(KERNEL(conv2d_forward_kernel3<bf16, false>), grid, dim3(mma::kThreads),
           shared_bytes<ForwardTilesBf16<false>>(), stream, shape, x, x_stride, weight, bias, relu, y, y_stride);
  }
}

template <DeviceKind D>
void Conv2d<D>::backward_data(const Conv2dShape& shape, const bf16* dy, int dy_stride, const bf16* relu_output,
                              int relu_output_stride, const bf16* weight, float beta, bf16* dx, int dx_stride,
                              Stream stream, int version) {
  if (pixel_count(shape) * shape.c_in == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv2d_backward_data_kernel1<bf16>), pixel_count(shape) * shape.c_in, stream, shape, dy,
                dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride);
    return;
  }
  const bool vector_in = octets_fit({dy, weight}, {shape.c_out, shape.c_in, dy_stride}) &&
                         mask_octets_fit(relu_output, relu_output_stride);
  const bool masked = relu_output != nullptr;
  auto* run = vector_in ? (masked ? &launch_backward_data_bf16<true, true> : &launch_backward_data_bf16<true, false>)
                        : (masked ? &launch_backward_data_bf16<false, true> : &launch_backward_data_bf16<false, false>);
  run(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride, stream);
}

template <DeviceKind D>
size_t Conv2d<D>::backward_weight_workspace(const Conv2dShape& shape, bf16, int version) {
  if (version == 1) return 0;
  return static_cast<size_t>(weight_split3(shape).splits * shape.c_out * window(shape)) * sizeof(float);
}

template <DeviceKind D>
void Conv2d<D>::backward_weight(const Conv2dShape& shape, const bf16* x, int x_stride, const bf16* dy, int dy_stride,
                                const bf16* relu_output, int relu_output_stride, float beta, float* dweight,
                                void* workspace, Stream stream, int version) {
  const int64_t weights = shape.c_out * window(shape);
  if (weights == 0) return;
  check_shape(shape);
  if (version == 1) {
    launch_flat(KERNEL(conv2d_backward_weight_kernel1<bf16>), weights, stream, shape, x, x_stride, dy, dy_stride,
                relu_output, relu_output_stride, beta, dweight);
    return;
  }
  const bool vector_in = octets_fit({x, dy}, {shape.c_in, shape.c_out, x_stride, dy_stride}) &&
                         mask_octets_fit(relu_output, relu_output_stride);
  const bool masked = relu_output != nullptr;
  auto* run = vector_in
                  ? (masked ? &launch_backward_weight_bf16<true, true> : &launch_backward_weight_bf16<true, false>)
                  : (masked ? &launch_backward_weight_bf16<false, true> : &launch_backward_weight_bf16<false, false>);
  auto* partial = static_cast<float*>(workspace);
  const int64_t splits = weight_split3(shape).splits;
  if (splits > 0) run(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, partial, stream);
  ColumnSum<D>::sum_partials(splits, weights, partial, beta, dweight, stream);
}

namespace {
// Pixels per chunk of the bf16 bias gradient: column_sum's rule (at least 256, at most about 512
// chunks), a function of the shape alone so that the order of the additions never changes.
int64_t bias_chunk(int64_t pixels) { return std::max<int64_t>(256, ceil_div(pixels, 512)); }
}  // namespace

template <DeviceKind D>
size_t Conv2d<D>::backward_bias_workspace(const Conv2dShape& shape, bf16) {
  return static_cast<size_t>(ceil_div(pixel_count(shape), bias_chunk(pixel_count(shape))) * shape.c_out) *
         sizeof(float);
}

template <DeviceKind D>
void Conv2d<D>::backward_bias(const Conv2dShape& shape, const bf16* dy, int dy_stride, const bf16* relu_output,
                              int relu_output_stride, float beta, float* dbias, void* workspace, Stream stream) {
  if (shape.c_out == 0) return;
  const int64_t pixels = pixel_count(shape), chunk = bias_chunk(pixels), chunks = ceil_div(pixels, chunk);
  auto* partial = static_cast<float*>(workspace);
  if (chunks > 0) {
    const dim3 grid(static_cast<unsigned>(ceil_div(shape.c_out, kBiasColumns)), static_cast<unsigned>(chunks));
    launch(KERNEL(conv2d_backward_bias_chunk_kernel), grid, dim3(kBiasColumns, kBiasLanes), 0, stream, pixels,
           shape.c_out, chunk, dy, dy_stride, relu_output, relu_output_stride, partial);
  }
  ColumnSum<D>::sum_partials(chunks, shape.c_out, partial, beta, dbias, stream);
}

template struct Conv2d<KERNEL_DEVICE>;

}  // namespace unet
