// relu: the CUDA kernels and their launchers (relu.h).
//
// Versions (run one alone with: test_kernels_sim "relu*", bench_kernels --benchmark_filter=relu):
//   1  one thread per element, (pixel, channel) from a flat index: the simplest correct form.
//   2  four channels per thread with 16-byte loads and stores, when every operand's pointer and
//      pixel stride allow it (channels and strides multiples of 4, 16-byte aligned pointers);
//      otherwise it falls back to version 1. Memory-bound: the aim is the bandwidth of a copy.
#include "kernels/relu.h"

#include <cstdint>

#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels

__global__ void relu_forward_kernel1(int64_t pixels, int channels, const float* __restrict__ x, int x_stride,
                                     float* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = fmaxf(x[p * x_stride + c], 0.0f);
}

__global__ void relu_backward_kernel1(int64_t pixels, int channels, const float* __restrict__ dy, int dy_stride,
                                      const float* __restrict__ y, int y_stride, float beta, float* __restrict__ dx,
                                      int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  const float gradient = y[p * y_stride + c] > 0.0f ? dy[p * dy_stride + c] : 0.0f;
  float& out = dx[p * dx_stride + c];
  out = beta == 0.0f ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
}

// Version 2: i indexes groups of four channels.
__global__ void relu_forward_kernel2(int64_t pixels, int quads, const float* __restrict__ x, int x_stride,
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

__global__ void relu_backward_kernel2(int64_t pixels, int quads, const float* __restrict__ dy, int dy_stride,
                                      const float* __restrict__ y, int y_stride, float beta, float* __restrict__ dx,
                                      int dx_stride) {
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
    launch_flat(KERNEL(relu_forward_kernel2), pixels * quads, stream, pixels, quads, x, x_stride, y, y_stride);
    return;
  }
  launch_flat(KERNEL(relu_forward_kernel1), pixels * channels, stream, pixels, channels, x, x_stride, y, y_stride);
}

template <DeviceKind D>
void Relu<D>::backward(int64_t pixels, int channels, const float* dy, int dy_stride, const float* y, int y_stride,
                       float beta, float* dx, int dx_stride, Stream stream, int version) {
  if (pixels * channels == 0) return;
  if (version != 1 && quads_fit({dy, y, dx}, {channels, dy_stride, y_stride, dx_stride})) {
    const int quads = channels / 4;
    launch_flat(KERNEL(relu_backward_kernel2), pixels * quads, stream, pixels, quads, dy, dy_stride, y, y_stride, beta,
                dx, dx_stride);
    return;
  }
  launch_flat(KERNEL(relu_backward_kernel1), pixels * channels, stream, pixels, channels, dy, dy_stride, y, y_stride,
              beta, dx, dx_stride);
}

template struct Relu<KERNEL_DEVICE>;

}  // namespace unet
