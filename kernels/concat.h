// concat along channels: y(p, 0:Ca) = a(p, :), y(p, Ca:Ca+Cb) = b(p, :);
// backward: da = beta*da + dy(p, 0:Ca), db = beta*db + dy(p, Ca:Ca+Cb).
//
// The U-Net does not call this: its up-convolution and its encoder write straight into the two
// channel slices of one buffer (pixel strides, conv2d.h), so the concatenation costs nothing. These
// kernels are for callers that cannot use that form, and the reference the zero-copy form is
// tested against.
//
// bf16 (the overloads taking bf16*): every operand bf16. The forward is a copy (exact); the
// backward computes beta*d + dy in fp32 and rounds once (exact for beta = 0).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"

namespace unet {

namespace cpu {

template <class T>
void concat_forward(int64_t pixels, const T* a, int a_channels, int a_stride, const T* b, int b_channels,
                    int b_stride, T* y, int y_stride);
template <class T>
void concat_backward(int64_t pixels, const T* dy, int dy_stride, int a_channels, int b_channels, T beta, T* da,
                     int da_stride, T* db, int db_stride);

// The bf16 references (kernels/bf16_cpu.h): widened to T, the reference above, rounded once.
template <class T>
void concat_forward_bf16(int64_t pixels, const bf16* a, int a_channels, int a_stride, const bf16* b, int b_channels,
                         int b_stride, bf16* y, int y_stride);
template <class T>
void concat_backward_bf16(int64_t pixels, const bf16* dy, int dy_stride, int a_channels, int b_channels, T beta,
                          bf16* da, int da_stride, bf16* db, int db_stride);

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

  // bf16, versions 1 .. bf16_versions. Version 2 (and 0) moves eight channels per thread in
  // 16-byte accesses where every pointer is 16-byte aligned and Ca, Cb and every pixel stride are
  // multiples of 8; otherwise, and as version 1, one element per thread.
  static constexpr int bf16_versions = 2;
  static void forward(int64_t pixels,
                      const bf16* a, int a_channels, int a_stride,  // (pixels, Ca)
                      const bf16* b, int b_channels, int b_stride,  // (pixels, Cb)
                      bf16* y, int y_stride,                        // (pixels, Ca + Cb)
                      Stream stream, int version = 0);
  static void backward(int64_t pixels,
                       const bf16* dy, int dy_stride,  // (pixels, Ca + Cb)
                       int a_channels, int b_channels,
                       float beta,
                       bf16* da, int da_stride,        // (pixels, Ca)
                       bf16* db, int db_stride,        // (pixels, Cb)
                       Stream stream, int version = 0);
};

extern template struct Concat<DeviceKind::sim>;
extern template struct Concat<DeviceKind::cuda>;

// The cpu device's bf16 path: the bf16 reference in float, on the calling thread (concat_cpu.cpp).
template <>
void Concat<DeviceKind::cpu>::forward(int64_t, const bf16*, int, int, const bf16*, int, int, bf16*, int, Stream, int);
template <>
void Concat<DeviceKind::cpu>::backward(int64_t, const bf16*, int, int, int, float, bf16*, int, bf16*, int, Stream,
                                       int);

}  // namespace unet
