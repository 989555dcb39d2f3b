// relu's CPU reference: its backward against central differences, in double.
#include <catch2/catch.hpp>

#include "kernels/relu.h"
#include "tests/test_util.h"

using namespace unet;

TEST_CASE("relu reference: backward matches central differences", "[relu]") {
  const int64_t pixels = 7;
  const int channels = 5;
  // Keep inputs away from the kink at 0, where the derivative does not exist.
  auto x = test::to_double(test::random_uniform(pixels * channels, 11));
  for (double& v : x) v += v >= 0 ? 0.1 : -0.1;
  const auto dy = test::to_double(test::random_uniform(pixels * channels, 12));

  std::vector<double> y(x.size()), dx(x.size());
  cpu::relu_forward(pixels, channels, x.data(), channels, y.data(), channels);
  cpu::relu_backward(pixels, channels, dy.data(), channels, y.data(), channels, 0.0, dx.data(), channels);
  const auto numerical = test::numerical_gradient(x, [&](const std::vector<double>& input) {
    std::vector<double> out(input.size());
    cpu::relu_forward(pixels, channels, input.data(), channels, out.data(), channels);
    return test::dot(dy, out);
  });
  CHECK(test::relative_error(dx, numerical) < 1e-6);
}

TEST_CASE("relu reference: beta = 1 accumulates, beta = 0 overwrites NaN", "[relu]") {
  const std::vector<double> y = {1.0, 0.0, 2.0}, dy = {0.5, 0.25, -1.0};
  std::vector<double> dx = {10.0, 20.0, 30.0};
  cpu::relu_backward<double>(1, 3, dy.data(), 3, y.data(), 3, 1.0, dx.data(), 3);
  CHECK(dx == std::vector<double>{10.5, 20.0, 29.0});
  dx = {NAN, NAN, NAN};
  cpu::relu_backward<double>(1, 3, dy.data(), 3, y.data(), 3, 0.0, dx.data(), 3);
  CHECK(dx == std::vector<double>{0.5, 0.0, -1.0});
}
