// unet info: what this binary was built with and which devices it can use here.
#include <cstdio>
#include <string>
#include <thread>

#include <omp.h>

#include "engine/build_info.h"
#include "engine/comm.h"
#include "engine/device.h"
#include "kernels/cpu_kernels.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"

#if UNET_WITH_CUDA
#include "engine/cuda_device.h"
#endif

namespace unet {
namespace {

#if UNET_WITH_CUDA
std::string version_text(int version) {
  if (version <= 0) return "none";
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}
#endif

}  // namespace

int command_info(const Args& args) {
  Options options("info", "Prints the build configuration and the devices this machine offers.");
  int threads = 0;
  add_threads_option(options, &threads);
  if (!options.parse(args)) return 0;
  apply_threads(threads);

  const BuildInfo& build = build_info();
  std::printf("%s\n\n", build_summary().c_str());
  std::printf("build\n");
  std::printf("  commit            %s\n", build.commit);
  std::printf("  type              %s\n", build.build_type);
  std::printf("  compiler          %s\n", build.compiler);
  std::printf("  cuda device       %s\n", build.cuda ? "built" : "not built (no CUDA toolkit at configure time)");
  if (build.cuda) {
    std::printf("  nvcc              %s\n", build.cuda_toolkit);
    std::printf("  architectures     sm %s\n", build.cuda_architectures);
  }
  std::printf("  sanitizers        %s\n", build.sanitizers ? "AddressSanitizer + UndefinedBehaviorSanitizer" : "none");

  std::printf("\ndevices\n");
  std::printf("  cpu               %u hardware threads, %d OpenMP threads (--threads, else OMP_NUM_THREADS), %s"
              " kernels\n",
              std::thread::hardware_concurrency(), omp_get_max_threads(), cpu::fast::name(cpu::fast::cpu_kernels()));
  std::printf("  sim               CUDA kernels on the CPU, for testing and teaching\n");
  std::string why;
  if (cuda_available(&why)) {
    const DeviceInfo gpu = device(DeviceKind::cuda).info();
    std::printf("  cuda              %s, %.1f GiB, sm_%d, %d multiprocessors\n", gpu.name.c_str(),
                static_cast<double>(gpu.total_memory) / (1 << 30), gpu.compute_capability, gpu.multiprocessors);
  } else {
    std::printf("  cuda              not available: %s\n", why.c_str());
  }
#if UNET_WITH_CUDA
  const CudaVersions versions = cuda_versions();
  std::printf("\ncuda libraries\n");
  std::printf("  runtime           %s (linked statically)\n", version_text(versions.runtime).c_str());
  std::printf("  driver            %s\n", versions.driver > 0 ? version_text(versions.driver).c_str() : "none found");
  if (versions.cudnn > 0) {
    std::printf("  cudnn             %zu.%zu.%zu (found at run time; used by the benchmarks only)\n",
                versions.cudnn / 10000, versions.cudnn % 10000 / 100, versions.cudnn % 100);
  } else {
    std::printf("  cudnn             not found (used by the benchmarks only)\n");
  }
#endif
  std::printf("\ndata parallel (mpirun -np R unet train ...)\n");
  std::printf("  mpi               %s\n", Communicator::mpi_version().c_str());
  std::printf("  nccl              %s\n", Communicator::nccl_version().c_str());
  return 0;
}

}  // namespace unet
