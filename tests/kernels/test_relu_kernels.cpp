// relu's CUDA kernels (every version) against the CPU reference, on sim or cuda.
#include <catch2/catch.hpp>

#include "kernels/relu.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

// Dense, an unaligned slice (version 2 falls back), and an aligned slice (version 2 runs).
std::vector<Slice> layouts(int channels) { return {{channels, 0}, {channels + 5, 3}, {channels + 8, 4}}; }

}  // namespace

TEST_CASE("relu kernels: forward equals the reference, writes only its slice", "[relu]") {
  for (int version = 1; version <= Relu<kDevice>::versions; ++version) {
    for (int channels : {1, 3, 4, 17, 64}) {
      for (Slice in : layouts(channels)) {
        for (Slice out : layouts(channels)) {
          const int64_t pixels = 37;
          INFO("version " << version << ", channels " << channels << ", strides " << in.stride << "/" << out.stride);
          const auto x = test::random_uniform(pixels * channels, 21 + channels);
          std::vector<float> expected(x.size());
          cpu::relu_forward(pixels, channels, x.data(), channels, expected.data(), channels);

          DeviceBuffer<float> dx(dev(), test::widen(x, pixels, channels, in, 0.0f));
          DeviceBuffer<float> dy(dev(), pixels * out.stride);
          dy.poison();
          Relu<kDevice>::forward(pixels, channels, dx.data() + in.offset, in.stride, dy.data() + out.offset,
                                 out.stride, {}, version);
          const auto wide = dy.download();
          CHECK(test::narrow(wide, pixels, channels, out) == expected);  // relu is exact
          CHECK(test::outside_untouched(wide, pixels, channels, out, NAN));
        }
      }
    }
  }
}

TEST_CASE("relu kernels: backward equals the reference for beta 0 and 1", "[relu]") {
  for (int version = 1; version <= Relu<kDevice>::versions; ++version) {
    for (int channels : {1, 4, 33}) {
      for (Slice layout : layouts(channels)) {
        for (float beta : {0.0f, 1.0f}) {
          const int64_t pixels = 29;
          INFO("version " << version << ", channels " << channels << ", stride " << layout.stride << ", beta " << beta);
          const auto y = test::random_uniform(pixels * channels, 31);  // about half positive
          const auto dy = test::random_uniform(pixels * channels, 32);
          const auto prior = test::random_uniform(pixels * channels, 33);
          std::vector<double> expected = test::to_double(prior);
          cpu::relu_backward<double>(pixels, channels, test::to_double(dy).data(), channels, test::to_double(y).data(),
                                     channels, beta, expected.data(), channels);

          DeviceBuffer<float> ddy(dev(), test::widen(dy, pixels, channels, layout, 0.0f));
          DeviceBuffer<float> dyv(dev(), test::widen(y, pixels, channels, layout, 0.0f));
          // beta = 0 must overwrite whatever is there, NaN included.
          DeviceBuffer<float> ddx(dev(), test::widen(beta == 0.0f ? std::vector<float>(prior.size(), NAN) : prior,
                                                     pixels, channels, layout, -7.0f));
          Relu<kDevice>::backward(pixels, channels, ddy.data() + layout.offset, layout.stride,
                                  dyv.data() + layout.offset, layout.stride, beta, ddx.data() + layout.offset,
                                  layout.stride, {}, version);
          const auto wide = ddx.download();
          CHECK(test::relative_error(test::narrow(wide, pixels, channels, layout), expected) < 1e-6);
          CHECK(test::outside_untouched(wide, pixels, channels, layout, -7.0f));
        }
      }
    }
  }
}

TEST_CASE("relu kernels: an empty tensor launches nothing", "[relu]") {
  Relu<kDevice>::forward(0, 8, static_cast<const float*>(nullptr), 8, nullptr, 8, {});
  Relu<kDevice>::backward(5, 0, static_cast<const float*>(nullptr), 0, nullptr, 0, 0.0f, nullptr, 0, {});
}
