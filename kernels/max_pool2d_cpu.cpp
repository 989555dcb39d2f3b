// max_pool2d: the CPU reference (max_pool2d.h).
#include <cstdint>

#include "kernels/max_pool2d.h"

#include <vector>

#include "kernels/bf16_cpu.h"

namespace unet::cpu {

namespace {

// PyTorch's rule: a value wins if it is greater than the best so far or is NaN. So ties keep the
// first maximum, and the last NaN of a window wins (its output is NaN).
template <class T>
bool replaces(T candidate, T best) {
  return candidate > best || candidate != candidate;
}

}  // namespace

template <class T>
void max_pool2d_forward(const PoolShape& shape, const T* x, int x_stride, T* y, int y_stride, uint8_t* argmax) {
  const int out_h = shape.h / 2, out_w = shape.w / 2, c = shape.c;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < shape.n; ++n) {
    for (int oh = 0; oh < out_h; ++oh) {
      for (int ow = 0; ow < out_w; ++ow) {
        const int64_t out_pixel = (int64_t{n} * out_h + oh) * out_w + ow;
        for (int ch = 0; ch < c; ++ch) {
          T best = T(0);
          int best_index = 0;
          for (int k = 0; k < 4; ++k) {  // row-major window order: (0,0) (0,1) (1,0) (1,1)
            const int64_t in_pixel = (int64_t{n} * shape.h + 2 * oh + k / 2) * shape.w + 2 * ow + k % 2;
            const T v = x[in_pixel * x_stride + ch];
            if (k == 0 || replaces(v, best)) {
              best = v;
              best_index = k;
            }
          }
          y[out_pixel * y_stride + ch] = best;
          argmax[out_pixel * c + ch] = static_cast<uint8_t>(best_index);
        }
      }
    }
  }
}

template <class T>
void max_pool2d_backward(const PoolShape& shape, const T* dy, int dy_stride, const uint8_t* argmax, T beta, T* dx,
                         int dx_stride) {
  const int out_h = shape.h / 2, out_w = shape.w / 2, c = shape.c;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < shape.n; ++n) {
    for (int ih = 0; ih < shape.h; ++ih) {
      for (int iw = 0; iw < shape.w; ++iw) {
        const int64_t in_pixel = (int64_t{n} * shape.h + ih) * shape.w + iw;
        const int oh = ih / 2, ow = iw / 2;
        const bool pooled = oh < out_h && ow < out_w;  // false on the dropped row/column of an odd input
        const int64_t out_pixel = (int64_t{n} * out_h + oh) * out_w + ow;
        const int position = 2 * (ih % 2) + iw % 2;
        for (int ch = 0; ch < c; ++ch) {
          const T gradient =
              pooled && argmax[out_pixel * c + ch] == position ? dy[out_pixel * dy_stride + ch] : T(0);
          T& out = dx[in_pixel * dx_stride + ch];
          out = beta == T(0) ? gradient : beta * out + gradient;  // beta = 0 overwrites, even NaN
        }
      }
    }
  }
}

template void max_pool2d_forward(const PoolShape&, const float*, int, float*, int, uint8_t*);
template void max_pool2d_forward(const PoolShape&, const double*, int, double*, int, uint8_t*);
template void max_pool2d_backward(const PoolShape&, const float*, int, const uint8_t*, float, float*, int);
template void max_pool2d_backward(const PoolShape&, const double*, int, const uint8_t*, double, double*, int);

}  // namespace unet::cpu

namespace unet {

// The cpu device's launchers (max_pool2d.h): the branch-free loops (max_pool2d_fast_cpu.cpp) by default,
// version 1 the reference above in float.
template <>
void MaxPool2d<DeviceKind::cpu>::forward(const PoolShape& shape, const float* x, int x_stride, float* y, int y_stride,
                                         uint8_t* argmax, Stream, int version) {
  if (version == 1) {
    cpu::max_pool2d_forward(shape, x, x_stride, y, y_stride, argmax);
  } else {
    cpu::fast::max_pool2d_forward(shape, x, x_stride, y, y_stride, argmax);
  }
}

template <>
void MaxPool2d<DeviceKind::cpu>::backward(const PoolShape& shape, const float* dy, int dy_stride, const uint8_t* argmax,
                                          float beta, float* dx, int dx_stride, Stream, int version) {
  if (version == 1) {
    cpu::max_pool2d_backward(shape, dy, dy_stride, argmax, beta, dx, dx_stride);
  } else {
    cpu::fast::max_pool2d_backward(shape, dy, dy_stride, argmax, beta, dx, dx_stride);
  }
}

}  // namespace unet

// ---------------------------------------------------------------------------------------------
// bf16

namespace unet::cpu {

template <class T>
void max_pool2d_forward_bf16(const PoolShape& shape, const bf16* x, int x_stride, bf16* y, int y_stride,
                             uint8_t* argmax) {
  const int64_t inputs = int64_t{shape.n} * shape.h * shape.w;
  const int64_t outputs = int64_t{shape.n} * (shape.h / 2) * (shape.w / 2);
  const std::vector<T> wide_x = widen_bf16<T>(x, inputs, shape.c, x_stride);
  std::vector<T> wide_y(static_cast<size_t>(strided_extent(outputs, shape.c, y_stride)));
  max_pool2d_forward(shape, wide_x.data(), x_stride, wide_y.data(), y_stride, argmax);
  round_to_bf16(wide_y, outputs, shape.c, y_stride, y);
}

template <class T>
void max_pool2d_backward_bf16(const PoolShape& shape, const bf16* dy, int dy_stride, const uint8_t* argmax, T beta,
                              bf16* dx, int dx_stride) {
  const int64_t inputs = int64_t{shape.n} * shape.h * shape.w;
  const int64_t outputs = int64_t{shape.n} * (shape.h / 2) * (shape.w / 2);
  const std::vector<T> wide_dy = widen_bf16<T>(dy, outputs, shape.c, dy_stride);
  std::vector<T> wide_dx = widen_bf16<T>(dx, inputs, shape.c, dx_stride);  // read only when beta != 0
  max_pool2d_backward(shape, wide_dy.data(), dy_stride, argmax, beta, wide_dx.data(), dx_stride);
  round_to_bf16(wide_dx, inputs, shape.c, dx_stride, dx);
}

template void max_pool2d_forward_bf16<float>(const PoolShape&, const bf16*, int, bf16*, int, uint8_t*);
template void max_pool2d_forward_bf16<double>(const PoolShape&, const bf16*, int, bf16*, int, uint8_t*);
template void max_pool2d_backward_bf16(const PoolShape&, const bf16*, int, const uint8_t*, float, bf16*, int);
template void max_pool2d_backward_bf16(const PoolShape&, const bf16*, int, const uint8_t*, double, bf16*, int);

}  // namespace unet::cpu

namespace unet {

template <>
void MaxPool2d<DeviceKind::cpu>::forward(const PoolShape& shape, const bf16* x, int x_stride, bf16* y, int y_stride,
                                         uint8_t* argmax, Stream, int) {
  cpu::max_pool2d_forward_bf16<float>(shape, x, x_stride, y, y_stride, argmax);
}

template <>
void MaxPool2d<DeviceKind::cpu>::backward(const PoolShape& shape, const bf16* dy, int dy_stride, const uint8_t* argmax,
                                          float beta, bf16* dx, int dx_stride, Stream, int) {
  cpu::max_pool2d_backward_bf16(shape, dy, dy_stride, argmax, beta, dx, dx_stride);
}

}  // namespace unet
