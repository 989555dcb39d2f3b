// concat's bf16 overloads on the device under test (cpu, sim or cuda): the forward a bit-exact
// copy, the backward the sum rounded once, bit for bit.
#include <catch2/catch.hpp>

#include "kernels/concat.h"
#include "tests/kernels/bf16_test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

struct ConcatShape {
  int64_t pixels;
  int a_channels, b_channels;
};

// Odd counts and an empty operand (the scalar path), multiples of 8 (the 16-byte path where the
// layout is aligned) up to the model's 64 + 64.
const std::vector<ConcatShape> shapes = {{37, 3, 5}, {29, 17, 3}, {7, 5, 0}, {11, 8, 16}, {9, 64, 64}, {7, 0, 8}};

}  // namespace

TEST_CASE("concat bf16: forward copies both operands bit for bit, writes only its slice", "[concat][bf16]") {
  for (int version = 1; version <= Concat<kDevice>::bf16_versions; ++version) {
    for (const ConcatShape& s : shapes) {
      const int c = s.a_channels + s.b_channels;
      for (Slice a_layout : test::bf16_layouts(s.a_channels)) {
        for (Slice y_layout : test::bf16_layouts(c)) {
          const Slice b_layout = a_layout.offset == 3 ? Slice{s.b_channels + 16, 8} : Slice{s.b_channels, 0};
          INFO("version " << version << ", " << s.pixels << " pixels, " << s.a_channels << " + " << s.b_channels
                          << ", strides " << a_layout.stride << "/" << b_layout.stride << "/" << y_layout.stride);
          const auto a = test::random_bf16(s.pixels * s.a_channels, 101);
          const auto b = test::random_bf16(s.pixels * s.b_channels, 102);
          std::vector<uint16_t> expected;
          for (int64_t p = 0; p < s.pixels; ++p) {
            for (int k = 0; k < s.a_channels; ++k) expected.push_back(a[p * s.a_channels + k].bits);
            for (int k = 0; k < s.b_channels; ++k) expected.push_back(b[p * s.b_channels + k].bits);
          }

          DeviceBuffer<bf16> da(dev(), test::widen_bf16(a, s.pixels, s.a_channels, a_layout, 0));
          DeviceBuffer<bf16> db(dev(), test::widen_bf16(b, s.pixels, s.b_channels, b_layout, 0));
          DeviceBuffer<bf16> dy(dev(), s.pixels * y_layout.stride);
          dy.poison();
          Concat<kDevice>::forward(s.pixels, da.data() + a_layout.offset, s.a_channels, a_layout.stride,
                                   db.data() + b_layout.offset, s.b_channels, b_layout.stride,
                                   dy.data() + y_layout.offset, y_layout.stride, {}, version);
          const auto wide = dy.download();
          CHECK(test::bits(test::narrow(wide, s.pixels, c, y_layout)) == expected);
          CHECK(test::outside_untouched_bf16(wide, s.pixels, c, y_layout, test::poison_bits));
        }
      }
    }
  }
}

TEST_CASE("concat bf16: backward splits dy bit for bit, beta 0 over NaN and beta 1", "[concat][bf16]") {
  for (int version = 1; version <= Concat<kDevice>::bf16_versions; ++version) {
    for (const ConcatShape& s : shapes) {
      const int c = s.a_channels + s.b_channels;
      for (Slice layout : test::bf16_layouts(c)) {
        for (float beta : {0.0f, 1.0f}) {
          INFO("version " << version << ", " << s.a_channels << " + " << s.b_channels << ", stride " << layout.stride
                          << ", beta " << beta);
          const auto dy = test::random_bf16(s.pixels * c, 103);
          const auto prior_a = test::random_bf16(s.pixels * s.a_channels, 104);
          const auto prior_b = test::random_bf16(s.pixels * s.b_channels, 105);
          auto expected = [&](const std::vector<bf16>& prior, int channels, int first) {
            std::vector<uint16_t> out(prior.size());
            for (int64_t p = 0; p < s.pixels; ++p) {
              for (int k = 0; k < channels; ++k) {
                const float g = to_float(dy[p * c + first + k]);
                out[p * channels + k] = to_bf16(beta == 0.0f ? g : to_float(prior[p * channels + k]) + g).bits;
              }
            }
            return out;
          };
          // da and db laid out as dy is: dense, unaligned or aligned slices.
          const Slice a_layout{layout.stride - c + s.a_channels, layout.offset};
          const Slice b_layout{layout.stride - c + s.b_channels, layout.offset};
          const auto start = [&](const std::vector<bf16>& prior) {
            return beta == 0.0f ? std::vector<bf16>(prior.size(), bf16{test::poison_bits}) : prior;
          };
          DeviceBuffer<bf16> ddy(dev(), test::widen_bf16(dy, s.pixels, c, layout, 0));
          DeviceBuffer<bf16> dda(dev(), test::widen_bf16(start(prior_a), s.pixels, s.a_channels, a_layout, 0x1234));
          DeviceBuffer<bf16> ddb(dev(), test::widen_bf16(start(prior_b), s.pixels, s.b_channels, b_layout, 0x1234));
          Concat<kDevice>::backward(s.pixels, ddy.data() + layout.offset, layout.stride, s.a_channels, s.b_channels,
                                    beta, dda.data() + a_layout.offset, a_layout.stride, ddb.data() + b_layout.offset,
                                    b_layout.stride, {}, version);
          const auto wide_a = dda.download(), wide_b = ddb.download();
          CHECK(test::bits(test::narrow(wide_a, s.pixels, s.a_channels, a_layout)) ==
                expected(prior_a, s.a_channels, 0));
          CHECK(test::bits(test::narrow(wide_b, s.pixels, s.b_channels, b_layout)) ==
                expected(prior_b, s.b_channels, s.a_channels));
          CHECK(test::outside_untouched_bf16(wide_a, s.pixels, s.a_channels, a_layout, 0x1234));
          CHECK(test::outside_untouched_bf16(wide_b, s.pixels, s.b_channels, b_layout, 0x1234));
        }
      }
    }
  }
}
