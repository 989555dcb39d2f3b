// kernels/rounding.h: bf16 (nearest, ties to even) and tf32 (nearest, ties away) on exact bit
// patterns, and against a brute-force nearest-neighbour search in double on random fp32 values.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "kernels/rounding.h"

using namespace unet;

namespace {

uint16_t bf16_of(uint32_t bits) { return bf16_bits(bits_float(bits)); }
uint32_t tf32_of(uint32_t bits) { return tf32_bits(bits_float(bits)); }

// The representable neighbour of x nearest to it among the two that truncation to `keep_mask`
// brackets it with, in double (exact for fp32 values); a tie goes to `tie_pick(low, high)`.
template <class TiePick>
uint32_t nearest(uint32_t bits, uint32_t keep_mask, TiePick tie_pick) {
  const uint32_t low = bits & keep_mask, high = low + (~keep_mask + 1);
  const double x = std::fabs(double{bits_float(bits)}), below = std::fabs(double{bits_float(low)});
  // `high` may be the pattern of infinity: its magnitude as a number is the next power of two.
  const double above = (high & 0x7fffffffu) == 0x7f800000u ? std::ldexp(1.0, 128) : std::fabs(double{bits_float(high)});
  if (x - below < above - x) return low;
  if (x - below > above - x) return high;
  return tie_pick(low, high);
}

}  // namespace

TEST_CASE("bf16 rounds to nearest, ties to even", "[rounding]") {
  CHECK(bf16_of(0x3f800000u) == 0x3f80u);  // 1.0 is exact
  CHECK(bf16_of(0x3f807fffu) == 0x3f80u);  // just under half a unit
  CHECK(bf16_of(0x3f808001u) == 0x3f81u);  // just over
  CHECK(bf16_of(0x3f808000u) == 0x3f80u);  // a tie, the kept bit even: down
  CHECK(bf16_of(0x3f818000u) == 0x3f82u);  // a tie, the kept bit odd: up to even
  CHECK(bf16_of(0xbf818000u) == 0xbf82u);  // the same in magnitude for negatives
  CHECK(round_to_bf16(1.0f + 1.0f / 256) == 1.0f);  // 2^-8 is half of bf16's unit at 1: even wins
}

TEST_CASE("bf16 keeps zeros, subnormals, infinities and NaN in their class", "[rounding]") {
  CHECK(bf16_of(0x80000000u) == 0x8000u);  // -0 stays -0
  CHECK(bf16_of(0x00000001u) == 0x0000u);  // the smallest subnormal rounds to zero
  CHECK(bf16_of(0x00008000u) == 0x0000u);  // a subnormal tie, even
  CHECK(bf16_of(0x00018000u) == 0x0002u);  // a subnormal tie, odd
  CHECK(bf16_of(0x007fffffu) == 0x0080u);  // the largest subnormal carries into the smallest normal
  CHECK(bf16_of(0x7f800000u) == 0x7f80u);
  CHECK(bf16_of(0xff800000u) == 0xff80u);
  CHECK(bf16_of(0x7f7f7fffu) == 0x7f7fu);  // the largest finite bf16
  CHECK(bf16_of(0x7f7f8000u) == 0x7f80u);  // a tie past it: to even, which is infinity
  CHECK(bf16_of(0x7f7fffffu) == 0x7f80u);  // FLT_MAX overflows to infinity
  // NaNs whose payload lies in the low bits would truncate to infinity: they stay NaN, sign kept.
  for (uint32_t nan : {0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0xff800001u, 0xffffffffu}) {
    INFO(std::hex << nan);
    const float widened = bf16_to_float(bf16_of(nan));
    CHECK(std::isnan(widened));
    CHECK(std::signbit(widened) == ((nan >> 31) != 0));
  }
}

TEST_CASE("tf32 rounds to nearest, ties away from zero, and clears the low 13 bits", "[rounding]") {
  CHECK(tf32_of(0x3f800000u) == 0x3f800000u);
  CHECK(tf32_of(0x3f800fffu) == 0x3f800000u);  // under half a unit
  CHECK(tf32_of(0x3f801001u) == 0x3f802000u);  // over
  CHECK(tf32_of(0x3f801000u) == 0x3f802000u);  // a tie with the kept bit even: away (not to even)
  CHECK(tf32_of(0x3f803000u) == 0x3f804000u);  // a tie with the kept bit odd: away
  CHECK(tf32_of(0xbf801000u) == 0xbf802000u);  // away from zero for negatives too
  CHECK(tf32_of(0x80000000u) == 0x80000000u);
  CHECK(tf32_of(0x00000fffu) == 0x00000000u);  // subnormals
  CHECK(tf32_of(0x00001000u) == 0x00002000u);
  CHECK(tf32_of(0x007ff000u) == 0x00800000u);  // into the smallest normal
  CHECK(tf32_of(0x7f800000u) == 0x7f800000u);
  CHECK(tf32_of(0xff800000u) == 0xff800000u);
  CHECK(tf32_of(0x7f7fefffu) == 0x7f7fe000u);  // the largest finite tf32
  CHECK(tf32_of(0x7f7ff000u) == 0x7f800000u);  // a tie past it: away, to infinity
  // 0x7fffffff plus half a unit would carry into the sign bit: NaN must be handled first.
  for (uint32_t nan : {0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0xff800001u, 0xffffffffu}) {
    INFO(std::hex << nan);
    CHECK(bits_are_nan(tf32_of(nan)));
    CHECK((tf32_of(nan) & 0x1fffu) == 0);
    CHECK((tf32_of(nan) >> 31) == (nan >> 31));
  }
}

TEST_CASE("bf16 and tf32 agree with a nearest-neighbour search on random fp32 values", "[rounding]") {
  std::mt19937 generator(7);
  const auto to_even = [](uint32_t low, uint32_t high) { return (low >> 16 & 1) == 0 ? low : high; };
  const auto away = [](uint32_t, uint32_t high) { return high; };
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = generator();
    if (i % 4 == 0) bits = (bits & 0xffff0000u) | 0x8000u;  // every fourth a bf16 tie
    if (i % 4 == 1) bits = (bits & 0xffffe000u) | 0x1000u;  // and a tf32 tie
    if (bits_are_nan(bits) || (bits & 0x7fffffffu) == 0x7f800000u) continue;
    INFO(std::hex << bits);
    REQUIRE(uint32_t{bf16_of(bits)} << 16 == nearest(bits, 0xffff0000u, to_even));
    REQUIRE(tf32_of(bits) == nearest(bits, 0xffffe000u, away));
  }
}

TEST_CASE("the bf16 storage type holds exactly the bits bf16_bits gives", "[rounding]") {
  for (const float x : {0.0f, -0.0f, 1.0f, 1.00390625f, 3.1415926f, -65504.0f, 1e-40f}) {
    CHECK(to_bf16(x).bits == bf16_bits(x));
    CHECK(to_float(to_bf16(x)) == round_to_bf16(x));
  }
  CHECK(std::isnan(to_float(to_bf16(std::nanf("")))));
}
