// The cpu and sim devices, the bookkeeping every device shares, and the device registry.
#include "engine/device.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "engine/cuda_device.h"
#include "engine/dispatch.h"
#include "kernels/sim/runtime.h"

namespace unet {

void* Device::allocate(size_t bytes) {
  void* pointer = raw_allocate(bytes);
  sizes_[pointer] = bytes;
  ++allocation_count_;
  bytes_in_use_ += bytes;
  if (bytes_in_use_ > peak_bytes_) peak_bytes_ = bytes_in_use_;
  return pointer;
}

void Device::release(void* pointer) {
  if (pointer == nullptr) return;
  const auto found = sizes_.find(pointer);
  if (found == sizes_.end()) throw Error(std::string(device_name(kind_)) + ": release of memory it did not allocate");
  bytes_in_use_ -= found->second;
  sizes_.erase(found);
  raw_release(pointer);
}

void Device::begin_capture(Stream) {
  throw Error(std::string("the ") + device_name(kind_) + " device has no graphs");
}

std::unique_ptr<Graph> Device::end_capture(Stream) {
  throw Error(std::string("the ") + device_name(kind_) + " device has no graphs");
}

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Work on the host runs when it is issued, so an event is the time it was recorded.
struct HostEvent {
  double ms = 0;
};

// memcpy with a null pointer is undefined even for 0 bytes, and an empty std::vector's data() may be
// null; cudaMemcpy accepts a count of 0 with any pointers, so the host devices do too.
void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes != 0) std::memcpy(dst, src, bytes);
}

// Memory, copies and events on the host: what cpu and sim have in common.
class HostDevice : public Device {
 public:
  using Device::Device;

  void copy_to_device(void* dst, const void* src, size_t bytes) override { copy_bytes(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { copy_bytes(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes, Stream) override { copy_bytes(dst, src, bytes); }
  void fill_bytes(void* dst, unsigned char value, size_t bytes, Stream) override { std::memset(dst, value, bytes); }

  void synchronize(Stream) override {}
  Event create_event() override { return {new HostEvent}; }
  void destroy_event(Event event) override { delete static_cast<HostEvent*>(event.handle); }
  void record(Event event, Stream) override { static_cast<HostEvent*>(event.handle)->ms = now_ms(); }
  float elapsed_ms(Event start, Event end) override {
    return static_cast<float>(static_cast<HostEvent*>(end.handle)->ms - static_cast<HostEvent*>(start.handle)->ms);
  }

 protected:
  // 256-byte aligned like cudaMalloc, but exactly `bytes` long, so AddressSanitizer's redzone
  // starts at the first byte past the end.
  void* raw_allocate(size_t bytes) override { return ::operator new(bytes, std::align_val_t{256}); }
  void raw_release(void* pointer) override { ::operator delete(pointer, std::align_val_t{256}); }
};

class CpuDevice final : public HostDevice {
 public:
  CpuDevice() : HostDevice(DeviceKind::cpu) {}
  DeviceInfo info() const override { return {"host CPU", 0, 0, 0}; }
  Stream create_stream() override { return {}; }
  void destroy_stream(Stream) override {}
};

class SimGraphExec final : public Graph {
 public:
  explicit SimGraphExec(sim::SimGraph* graph) : graph_(graph) {}
  void replay(Stream) override { sim::replay(*graph_); }

 private:
  std::unique_ptr<sim::SimGraph> graph_;
};

// Device-side work goes through the sim runtime's streams, so that it can be captured in a graph.
// While a stream is being captured it refuses what the cuda device's calls would be refused
// (cudaMalloc, cudaFree, synchronous copies on the legacy stream, waiting for the capture), so a
// step that a GPU cannot capture fails on sim too.
class SimDevice final : public HostDevice {
 public:
  SimDevice() : HostDevice(DeviceKind::sim) {}
  DeviceInfo info() const override { return {"sim (CUDA kernels on the CPU)", 0, 0, 0}; }

  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    refuse_during_capture("a synchronous copy to the device");
    HostDevice::copy_to_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    refuse_during_capture("a synchronous copy to the host");
    HostDevice::copy_to_host(dst, src, bytes);
  }
  void synchronize(Stream stream) override {
    const auto* sim_stream = static_cast<const sim::SimStream*>(stream.handle);
    if (sim_stream == nullptr || sim_stream->capturing != nullptr) refuse_during_capture("waiting for the device");
  }
  void copy(void* dst, const void* src, size_t bytes, Stream stream) override {
    sim::enqueue(stream, [=] { copy_bytes(dst, src, bytes); });
  }
  void fill_bytes(void* dst, unsigned char value, size_t bytes, Stream stream) override {
    sim::enqueue(stream, [=] { std::memset(dst, value, bytes); });
  }
  Stream create_stream() override { return {new sim::SimStream}; }
  void destroy_stream(Stream stream) override { delete static_cast<sim::SimStream*>(stream.handle); }
  void record(Event event, Stream stream) override {
    auto* host_event = static_cast<HostEvent*>(event.handle);
    sim::enqueue(stream, [host_event] { host_event->ms = now_ms(); });
  }
  void begin_capture(Stream stream) override { sim::begin_capture(stream); }
  std::unique_ptr<Graph> end_capture(Stream stream) override {
    return std::make_unique<SimGraphExec>(sim::end_capture(stream));
  }

 protected:
  void* raw_allocate(size_t bytes) override {
    refuse_during_capture("an allocation");
    return HostDevice::raw_allocate(bytes);
  }
  void raw_release(void* pointer) override {
    refuse_during_capture("a release");
    HostDevice::raw_release(pointer);
  }

 private:
  static void refuse_during_capture(const char* what) {
    if (sim::capture_active()) {
      throw Error(std::string("sim: ") + what + " while a stream is being captured (a GPU refuses it during capture)");
    }
  }
};

}  // namespace

bool built_with_cuda() {
#if UNET_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available(std::string* why) {
#if UNET_WITH_CUDA
  return cuda_device_usable(why);
#else
  if (why != nullptr) *why = "this build of unet has no CUDA support (the CUDA toolkit was not found when it was configured)";
  return false;
#endif
}

void refuse_cuda_device() {
  std::string why;
  cuda_available(&why);
  throw Error("the cuda device is not available: " + why + " (use --device cpu or sim)");
}

Device& device(DeviceKind kind) {
  static std::mutex mutex;
  static std::unique_ptr<Device> devices[3];
  std::lock_guard lock(mutex);
  auto& slot = devices[static_cast<int>(kind)];
  if (!slot) {
    switch (kind) {
      case DeviceKind::cpu: slot = std::make_unique<CpuDevice>(); break;
      case DeviceKind::sim: slot = std::make_unique<SimDevice>(); break;
      case DeviceKind::cuda: {
        if (!cuda_available()) refuse_cuda_device();
#if UNET_WITH_CUDA
        slot = make_cuda_device();
#endif
        break;
      }
    }
  }
  return *slot;
}

DeviceKind parse_device(const std::string& name) {
  if (name == "cpu") return DeviceKind::cpu;
  if (name == "sim") return DeviceKind::sim;
  if (name == "cuda") return DeviceKind::cuda;
  throw Error("unknown device '" + name + "' (expected cpu, sim or cuda)");
}

}  // namespace unet
