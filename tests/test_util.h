// Helpers shared by the tests: device buffers, random inputs, norm-wise comparison.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/device.h"

namespace unet::test {

// An array on a device, for tests that call launchers directly.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer(Device& device, size_t count) : device_(device), count_(count) {
    data_ = static_cast<T*>(device_.allocate(count * sizeof(T)));
  }
  DeviceBuffer(Device& device, const std::vector<T>& host) : DeviceBuffer(device, host.size()) { upload(host); }
  ~DeviceBuffer() { device_.release(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  void upload(const std::vector<T>& host) { device_.copy_to_device(data_, host.data(), host.size() * sizeof(T)); }
  std::vector<T> download() const {
    device_.synchronize();
    std::vector<T> host(count_);
    device_.copy_to_host(host.data(), data_, count_ * sizeof(T));
    return host;
  }
  // All-ones bytes: NaN as float, -1 as int. An element the kernel should write but does not
  // then fails the comparison.
  void poison() { device_.fill_bytes(data_, 0xff, count_ * sizeof(T)); }

 private:
  Device& device_;
  size_t count_;
  T* data_ = nullptr;
};

inline std::vector<float> random_uniform(size_t count, uint64_t seed, float low = -1.0f, float high = 1.0f) {
  std::mt19937_64 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(count);
  for (auto& v : values) v = distribution(generator);
  return values;
}

// Small integers in [low, high]: sums of products of them are exact in fp32.
inline std::vector<float> random_integers(size_t count, uint64_t seed, int low = -3, int high = 3) {
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<int> distribution(low, high);
  std::vector<float> values(count);
  for (auto& v : values) v = static_cast<float>(distribution(generator));
  return values;
}

// ||out - ref|| / ||ref||, infinite if any element of out is NaN or infinite.
template <class A, class B>
double relative_error(const std::vector<A>& out, const std::vector<B>& ref) {
  double difference = 0, reference = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(static_cast<double>(out[i]))) return INFINITY;
    const double d = static_cast<double>(out[i]) - static_cast<double>(ref[i]);
    difference += d * d;
    reference += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  return reference == 0 ? std::sqrt(difference) : std::sqrt(difference / reference);
}

}  // namespace unet::test
