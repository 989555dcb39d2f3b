// The sim runtime's scheduler: runs a grid's blocks one after another, each block's threads as
// fibers, and turns every barrier misuse into an error that names the kernel and the source lines.
#include "kernels/sim/runtime.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/sim/fiber.h"

namespace unet::sim {
namespace {

enum class ThreadState { ready, at_block_barrier, at_warp_barrier, finished, failed };

// A cp.async in flight: the bytes it will write, read when it was issued.
struct PendingCopy {
  unsigned char* destination;
  unsigned char data[16];
  int bytes;
};

struct SimThread {
  Fiber* fiber = nullptr;
  uint3 index;
  int linear = 0;
  ThreadState state = ThreadState::ready;
  std::source_location site;  // the barrier it waits at
  // Its part in the warp-level operation it waits at.
  WarpOp op = WarpOp::sync;
  unsigned mask = 0;
  uint64_t value = 0;
  int lane_arg = 0;
  int width = 32;
  uint64_t result = 0;
  // At a warp collective: its name, operands and the body that completes it.
  const char* collective = nullptr;
  void* operands = nullptr;
  CollectiveBody complete = nullptr;
  // Its cp.async copies: issued since the last commit, and committed groups oldest first.
  std::vector<PendingCopy> open_group;
  std::vector<std::vector<PendingCopy>> committed_groups;
};

struct BlockRun {
  const char* kernel = "";
  const std::function<void()>* body = nullptr;
  std::vector<SimThread> threads;
  SimThread* running = nullptr;
  std::string error;  // set by the first thread that fails; the scheduler throws it
};

struct Runtime {
  std::mutex launch_mutex;  // one launch at a time: the coordinates and shared statics are global
  FiberPool pool;
  FiberContext scheduler;
  BlockRun block;
  std::unique_ptr<unsigned char[]> dynamic_shared;
  std::map<const void*, size_t> dynamic_shared_limits;
  std::map<std::string, int64_t> launch_counts;
  uint64_t schedule_seed = initial_schedule_seed();
  uint64_t schedule_state = 0;  // the shuffle's generator, restarted from the seed at each launch
  std::vector<int> order;       // the order of the current scheduling pass

