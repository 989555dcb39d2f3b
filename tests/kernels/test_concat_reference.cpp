// concat's CPU reference: its backward against central differences, in double, and its layout.
#include <catch2/catch.hpp>

#include "kernels/concat.h"
#include "tests/test_util.h"

using namespace unet;

TEST_CASE("concat reference: backward matches central differences", "[concat]") {
  const int64_t pixels = 6;
  const int ca = 3, cb = 5;
  // x holds a then b, so one numerical gradient covers both operands.
  const auto x = test::to_double(test::random_uniform(pixels * (ca + cb), 61));
  const auto dy = test::to_double(test::random_uniform(pixels * (ca + cb), 62));
  const auto concat = [&](const std::vector<double>& input) {
    std::vector<double> y(input.size());
    cpu::concat_forward(pixels, input.data(), ca, ca, input.data() + pixels * ca, cb, cb, y.data(), ca + cb);
    return y;
  };
  std::vector<double> dx(x.size());
  cpu::concat_backward(pixels, dy.data(), ca + cb, ca, cb, 0.0, dx.data(), ca, dx.data() + pixels * ca, cb);
  const auto numerical =
      test::numerical_gradient(x, [&](const std::vector<double>& input) { return test::dot(dy, concat(input)); });
  CHECK(test::relative_error(dx, numerical) < 1e-6);
}

TEST_CASE("concat reference: places a before b in each pixel, through strides; beta", "[concat]") {
  const std::vector<double> a = {1, 2, -1, 3, 4, -1}, b = {5, 6};  // a: 2 channels at stride 3
  std::vector<double> y(8, -7.0);                                  // y: 3 channels at stride 4
  cpu::concat_forward<double>(2, a.data(), 2, 3, b.data(), 1, 1, y.data(), 4);
  CHECK(y == std::vector<double>{1, 2, 5, -7, 3, 4, 6, -7});

  const std::vector<double> dy = {1, 2, 3, 4, 5, 6};
  std::vector<double> da = {10, 10, 10, 10}, db = {NAN, NAN};
  cpu::concat_backward<double>(2, dy.data(), 3, 2, 1, 1.0, da.data(), 2, db.data(), 1);
  CHECK(da == std::vector<double>{11, 12, 14, 15});
  db = {NAN, NAN};
  cpu::concat_backward<double>(2, dy.data(), 3, 2, 1, 0.0, da.data(), 2, db.data(), 1);
  CHECK(db == std::vector<double>{3, 6});
}
