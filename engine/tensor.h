// Tensor: a view of fp32 or bf16 NHWC data on a device.
//
// Every activation in the U-Net is 4-D (N, H, W, C). A tensor is a pointer, a scalar type, a shape
// and a pixel stride (in elements): element (n, h, w, c) lives at data[((n*H + h)*W + w) *
// pixel_stride + c]. A channel slice
// of a wider tensor (channels(offset, count)) is a tensor too, with the wider one's pixel stride:
// that is how the skip concatenation costs nothing. Tensors do not own memory: parameters live in
// the ParameterStore's flat buffers, activations in the per-step Arena.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "kernels/rounding.h"

namespace unet {

// f32: float. bf16: unet::bf16 (kernels/rounding.h), the storage of activations under
// --precision bf16 (engine/precision.h).
enum class ScalarType { f32, bf16 };

const char* scalar_type_name(ScalarType type);  // "f32", "bf16"
size_t element_bytes(ScalarType type);           // 4, 2

// The C++ element type of each scalar type, for the typed accessor Tensor::data<T>().
template <class T>
constexpr ScalarType scalar_type_of();
template <>
constexpr ScalarType scalar_type_of<float>() { return ScalarType::f32; }
template <>
constexpr ScalarType scalar_type_of<bf16>() { return ScalarType::bf16; }

struct Shape {
  int n = 1, h = 1, w = 1, c = 1;

  int64_t pixels() const { return int64_t{n} * h * w; }
  int64_t numel() const { return pixels() * c; }
  bool operator==(const Shape&) const = default;
  std::string text() const;  // "(2, 64, 64, 3)"
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(Device* device, float* data, Shape shape, int pixel_stride);
  Tensor(Device* device, float* data, Shape shape) : Tensor(device, data, shape, shape.c) {}
  Tensor(Device* device, bf16* data, Shape shape, int pixel_stride);
  Tensor(Device* device, bf16* data, Shape shape) : Tensor(device, data, shape, shape.c) {}

  bool defined() const { return data_ != nullptr || shape_.numel() == 0; }
  Device& device() const { return *device_; }
  DeviceKind kind() const { return device_->kind(); }
  ScalarType scalar_type() const { return type_; }
  // The elements as T, which must be this tensor's type (unet::Error otherwise): data<float>(),
  // data<bf16>(); data() is data<float>().
  template <class T>
  T* data() const {
    if (type_ != scalar_type_of<T>()) type_mismatch(scalar_type_of<T>());
    return static_cast<T*>(data_);
  }
  float* data() const { return data<float>(); }
  void* bytes() const { return data_; }  // untyped, for byte fills and copies
  const Shape& shape() const { return shape_; }
  int pixel_stride() const { return pixel_stride_; }
  bool dense() const { return pixel_stride_ == shape_.c; }

  // Channels [offset, offset + count) of every pixel, sharing this tensor's memory.
  Tensor channels(int offset, int count) const;
  // The first `count` samples (along N), sharing this tensor's memory.
  Tensor samples(int count) const;

  // Dense host copies as floats (strided views are gathered and scattered): bf16 is widened on the
  // way out and rounded to nearest even on the way in.
  std::vector<float> to_host() const;
  void from_host(const std::vector<float>& values) const;

 private:
  friend Tensor allocate_tensor(Device& device, const Shape& shape, ScalarType type);
  Tensor(Device* device, void* data, ScalarType type, Shape shape, int pixel_stride);
  [[noreturn]] void type_mismatch(ScalarType asked) const;

  Device* device_ = nullptr;
  void* data_ = nullptr;
  ScalarType type_ = ScalarType::f32;
  Shape shape_;
  int pixel_stride_ = 1;
};

// The pixel stride the engine gives a fresh tensor of `channels`: dense for f32; for bf16 rounded
// up to a multiple of 8 elements (16 bytes, whole octets for the kernels' vector paths), except
// that one channel (the logits' maps) stays dense.
int padded_stride(int channels, ScalarType type);

// A tensor in a device allocation of its own, laid out with padded_stride(); the caller releases
// it with device.release(t.bytes()).
Tensor allocate_tensor(Device& device, const Shape& shape, ScalarType type);

}  // namespace unet
