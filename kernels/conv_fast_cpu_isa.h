// The fast CPU convolutions of one instruction set, namespace unet::cpu::fast::UNET_CPU_ISA: what
// conv2d_fast_cpu.cpp and conv_transpose2d_fast_cpu.cpp define for each ISA they are compiled for,
// and what cpu_kernels.cpp chooses between. The arguments are those of the references (conv2d.h,
// conv_transpose2d.h), float only. Included once per ISA, hence no include guard.
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"

namespace unet::cpu::fast::UNET_CPU_ISA {

void conv2d_forward(const Conv2dShape& shape, const float* x, int x_stride, const float* weight, const float* bias,
                    bool relu, float* y, int y_stride);
void conv2d_backward_data(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, const float* weight, float beta, float* dx, int dx_stride);
void conv2d_backward_weight(const Conv2dShape& shape, const float* x, int x_stride, const float* dy, int dy_stride,
                            const float* relu_output, int relu_output_stride, float beta, float* dweight);
void conv2d_backward_bias(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, float beta, float* dbias);

void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const float* x, int x_stride, const float* weight,
                              const float* bias, float* y, int y_stride);
void conv_transpose2d_backward_data(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                    const float* weight, float beta, float* dx, int dx_stride);
void conv_transpose2d_backward_weight(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                      const float* dy, int dy_stride, float beta, float* dweight);
void conv_transpose2d_backward_bias(const ConvTranspose2dShape& shape, const float* dy, int dy_stride, float beta,
                                    float* dbias);

}  // namespace unet::cpu::fast::UNET_CPU_ISA
