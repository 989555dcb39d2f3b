// Which instruction set the cpu device's fast kernels (cpu::fast, e.g. conv2d.h) run with.
//
// They are compiled twice: `avx2`, with AVX2 and FMA intrinsics (x86-64 only), and `generic`, plain
// C++ for any x86-64 or aarch64. The first call picks avx2 where the CPU has both features, unless
// the environment says UNET_CPU_KERNELS=generic (CI runs the tests both ways through it);
// UNET_CPU_KERNELS=avx2 on a CPU without them is an error. The thread count is OpenMP's
// (OMP_NUM_THREADS).
#pragma once

#include <optional>
#include <string>

namespace unet::cpu::fast {

enum class CpuKernels { generic, avx2 };

const char* name(CpuKernels kernels);
// Parses UNET_CPU_KERNELS's value; nullopt for anything but "generic" and "avx2".
std::optional<CpuKernels> parse_cpu_kernels(const std::string& text);
// Whether this build and this CPU can run them.
bool supported(CpuKernels kernels);
// The ones in use: chosen on the first call (see above); throws Error on a bad UNET_CPU_KERNELS.
CpuKernels cpu_kernels();
// Switches to `kernels` (tests and benchmarks); throws Error where they are not supported.
void use_cpu_kernels(CpuKernels kernels);

}  // namespace unet::cpu::fast
