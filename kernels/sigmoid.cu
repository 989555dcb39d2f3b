// sigmoid: the CUDA kernels and their launchers (sigmoid.h).
//
// Versions (run one alone with: test_kernels_sim "sigmoid*"):
//   1  one thread per element, (pixel, channel) from a flat index. The U-Net applies sigmoid once,
//      to its one-channel logits at inference, so there is no vectorised version: it is a small,
//      memory-bound pass (read 4 bytes, write 4 bytes per element).
// Each kernel is a template on the logits' element type, `sigmoid_<pass>_kernel<version><Element>`:
// float, and bf16 logits (forward only, fp32 probabilities): version 1 as above, reading 2 bytes;
// version 2 eight channels per thread, one 16-byte load and two 16-byte stores, when the pointers
// are 16-byte aligned and channels and strides multiples of 8. Dense operands are first seen as
// rows of eight elements, so the U-Net's dense one-channel logits take version 2 too.
#include "kernels/sigmoid.h"

#include <cstdint>

#include "kernels/bf16_vector.h"
#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels

// expf of a non-positive number only, so nothing overflows: for x = -1e4 the exponential
// underflows to 0 and the result is 0, where 1 / (1 + expf(-x)) would compute expf(1e4) = inf.
__device__ __forceinline__ float stable_sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

// The kernels, specialised below for float (version 1) and bf16 logits (versions 1 and 2).
template <class Element>
__global__ void sigmoid_forward_kernel1(int64_t pixels, int channels, const Element* __restrict__ x, int x_stride,
                                        float* __restrict__ y, int y_stride);
template <class Element>
__global__ void sigmoid_backward_kernel1(int64_t pixels, int channels, const Element* __restrict__ dy, int dy_stride,
                                         const Element* __restrict__ y, int y_stride, float beta,
                                         Element* __restrict__ dx, int dx_stride);
template <class Element>
__global__ void sigmoid_forward_kernel2(int64_t pixels, int octets, const Element* __restrict__ x, int x_stride,
                                        float* __restrict__ y, int y_stride);

template <>
__global__ void sigmoid_forward_kernel1<float>(int64_t pixels, int channels, const float* __restrict__ x, int x_stride,
                                               float* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = stable_sigmoid(x[p * x_stride + c]);
}

template <>
__global__ void sigmoid_backward_kernel1<float>(int64_t pixels, int channels, const float* __restrict__ dy,
                                                int dy_stride, const float* __restrict__ y, int y_stride, float beta,
                                                float* __restrict__ dx, int dx_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  const float s = y[p * y_stride + c];
  const float gradient = dy[p * dy_stride + c] * s * (1.0f - s);
  float& out = dx[p * dx_stride + c];
  out = beta == 0.0f ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
}

template <>
__global__ void sigmoid_forward_kernel1<bf16>(int64_t pixels, int channels, const bf16* __restrict__ x, int x_stride,
                                              float* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = stable_sigmoid(to_float(x[p * x_stride + c]));
}

template <>
__global__ void sigmoid_forward_kernel2<bf16>(int64_t pixels, int octets, const bf16* __restrict__ x, int x_stride,
                                              float* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * octets) return;
  const int64_t p = i / octets;
  const int c = static_cast<int>(i - p * octets) * bf16_per_octet;
  const Octet v = load_octet(x + p * x_stride + c);
  float4* out = reinterpret_cast<float4*>(y + p * y_stride + c);
  out[0] = make_float4(stable_sigmoid(v.v[0]), stable_sigmoid(v.v[1]), stable_sigmoid(v.v[2]), stable_sigmoid(v.v[3]));
  out[1] = make_float4(stable_sigmoid(v.v[4]), stable_sigmoid(v.v[5]), stable_sigmoid(v.v[6]), stable_sigmoid(v.v[7]));
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void Sigmoid<D>::forward(int64_t pixels, int channels, const float* x, int x_stride, float* y, int y_stride,
                         Stream stream, int /*version: only 1*/) {
  if (pixels * channels == 0) return;
  launch_flat(KERNEL(sigmoid_forward_kernel1<float>), pixels * channels, stream, pixels, channels, x, x_stride, y,
              y_stride);
}

template <DeviceKind D>
void Sigmoid<D>::backward(int64_t pixels, int channels, const float* dy, int dy_stride, const float* y, int y_stride,
                          float beta, float* dx, int dx_stride, Stream stream, int /*version: only 1*/) {
  if (pixels * channels == 0) return;
  launch_flat(KERNEL(sigmoid_backward_kernel1<float>), pixels * channels, stream, pixels, channels, dy, dy_stride, y,
              y_stride, beta, dx, dx_stride);
}

template <DeviceKind D>
void Sigmoid<D>::forward(int64_t pixels, int channels, const bf16* x, int x_stride, float* y, int y_stride,
                         Stream stream, int version) {
  if (pixels * channels == 0) return;
  if (x_stride == channels && y_stride == channels && pixels * channels % bf16_per_octet == 0) {
    pixels = pixels * channels / bf16_per_octet;
    channels = x_stride = y_stride = bf16_per_octet;
  }
  if (version != 1 && octets_fit({x, y}, {channels, x_stride, y_stride})) {
    const int octets = channels / bf16_per_octet;
    launch_flat(KERNEL(sigmoid_forward_kernel2<bf16>), pixels * octets, stream, pixels, octets, x, x_stride, y,
                y_stride);
    return;
  }
  launch_flat(KERNEL(sigmoid_forward_kernel1<bf16>), pixels * channels, stream, pixels, channels, x, x_stride, y,
              y_stride);
}

template struct Sigmoid<KERNEL_DEVICE>;

}  // namespace unet
