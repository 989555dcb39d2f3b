// Helpers shared by the tests: scratch folders, device buffers, random inputs, norm-wise comparison,
// and the convolution cases every device's kernels are checked on.
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
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "models/unet_shapes.h"

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

// ---------------------------------------------------------------------------------------------
// The convolution cases: what the CUDA kernels (test_conv2d_kernels.cpp,
// test_conv_transpose2d_kernels.cpp, on sim and cuda) and the cpu device's fast kernels
// (test_conv_fast_cpu.cpp) are each checked against the reference on. The comments name the tiles
// of both: the CUDA kernels' 128-wide tiles and pixel blocks, the cpu GEMMs' 96-pixel tiles,
// 6 x 16 micro-tiles, 16-column panels, 256-value depth blocks and the weight gradient's
// 512-pixel blocks (kernels/gemm_cpu.h).

struct ConvCase {
  Conv2dShape shape;
  bool relu = false;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};  // channel slices of x/dx and of y/dy/relu_output; stride 0 is dense
  bool integers = false;      // small integers: every result is exact and must match bit for bit
  Slice mask{0, 0};           // relu_output's own slice, where it differs from dy's
};

inline Conv2dShape conv_shape(int n, int h, int w, int c_in, int c_out, int k) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out, .k = k};
}

// k = 1, 3 and 5, odd channel counts and image sizes, N = 1 and 2.
inline std::vector<ConvCase> conv2d_odd_cases() {
  return {
      {conv_shape(1, 5, 7, 3, 5, 1)},
      {conv_shape(2, 3, 9, 17, 33, 1), true},
      {conv_shape(2, 4, 5, 64, 1, 1)},  // the output head: one output channel
      {conv_shape(1, 6, 6, 33, 64, 1), true, false},
      {conv_shape(1, 5, 7, 3, 64, 3), true},  // the first layer: three input channels
      {conv_shape(2, 3, 9, 5, 3, 3)},
      {conv_shape(2, 9, 11, 17, 33, 3), true},  // 198 pixels: partial pixel blocks, tiles and micro-tiles
      {conv_shape(1, 7, 5, 33, 17, 3), false, false},
      {conv_shape(2, 5, 6, 64, 64, 3), true},
      {conv_shape(1, 4, 3, 64, 129, 3)},  // a partial 128-wide tile of output channels, a partial panel
      {conv_shape(1, 4, 3, 40, 129, 3)},  // K = 9 x 40: the cpu's taps in two depth blocks
      {conv_shape(2, 1, 1, 5, 17, 3), true},  // 1x1 images: every tap but the centre is padding
      {conv_shape(1, 1, 1, 64, 64, 3)},
      {conv_shape(2, 3, 1, 17, 5, 3), true},
      {conv_shape(2, 17, 19, 17, 33, 3), true},  // 646 pixels: the weight gradient's pixels in several chunks
      {conv_shape(2, 40, 41, 8, 7, 3), true},    // 3280 pixels: the cpu's 512-pixel blocks, the last partial
      {conv_shape(1, 23, 25, 3, 5, 3)},          // the same for the few-output-channel kernels
      {conv_shape(1, 6, 7, 5, 17, 5), true},     // odd k in general
      {conv_shape(1, 4, 9, 17, 3, 5)},
  };
}

// Channel slices of wider buffers: the decoder's first conv reads a concat buffer, and an encoder
// conv writes into one; aligned slices (float4 paths) and unaligned ones (scalar paths).
inline std::vector<ConvCase> conv2d_slice_cases() {
  return {
      {conv_shape(2, 5, 7, 64, 64, 3), true, true, Slice{128, 64}, Slice{128, 0}},
      {conv_shape(1, 6, 5, 64, 68, 3), true, true, Slice{71, 3}, Slice{69, 1}},
      {conv_shape(1, 6, 5, 20, 36, 3), true, true, Slice{27, 3}, Slice{41, 1}},
      {conv_shape(2, 3, 5, 17, 33, 3), false, true, Slice{20, 2}, Slice{40, 7}},
      {conv_shape(1, 5, 5, 64, 1, 1), false, true, Slice{128, 64}, Slice{4, 3}},
      {conv_shape(2, 4, 4, 33, 5, 3), true, true, Slice{40, 5}, Slice{8, 2}},
      // The forward wrote y into a concat buffer; its gradient dy arrives dense.
      {conv_shape(2, 5, 7, 64, 64, 3), true, true, {}, {}, false, Slice{128, 64}},
      {conv_shape(1, 5, 6, 17, 36, 3), true, true, {}, Slice{40, 4}, false, Slice{37, 1}},
  };
}

