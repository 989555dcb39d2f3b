// Tensor: a view of fp32 NHWC data on a device.
//
// Every activation in the U-Net is 4-D (N, H, W, C). A tensor is a pointer, a shape and a pixel
// stride: element (n, h, w, c) lives at data[((n*H + h)*W + w) * pixel_stride + c]. A channel slice
// of a wider tensor (channels(offset, count)) is a tensor too, with the wider one's pixel stride:
// that is how the skip concatenation costs nothing. Tensors do not own memory: parameters live in
// the ParameterStore's flat buffers, activations in the per-step Arena.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"

namespace unet {

// fp32 only for now; the field marks where bf16 storage would go.
enum class ScalarType { f32 };

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

  bool defined() const { return data_ != nullptr || shape_.numel() == 0; }
  Device& device() const { return *device_; }
  DeviceKind kind() const { return device_->kind(); }
  float* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int pixel_stride() const { return pixel_stride_; }
  bool dense() const { return pixel_stride_ == shape_.c; }
  ScalarType scalar_type() const { return ScalarType::f32; }

  // Channels [offset, offset + count) of every pixel, sharing this tensor's memory.
  Tensor channels(int offset, int count) const;

  // Dense host copies (strided views are gathered and scattered).
  std::vector<float> to_host() const;
  void from_host(const std::vector<float>& values) const;

 private:
  Device* device_ = nullptr;
  float* data_ = nullptr;
  Shape shape_;
  int pixel_stride_ = 1;
};

}  // namespace unet
