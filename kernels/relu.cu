// relu: the CUDA kernels and their launchers (relu.h).
//
// Versions (run one alone with: test_kernels_sim "relu*", bench_kernels --benchmark_filter=relu):
//   1  one thread per element, (pixel, channel) from a flat index: the simplest correct form.
//   2  four channels per thread with 16-byte loads and stores, when every operand's pointer and
//      pixel stride allow it (channels and strides multiples of 4, 16-byte aligned pointers);
//      otherwise it falls back to version 1. Memory-bound: the aim is the bandwidth of a copy.
// Each kernel is a template on the element type, `relu_<pass>_kernel<version><Element>`: float, and
// bf16 (the same two versions with bf16 operands, version 2 eight channels per thread in 16-byte
// accesses (kernels/bf16_vector.h) when every pointer is 16-byte aligned and channels and strides
// are multiples of 8; fp32 arithmetic, each output rounded once).
#include "kernels/relu.h"

#include <cstdint>

#include "kernels/bf16_vector.h"
#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels: version 1 indexes elements, version 2 vectors (four floats, eight bf16) of channels.

template <class Element>
__global__ void relu_forward_kernel1(int64_t pixels, int channels, const Element* __restrict__ x, int x_stride,
                                     Element* __restrict__ y, int y_stride);
template <class Element>
__global__ void relu_backward_kernel1(int64_t pixels, int channels, const Element* __restrict__ dy, int dy_stride,
                                      const Element* __restrict__ y, int y_stride, float beta,
                                      Element* __restrict__ dx, int dx_stride);
template <class Element>
__global__ void relu_forward_kernel2(int64_t pixels, int vectors, const Element* __restrict__ x, int x_stride,
                                     Element* __restrict__ y, int y_stride);
template <class Element>
__global__ void relu_backward_kernel2(int64_t pixels, int vectors, const Element* __restrict__ dy, int dy_stride,
                                      const Element* __restrict__ y, int y_stride, float beta,
                                      Element* __restrict__ dx, int dx_stride);

template <>
__global__ void relu_forward_kernel1<float>(int64_t pixels, int channels, const float* __restrict__ x, int x_stride,
                                            float* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = fmaxf(x[p * x_stride + c], 0.0f);
}

template <>
__global__ void relu_backward_kernel1<float>(int64_t pixels, int channels, const float* __restrict__ dy,
                                             int dy_stride, const float* __restrict__ y, int y_stride, float beta,
                                             float* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  const float gradient = y[p * y_stride + c] > 0.0f ? dy[p * dy_stride + c] : 0.0f;
  float& out = dx[p * dx_stride + c];
  out = beta == 0.0f ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
}

// Version 2: i indexes groups of four channels.
template <>
__global__ void relu_forward_kernel2<float>(int64_t pixels, int quads, const float* __restrict__ x, int x_stride,
                                            float* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * quads) return;
  const int64_t p = i / quads;
  const int c = static_cast<int>(i - p * quads) * 4;
  float4 v = *reinterpret_cast<const float4*>(x + p * x_stride + c);
  v.x = fmaxf(v.x, 0.0f);
  v.y = fmaxf(v.y, 0.0f);
  v.z = fmaxf(v.z, 0.0f);
  v.w = fmaxf(v.w, 0.0f);
  *reinterpret_cast<float4*>(y + p * y_stride + c) = v;
}

__device__ __forceinline__ float relu_gradient(float dy, float y, float beta, float previous) {
  const float gradient = y > 0.0f ? dy : 0.0f;
  return beta == 0.0f ? gradient : beta * previous + gradient;
}

template <>
__global__ void relu_backward_kernel2<float>(int64_t pixels, int quads, const float* __restrict__ dy, int dy_stride,
                                             const float* __restrict__ y, int y_stride, float beta,
                                             float* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * quads) return;
  const int64_t p = i / quads;
  const int c = static_cast<int>(i - p * quads) * 4;
  const float4 g = *reinterpret_cast<const float4*>(dy + p * dy_stride + c);
  const float4 out = *reinterpret_cast<const float4*>(y + p * y_stride + c);
  float4* target = reinterpret_cast<float4*>(dx + p * dx_stride + c);
  float4 previous = beta == 0.0f ? float4{0.0f, 0.0f, 0.0f, 0.0f} : *target;
  previous.x = relu_gradient(g.x, out.x, beta, previous.x);
  previous.y = relu_gradient(g.y, out.y, beta, previous.y);
  previous.z = relu_gradient(g.z, out.z, beta, previous.z);
  previous.w = relu_gradient(g.w, out.w, beta, previous.w);
  *target = previous;
}

// bf16: version 1 one element per thread, version 2 one octet (eight channels) per thread.
template <>
__global__ void relu_forward_kernel1<bf16>(int64_t pixels, int channels, const bf16* __restrict__ x, int x_stride,
                                           bf16* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = to_bf16(fmaxf(to_float(x[p * x_stride + c]), 0.0f));
}

