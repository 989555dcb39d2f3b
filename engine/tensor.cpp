#include "engine/tensor.h"

namespace unet {

std::string Shape::text() const {
  return "(" + std::to_string(n) + ", " + std::to_string(h) + ", " + std::to_string(w) + ", " + std::to_string(c) + ")";
}

Tensor::Tensor(Device* device, float* data, Shape shape, int pixel_stride)
    : device_(device), data_(data), shape_(shape), pixel_stride_(pixel_stride) {
  if (pixel_stride < shape.c) throw Error("tensor: pixel stride " + std::to_string(pixel_stride) + " < channels " + std::to_string(shape.c));
}

Tensor Tensor::channels(int offset, int count) const {
  if (offset < 0 || count < 0 || offset + count > shape_.c) {
    throw Error("tensor: channels [" + std::to_string(offset) + ", " + std::to_string(offset + count) + ") of " + shape_.text());
  }
  Shape slice = shape_;
  slice.c = count;
  return Tensor(device_, data_ + offset, slice, pixel_stride_);
}

namespace {

// Elements from the first of the view to one past its last: the span a strided view touches.
int64_t span(const Shape& shape, int pixel_stride) {
  return shape.pixels() == 0 ? 0 : (shape.pixels() - 1) * pixel_stride + shape.c;
}

}  // namespace

std::vector<float> Tensor::to_host() const {
  device_->synchronize();
  std::vector<float> dense(static_cast<size_t>(shape_.numel()));
  if (dense.empty()) return dense;
  if (this->dense()) {
    device_->copy_to_host(dense.data(), data_, dense.size() * sizeof(float));
    return dense;
  }
  std::vector<float> wide(static_cast<size_t>(span(shape_, pixel_stride_)));
  device_->copy_to_host(wide.data(), data_, wide.size() * sizeof(float));
  for (int64_t p = 0; p < shape_.pixels(); ++p) {
    for (int c = 0; c < shape_.c; ++c) dense[p * shape_.c + c] = wide[p * pixel_stride_ + c];
  }
  return dense;
}

void Tensor::from_host(const std::vector<float>& values) const {
  if (static_cast<int64_t>(values.size()) != shape_.numel()) {
    throw Error("tensor: " + std::to_string(values.size()) + " values for shape " + shape_.text());
  }
  if (values.empty()) return;
  device_->synchronize();
  if (dense()) {
    device_->copy_to_device(data_, values.data(), values.size() * sizeof(float));
    return;
  }
  // Read the span, patch the slice, write it back: the other channels keep their values.
  std::vector<float> wide(static_cast<size_t>(span(shape_, pixel_stride_)));
  device_->copy_to_host(wide.data(), data_, wide.size() * sizeof(float));
  for (int64_t p = 0; p < shape_.pixels(); ++p) {
    for (int c = 0; c < shape_.c; ++c) wide[p * pixel_stride_ + c] = values[p * shape_.c + c];
  }
  device_->copy_to_device(data_, wide.data(), wide.size() * sizeof(float));
}

}  // namespace unet
