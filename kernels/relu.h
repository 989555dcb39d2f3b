// relu: y = max(x, 0); dx = beta*dx + dy * (y > 0). Over `pixels` rows of `channels` values, each
// operand with its own pixel stride (NHWC slices, as in conv2d.h). The U-Net fuses ReLU into its
// convolutions; this op is the standalone form and the reference for that fusion.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace unet {

namespace cpu {

template <class T>
void relu_forward(int64_t pixels, int channels, const T* x, int x_stride, T* y, int y_stride);
template <class T>
void relu_backward(int64_t pixels, int channels, const T* dy, int dy_stride, const T* y, int y_stride, T beta, T* dx,
                   int dx_stride);

}  // namespace cpu

template <DeviceKind D>
struct Relu {
  static constexpr int versions = 2;

  static void forward(int64_t pixels, int channels,
                      const float* x, int x_stride,  // (pixels, channels)
                      float* y, int y_stride,        // (pixels, channels)
                      Stream stream, int version = 0);
  static void backward(int64_t pixels, int channels,
                       const float* dy, int dy_stride,  // (pixels, channels)
                       const float* y, int y_stride,    // (pixels, channels), the forward's output
                       float beta,
                       float* dx, int dx_stride,        // (pixels, channels)
                       Stream stream, int version = 0);
};

extern template struct Relu<DeviceKind::sim>;
extern template struct Relu<DeviceKind::cuda>;

}  // namespace unet
