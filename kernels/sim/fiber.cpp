// Fibers for the sim device: a hand-written context switch on x86-64, ucontext elsewhere.
#include "kernels/sim/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(__SANITIZE_ADDRESS__)
#define UNET_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNET_SIM_ASAN 1
#endif
#endif
#ifdef UNET_SIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(UNET_SIM_UCONTEXT)
#define UNET_SIM_X86_64_SWITCH 1
#else
#include <ucontext.h>
#endif

#ifdef UNET_SIM_X86_64_SWITCH
extern "C" void unet_sim_context_switch(void** save_sp, void* load_sp);
extern "C" void unet_sim_fiber_trampoline();
#endif

namespace unet::sim {
namespace {

// Sanitizer hooks: before every switch, name the stack being entered; after it, let the
// sanitizer restore its bookkeeping for the stack that was left. `leaving_for_good` tells it
// the departing fiber's frames are dead.
void before_switch(FiberContext& from, const void* to_bottom, size_t to_size, bool leaving_for_good) {
#ifdef UNET_SIM_ASAN
  __sanitizer_start_switch_fiber(leaving_for_good ? nullptr : &from.asan_fake_stack, to_bottom, to_size);
#else
  (void)from, (void)to_bottom, (void)to_size, (void)leaving_for_good;
#endif
}

void after_switch(void* fake_stack, const void** from_bottom, size_t* from_size) {
#ifdef UNET_SIM_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, from_bottom, from_size);
#else
  (void)fake_stack, (void)from_bottom, (void)from_size;
#endif
}

// Runs on the fiber's own stack; never returns (there is no frame below it). It has no local
// whose address is taken, so the sanitizer puts no redzones in its frame: a finished fiber's
// stack can be reused without clearing them.
[[noreturn]] void fiber_main(Fiber* fiber) {
  FiberContext& scheduler = *fiber->scheduler;
  after_switch(nullptr, &scheduler.stack_bottom, &scheduler.stack_size);  // new: no fake stack yet
  fiber->entry(fiber->arg);
  fiber->finished = true;
  before_switch(fiber->context, scheduler.stack_bottom, scheduler.stack_size, /*leaving_for_good=*/true);
#ifdef UNET_SIM_X86_64_SWITCH
  unet_sim_context_switch(&fiber->context.stack_pointer, scheduler.stack_pointer);
#else
  setcontext(static_cast<ucontext_t*>(scheduler.ucontext));
#endif
  std::abort();  // a finished fiber is never switched to again
}

}  // namespace
}  // namespace unet::sim

#ifdef UNET_SIM_X86_64_SWITCH
// void unet_sim_context_switch(void** save_sp, void* load_sp)
// Pushes the System V callee-saved registers, stores the stack pointer through save_sp, loads
// load_sp, and pops the registers saved there. A new fiber's stack is laid out by fiber_start so
// that the pops and the return land in unet_sim_fiber_trampoline with the Fiber* in r12.
asm(R"(
  .text
  .globl unet_sim_context_switch
  .type unet_sim_context_switch, @function
unet_sim_context_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size unet_sim_context_switch, .-unet_sim_context_switch

  .globl unet_sim_fiber_trampoline
  .type unet_sim_fiber_trampoline, @function
unet_sim_fiber_trampoline:
  movq %r12, %rdi
  call unet_sim_fiber_main_c
  ud2
  .size unet_sim_fiber_trampoline, .-unet_sim_fiber_trampoline
)");

extern "C" [[noreturn]] void unet_sim_fiber_main_c(unet::sim::Fiber* fiber) {
  unet::sim::fiber_main(fiber);
}
#else
static void unet_sim_fiber_main_ucontext(unsigned low, unsigned high) {
  const uintptr_t bits = (static_cast<uintptr_t>(high) << 32) | low;
  unet::sim::fiber_main(reinterpret_cast<unet::sim::Fiber*>(bits));
}
#endif

namespace unet::sim {

FiberPool::FiberPool(size_t stack_bytes) : stack_bytes_(stack_bytes) {}

FiberPool::~FiberPool() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (Fiber& fiber : fibers_) {
    munmap(fiber.stack - page, fiber.stack_size + page);
#ifndef UNET_SIM_X86_64_SWITCH
    delete static_cast<ucontext_t*>(fiber.context.ucontext);
#endif
  }
}

