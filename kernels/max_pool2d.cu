// max_pool2d: the CUDA kernels and their launchers (max_pool2d.h).
//
// Versions (run one alone with: test_kernels_sim "max_pool2d*", bench_kernels --benchmark_filter=max_pool):
//   1  forward: one thread per output element reads its 2x2 window and writes the maximum and the
//      argmax byte. Backward: one thread per input element gathers dy through its window's argmax,
//      so every dx element has exactly one writer and no atomics are needed.
//   2  four channels per thread: 16-byte loads and stores of x, y, dy and dx and one 4-byte load or
//      store of four argmax bytes, when channels and strides are multiples of 4 and the pointers
//      are aligned (16 bytes for floats, 4 for argmax); otherwise it falls back to version 1.
//      Memory-bound: the aim is the bandwidth of a copy of the same bytes.
// Each kernel is a template on the activations' element type, `max_pool2d_<pass>_kernel<version>
// <Element>`: float, and bf16 (the same two versions with bf16 activations, version 2 eight
// channels per thread (16-byte bf16 accesses, one 8-byte access of eight argmax bytes) when C and
// the strides are multiples of 8 and the pointers aligned (16 bytes, 8 for argmax)).
#include "kernels/max_pool2d.h"

#include <cstdint>

#include "kernels/bf16_vector.h"
#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels

// PyTorch's rule: greater than the best so far, or NaN. Ties keep the first maximum in window
// order; the last NaN of a window wins, so NaN propagates.
__device__ __forceinline__ bool pool_replaces(float candidate, float best) {
  return candidate > best || candidate != candidate;
}

// Where an output pixel's window starts, and the input pixel a thread of the backward belongs to.
struct PoolIndex {
  int64_t n, row, col;
};

__device__ __forceinline__ PoolIndex split_pixel(int64_t pixel, int height, int width) {
  const int64_t row_index = pixel / width;
  return {row_index / height, row_index % height, pixel % width};
}

// The window's top-left input pixel; the other three are +1, +width, +width+1.
__device__ __forceinline__ int64_t window_origin(const PoolShape& shape, int64_t out_pixel) {
  const PoolIndex o = split_pixel(out_pixel, shape.h / 2, shape.w / 2);
  return (o.n * shape.h + 2 * o.row) * shape.w + 2 * o.col;
}

// For an input pixel: the output pixel whose window holds it (or -1 on a dropped row/column) and
// its position 2r+s in that window.
__device__ __forceinline__ int64_t pooled_by(const PoolShape& shape, int64_t in_pixel, int* position) {
  const PoolIndex i = split_pixel(in_pixel, shape.h, shape.w);
  const int out_h = shape.h / 2, out_w = shape.w / 2;
  *position = static_cast<int>(2 * (i.row % 2) + i.col % 2);
  if (i.row / 2 >= out_h || i.col / 2 >= out_w) return -1;
  return (i.n * out_h + i.row / 2) * out_w + i.col / 2;
}

__device__ __forceinline__ float accumulate(float gradient, float beta, float previous) {
  return beta == 0.0f ? gradient : beta * previous + gradient;  // beta = 0 overwrites, even NaN
}

// The kernels, specialised below for float and bf16.
template <class Element>
__global__ void max_pool2d_forward_kernel1(PoolShape shape, int64_t outputs, const Element* __restrict__ x,
                                           int x_stride, Element* __restrict__ y, int y_stride,
                                           uint8_t* __restrict__ argmax);
template <class Element>
__global__ void max_pool2d_backward_kernel1(PoolShape shape, int64_t inputs, const Element* __restrict__ dy,
                                            int dy_stride, const uint8_t* __restrict__ argmax, float beta,
                                            Element* __restrict__ dx, int dx_stride);
template <class Element>
__global__ void max_pool2d_forward_kernel2(PoolShape shape, int64_t outputs, const Element* __restrict__ x,
                                           int x_stride, Element* __restrict__ y, int y_stride,
                                           uint8_t* __restrict__ argmax);
template <class Element>
__global__ void max_pool2d_backward_kernel2(PoolShape shape, int64_t inputs, const Element* __restrict__ dy,
                                            int dy_stride, const uint8_t* __restrict__ argmax, float beta,
                                            Element* __restrict__ dx, int dx_stride);

