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
//
// Precision. The fp32 overloads compute in fp32 (versions 1 .. `versions`) or, at
// `tensor_core_version`, in TF32 on the tensor cores: x, dy and the weights rounded to tf32
// (cvt.rna) as the GEMM reads them, fp32 accumulation. The bf16 overloads take bf16 activations
// and activation gradients and the bf16 copy of the weights, accumulate in fp32 and round each
// bf16 output once (dx = beta dx + sum is read, added in fp32 and rounded once); the bias, dW and
// db stay fp32. cpu::conv_transpose2d_*_tf32 and *_bf16 are the references at those rounding
// points. The bf16 kernels accept any pixel stride >= C and any 2-byte-aligned pointer; version 3
// takes its 16-byte copies only where pointers are 16-byte aligned and the pixel strides, Cin and
// Cout multiples of 8, and copies element by element otherwise (the same tiles and tensor cores,
// slower copies). backward_bias has one bf16 version.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"

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

// The references at the rounding points of the TF32 tensor-core kernels (version 3): x, dy and
// the weights rounded to tf32 where the kernels round them, the products and their sums in T, the
// bias added unrounded. They differ from the kernels only by the order (and, on hardware, the
// internal precision) of the additions.
template <class T>
void conv_transpose2d_forward_tf32(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                   const float* weight, const float* bias, T* y, int y_stride);
template <class T>
void conv_transpose2d_backward_data_tf32(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                         const float* weight, T beta, T* dx, int dx_stride);
template <class T>
void conv_transpose2d_backward_weight_tf32(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                           const float* dy, int dy_stride, T beta, T* dweight);

// The references of the bf16 overloads: the bf16 operands widened exactly, the products and sums in
// T, the result left in T (unrounded: the caller rounds it to bf16 where the kernel writes bf16).
// backward_data's dx holds the prior dx, widened, for beta.
template <class T>
void conv_transpose2d_forward_bf16(const ConvTranspose2dShape& shape, const bf16* x, int x_stride, const bf16* weight,
                                   const float* bias, T* y, int y_stride);
template <class T>
void conv_transpose2d_backward_data_bf16(const ConvTranspose2dShape& shape, const bf16* dy, int dy_stride,
                                         const bf16* weight, T beta, T* dx, int dx_stride);
template <class T>
void conv_transpose2d_backward_weight_bf16(const ConvTranspose2dShape& shape, const bf16* x, int x_stride,
                                           const bf16* dy, int dy_stride, T beta, T* dweight);
template <class T>
void conv_transpose2d_backward_bias_bf16(const ConvTranspose2dShape& shape, const bf16* dy, int dy_stride, T beta,
                                         T* dbias);

// The cpu device's kernels: the same passes and arguments, float only, as GEMMs with AVX2/FMA or
// generic micro-kernels (conv_transpose2d_fast_cpu.cpp, gemm_cpu.h, chosen by cpu_kernels.h). The
// results are the same bits for any thread count.
namespace fast {
void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const float* x, int x_stride, const float* weight,
                              const float* bias, float* y, int y_stride);
void conv_transpose2d_backward_data(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                    const float* weight, float beta, float* dx, int dx_stride);
void conv_transpose2d_backward_weight(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                      const float* dy, int dy_stride, float beta, float* dweight);
void conv_transpose2d_backward_bias(const ConvTranspose2dShape& shape, const float* dy, int dy_stride, float beta,
                                    float* dbias);
}  // namespace fast

}  // namespace cpu

// The CUDA kernels' launchers, compiled from conv_transpose2d.cu for sim and for cuda. `version` 0 is
// the default (fastest), 1 the simplest correct kernel; the versions are listed in
// conv_transpose2d.cu's header. The fp32 overloads: versions 1 .. `versions` in fp32,
// `tensor_core_version` in TF32 (version 0 is version 2). The bf16 overloads: version 1 and
// `tensor_core_version` (version 0 is version 3). backward_weight_workspace is the same for both
// overloads at the same version, and the same for versions 0, 2 and 3 (one split of the pixels).
template <DeviceKind D>
struct ConvTranspose2d {
  static constexpr int versions = 2;
  static constexpr int tensor_core_version = 3;

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

  // bf16: activations and their gradients bf16, the weights the bf16 copy, bias and gradients fp32.
  static void forward(const ConvTranspose2dShape& shape,
                      const bf16* x, int x_stride,  // (N, H, W, Cin)
                      const bf16* weight,           // (Cin, 2, 2, Cout)
                      const float* bias,            // (Cout), or nullptr
                      bf16* y, int y_stride,        // (N, 2H, 2W, Cout)
                      Stream stream, int version = 0);
  static void backward_data(const ConvTranspose2dShape& shape,
                            const bf16* dy, int dy_stride,  // (N, 2H, 2W, Cout)
                            const bf16* weight,             // (Cin, 2, 2, Cout)
                            float beta,
                            bf16* dx, int dx_stride,        // (N, H, W, Cin)
                            Stream stream, int version = 0);
  static void backward_weight(const ConvTranspose2dShape& shape,
                              const bf16* x, int x_stride,    // (N, H, W, Cin)
                              const bf16* dy, int dy_stride,  // (N, 2H, 2W, Cout)
                              float beta,
                              float* dweight,                 // (Cin, 2, 2, Cout)
                              void* workspace,                // backward_weight_workspace bytes
                              Stream stream, int version = 0);
  static void backward_bias(const ConvTranspose2dShape& shape,
                            const bf16* dy, int dy_stride,  // (N, 2H, 2W, Cout)
                            float beta,
                            float* dbias,                   // (Cout)
                            void* workspace,                // backward_bias_workspace bytes
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
// bf16 on the cpu device: the *_bf16 references in float, each bf16 output rounded once.
template <>
void ConvTranspose2d<DeviceKind::cpu>::forward(const ConvTranspose2dShape&, const bf16*, int, const bf16*,
                                               const float*, bf16*, int, Stream, int);
template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_data(const ConvTranspose2dShape&, const bf16*, int, const bf16*, float,
                                                     bf16*, int, Stream, int);
template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_weight(const ConvTranspose2dShape&, const bf16*, int, const bf16*, int,
                                                       float, float*, void*, Stream, int);
template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_bias(const ConvTranspose2dShape&, const bf16*, int, float, float*,
                                                     void*, Stream);

}  // namespace unet
