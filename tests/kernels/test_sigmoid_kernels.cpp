// sigmoid's CUDA kernels (every version) against the CPU reference, on sim or cuda.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/sigmoid.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

std::vector<Slice> layouts(int channels) { return {{channels, 0}, {channels + 5, 3}}; }

std::vector<float> kernel_forward(int64_t pixels, int channels, const std::vector<float>& x, Slice in, Slice out,
                                  int version) {
  DeviceBuffer<float> dx(dev(), test::widen(x, pixels, channels, in, 0.0f));
  DeviceBuffer<float> dy(dev(), pixels * out.stride);
  dy.poison();
  Sigmoid<kDevice>::forward(pixels, channels, dx.data() + in.offset, in.stride, dy.data() + out.offset, out.stride,
                            {}, version);
  const auto wide = dy.download();
  CHECK(test::outside_untouched(wide, pixels, channels, out, NAN));
  return test::narrow(wide, pixels, channels, out);
}

}  // namespace

TEST_CASE("sigmoid kernels: forward equals the reference, writes only its slice", "[sigmoid]") {
  for (int version = 1; version <= Sigmoid<kDevice>::versions; ++version) {
    // (pixels, channels): awkward counts, and the model's logits (one channel) at 2x32x32.
    for (auto [pixels, channels] : {std::pair<int64_t, int>{1, 1}, {37, 3}, {29, 5}, {13, 17}, {7, 33}, {2048, 1}}) {
      for (Slice in : layouts(channels)) {
        for (Slice out : layouts(channels)) {
          INFO("version " << version << ", " << pixels << "x" << channels << ", strides " << in.stride << "/"
                          << out.stride);
          const auto x = test::random_uniform(pixels * channels, 91 + channels, -6.0f, 6.0f);
          std::vector<double> expected(x.size());
          cpu::sigmoid_forward<double>(pixels, channels, test::to_double(x).data(), channels, expected.data(),
                                       channels);
          CHECK(test::relative_error(kernel_forward(pixels, channels, x, in, out, version), expected) < 1e-5);
        }
      }
    }
  }
}

TEST_CASE("sigmoid kernels: finite and correct for logits of +-100 and +-1e4", "[sigmoid]") {
  const std::vector<float> x = {-1e4f, -100.0f, -80.0f, -20.0f, 0.0f, 20.0f, 100.0f, 1e4f};
  std::vector<double> expected(x.size());
  cpu::sigmoid_forward<double>(1, 8, test::to_double(x).data(), 8, expected.data(), 8);
  for (int version = 1; version <= Sigmoid<kDevice>::versions; ++version) {
    const auto y = kernel_forward(1, 8, x, {8, 0}, {8, 0}, version);
    CHECK(test::relative_error(y, expected) < 1e-5);
    CHECK(y[0] == 0.0f);
    CHECK(y[1] >= 0.0f);  // exp(-100) is a denormal float, 0 where the GPU flushes denormals
    CHECK(y[2] == Approx(expected[2]).epsilon(1e-5));
    CHECK(y[7] == 1.0f);
  }
}

TEST_CASE("sigmoid kernels: backward equals the reference for beta 0 and 1", "[sigmoid]") {
  for (int version = 1; version <= Sigmoid<kDevice>::versions; ++version) {
    for (int channels : {1, 3, 17, 33}) {
      for (Slice layout : layouts(channels)) {
        for (float beta : {0.0f, 1.0f}) {
          const int64_t pixels = 29;
          INFO("version " << version << ", channels " << channels << ", stride " << layout.stride << ", beta "
                          << beta);
          const auto y = test::random_uniform(pixels * channels, 92, 0.0f, 1.0f);  // a forward's output
          const auto dy = test::random_uniform(pixels * channels, 93);
          const auto prior = test::random_uniform(pixels * channels, 94);
          std::vector<double> expected = test::to_double(prior);
          cpu::sigmoid_backward<double>(pixels, channels, test::to_double(dy).data(), channels,
                                        test::to_double(y).data(), channels, beta, expected.data(), channels);

          DeviceBuffer<float> ddy(dev(), test::widen(dy, pixels, channels, layout, 0.0f));
          DeviceBuffer<float> dyv(dev(), test::widen(y, pixels, channels, layout, 0.0f));
          DeviceBuffer<float> ddx(dev(), test::widen(beta == 0.0f ? std::vector<float>(prior.size(), NAN) : prior,
                                                     pixels, channels, layout, -7.0f));
          Sigmoid<kDevice>::backward(pixels, channels, ddy.data() + layout.offset, layout.stride,
                                     dyv.data() + layout.offset, layout.stride, beta, ddx.data() + layout.offset,
                                     layout.stride, {}, version);
          const auto wide = ddx.download();
          CHECK(test::relative_error(test::narrow(wide, pixels, channels, layout), expected) < 1e-5);
          CHECK(test::outside_untouched(wide, pixels, channels, layout, -7.0f));
        }
      }
    }
  }
}

TEST_CASE("sigmoid kernels: an empty tensor launches nothing", "[sigmoid]") {
  Sigmoid<kDevice>::forward(0, 8, static_cast<const float*>(nullptr), 8, nullptr, 8, {});
  Sigmoid<kDevice>::backward(5, 0, nullptr, 0, nullptr, 0, 0.0f, nullptr, 0, {});
}
