// Philox4x32-10: the project's random numbers (Salmon, Moraes, Dror and Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC11; the Random123 library). A pure function of a 128-bit counter
// and a 64-bit key, so any thread draws any number with no state to carry: a kernel captured in a
// CUDA graph draws new numbers when the counter it builds from device memory changes, and the CPU
// reference draws exactly the same ones.
//
// Each round multiplies two of the four words by a constant and keeps both halves of the 64-bit
// products (mulhi and mullo), crossing them with the other words and the key (a Feistel-like
// network); the key is bumped by the Weyl constants between rounds. Ten rounds is the variant the
// paper recommends ("Philox4x32-10"); tests/data/test_philox.cpp checks it against the published
// known-answer vectors.
//
// Functions are UNET_HOST_DEVICE static inline (docs/dialect.md): each library that includes this
// header has its own copy, so the sim and cuda compilations never define the same symbol.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace unet {

struct Philox4 {  // a counter, or the four random words drawn for it
  uint32_t w[4];
};

struct PhiloxKey {
  uint32_t w[2];
};

// What a stream of random numbers is for: the last counter word, so that no two uses of one seed
// ever draw the same numbers. docs/data.md lists each stream's counter layout.
enum class RandomStream : uint32_t {
  augment = 0,        // per training sample: flips, rotation, zoom
  augment_shift = 1,  // per training sample: the shift
  shuffle = 2,        // the order of an epoch's samples
  split = 3,          // the patient split
  phantom = 4,        // synthetic data
};

UNET_HOST_DEVICE static inline PhiloxKey philox_key(uint64_t seed) {
  return {{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
}

UNET_HOST_DEVICE static inline Philox4 philox_counter(uint32_t a, uint32_t b, uint32_t c, RandomStream stream) {
  return {{a, b, c, static_cast<uint32_t>(stream)}};
}

// Philox4x32 with `Rounds` rounds: Random123's philox4x32_R, word for word.
template <int Rounds>
UNET_HOST_DEVICE static inline Philox4 philox4x32(Philox4 counter, PhiloxKey key) {
  constexpr uint32_t multiplier0 = 0xD2511F53u, multiplier1 = 0xCD9E8D57u;
  constexpr uint32_t weyl0 = 0x9E3779B9u, weyl1 = 0xBB67AE85u;  // golden ratio, sqrt(3) - 1
  for (int round = 0; round < Rounds; ++round) {
    if (round > 0) {
      key.w[0] += weyl0;
      key.w[1] += weyl1;
    }
    // A 32x32 -> 64-bit product: one mul.wide on the GPU, one multiply on the host.
    const uint64_t product0 = static_cast<uint64_t>(multiplier0) * counter.w[0];
    const uint64_t product1 = static_cast<uint64_t>(multiplier1) * counter.w[2];
    const uint32_t hi0 = static_cast<uint32_t>(product0 >> 32), lo0 = static_cast<uint32_t>(product0);
    const uint32_t hi1 = static_cast<uint32_t>(product1 >> 32), lo1 = static_cast<uint32_t>(product1);
    counter = {{hi1 ^ counter.w[1] ^ key.w[0], lo1, hi0 ^ counter.w[3] ^ key.w[1], lo0}};
  }
  return counter;
}

UNET_HOST_DEVICE static inline Philox4 philox4x32_10(Philox4 counter, PhiloxKey key) {
  return philox4x32<10>(counter, key);
}

// Uniform in [0, 1) from the top 24 bits: every value is a float exactly, so host and device agree
// to the bit.
UNET_HOST_DEVICE static inline float philox_uniform(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// A 64-bit integer from two words, for bounded draws on the host (shuffles).
UNET_HOST_DEVICE static inline uint64_t philox_u64(const Philox4& r, int first) {
  return (static_cast<uint64_t>(r.w[first + 1]) << 32) | r.w[first];
}

}  // namespace unet
