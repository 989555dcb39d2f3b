// conv_transpose2d's CPU reference: every backward against central differences in double, beta,
// channel slices, the index maths, and PyTorch's results (tests/oracle/conv.py).
#include <catch2/catch.hpp>

#include <set>

#include "engine/safetensors.h"
#include "kernels/conv_transpose2d.h"
#include "tests/test_util.h"

using namespace unet;

namespace {

int64_t in_pixels(const ConvTranspose2dShape& s) { return int64_t{s.n} * s.h * s.w; }
int64_t out_pixels(const ConvTranspose2dShape& s) { return 4 * in_pixels(s); }
int64_t weight_count(const ConvTranspose2dShape& s) { return int64_t{s.c_in} * 4 * s.c_out; }

std::vector<double> forward(const ConvTranspose2dShape& s, const std::vector<double>& x,
                            const std::vector<double>& weight, const std::vector<double>& bias) {
  std::vector<double> y(out_pixels(s) * s.c_out);
  cpu::conv_transpose2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), y.data(), s.c_out);
  return y;
}

}  // namespace

TEST_CASE("conv_transpose2d reference: every output pixel has exactly one source", "[conv_transpose2d]") {
  const int n = 2, h = 3, w = 5;
  std::set<int64_t> seen;
  for (int64_t p = 0; p < int64_t{n} * h * w; ++p) {
    const int b = static_cast<int>(p / (h * w)), row = static_cast<int>(p / w % h), col = static_cast<int>(p % w);
    for (int r = 0; r < 2; ++r) {
      for (int s = 0; s < 2; ++s) {
        const int64_t q = conv_transpose2d_output_pixel(p, col, w, r, s);
        CHECK(q == (int64_t{b} * 2 * h + 2 * row + r) * 2 * w + 2 * col + s);
        seen.insert(q);
      }
    }
  }
  CHECK(seen.size() == size_t{4} * n * h * w);
}

TEST_CASE("conv_transpose2d reference: backward matches central differences", "[conv_transpose2d]") {
  for (const ConvTranspose2dShape s : {ConvTranspose2dShape{.n = 2, .h = 2, .w = 3, .c_in = 3, .c_out = 2},
                                       ConvTranspose2dShape{.n = 1, .h = 3, .w = 1, .c_in = 2, .c_out = 4}}) {
    INFO(s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out);
    const auto x = test::to_double(test::random_uniform(in_pixels(s) * s.c_in, 41));
    const auto weight = test::to_double(test::random_uniform(weight_count(s), 42));
    const auto bias = test::to_double(test::random_uniform(s.c_out, 43));
    const auto dy = test::to_double(test::random_uniform(out_pixels(s) * s.c_out, 44));

    std::vector<double> dx(x.size()), dweight(weight.size()), dbias(bias.size());
    cpu::conv_transpose2d_backward_data(s, dy.data(), s.c_out, weight.data(), 0.0, dx.data(), s.c_in);
    cpu::conv_transpose2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, 0.0, dweight.data());
    cpu::conv_transpose2d_backward_bias(s, dy.data(), s.c_out, 0.0, dbias.data());

    const auto numerical_dx = test::numerical_gradient(
        x, [&](const std::vector<double>& v) { return test::dot(dy, forward(s, v, weight, bias)); });
    const auto numerical_dweight = test::numerical_gradient(
        weight, [&](const std::vector<double>& v) { return test::dot(dy, forward(s, x, v, bias)); });
    const auto numerical_dbias = test::numerical_gradient(
        bias, [&](const std::vector<double>& v) { return test::dot(dy, forward(s, x, weight, v)); });
    CHECK(test::relative_error(dx, numerical_dx) < 1e-6);
    CHECK(test::relative_error(dweight, numerical_dweight) < 1e-6);
    CHECK(test::relative_error(dbias, numerical_dbias) < 1e-6);
  }
}

