// concat along channels: the CPU reference (concat.h).
#include <cstdint>

#include "kernels/concat.h"

namespace unet::cpu {

template <class T>
void concat_forward(int64_t pixels, const T* a, int a_channels, int a_stride, const T* b, int b_channels,
                    int b_stride, T* y, int y_stride) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < a_channels; ++c) y[p * y_stride + c] = a[p * a_stride + c];
    for (int c = 0; c < b_channels; ++c) y[p * y_stride + a_channels + c] = b[p * b_stride + c];
  }
}

template <class T>
void concat_backward(int64_t pixels, const T* dy, int dy_stride, int a_channels, int b_channels, T beta, T* da,
                     int da_stride, T* db, int db_stride) {
  // beta = 0 overwrites, even NaN.
  const auto update = [beta](T& out, T gradient) { out = beta == T(0) ? gradient : beta * out + gradient; };
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < a_channels; ++c) update(da[p * da_stride + c], dy[p * dy_stride + c]);
    for (int c = 0; c < b_channels; ++c) update(db[p * db_stride + c], dy[p * dy_stride + a_channels + c]);
  }
}

template void concat_forward(int64_t, const float*, int, int, const float*, int, int, float*, int);
template void concat_forward(int64_t, const double*, int, int, const double*, int, int, double*, int);
template void concat_backward(int64_t, const float*, int, int, int, float, float*, int, float*, int);
template void concat_backward(int64_t, const double*, int, int, int, double, double*, int, double*, int);

}  // namespace unet::cpu
