// The sim device's SIMT runtime: the CUDA built-ins a kernel in kernels/*.cu may use, implemented
// on the CPU, so that the same kernel source compiled by the host compiler runs (and can be stepped
// in gdb, and checked by AddressSanitizer) without a GPU.
//
// Execution model. A launch runs its blocks one after another. Within a block every CUDA thread is
// a fiber (kernels/sim/fiber.h) on one OS thread; a thread runs until it reaches a barrier or
// returns. Because nothing runs concurrently:
//   - static __shared__ storage is an ordinary function-local static, private to the running block;
//   - atomics are plain read-modify-writes;
//   - a barrier is a scheduling decision, which is where the runtime checks it: threads of one
//     block that wait at different __syncthreads, or that wait while another thread has returned,
//     are reported as an error naming the kernel and the source lines, instead of hanging.
// Warp-level operations (__shfl_*_sync, __ballot_sync, __any_sync, __all_sync, __syncwarp) are
// barriers among the lanes named in their mask; the result of each lane is computed when the last
// of them arrives.
//
// Everything here lives in namespace unet::sim, like the kernels compiled against it, so a binary
// can hold the sim and the cuda copies of every kernel side by side.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <source_location>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/backend.h"

// CUDA's declaration specifiers mean nothing on the host, except __shared__: one static per
// kernel, which is what a block's shared memory is when blocks run one at a time.
#define __global__
#define __device__
#define __host__
#define __constant__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

namespace unet::sim {

// ---------------------------------------------------------------------------------------------
// Vector types and indices

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Alignment as CUDA declares it, so UndefinedBehaviorSanitizer reports a misaligned vector load
// that the GPU would fault on.
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// The running thread's coordinates. The scheduler rewrites them at every switch; kernels see
// read-only references, as CUDA's built-in variables are read-only.
struct ThreadCoordinates {
  uint3 thread_index, block_index;
  dim3 block_dim, grid_dim;
};
inline ThreadCoordinates current_coordinates;
inline const uint3& threadIdx = current_coordinates.thread_index;
inline const uint3& blockIdx = current_coordinates.block_index;
inline const dim3& blockDim = current_coordinates.block_dim;
inline const dim3& gridDim = current_coordinates.grid_dim;
inline constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------------
// Barriers and warp-level operations

void block_barrier(const std::source_location& site);
inline void __syncthreads(const std::source_location site = std::source_location::current()) {
  block_barrier(site);
}

enum class WarpOp { sync, shfl_idx, shfl_up, shfl_down, shfl_xor, ballot };
const char* warp_op_name(WarpOp op);
// Waits for every lane in `mask`, then returns this lane's result: for the shuffles, `value` of the
// lane chosen by `lane_arg` and `width`; for a ballot, the mask of lanes whose value was non-zero.
uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int lane_arg, int width,
                       const std::source_location& site);

inline void __syncwarp(unsigned mask = 0xffffffffu,
                       const std::source_location site = std::source_location::current()) {
  warp_exchange(WarpOp::sync, mask, 0, 0, 32, site);
}
inline unsigned __ballot_sync(unsigned mask, int predicate,
                              const std::source_location site = std::source_location::current()) {
  return static_cast<unsigned>(warp_exchange(WarpOp::ballot, mask, predicate != 0, 0, 32, site));
}
inline int __any_sync(unsigned mask, int predicate,
                      const std::source_location site = std::source_location::current()) {
  return __ballot_sync(mask, predicate, site) != 0;
}
inline int __all_sync(unsigned mask, int predicate,
                      const std::source_location site = std::source_location::current()) {
  return __ballot_sync(mask, predicate, site) == mask;  // every lane of the mask takes part
}

template <class T>
T shuffle(WarpOp op, unsigned mask, T var, int lane_arg, int width, const std::source_location& site) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move 4- or 8-byte values");
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = warp_exchange(op, mask, bits, lane_arg, width, site);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
              const std::source_location site = std::source_location::current()) {
  return shuffle(WarpOp::shfl_idx, mask, var, src_lane, width, site);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 const std::source_location site = std::source_location::current()) {
  return shuffle(WarpOp::shfl_up, mask, var, static_cast<int>(delta), width, site);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   const std::source_location site = std::source_location::current()) {
  return shuffle(WarpOp::shfl_down, mask, var, static_cast<int>(delta), width, site);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                  const std::source_location site = std::source_location::current()) {
  return shuffle(WarpOp::shfl_xor, mask, var, lane_mask, width, site);
}

// ---------------------------------------------------------------------------------------------
// Atomics: one thread runs at a time and never between the read and the write, so a plain
// read-modify-write is atomic.

