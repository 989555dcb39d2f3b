// max_pool2d: the CPU reference (max_pool2d.h).
#include <cstdint>

#include "kernels/max_pool2d.h"

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

// The cpu device's launchers (max_pool2d.h): the reference above, in float.
template <>
void MaxPool2d<DeviceKind::cpu>::forward(const PoolShape& shape, const float* x, int x_stride, float* y, int y_stride,
                                         uint8_t* argmax, Stream, int) {
  cpu::max_pool2d_forward(shape, x, x_stride, y, y_stride, argmax);
}

template <>
void MaxPool2d<DeviceKind::cpu>::backward(const PoolShape& shape, const float* dy, int dy_stride, const uint8_t* argmax,
                                          float beta, float* dx, int dx_stride, Stream, int) {
  cpu::max_pool2d_backward(shape, dy, dy_stride, argmax, beta, dx, dx_stride);
}

}  // namespace unet
