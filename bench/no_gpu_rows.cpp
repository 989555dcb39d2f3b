// bench_kernels' GPU half in a build that has none (without CUDA, or without cudnn.h): it says why.
#include "bench/bench_kernels.h"

namespace unet::bench {

bool register_gpu_rows(const ModelShape&, bool, std::string* why) {
  *why = "this build has no GPU rows (built without CUDA or without cudnn.h)";
  return false;
}

}  // namespace unet::bench
