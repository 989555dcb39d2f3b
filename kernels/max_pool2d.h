// max_pool2d: 2x2 windows, stride 2. An odd height or width drops the last row or column (floor,
// as PyTorch does).
//
//   forward   y(n,h,w,c) = max_{r,s in {0,1}} x(n, 2h+r, 2w+s, c)
//             argmax(n,h,w,c) = 2r+s of the first maximum in row-major window order (ties go to
//             the first, as PyTorch's; a NaN wins and propagates, as PyTorch's)
//   backward  dx(n,y,x,c) = beta*dx + (argmax(n, y/2, x/2, c) == 2(y%2) + x%2 ? dy(n, y/2, x/2, c) : 0)
//             and beta*dx alone for the dropped last row/column.
//
// The backward gathers: one thread per input element reads its window's argmax, so there are no
// atomics (darknet's way). Activations NHWC through pixel strides, as in conv2d.h.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace unet {

struct PoolShape {
  int n = 1, h = 1, w = 1, c = 1;  // the input; the output is (n, h/2, w/2, c)
};

namespace cpu {

template <class T>
void max_pool2d_forward(const PoolShape& shape, const T* x, int x_stride, T* y, int y_stride, uint8_t* argmax);
template <class T>
void max_pool2d_backward(const PoolShape& shape, const T* dy, int dy_stride, const uint8_t* argmax, T beta, T* dx,
                         int dx_stride);

}  // namespace cpu

template <DeviceKind D>
struct MaxPool2d {
  static constexpr int versions = 2;

  static void forward(const PoolShape& shape,
                      const float* x, int x_stride,  // (N, H, W, C)
                      float* y, int y_stride,        // (N, H/2, W/2, C)
                      uint8_t* argmax,               // (N, H/2, W/2, C), dense
                      Stream stream, int version = 0);

  static void backward(const PoolShape& shape,
                       const float* dy, int dy_stride,  // (N, H/2, W/2, C)
                       const uint8_t* argmax,           // (N, H/2, W/2, C), dense
                       float beta,
                       float* dx, int dx_stride,        // (N, H, W, C)
                       Stream stream, int version = 0);
};

extern template struct MaxPool2d<DeviceKind::sim>;
extern template struct MaxPool2d<DeviceKind::cuda>;

// The cpu device: the reference in float, on the calling thread (no stream, one version), defined in
// max_pool2d_cpu.cpp. Declared here so that the compiler checks each against the launcher above.
template <>
void MaxPool2d<DeviceKind::cpu>::forward(const PoolShape&, const float*, int, float*, int, uint8_t*, Stream, int);
template <>
void MaxPool2d<DeviceKind::cpu>::backward(const PoolShape&, const float*, int, const uint8_t*, float, float*, int,
                                          Stream, int);

}  // namespace unet