  static uint64_t initial_schedule_seed() {
    const char* text = std::getenv("UNET_SIM_SEED");
    return text != nullptr ? std::strtoull(text, nullptr, 10) : 1;
  }
};

Runtime& runtime() {
  static Runtime instance;
  return instance;
}

std::string coordinates(const uint3& v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

std::string block_label(const BlockRun& block) {
  return "sim: kernel '" + std::string(block.kernel) + "', block " + coordinates(current_coordinates.block_index);
}

std::string hex(unsigned mask) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", mask);
  return text;
}

std::string hex_address(const void* p) {
  char text[24];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

void thread_main(void* arg) {
  auto& thread = *static_cast<SimThread*>(arg);
  try {
    (*runtime().block.body)();
  } catch (const std::exception& error) {
    BlockRun& block = runtime().block;
    if (block.error.empty()) {
      block.error = block_label(block) + ", thread " + coordinates(thread.index) + ": " + error.what();
    }
    thread.state = ThreadState::failed;
    return;
  }
  thread.state = ThreadState::finished;
}

std::string operation_name(const SimThread& thread) {
  return thread.op == WarpOp::collective ? thread.collective : warp_op_name(thread.op);
}

bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

// Every lane of the warp is at a collective: check that it is one instruction, then run it.
void complete_collective(std::vector<SimThread>& threads, int warp_base) {
  const SimThread& first = threads[warp_base];
  void* lanes[32];
  for (int lane = 0; lane < 32; ++lane) {
    const SimThread& thread = threads[warp_base + lane];
    if (thread.op != WarpOp::collective || !same_site(thread.site, first.site) || thread.complete != first.complete) {
      fail_thread("warp-level divergence: lane " + std::to_string(lane) + " is at " + operation_name(thread) + " (" +
                  where(thread.site) + ") while lane 0 is at " + operation_name(first) + " (" + where(first.site) +
                  "); a warp-collective instruction needs every lane at the same call");
    }
    lanes[lane] = thread.operands;
  }
  first.complete(lanes, first.site);
  for (int lane = 0; lane < 32; ++lane) threads[warp_base + lane].state = ThreadState::ready;
}

int source_lane(const SimThread& thread, int lane) {
  const int width = thread.width;
  const int segment = lane & ~(width - 1);
  switch (thread.op) {
    case WarpOp::shfl_idx: return segment + (thread.lane_arg & (width - 1));
    case WarpOp::shfl_up: return (lane - segment) >= thread.lane_arg ? lane - thread.lane_arg : lane;
    case WarpOp::shfl_down: return (lane - segment) + thread.lane_arg < width ? lane + thread.lane_arg : lane;
    case WarpOp::shfl_xor: {
      const int partner = lane ^ thread.lane_arg;
      return (partner >= segment && partner < segment + width) ? partner : lane;
    }
    default: return lane;
  }
}

// The last lane of `mask` has arrived: compute every lane's result and let them all go.
void complete_warp_operation(std::vector<SimThread>& threads, int warp_base, unsigned mask) {
  const SimThread& first = threads[warp_base + __builtin_ctz(mask)];
  if (first.op == WarpOp::collective) return complete_collective(threads, warp_base);
  uint64_t ballot = 0;
  for (int lane = 0; lane < 32; ++lane) {
    if (!(mask >> lane & 1)) continue;
    const SimThread& thread = threads[warp_base + lane];
    if (thread.op != first.op || thread.mask != first.mask) {
      fail_thread("warp-level divergence: lane " + std::to_string(lane) + " is at " + operation_name(thread) +
                  " (" + where(thread.site) + ", mask " + hex(thread.mask) + ") while lane " +
                  std::to_string(__builtin_ctz(mask)) + " is at " + operation_name(first) + " (" +
                  where(first.site) + ", mask " + hex(first.mask) + ")");
    }
    if (thread.value != 0) ballot |= uint64_t{1} << lane;
  }
  for (int lane = 0; lane < 32; ++lane) {
    if (!(mask >> lane & 1)) continue;
    SimThread& thread = threads[warp_base + lane];
    if (thread.op == WarpOp::ballot) {
      thread.result = ballot;
    } else if (thread.op != WarpOp::sync) {
      const int source = source_lane(thread, lane);
      if (!(mask >> source & 1)) {
        fail_thread(std::string(warp_op_name(thread.op)) + " at " + where(thread.site) + ": lane " +
                    std::to_string(lane) + " reads lane " + std::to_string(source) +
                    ", which is not in the mask " + hex(mask));
      }
      thread.result = threads[warp_base + source].value;
    }
    thread.state = ThreadState::ready;
  }
}

std::string describe_wait(const SimThread& thread) {
  switch (thread.state) {
    case ThreadState::finished: return "has returned";
    case ThreadState::at_block_barrier: return "waits at __syncthreads (" + where(thread.site) + ")";
    case ThreadState::at_warp_barrier:
      return "waits at " + operation_name(thread) + " (" + where(thread.site) + ")";
    default: return "is running";
  }
}

// No thread is ready: release a block barrier that every thread reached at the same place, or
// explain why the block can make no progress (which on a GPU would hang or be undefined).
void resolve_barriers(BlockRun& block) {
  const SimThread* at_block = nullptr;
  const SimThread* returned = nullptr;
  for (const SimThread& thread : block.threads) {
    if (thread.state == ThreadState::at_warp_barrier) {
      const int lane = thread.linear % 32;
      const int warp_base = thread.linear - lane;
      for (int other = 0; other < 32; ++other) {
        const SimThread& partner = block.threads[warp_base + other];
        if ((thread.mask >> other & 1) && partner.state != ThreadState::at_warp_barrier) {
          throw KernelError(block_label(block) + ": thread " + coordinates(thread.index) + " (lane " +
                            std::to_string(lane) + ") waits at " + operation_name(thread) + " (" +
                            where(thread.site) + ") for lane " + std::to_string(other) + " of mask " +
                            hex(thread.mask) + ", which " + describe_wait(partner));
        }
      }
    }
    if (thread.state == ThreadState::at_block_barrier) {
      if (at_block == nullptr) at_block = &thread;
      if (thread.site.line() != at_block->site.line() ||
          std::strcmp(thread.site.file_name(), at_block->site.file_name()) != 0) {
        throw KernelError(block_label(block) + ": divergent __syncthreads: thread " +
                          coordinates(at_block->index) + " waits at " + where(at_block->site) + ", thread " +
                          coordinates(thread.index) + " at " + where(thread.site));
      }
    }
    if (thread.state == ThreadState::finished && returned == nullptr) returned = &thread;
  }
  if (at_block != nullptr && returned != nullptr) {
    throw KernelError(block_label(block) + ": thread " + coordinates(returned->index) +
                      " returned while thread " + coordinates(at_block->index) + " waits at __syncthreads (" +
                      where(at_block->site) + ")");
  }
  for (SimThread& thread : block.threads) {
    if (thread.state == ThreadState::at_block_barrier) thread.state = ThreadState::ready;
  }
}

// The order of the next scheduling pass: thread order for seed 0, else a Fisher-Yates shuffle
// drawn from splitmix64.
void shuffle_order(Runtime& rt) {
  for (int i = 0; i < static_cast<int>(rt.order.size()); ++i) rt.order[i] = i;
  if (rt.schedule_seed == 0) return;
  for (int i = static_cast<int>(rt.order.size()) - 1; i > 0; --i) {
    uint64_t z = (rt.schedule_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::swap(rt.order[i], rt.order[z % static_cast<uint64_t>(i + 1)]);
  }
}

void run_block(Runtime& rt, dim3 block_dim) {
  BlockRun& block = rt.block;
  const int count = static_cast<int>(block_dim.x * block_dim.y * block_dim.z);
  Fiber* fibers = rt.pool.fibers(count);
  block.threads.resize(count);
  for (int linear = 0; linear < count; ++linear) {
    SimThread& thread = block.threads[linear];
    thread = SimThread{};
    thread.fiber = &fibers[linear];
    thread.linear = linear;
    thread.index = {linear % block_dim.x, (linear / block_dim.x) % block_dim.y,
                    linear / (block_dim.x * block_dim.y)};
    fiber_start(*thread.fiber, &thread_main, &thread);
  }
  rt.order.resize(count);
  for (;;) {
    shuffle_order(rt);
    bool all_finished = true;
    for (int index : rt.order) {
      SimThread& thread = block.threads[index];
      if (thread.state == ThreadState::ready) {
        current_coordinates.thread_index = thread.index;
        block.running = &thread;
        fiber_switch_to(rt.scheduler, *thread.fiber);
        if (!block.error.empty()) throw KernelError(block.error);
      }
      all_finished = all_finished && thread.state == ThreadState::finished;
    }
    if (all_finished) return;
    bool any_ready = false;
    for (const SimThread& thread : block.threads) any_ready = any_ready || thread.state == ThreadState::ready;
    if (!any_ready) resolve_barriers(block);
  }
}

}  // namespace

std::string where(const std::source_location& site) {
  std::string path = site.file_name();
  size_t cut = path.rfind('/');
  if (cut != std::string::npos && cut > 0) cut = path.rfind('/', cut - 1);
  if (cut != std::string::npos) path = path.substr(cut + 1);
  return path + ":" + std::to_string(site.line());
}

// Called on a thread's own fiber: unwinds the thread's frames (so nothing it holds leaks) to
// thread_main, which records the error for the scheduler to throw.
void fail_thread(const std::string& message) { throw KernelError(message); }

const char* warp_op_name(WarpOp op) {
  switch (op) {
    case WarpOp::sync: return "__syncwarp";
    case WarpOp::shfl_idx: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_xor: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::collective: return "a warp-collective instruction";
  }
  return "?";
}

void block_barrier(const std::source_location& site) {
  BlockRun& block = runtime().block;
  SimThread& thread = *block.running;
  thread.state = ThreadState::at_block_barrier;
  thread.site = site;
  fiber_yield(*thread.fiber, runtime().scheduler);
}

uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int lane_arg, int width,
                       const std::source_location& site) {
  BlockRun& block = runtime().block;
  SimThread& thread = *block.running;
  const int lane = thread.linear % 32;
  const int warp_base = thread.linear - lane;
  const int lanes_in_warp = std::min(32, static_cast<int>(block.threads.size()) - warp_base);
  const unsigned existing = lanes_in_warp == 32 ? 0xffffffffu : (1u << lanes_in_warp) - 1;
  // Built only on failure: a waiting thread must hold nothing that would leak if it is abandoned.
  const auto call = [&] { return std::string(warp_op_name(op)) + " at " + where(site); };
  if (!(mask >> lane & 1)) fail_thread(call() + ": lane " + std::to_string(lane) + " is not in its mask " + hex(mask));
  if (mask & ~existing) {
    fail_thread(call() + ": mask " + hex(mask) + " names lanes that do not exist (this warp has " +
                std::to_string(lanes_in_warp) + " threads)");
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    fail_thread(call() + ": width " + std::to_string(width) + " is not a power of two up to 32");
  }
  thread.state = ThreadState::at_warp_barrier;
  thread.site = site;
  thread.op = op;
  thread.mask = mask;
  thread.value = value;
  thread.lane_arg = lane_arg;
  thread.width = width;
  bool everyone_here = true;
  for (int other = 0; other < 32; ++other) {
    if (mask >> other & 1) {
      everyone_here = everyone_here && block.threads[warp_base + other].state == ThreadState::at_warp_barrier;
    }
  }
  if (everyone_here) complete_warp_operation(block.threads, warp_base, mask);
  fiber_yield(*thread.fiber, runtime().scheduler);
  return thread.result;
}

void warp_collective(const char* name, void* operands, CollectiveBody complete, const std::source_location& site) {
  BlockRun& block = runtime().block;
  SimThread& thread = *block.running;
  const int lane = thread.linear % 32;
  const int warp_base = thread.linear - lane;
  if (static_cast<int>(block.threads.size()) - warp_base < 32) {
    fail_thread(std::string(name) + " at " + where(site) + ": needs a full warp of 32 threads; this warp has " +
                std::to_string(block.threads.size() - warp_base));
  }
  thread.state = ThreadState::at_warp_barrier;
  thread.site = site;
  thread.op = WarpOp::collective;
  thread.mask = 0xffffffffu;
  thread.collective = name;
  thread.operands = operands;
  thread.complete = complete;
  bool everyone_here = true;
  for (int other = 0; other < 32; ++other) {
    everyone_here = everyone_here && block.threads[warp_base + other].state == ThreadState::at_warp_barrier;
  }
  if (everyone_here) complete_warp_operation(block.threads, warp_base, 0xffffffffu);
  fiber_yield(*thread.fiber, runtime().scheduler);
}

void cp_async_issue(void* shared_destination, const void* global_source, int bytes, int source_bytes,
                    const std::source_location& site) {
  const auto call = [&] { return "cp.async (" + std::to_string(bytes) + " bytes) at " + where(site); };
  if (bytes != 4 && bytes != 8 && bytes != 16) fail_thread(call() + ": the size must be 4, 8 or 16 bytes");
  if (source_bytes < 0 || source_bytes > bytes) {
    fail_thread(call() + ": src-size " + std::to_string(source_bytes) + " is not within 0.." + std::to_string(bytes));
  }
  const auto misaligned = [&](const void* p) { return reinterpret_cast<uintptr_t>(p) % bytes != 0; };
  if (misaligned(shared_destination) || misaligned(global_source)) {
    fail_thread(call() + ": misaligned address (shared " + hex_address(shared_destination) + ", global " +
                hex_address(global_source) + "): both must be aligned to the copy size");
  }
  PendingCopy copy{static_cast<unsigned char*>(shared_destination), {}, bytes};
  if (source_bytes > 0) std::memcpy(copy.data, global_source, source_bytes);  // the rest is zero-filled
  std::memset(shared_destination, 0xff, bytes);  // not there yet: reading it early shows NaN
  runtime().block.running->open_group.push_back(copy);
}

void cp_async_commit() {
  SimThread& thread = *runtime().block.running;
  thread.committed_groups.push_back(std::move(thread.open_group));
  thread.open_group.clear();
}

void cp_async_wait(int pending_groups) {
  SimThread& thread = *runtime().block.running;
  auto& groups = thread.committed_groups;
  const size_t keep = static_cast<size_t>(std::max(pending_groups, 0));
  if (groups.size() <= keep) return;
  const size_t landing = groups.size() - keep;
  for (size_t g = 0; g < landing; ++g) {
    for (const PendingCopy& copy : groups[g]) std::memcpy(copy.destination, copy.data, copy.bytes);
  }
  groups.erase(groups.begin(), groups.begin() + static_cast<std::ptrdiff_t>(landing));
}

uint64_t set_schedule_seed(uint64_t seed) {
  std::lock_guard lock(runtime().launch_mutex);
  return std::exchange(runtime().schedule_seed, seed);
}

void set_dynamic_shared_limit(const void* kernel, const char* name, size_t bytes) {
  if (bytes > max_dynamic_shared_limit) {
    throw KernelError("sim: kernel '" + std::string(name) + "': " + std::to_string(bytes) +
                      " bytes of dynamic shared memory requested; a block can have at most " +
                      std::to_string(max_dynamic_shared_limit));
  }
  std::lock_guard lock(runtime().launch_mutex);
  runtime().dynamic_shared_limits[kernel] = bytes;
}

size_t dynamic_shared_limit(const void* kernel) {
  const auto& limits = runtime().dynamic_shared_limits;
  const auto found = limits.find(kernel);
  return found == limits.end() ? default_dynamic_shared_limit : found->second;
}

unsigned char* dynamic_shared_memory() { return runtime().dynamic_shared.get(); }

void check_configuration(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes) {
  const auto invalid = [&](const std::string& why) {
    throw KernelError("sim: kernel '" + std::string(name) + "': invalid configuration argument: " + why);
  };
  const auto text = [](dim3 d) {
    return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
  };
  if (block.x == 0 || block.y == 0 || block.z == 0) invalid("block " + text(block) + " has a zero dimension");
  if (block.x > 1024 || block.y > 1024 || block.z > 64) {
    invalid("block " + text(block) + " exceeds the per-dimension limits (1024, 1024, 64)");
  }
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads > 1024) invalid("block " + text(block) + " has " + std::to_string(threads) + " threads; at most 1024");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) invalid("grid " + text(grid) + " has a zero dimension");
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    invalid("grid " + text(grid) + " exceeds the limits (2^31-1, 65535, 65535)");
  }
  std::lock_guard lock(runtime().launch_mutex);
  const size_t limit = dynamic_shared_limit(kernel);
  if (shared_bytes > limit) {
    invalid(std::to_string(shared_bytes) + " bytes of dynamic shared memory; the limit for this kernel is " +
            std::to_string(limit) + (limit == default_dynamic_shared_limit ? " (raise it with allow_dynamic_shared)" : ""));
  }
}

