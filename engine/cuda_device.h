// The cuda device, built only when the CUDA toolkit was found (UNET_WITH_CUDA).
#pragma once

#include <memory>
#include <string>

#include "engine/device.h"

namespace unet {

// False, with the reason, where there is no driver or no GPU.
bool cuda_device_usable(std::string* why);
std::unique_ptr<Device> make_cuda_device();

// Versions for `unet info`: the runtime linked into this binary, the driver found at run time, and
// cuDNN if a libcudnn can be loaded (cuDNN is linked only into the benchmarks). 0 where absent.
struct CudaVersions {
  int runtime = 0;
  int driver = 0;
  size_t cudnn = 0;
};
CudaVersions cuda_versions();

}  // namespace unet
