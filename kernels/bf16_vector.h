// Eight bf16 values in one 16-byte access: what the bf16 memory-bound kernels (relu, max_pool2d,
// concat, sigmoid, the loss) share. A kernel file includes it after kernels/dialect.h.
//
// An octet is eight consecutive bf16 in memory, moved as one uint4 (LDG.E.128 / STG.E.128) and
// held as eight floats. Memory is little-endian, so bf16 element 2j is the low half of 32-bit word j
// and element 2j+1 its high half; widening a bf16 is a shift into the high half of an fp32, and
// each stored float is rounded to nearest even once (kernels/rounding.h), as the scalar paths
// round it.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "kernels/dialect.h"
#include "kernels/rounding.h"

namespace unet::KERNEL_BACKEND {

constexpr int bf16_per_octet = 8;

struct Octet {
  float v[bf16_per_octet];
};

__device__ __forceinline__ Octet load_octet(const bf16* p) {
  const uint4 bits = *reinterpret_cast<const uint4*>(p);
  const unsigned words[4] = {bits.x, bits.y, bits.z, bits.w};
  Octet o;
  for (int j = 0; j < 4; ++j) {
    o.v[2 * j] = bits_float(words[j] << 16);
    o.v[2 * j + 1] = bits_float(words[j] & 0xffff0000u);
  }
  return o;
}

__device__ __forceinline__ void store_octet(bf16* p, const Octet& o) {
  unsigned words[4];
  for (int j = 0; j < 4; ++j) {
    words[j] = unsigned{bf16_bits(o.v[2 * j])} | (unsigned{bf16_bits(o.v[2 * j + 1])} << 16);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
}

// Whether octet accesses fit: every pointer 16-byte aligned and every count (channels, pixel
// strides) a multiple of 8, so that each octet lies whole within one pixel's channels.
inline bool octets_fit(std::initializer_list<const void*> pointers, std::initializer_list<int64_t> counts) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  for (int64_t c : counts) {
    if (c % bf16_per_octet != 0) return false;
  }
  return true;
}

}  // namespace unet::KERNEL_BACKEND
