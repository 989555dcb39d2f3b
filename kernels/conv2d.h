// conv2d: k x k convolution, stride 1, 'same' zero padding (k odd), optional bias, fused ReLU.
//
//   forward          y(n,h,w,o)  = act(b(o) + sum_{r,s,i} x(n, h+r-k/2, w+s-k/2, i) * W(o,r,s,i))
//   backward_data    dx(n,h,w,i) = beta*dx + sum_{r,s,o} g(n, h-r+k/2, w-s+k/2, o) * W(o,r,s,i)
//   backward_weight  dW(o,r,s,i) = beta*dW + sum_{n,h,w} g(n,h,w,o) * x(n, h+r-k/2, w+s-k/2, i)
//   backward_bias    db(o)       = beta*db + sum_{n,h,w} g(n,h,w,o)
//
// where act is ReLU or the identity, and g = dy * (y > 0) when the forward fused ReLU (the caller
// passes the forward's output y as `relu_output`; nullptr means no ReLU: g = dy).
//
// Layouts. Activations are NHWC, read and written through a pixel stride (elements from one pixel
// to the next, >= the channel count): a channel slice of a wider buffer is a valid operand, which
// makes the U-Net's skip concatenation free. Weights are OHWI, W[Cout][k][k][Cin] (cuDNN's NHWC
// filter layout); PyTorch's Conv2d weight [Cout][Cin][k][k] is converted at the file boundary
// (ParameterStore::export_tensors / import_tensors, engine/parameters.h). Reductions over pixels
// (weight and bias gradients) are two-pass and tree-shaped through a caller-provided workspace: no
// floating-point atomics, the same bits on every run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/rounding.h"  // bf16

namespace unet {

struct Conv2dShape {
  int n = 1, h = 1, w = 1;  // batch, height, width (input and output)
  int c_in = 1, c_out = 1;
  int k = 3;  // odd
};

// Multiply-adds of one forward pass (each backward pass does as many).
inline int64_t conv2d_macs(const Conv2dShape& s) {
  return int64_t{s.n} * s.h * s.w * s.c_out * s.c_in * s.k * s.k;
}

namespace cpu {

// The reference: plain loops over the definitions above, T = float or double.
template <class T>
void conv2d_forward(const Conv2dShape& shape, const T* x, int x_stride, const T* weight, const T* bias, bool relu,
                    T* y, int y_stride);
template <class T>
void conv2d_backward_data(const Conv2dShape& shape, const T* dy, int dy_stride, const T* relu_output,
                          int relu_output_stride, const T* weight, T beta, T* dx, int dx_stride);
template <class T>
void conv2d_backward_weight(const Conv2dShape& shape, const T* x, int x_stride, const T* dy, int dy_stride,
                            const T* relu_output, int relu_output_stride, T beta, T* dweight);
template <class T>
void conv2d_backward_bias(const Conv2dShape& shape, const T* dy, int dy_stride, const T* relu_output,
                          int relu_output_stride, T beta, T* dbias);

// The reference at the rounding points of the TF32 tensor-core kernel (version 3): x and the
// weights rounded to tf32 (cvt.rna, kernels/rounding.h) where the kernel rounds them, the products
// and their sums in T, the bias added unrounded. It differs from the kernel only by the order
// (and, on hardware, the internal precision) of the additions.
template <class T>
void conv2d_forward_tf32(const Conv2dShape& shape, const float* x, int x_stride, const float* weight,
                         const float* bias, bool relu, T* y, int y_stride);
// The same for backward_data (g = dy, masked, and the weights rounded) and backward_weight (x and g
// rounded).
template <class T>
void conv2d_backward_data_tf32(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                               int relu_output_stride, const float* weight, T beta, T* dx, int dx_stride);
template <class T>
void conv2d_backward_weight_tf32(const Conv2dShape& shape, const float* x, int x_stride, const float* dy,
                                 int dy_stride, const float* relu_output, int relu_output_stride, T beta,
                                 T* dweight);
// The reference at the rounding points of the bf16 kernels: the bf16 operands (x or g, the mask,
// the weights' bf16 copy, a bf16 dx's prior value) widened exactly, products and sums in T (as the
// kernels' fp32 accumulators), the bias added unrounded, and a bf16 output (y, dx) rounded once, to
// nearest even, after ReLU and beta. The weight and bias gradients stay in T (fp32 in the kernels).
template <class T>
void conv2d_forward_bf16(const Conv2dShape& shape, const bf16* x, int x_stride, const bf16* weight, const float* bias,
                         bool relu, bf16* y, int y_stride);
template <class T>
void conv2d_backward_data_bf16(const Conv2dShape& shape, const bf16* dy, int dy_stride, const bf16* relu_output,
                               int relu_output_stride, const bf16* weight, T beta, bf16* dx, int dx_stride);
template <class T>
void conv2d_backward_weight_bf16(const Conv2dShape& shape, const bf16* x, int x_stride, const bf16* dy,
                                 int dy_stride, const bf16* relu_output, int relu_output_stride, T beta,
                                 T* dweight);
template <class T>
void conv2d_backward_bias_bf16(const Conv2dShape& shape, const bf16* dy, int dy_stride, const bf16* relu_output,
                               int relu_output_stride, T beta, T* dbias);

// The cpu device's kernels: the same passes and arguments, float only, as implicit GEMMs with
// AVX2/FMA or generic micro-kernels (conv2d_fast_cpu.cpp, gemm_cpu.h, chosen by cpu_kernels.h). The
// results are the same bits for any thread count.
namespace fast {
void conv2d_forward(const Conv2dShape& shape, const float* x, int x_stride, const float* weight, const float* bias,
                    bool relu, float* y, int y_stride);
void conv2d_backward_data(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, const float* weight, float beta, float* dx, int dx_stride);
void conv2d_backward_weight(const Conv2dShape& shape, const float* x, int x_stride, const float* dy, int dy_stride,
                            const float* relu_output, int relu_output_stride, float beta, float* dweight);
void conv2d_backward_bias(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, float beta, float* dbias);
}  // namespace fast

}  // namespace cpu

// The CUDA kernels' launchers, compiled from conv2d.cu for sim and for cuda. `version` 0 is the
// default (fastest); 1 is the first, simplest correct kernel, kept for teaching and testing. The
// versions are listed in conv2d.cu's header. Versions 1 .. `versions` compute in fp32;
// `tensor_core_version` in TF32 (backward_bias has one version for all), and is compared with
// cpu::conv2d_*_tf32.
template <DeviceKind D>
struct Conv2d {
  static constexpr int versions = 2;
  static constexpr int tensor_core_version = 3;
  static constexpr int bf16_default_version = 3;  // what a bf16 overload's version 0 runs