template <>
__global__ void max_pool2d_forward_kernel1<float>(PoolShape shape, int64_t outputs, const float* __restrict__ x,
                                                  int x_stride, float* __restrict__ y, int y_stride,
                                                  uint8_t* __restrict__ argmax) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= outputs) return;
  const int64_t out_pixel = i / shape.c;
  const int c = static_cast<int>(i - out_pixel * shape.c);
  const int64_t origin = window_origin(shape, out_pixel);
  float best = x[origin * x_stride + c];
  int best_index = 0;
  for (int k = 1; k < 4; ++k) {
    const float v = x[(origin + (k / 2) * shape.w + k % 2) * x_stride + c];
    if (pool_replaces(v, best)) {
      best = v;
      best_index = k;
    }
  }
  y[out_pixel * y_stride + c] = best;
  argmax[i] = static_cast<uint8_t>(best_index);
}

template <>
__global__ void max_pool2d_backward_kernel1<float>(PoolShape shape, int64_t inputs, const float* __restrict__ dy,
                                                   int dy_stride, const uint8_t* __restrict__ argmax, float beta,
                                                   float* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= inputs) return;
  const int64_t in_pixel = i / shape.c;
  const int c = static_cast<int>(i - in_pixel * shape.c);
  int position = 0;
  const int64_t out_pixel = pooled_by(shape, in_pixel, &position);
  const float gradient =
      out_pixel >= 0 && argmax[out_pixel * shape.c + c] == position ? dy[out_pixel * dy_stride + c] : 0.0f;
  float& out = dx[in_pixel * dx_stride + c];
  out = accumulate(gradient, beta, out);
}

// Version 2: i indexes groups of four channels; argmax bytes travel four at a time in one unsigned.
__device__ __forceinline__ void pool_lane(float v, int k, float& best, unsigned& index, int lane) {
  if (pool_replaces(v, best)) {
    best = v;
    index = (index & ~(0xffu << (8 * lane))) | (static_cast<unsigned>(k) << (8 * lane));
  }
}

template <>
__global__ void max_pool2d_forward_kernel2<float>(PoolShape shape, int64_t outputs, const float* __restrict__ x,
                                                  int x_stride, float* __restrict__ y, int y_stride,
                                                  uint8_t* __restrict__ argmax) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int quads = shape.c / 4;
  if (i >= outputs / 4) return;
  const int64_t out_pixel = i / quads;
  const int c = static_cast<int>(i - out_pixel * quads) * 4;
  const int64_t origin = window_origin(shape, out_pixel);
  float4 best = *reinterpret_cast<const float4*>(x + origin * x_stride + c);
  unsigned index = 0;  // byte j: the argmax of channel c + j
  for (int k = 1; k < 4; ++k) {
    const float4 v = *reinterpret_cast<const float4*>(x + (origin + (k / 2) * shape.w + k % 2) * x_stride + c);
    pool_lane(v.x, k, best.x, index, 0);
    pool_lane(v.y, k, best.y, index, 1);
    pool_lane(v.z, k, best.z, index, 2);
    pool_lane(v.w, k, best.w, index, 3);
  }
  *reinterpret_cast<float4*>(y + out_pixel * y_stride + c) = best;
  *reinterpret_cast<unsigned*>(argmax + out_pixel * shape.c + c) = index;
}

__device__ __forceinline__ float gathered(unsigned index, int lane, int position, float dy) {
  return static_cast<int>((index >> (8 * lane)) & 0xffu) == position ? dy : 0.0f;
}

template <>
__global__ void max_pool2d_backward_kernel2<float>(PoolShape shape, int64_t inputs, const float* __restrict__ dy,
                                                   int dy_stride, const uint8_t* __restrict__ argmax, float beta,
                                                   float* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int quads = shape.c / 4;
  if (i >= inputs / 4) return;
  const int64_t in_pixel = i / quads;
  const int c = static_cast<int>(i - in_pixel * quads) * 4;
  int position = 0;
  const int64_t out_pixel = pooled_by(shape, in_pixel, &position);
  float4 gradient = {0.0f, 0.0f, 0.0f, 0.0f};
  if (out_pixel >= 0) {
    const unsigned index = *reinterpret_cast<const unsigned*>(argmax + out_pixel * shape.c + c);
    const float4 g = *reinterpret_cast<const float4*>(dy + out_pixel * dy_stride + c);
    gradient = {gathered(index, 0, position, g.x), gathered(index, 1, position, g.y),
                gathered(index, 2, position, g.z), gathered(index, 3, position, g.w)};
  }
  float4* target = reinterpret_cast<float4*>(dx + in_pixel * dx_stride + c);
  const float4 previous = beta == 0.0f ? float4{0.0f, 0.0f, 0.0f, 0.0f} : *target;
  *target = {accumulate(gradient.x, beta, previous.x), accumulate(gradient.y, beta, previous.y),
             accumulate(gradient.z, beta, previous.z), accumulate(gradient.w, beta, previous.w)};
}

