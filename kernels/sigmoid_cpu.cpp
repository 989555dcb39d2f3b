// sigmoid: the CPU reference (sigmoid.h).
#include <cmath>
#include <cstdint>

#include "kernels/sigmoid.h"

#include <vector>

#include "kernels/bf16_cpu.h"

namespace unet::cpu {

namespace {

// exp of a non-positive number only, so nothing overflows: for x = -1e4, exp(x) underflows to 0
// and the result is 0, where 1 / (1 + exp(-x)) would compute exp(1e4) = inf first.
template <class T>
T stable_sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

}  // namespace

template <class T>
void sigmoid_forward(int64_t pixels, int channels, const T* x, int x_stride, T* y, int y_stride) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) y[p * y_stride + c] = stable_sigmoid(x[p * x_stride + c]);
  }
}

template <class T>
void sigmoid_backward(int64_t pixels, int channels, const T* dy, int dy_stride, const T* y, int y_stride, T beta,
                      T* dx, int dx_stride) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) {
      const T s = y[p * y_stride + c];
      const T gradient = dy[p * dy_stride + c] * s * (T(1) - s);
      T& out = dx[p * dx_stride + c];
      out = beta == T(0) ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
    }
  }
}

template void sigmoid_forward(int64_t, int, const float*, int, float*, int);
template void sigmoid_forward(int64_t, int, const double*, int, double*, int);
template void sigmoid_backward(int64_t, int, const float*, int, const float*, int, float, float*, int);
template void sigmoid_backward(int64_t, int, const double*, int, const double*, int, double, double*, int);

}  // namespace unet::cpu

namespace unet {

template <>
void Sigmoid<DeviceKind::cpu>::forward(int64_t pixels, int channels, const float* x, int x_stride, float* y, int y_stride,
                                       Stream, int) {
  cpu::sigmoid_forward(pixels, channels, x, x_stride, y, y_stride);
}

}  // namespace unet

// ---------------------------------------------------------------------------------------------
// bf16

namespace unet::cpu {

template <class T>
void sigmoid_forward_bf16(int64_t pixels, int channels, const bf16* x, int x_stride, T* y, int y_stride) {
  const std::vector<T> wide_x = widen_bf16<T>(x, pixels, channels, x_stride);
  sigmoid_forward(pixels, channels, wide_x.data(), x_stride, y, y_stride);
}

template void sigmoid_forward_bf16(int64_t, int, const bf16*, int, float*, int);
template void sigmoid_forward_bf16(int64_t, int, const bf16*, int, double*, int);

}  // namespace unet::cpu

namespace unet {

template <>
void Sigmoid<DeviceKind::cpu>::forward(int64_t pixels, int channels, const bf16* x, int x_stride, float* y,
                                       int y_stride, Stream, int) {
  cpu::sigmoid_forward_bf16(pixels, channels, x, x_stride, y, y_stride);
}

}  // namespace unet
