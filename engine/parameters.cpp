#include "engine/parameters.h"

#include <algorithm>
#include <cmath>

namespace unet {

ParameterStore::~ParameterStore() {
  for (float* buffer : {values_, grads_, m_, v_}) device_.release(buffer);
  device_.release(bf16_values_);
}

int ParameterStore::declare(const std::string& name, ParameterKind kind, const Shape& shape, int fan_in) {
  if (values_ != nullptr) throw Error("parameters: declare '" + name + "' after allocate()");
  entries_.push_back({name, kind, shape, fan_in, count_});
  count_ += shape.numel();
  return static_cast<int>(entries_.size()) - 1;
}

void ParameterStore::allocate() {
  for (float** buffer : {&values_, &grads_, &m_, &v_}) {
    const size_t bytes = static_cast<size_t>(count_ + (buffer == &grads_ ? 1 : 0)) * sizeof(float);
    *buffer = static_cast<float*>(device_.allocate(bytes));
    device_.fill_bytes(*buffer, 0, bytes);
  }
  if (precision_ == Precision::bf16) {
    const size_t bytes = static_cast<size_t>(count_) * sizeof(bf16);
    bf16_values_ = static_cast<bf16*>(device_.allocate(bytes));
    device_.fill_bytes(bf16_values_, 0, bytes);
  }
  device_.synchronize();
}

Tensor ParameterStore::value(int index) const {
  const ParameterEntry& entry = entries_.at(index);
  return Tensor(&device_, values_ + entry.offset, entry.shape);
}

Tensor ParameterStore::kernel_value(int index) const {
  if (bf16_values_ == nullptr) return value(index);
  const ParameterEntry& entry = entries_.at(index);
  return Tensor(&device_, bf16_values_ + entry.offset, entry.shape);
}

Tensor ParameterStore::grad(int index) const {
  const ParameterEntry& entry = entries_.at(index);
  return Tensor(&device_, grads_ + entry.offset, entry.shape);
}

namespace {

// SplitMix64: a counter-based stream, identical on every platform (std:: distributions are not).
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 24 random bits: every value is exactly representable as a float.
float uniform(uint64_t seed, uint64_t index) {
  return static_cast<float>(splitmix64(seed * 0x632be59bd9b4e019ull + index) >> 40) * 0x1p-24f;
}

}  // namespace

void ParameterStore::initialize(uint64_t seed) {
  std::vector<float> values(static_cast<size_t>(count_));
  for (const ParameterEntry& entry : entries_) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(entry.fan_in));
    for (int64_t i = 0; i < entry.shape.numel(); ++i) {
      const int64_t at = entry.offset + i;
      values[at] = (2.0f * uniform(seed, static_cast<uint64_t>(at)) - 1.0f) * bound;
    }
  }
  upload(values_, values);
}

std::vector<float> ParameterStore::download(const float* buffer) const {
  device_.synchronize();
  std::vector<float> values(static_cast<size_t>(count_));
  device_.copy_to_host(values.data(), buffer, values.size() * sizeof(float));
  return values;
}

void ParameterStore::upload(float* buffer, const std::vector<float>& values) const {
  if (static_cast<int64_t>(values.size()) != count_) throw Error("parameters: wrong number of values");
  device_.synchronize();
  device_.copy_to_device(buffer, values.data(), values.size() * sizeof(float));
  if (buffer != values_ || bf16_values_ == nullptr) return;
  std::vector<bf16> rounded(values.size());
  for (size_t i = 0; i < values.size(); ++i) rounded[i] = to_bf16(values[i]);
  device_.copy_to_device(bf16_values_, rounded.data(), rounded.size() * sizeof(bf16));
}

std::vector<int64_t> ParameterStore::pytorch_shape(const ParameterEntry& entry) const {
  const Shape& s = entry.shape;
  switch (entry.kind) {
    case ParameterKind::conv_weight: return {s.n, s.c, s.h, s.w};     // [Cout, Cin, k, k]
    case ParameterKind::up_conv_weight: return {s.n, s.c, s.h, s.w};  // [Cin, Cout, 2, 2]
    case ParameterKind::bias: return {s.c};
  }
  return {};
}

namespace {

// ours (A, kh, kw, B) <-> PyTorch (A, B, kh, kw): the same permutation for both weight kinds.
void ours_to_pytorch(const Shape& s, const float* ours, float* theirs) {
  for (int a = 0; a < s.n; ++a)
    for (int r = 0; r < s.h; ++r)
      for (int q = 0; q < s.w; ++q)
        for (int b = 0; b < s.c; ++b)
          theirs[((int64_t{a} * s.c + b) * s.h + r) * s.w + q] = ours[((int64_t{a} * s.h + r) * s.w + q) * s.c + b];
}

void pytorch_to_ours(const Shape& s, const float* theirs, float* ours) {
  for (int a = 0; a < s.n; ++a)
    for (int r = 0; r < s.h; ++r)
      for (int q = 0; q < s.w; ++q)
        for (int b = 0; b < s.c; ++b)
          ours[((int64_t{a} * s.h + r) * s.w + q) * s.c + b] = theirs[((int64_t{a} * s.c + b) * s.h + r) * s.w + q];
}

}  // namespace

void ParameterStore::export_tensors(const float* buffer, const std::string& prefix, SafeTensors& file) const {
  const std::vector<float> flat = download(buffer);
  for (const ParameterEntry& entry : entries_) {
    std::vector<float> values(static_cast<size_t>(entry.shape.numel()));
    if (entry.kind == ParameterKind::bias) {
      std::copy_n(flat.data() + entry.offset, values.size(), values.data());
    } else {
      ours_to_pytorch(entry.shape, flat.data() + entry.offset, values.data());
    }
    file.add_floats(prefix + entry.name, pytorch_shape(entry), values);
  }
}

void ParameterStore::import_tensors(const SafeTensors& file, const std::string& prefix, float* buffer) const {
  std::vector<float> flat(static_cast<size_t>(count_));
  for (const ParameterEntry& entry : entries_) {
    const std::string name = prefix + entry.name;
    if (!file.contains(name)) throw Error(file.source() + ": missing tensor '" + name + "'");
    const std::vector<float> values = file.floats(name, pytorch_shape(entry));
    if (entry.kind == ParameterKind::bias) {
      std::copy(values.begin(), values.end(), flat.begin() + entry.offset);
    } else {
      pytorch_to_ours(entry.shape, values.data(), flat.data() + entry.offset);
    }
  }
  upload(buffer, flat);
}

}  // namespace unet
