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
//   3  implicit GEMM on tensor cores (kernels/conv_mma.h): the same GEMMs as version 2, one set of
//      tiles per pass for both elements (conv2d_<pass>_kernel3<float | bf16, BlockTile, ...>): a
//      128 x 64 block tile of 4 warps, a multistage cp.async pipeline, forward fusing bias and
//      ReLU, the gradients the ReLU mask (copied beside g, applied to its fragments),
//      backward_weight splitting the pixels into fixed chunks whose partials are summed in order,
//      like version 2. What differs by element is conv_mma.h's Format:
//      float: TF32 mma.sync m16n8k8, K-steps of 16 through 3 stages of padded slices, operands
//        rounded with cvt.rna as they leave shared memory (fp32 storage). Compared with
//        cpu::conv2d_*_tf32, not with the fp32 reference. Not the default: version 0 stays 2.
//      bf16 (the bf16 overloads, where version 0 is version 3): mma.sync m16n8k16 with fp32
//        accumulators, K-steps of 32 through 4 stages (3 with the ReLU mask) of XOR-swizzled
//        slices, fragments loaded with ldmatrix.x4 (.trans where K runs down a slice's rows:
//        backward_data's weights, both backward_weight operands); forward rounds once to bf16,
//        backward_data applies beta on a bf16 dx, backward_weight writes fp32 partials.
//        Compared with cpu::conv2d_*_bf16.
//      Channel counts, strides or offsets that rule out 16-byte copies (the 3-channel first layer,
//      the 1-channel head's gradient, odd channel slices) take the kVector = false instantiation:
//      the same tiles copied element by element (kernels/conv_mma.h says how and why).
// bf16 also has version 1 (the loops above on widened bf16 values, fp32 sums, one rounding).
// backward_bias has one version: the deterministic two-pass column sum shared with
// conv_transpose2d (column_sum.h), masked by the ReLU's output; in bf16 its first pass is
// conv2d_backward_bias_chunk_kernel, reading bf16, and its second the same sum_partials.
#include "kernels/conv2d.h"

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdint>
#include <utility>

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
using mma::store;  // (kernels/conv_mma.h)
using mma::widen;

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
// kernels: version 3, implicit GEMM on tensor cores (kernels/conv_mma.h), one set of tiles for
// both elements: Element float (fp32 tensors, TF32 mma, cvt.rna as operands leave shared memory)
// or bf16 (bf16 tensors, ldmatrix, bf16 mma). The first template argument names the element, so
// that the TF32 and bf16 kernels stand apart in the SASS; Block is the block tile; kVector picks
// 16-byte cp.async copies or element-by-element ones (conv_mma.h, "Copies").

// forward: A row = the pixel's channels k0 .. k0 + K - 1 at the tap's shifted pixel (null outside
// the image), B row = the output channel's weights of the tap, the same channels. Both
// K-contiguous.
template <class T, class TileShape, bool kVector>
struct ForwardTiles3 {
  using Element = T;
  using Block = TileShape;
  using SliceA = mma::Slice<Element, mma::Layout::k_contiguous, Block::kM>;
  using SliceB = mma::Slice<Element, mma::Layout::k_contiguous, Block::kN>;
  static constexpr int kTileK = mma::Format<Element>::kTileK;
  static constexpr int kStages = mma::Format<Element>::stages(false);
  static constexpr int kStageElements = SliceA::kElements + SliceB::kElements;  // A, then B
  Conv2dShape shape;
  const Element* x;
  int x_stride;
  const Element* weight;
  int block_pixel, block_channel;
  int r = 0, s = 0, k0 = 0;  // the K-step: tap (r, s), channels k0 .. k0 + kTileK - 1

