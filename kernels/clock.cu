// The training clock (clock.h): one thread adds one to the step counter in device memory.
#include "kernels/clock.h"

#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

__global__ void advance_clock_kernel(int64_t* step) { *step += 1; }

}  // namespace unet::KERNEL_BACKEND

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void Clock<D>::advance(int64_t* step, Stream stream) {
  launch(KERNEL(advance_clock_kernel), dim3(1), dim3(1), 0, stream, step);
}

template struct Clock<KERNEL_DEVICE>;

}  // namespace unet
