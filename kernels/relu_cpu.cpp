// relu: the CPU reference (relu.h).
#include <cstdint>

#include "kernels/relu.h"

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
