// A kernel that writes one element past the end of a sim allocation. Under AddressSanitizer this
// must be reported as a heap-buffer-overflow inside the kernel (CTest checks the report).
#include <cstdio>

#include "engine/device.h"
#include "tests/kernels/sim/feature_kernels.h"

int main() {
  unet::Device& sim = unet::device(unet::DeviceKind::sim);
  const int n = 100;
  auto* y = static_cast<float*>(sim.allocate(n * sizeof(float)));
  unet::FeatureKernels<unet::DeviceKind::sim>::write_past_end(n, y, {});
  sim.release(y);
  std::printf("the out-of-bounds write went unnoticed\n");
  return 0;
}
