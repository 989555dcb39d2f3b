// Arena: the per-step memory for activations, gradients of activations and kernel workspaces.
//
// A training step asks for the same sizes in the same order every time. The arena hands them out
// from one device block by bumping an offset, and reset() rewinds it after the step. If a step asks
// for more than the block holds, the excess comes from extra allocations and the arena remembers the
// high-water mark; the next reset() replaces everything with one block of that size. So the first
// step sizes the arena, and from the second on a step makes no device allocation and gets the same
// addresses — which is what lets the step be captured once as a CUDA graph and replayed.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/device.h"

namespace unet {

class Arena {
 public:
  // `stream` orders the poison fills (set_poison) with the work that uses the memory, and puts
  // them in a graph captured on it: the legacy default stream may not be used during a capture.
  explicit Arena(Device& device, Stream stream = {}, size_t initial_bytes = 0);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // 256-byte aligned, valid until the next reset().
  void* allocate(size_t bytes);
  float* allocate_floats(int64_t count) { return static_cast<float*>(allocate(static_cast<size_t>(count) * sizeof(float))); }
  void reset();
  // Fill every block with all-ones bytes (NaN as floats) when it is handed out again: a kernel
  // that reads arena memory nothing wrote this step then shows NaN (tests and UNET_POISON_ARENA=1).
  void set_poison(bool on) { poison_ = on; }

  size_t capacity() const { return capacity_; }
  size_t high_water() const { return high_water_; }
  Device& device() const { return device_; }

 private:
  Device& device_;
  Stream stream_;
  char* block_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;          // bytes handed out this step, overflow included
  size_t high_water_ = 0;
  bool poison_;
  std::vector<void*> overflow_;
};

}  // namespace unet
