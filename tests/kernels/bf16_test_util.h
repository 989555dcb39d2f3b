// Helpers for the bf16 kernel tests (tests/kernels/test_*_bf16.cpp): bf16 arrays on the host,
// compared by their bits, and the layouts that choose between a kernel's 16-byte and scalar paths.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/rounding.h"
#include "tests/test_util.h"

namespace unet::test {

// The bits DeviceBuffer::poison leaves: a bf16 NaN.
constexpr uint16_t poison_bits = 0xffff;

inline std::vector<bf16> rounded(const std::vector<float>& values) {
  std::vector<bf16> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = to_bf16(values[i]);
  return out;
}

inline std::vector<float> widened(const std::vector<bf16>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = to_float(values[i]);
  return out;
}

inline std::vector<uint16_t> bits(const std::vector<bf16>& values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = values[i].bits;
  return out;
}

// Random bf16 values in [low, high]: floats rounded once.
inline std::vector<bf16> random_bf16(size_t count, uint64_t seed, float low = -1.0f, float high = 1.0f) {
  return rounded(random_uniform(count, seed, low, high));
}

// A (pixels, channels) bf16 operand placed in a (pixels, stride) buffer filled with `fill_bits`.
inline std::vector<bf16> widen_bf16(const std::vector<bf16>& dense, int64_t pixels, int channels, Slice slice,
                                    uint16_t fill_bits) {
  return widen(dense, pixels, channels, slice, bf16{fill_bits});
}

// True if no bf16 outside the slice changed from `fill_bits`.
inline bool outside_untouched_bf16(const std::vector<bf16>& wide, int64_t pixels, int channels, Slice slice,
                                   uint16_t fill_bits) {
  return outside_untouched(bits(wide), pixels, channels, slice, fill_bits);
}

// Dense; a slice at an odd element offset (2-byte aligned only: the scalar path); a slice at a
// 16-byte offset with a stride of a multiple of 8 (the 16-byte path, when channels % 8 == 0).
inline std::vector<Slice> bf16_layouts(int channels) {
  return {{channels, 0}, {channels + 5, 3}, {channels + 16, 8}};
}

}  // namespace unet::test
