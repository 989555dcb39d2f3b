// conv_transpose2d: the CPU reference (conv_transpose2d.h). Each input pixel feeds four output
// pixels, one per tap (r, s), through conv_transpose2d_output_pixel. Loops are ordered so that the
// innermost runs over contiguous channels, and parallel over what each pass writes: input pixels
// for forward and backward_data, input channels (rows of dW) for the weight gradient, output
// channels for the bias gradient.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/conv_transpose2d.h"

namespace unet::cpu {

namespace {

template <class T>
void write_gradient(T* out, T value, T beta) {
  *out = beta == T(0) ? value : beta * *out + value;  // beta = 0 overwrites, even NaN
}

// Below this many multiply-adds a parallel region costs more than it saves (and the gradient
// checks run thousands of tiny convolutions).
bool worth_parallel(const ConvTranspose2dShape& s) { return conv_transpose2d_macs(s) >= (int64_t{1} << 16); }

}  // namespace

template <class T>
void conv_transpose2d_forward(const ConvTranspose2dShape& s, const T* x, int x_stride, const T* weight,
                              const T* bias, T* y, int y_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
#pragma omp parallel if (worth_parallel(s))
  {
    std::vector<T> sum(s.c_out);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pixels; ++p) {
      const int w = static_cast<int>(p % s.w);
      for (int tap = 0; tap < 4; ++tap) {
        for (int o = 0; o < s.c_out; ++o) sum[o] = bias ? bias[o] : T(0);
        for (int i = 0; i < s.c_in; ++i) {
          const T in = x[p * x_stride + i];
          const T* wt = weight + (int64_t{i} * 4 + tap) * s.c_out;
          for (int o = 0; o < s.c_out; ++o) sum[o] += in * wt[o];
        }
        T* out = y + conv_transpose2d_output_pixel(p, w, s.w, tap / 2, tap % 2) * y_stride;
        std::copy(sum.begin(), sum.end(), out);
      }
    }
  }
}

template <class T>
void conv_transpose2d_backward_data(const ConvTranspose2dShape& s, const T* dy, int dy_stride, const T* weight,
                                    T beta, T* dx, int dx_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
#pragma omp parallel for schedule(static) if (worth_parallel(s))
  for (int64_t p = 0; p < pixels; ++p) {
    const int w = static_cast<int>(p % s.w);
    for (int i = 0; i < s.c_in; ++i) {
      T sum = T(0);
      for (int tap = 0; tap < 4; ++tap) {
        const T* g = dy + conv_transpose2d_output_pixel(p, w, s.w, tap / 2, tap % 2) * dy_stride;
        const T* wt = weight + (int64_t{i} * 4 + tap) * s.c_out;
        for (int o = 0; o < s.c_out; ++o) sum += g[o] * wt[o];
      }
      write_gradient(&dx[p * dx_stride + i], sum, beta);
    }
  }
}

template <class T>
void conv_transpose2d_backward_weight(const ConvTranspose2dShape& s, const T* x, int x_stride, const T* dy,
                                      int dy_stride, T beta, T* dweight) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const int64_t weight_row = int64_t{4} * s.c_out;  // dW(i, ., ., .)
#pragma omp parallel if (worth_parallel(s))
  {
    std::vector<T> sum(weight_row);
#pragma omp for schedule(static)
    for (int i = 0; i < s.c_in; ++i) {
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t p = 0; p < pixels; ++p) {
        const T in = x[p * x_stride + i];
        const int w = static_cast<int>(p % s.w);
        for (int tap = 0; tap < 4; ++tap) {
          const T* g = dy + conv_transpose2d_output_pixel(p, w, s.w, tap / 2, tap % 2) * dy_stride;
          T* acc = sum.data() + tap * s.c_out;
          for (int o = 0; o < s.c_out; ++o) acc[o] += in * g[o];
        }
      }
      for (int64_t j = 0; j < weight_row; ++j) write_gradient(&dweight[i * weight_row + j], sum[j], beta);
    }
  }
}

template <class T>
void conv_transpose2d_backward_bias(const ConvTranspose2dShape& s, const T* dy, int dy_stride, T beta, T* dbias) {
  const int64_t out_pixels = int64_t{s.n} * 2 * s.h * 2 * s.w;
#pragma omp parallel for schedule(static) if (worth_parallel(s))
  for (int o = 0; o < s.c_out; ++o) {
    T sum = T(0);
    for (int64_t q = 0; q < out_pixels; ++q) sum += dy[q * dy_stride + o];
    write_gradient(&dbias[o], sum, beta);
  }
}

#define UNET_CONV_TRANSPOSE2D_REFERENCE(T)                                                                        \
  template void conv_transpose2d_forward(const ConvTranspose2dShape&, const T*, int, const T*, const T*, T*, int); \
  template void conv_transpose2d_backward_data(const ConvTranspose2dShape&, const T*, int, const T*, T, T*, int);  \
  template void conv_transpose2d_backward_weight(const ConvTranspose2dShape&, const T*, int, const T*, int, T, T*); \
  template void conv_transpose2d_backward_bias(const ConvTranspose2dShape&, const T*, int, T, T*);
UNET_CONV_TRANSPOSE2D_REFERENCE(float)
UNET_CONV_TRANSPOSE2D_REFERENCE(double)
#undef UNET_CONV_TRANSPOSE2D_REFERENCE

}  // namespace unet::cpu

namespace unet {

// The cpu device's launchers (conv_transpose2d.h): the reference above, in float.
template <>
void ConvTranspose2d<DeviceKind::cpu>::forward(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                               const float* weight, const float* bias, float* y, int y_stride, Stream,
                                               int) {
  cpu::conv_transpose2d_forward(shape, x, x_stride, weight, bias, y, y_stride);
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_data(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                                     const float* weight, float beta, float* dx, int dx_stride, Stream,
                                                     int) {
  cpu::conv_transpose2d_backward_data(shape, dy, dy_stride, weight, beta, dx, dx_stride);
}

template <>
size_t ConvTranspose2d<DeviceKind::cpu>::backward_weight_workspace(const ConvTranspose2dShape&, int) {
  return 0;
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_weight(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                                       const float* dy, int dy_stride, float beta, float* dweight,
                                                       void*, Stream, int) {
  cpu::conv_transpose2d_backward_weight(shape, x, x_stride, dy, dy_stride, beta, dweight);
}

template <>
size_t ConvTranspose2d<DeviceKind::cpu>::backward_bias_workspace(const ConvTranspose2dShape&) {
  return 0;
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_bias(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                                     float beta, float* dbias, void*, Stream) {
  cpu::conv_transpose2d_backward_bias(shape, dy, dy_stride, beta, dbias);
}

}  // namespace unet