template <class T>
T atomicAdd(T* address, T value) {
  static_assert(std::is_same_v<T, int> || std::is_same_v<T, unsigned> || std::is_same_v<T, float> ||
                    std::is_same_v<T, double> || std::is_same_v<T, unsigned long long>,
                "atomicAdd takes int, unsigned, unsigned long long, float or double");
  const T old = *address;
  *address = old + value;
  return old;
}
template <class T>
T atomicMax(T* address, T value) {
  static_assert(std::is_integral_v<T>, "atomicMax takes integers");
  const T old = *address;
  if (value > old) *address = value;
  return old;
}
template <class T>
T atomicMin(T* address, T value) {
  static_assert(std::is_integral_v<T>, "atomicMin takes integers");
  const T old = *address;
  if (value < old) *address = value;
  return old;
}
template <class T>
T atomicCAS(T* address, T compare, T value) {
  static_assert(std::is_integral_v<T>, "atomicCAS takes integers");
  const T old = *address;
  if (old == compare) *address = value;
  return old;
}
template <class T>
T atomicExch(T* address, T value) {
  const T old = *address;
  *address = value;
  return old;
}

// ---------------------------------------------------------------------------------------------
// Arithmetic built-ins. The fast-math intrinsics are computed exactly here; on the GPU they may
// differ in the last bits, which is why kernels are compared with the reference by a tolerance.

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline bool isfinite(float x) { return std::isfinite(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int __float2int_rd(float x) { return static_cast<int>(std::floor(x)); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(unsigned x) { return x == 0 ? 32 : __builtin_clz(x); }
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }

template <class T>
T __ldg(const T* address) {
  return *address;
}

// ---------------------------------------------------------------------------------------------
// Launching

class KernelError : public Error {
 public:
  using Error::Error;
};

// A kernel and the name its errors are reported under.
template <class... Params>
struct KernelRef {
  void (*function)(Params...);
  const char* name;
};
template <class... Params>
KernelRef(void (*)(Params...), const char*) -> KernelRef<Params...>;

// Shared memory a block may take dynamically: 48 KiB unless the kernel opted in to more, up to
// what an H100's multiprocessor offers a block, as cudaFuncSetAttribute does.
inline constexpr size_t default_dynamic_shared_limit = 48 * 1024;
inline constexpr size_t max_dynamic_shared_limit = 227 * 1024;
void set_dynamic_shared_limit(const void* kernel, const char* name, size_t bytes);
size_t dynamic_shared_limit(const void* kernel);
// The running block's dynamic shared memory (see DYNAMIC_SHARED in kernels/dialect.h).
unsigned char* dynamic_shared_memory();

// Throws KernelError, worded as CUDA's "invalid configuration argument", if the grid, the block or
// the dynamic shared memory is out of range.
void check_configuration(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes);
// Runs `thread_body` once per thread of the grid; throws KernelError on an invalid configuration
// or a barrier misuse.
void run_grid(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes,
              const std::function<void()>& thread_body);

// A stream: work runs at once, unless the stream is being captured into a graph, in which case it
// is recorded and runs each time the graph is replayed (as a CUDA graph does).
struct SimGraph {
  std::vector<std::function<void()>> nodes;
};
struct SimStream {
  SimGraph* capturing = nullptr;
};
void enqueue(Stream stream, std::function<void()> work);
void begin_capture(Stream stream);
SimGraph* end_capture(Stream stream);
void replay(const SimGraph& graph);
// Whether some stream is being captured. A GPU then refuses work on the default (legacy) stream,
// which would synchronise with the capturing stream (cudaErrorStreamCaptureImplicit): enqueue
// throws for it, and the sim device refuses its synchronous calls, as cuda does.
bool capture_active();

// Launch counts by kernel name, for tests that assert what a step launches.
std::map<std::string, int64_t>& launch_counts();

template <class... Params, class... Args>
void launch(KernelRef<Params...> kernel, dim3 grid, dim3 block, size_t shared_bytes, Stream stream,
            Args&&... args) {
  // Arguments are converted to the parameter types and copied now, as a CUDA launch copies them
  // into its parameter buffer: a captured launch replays with the values it was captured with.
  std::tuple<std::decay_t<Params>...> params(static_cast<std::decay_t<Params>>(args)...);
  check_configuration(kernel.name, reinterpret_cast<const void*>(kernel.function), grid, block, shared_bytes);
  enqueue(stream, [kernel, grid, block, shared_bytes, params] {
    run_grid(kernel.name, reinterpret_cast<const void*>(kernel.function), grid, block, shared_bytes,
             [&] { std::apply(kernel.function, params); });
  });
}

}  // namespace unet::sim
