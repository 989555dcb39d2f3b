// Philox4x32 against the known-answer vectors published with Random123.
//
// The vectors are the philox4x32 lines of Random123's tests/kat_vectors (D. E. Shaw Research,
// https://github.com/DEShawResearch/random123, file tests/kat_vectors; columns: name, rounds,
// counter (4 words), key (2 words), expected output (4 words)). They were read here from copies of
// that file quoted in other public repositories, found through the project's code search.
#include <catch2/catch.hpp>

#include <set>

#include "kernels/philox.h"

using namespace unet;

namespace {

struct Known {
  int rounds;
  Philox4 counter;
  PhiloxKey key;
  Philox4 expected;
};

const Known known_answers[] = {
    {7, {{0x00000000, 0x00000000, 0x00000000, 0x00000000}}, {{0x00000000, 0x00000000}},
     {{0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}}},
    {7, {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, {{0xffffffff, 0xffffffff}},
     {{0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}}},
    {7, {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0}},
     {{0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}}},
    {10, {{0x00000000, 0x00000000, 0x00000000, 0x00000000}}, {{0x00000000, 0x00000000}},
     {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
    {10, {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, {{0xffffffff, 0xffffffff}},
     {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
    {10, {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0}},
     {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
};

bool equal(const Philox4& a, const Philox4& b) {
  return a.w[0] == b.w[0] && a.w[1] == b.w[1] && a.w[2] == b.w[2] && a.w[3] == b.w[3];
}

}  // namespace

TEST_CASE("philox: Random123's known-answer vectors, 7 and 10 rounds", "[philox]") {
  for (const Known& k : known_answers) {
    INFO("rounds " << k.rounds << ", counter word 0 " << std::hex << k.counter.w[0]);
    const Philox4 out = k.rounds == 7 ? philox4x32<7>(k.counter, k.key) : philox4x32_10(k.counter, k.key);
    CHECK(equal(out, k.expected));
  }
}

TEST_CASE("philox: the seed is the key, low word first", "[philox]") {
  const PhiloxKey key = philox_key(0x299f31d0a4093822ull);
  CHECK(key.w[0] == 0xa4093822u);
  CHECK(key.w[1] == 0x299f31d0u);
  const Philox4 out = philox4x32_10({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, key);
  CHECK(equal(out, known_answers[5].expected));
}

TEST_CASE("philox: uniforms lie between 0 and 1 on a 2^-24 grid, and streams differ", "[philox]") {
  CHECK(philox_uniform(0) == 0.0f);
  CHECK(philox_uniform(0xffffffffu) == 1.0f - 1.0f / 16777216.0f);
  CHECK(philox_uniform(0x80000000u) == 0.5f);
  // Counters differing in any one word, stream included, give unrelated words.
  std::set<uint32_t> words;
  const PhiloxKey key = philox_key(7);
  for (uint32_t i = 0; i < 4; ++i) {
    Philox4 counter = philox_counter(1, 2, 3, RandomStream::augment);
    counter.w[i] += 1;
    for (uint32_t w : philox4x32_10(counter, key).w) words.insert(w);
  }
  for (uint32_t w : philox4x32_10(philox_counter(1, 2, 3, RandomStream::augment), key).w) words.insert(w);
  CHECK(words.size() == 20);
  // The mean of many uniforms is near 1/2 (a broken mixing would bias it).
  double sum = 0;
  const int n = 40000;
  for (int i = 0; i < n / 4; ++i) {
    for (uint32_t w : philox4x32_10(philox_counter(static_cast<uint32_t>(i), 0, 0, RandomStream::shuffle), key).w) {
      sum += philox_uniform(w);
    }
  }
  CHECK(std::abs(sum / n - 0.5) < 0.01);
}
