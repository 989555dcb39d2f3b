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
#include "kernels/concat.h"

#include <cstdint>

#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels

__global__ void concat_forward_kernel1(int64_t pixels, const float* __restrict__ a, int a_channels, int a_stride,
                                       const float* __restrict__ b, int b_channels, int b_stride,
                                       float* __restrict__ y, int y_stride) {
  const int channels = a_channels + b_channels;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = c < a_channels ? a[p * a_stride + c] : b[p * b_stride + c - a_channels];
}

__global__ void concat_backward_kernel1(int64_t pixels, const float* __restrict__ dy, int dy_stride, int a_channels,
                                        int b_channels, float beta, float* __restrict__ da, int da_stride,
                                        float* __restrict__ db, int db_stride) {
  const int channels = a_channels + b_channels;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  const float gradient = dy[p * dy_stride + c];
  float& out = c < a_channels ? da[p * da_stride + c] : db[p * db_stride + c - a_channels];
  out = beta == 0.0f ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
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
  launch_flat(KERNEL(concat_forward_kernel1), elements, stream, pixels, a, a_channels, a_stride, b, b_channels,
              b_stride, y, y_stride);
}

template <DeviceKind D>
void Concat<D>::backward(int64_t pixels, const float* dy, int dy_stride, int a_channels, int b_channels, float beta,
                         float* da, int da_stride, float* db, int db_stride, Stream stream, int /*version: only 1*/) {
  const int64_t elements = pixels * (a_channels + b_channels);
  if (elements == 0) return;
  launch_flat(KERNEL(concat_backward_kernel1), elements, stream, pixels, dy, dy_stride, a_channels, b_channels, beta,
              da, da_stride, db, db_stride);
}

template struct Concat<KERNEL_DEVICE>;

}  // namespace unet
