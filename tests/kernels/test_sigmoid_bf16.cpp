// sigmoid's bf16-logit overload on the device under test (cpu, sim or cuda) against the double
// reference on the same (exactly widened) logits: fp32 probabilities, to fp32's accuracy.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/sigmoid.h"
#include "tests/kernels/bf16_test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

TEST_CASE("sigmoid bf16: fp32 probabilities of bf16 logits, writes only its slice", "[sigmoid][bf16]") {
  for (int version = 1; version <= Sigmoid<kDevice>::bf16_versions; ++version) {
    for (int channels : {1, 3, 8, 24}) {
      for (Slice in : test::bf16_layouts(channels)) {
        for (Slice out : {Slice{channels, 0}, Slice{channels + 3, 1}, Slice{channels + 8, 4}}) {
          const int64_t pixels = 40;
          INFO("version " << version << ", channels " << channels << ", strides " << in.stride << "/" << out.stride);
          auto x = test::random_bf16(pixels * channels, 41, -12.0f, 12.0f);
          x[0] = to_bf16(-1e4f);  // no overflow at either end
          x[1] = to_bf16(1e4f);
          std::vector<double> expected(x.size());
          cpu::sigmoid_forward_bf16<double>(pixels, channels, x.data(), channels, expected.data(), channels);

          DeviceBuffer<bf16> dx(dev(), test::widen_bf16(x, pixels, channels, in, 0));
          DeviceBuffer<float> dy(dev(), pixels * out.stride);
          dy.poison();
          Sigmoid<kDevice>::forward(pixels, channels, dx.data() + in.offset, in.stride, dy.data() + out.offset,
                                    out.stride, {}, version);
          const auto wide = dy.download();
          const auto y = test::narrow(wide, pixels, channels, out);
          CHECK(test::relative_error(y, expected) < 1e-6);
          CHECK(y[0] == 0.0f);
          CHECK(y[1] == 1.0f);
          CHECK(test::outside_untouched(wide, pixels, channels, out, NAN));
        }
      }
    }
  }
}