// bf16, version 1: one element per thread.
template <>
__global__ void max_pool2d_forward_kernel1<bf16>(PoolShape shape, int64_t outputs, const bf16* __restrict__ x,
                                                 int x_stride, bf16* __restrict__ y, int y_stride,
                                                 uint8_t* __restrict__ argmax) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= outputs) return;
  const int64_t out_pixel = i / shape.c;
  const int c = static_cast<int>(i - out_pixel * shape.c);
  const int64_t origin = window_origin(shape, out_pixel);
  float best = to_float(x[origin * x_stride + c]);
  int best_index = 0;
  for (int k = 1; k < 4; ++k) {
    const float v = to_float(x[(origin + (k / 2) * shape.w + k % 2) * x_stride + c]);
    if (pool_replaces(v, best)) {
      best = v;
      best_index = k;
    }
  }
  y[out_pixel * y_stride + c] = to_bf16(best);
  argmax[i] = static_cast<uint8_t>(best_index);
}

template <>
__global__ void max_pool2d_backward_kernel1<bf16>(PoolShape shape, int64_t inputs, const bf16* __restrict__ dy,
                                                  int dy_stride, const uint8_t* __restrict__ argmax, float beta,
                                                  bf16* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= inputs) return;
  const int64_t in_pixel = i / shape.c;
  const int c = static_cast<int>(i - in_pixel * shape.c);
  int position = 0;
  const int64_t out_pixel = pooled_by(shape, in_pixel, &position);
  const float gradient =
      out_pixel >= 0 && argmax[out_pixel * shape.c + c] == position ? to_float(dy[out_pixel * dy_stride + c]) : 0.0f;
  bf16& out = dx[in_pixel * dx_stride + c];
  out = to_bf16(accumulate(gradient, beta, beta == 0.0f ? 0.0f : to_float(out)));
}

// bf16, version 2: i indexes octets of channels; their eight argmax bytes travel in one uint64_t.
template <>
__global__ void max_pool2d_forward_kernel2<bf16>(PoolShape shape, int64_t outputs, const bf16* __restrict__ x,
                                                 int x_stride, bf16* __restrict__ y, int y_stride,
                                                 uint8_t* __restrict__ argmax) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int octets = shape.c / bf16_per_octet;
  if (i >= outputs / bf16_per_octet) return;
  const int64_t out_pixel = i / octets;
  const int c = static_cast<int>(i - out_pixel * octets) * bf16_per_octet;
  const int64_t origin = window_origin(shape, out_pixel);
  Octet best = load_octet(x + origin * x_stride + c);
  uint64_t index = 0;  // byte j: the argmax of channel c + j
  for (int k = 1; k < 4; ++k) {
    const Octet v = load_octet(x + (origin + (k / 2) * shape.w + k % 2) * x_stride + c);
    for (int j = 0; j < bf16_per_octet; ++j) {
      if (pool_replaces(v.v[j], best.v[j])) {
        best.v[j] = v.v[j];
        index = (index & ~(uint64_t{0xff} << (8 * j))) | (uint64_t(k) << (8 * j));
      }
    }
  }
  store_octet(y + out_pixel * y_stride + c, best);
  *reinterpret_cast<uint64_t*>(argmax + out_pixel * shape.c + c) = index;
}