template <>
__global__ void relu_backward_kernel1<bf16>(int64_t pixels, int channels, const bf16* __restrict__ dy, int dy_stride,
                                            const bf16* __restrict__ y, int y_stride, float beta,
                                            bf16* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  bf16& out = dx[p * dx_stride + c];
  const float previous = beta == 0.0f ? 0.0f : to_float(out);
  out = to_bf16(relu_gradient(to_float(dy[p * dy_stride + c]), to_float(y[p * y_stride + c]), beta, previous));
}

template <>
__global__ void relu_forward_kernel2<bf16>(int64_t pixels, int octets, const bf16* __restrict__ x, int x_stride,
                                           bf16* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * octets) return;
  const int64_t p = i / octets;
  const int c = static_cast<int>(i - p * octets) * bf16_per_octet;
  Octet v = load_octet(x + p * x_stride + c);
  for (int j = 0; j < bf16_per_octet; ++j) v.v[j] = fmaxf(v.v[j], 0.0f);
  store_octet(y + p * y_stride + c, v);
}

template <>
__global__ void relu_backward_kernel2<bf16>(int64_t pixels, int octets, const bf16* __restrict__ dy, int dy_stride,
                                            const bf16* __restrict__ y, int y_stride, float beta,
                                            bf16* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * octets) return;
  const int64_t p = i / octets;
  const int c = static_cast<int>(i - p * octets) * bf16_per_octet;
  const Octet g = load_octet(dy + p * dy_stride + c);
  const Octet out = load_octet(y + p * y_stride + c);
  bf16* target = dx + p * dx_stride + c;
  Octet previous = beta == 0.0f ? Octet{} : load_octet(target);
  for (int j = 0; j < bf16_per_octet; ++j) previous.v[j] = relu_gradient(g.v[j], out.v[j], beta, previous.v[j]);
  store_octet(target, previous);
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void Relu<D>::forward(int64_t pixels, int channels, const float* x, int x_stride, float* y, int y_stride,
                      Stream stream, int version) {
  if (pixels * channels == 0) return;
  if (version != 1 && quads_fit({x, y}, {channels, x_stride, y_stride})) {
    const int quads = channels / 4;
    launch_flat(KERNEL(relu_forward_kernel2<float>), pixels * quads, stream, pixels, quads, x, x_stride, y, y_stride);
    return;
  }
  launch_flat(KERNEL(relu_forward_kernel1<float>), pixels * channels, stream, pixels, channels, x, x_stride, y,
              y_stride);
}

template <DeviceKind D>
void Relu<D>::backward(int64_t pixels, int channels, const float* dy, int dy_stride, const float* y, int y_stride,
                       float beta, float* dx, int dx_stride, Stream stream, int version) {
  if (pixels * channels == 0) return;
  if (version != 1 && quads_fit({dy, y, dx}, {channels, dy_stride, y_stride, dx_stride})) {
    const int quads = channels / 4;
    launch_flat(KERNEL(relu_backward_kernel2<float>), pixels * quads, stream, pixels, quads, dy, dy_stride, y,
                y_stride, beta, dx, dx_stride);
    return;
  }
  launch_flat(KERNEL(relu_backward_kernel1<float>), pixels * channels, stream, pixels, channels, dy, dy_stride, y,
              y_stride, beta, dx, dx_stride);
}

template <DeviceKind D>
void Relu<D>::forward(int64_t pixels, int channels, const bf16* x, int x_stride, bf16* y, int y_stride, Stream stream,
                      int version) {
  if (pixels * channels == 0) return;
  if (version != 1 && octets_fit({x, y}, {channels, x_stride, y_stride})) {
    const int octets = channels / bf16_per_octet;
    launch_flat(KERNEL(relu_forward_kernel2<bf16>), pixels * octets, stream, pixels, octets, x, x_stride, y, y_stride);
    return;
  }
  launch_flat(KERNEL(relu_forward_kernel1<bf16>), pixels * channels, stream, pixels, channels, x, x_stride, y,
              y_stride);
}

template <DeviceKind D>
void Relu<D>::backward(int64_t pixels, int channels, const bf16* dy, int dy_stride, const bf16* y, int y_stride,
                       float beta, bf16* dx, int dx_stride, Stream stream, int version) {
  if (pixels * channels == 0) return;
  if (version != 1 && octets_fit({dy, y, dx}, {channels, dy_stride, y_stride, dx_stride})) {
    const int octets = channels / bf16_per_octet;
    launch_flat(KERNEL(relu_backward_kernel2<bf16>), pixels * octets, stream, pixels, octets, dy, dy_stride, y,
                y_stride, beta, dx, dx_stride);
    return;
  }
  launch_flat(KERNEL(relu_backward_kernel1<bf16>), pixels * channels, stream, pixels, channels, dy, dy_stride, y,
              y_stride, beta, dx, dx_stride);
}

template struct Relu<KERNEL_DEVICE>;

}  // namespace unet
