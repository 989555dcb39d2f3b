// dispatch(kind, launch): calls launch.template operator()<D>() with the DeviceKind D that `kind`
// names, so that code calling the kernels names each launcher once, as Op<D>::function(...), for
// the cpu, sim and cuda devices alike:
//
//   dispatch(ctx.kind(), [&]<DeviceKind D>() { MaxPool2d<D>::forward(shape, ..., ctx.stream()); });
//
// Op<DeviceKind::cpu> runs the CPU reference (kernels/<op>_cpu.cpp), Op<sim> and Op<cuda> the CUDA
// kernels (kernels/<op>.cu). In a build without CUDA, asking for cuda is the one error that
// unet::device() gives too.
#pragma once

#include "kernels/backend.h"

namespace unet {

// Throws the error for a cuda device this build or machine cannot give (engine/device.cpp).
[[noreturn]] void refuse_cuda_device();

template <class Launch>
void dispatch(DeviceKind kind, Launch&& launch) {
  switch (kind) {
    case DeviceKind::cpu: launch.template operator()<DeviceKind::cpu>(); return;
    case DeviceKind::sim: launch.template operator()<DeviceKind::sim>(); return;
    case DeviceKind::cuda:
#if UNET_WITH_CUDA
      launch.template operator()<DeviceKind::cuda>();
      return;
#else
      refuse_cuda_device();
#endif
  }
}

}  // namespace unet
