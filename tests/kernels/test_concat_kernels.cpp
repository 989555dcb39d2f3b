// concat's CUDA kernels (every version) against the CPU reference, on sim or cuda.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/concat.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

struct ConcatShape {
  int64_t pixels;
  int a_channels, b_channels;
};

// Awkward channel counts (one operand empty, too), then the decoder's skip concatenations of the
// model at a reduced 2x16x16 input: [upsampled, skip] with the level's width each.
std::vector<ConcatShape> shapes() {
  std::vector<ConcatShape> all = {{1, 1, 1}, {37, 3, 5}, {29, 17, 3}, {11, 33, 17}, {7, 5, 0}, {7, 0, 3}};
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 2, 16, 16)) {
    if (layer.kind == LayerKind::up_conv) {
      all.push_back({int64_t{layer.n} * layer.out_h() * layer.out_w(), layer.c_out, layer.c_out});
    }
  }
  return all;
}

// Each operand dense or a slice of a wider buffer.
std::vector<Slice> layouts(int channels) { return {{channels, 0}, {channels + 5, 3}}; }

}  // namespace

TEST_CASE("concat kernels: forward equals the reference bit for bit, writes only its slice", "[concat]") {
  for (int version = 1; version <= Concat<kDevice>::versions; ++version) {
    for (const ConcatShape& s : shapes()) {
      const int c = s.a_channels + s.b_channels;
      for (Slice a_layout : layouts(s.a_channels)) {
        for (Slice b_layout : layouts(s.b_channels)) {
          for (Slice y_layout : layouts(c)) {
            INFO("version " << version << ", " << s.pixels << " pixels, " << s.a_channels << " + " << s.b_channels
                            << ", strides " << a_layout.stride << "/" << b_layout.stride << "/" << y_layout.stride);
            const auto a = test::random_integers(s.pixels * s.a_channels, 101);
            const auto b = test::random_uniform(s.pixels * s.b_channels, 102);
            std::vector<float> expected(s.pixels * c);
            cpu::concat_forward(s.pixels, a.data(), s.a_channels, s.a_channels, b.data(), s.b_channels, s.b_channels,
                                expected.data(), c);

            DeviceBuffer<float> da(dev(), test::widen(a, s.pixels, s.a_channels, a_layout, 0.0f));
            DeviceBuffer<float> db(dev(), test::widen(b, s.pixels, s.b_channels, b_layout, 0.0f));
            DeviceBuffer<float> dy(dev(), s.pixels * y_layout.stride);
            dy.poison();
            Concat<kDevice>::forward(s.pixels, da.data() + a_layout.offset, s.a_channels, a_layout.stride,
                                     db.data() + b_layout.offset, s.b_channels, b_layout.stride,
                                     dy.data() + y_layout.offset, y_layout.stride, {}, version);
            const auto wide = dy.download();
            CHECK(test::narrow(wide, s.pixels, c, y_layout) == expected);  // a copy is exact
            CHECK(test::outside_untouched(wide, s.pixels, c, y_layout, NAN));
          }
        }
      }
    }
  }
}

TEST_CASE("concat kernels: backward equals the reference for beta 0 and 1", "[concat]") {
  for (int version = 1; version <= Concat<kDevice>::versions; ++version) {
    for (const ConcatShape& s : shapes()) {
      const int c = s.a_channels + s.b_channels;
      for (Slice layout : layouts(c)) {
        for (float beta : {0.0f, 1.0f}) {
          for (bool integers : {false, true}) {
            INFO("version " << version << ", " << s.pixels << " pixels, " << s.a_channels << " + " << s.b_channels
                            << ", stride " << layout.stride << ", beta " << beta
                            << (integers ? ", small integers" : ""));
            const auto random = [&](size_t count, uint64_t seed) {
              return integers ? test::random_integers(count, seed) : test::random_uniform(count, seed);
            };
            const auto dy = random(s.pixels * c, 103);
            const auto prior_a = random(s.pixels * s.a_channels, 104);
            const auto prior_b = random(s.pixels * s.b_channels, 105);
            std::vector<double> expected_a = test::to_double(prior_a), expected_b = test::to_double(prior_b);
            cpu::concat_backward<double>(s.pixels, test::to_double(dy).data(), c, s.a_channels, s.b_channels, beta,
                                         expected_a.data(), s.a_channels, expected_b.data(), s.b_channels);

            // da and db as slices of one wider buffer: a at offset 2, b right after, stride c + 5.
            const Slice a_slice{c + 5, 2}, b_slice{c + 5, 2 + s.a_channels};
            std::vector<float> both(s.pixels * (c + 5), -7.0f);
            for (int64_t p = 0; p < s.pixels; ++p) {
              for (int k = 0; k < s.a_channels; ++k)
                both[p * (c + 5) + 2 + k] = beta == 0.0f ? NAN : prior_a[p * s.a_channels + k];
              for (int k = 0; k < s.b_channels; ++k)
                both[p * (c + 5) + 2 + s.a_channels + k] = beta == 0.0f ? NAN : prior_b[p * s.b_channels + k];
            }
            DeviceBuffer<float> ddy(dev(), test::widen(dy, s.pixels, c, layout, 0.0f));
            DeviceBuffer<float> dboth(dev(), both);
            Concat<kDevice>::backward(s.pixels, ddy.data() + layout.offset, layout.stride, s.a_channels,
                                      s.b_channels, beta, dboth.data() + a_slice.offset, a_slice.stride,
                                      dboth.data() + b_slice.offset, b_slice.stride, {}, version);
            const auto wide = dboth.download();
            const auto got_a = test::narrow(wide, s.pixels, s.a_channels, a_slice);
            const auto got_b = test::narrow(wide, s.pixels, s.b_channels, b_slice);
            if (integers) {
              CHECK(test::to_double(got_a) == expected_a);
              CHECK(test::to_double(got_b) == expected_b);
            } else {
              CHECK(test::relative_error(got_a, expected_a) < 1e-5);
              CHECK(test::relative_error(got_b, expected_b) < 1e-5);
            }
            CHECK(test::outside_untouched(wide, s.pixels, c, {c + 5, 2}, -7.0f));
          }
        }
      }
    }
  }
}

TEST_CASE("concat kernels: an empty tensor launches nothing", "[concat]") {
  Concat<kDevice>::forward(0, static_cast<const float*>(nullptr), 3, 3, nullptr, 4, 4, nullptr, 7, {});
  Concat<kDevice>::backward(5, static_cast<const float*>(nullptr), 0, 0, 0, 0.0f, nullptr, 0, nullptr, 0, {});
}