  static void forward(const Conv2dShape& shape,
                      const float* x, int x_stride,       // (N, H, W, Cin), pixel stride >= Cin
                      const float* weight,                // (Cout, k, k, Cin)
                      const float* bias,                  // (Cout), or nullptr
                      bool relu,
                      float* y, int y_stride,             // (N, H, W, Cout), pixel stride >= Cout
                      Stream stream, int version = 0);

  static void backward_data(const Conv2dShape& shape,
                            const float* dy, int dy_stride,                   // (N, H, W, Cout)
                            const float* relu_output, int relu_output_stride, // (N, H, W, Cout) y, or nullptr
                            const float* weight,                              // (Cout, k, k, Cin)
                            float beta,
                            float* dx, int dx_stride,                         // (N, H, W, Cin)
                            Stream stream, int version = 0);

  // Bytes of scratch backward_weight needs for this shape (0 allowed).
  static size_t backward_weight_workspace(const Conv2dShape& shape, int version = 0);
  static void backward_weight(const Conv2dShape& shape,
                              const float* x, int x_stride,                     // (N, H, W, Cin)
                              const float* dy, int dy_stride,                   // (N, H, W, Cout)
                              const float* relu_output, int relu_output_stride, // (N, H, W, Cout) y, or nullptr
                              float beta,
                              float* dweight,                                   // (Cout, k, k, Cin)
                              void* workspace,                                  // backward_weight_workspace bytes
                              Stream stream, int version = 0);

  static size_t backward_bias_workspace(const Conv2dShape& shape);
  static void backward_bias(const Conv2dShape& shape,
                            const float* dy, int dy_stride,                   // (N, H, W, Cout)
                            const float* relu_output, int relu_output_stride, // (N, H, W, Cout) y, or nullptr
                            float beta,
                            float* dbias,                                     // (Cout)
                            void* workspace,                                  // backward_bias_workspace bytes
                            Stream stream);

  // bf16: the same passes on bf16 activations, activation gradients and weights (the bf16 copy of
  // the fp32 master weights), fp32 bias, accumulation, weight and bias gradients; compared with
  // cpu::conv2d_*_bf16. Any pixel stride >= the channel count and any 2-byte aligned pointer.
  // `version` 0 is the fastest bf16 kernel (bf16_default_version); 1 the simplest (conv2d.cu).
  // A bf16 workspace is asked for with a bf16 value as the tag: backward_weight_workspace(s, bf16{}).
  static void forward(const Conv2dShape& shape,
                      const bf16* x, int x_stride,        // (N, H, W, Cin), pixel stride >= Cin
                      const bf16* weight,                 // (Cout, k, k, Cin)
                      const float* bias,                  // (Cout), or nullptr
                      bool relu,
                      bf16* y, int y_stride,              // (N, H, W, Cout), pixel stride >= Cout
                      Stream stream, int version = 0);

