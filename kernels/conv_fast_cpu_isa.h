// The fast CPU convolutions' entry points, listed once (UNET_CONV_FAST_CPU_ENTRY_POINTS), and
// declared from that list in each instruction set's namespace, unet::cpu::fast::generic and
// unet::cpu::fast::avx2: what conv2d_fast_cpu.cpp and conv_transpose2d_fast_cpu.cpp define for the
// instruction set they are compiled for (UNET_CPU_ISA), and what cpu_kernels.cpp forwards the
// cpu::fast functions of conv2d.h and conv_transpose2d.h to. The arguments are the references'.
#pragma once

#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"

// X(name, (parameters), (arguments)) for each entry point.
#define UNET_CONV_FAST_CPU_ENTRY_POINTS(X)                                                                           \
  X(conv2d_forward,                                                                                                  \
    (const Conv2dShape& shape, const float* x, int x_stride, const float* weight, const float* bias, bool relu,      \
     float* y, int y_stride),                                                                                        \
    (shape, x, x_stride, weight, bias, relu, y, y_stride))                                                           \
  X(conv2d_backward_data,                                                                                            \
    (const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output, int relu_output_stride,     \
     const float* weight, float beta, float* dx, int dx_stride),                                                     \
    (shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride))                            \
  X(conv2d_backward_weight,                                                                                          \
    (const Conv2dShape& shape, const float* x, int x_stride, const float* dy, int dy_stride,                         \
     const float* relu_output, int relu_output_stride, float beta, float* dweight),                                  \
    (shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta, dweight))                             \
  X(conv2d_backward_bias,                                                                                            \
    (const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output, int relu_output_stride,     \
     float beta, float* dbias),                                                                                      \
    (shape, dy, dy_stride, relu_output, relu_output_stride, beta, dbias))                                            \
  X(conv_transpose2d_forward,                                                                                        \
    (const ConvTranspose2dShape& shape, const float* x, int x_stride, const float* weight, const float* bias,        \
     float* y, int y_stride),                                                                                        \
    (shape, x, x_stride, weight, bias, y, y_stride))                                                                 \
  X(conv_transpose2d_backward_data,                                                                                  \
    (const ConvTranspose2dShape& shape, const float* dy, int dy_stride, const float* weight, float beta, float* dx,  \
     int dx_stride),                                                                                                 \
    (shape, dy, dy_stride, weight, beta, dx, dx_stride))                                                             \
  X(conv_transpose2d_backward_weight,                                                                                \
    (const ConvTranspose2dShape& shape, const float* x, int x_stride, const float* dy, int dy_stride, float beta,    \
     float* dweight),                                                                                                \
    (shape, x, x_stride, dy, dy_stride, beta, dweight))                                                              \
  X(conv_transpose2d_backward_bias,                                                                                  \
    (const ConvTranspose2dShape& shape, const float* dy, int dy_stride, float beta, float* dbias),                   \
    (shape, dy, dy_stride, beta, dbias))

#define UNET_DECLARE_CONV_FAST_CPU(name, parameters, arguments) void name parameters;

namespace unet::cpu::fast {
namespace generic {
UNET_CONV_FAST_CPU_ENTRY_POINTS(UNET_DECLARE_CONV_FAST_CPU)
}  // namespace generic
namespace avx2 {  // defined on x86-64 only (kernels/CMakeLists.txt)
UNET_CONV_FAST_CPU_ENTRY_POINTS(UNET_DECLARE_CONV_FAST_CPU)
}  // namespace avx2
}  // namespace unet::cpu::fast

#undef UNET_DECLARE_CONV_FAST_CPU
