// relu: the CPU reference (relu.h).
#include <cstdint>

#include "kernels/relu.h"

#include <vector>

#include "kernels/bf16_cpu.h"

namespace unet::cpu {

template <class T>
void relu_forward(int64_t pixels, int channels, const T* x, int x_stride, T* y, int y_stride) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) {
      const T v = x[p * x_stride + c];
      y[p * y_stride + c] = v > T(0) ? v : T(0);
    }
  }
}

template <class T>
void relu_backward(int64_t pixels, int channels, const T* dy, int dy_stride, const T* y, int y_stride, T beta, T* dx,
                   int dx_stride) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) {
      const T gradient = y[p * y_stride + c] > T(0) ? dy[p * dy_stride + c] : T(0);
      T& out = dx[p * dx_stride + c];
      out = beta == T(0) ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
    }
  }
}

template void relu_forward(int64_t, int, const float*, int, float*, int);
template void relu_forward(int64_t, int, const double*, int, double*, int);
template void relu_backward(int64_t, int, const float*, int, const float*, int, float, float*, int);
template void relu_backward(int64_t, int, const double*, int, const double*, int, double, double*, int);

}  // namespace unet::cpu

// ---------------------------------------------------------------------------------------------
// bf16

namespace unet::cpu {

template <class T>
void relu_forward_bf16(int64_t pixels, int channels, const bf16* x, int x_stride, bf16* y, int y_stride) {
  const std::vector<T> wide_x = widen_bf16<T>(x, pixels, channels, x_stride);
  std::vector<T> wide_y(static_cast<size_t>(strided_extent(pixels, channels, y_stride)));
  relu_forward(pixels, channels, wide_x.data(), x_stride, wide_y.data(), y_stride);
  round_to_bf16(wide_y, pixels, channels, y_stride, y);
}

template <class T>
void relu_backward_bf16(int64_t pixels, int channels, const bf16* dy, int dy_stride, const bf16* y, int y_stride,
                        T beta, bf16* dx, int dx_stride) {
  const std::vector<T> wide_dy = widen_bf16<T>(dy, pixels, channels, dy_stride);
  const std::vector<T> wide_y = widen_bf16<T>(y, pixels, channels, y_stride);
  std::vector<T> wide_dx = widen_bf16<T>(dx, pixels, channels, dx_stride);  // read only when beta != 0
  relu_backward(pixels, channels, wide_dy.data(), dy_stride, wide_y.data(), y_stride, beta, wide_dx.data(), dx_stride);
  round_to_bf16(wide_dx, pixels, channels, dx_stride, dx);
}

template void relu_forward_bf16<float>(int64_t, int, const bf16*, int, bf16*, int);
template void relu_forward_bf16<double>(int64_t, int, const bf16*, int, bf16*, int);
template void relu_backward_bf16(int64_t, int, const bf16*, int, const bf16*, int, float, bf16*, int);
template void relu_backward_bf16(int64_t, int, const bf16*, int, const bf16*, int, double, bf16*, int);

}  // namespace unet::cpu

namespace unet {

template <>
void Relu<DeviceKind::cpu>::forward(int64_t pixels, int channels, const bf16* x, int x_stride, bf16* y, int y_stride,
                                    Stream, int) {
  cpu::relu_forward_bf16<float>(pixels, channels, x, x_stride, y, y_stride);
}

template <>
void Relu<DeviceKind::cpu>::backward(int64_t pixels, int channels, const bf16* dy, int dy_stride, const bf16* y,
                                     int y_stride, float beta, bf16* dx, int dx_stride, Stream, int) {
  cpu::relu_backward_bf16(pixels, channels, dy, dy_stride, y, y_stride, beta, dx, dx_stride);
}

}  // namespace unet
