// conv2d's CPU reference: every backward against central differences in double, with and without
// the fused ReLU; beta; channel slices; and PyTorch's results (tests/oracle/conv.py).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/safetensors.h"
#include "kernels/conv2d.h"
#include "tests/test_util.h"

using namespace unet;

namespace {

int64_t pixels(const Conv2dShape& s) { return int64_t{s.n} * s.h * s.w; }
int64_t weight_count(const Conv2dShape& s) { return int64_t{s.c_out} * s.k * s.k * s.c_in; }

std::vector<double> forward(const Conv2dShape& s, const std::vector<double>& x, const std::vector<double>& weight,
                            const std::vector<double>& bias, bool relu) {
  std::vector<double> y(pixels(s) * s.c_out);
  cpu::conv2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), relu, y.data(), s.c_out);
  return y;
}

void check_gradients(const Conv2dShape& s, bool relu, uint64_t seed) {
  INFO("k " << s.k << ", " << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out
            << (relu ? ", relu" : ""));
  auto x = test::to_double(test::random_uniform(pixels(s) * s.c_in, seed));
  auto weight = test::to_double(test::random_uniform(weight_count(s), seed + 1));
  auto bias = test::to_double(test::random_uniform(s.c_out, seed + 2));
  const auto dy = test::to_double(test::random_uniform(pixels(s) * s.c_out, seed + 3));
  const auto y = forward(s, x, weight, bias, relu);
  if (relu) {
    // Central differences straddling the ReLU's kink would be wrong: keep pre-activations away from 0.
    const auto z = forward(s, x, weight, bias, false);
    double nearest = INFINITY;
    for (double v : z) nearest = std::min(nearest, std::abs(v));
    REQUIRE(nearest > 1e-4);
    REQUIRE(std::count_if(y.begin(), y.end(), [](double v) { return v == 0; }) > 0);  // the mask matters
  }
  const double* mask = relu ? y.data() : nullptr;

  std::vector<double> dx(x.size()), dweight(weight.size()), dbias(bias.size());
  cpu::conv2d_backward_data(s, dy.data(), s.c_out, mask, s.c_out, weight.data(), 0.0, dx.data(), s.c_in);
  cpu::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, mask, s.c_out, 0.0, dweight.data());
  cpu::conv2d_backward_bias(s, dy.data(), s.c_out, mask, s.c_out, 0.0, dbias.data());

  const auto numerical_dx = test::numerical_gradient(
      x, [&](const std::vector<double>& v) { return test::dot(dy, forward(s, v, weight, bias, relu)); });
  const auto numerical_dweight = test::numerical_gradient(
      weight, [&](const std::vector<double>& v) { return test::dot(dy, forward(s, x, v, bias, relu)); });
  const auto numerical_dbias = test::numerical_gradient(
      bias, [&](const std::vector<double>& v) { return test::dot(dy, forward(s, x, weight, v, relu)); });
  CHECK(test::relative_error(dx, numerical_dx) < 1e-6);
  CHECK(test::relative_error(dweight, numerical_dweight) < 1e-6);
  CHECK(test::relative_error(dbias, numerical_dbias) < 1e-6);
}

}  // namespace

TEST_CASE("conv2d reference: backward matches central differences", "[conv2d]") {
  for (bool relu : {false, true}) {
    check_gradients({.n = 2, .h = 4, .w = 5, .c_in = 3, .c_out = 2, .k = 3}, relu, 100);
    check_gradients({.n = 1, .h = 3, .w = 2, .c_in = 4, .c_out = 3, .k = 1}, relu, 200);
    check_gradients({.n = 1, .h = 5, .w = 3, .c_in = 2, .c_out = 2, .k = 5}, relu, 300);
  }
}