Fiber* FiberPool::fibers(size_t count) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  fibers_.reserve(count);
  while (fibers_.size() < count) {
    // One guard page below each stack turns an overflow into a fault instead of corruption.
    void* mapping = mmap(nullptr, stack_bytes_ + page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED) throw std::runtime_error("sim: cannot map a fiber stack");
    mprotect(mapping, page, PROT_NONE);
    Fiber fiber;
    fiber.stack = static_cast<char*>(mapping) + page;
    fiber.stack_size = stack_bytes_;
#ifndef UNET_SIM_X86_64_SWITCH
    fiber.context.ucontext = new ucontext_t{};
#endif
    fibers_.push_back(fiber);
  }
  return fibers_.data();
}

void FiberPool::forget_abandoned_frames() {
#ifdef UNET_SIM_ASAN
  for (Fiber& fiber : fibers_) __asan_unpoison_memory_region(fiber.stack, fiber.stack_size);
#endif
}

void fiber_start(Fiber& fiber, FiberEntry entry, void* arg) {
  fiber.entry = entry;
  fiber.arg = arg;
  fiber.finished = false;
  fiber.context.asan_fake_stack = nullptr;
#ifdef UNET_SIM_ASAN
  // The frames of the last thread to finish here unwound normally, except the topmost page's:
  // the trampoline and fiber_main, which never return.
  const size_t top_page = 4096;
  __asan_unpoison_memory_region(fiber.stack + fiber.stack_size - top_page, top_page);
#endif
#ifdef UNET_SIM_X86_64_SWITCH
  // Top of stack, 16-byte aligned: the trampoline's `call` then leaves the callee the alignment
  // the ABI promises. Below it: the return address and the six registers the switch pops.
  auto* top = reinterpret_cast<uintptr_t*>(
      (reinterpret_cast<uintptr_t>(fiber.stack + fiber.stack_size)) & ~uintptr_t{15});
  uintptr_t* sp = top - 7;
  sp[0] = 0;                                                     // r15
  sp[1] = 0;                                                     // r14
  sp[2] = 0;                                                     // r13
  sp[3] = reinterpret_cast<uintptr_t>(&fiber);                   // r12: the trampoline's argument
  sp[4] = 0;                                                     // rbx
  sp[5] = 0;                                                     // rbp
  sp[6] = reinterpret_cast<uintptr_t>(&unet_sim_fiber_trampoline);  // return address
  fiber.context.stack_pointer = sp;
#else
  auto* context = static_cast<ucontext_t*>(fiber.context.ucontext);
  getcontext(context);
  context->uc_stack.ss_sp = fiber.stack;
  context->uc_stack.ss_size = fiber.stack_size;
  context->uc_link = nullptr;
  const auto bits = reinterpret_cast<uintptr_t>(&fiber);
  makecontext(context, reinterpret_cast<void (*)()>(&unet_sim_fiber_main_ucontext), 2,
              static_cast<unsigned>(bits & 0xffffffffu), static_cast<unsigned>(bits >> 32));
#endif
}

void fiber_switch_to(FiberContext& scheduler, Fiber& fiber) {
  fiber.scheduler = &scheduler;
  before_switch(scheduler, fiber.stack, fiber.stack_size, /*leaving_for_good=*/false);
#ifdef UNET_SIM_X86_64_SWITCH
  unet_sim_context_switch(&scheduler.stack_pointer, fiber.context.stack_pointer);
#else
  if (scheduler.ucontext == nullptr) scheduler.ucontext = new ucontext_t{};
  swapcontext(static_cast<ucontext_t*>(scheduler.ucontext),
              static_cast<ucontext_t*>(fiber.context.ucontext));
#endif
  after_switch(scheduler.asan_fake_stack, nullptr, nullptr);
}

void fiber_yield(Fiber& fiber, FiberContext& scheduler) {
  before_switch(fiber.context, scheduler.stack_bottom, scheduler.stack_size, /*leaving_for_good=*/false);
#ifdef UNET_SIM_X86_64_SWITCH
  unet_sim_context_switch(&fiber.context.stack_pointer, scheduler.stack_pointer);
#else
  swapcontext(static_cast<ucontext_t*>(fiber.context.ucontext),
              static_cast<ucontext_t*>(scheduler.ucontext));
#endif
  after_switch(fiber.context.asan_fake_stack, nullptr, nullptr);
}

}  // namespace unet::sim