TEST_CASE("conv_transpose2d reference: beta, and channel slices give the dense results", "[conv_transpose2d]") {
  const ConvTranspose2dShape s{.n = 2, .h = 3, .w = 2, .c_in = 3, .c_out = 5};
  const int64_t p = in_pixels(s), q = out_pixels(s);
  const test::Slice xs{6, 2}, ys{9, 0};  // the U-Net writes the output into channels [0, C) of a concat buffer
  const auto x = test::random_uniform(p * s.c_in, 51);
  const auto weight = test::random_uniform(weight_count(s), 52);
  const auto bias = test::random_uniform(s.c_out, 53);
  const auto dy = test::random_uniform(q * s.c_out, 54);

  std::vector<float> y(q * s.c_out), dx(p * s.c_in), dweight(weight.size()), dbias(s.c_out);
  cpu::conv_transpose2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), y.data(), s.c_out);
  cpu::conv_transpose2d_backward_data(s, dy.data(), s.c_out, weight.data(), 0.0f, dx.data(), s.c_in);
  cpu::conv_transpose2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, 0.0f, dweight.data());
  cpu::conv_transpose2d_backward_bias(s, dy.data(), s.c_out, 0.0f, dbias.data());

  const auto x_wide = test::widen(x, p, s.c_in, xs, 9.0f);
  const auto dy_wide = test::widen(dy, q, s.c_out, ys, 9.0f);
  auto y_wide = test::widen(std::vector<float>(y.size(), NAN), q, s.c_out, ys, -3.0f);
  cpu::conv_transpose2d_forward(s, x_wide.data() + xs.offset, xs.stride, weight.data(), bias.data(),
                                y_wide.data() + ys.offset, ys.stride);
  CHECK(test::narrow(y_wide, q, s.c_out, ys) == y);
  CHECK(test::outside_untouched(y_wide, q, s.c_out, ys, -3.0f));

  // beta = 0 over NaN in a slice; then beta = 1 adds the same gradient once more.
  auto dx_wide = test::widen(std::vector<float>(dx.size(), NAN), p, s.c_in, xs, -3.0f);
  std::vector<float> dweight_slices(weight.size(), NAN), dbias_slices(s.c_out, NAN);
  for (float beta : {0.0f, 1.0f}) {
    cpu::conv_transpose2d_backward_data(s, dy_wide.data() + ys.offset, ys.stride, weight.data(), beta,
                                        dx_wide.data() + xs.offset, xs.stride);
    cpu::conv_transpose2d_backward_weight(s, x_wide.data() + xs.offset, xs.stride, dy_wide.data() + ys.offset,
                                          ys.stride, beta, dweight_slices.data());
    cpu::conv_transpose2d_backward_bias(s, dy_wide.data() + ys.offset, ys.stride, beta, dbias_slices.data());
  }
  auto twice = [](std::vector<float> v) {
    for (float& e : v) e += e;
    return v;
  };
  CHECK(test::narrow(dx_wide, p, s.c_in, xs) == twice(dx));
  CHECK(test::outside_untouched(dx_wide, p, s.c_in, xs, -3.0f));
  CHECK(dweight_slices == twice(dweight));
  CHECK(dbias_slices == twice(dbias));
}

TEST_CASE("conv_transpose2d reference: agrees with PyTorch (forward and every gradient)",
          "[conv_transpose2d][oracle]") {
  const auto oracle = SafeTensors::load(UNET_ORACLE_DIR "/conv.safetensors");
  const auto& x_shape = oracle.get("conv_transpose2d.x").shape;       // N, Cin, H, W
  const auto& w_shape = oracle.get("conv_transpose2d.weight").shape;  // Cin, Cout, 2, 2
  const ConvTranspose2dShape s{.n = int(x_shape[0]), .h = int(x_shape[2]), .w = int(x_shape[3]),
                               .c_in = int(x_shape[1]), .c_out = int(w_shape[1])};
  REQUIRE((w_shape[0] == s.c_in && w_shape[2] == 2 && w_shape[3] == 2));
  const int H = 2 * s.h, W = 2 * s.w;

  auto nchw_to_nhwc = [](const std::vector<float>& v, int n, int c, int h, int w) {
    std::vector<float> out(v.size());
    for (int b = 0; b < n; ++b)
      for (int ch = 0; ch < c; ++ch)
        for (int i = 0; i < h * w; ++i) out[(int64_t{b} * h * w + i) * c + ch] = v[(int64_t{b} * c + ch) * h * w + i];
    return out;
  };
  // torch's ConvTranspose2d weight [Cin][Cout][2][2] to [Cin][2][2][Cout].
  auto iohw_to_ihwo = [&](const std::vector<float>& v) {
    std::vector<float> out(v.size());
    for (int i = 0; i < s.c_in; ++i)
      for (int o = 0; o < s.c_out; ++o)
        for (int t = 0; t < 4; ++t) out[(int64_t{i} * 4 + t) * s.c_out + o] = v[(int64_t{i} * s.c_out + o) * 4 + t];
    return out;
  };
  const std::vector<int64_t> x_dims{s.n, s.c_in, s.h, s.w}, y_dims{s.n, s.c_out, H, W};
  const auto x = nchw_to_nhwc(oracle.floats("conv_transpose2d.x", x_dims), s.n, s.c_in, s.h, s.w);
  const auto weight = iohw_to_ihwo(oracle.floats("conv_transpose2d.weight", w_shape));
  const auto bias = oracle.floats("conv_transpose2d.bias", {s.c_out});
  const auto dy = nchw_to_nhwc(oracle.floats("conv_transpose2d.dy", y_dims), s.n, s.c_out, H, W);

  std::vector<float> y(out_pixels(s) * s.c_out), dx(x.size()), dweight(weight.size()), dbias(s.c_out);
  cpu::conv_transpose2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), y.data(), s.c_out);
  cpu::conv_transpose2d_backward_data(s, dy.data(), s.c_out, weight.data(), 0.0f, dx.data(), s.c_in);
  cpu::conv_transpose2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, 0.0f, dweight.data());
  cpu::conv_transpose2d_backward_bias(s, dy.data(), s.c_out, 0.0f, dbias.data());

  CHECK(test::relative_error(y, nchw_to_nhwc(oracle.floats("conv_transpose2d.y", y_dims), s.n, s.c_out, H, W)) < 1e-5);
  CHECK(test::relative_error(dx, nchw_to_nhwc(oracle.floats("conv_transpose2d.dx", x_dims), s.n, s.c_in, s.h, s.w)) <
        1e-5);
  CHECK(test::relative_error(dweight, iohw_to_ihwo(oracle.floats("conv_transpose2d.dweight", w_shape))) < 1e-5);
  CHECK(test::relative_error(dbias, oracle.floats("conv_transpose2d.dbias", {s.c_out})) < 1e-5);
}