TEST_CASE("conv2d reference: beta = 1 accumulates, beta = 0 overwrites NaN", "[conv2d]") {
  const Conv2dShape s{.n = 1, .h = 3, .w = 3, .c_in = 2, .c_out = 2, .k = 3};
  const auto x = test::to_double(test::random_uniform(pixels(s) * s.c_in, 1));
  const auto weight = test::to_double(test::random_uniform(weight_count(s), 2));
  const auto dy = test::to_double(test::random_uniform(pixels(s) * s.c_out, 3));
  const double* no_mask = nullptr;
  std::vector<double> dx(x.size()), dweight(weight.size()), dbias(s.c_out);
  cpu::conv2d_backward_data(s, dy.data(), s.c_out, no_mask, 0, weight.data(), 0.0, dx.data(), s.c_in);
  cpu::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, no_mask, 0, 0.0, dweight.data());
  cpu::conv2d_backward_bias(s, dy.data(), s.c_out, no_mask, 0, 0.0, dbias.data());

  auto accumulate = [](std::vector<double> prior, const std::vector<double>& gradient) {
    for (size_t i = 0; i < prior.size(); ++i) prior[i] += gradient[i];
    return prior;
  };
  std::vector<double> dx1(dx.size(), 0.5), dweight1(dweight.size(), -0.25), dbias1(dbias.size(), 2.0);
  const auto dx_expected = accumulate(dx1, dx), dweight_expected = accumulate(dweight1, dweight),
             dbias_expected = accumulate(dbias1, dbias);
  cpu::conv2d_backward_data(s, dy.data(), s.c_out, no_mask, 0, weight.data(), 1.0, dx1.data(), s.c_in);
  cpu::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, no_mask, 0, 1.0, dweight1.data());
  cpu::conv2d_backward_bias(s, dy.data(), s.c_out, no_mask, 0, 1.0, dbias1.data());
  CHECK(dx1 == dx_expected);
  CHECK(dweight1 == dweight_expected);
  CHECK(dbias1 == dbias_expected);

  std::vector<double> dx0(dx.size(), NAN), dweight0(dweight.size(), NAN), dbias0(dbias.size(), NAN);
  cpu::conv2d_backward_data(s, dy.data(), s.c_out, no_mask, 0, weight.data(), 0.0, dx0.data(), s.c_in);
  cpu::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, no_mask, 0, 0.0, dweight0.data());
  cpu::conv2d_backward_bias(s, dy.data(), s.c_out, no_mask, 0, 0.0, dbias0.data());
  CHECK(dx0 == dx);
  CHECK(dweight0 == dweight);
  CHECK(dbias0 == dbias);
}

TEST_CASE("conv2d reference: channel slices give the dense results and write only the slice", "[conv2d]") {
  const Conv2dShape s{.n = 2, .h = 3, .w = 4, .c_in = 3, .c_out = 5, .k = 3};
  const int64_t p = pixels(s);
  const test::Slice xs{8, 2}, ys{7, 1};  // inputs and outputs inside wider buffers
  const auto x = test::random_uniform(p * s.c_in, 7);
  const auto weight = test::random_uniform(weight_count(s), 8);
  const auto bias = test::random_uniform(s.c_out, 9);
  const auto dy = test::random_uniform(p * s.c_out, 10);

  std::vector<float> y(p * s.c_out), dx(p * s.c_in), dweight(weight.size()), dbias(s.c_out);
  cpu::conv2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), true, y.data(), s.c_out);
  cpu::conv2d_backward_data(s, dy.data(), s.c_out, y.data(), s.c_out, weight.data(), 0.0f, dx.data(), s.c_in);
  cpu::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, y.data(), s.c_out, 0.0f, dweight.data());
  cpu::conv2d_backward_bias(s, dy.data(), s.c_out, y.data(), s.c_out, 0.0f, dbias.data());

  const auto x_wide = test::widen(x, p, s.c_in, xs, 9.0f);
  const auto dy_wide = test::widen(dy, p, s.c_out, ys, 9.0f);
  auto y_wide = test::widen(std::vector<float>(y.size(), NAN), p, s.c_out, ys, -3.0f);
  cpu::conv2d_forward(s, x_wide.data() + xs.offset, xs.stride, weight.data(), bias.data(), true,
                      y_wide.data() + ys.offset, ys.stride);
  CHECK(test::narrow(y_wide, p, s.c_out, ys) == y);
  CHECK(test::outside_untouched(y_wide, p, s.c_out, ys, -3.0f));

  auto dx_wide = test::widen(std::vector<float>(dx.size(), NAN), p, s.c_in, xs, -3.0f);
  std::vector<float> dweight_slices(weight.size()), dbias_slices(s.c_out);
  cpu::conv2d_backward_data(s, dy_wide.data() + ys.offset, ys.stride, y_wide.data() + ys.offset, ys.stride,
                            weight.data(), 0.0f, dx_wide.data() + xs.offset, xs.stride);
  cpu::conv2d_backward_weight(s, x_wide.data() + xs.offset, xs.stride, dy_wide.data() + ys.offset, ys.stride,
                              y_wide.data() + ys.offset, ys.stride, 0.0f, dweight_slices.data());
  cpu::conv2d_backward_bias(s, dy_wide.data() + ys.offset, ys.stride, y_wide.data() + ys.offset, ys.stride, 0.0f,
                            dbias_slices.data());
  CHECK(test::narrow(dx_wide, p, s.c_in, xs) == dx);
  CHECK(test::outside_untouched(dx_wide, p, s.c_in, xs, -3.0f));
  CHECK(dweight_slices == dweight);
  CHECK(dbias_slices == dbias);
}

