// Device: memory, copies, streams, events and graphs on one of the three devices.
//
//   cpu   host memory; ops run the references in kernels/*_cpu.cpp.
//   sim   host memory, allocated at exactly the requested size so AddressSanitizer sees every
//         out-of-bounds access; ops run the CUDA kernels on the sim runtime.
//   cuda  GPU memory through the CUDA runtime (linked statically; the driver is found at run time,
//         so a binary starts on a machine without one and only asking for cuda fails).
//
// Copies to and from the host are synchronous; device-to-device copies, fills and kernels are
// ordered on the stream they are given (the default stream when none is).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "kernels/backend.h"

namespace unet {

struct Event {
  void* handle = nullptr;
};

// A captured sequence of stream work, replayed as a unit (a CUDA graph on cuda).
class Graph {
 public:
  virtual ~Graph() = default;
  virtual void replay(Stream stream) = 0;
};

struct DeviceInfo {
  std::string name;              // "NVIDIA H100 80GB HBM3", or "host CPU"
  size_t total_memory = 0;       // bytes; 0 where it does not apply
  int compute_capability = 0;    // 90 for sm_90; 0 for cpu and sim
  int multiprocessors = 0;
};

class Device {
 public:
  explicit Device(DeviceKind kind) : kind_(kind) {}
  virtual ~Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  DeviceKind kind() const { return kind_; }
  virtual DeviceInfo info() const = 0;

  void* allocate(size_t bytes);
  void release(void* pointer);

  virtual void copy_to_device(void* device_dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* device_src, size_t bytes) = 0;
  virtual void copy(void* device_dst, const void* device_src, size_t bytes, Stream stream = {}) = 0;
  virtual void fill_bytes(void* device_dst, unsigned char value, size_t bytes, Stream stream = {}) = 0;

  virtual Stream create_stream() = 0;
  virtual void destroy_stream(Stream stream) = 0;
  // Waits for `stream`; the default (null) stream means all work on the device.
  virtual void synchronize(Stream stream = {}) = 0;

  virtual Event create_event() = 0;
  virtual void destroy_event(Event event) = 0;
  virtual void record(Event event, Stream stream = {}) = 0;
  // Milliseconds between two recorded events; waits for the second.
  virtual float elapsed_ms(Event start, Event end) = 0;

  // Everything launched on `stream` between the two calls is recorded, not run.
  virtual void begin_capture(Stream stream);
  virtual std::unique_ptr<Graph> end_capture(Stream stream);

  // Counters for tests and reports: a steady-state training step must allocate nothing.
  int64_t allocation_count() const { return allocation_count_; }
  size_t bytes_in_use() const { return bytes_in_use_; }
  size_t peak_bytes() const { return peak_bytes_; }
  void reset_peak() { peak_bytes_ = bytes_in_use_; }

 protected:
  virtual void* raw_allocate(size_t bytes) = 0;
  virtual void raw_release(void* pointer) = 0;

 private:
  DeviceKind kind_;
  std::unordered_map<void*, size_t> sizes_;
  int64_t allocation_count_ = 0;
  size_t bytes_in_use_ = 0;
  size_t peak_bytes_ = 0;
};

// The process-wide device of each kind, created on first use. Asking for cuda where it cannot run
// throws unet::Error with one line saying why (no CUDA in this build, no driver, no GPU).
Device& device(DeviceKind kind);

// Whether the cuda device can be used here; if not, `why` says why.
bool cuda_available(std::string* why = nullptr);
// Whether this build includes the cuda device at all.
bool built_with_cuda();

// "cpu", "sim" or "cuda" to a DeviceKind; anything else throws unet::Error.
DeviceKind parse_device(const std::string& name);

}  // namespace unet
