// What the engine and the kernels agree on: which device runs an op, on which stream, and the
// error type (kernels/error.h).
#pragma once

#include <cstdint>

#include "kernels/error.h"

namespace unet {

// cpu: the references in kernels/*_cpu.cpp. sim and cuda: the same kernels/*.cu sources, compiled
// by the host compiler against kernels/sim/ and by nvcc respectively.
enum class DeviceKind { cpu, sim, cuda };

inline const char* device_name(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::cpu: return "cpu";
    case DeviceKind::sim: return "sim";
    case DeviceKind::cuda: return "cuda";
  }
  return "?";
}

// A stream as the launchers take it: a cudaStream_t on cuda, a sim::SimStream* on sim, unused on
// cpu. Null is the device's default stream.
struct Stream {
  void* handle = nullptr;
};

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace unet

// Functions shared by a CPU reference and its kernels are marked UNET_HOST_DEVICE and given
// internal linkage (static inline): each library then has its own copy, so the sim and cuda
// compilations never define the same symbol (scripts/check_symbols.sh).
#if defined(__CUDACC__)
#define UNET_HOST_DEVICE __host__ __device__
#else
#define UNET_HOST_DEVICE
#endif
