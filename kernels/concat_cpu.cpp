// concat along channels: the CPU reference (concat.h).
#include <cstdint>

#include "kernels/concat.h"

#include <vector>

#include "kernels/bf16_cpu.h"

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

// ---------------------------------------------------------------------------------------------
// bf16

namespace unet::cpu {

template <class T>
void concat_forward_bf16(int64_t pixels, const bf16* a, int a_channels, int a_stride, const bf16* b, int b_channels,
                         int b_stride, bf16* y, int y_stride) {
  const std::vector<T> wide_a = widen_bf16<T>(a, pixels, a_channels, a_stride);
  const std::vector<T> wide_b = widen_bf16<T>(b, pixels, b_channels, b_stride);
  const int channels = a_channels + b_channels;
  std::vector<T> wide_y(static_cast<size_t>(strided_extent(pixels, channels, y_stride)));
  concat_forward(pixels, wide_a.data(), a_channels, a_stride, wide_b.data(), b_channels, b_stride, wide_y.data(),
                 y_stride);
  round_to_bf16(wide_y, pixels, channels, y_stride, y);
}

template <class T>
void concat_backward_bf16(int64_t pixels, const bf16* dy, int dy_stride, int a_channels, int b_channels, T beta,
                          bf16* da, int da_stride, bf16* db, int db_stride) {
  const std::vector<T> wide_dy = widen_bf16<T>(dy, pixels, a_channels + b_channels, dy_stride);
  std::vector<T> wide_da = widen_bf16<T>(da, pixels, a_channels, da_stride);  // read only when beta != 0
  std::vector<T> wide_db = widen_bf16<T>(db, pixels, b_channels, db_stride);
  concat_backward(pixels, wide_dy.data(), dy_stride, a_channels, b_channels, beta, wide_da.data(), da_stride,
                  wide_db.data(), db_stride);
  round_to_bf16(wide_da, pixels, a_channels, da_stride, da);
  round_to_bf16(wide_db, pixels, b_channels, db_stride, db);
}

template void concat_forward_bf16<float>(int64_t, const bf16*, int, int, const bf16*, int, int, bf16*, int);
template void concat_forward_bf16<double>(int64_t, const bf16*, int, int, const bf16*, int, int, bf16*, int);
template void concat_backward_bf16(int64_t, const bf16*, int, int, int, float, bf16*, int, bf16*, int);
template void concat_backward_bf16(int64_t, const bf16*, int, int, int, double, bf16*, int, bf16*, int);

}  // namespace unet::cpu

namespace unet {

template <>
void Concat<DeviceKind::cpu>::forward(int64_t pixels, const bf16* a, int a_channels, int a_stride, const bf16* b,
                                      int b_channels, int b_stride, bf16* y, int y_stride, Stream, int) {
  cpu::concat_forward_bf16<float>(pixels, a, a_channels, a_stride, b, b_channels, b_stride, y, y_stride);
}

template <>
void Concat<DeviceKind::cpu>::backward(int64_t pixels, const bf16* dy, int dy_stride, int a_channels, int b_channels,
                                       float beta, bf16* da, int da_stride, bf16* db, int db_stride, Stream, int) {
  cpu::concat_backward_bf16(pixels, dy, dy_stride, a_channels, b_channels, beta, da, da_stride, db, db_stride);
}

}  // namespace unet