  // dx = round_bf16(beta * dx + sum): the prior dx is read as bf16, the sum added in fp32.
  static void backward_data(const Conv2dShape& shape,
                            const bf16* dy, int dy_stride,                    // (N, H, W, Cout)
                            const bf16* relu_output, int relu_output_stride,  // (N, H, W, Cout) y, or nullptr
                            const bf16* weight,                               // (Cout, k, k, Cin)
                            float beta,
                            bf16* dx, int dx_stride,                          // (N, H, W, Cin)
                            Stream stream, int version = 0);

  static size_t backward_weight_workspace(const Conv2dShape& shape, bf16 tag, int version = 0);
  static void backward_weight(const Conv2dShape& shape,
                              const bf16* x, int x_stride,                      // (N, H, W, Cin)
                              const bf16* dy, int dy_stride,                    // (N, H, W, Cout)
                              const bf16* relu_output, int relu_output_stride,  // (N, H, W, Cout) y, or nullptr
                              float beta,
                              float* dweight,                                   // (Cout, k, k, Cin), fp32
                              void* workspace,                                  // backward_weight_workspace bytes
                              Stream stream, int version = 0);

  static size_t backward_bias_workspace(const Conv2dShape& shape, bf16 tag);
  static void backward_bias(const Conv2dShape& shape,
                            const bf16* dy, int dy_stride,                    // (N, H, W, Cout)
                            const bf16* relu_output, int relu_output_stride,  // (N, H, W, Cout) y, or nullptr
                            float beta,
                            float* dbias,                                     // (Cout), fp32
                            void* workspace,                                  // backward_bias_workspace bytes
                            Stream stream);
};

extern template struct Conv2d<DeviceKind::sim>;
extern template struct Conv2d<DeviceKind::cuda>;

// The cpu device: the fast float kernels on the calling thread (no stream; version 1 the reference,
// tensor_core_version the TF32 reference cpu::conv2d_*_tf32), defined in conv2d_cpu.cpp. Declared
// here so that the compiler checks each against the launcher above.
template <>
void Conv2d<DeviceKind::cpu>::forward(const Conv2dShape&, const float*, int, const float*, const float*, bool, float*,
                                      int, Stream, int);
template <>
void Conv2d<DeviceKind::cpu>::backward_data(const Conv2dShape&, const float*, int, const float*, int, const float*,
                                            float, float*, int, Stream, int);
template <>
size_t Conv2d<DeviceKind::cpu>::backward_weight_workspace(const Conv2dShape&, int);
template <>
void Conv2d<DeviceKind::cpu>::backward_weight(const Conv2dShape&, const float*, int, const float*, int, const float*,
                                              int, float, float*, void*, Stream, int);
template <>
size_t Conv2d<DeviceKind::cpu>::backward_bias_workspace(const Conv2dShape&);
template <>
void Conv2d<DeviceKind::cpu>::backward_bias(const Conv2dShape&, const float*, int, const float*, int, float, float*,
                                            void*, Stream);
// bf16 on the cpu device: the bf16 references above in float (one version, no workspace).
template <>
void Conv2d<DeviceKind::cpu>::forward(const Conv2dShape&, const bf16*, int, const bf16*, const float*, bool, bf16*,
                                      int, Stream, int);
template <>
void Conv2d<DeviceKind::cpu>::backward_data(const Conv2dShape&, const bf16*, int, const bf16*, int, const bf16*,
                                            float, bf16*, int, Stream, int);
template <>
size_t Conv2d<DeviceKind::cpu>::backward_weight_workspace(const Conv2dShape&, bf16, int);
template <>
void Conv2d<DeviceKind::cpu>::backward_weight(const Conv2dShape&, const bf16*, int, const bf16*, int, const bf16*,
                                              int, float, float*, void*, Stream, int);
template <>
size_t Conv2d<DeviceKind::cpu>::backward_bias_workspace(const Conv2dShape&, bf16);
template <>
void Conv2d<DeviceKind::cpu>::backward_bias(const Conv2dShape&, const bf16*, int, const bf16*, int, float, float*,
                                            void*, Stream);

}  // namespace unet
