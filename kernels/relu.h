// relu: y = max(x, 0); dx = beta*dx + dy * (y > 0). Over `pixels` rows of `channels` values, each
// operand with its own pixel stride (NHWC slices, as in conv2d.h). The U-Net fuses ReLU into its
// convolutions; this op is the standalone form and the reference for that fusion.
//
// bf16 (the overloads taking bf16*): x, y, dy and dx are bf16, beta and the arithmetic fp32, and
// each output is rounded to bf16 once (forward: exact, a bf16 in is a bf16 out; backward with
// beta = 1: the prior dx widened, the sum rounded).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"

namespace unet {

namespace cpu {

template <class T>
void relu_forward(int64_t pixels, int channels, const T* x, int x_stride, T* y, int y_stride);
template <class T>
void relu_backward(int64_t pixels, int channels, const T* dy, int dy_stride, const T* y, int y_stride, T beta, T* dx,
                   int dx_stride);

// The bf16 references (kernels/bf16_cpu.h): widened to T, the reference above, rounded once.
template <class T>
void relu_forward_bf16(int64_t pixels, int channels, const bf16* x, int x_stride, bf16* y, int y_stride);
template <class T>
void relu_backward_bf16(int64_t pixels, int channels, const bf16* dy, int dy_stride, const bf16* y, int y_stride,
                        T beta, bf16* dx, int dx_stride);

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

  // bf16. Version 2 (and 0) moves eight channels per thread in 16-byte accesses where every
  // pointer is 16-byte aligned and channels and pixel strides are multiples of 8; otherwise, and
  // as version 1, one element per thread with 2-byte accesses.
  static void forward(int64_t pixels, int channels,
                      const bf16* x, int x_stride,  // (pixels, channels)
                      bf16* y, int y_stride,        // (pixels, channels)
                      Stream stream, int version = 0);
  static void backward(int64_t pixels, int channels,
                       const bf16* dy, int dy_stride,  // (pixels, channels)
                       const bf16* y, int y_stride,    // (pixels, channels), the forward's output
                       float beta,
                       bf16* dx, int dx_stride,        // (pixels, channels)
                       Stream stream, int version = 0);
};

extern template struct Relu<DeviceKind::sim>;
extern template struct Relu<DeviceKind::cuda>;

// The cpu device's bf16 path: the bf16 reference in float, on the calling thread (relu_cpu.cpp).
template <>
void Relu<DeviceKind::cpu>::forward(int64_t, int, const bf16*, int, bf16*, int, Stream, int);
template <>
void Relu<DeviceKind::cpu>::backward(int64_t, int, const bf16*, int, const bf16*, int, float, bf16*, int, Stream, int);

}  // namespace unet
