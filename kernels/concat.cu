// concat along channels: the CUDA kernels and their launchers (concat.h).
//
// The U-Net does not launch these: its up-convolution and its encoder write into the two channel
// slices of one buffer through pixel strides, so its skip concatenation moves no bytes at all
// (docs/kernels/elementwise.md). These kernels serve callers that hold two separate tensors.
//
// Versions (run one alone with: test_kernels_sim "concat*"):
//   1  one thread per element of the concatenated tensor, (pixel, channel) from a flat index; the
//      channel says which operand it belongs to. Forward copies, backward splits (with beta).
//      Memory-bound: the same bytes as a copy, which is what it is.
// Each kernel is a template on the element type, `concat_<pass>_kernel<version><Element>`: float
// (version 1), and bf16: version 1 as above with bf16 operands; version 2 one octet (eight
// channels) per thread in 16-byte accesses, when Ca, Cb and the strides are multiples of 8 and
// every pointer is 16-byte aligned (an octet then lies whole in a or in b).
#include "kernels/concat.h"

#include <cstdint>

#include "kernels/bf16_vector.h"
#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels, specialised below for float (version 1) and bf16 (versions 1 and 2)

template <class Element>
__global__ void concat_forward_kernel1(int64_t pixels, const Element* __restrict__ a, int a_channels, int a_stride,
                                       const Element* __restrict__ b, int b_channels, int b_stride,
                                       Element* __restrict__ y, int y_stride);
template <class Element>
__global__ void concat_backward_kernel1(int64_t pixels, const Element* __restrict__ dy, int dy_stride, int a_channels,
                                        int b_channels, float beta, Element* __restrict__ da, int da_stride,
                                        Element* __restrict__ db, int db_stride);
template <class Element>
__global__ void concat_forward_kernel2(int64_t pixels, const Element* __restrict__ a, int a_channels, int a_stride,
                                       const Element* __restrict__ b, int b_channels, int b_stride,
                                       Element* __restrict__ y, int y_stride);
template <class Element>
__global__ void concat_backward_kernel2(int64_t pixels, const Element* __restrict__ dy, int dy_stride, int a_channels,
                                        int b_channels, float beta, Element* __restrict__ da, int da_stride,
                                        Element* __restrict__ db, int db_stride);

template <>
__global__ void concat_forward_kernel1<float>(int64_t pixels, const float* __restrict__ a, int a_channels, int a_stride,
                                              const float* __restrict__ b, int b_channels, int b_stride,
                                              float* __restrict__ y, int y_stride) {
  const int channels = a_channels + b_channels;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = c < a_channels ? a[p * a_stride + c] : b[p * b_stride + c - a_channels];
}

template <>
__global__ void concat_backward_kernel1<float>(int64_t pixels, const float* __restrict__ dy, int dy_stride,
                                               int a_channels, int b_channels, float beta, float* __restrict__ da,
                                               int da_stride, float* __restrict__ db, int db_stride) {
  const int channels = a_channels + b_channels;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  const float gradient = dy[p * dy_stride + c];
  float& out = c < a_channels ? da[p * da_stride + c] : db[p * db_stride + c - a_channels];
  out = beta == 0.0f ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
}

__device__ __forceinline__ float accumulate(float gradient, float beta, float previous) {
  return beta == 0.0f ? gradient : beta * previous + gradient;  // beta = 0 overwrites, even NaN
}

// bf16, version 1: one element per thread.
template <>
__global__ void concat_forward_kernel1<bf16>(int64_t pixels, const bf16* __restrict__ a, int a_channels, int a_stride,
                                             const bf16* __restrict__ b, int b_channels, int b_stride,
                                             bf16* __restrict__ y, int y_stride) {
  const int channels = a_channels + b_channels;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = c < a_channels ? a[p * a_stride + c] : b[p * b_stride + c - a_channels];
}

template <>
__global__ void concat_backward_kernel1<bf16>(int64_t pixels, const bf16* __restrict__ dy, int dy_stride,
                                              int a_channels, int b_channels, float beta, bf16* __restrict__ da,
                                              int da_stride, bf16* __restrict__ db, int db_stride) {
  const int channels = a_channels + b_channels;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  bf16& out = c < a_channels ? da[p * da_stride + c] : db[p * db_stride + c - a_channels];
  out = to_bf16(accumulate(to_float(dy[p * dy_stride + c]), beta, beta == 0.0f ? 0.0f : to_float(out)));
}