template <>
__global__ void max_pool2d_backward_kernel2<bf16>(PoolShape shape, int64_t inputs, const bf16* __restrict__ dy,
                                                  int dy_stride, const uint8_t* __restrict__ argmax, float beta,
                                                  bf16* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int octets = shape.c / bf16_per_octet;
  if (i >= inputs / bf16_per_octet) return;
  const int64_t in_pixel = i / octets;
  const int c = static_cast<int>(i - in_pixel * octets) * bf16_per_octet;
  int position = 0;
  const int64_t out_pixel = pooled_by(shape, in_pixel, &position);
  Octet gradient{};
  if (out_pixel >= 0) {
    const uint64_t index = *reinterpret_cast<const uint64_t*>(argmax + out_pixel * shape.c + c);
    const Octet g = load_octet(dy + out_pixel * dy_stride + c);
    for (int j = 0; j < bf16_per_octet; ++j) {
      gradient.v[j] = static_cast<int>((index >> (8 * j)) & 0xffu) == position ? g.v[j] : 0.0f;
    }
  }
  bf16* target = dx + in_pixel * dx_stride + c;
  Octet out = beta == 0.0f ? Octet{} : load_octet(target);
  for (int j = 0; j < bf16_per_octet; ++j) out.v[j] = accumulate(gradient.v[j], beta, out.v[j]);
  store_octet(target, out);
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

namespace {

// Version 2 needs whole float4s (quads_fit) and whole 4-byte argmax groups.
bool argmax_quads_fit(const uint8_t* argmax) { return reinterpret_cast<uintptr_t>(argmax) % 4 == 0; }

}  // namespace

template <DeviceKind D>
void MaxPool2d<D>::forward(const PoolShape& shape, const float* x, int x_stride, float* y, int y_stride,
                           uint8_t* argmax, Stream stream, int version) {
  const int64_t outputs = int64_t{shape.n} * (shape.h / 2) * (shape.w / 2) * shape.c;
  if (outputs == 0) return;
  if (version != 1 && quads_fit({x, y}, {shape.c, x_stride, y_stride}) && argmax_quads_fit(argmax)) {
    launch_flat(KERNEL(max_pool2d_forward_kernel2<float>), outputs / 4, stream, shape, outputs, x, x_stride, y,
                y_stride, argmax);
    return;
  }
  launch_flat(KERNEL(max_pool2d_forward_kernel1<float>), outputs, stream, shape, outputs, x, x_stride, y, y_stride,
              argmax);
}

template <DeviceKind D>
void MaxPool2d<D>::backward(const PoolShape& shape, const float* dy, int dy_stride, const uint8_t* argmax,
                            float beta, float* dx, int dx_stride, Stream stream, int version) {
  const int64_t inputs = int64_t{shape.n} * shape.h * shape.w * shape.c;
  if (inputs == 0) return;
  if (version != 1 && quads_fit({dy, dx}, {shape.c, dy_stride, dx_stride}) && argmax_quads_fit(argmax)) {
    launch_flat(KERNEL(max_pool2d_backward_kernel2<float>), inputs / 4, stream, shape, inputs, dy, dy_stride, argmax,
                beta, dx, dx_stride);
    return;
  }
  launch_flat(KERNEL(max_pool2d_backward_kernel1<float>), inputs, stream, shape, inputs, dy, dy_stride, argmax, beta,
              dx, dx_stride);
}

namespace {

bool argmax_octets_fit(const uint8_t* argmax) { return reinterpret_cast<uintptr_t>(argmax) % 8 == 0; }

}  // namespace

template <DeviceKind D>
void MaxPool2d<D>::forward(const PoolShape& shape, const bf16* x, int x_stride, bf16* y, int y_stride,
                           uint8_t* argmax, Stream stream, int version) {
  const int64_t outputs = int64_t{shape.n} * (shape.h / 2) * (shape.w / 2) * shape.c;
  if (outputs == 0) return;
  if (version != 1 && octets_fit({x, y}, {shape.c, x_stride, y_stride}) && argmax_octets_fit(argmax)) {
    launch_flat(KERNEL(max_pool2d_forward_kernel2<bf16>), outputs / bf16_per_octet, stream, shape, outputs, x, x_stride,
                y, y_stride, argmax);
    return;
  }
  launch_flat(KERNEL(max_pool2d_forward_kernel1<bf16>), outputs, stream, shape, outputs, x, x_stride, y, y_stride,
              argmax);
}

template <DeviceKind D>
void MaxPool2d<D>::backward(const PoolShape& shape, const bf16* dy, int dy_stride, const uint8_t* argmax, float beta,
                            bf16* dx, int dx_stride, Stream stream, int version) {
  const int64_t inputs = int64_t{shape.n} * shape.h * shape.w * shape.c;
  if (inputs == 0) return;
  if (version != 1 && octets_fit({dy, dx}, {shape.c, dy_stride, dx_stride}) && argmax_octets_fit(argmax)) {
    launch_flat(KERNEL(max_pool2d_backward_kernel2<bf16>), inputs / bf16_per_octet, stream, shape, inputs, dy,
                dy_stride, argmax, beta, dx, dx_stride);
    return;
  }
  launch_flat(KERNEL(max_pool2d_backward_kernel1<bf16>), inputs, stream, shape, inputs, dy, dy_stride, argmax, beta,
              dx, dx_stride);
}

template struct MaxPool2d<KERNEL_DEVICE>;

}  // namespace unet
