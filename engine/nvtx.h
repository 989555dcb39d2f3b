// Named ranges for Nsight Systems (NVTX3, header-only, from the CUDA toolkit): compiled in only
// where the cuda device is built (UNET_NVTX), a no-op elsewhere. Ranges are pushed and popped by
// the host thread, so they mark what the host was doing: an eager or capturing step shows each
// range; a graph replay runs no host code and shows none (docs/performance.md).
#pragma once

#ifdef UNET_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace unet::nvtx {

#ifdef UNET_NVTX
constexpr bool enabled = true;
inline void push(const char* name) { nvtxRangePushA(name); }
inline void pop() { nvtxRangePop(); }
#else
constexpr bool enabled = false;
inline void push(const char*) {}
inline void pop() {}
#endif

// A range for the lifetime of a scope.
class Range {
 public:
  explicit Range(const char* name) { push(name); }
  ~Range() { pop(); }
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;
};

}  // namespace unet::nvtx
