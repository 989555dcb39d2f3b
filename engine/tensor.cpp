#include "engine/tensor.h"

#include <cstring>

namespace unet {

const char* scalar_type_name(ScalarType type) { return type == ScalarType::bf16 ? "bf16" : "f32"; }

size_t element_bytes(ScalarType type) { return type == ScalarType::bf16 ? sizeof(bf16) : sizeof(float); }

std::string Shape::text() const {
  return "(" + std::to_string(n) + ", " + std::to_string(h) + ", " + std::to_string(w) + ", " + std::to_string(c) + ")";
}

Tensor::Tensor(Device* device, void* data, ScalarType type, Shape shape, int pixel_stride)
    : device_(device), data_(data), type_(type), shape_(shape), pixel_stride_(pixel_stride) {
  if (pixel_stride < shape.c) throw Error("tensor: pixel stride " + std::to_string(pixel_stride) + " < channels " + std::to_string(shape.c));
}

Tensor::Tensor(Device* device, float* data, Shape shape, int pixel_stride)
    : Tensor(device, data, ScalarType::f32, shape, pixel_stride) {}

Tensor::Tensor(Device* device, bf16* data, Shape shape, int pixel_stride)
    : Tensor(device, data, ScalarType::bf16, shape, pixel_stride) {}

void Tensor::type_mismatch(ScalarType asked) const {
  throw Error(std::string("tensor: ") + scalar_type_name(asked) + " data asked of a " + scalar_type_name(type_) +
              " tensor " + shape_.text());
}

Tensor Tensor::channels(int offset, int count) const {
  if (offset < 0 || count < 0 || offset + count > shape_.c) {
    throw Error("tensor: channels [" + std::to_string(offset) + ", " + std::to_string(offset + count) + ") of " + shape_.text());
  }
  Shape slice = shape_;
  slice.c = count;
  return Tensor(device_, static_cast<char*>(data_) + offset * element_bytes(type_), type_, slice, pixel_stride_);
}

Tensor Tensor::samples(int count) const {
  if (count < 0 || count > shape_.n) throw Error("tensor: " + std::to_string(count) + " samples of " + shape_.text());
  Shape prefix = shape_;
  prefix.n = count;
  return Tensor(device_, data_, type_, prefix, pixel_stride_);
}

namespace {

// Elements from the first of the view to one past its last: the span a strided view touches.
int64_t span(const Shape& shape, int pixel_stride) {
  return shape.pixels() == 0 ? 0 : (shape.pixels() - 1) * pixel_stride + shape.c;
}

// The span's elements as floats, and back: bf16 widened, or rounded to nearest even.
std::vector<float> widen(const std::vector<char>& raw, ScalarType type) {
  std::vector<float> values(raw.size() / element_bytes(type));
  if (type == ScalarType::f32) {
    std::memcpy(values.data(), raw.data(), raw.size());
  } else {
    for (size_t i = 0; i < values.size(); ++i) values[i] = to_float(reinterpret_cast<const bf16*>(raw.data())[i]);
  }
  return values;
}

std::vector<char> narrow(const std::vector<float>& values, ScalarType type) {
  std::vector<char> raw(values.size() * element_bytes(type));
  if (type == ScalarType::f32) {
    std::memcpy(raw.data(), values.data(), raw.size());
  } else {
    for (size_t i = 0; i < values.size(); ++i) reinterpret_cast<bf16*>(raw.data())[i] = to_bf16(values[i]);
  }
  return raw;
}

}  // namespace

std::vector<float> Tensor::to_host() const {
  device_->synchronize();
  if (shape_.numel() == 0) return {};
  std::vector<char> raw(static_cast<size_t>(span(shape_, pixel_stride_)) * element_bytes(type_));
  device_->copy_to_host(raw.data(), data_, raw.size());
  std::vector<float> wide = widen(raw, type_);
  if (dense()) return wide;
  std::vector<float> values(static_cast<size_t>(shape_.numel()));
  for (int64_t p = 0; p < shape_.pixels(); ++p) {
    for (int c = 0; c < shape_.c; ++c) values[p * shape_.c + c] = wide[p * pixel_stride_ + c];
  }
  return values;
}

void Tensor::from_host(const std::vector<float>& values) const {
  if (static_cast<int64_t>(values.size()) != shape_.numel()) {
    throw Error("tensor: " + std::to_string(values.size()) + " values for shape " + shape_.text());
  }
  if (values.empty()) return;
  device_->synchronize();
  if (dense()) {
    const std::vector<char> raw = narrow(values, type_);
    device_->copy_to_device(data_, raw.data(), raw.size());
    return;
  }
  // Read the span, patch the slice, write it back: the other channels keep their values.
  std::vector<char> raw(static_cast<size_t>(span(shape_, pixel_stride_)) * element_bytes(type_));
  device_->copy_to_host(raw.data(), data_, raw.size());
  std::vector<float> wide = widen(raw, type_);
  for (int64_t p = 0; p < shape_.pixels(); ++p) {
    for (int c = 0; c < shape_.c; ++c) wide[p * pixel_stride_ + c] = values[p * shape_.c + c];
  }
  const std::vector<char> patched = narrow(wide, type_);
  device_->copy_to_device(data_, patched.data(), patched.size());
}

int padded_stride(int channels, ScalarType type) {
  if (type == ScalarType::f32 || channels == 1) return channels;
  return static_cast<int>(ceil_div(channels, 8) * 8);
}

Tensor allocate_tensor(Device& device, const Shape& shape, ScalarType type) {
  const int stride = padded_stride(shape.c, type);
  void* data = device.allocate(static_cast<size_t>(shape.pixels() * stride) * element_bytes(type));
  return Tensor(&device, data, type, shape, stride);
}

}  // namespace unet
