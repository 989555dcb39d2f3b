// The cpu device's max_pool2d (cpu::fast, max_pool2d.h) against the reference: bit for bit (a max
// picks a value), ties and NaN by PyTorch's rule, odd sizes, channel slices, beta 0 and 1 over
// NaN-poisoned outputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/max_pool2d.h"
#include "tests/test_util.h"

using namespace unet;
using test::Slice;

namespace {

void check_pool(const PoolShape& s, Slice in, Slice out, uint64_t seed) {
  INFO(s.n << "x" << s.h << "x" << s.w << "x" << s.c << ", in " << in.offset << "/" << in.stride << ", out "
            << out.offset << "/" << out.stride);
  const int64_t pixels = int64_t{s.n} * s.h * s.w, pooled = int64_t{s.n} * (s.h / 2) * (s.w / 2);
  // Small integers make ties common; a few NaNs test that a NaN wins.
  auto x = test::random_integers(pixels * s.c, seed, -2, 2);
  for (size_t i = 0; i < x.size(); i += 7) x[i] = NAN;
  const auto dy = test::random_uniform(pooled * s.c, seed + 1), prior = test::random_uniform(pixels * s.c, seed + 2);

  std::vector<float> y_ref(pooled * s.c), dx_ref(pixels * s.c), dx_ref_accumulated = prior;
  std::vector<uint8_t> argmax_ref(pooled * s.c);
  cpu::max_pool2d_forward(s, x.data(), s.c, y_ref.data(), s.c, argmax_ref.data());
  cpu::max_pool2d_backward(s, dy.data(), s.c, argmax_ref.data(), 0.0f, dx_ref.data(), s.c);
  cpu::max_pool2d_backward(s, dy.data(), s.c, argmax_ref.data(), 1.0f, dx_ref_accumulated.data(), s.c);

  const auto x_wide = test::widen(x, pixels, s.c, in, -9.0f);
  std::vector<float> y(pooled * out.stride, NAN);
  std::vector<uint8_t> argmax(pooled * s.c, 0xff);
  cpu::fast::max_pool2d_forward(s, x_wide.data() + in.offset, in.stride, y.data() + out.offset, out.stride,
                                argmax.data());
  const auto y_dense = test::narrow(y, pooled, s.c, out);
  for (size_t i = 0; i < y_ref.size(); ++i) {
    INFO("output " << i);
    REQUIRE((y_dense[i] == y_ref[i] || (std::isnan(y_dense[i]) && std::isnan(y_ref[i]))));
  }
  CHECK(argmax == argmax_ref);
  CHECK(test::outside_untouched(y, pooled, s.c, out, NAN));

  const auto dy_wide = test::widen(dy, pooled, s.c, out, NAN);
  for (float beta : {0.0f, 1.0f}) {
    INFO("beta " << beta);
    auto dx = test::widen(beta == 0.0f ? std::vector<float>(prior.size(), NAN) : prior, pixels, s.c, in, -7.0f);
    cpu::fast::max_pool2d_backward(s, dy_wide.data() + out.offset, out.stride, argmax.data(), beta,
                                   dx.data() + in.offset, in.stride);
    CHECK(test::narrow(dx, pixels, s.c, in) == (beta == 0.0f ? dx_ref : dx_ref_accumulated));
    CHECK(test::outside_untouched(dx, pixels, s.c, in, -7.0f));
  }
}

}  // namespace

TEST_CASE("fast cpu max_pool2d: exactly the reference, NaN and ties included", "[cpu][max_pool2d]") {
  const std::vector<PoolShape> shapes = {{1, 1, 1, 3}, {1, 2, 2, 5}, {2, 7, 5, 3}, {3, 5, 9, 17},
                                         {1, 4, 6, 33}, {2, 16, 16, 64}};
  uint64_t seed = 900;
  for (const PoolShape& s : shapes) {
    check_pool(s, {s.c, 0}, {s.c, 0}, seed += 10);
    check_pool(s, {s.c + 5, 3}, {2 * s.c, s.c}, seed += 10);
  }
}
