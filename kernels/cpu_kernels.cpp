// The fast CPU kernels' entry points (cpu::fast in conv2d.h, conv_transpose2d.h): each forwards to
// the variant of the instruction set chosen once (cpu_kernels.h).
#include "kernels/cpu_kernels.h"

#include <atomic>
#include <cstdlib>

#include "kernels/backend.h"

#include "kernels/conv_fast_cpu_isa.h"

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

// Each entry point forwards to the chosen instruction set's.
#if UNET_CPU_AVX2
#define UNET_FORWARD_CONV_FAST_CPU(name, parameters, arguments) \
  void name parameters { cpu_kernels() == CpuKernels::avx2 ? avx2::name arguments : generic::name arguments; }
#else
#define UNET_FORWARD_CONV_FAST_CPU(name, parameters, arguments) \
  void name parameters { generic::name arguments; }
#endif
UNET_CONV_FAST_CPU_ENTRY_POINTS(UNET_FORWARD_CONV_FAST_CPU)
#undef UNET_FORWARD_CONV_FAST_CPU

}  // namespace unet::cpu::fast
