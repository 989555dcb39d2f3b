// Fibers: the user-space threads on which the sim device runs a block's CUDA threads.
//
// A block of up to 1024 threads runs on one OS thread. Each CUDA thread gets its own stack and
// runs until it reaches a barrier (__syncthreads, a warp shuffle, ...) or returns; then it
// switches back to the scheduler. A switch saves and restores only the callee-saved registers,
// which is all the C++ ABI requires across a call, so it costs a few nanoseconds (swapcontext
// costs about a microsecond because it also saves the signal mask with a system call).
//
// AddressSanitizer keeps a shadow of each stack. It must be told about every switch, or it
// reports false stack overflows; see the sanitizer hooks in fiber.cpp.
#pragma once

#include <cstddef>
#include <vector>

namespace unet::sim {

struct Fiber;
using FiberEntry = void (*)(void* arg);

// The context a fiber switches back to: the scheduler, running on the OS thread's own stack.
struct FiberContext {
  void* stack_pointer = nullptr;       // saved by the switch away from this context
  void* ucontext = nullptr;            // the portable path's saved state (ucontext_t)
  void* asan_fake_stack = nullptr;     // AddressSanitizer's per-context bookkeeping
  const void* stack_bottom = nullptr;  // learnt from the sanitizer on the first switch
  size_t stack_size = 0;
};

struct Fiber {
  FiberContext context;                // this fiber's own saved state
  FiberContext* scheduler = nullptr;   // where it returns to when it yields or finishes
  char* stack = nullptr;  // lowest usable address; a guard page lies below it
  size_t stack_size = 0;
  FiberEntry entry = nullptr;
  void* arg = nullptr;
  bool finished = true;
};

// Stacks are mapped once and reused by every block of every launch: mapping 1024 stacks per
// block would dominate the run time of small kernels.
class FiberPool {
 public:
  explicit FiberPool(size_t stack_bytes = 256 * 1024);
  ~FiberPool();
  FiberPool(const FiberPool&) = delete;
  FiberPool& operator=(const FiberPool&) = delete;

  // At least `count` fibers, each ready to be started.
  Fiber* fibers(size_t count);
  // After an aborted launch, frames were abandoned mid-call: clear what the sanitizer recorded
  // about them before the stacks are reused.
  void forget_abandoned_frames();

 private:
  size_t stack_bytes_;
  std::vector<Fiber> fibers_;
};

// Prepares `fiber` to run entry(arg) from the top of its stack on the next switch_to.
void fiber_start(Fiber& fiber, FiberEntry entry, void* arg);
// Scheduler -> fiber. Returns when the fiber calls fiber_yield or its entry returns.
void fiber_switch_to(FiberContext& scheduler, Fiber& fiber);
// Fiber -> scheduler.
void fiber_yield(Fiber& fiber, FiberContext& scheduler);

}  // namespace unet::sim
