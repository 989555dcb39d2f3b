// What the engine and the kernels agree on: which device runs an op, and on which stream.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace unet {

// Every error the project reports to a user derives from this; tools print what() after "error: ".
// Its destructor is defined out of line (kernels/backend.cpp), so its vtable exists once: a launcher
// in kernels/*.cu may throw it without the sim and cuda libraries both defining it.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~Error() override;
};

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
// compilations never define the same symbol (tools/check_symbols.sh).
#if defined(__CUDACC__)
#define UNET_HOST_DEVICE __host__ __device__
#else
#define UNET_HOST_DEVICE
#endif
