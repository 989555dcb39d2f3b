// concat along channels: y(p, 0:Ca) = a(p, :), y(p, Ca:Ca+Cb) = b(p, :);
// backward: da = beta*da + dy(p, 0:Ca), db = beta*db + dy(p, Ca:Ca+Cb).
//
// The U-Net does not call this: its up-convolution and its encoder write straight into the two
// channel slices of one buffer (pixel strides, conv2d.h), so the concatenation costs nothing. These
// kernels are for callers that cannot use that form, and the reference the zero-copy form is
// tested against.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace unet {

namespace cpu {

template <class T>
void concat_forward(int64_t pixels, const T* a, int a_channels, int a_stride, const T* b, int b_channels,
                    int b_stride, T* y, int y_stride);
template <class T>
void concat_backward(int64_t pixels, const T* dy, int dy_stride, int a_channels, int b_channels, T beta, T* da,
                     int da_stride, T* db, int db_stride);

}  // namespace cpu

template <DeviceKind D>
struct Concat {
  static constexpr int versions = 1;

  static void forward(int64_t pixels,
                      const float* a, int a_channels, int a_stride,  // (pixels, Ca)
                      const float* b, int b_channels, int b_stride,  // (pixels, Cb)
                      float* y, int y_stride,                        // (pixels, Ca + Cb)
                      Stream stream, int version = 0);
  static void backward(int64_t pixels,
                       const float* dy, int dy_stride,  // (pixels, Ca + Cb)
                       int a_channels, int b_channels,
                       float beta,
                       float* da, int da_stride,        // (pixels, Ca)
                       float* db, int db_stride,        // (pixels, Cb)
                       Stream stream, int version = 0);
};

extern template struct Concat<DeviceKind::sim>;
extern template struct Concat<DeviceKind::cuda>;

}  // namespace unet
