// sigmoid's CPU reference: its backward against central differences, in double, and its values
// where the naive formula overflows.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/sigmoid.h"
#include "tests/test_util.h"

using namespace unet;

TEST_CASE("sigmoid reference: backward matches central differences", "[sigmoid]") {
  const int64_t pixels = 7;
  const int channels = 5;
  const auto x = test::to_double(test::random_uniform(pixels * channels, 51, -4.0f, 4.0f));
  const auto dy = test::to_double(test::random_uniform(pixels * channels, 52));
  std::vector<double> y(x.size()), dx(x.size());
  cpu::sigmoid_forward(pixels, channels, x.data(), channels, y.data(), channels);
  cpu::sigmoid_backward(pixels, channels, dy.data(), channels, y.data(), channels, 0.0, dx.data(), channels);
  const auto numerical = test::numerical_gradient(x, [&](const std::vector<double>& input) {
    std::vector<double> out(input.size());
    cpu::sigmoid_forward(pixels, channels, input.data(), channels, out.data(), channels);
    return test::dot(dy, out);
  });
  CHECK(test::relative_error(dx, numerical) < 1e-6);
}

TEST_CASE("sigmoid reference: finite and correct for large |x|", "[sigmoid]") {
  const std::vector<float> x = {-1e4f, -80.0f, -20.0f, 0.0f, 20.0f, 100.0f, 1e4f};
  std::vector<float> y(x.size());
  cpu::sigmoid_forward<float>(1, 7, x.data(), 7, y.data(), 7);
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == Approx(std::exp(-80.0)).epsilon(1e-6));  // 1.8e-35: 1 - sigmoid(80) would give 0
  CHECK(y[2] == Approx(1.0 / (1.0 + std::exp(20.0))).epsilon(1e-6));
  CHECK(y[3] == 0.5f);
  CHECK(y[4] == Approx(1.0 / (1.0 + std::exp(-20.0))).epsilon(1e-7));
  CHECK(y[5] == 1.0f);
  CHECK(y[6] == 1.0f);
}

TEST_CASE("sigmoid reference: beta = 1 accumulates, beta = 0 overwrites NaN", "[sigmoid]") {
  const std::vector<double> y = {0.5, 0.25}, dy = {2.0, 4.0};
  std::vector<double> dx = {1.0, 1.0};
  cpu::sigmoid_backward<double>(1, 2, dy.data(), 2, y.data(), 2, 1.0, dx.data(), 2);
  CHECK(dx == std::vector<double>{1.5, 1.75});
  dx = {NAN, NAN};
  cpu::sigmoid_backward<double>(1, 2, dy.data(), 2, y.data(), 2, 0.0, dx.data(), 2);
  CHECK(dx == std::vector<double>{0.5, 0.75});
}
