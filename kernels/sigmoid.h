// sigmoid: y = 1 / (1 + exp(-x)), computed without overflow for any finite x;
// dx = beta*dx + dy * y * (1 - y). Over `pixels` rows of `channels` values with pixel strides.
// No op calls it today: the losses fuse their own sigmoid, and eval and predict threshold the logits
// (a positive logit is a probability above 0.5). It is kept, tested, for probability outputs.
//
// bf16 (the forward overload taking const bf16*): bf16 logits in, fp32 probabilities out, so a
// probability is not rounded at all; there is no bf16 backward (nothing differentiates through a
// probability output).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"

namespace unet {

namespace cpu {

template <class T>
void sigmoid_forward(int64_t pixels, int channels, const T* x, int x_stride, T* y, int y_stride);
template <class T>
void sigmoid_backward(int64_t pixels, int channels, const T* dy, int dy_stride, const T* y, int y_stride, T beta,
                      T* dx, int dx_stride);

// The bf16 reference: x widened to T exactly, then the reference above.
template <class T>
void sigmoid_forward_bf16(int64_t pixels, int channels, const bf16* x, int x_stride, T* y, int y_stride);

}  // namespace cpu

template <DeviceKind D>
struct Sigmoid {
  static constexpr int versions = 1;

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

  // bf16 logits, versions 1 .. bf16_versions. Version 2 (and 0) takes eight channels per thread: a
  // 16-byte load of x and two 16-byte stores of y, where both pointers are 16-byte aligned and
  // channels and pixel strides are multiples of 8 (dense operands count as rows of eight, so a dense
  // one-channel map qualifies); otherwise, and as version 1, one element per thread.
  static constexpr int bf16_versions = 2;
  static void forward(int64_t pixels, int channels,
                      const bf16* x, int x_stride,  // (pixels, channels)
                      float* y, int y_stride,       // (pixels, channels)
                      Stream stream, int version = 0);
};

extern template struct Sigmoid<DeviceKind::sim>;
extern template struct Sigmoid<DeviceKind::cuda>;

// The cpu device: the reference in float, on the calling thread (no stream, one version), defined in
// sigmoid_cpu.cpp; test-time augmentation and ensembles use the forward (models/inference.h).
template <>
void Sigmoid<DeviceKind::cpu>::forward(int64_t, int, const float*, int, float*, int, Stream, int);
template <>
void Sigmoid<DeviceKind::cpu>::forward(int64_t, int, const bf16*, int, float*, int, Stream, int);

}  // namespace unet