void run_grid(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes,
              const std::function<void()>& thread_body) {
  check_configuration(name, kernel, grid, block, shared_bytes);
  Runtime& rt = runtime();
  std::lock_guard lock(rt.launch_mutex);
  ++rt.launch_counts[name];
  // Exactly the requested size, so that AddressSanitizer sees an access past its end.
  rt.dynamic_shared.reset(new unsigned char[shared_bytes]);
  rt.block.kernel = name;
  rt.block.body = &thread_body;
  rt.block.error.clear();
  rt.schedule_state = rt.schedule_seed;  // the same seed schedules a launch the same way every time
  current_coordinates.block_dim = block;
  current_coordinates.grid_dim = grid;
  try {
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          current_coordinates.block_index = {x, y, z};
          // Shared memory starts each block as garbage, as on a GPU: all-ones bytes read as NaN.
          std::memset(rt.dynamic_shared.get(), 0xff, shared_bytes);
          run_block(rt, block);
        }
      }
    }
  } catch (...) {
    // The block's fibers were abandoned mid-call; their stacks will be reused.
    rt.pool.forget_abandoned_frames();
    rt.block.running = nullptr;
    throw;
  }
  rt.block.running = nullptr;
}

namespace {
std::atomic<int> capturing_streams{0};
}  // namespace