inline std::vector<ConvCase> conv2d_integer_cases() {
  return {
      {conv_shape(2, 5, 7, 3, 64, 3), true, true, {}, {}, true},
      {conv_shape(1, 7, 6, 64, 64, 3), true, true, {}, {}, true},
      {conv_shape(1, 7, 6, 64, 48, 3), true, true, {}, {}, true},
      {conv_shape(2, 3, 5, 17, 33, 3), false, true, {}, {}, true},
      {conv_shape(2, 4, 6, 64, 1, 1), false, true, {}, {}, true},
      {conv_shape(2, 4, 6, 16, 1, 1), false, true, {}, {}, true},
      {conv_shape(1, 4, 5, 33, 5, 3), true, true, Slice{40, 3}, Slice{9, 4}, true},
      {conv_shape(1, 3, 4, 64, 129, 3), false, false, {}, {}, true},
  };
}

// Every conv layer of the default U-Net at size x size, batch 2 where the layer is small enough
// for the sim device to run it quickly.
inline std::vector<ConvCase> unet_conv_cases(int size) {
  std::vector<ConvCase> cases;
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 2, size, size)) {
    if (layer.kind != LayerKind::conv3x3 && layer.kind != LayerKind::conv1x1) continue;
    const bool head = layer.kind == LayerKind::conv1x1;
    const int batch = layer.c_in * layer.c_out > 64 * 64 ? 1 : 2;
    cases.push_back({conv_shape(batch, layer.h, layer.w, layer.c_in, layer.c_out, head ? 1 : 3), !head});
  }
  return cases;
}

struct UpCase {
  ConvTranspose2dShape shape;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};  // channel slices of x/dx and of y/dy; stride 0 is dense
  bool integers = false;      // small integers: every result is exact and must match bit for bit
};

inline ConvTranspose2dShape up_shape(int n, int h, int w, int c_in, int c_out) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out};
}

// Odd channel counts and image sizes, N = 1 and 2.
inline std::vector<UpCase> conv_transpose2d_odd_cases() {
  return {
      {up_shape(1, 3, 5, 3, 5)},
      {up_shape(2, 5, 3, 5, 3), false},
      {up_shape(2, 3, 7, 17, 33)},
      {up_shape(1, 7, 5, 33, 17)},
      {up_shape(2, 4, 5, 64, 64)},
      {up_shape(1, 3, 3, 64, 33), false},  // 4 x 33 = 132 weight columns: a partial 128-wide tile
      {up_shape(2, 1, 1, 33, 64)},         // 1x1 images
      {up_shape(1, 1, 1, 5, 3)},
      {up_shape(1, 9, 9, 64, 17)},   // 81 pixels, 324 outputs
      {up_shape(2, 11, 13, 5, 64)},  // 286 pixels: a partial third block, and the weight gradient in chunks
      {up_shape(2, 11, 13, 5, 20)},
      {up_shape(1, 3, 4, 129, 3)},   // a partial 128-row tile of input channels
      {up_shape(1, 20, 30, 64, 32)},  // 600 pixels: the cpu's weight gradient in two blocks
  };
}

// The U-Net writes the up-convolution's output into channels [0, C) of the concat buffer.
inline std::vector<UpCase> conv_transpose2d_slice_cases() {
  return {
      {up_shape(2, 3, 5, 128, 64), true, Slice{256, 128}, Slice{128, 0}},
      {up_shape(1, 4, 3, 64, 68), true, Slice{70, 5}, Slice{75, 3}},
      {up_shape(2, 3, 3, 17, 33), true, Slice{20, 1}, Slice{66, 33}},
      {up_shape(1, 4, 3, 17, 33), true, Slice{20, 1}, Slice{66, 33}},
  };
}

inline std::vector<UpCase> conv_transpose2d_integer_cases() {
  return {
      {up_shape(2, 3, 5, 64, 64), true, {}, {}, true},
      {up_shape(1, 5, 3, 17, 33), true, {}, {}, true},
      {up_shape(1, 4, 4, 33, 5), false, Slice{40, 3}, Slice{10, 5}, true},
      {up_shape(2, 11, 13, 8, 4), true, {}, {}, true},
  };
}

// Every up-convolution of the default U-Net at size x size, batch 2, writing into channels [0, C)
// of the decoder's concat buffer, as the model does.
inline std::vector<UpCase> unet_up_cases(int size) {
  std::vector<UpCase> cases;
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 2, size, size)) {
    if (layer.kind != LayerKind::up_conv) continue;
    const ConvTranspose2dShape shape = up_shape(layer.n, layer.h, layer.w, layer.c_in, layer.c_out);
    cases.push_back({shape, true, {}, Slice{2 * layer.c_out, 0}});
  }
  return cases;
}

}  // namespace unet::test
