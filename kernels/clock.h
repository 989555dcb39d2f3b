// The training clock: the step counter in device memory that every graph-captured kernel reads
// (Adam's bias corrections and learning rate, the augmentation's random counters, the batch's
// place in the epoch). One launch at the start of each training step advances it, so a step
// captured once as a CUDA graph sees a new value at every replay.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace unet {

template <DeviceKind D>
struct Clock {
  static void advance(int64_t* step /*(1) device memory*/, Stream stream);
};

extern template struct Clock<DeviceKind::sim>;
extern template struct Clock<DeviceKind::cuda>;

// The cpu device: the step counter is host memory there (clock_cpu.cpp).
template <>
void Clock<DeviceKind::cpu>::advance(int64_t*, Stream);

}  // namespace unet
