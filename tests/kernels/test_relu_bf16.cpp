// relu's bf16 overloads on the device under test (cpu, sim or cuda) against the bf16 reference:
// bit for bit, as relu and a rounding of its fp32 result are exact.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/relu.h"
#include "tests/kernels/bf16_test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

TEST_CASE("relu bf16: forward is max(x, 0) of every element, bit for bit, writes only its slice", "[relu][bf16]") {
  for (int version = 1; version <= Relu<kDevice>::versions; ++version) {
    for (int channels : {1, 3, 8, 17, 64}) {
      for (Slice in : test::bf16_layouts(channels)) {
        for (Slice out : test::bf16_layouts(channels)) {
          const int64_t pixels = 37;
          INFO("version " << version << ", channels " << channels << ", strides " << in.stride << "/" << out.stride);
          const auto x = test::random_bf16(pixels * channels, 21 + channels);
          std::vector<uint16_t> expected(x.size());
          for (size_t i = 0; i < x.size(); ++i) expected[i] = to_float(x[i]) > 0.0f ? x[i].bits : uint16_t{0};

          DeviceBuffer<bf16> dx(dev(), test::widen_bf16(x, pixels, channels, in, 0));
          DeviceBuffer<bf16> dy(dev(), pixels * out.stride);
          dy.poison();
          Relu<kDevice>::forward(pixels, channels, dx.data() + in.offset, in.stride, dy.data() + out.offset,
                                 out.stride, {}, version);
          const auto wide = dy.download();
          CHECK(test::bits(test::narrow(wide, pixels, channels, out)) == expected);
          CHECK(test::outside_untouched_bf16(wide, pixels, channels, out, test::poison_bits));
        }
      }
    }
  }
}

TEST_CASE("relu bf16: backward equals the reference bit for bit, beta 0 over NaN and beta 1", "[relu][bf16]") {
  for (int version = 1; version <= Relu<kDevice>::versions; ++version) {
    for (int channels : {1, 8, 33, 64}) {
      for (Slice layout : test::bf16_layouts(channels)) {
        for (float beta : {0.0f, 1.0f}) {
          const int64_t pixels = 29;
          INFO("version " << version << ", channels " << channels << ", stride " << layout.stride << ", beta " << beta);
          const auto y = test::random_bf16(pixels * channels, 31);  // about half positive
          const auto dy = test::random_bf16(pixels * channels, 32);
          const auto prior = test::random_bf16(pixels * channels, 33);
          // The reference in float with the sum rounded once; beta = 0 ignores the prior.
          std::vector<uint16_t> expected(y.size());
          for (size_t i = 0; i < y.size(); ++i) {
            const float gradient = to_float(y[i]) > 0.0f ? to_float(dy[i]) : 0.0f;
            expected[i] = to_bf16(beta == 0.0f ? gradient : to_float(prior[i]) + gradient).bits;
          }

          DeviceBuffer<bf16> ddy(dev(), test::widen_bf16(dy, pixels, channels, layout, 0));
          DeviceBuffer<bf16> dyv(dev(), test::widen_bf16(y, pixels, channels, layout, 0));
          // beta = 0 must overwrite whatever is there, NaN included.
          const auto start = beta == 0.0f ? std::vector<bf16>(prior.size(), bf16{test::poison_bits}) : prior;
          DeviceBuffer<bf16> ddx(dev(), test::widen_bf16(start, pixels, channels, layout, 0x1234));
          Relu<kDevice>::backward(pixels, channels, ddy.data() + layout.offset, layout.stride,
                                  dyv.data() + layout.offset, layout.stride, beta, ddx.data() + layout.offset,
                                  layout.stride, {}, version);
          const auto wide = ddx.download();
          CHECK(test::bits(test::narrow(wide, pixels, channels, layout)) == expected);
          CHECK(test::outside_untouched_bf16(wide, pixels, channels, layout, 0x1234));

          std::vector<bf16> reference = start;
          cpu::relu_backward_bf16<float>(pixels, channels, dy.data(), channels, y.data(), channels, beta,
                                         reference.data(), channels);
          CHECK(test::bits(reference) == expected);
        }
      }
    }
  }
}

TEST_CASE("relu bf16: an empty tensor launches nothing", "[relu][bf16]") {
  Relu<kDevice>::forward(0, 8, static_cast<const bf16*>(nullptr), 8, nullptr, 8, {});
  Relu<kDevice>::backward(5, 0, static_cast<const bf16*>(nullptr), 0, nullptr, 0, 0.0f, nullptr, 0, {});
}
