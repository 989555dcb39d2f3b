// sigmoid: the CUDA kernels and their launchers (sigmoid.h).
//
// Versions (run one alone with: test_kernels_sim "sigmoid*"):
//   1  one thread per element, (pixel, channel) from a flat index. The U-Net applies sigmoid once,
//      to its one-channel logits at inference, so there is no vectorised version: it is a small,
//      memory-bound pass (read 4 bytes, write 4 bytes per element).
#include "kernels/sigmoid.h"

#include <cstdint>

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

__global__ void sigmoid_forward_kernel1(int64_t pixels, int channels, const float* __restrict__ x, int x_stride,
                                        float* __restrict__ y, int y_stride) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= pixels * channels) return;
  const int64_t p = i / channels;
  const int c = static_cast<int>(i - p * channels);
  y[p * y_stride + c] = stable_sigmoid(x[p * x_stride + c]);
}

__global__ void sigmoid_backward_kernel1(int64_t pixels, int channels, const float* __restrict__ dy, int dy_stride,
                                         const float* __restrict__ y, int y_stride, float beta,
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

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void Sigmoid<D>::forward(int64_t pixels, int channels, const float* x, int x_stride, float* y, int y_stride,
                         Stream stream, int /*version: only 1*/) {
  if (pixels * channels == 0) return;
  launch_flat(KERNEL(sigmoid_forward_kernel1), pixels * channels, stream, pixels, channels, x, x_stride, y, y_stride);
}

template <DeviceKind D>
void Sigmoid<D>::backward(int64_t pixels, int channels, const float* dy, int dy_stride, const float* y, int y_stride,
                          float beta, float* dx, int dx_stride, Stream stream, int /*version: only 1*/) {
  if (pixels * channels == 0) return;
  launch_flat(KERNEL(sigmoid_backward_kernel1), pixels * channels, stream, pixels, channels, dy, dy_stride, y, y_stride,
              beta, dx, dx_stride);
}

template struct Sigmoid<KERNEL_DEVICE>;

}  // namespace unet