  __device__ int steps() const { return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_in, kTileK)); }
  __device__ void copy(Element* stage) const {
    const int dr = r - shape.k / 2, ds = s - shape.k / 2;
    const int pixels = shape.n * shape.h * shape.w;
    const auto a = [&](int row, int col) -> const Element* {
      const int pixel = block_pixel + row;
      if (pixel >= pixels || k0 + col >= shape.c_in) return nullptr;
      if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return nullptr;
      return x + int64_t{pixel + dr * shape.w + ds} * x_stride + k0 + col;
    };
    mma::copy_slice<SliceA, kVector>(stage, a, x);
    const int window = shape.k * shape.k * shape.c_in, tap = (r * shape.k + s) * shape.c_in;
    const auto b = [&](int row, int col) -> const Element* {
      const int o = block_channel + row;
      return o < shape.c_out && k0 + col < shape.c_in ? weight + int64_t{o} * window + tap + k0 + col : nullptr;
    };
    mma::copy_slice<SliceB, kVector>(stage + SliceA::kElements, b, weight);
  }
  __device__ void advance() {
    k0 += kTileK;
    if (k0 < shape.c_in) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
  __device__ void multiply(const Element* stage, typename Block::Accumulator& acc) const {
    mma::multiply_stage<Block, SliceA, SliceB, mma::Mask::none>(stage, stage + SliceA::kElements, stage, acc);
  }
};

// Fused epilogue: bias, ReLU, one rounding to the element.
template <class Element, class Block, bool kVector>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_forward_kernel3(
    Conv2dShape shape, const Element* __restrict__ x, int x_stride, const Element* __restrict__ weight,
    const float* __restrict__ bias, bool relu, Element* __restrict__ y, int y_stride) {
  DYNAMIC_SHARED(Element, shared);
  const int block_pixel = blockIdx.x * Block::kM, block_channel = blockIdx.y * Block::kN;
  ForwardTiles3<Element, Block, kVector> tiles{shape, x, x_stride, weight, block_pixel, block_channel};
  typename Block::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  const int pixels = shape.n * shape.h * shape.w;
  mma::for_each_accumulator<Block>(acc, [&](int row, int col, float sum) {
    const int pixel = block_pixel + row, o = block_channel + col;
    if (pixel >= pixels || o >= shape.c_out) return;
    const float value = sum + (bias != nullptr ? bias[o] : 0.0f);
    mma::store(y[int64_t{pixel} * y_stride + o], relu ? fmaxf(value, 0.0f) : value);
  });
}

// backward_data: A row = g at the output pixel that saw this pixel through the tap, (pad - r,
// pad - s) away, output channels k0 .. k0 + K - 1 (K-contiguous); with kMasked the ReLU's output
// at the same place beside it, applied to the A fragments; B = W(o, tap, .), K-major: one row per
// output channel o, the block's input channels contiguous.
template <class T, class TileShape, bool kVector, bool kMasked>
struct DataTiles3 {
  using Element = T;
  using Block = TileShape;
  using SliceA = mma::Slice<Element, mma::Layout::k_contiguous, Block::kM>;
  using SliceB = mma::Slice<Element, mma::Layout::k_major, Block::kN>;
  static constexpr int kTileK = mma::Format<Element>::kTileK;
  static constexpr int kStages = mma::Format<Element>::stages(kMasked);
  static constexpr int kMaskOffset = SliceA::kElements + SliceB::kElements;
  static constexpr int kStageElements = kMaskOffset + (kMasked ? SliceA::kElements : 0);  // A, B, then the mask
  Conv2dShape shape;
  const Element* dy;
  int dy_stride;
  const Element* relu_output;
  int relu_output_stride;
  const Element* weight;
  int block_pixel, block_channel;
  int r = 0, s = 0, k0 = 0;  // the K-step: tap (r, s), output channels k0 .. k0 + kTileK - 1

  __device__ int steps() const { return shape.k * shape.k * static_cast<int>(ceil_div(shape.c_out, kTileK)); }
  // The flat index of the output pixel whose gradient row `row` of A reads, or -1 (padding).
  __device__ int64_t source_pixel(int row) const {
    const int pixel = block_pixel + row, dr = shape.k / 2 - r, ds = shape.k / 2 - s;
    if (pixel >= shape.n * shape.h * shape.w) return -1;
    if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return -1;
    return pixel + dr * shape.w + ds;
  }
  __device__ void copy(Element* stage) const {
    const auto a = [&](const Element* tensor, int stride) {
      return [=, this](int row, int col) -> const Element* {
        const int64_t source = source_pixel(row);
        return source < 0 || k0 + col >= shape.c_out ? nullptr : tensor + source * stride + k0 + col;
      };
    };
    mma::copy_slice<SliceA, kVector>(stage, a(dy, dy_stride), dy);
    if constexpr (kMasked) {
      mma::copy_slice<SliceA, kVector>(stage + kMaskOffset, a(relu_output, relu_output_stride), relu_output);
    }
    const auto b = [&](int k, int col) -> const Element* {
      const int o = k0 + k, i = block_channel + col;
      if (o >= shape.c_out || i >= shape.c_in) return nullptr;
      return weight + (int64_t{o} * shape.k * shape.k + r * shape.k + s) * shape.c_in + i;
    };
    mma::copy_slice<SliceB, kVector>(stage + SliceA::kElements, b, weight);
  }
  __device__ void advance() {
    k0 += kTileK;
    if (k0 < shape.c_out) return;
    k0 = 0;
    if (++s < shape.k) return;
    s = 0;
    ++r;
  }
  __device__ void multiply(const Element* stage, typename Block::Accumulator& acc) const {
    mma::multiply_stage<Block, SliceA, SliceB, kMasked ? mma::Mask::a : mma::Mask::none>(
        stage, stage + SliceA::kElements, stage + kMaskOffset, acc);
  }
};

