// conv_transpose2d: the U-Net's 2x2, stride-2 up-convolution, with bias.
//
//   forward          y(n, 2h+r, 2w+s, o) = b(o) + sum_i x(n,h,w,i) * W(i,r,s,o)
//   backward_data    dx(n,h,w,i)         = beta*dx + sum_{r,s,o} dy(n, 2h+r, 2w+s, o) * W(i,r,s,o)
//   backward_weight  dW(i,r,s,o)         = beta*dW + sum_{n,h,w} x(n,h,w,i) * dy(n, 2h+r, 2w+s, o)
//   backward_bias    db(o)               = beta*db + sum_{n,y,x} dy(n,y,x,o)
//
// for r, s in {0, 1}. This is the data gradient of a 2x2 stride-2 convolution with weights
// W(i,r,s,o) read as (out=i, r, s, in=o), as CUTLASS treats transposed convolution: forward here is
// that convolution's backward_data, and backward_data here is its forward. The kernels share that
// one piece of index maths (the window never overlaps: each output pixel has exactly one source).
//
// Layouts: activations NHWC through a pixel stride, as in conv2d.h; the input is (N, H, W, Cin) and
// the output (N, 2H, 2W, Cout). Weights W[Cin][2][2][Cout]; PyTorch's ConvTranspose2d weight
// [Cin][Cout][2][2] is converted at the checkpoint boundary.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"

namespace unet {

struct ConvTranspose2dShape {
  int n = 1, h = 1, w = 1;  // input batch, height, width; the output is 2h x 2w
  int c_in = 1, c_out = 1;
};

inline int64_t conv_transpose2d_macs(const ConvTranspose2dShape& s) {
  return int64_t{s.n} * s.h * s.w * 4 * s.c_in * s.c_out;
}

// The index maths the reference and every kernel share: input pixel p = (n, h, w), a flat index
// over N*H*W whose column w = p % width the caller already has, feeds output pixel
// (n, 2h + r, 2w + s), a flat index over N*2H*2W. Each output pixel has exactly one source.
UNET_HOST_DEVICE static inline int64_t conv_transpose2d_output_pixel(int64_t p, int w, int width, int r, int s) {
  return 4 * p - 2 * int64_t{w} + 2 * int64_t{r} * width + s;  // 4(nH + h)W + 2w, then the tap's row and column
}

namespace cpu {

template <class T>
void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const T* x, int x_stride, const T* weight,
                              const T* bias, T* y, int y_stride);
template <class T>
void conv_transpose2d_backward_data(const ConvTranspose2dShape& shape, const T* dy, int dy_stride, const T* weight,
                                    T beta, T* dx, int dx_stride);
template <class T>
void conv_transpose2d_backward_weight(const ConvTranspose2dShape& shape, const T* x, int x_stride, const T* dy,
                                      int dy_stride, T beta, T* dweight);
template <class T>
void conv_transpose2d_backward_bias(const ConvTranspose2dShape& shape, const T* dy, int dy_stride, T beta, T* dbias);

}  // namespace cpu

template <DeviceKind D>
struct ConvTranspose2d {
  static constexpr int versions = 2;

  static void forward(const ConvTranspose2dShape& shape,
                      const float* x, int x_stride,  // (N, H, W, Cin)
                      const float* weight,           // (Cin, 2, 2, Cout)
                      const float* bias,             // (Cout), or nullptr
                      float* y, int y_stride,        // (N, 2H, 2W, Cout)
                      Stream stream, int version = 0);

  static void backward_data(const ConvTranspose2dShape& shape,
                            const float* dy, int dy_stride,  // (N, 2H, 2W, Cout)
                            const float* weight,             // (Cin, 2, 2, Cout)
                            float beta,
                            float* dx, int dx_stride,        // (N, H, W, Cin)
                            Stream stream, int version = 0);

  static size_t backward_weight_workspace(const ConvTranspose2dShape& shape, int version = 0);
  static void backward_weight(const ConvTranspose2dShape& shape,
                              const float* x, int x_stride,    // (N, H, W, Cin)
                              const float* dy, int dy_stride,  // (N, 2H, 2W, Cout)
                              float beta,
                              float* dweight,                  // (Cin, 2, 2, Cout)
                              void* workspace,                 // backward_weight_workspace bytes
                              Stream stream, int version = 0);

  static size_t backward_bias_workspace(const ConvTranspose2dShape& shape);
  static void backward_bias(const ConvTranspose2dShape& shape,
                            const float* dy, int dy_stride,  // (N, 2H, 2W, Cout)
                            float beta,
                            float* dbias,                    // (Cout)
                            void* workspace,                 // backward_bias_workspace bytes
                            Stream stream);
};

extern template struct ConvTranspose2d<DeviceKind::sim>;
extern template struct ConvTranspose2d<DeviceKind::cuda>;

// The cpu device: the reference in float, on the calling thread (no stream, one version), defined in
// conv_transpose2d_cpu.cpp. Declared here so that the compiler checks each against the launcher above.
template <>
void ConvTranspose2d<DeviceKind::cpu>::forward(const ConvTranspose2dShape&, const float*, int, const float*,
                                               const float*, float*, int, Stream, int);
template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_data(const ConvTranspose2dShape&, const float*, int, const float*,
                                                     float, float*, int, Stream, int);
template <>
size_t ConvTranspose2d<DeviceKind::cpu>::backward_weight_workspace(const ConvTranspose2dShape&, int);
template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_weight(const ConvTranspose2dShape&, const float*, int, const float*,
                                                       int, float, float*, void*, Stream, int);
template <>
size_t ConvTranspose2d<DeviceKind::cpu>::backward_bias_workspace(const ConvTranspose2dShape&);
template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_bias(const ConvTranspose2dShape&, const float*, int, float, float*,
                                                     void*, Stream);

}  // namespace unet
