// The fast CPU kernels' entry points (cpu::fast in conv2d.h, conv_transpose2d.h): each forwards to
// the variant of the instruction set chosen once (cpu_kernels.h).
#include "kernels/cpu_kernels.h"

#include <atomic>
#include <cstdlib>

#include "kernels/backend.h"

#define UNET_CPU_ISA generic
#include "kernels/conv_fast_cpu_isa.h"
#undef UNET_CPU_ISA
#if UNET_CPU_AVX2
#define UNET_CPU_ISA avx2
#include "kernels/conv_fast_cpu_isa.h"
#undef UNET_CPU_ISA
#endif

namespace unet::cpu::fast {

namespace {

std::atomic<int> chosen{-1};  // a CpuKernels, -1 until the first call

CpuKernels from_environment() {
  const char* value = std::getenv("UNET_CPU_KERNELS");
  if (value == nullptr || *value == '\0') return supported(CpuKernels::avx2) ? CpuKernels::avx2 : CpuKernels::generic;
  const std::optional<CpuKernels> kernels = parse_cpu_kernels(value);
  if (!kernels) throw Error(std::string("UNET_CPU_KERNELS=") + value + " is not generic or avx2");
  if (!supported(*kernels)) throw Error(std::string("UNET_CPU_KERNELS=") + value + ": this CPU or build lacks it");
  return *kernels;
}

// Calls the chosen variant of one pass.
#if UNET_CPU_AVX2
#define UNET_CPU_CALL(pass, ...) \
  (cpu_kernels() == CpuKernels::avx2 ? avx2::pass(__VA_ARGS__) : generic::pass(__VA_ARGS__))
#else
#define UNET_CPU_CALL(pass, ...) generic::pass(__VA_ARGS__)
#endif

}  // namespace

const char* name(CpuKernels kernels) { return kernels == CpuKernels::avx2 ? "avx2" : "generic"; }

std::optional<CpuKernels> parse_cpu_kernels(const std::string& text) {
  if (text == "generic") return CpuKernels::generic;
  if (text == "avx2") return CpuKernels::avx2;
  return std::nullopt;
}

bool supported(CpuKernels kernels) {
  if (kernels == CpuKernels::generic) return true;
#if UNET_CPU_AVX2
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

CpuKernels cpu_kernels() {
  if (chosen.load() < 0) chosen.store(static_cast<int>(from_environment()));
  return static_cast<CpuKernels>(chosen.load());
}

void use_cpu_kernels(CpuKernels kernels) {
  if (!supported(kernels)) throw Error(std::string("the ") + name(kernels) + " CPU kernels do not run here");
  chosen.store(static_cast<int>(kernels));
}

void conv2d_forward(const Conv2dShape& shape, const float* x, int x_stride, const float* weight, const float* bias,
                    bool relu, float* y, int y_stride) {
  UNET_CPU_CALL(conv2d_forward, shape, x, x_stride, weight, bias, relu, y, y_stride);
}

void conv2d_backward_data(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, const float* weight, float beta, float* dx, int dx_stride) {
  UNET_CPU_CALL(conv2d_backward_data, shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx,
                dx_stride);
}

void conv2d_backward_weight(const Conv2dShape& shape, const float* x, int x_stride, const float* dy, int dy_stride,
                            const float* relu_output, int relu_output_stride, float beta, float* dweight) {
  UNET_CPU_CALL(conv2d_backward_weight, shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta,
                dweight);
}

void conv2d_backward_bias(const Conv2dShape& shape, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, float beta, float* dbias) {
  UNET_CPU_CALL(conv2d_backward_bias, shape, dy, dy_stride, relu_output, relu_output_stride, beta, dbias);
}

void conv_transpose2d_forward(const ConvTranspose2dShape& shape, const float* x, int x_stride, const float* weight,
                              const float* bias, float* y, int y_stride) {
  UNET_CPU_CALL(conv_transpose2d_forward, shape, x, x_stride, weight, bias, y, y_stride);
}

void conv_transpose2d_backward_data(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                    const float* weight, float beta, float* dx, int dx_stride) {
  UNET_CPU_CALL(conv_transpose2d_backward_data, shape, dy, dy_stride, weight, beta, dx, dx_stride);
}

void conv_transpose2d_backward_weight(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                      const float* dy, int dy_stride, float beta, float* dweight) {
  UNET_CPU_CALL(conv_transpose2d_backward_weight, shape, x, x_stride, dy, dy_stride, beta, dweight);
}

void conv_transpose2d_backward_bias(const ConvTranspose2dShape& shape, const float* dy, int dy_stride, float beta,
                                    float* dbias) {
  UNET_CPU_CALL(conv_transpose2d_backward_bias, shape, dy, dy_stride, beta, dbias);
}

}  // namespace unet::cpu::fast