// bf16, version 2: i indexes octets of the concatenated channels.
template <>
__global__ void concat_forward_kernel2<bf16>(int64_t pixels, const bf16* __restrict__ a, int a_channels, int a_stride,
                                             const bf16* __restrict__ b, int b_channels, int b_stride,
                                             bf16* __restrict__ y, int y_stride) {
  const int octets = (a_channels + b_channels) / bf16_per_octet;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * octets) return;
  const int64_t p = i / octets;
  const int c = static_cast<int>(i - p * octets) * bf16_per_octet;
  const bf16* source = c < a_channels ? a + p * a_stride + c : b + p * b_stride + c - a_channels;
  *reinterpret_cast<uint4*>(y + p * y_stride + c) = *reinterpret_cast<const uint4*>(source);
}

template <>
__global__ void concat_backward_kernel2<bf16>(int64_t pixels, const bf16* __restrict__ dy, int dy_stride,
                                              int a_channels, int b_channels, float beta, bf16* __restrict__ da,
                                              int da_stride, bf16* __restrict__ db, int db_stride) {
  const int octets = (a_channels + b_channels) / bf16_per_octet;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * octets) return;
  const int64_t p = i / octets;
  const int c = static_cast<int>(i - p * octets) * bf16_per_octet;
  const Octet gradient = load_octet(dy + p * dy_stride + c);
  bf16* target = c < a_channels ? da + p * da_stride + c : db + p * db_stride + c - a_channels;
  Octet out = beta == 0.0f ? Octet{} : load_octet(target);
  for (int j = 0; j < bf16_per_octet; ++j) out.v[j] = accumulate(gradient.v[j], beta, out.v[j]);
  store_octet(target, out);
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void Concat<D>::forward(int64_t pixels, const float* a, int a_channels, int a_stride, const float* b, int b_channels,
                        int b_stride, float* y, int y_stride, Stream stream, int /*version: only 1*/) {
  const int64_t elements = pixels * (a_channels + b_channels);
  if (elements == 0) return;
  launch_flat(KERNEL(concat_forward_kernel1<float>), elements, stream, pixels, a, a_channels, a_stride, b, b_channels,
              b_stride, y, y_stride);
}

template <DeviceKind D>
void Concat<D>::backward(int64_t pixels, const float* dy, int dy_stride, int a_channels, int b_channels, float beta,
                         float* da, int da_stride, float* db, int db_stride, Stream stream, int /*version: only 1*/) {
  const int64_t elements = pixels * (a_channels + b_channels);
  if (elements == 0) return;
  launch_flat(KERNEL(concat_backward_kernel1<float>), elements, stream, pixels, dy, dy_stride, a_channels, b_channels,
              beta, da, da_stride, db, db_stride);
}

template <DeviceKind D>
void Concat<D>::forward(int64_t pixels, const bf16* a, int a_channels, int a_stride, const bf16* b, int b_channels,
                        int b_stride, bf16* y, int y_stride, Stream stream, int version) {
  const int channels = a_channels + b_channels;
  if (pixels * channels == 0) return;
  if (version != 1 && octets_fit({a, b, y}, {a_channels, b_channels, a_stride, b_stride, y_stride})) {
    launch_flat(KERNEL(concat_forward_kernel2<bf16>), pixels * (channels / bf16_per_octet), stream, pixels, a,
                a_channels, a_stride, b, b_channels, b_stride, y, y_stride);
    return;
  }
  launch_flat(KERNEL(concat_forward_kernel1<bf16>), pixels * channels, stream, pixels, a, a_channels, a_stride, b,
              b_channels, b_stride, y, y_stride);
}

template <DeviceKind D>
void Concat<D>::backward(int64_t pixels, const bf16* dy, int dy_stride, int a_channels, int b_channels, float beta,
                         bf16* da, int da_stride, bf16* db, int db_stride, Stream stream, int version) {
  const int channels = a_channels + b_channels;
  if (pixels * channels == 0) return;
  if (version != 1 && octets_fit({dy, da, db}, {a_channels, b_channels, dy_stride, da_stride, db_stride})) {
    launch_flat(KERNEL(concat_backward_kernel2<bf16>), pixels * (channels / bf16_per_octet), stream, pixels, dy,
                dy_stride, a_channels, b_channels, beta, da, da_stride, db, db_stride);
    return;
  }
  launch_flat(KERNEL(concat_backward_kernel1<bf16>), pixels * channels, stream, pixels, dy, dy_stride, a_channels,
              b_channels, beta, da, da_stride, db, db_stride);
}

template struct Concat<KERNEL_DEVICE>;

}  // namespace unet
