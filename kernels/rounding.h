// The two reduced-precision formats of the tensor cores, as bit operations on fp32 that the CPU
// reference, the sim device and the cuda kernels share (the kernels' own conversions are the cvt
// wrappers of kernels/tensor_core.h; these define what those compute).
//
//   bf16  1 sign, 8 exponent, 7 mantissa bits: the high 16 bits of an fp32. Conversion rounds to
//         nearest, ties to even (cvt.rn.bf16.f32); a NaN stays a NaN (its payload is truncated, and
//         the quiet bit is set so that truncation cannot turn it into an infinity).
//   tf32  1 sign, 8 exponent, 10 mantissa bits: an fp32 whose low 13 bits are zero. Conversion
//         rounds to nearest, ties away from zero (cvt.rna.tf32.f32); NaN stays NaN.
//
// Both keep fp32's exponent range, so infinities stay infinite, the largest finite values round
// to infinity only when they lie past the format's largest finite value's halfway point, and
// subnormals round like any other value (the carry out of the mantissa moves them up an exponent).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/backend.h"

namespace unet {

UNET_HOST_DEVICE static inline uint32_t float_bits(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return bits;
}

UNET_HOST_DEVICE static inline float bits_float(uint32_t bits) {
  float x;
  memcpy(&x, &bits, sizeof x);
  return x;
}

UNET_HOST_DEVICE static inline bool bits_are_nan(uint32_t bits) { return (bits & 0x7fffffffu) > 0x7f800000u; }

// The bf16 nearest to x (ties to even), as its 16 bits.
UNET_HOST_DEVICE static inline uint16_t bf16_bits(float x) {
  const uint32_t bits = float_bits(x);
  if (bits_are_nan(bits)) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  // Adding 0x7fff rounds halves down; the low kept bit adds the one that makes ties go to even.
  const uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

UNET_HOST_DEVICE static inline float bf16_to_float(uint16_t bits) { return bits_float(uint32_t{bits} << 16); }

// x rounded to bf16 and widened back: the value a bf16 operand holds.
UNET_HOST_DEVICE static inline float round_to_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

// A bf16 in memory: the storage type of bf16 tensors and of the pointers the bf16 kernels take. A
// struct rather than uint16_t so that a float* (or a raw 16-bit integer) cannot be passed where
// bf16 data is meant. Trivially copyable, 2 bytes, no constructor: arrays of it are plain memory.
struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2);

UNET_HOST_DEVICE static inline bf16 to_bf16(float x) { return bf16{bf16_bits(x)}; }
UNET_HOST_DEVICE static inline float to_float(bf16 x) { return bf16_to_float(x.bits); }

// The tf32 nearest to x (ties away from zero), as the fp32 bit pattern with the low 13 bits zero.
UNET_HOST_DEVICE static inline uint32_t tf32_bits(float x) {
  const uint32_t bits = float_bits(x);
  if (bits_are_nan(bits)) return (bits & 0xffffe000u) | 0x00400000u;
  // Sign-magnitude: adding half a unit to the magnitude and truncating rounds ties away from zero.
  return (bits + 0x1000u) & 0xffffe000u;
}

UNET_HOST_DEVICE static inline float round_to_tf32(float x) { return bits_float(tf32_bits(x)); }

}  // namespace unet
