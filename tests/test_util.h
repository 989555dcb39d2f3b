// Helpers shared by the tests: scratch folders, device buffers, random inputs, norm-wise comparison.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/device.h"

namespace unet::test {

// What `body` threw as a unet::Error, or "(no error)" if it threw nothing.
inline std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

// A fresh folder under the system's temporary folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "unet-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

#ifdef UNET_TEST_DEVICE
// The device a kernel test binary runs on: sim or cuda (UNET_TEST_DEVICE, from tests/CMakeLists.txt).
constexpr DeviceKind kDevice = DeviceKind::UNET_TEST_DEVICE;
inline Device& dev() { return device(kDevice); }
#endif

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

// A channel-slice layout: `channels` values per pixel, at `offset` within a pixel of `stride`
// values. Dense is {channels, 0}; kernels must treat every other layout the same.
struct Slice {
  int stride;
  int offset;
};

// Places dense (pixels, channels) values into a wider (pixels, stride) buffer filled with `fill`.
template <class T>
std::vector<T> widen(const std::vector<T>& dense, int64_t pixels, int channels, Slice slice, T fill) {
  std::vector<T> wide(static_cast<size_t>(pixels) * slice.stride, fill);
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) wide[p * slice.stride + slice.offset + c] = dense[p * channels + c];
  }
  return wide;
}

// The inverse of widen: the slice's values, dense.
template <class T>
std::vector<T> narrow(const std::vector<T>& wide, int64_t pixels, int channels, Slice slice) {
  std::vector<T> dense(static_cast<size_t>(pixels) * channels);
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) dense[p * channels + c] = wide[p * slice.stride + slice.offset + c];
  }
  return dense;
}

// True if every value of `wide` outside the slice still equals `fill`: a kernel wrote nothing
// outside its channels.
template <class T>
bool outside_untouched(const std::vector<T>& wide, int64_t pixels, int channels, Slice slice, T fill) {
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < slice.stride; ++c) {
      if (c >= slice.offset && c < slice.offset + channels) continue;
      const T v = wide[p * slice.stride + c];
      if (!(v == fill || (std::isnan(static_cast<double>(v)) && std::isnan(static_cast<double>(fill))))) return false;
    }
  }
  return true;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& values) {
  return std::vector<double>(values.begin(), values.end());
}

// Central differences of a scalar function of x, in double: the gradient checks' yardstick.
template <class Loss>
std::vector<double> numerical_gradient(std::vector<double> x, Loss loss, double step = 1e-6) {
  std::vector<double> gradient(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + step;
    const double up = loss(x);
    x[i] = saved - step;
    const double down = loss(x);
    x[i] = saved;
    gradient[i] = (up - down) / (2 * step);
  }
  return gradient;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// Scratch of `bytes` for a kernel's workspace, poisoned: a kernel that reads scratch it did not
// write then fails.
struct Workspace : DeviceBuffer<float> {
  Workspace(Device& device, size_t bytes)
      : DeviceBuffer<float>(device, bytes == 0 ? 1 : (bytes + sizeof(float) - 1) / sizeof(float)) {
    poison();
  }
};

inline std::vector<float> to_float(const std::vector<double>& values) { return {values.begin(), values.end()}; }

// Bit for bit for small-integer inputs, where fp32 is exact; to 1e-5 norm-wise relative error otherwise.
inline void compare(const std::vector<float>& out, const std::vector<double>& expected, bool integers) {
  if (integers) {
    REQUIRE(out == to_float(expected));
  } else {
    CHECK(relative_error(out, expected) < 1e-5);
  }
}

inline std::vector<double> plus(std::vector<double> a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

}  // namespace unet::test
