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
//
// bf16 (the overloads taking bf16*): x, y, dy and dx are bf16, the argmax bytes as in fp32. The
// forward is exact (it picks one of its inputs); the backward computes beta*dx + gradient in fp32
// and rounds once (exact for beta = 0).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"

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

// The cpu device's kernels: the same definitions and arguments, float only, written for the
// compiler's vectoriser (max_pool2d_fast_cpu.cpp).
namespace fast {
void max_pool2d_forward(const PoolShape& shape, const float* x, int x_stride, float* y, int y_stride,
                        uint8_t* argmax);
void max_pool2d_backward(const PoolShape& shape, const float* dy, int dy_stride, const uint8_t* argmax, float beta,
                         float* dx, int dx_stride);
}  // namespace fast

// The bf16 references (kernels/bf16_cpu.h): widened to T, the reference above, rounded once.
template <class T>
void max_pool2d_forward_bf16(const PoolShape& shape, const bf16* x, int x_stride, bf16* y, int y_stride,
                             uint8_t* argmax);
template <class T>
void max_pool2d_backward_bf16(const PoolShape& shape, const bf16* dy, int dy_stride, const uint8_t* argmax, T beta,
                              bf16* dx, int dx_stride);

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

  // bf16. Version 2 (and 0) takes eight channels per thread: 16-byte accesses of x, y, dy and dx
  // and one 8-byte access of eight argmax bytes, where the bf16 pointers are 16-byte aligned, the
  // argmax 8-byte aligned and C and the pixel strides multiples of 8; otherwise, and as version 1,
  // one element per thread.
  static void forward(const PoolShape& shape,
                      const bf16* x, int x_stride,  // (N, H, W, C)
                      bf16* y, int y_stride,        // (N, H/2, W/2, C)
                      uint8_t* argmax,              // (N, H/2, W/2, C), dense
                      Stream stream, int version = 0);
  static void backward(const PoolShape& shape,
                       const bf16* dy, int dy_stride,  // (N, H/2, W/2, C)
                       const uint8_t* argmax,          // (N, H/2, W/2, C), dense
                       float beta,
                       bf16* dx, int dx_stride,        // (N, H, W, C)
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
// The cpu device's bf16 path: the bf16 reference in float (max_pool2d_cpu.cpp).
template <>
void MaxPool2d<DeviceKind::cpu>::forward(const PoolShape&, const bf16*, int, bf16*, int, uint8_t*, Stream, int);
template <>
void MaxPool2d<DeviceKind::cpu>::backward(const PoolShape&, const bf16*, int, const uint8_t*, float, bf16*, int,
                                          Stream, int);

}  // namespace unet