// Fused epilogue: dx = beta dx + sum, the prior widened and the sum added in fp32, one rounding.
template <class Element, class Block, bool kVector, bool kMasked>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_backward_data_kernel3(
    Conv2dShape shape, const Element* __restrict__ dy, int dy_stride, const Element* __restrict__ relu_output,
    int relu_output_stride, const Element* __restrict__ weight, float beta, Element* __restrict__ dx, int dx_stride) {
  DYNAMIC_SHARED(Element, shared);
  const int block_pixel = blockIdx.x * Block::kM, block_channel = blockIdx.y * Block::kN;
  DataTiles3<Element, Block, kVector, kMasked> tiles{shape, dy, dy_stride, relu_output, relu_output_stride, weight,
                                                     block_pixel, block_channel};
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

// backward_weight, one chunk of pixels (blockIdx.z): A ((tap, Cin) x pixels) is x at each pixel
// shifted by the row's tap, K-major (a pixel's (tap, i) values of the block in a row; with kVector
// Cin is a multiple of a 16-byte chunk, so a chunk never straddles two taps); B (pixels x Cout)
// is g, K-major, with the ReLU's output beside it when kMasked (applied to the B fragments).
template <class T, class TileShape, bool kVector, bool kMasked>
struct WeightTiles3 {
  using Element = T;
  using Block = TileShape;
  using SliceA = mma::Slice<Element, mma::Layout::k_major, Block::kM>;
  using SliceB = mma::Slice<Element, mma::Layout::k_major, Block::kN>;
  static constexpr int kTileK = mma::Format<Element>::kTileK;
  static constexpr int kStages = mma::Format<Element>::stages(kMasked);
  static constexpr int kMaskOffset = SliceA::kElements + SliceB::kElements;
  static constexpr int kStageElements = kMaskOffset + (kMasked ? SliceB::kElements : 0);  // A, B, then the mask
  Conv2dShape shape;
  const Element* x;
  int x_stride;
  const Element* dy;
  int dy_stride;
  const Element* relu_output;
  int relu_output_stride;
  int block_row, block_channel;  // the tile's first (tap, i) row of dW and first output channel
  int begin, end;                // this chunk's pixels
  int p0 = 0;                    // the K-step: pixels begin + p0 .. + kTileK - 1

  __device__ int steps() const { return static_cast<int>(ceil_div(end - begin, kTileK)); }
  __device__ void copy(Element* stage) const {
    const int window = shape.k * shape.k * shape.c_in;
    const auto a = [&](int k, int col) -> const Element* {
      const int pixel = begin + p0 + k, m = block_row + col;
      if (pixel >= end || m >= window) return nullptr;
      const int tap = m / shape.c_in, dr = tap / shape.k - shape.k / 2, ds = tap % shape.k - shape.k / 2;
      if (!inside_image(shape, pixel / shape.w % shape.h + dr, pixel % shape.w + ds)) return nullptr;
      return x + int64_t{pixel + dr * shape.w + ds} * x_stride + m % shape.c_in;
    };
    mma::copy_slice<SliceA, kVector>(stage, a, x);
    const auto b = [&](const Element* tensor, int stride) {
      return [=, this](int k, int col) -> const Element* {
        const int pixel = begin + p0 + k, o = block_channel + col;
        return pixel < end && o < shape.c_out ? tensor + int64_t{pixel} * stride + o : nullptr;
      };
    };
    mma::copy_slice<SliceB, kVector>(stage + SliceA::kElements, b(dy, dy_stride), dy);
    if constexpr (kMasked) {
      mma::copy_slice<SliceB, kVector>(stage + kMaskOffset, b(relu_output, relu_output_stride), relu_output);
    }
  }
  __device__ void advance() { p0 += kTileK; }
  __device__ void multiply(const Element* stage, typename Block::Accumulator& acc) const {
    mma::multiply_stage<Block, SliceA, SliceB, kMasked ? mma::Mask::b : mma::Mask::none>(
        stage, stage + SliceA::kElements, stage + kMaskOffset, acc);
  }
};

// Writes this chunk's partial dW (fp32), laid out as dW: partial[chunk][o][(tap, i)].
template <class Element, class Block, bool kVector, bool kMasked>
__global__ __launch_bounds__(mma::kThreads, mma::kMaxBlocksPerSm) void conv2d_backward_weight_kernel3(
    Conv2dShape shape, const Element* __restrict__ x, int x_stride, const Element* __restrict__ dy, int dy_stride,
    const Element* __restrict__ relu_output, int relu_output_stride, int chunk, float* __restrict__ partial) {
  DYNAMIC_SHARED(Element, shared);
  const int pixels = shape.n * shape.h * shape.w, window = shape.k * shape.k * shape.c_in;
  const int begin = blockIdx.z * chunk, end = pixels < begin + chunk ? pixels : begin + chunk;
  const int block_row = blockIdx.x * Block::kM, block_channel = blockIdx.y * Block::kN;
  WeightTiles3<Element, Block, kVector, kMasked> tiles{shape, x, x_stride, dy, dy_stride, relu_output,
                                                       relu_output_stride, block_row, block_channel, begin, end};
  typename Block::Accumulator acc;
  mma::multiply(tiles, shared, acc);

  float* out = partial + int64_t{blockIdx.z} * shape.c_out * window;
  mma::for_each_accumulator<Block>(acc, [&](int row, int col, float sum) {
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

// Version 3 (both elements), launched through conv_mma.h's mma::grid, mma::launch and
// mma::with_block_tile.

// body.template operator()<kVector, kMasked>() for the run-time choice of copies and mask.
template <class Body>
void with_copies(bool vector, bool masked, Body&& body) {
  if (vector && masked) {
    body.template operator()<true, true>();
  } else if (vector) {
    body.template operator()<true, false>();
  } else if (masked) {
    body.template operator()<false, true>();
  } else {
    body.template operator()<false, false>();
  }
}

template <class Element>
void forward3(const Conv2dShape& shape, const Element* x, int x_stride, const Element* weight, const float* bias,
              bool relu, Element* y, int y_stride, bool vector, Stream stream) {
  with_copies(vector, false, [&]<bool kVector, bool>() {
    const int large = mma::blocks_per_sm<ForwardTiles3<Element, mma::LargeTile, kVector>>();
    const int small = mma::blocks_per_sm<ForwardTiles3<Element, mma::SmallTile, kVector>>();
    mma::with_block_tile(pixel_count(shape), shape.c_out, large, small, [&]<class Block>() {
      mma::launch<ForwardTiles3<Element, Block, kVector>>(KERNEL(conv2d_forward_kernel3<Element, Block, kVector>),
                                                          mma::grid<Block>(pixel_count(shape), shape.c_out), stream,
                                                          shape, x, x_stride, weight, bias, relu, y, y_stride);
    });
  });
}

template <class Element>
void backward_data3(const Conv2dShape& shape, const Element* dy, int dy_stride, const Element* relu_output,
                    int relu_output_stride, const Element* weight, float beta, Element* dx, int dx_stride, bool vector,
                    Stream stream) {
  with_copies(vector, relu_output != nullptr, [&]<bool kVector, bool kMasked>() {
    const int large = mma::blocks_per_sm<DataTiles3<Element, mma::LargeTile, kVector, kMasked>>();
    const int small = mma::blocks_per_sm<DataTiles3<Element, mma::SmallTile, kVector, kMasked>>();
    mma::with_block_tile(pixel_count(shape), shape.c_in, large, small, [&]<class Block>() {
      mma::launch<DataTiles3<Element, Block, kVector, kMasked>>(
          KERNEL(conv2d_backward_data_kernel3<Element, Block, kVector, kMasked>),
          mma::grid<Block>(pixel_count(shape), shape.c_in), stream, shape, dy, dy_stride, relu_output,
          relu_output_stride, weight, beta, dx, dx_stride);
    });
  });
}

// backward_weight's one block tile; it splits the pixels into enough chunks to fill the GPU (as
// version 2 does).
using WeightTile3 = mma::LargeTile;

gemm::PixelSplit weight_split3(const Conv2dShape& shape) {
  const int64_t tiles = ceil_div(window(shape), WeightTile3::kM) * ceil_div(shape.c_out, WeightTile3::kN);
  return gemm::split_pixels(pixel_count(shape), tiles);
}

size_t weight_workspace3(const Conv2dShape& shape) {
  return static_cast<size_t>(weight_split3(shape).splits * shape.c_out * window(shape)) * sizeof(float);
}

// The partial dW of each pixel chunk, then their ordered sum (column_sum.h).
template <DeviceKind D, class Element>
void backward_weight3(const Conv2dShape& shape, const Element* x, int x_stride, const Element* dy, int dy_stride,
                      const Element* relu_output, int relu_output_stride, float beta, float* dweight, void* workspace,
                      bool vector, Stream stream) {
  const gemm::PixelSplit split = weight_split3(shape);
  auto* partial = static_cast<float*>(workspace);
  if (split.splits > 0) {
    with_copies(vector, relu_output != nullptr, [&]<bool kVector, bool kMasked>() {
      mma::launch<WeightTiles3<Element, WeightTile3, kVector, kMasked>>(
          KERNEL(conv2d_backward_weight_kernel3<Element, WeightTile3, kVector, kMasked>),
          mma::grid<WeightTile3>(window(shape), shape.c_out, split.splits), stream, shape, x, x_stride, dy, dy_stride,
          relu_output, relu_output_stride, static_cast<int>(split.chunk), partial);
    });
  }
  ColumnSum<D>::sum_partials(split.splits, shape.c_out * window(shape), partial, beta, dweight, stream);
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
    launch_flat(KERNEL(conv2d_forward_kernel1<float>), pixel_count(shape) * shape.c_out, stream, shape, x, x_stride,
                weight, bias, relu, y, y_stride);
    return;
  }
  if (version == tensor_core_version) {
    forward3(shape, x, x_stride, weight, bias, relu, y, y_stride, quads_fit({x, weight}, {shape.c_in, x_stride}),
             stream);
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
    launch_flat(KERNEL(conv2d_backward_data_kernel1<float>), pixel_count(shape) * shape.c_in, stream, shape, dy,
                dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride);
    return;
  }
  const bool vector_in = quads_fit({dy, weight}, {shape.c_out, shape.c_in, dy_stride}) &&
                         (relu_output == nullptr || quads_fit({relu_output}, {relu_output_stride}));
  if (version == tensor_core_version) {
    backward_data3(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride, vector_in,
                   stream);
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
  if (version == tensor_core_version) return weight_workspace3(shape);
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
    launch_flat(KERNEL(conv2d_backward_weight_kernel1<float>), weights, stream, shape, x, x_stride, dy, dy_stride,
                relu_output, relu_output_stride, beta, dweight);
    return;
  }
  if (version == tensor_core_version) {
    const bool vector_in = quads_fit({x, dy}, {shape.c_in, shape.c_out, x_stride, dy_stride}) &&
                           (relu_output == nullptr || quads_fit({relu_output}, {relu_output_stride}));
    backward_weight3<D>(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta, dweight, workspace,
                        vector_in, stream);
    return;
  }
  auto* partial = static_cast<float*>(workspace);
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
  forward3(shape, x, x_stride, weight, bias, relu, y, y_stride, octets_fit({x, weight}, {shape.c_in, x_stride}),
           stream);
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
  backward_data3(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride, vector_in, stream);
}

template <DeviceKind D>
size_t Conv2d<D>::backward_weight_workspace(const Conv2dShape& shape, bf16, int version) {
  if (version == 1) return 0;
  return weight_workspace3(shape);
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
  backward_weight3<D>(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta, dweight, workspace,
                      vector_in, stream);
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