bool capture_active() { return capturing_streams.load() > 0; }

void enqueue(Stream stream, std::function<void()> work) {
  auto* sim_stream = static_cast<SimStream*>(stream.handle);
  if (sim_stream == nullptr && capture_active()) {
    throw KernelError("sim: work on the default stream while a stream is being captured (on a GPU the legacy "
                      "stream would synchronise with the capturing stream: cudaErrorStreamCaptureImplicit)");
  }
  if (sim_stream != nullptr && sim_stream->capturing != nullptr) {
    sim_stream->capturing->nodes.push_back(std::move(work));
  } else {
    work();
  }
}

void begin_capture(Stream stream) {
  auto* sim_stream = static_cast<SimStream*>(stream.handle);
  if (sim_stream == nullptr) throw KernelError("sim: the default stream cannot be captured (as in CUDA)");
  if (sim_stream->capturing != nullptr) throw KernelError("sim: the stream is already being captured");
  sim_stream->capturing = new SimGraph;
  ++capturing_streams;
}

SimGraph* end_capture(Stream stream) {
  auto* sim_stream = static_cast<SimStream*>(stream.handle);
  if (sim_stream == nullptr || sim_stream->capturing == nullptr) {
    throw KernelError("sim: end_capture on a stream that is not being captured");
  }
  SimGraph* graph = sim_stream->capturing;
  sim_stream->capturing = nullptr;
  --capturing_streams;
  return graph;
}

void replay(const SimGraph& graph) {
  for (const auto& node : graph.nodes) node();
}

std::map<std::string, int64_t>& launch_counts() { return runtime().launch_counts; }

}  // namespace unet::sim