namespace {

// torch's NCHW to NHWC.
std::vector<float> nchw_to_nhwc(const std::vector<float>& v, int n, int c, int h, int w) {
  std::vector<float> out(v.size());
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) out[(int64_t{b} * h * w + i) * c + ch] = v[(int64_t{b} * c + ch) * h * w + i];
  return out;
}

// torch's Conv2d weight [Cout][Cin][k][k] to OHWI [Cout][k][k][Cin].
std::vector<float> oihw_to_ohwi(const std::vector<float>& v, int c_out, int c_in, int k) {
  std::vector<float> out(v.size());
  for (int o = 0; o < c_out; ++o)
    for (int i = 0; i < c_in; ++i)
      for (int t = 0; t < k * k; ++t) out[(int64_t{o} * k * k + t) * c_in + i] = v[(int64_t{o} * c_in + i) * k * k + t];
  return out;
}

}  // namespace

TEST_CASE("conv2d reference: agrees with PyTorch (forward and every gradient)", "[conv2d][oracle]") {
  const auto oracle = SafeTensors::load(UNET_ORACLE_DIR "/conv.safetensors");
  for (std::string name : {"conv2d_k1", "conv2d_k3", "conv2d_relu_k1", "conv2d_relu_k3"}) {
    INFO(name);
    const bool relu = name.find("relu") != std::string::npos;
    const auto& x_shape = oracle.get(name + ".x").shape;        // N, Cin, H, W
    const auto& w_shape = oracle.get(name + ".weight").shape;   // Cout, Cin, k, k
    const Conv2dShape s{.n = int(x_shape[0]), .h = int(x_shape[2]), .w = int(x_shape[3]), .c_in = int(x_shape[1]),
                        .c_out = int(w_shape[0]), .k = int(w_shape[2])};
    const std::vector<int64_t> x_dims{s.n, s.c_in, s.h, s.w}, y_dims{s.n, s.c_out, s.h, s.w};
    const auto x = nchw_to_nhwc(oracle.floats(name + ".x", x_dims), s.n, s.c_in, s.h, s.w);
    const auto weight = oihw_to_ohwi(oracle.floats(name + ".weight", w_shape), s.c_out, s.c_in, s.k);
    const auto bias = oracle.floats(name + ".bias", {s.c_out});
    const auto dy = nchw_to_nhwc(oracle.floats(name + ".dy", y_dims), s.n, s.c_out, s.h, s.w);

    std::vector<float> y(pixels(s) * s.c_out), dx(x.size()), dweight(weight.size()), dbias(s.c_out);
    cpu::conv2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), relu, y.data(), s.c_out);
    const float* mask = relu ? y.data() : nullptr;
    cpu::conv2d_backward_data(s, dy.data(), s.c_out, mask, s.c_out, weight.data(), 0.0f, dx.data(), s.c_in);
    cpu::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, mask, s.c_out, 0.0f, dweight.data());
    cpu::conv2d_backward_bias(s, dy.data(), s.c_out, mask, s.c_out, 0.0f, dbias.data());

    CHECK(test::relative_error(y, nchw_to_nhwc(oracle.floats(name + ".y", y_dims), s.n, s.c_out, s.h, s.w)) < 1e-5);
    CHECK(test::relative_error(dx, nchw_to_nhwc(oracle.floats(name + ".dx", x_dims), s.n, s.c_in, s.h, s.w)) < 1e-5);
    CHECK(test::relative_error(dweight, oihw_to_ohwi(oracle.floats(name + ".dweight", w_shape), s.c_out, s.c_in, s.k)) <
          1e-5);
    CHECK(test::relative_error(dbias, oracle.floats(name + ".dbias", {s.c_out})) < 1e-5);
  }
}
