// The kernel dialect: what every kernels/*.cu includes so that one source compiles twice, by nvcc
// for the cuda device and by the host compiler for the sim device (docs/dialect.md).
//
// A kernel file puts its kernels and device helpers in namespace unet::KERNEL_BACKEND, which is
// unet::cuda under nvcc and unet::sim otherwise, and launches them with
//
//   launch(KERNEL(relu_forward_kernel1), grid, block, dynamic_shared_bytes, stream, args...);
//
// which is kernel<<<grid, block, dynamic_shared_bytes, stream>>>(args...) followed by an error check
// under nvcc, and a run on the sim runtime otherwise. Dynamic shared memory is declared with
// DYNAMIC_SHARED(float, tile); more than 48 KiB of it needs allow_dynamic_shared(KERNEL(k), bytes).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "kernels/backend.h"

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda_check.h"

#define KERNEL_BACKEND cuda
#define DYNAMIC_SHARED(type, name)                                    \
  extern __shared__ __align__(16) unsigned char unet_dynamic_shared[]; \
  type* name = reinterpret_cast<type*>(unet_dynamic_shared)

namespace unet::cuda {

template <class... Params>
struct KernelRef {
  void (*function)(Params...);
  const char* name;
};
template <class... Params>
KernelRef(void (*)(Params...), const char*) -> KernelRef<Params...>;

// Throws with the kernel's name if the launch failed; with UNET_SYNC_LAUNCHES=1 in the
// environment it also waits for the kernel, so an asynchronous fault is blamed on its kernel.
void check_launch(const char* kernel_name, Stream stream);
void set_dynamic_shared_limit(const void* kernel, const char* name, size_t bytes);

template <class... Params, class... Args>
void launch(KernelRef<Params...> kernel, dim3 grid, dim3 block, size_t shared_bytes, Stream stream,
            Args&&... args) {
  kernel.function<<<grid, block, shared_bytes, static_cast<cudaStream_t>(stream.handle)>>>(
      std::forward<Args>(args)...);
  check_launch(kernel.name, stream);
}

// Copies `value` into a __constant__ variable, in stream order.
template <class T>
void copy_to_constant(T& symbol, const T& value, Stream stream) {
  CUDA_CHECK(cudaMemcpyToSymbolAsync(symbol, &value, sizeof(T), 0, cudaMemcpyHostToDevice,
                                     static_cast<cudaStream_t>(stream.handle)));
}

}  // namespace unet::cuda

#else  // the sim device

#include "kernels/sim/runtime.h"

#define KERNEL_BACKEND sim
#define DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::unet::sim::dynamic_shared_memory())

namespace unet::sim {

// A __constant__ variable is an ordinary global on the host.
template <class T>
void copy_to_constant(T& symbol, const T& value, Stream stream) {
  enqueue(stream, [&symbol, value] { std::memcpy(&symbol, &value, sizeof(T)); });
}

}  // namespace unet::sim

#endif

// KERNEL(k) names a kernel for launch(); the macro keeps the spelling for error messages and
// takes template arguments with commas: KERNEL(conv_kernel<64, 8>).
#define KERNEL(...) \
  ::unet::KERNEL_BACKEND::KernelRef { __VA_ARGS__, #__VA_ARGS__ }

// The DeviceKind this copy of a kernel file is compiled for: launchers are instantiated for it.
#define KERNEL_DEVICE ::unet::DeviceKind::KERNEL_BACKEND

namespace unet::KERNEL_BACKEND {

// Enough blocks of `block` threads to give `threads` threads: the grid of a one-dimensional launch.
inline dim3 blocks_for(int64_t threads, int block) { return dim3(static_cast<unsigned>(ceil_div(threads, block))); }

// The launch of a kernel with one thread per element (per four, for float4 versions): `threads`
// threads in blocks of flat_block, no dynamic shared memory.
constexpr int flat_block = 256;
template <class... Params, class... Args>
void launch_flat(KernelRef<Params...> kernel, int64_t threads, Stream stream, Args&&... args) {
  launch(kernel, blocks_for(threads, flat_block), dim3(flat_block), 0, stream, std::forward<Args>(args)...);
}

// Whether float4 accesses fit: every pointer 16-byte aligned and every count (channels, strides,
// widths) a multiple of 4. The condition of every kernel version that moves four floats at once.
inline bool quads_fit(std::initializer_list<const void*> pointers, std::initializer_list<int64_t> counts) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  for (int64_t c : counts) {
    if (c % 4 != 0) return false;
  }
  return true;
}

// Lets `kernel` take up to `bytes` of dynamic shared memory (cudaFuncSetAttribute on cuda).
template <class... Params>
void allow_dynamic_shared(KernelRef<Params...> kernel, size_t bytes) {
  set_dynamic_shared_limit(reinterpret_cast<const void*>(kernel.function), kernel.name, bytes);
}

}  // namespace unet::KERNEL_BACKEND
