// max_pool2d's bf16 overloads on the device under test (cpu, sim or cuda) against the float
// reference run on the widened inputs and rounded once: bit for bit (a max picks an input; the
// backward's sum is rounded once in both), argmax included.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/max_pool2d.h"
#include "tests/kernels/bf16_test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

int64_t input_pixels(const PoolShape& s) { return int64_t{s.n} * s.h * s.w; }
int64_t output_pixels(const PoolShape& s) { return int64_t{s.n} * (s.h / 2) * (s.w / 2); }

// Odd sizes and channel counts (the scalar path), multiples of 8 (the 16-byte path), 1x1 (nothing
// pooled), and the model's first pooling layer's 64 channels.
const std::vector<PoolShape> shapes = {{1, 1, 1, 8}, {2, 7, 5, 3}, {3, 5, 9, 17}, {1, 4, 6, 8},
                                       {2, 6, 4, 16}, {1, 3, 7, 24}, {2, 8, 8, 64}};

std::string describe(const PoolShape& s) {
  return std::to_string(s.n) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c);
}

// Small integers (many ties, so the first-maximum rule is exercised) and a few NaNs.
std::vector<bf16> pool_input(const PoolShape& shape, uint64_t seed) {
  auto x = test::rounded(test::random_integers(input_pixels(shape) * shape.c, seed, -4, 4));
  for (size_t i = 7; i < x.size(); i += 53) x[i] = to_bf16(NAN);
  return x;
}

}  // namespace

TEST_CASE("max_pool2d bf16: forward equals the reference bit for bit, argmax included", "[max_pool2d][bf16]") {
  for (int version = 1; version <= MaxPool2d<kDevice>::versions; ++version) {
    for (const PoolShape& shape : shapes) {
      for (Slice in : test::bf16_layouts(shape.c)) {
        for (Slice out : test::bf16_layouts(shape.c)) {
          INFO("version " << version << ", shape " << describe(shape) << ", strides " << in.stride << "/"
                          << out.stride);
          const auto x = pool_input(shape, 11 + shape.c);
          const auto wide_x = test::widened(x);
          std::vector<float> y(output_pixels(shape) * shape.c);
          std::vector<uint8_t> expected_argmax(y.size());
          cpu::max_pool2d_forward(shape, wide_x.data(), shape.c, y.data(), shape.c, expected_argmax.data());
          const auto expected = test::bits(test::rounded(y));

          DeviceBuffer<bf16> dx(dev(), test::widen_bf16(x, input_pixels(shape), shape.c, in, 0));
          DeviceBuffer<bf16> dy(dev(), output_pixels(shape) * out.stride);
          DeviceBuffer<uint8_t> dargmax(dev(), y.size());
          dy.poison();
          dargmax.poison();
          MaxPool2d<kDevice>::forward(shape, dx.data() + in.offset, in.stride, dy.data() + out.offset, out.stride,
                                      dargmax.data(), {}, version);
          const auto wide = dy.download();
          CHECK(test::bits(test::narrow(wide, output_pixels(shape), shape.c, out)) == expected);
          CHECK(test::outside_untouched_bf16(wide, output_pixels(shape), shape.c, out, test::poison_bits));
          CHECK(dargmax.download() == expected_argmax);
        }
      }
    }
  }
}

TEST_CASE("max_pool2d bf16: backward equals the reference bit for bit, beta 0 over NaN and beta 1",
          "[max_pool2d][bf16]") {
  for (int version = 1; version <= MaxPool2d<kDevice>::versions; ++version) {
    for (const PoolShape& shape : shapes) {
      for (Slice layout : test::bf16_layouts(shape.c)) {
        for (float beta : {0.0f, 1.0f}) {
          INFO("version " << version << ", shape " << describe(shape) << ", stride " << layout.stride << ", beta "
                          << beta);
          const auto wide_x = test::widened(pool_input(shape, 5));
          std::vector<float> unused(output_pixels(shape) * shape.c);
          std::vector<uint8_t> argmax(unused.size());
          cpu::max_pool2d_forward(shape, wide_x.data(), shape.c, unused.data(), shape.c, argmax.data());
          const auto dy = test::random_bf16(unused.size(), 6);
          const auto prior = test::random_bf16(input_pixels(shape) * shape.c, 7);
          std::vector<float> dx = test::widened(prior);
          const auto wide_dy = test::widened(dy);
          cpu::max_pool2d_backward(shape, wide_dy.data(), shape.c, argmax.data(), beta, dx.data(), shape.c);
          const auto expected = test::bits(test::rounded(dx));

          const Slice dense{shape.c, 0};
          DeviceBuffer<bf16> ddy(dev(), test::widen_bf16(dy, output_pixels(shape), shape.c, dense, 0));
          DeviceBuffer<uint8_t> dargmax(dev(), argmax);
          const auto start = beta == 0.0f ? std::vector<bf16>(prior.size(), bf16{test::poison_bits}) : prior;
          DeviceBuffer<bf16> ddx(dev(), test::widen_bf16(start, input_pixels(shape), shape.c, layout, 0x1234));
          MaxPool2d<kDevice>::backward(shape, ddy.data(), shape.c, dargmax.data(), beta, ddx.data() + layout.offset,
                                       layout.stride, {}, version);
          const auto wide = ddx.download();
          CHECK(test::bits(test::narrow(wide, input_pixels(shape), shape.c, layout)) == expected);
          CHECK(test::outside_untouched_bf16(wide, input_pixels(shape), shape.c, layout, 0x1234));
        }
      }
    }
  }
}
