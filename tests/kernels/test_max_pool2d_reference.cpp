// max_pool2d's CPU reference: its backward against central differences, in double, and forward and
// backward against PyTorch (tests/oracle/pool.py), ties and NaNs included.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <string>

#include "engine/safetensors.h"
#include "kernels/max_pool2d.h"
#include "tests/test_util.h"

using namespace unet;

namespace {

std::vector<double> pool_forward(const PoolShape& shape, const std::vector<double>& x) {
  std::vector<double> y(static_cast<size_t>(shape.n) * (shape.h / 2) * (shape.w / 2) * shape.c);
  std::vector<uint8_t> argmax(y.size());
  cpu::max_pool2d_forward(shape, x.data(), shape.c, y.data(), shape.c, argmax.data());
  return y;
}

// torch's (N, C, H, W) to NHWC.
std::vector<float> to_nhwc(const std::vector<float>& nchw, const PoolShape& s) {
  std::vector<float> nhwc(nchw.size());
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int h = 0; h < s.h; ++h)
        for (int w = 0; w < s.w; ++w) nhwc[((n * s.h + h) * s.w + w) * s.c + c] = nchw[((n * s.c + c) * s.h + h) * s.w + w];
  return nhwc;
}

// torch's indices, (N, C, H/2, W/2) flat within each (H, W) plane, to window positions 2r+s in NHWC.
std::vector<uint8_t> to_window_positions(const TensorData& indices, const PoolShape& s) {
  std::vector<int64_t> flat(indices.numel());
  std::memcpy(flat.data(), indices.bytes.data(), indices.bytes.size());
  const int out_h = s.h / 2, out_w = s.w / 2;
  std::vector<uint8_t> positions(flat.size());
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int oh = 0; oh < out_h; ++oh)
        for (int ow = 0; ow < out_w; ++ow) {
          const int64_t index = flat[((n * s.c + c) * out_h + oh) * out_w + ow];
          const int64_t r = index / s.w - 2 * oh, col = index % s.w - 2 * ow;
          positions[((n * out_h + oh) * out_w + ow) * s.c + c] = static_cast<uint8_t>(2 * r + col);
        }
  return positions;
}

// Equal, with NaN equal to NaN.
bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("max_pool2d reference: backward matches central differences", "[max_pool2d]") {
  const PoolShape shape{2, 7, 5, 3};  // odd: the last row and column are dropped
  const auto x = test::to_double(test::random_uniform(size_t{2} * 7 * 5 * 3, 41));
  const auto dy = test::to_double(test::random_uniform(size_t{2} * 3 * 2 * 3, 42));
  std::vector<double> y(dy.size()), dx(x.size());
  std::vector<uint8_t> argmax(dy.size());
  cpu::max_pool2d_forward(shape, x.data(), 3, y.data(), 3, argmax.data());
  cpu::max_pool2d_backward(shape, dy.data(), 3, argmax.data(), 0.0, dx.data(), 3);
  const auto numerical = test::numerical_gradient(
      x, [&](const std::vector<double>& input) { return test::dot(dy, pool_forward(shape, input)); });
  CHECK(test::relative_error(dx, numerical) < 1e-6);
}

TEST_CASE("max_pool2d reference: beta = 1 accumulates, beta = 0 overwrites NaN, dropped rows get beta*dx",
          "[max_pool2d]") {
  const PoolShape shape{1, 3, 2, 1};  // one window over rows 0-1; row 2 is dropped
  const std::vector<double> dy = {5.0};
  const std::vector<uint8_t> argmax = {2};  // (1, 0)
  std::vector<double> dx = {1, 2, 3, 4, 5, 6};
  cpu::max_pool2d_backward(shape, dy.data(), 1, argmax.data(), 1.0, dx.data(), 1);
  CHECK(dx == std::vector<double>{1, 2, 8, 4, 5, 6});
  dx.assign(6, NAN);
  cpu::max_pool2d_backward(shape, dy.data(), 1, argmax.data(), 0.0, dx.data(), 1);
  CHECK(dx == std::vector<double>{0, 0, 5, 0, 0, 0});
}

TEST_CASE("max_pool2d reference: equals PyTorch, ties and NaNs included", "[max_pool2d]") {
  const auto oracle = SafeTensors::load(UNET_ORACLE_DIR "/pool.safetensors");
  for (const std::string name : {"random", "integers", "nan"}) {
    INFO("case " << name);
    const std::vector<int64_t>& dims = oracle.get(name + ".x").shape;  // (N, C, H, W)
    const PoolShape shape{int(dims[0]), int(dims[2]), int(dims[3]), int(dims[1])};
    const PoolShape out_shape{shape.n, shape.h / 2, shape.w / 2, shape.c};
    const auto x = to_nhwc(oracle.floats(name + ".x"), shape);
    const auto dy = to_nhwc(oracle.floats(name + ".dy"), out_shape);

    std::vector<float> y(dy.size()), dx(x.size());
    std::vector<uint8_t> argmax(dy.size());
    cpu::max_pool2d_forward(shape, x.data(), shape.c, y.data(), shape.c, argmax.data());
    cpu::max_pool2d_backward(shape, dy.data(), shape.c, argmax.data(), 0.0f, dx.data(), shape.c);
    CHECK(same_values(y, to_nhwc(oracle.floats(name + ".y"), out_shape)));  // a max is exact
    CHECK(argmax == to_window_positions(oracle.get(name + ".indices"), shape));
    CHECK(dx == to_nhwc(oracle.floats(name + ".dx"), shape));
  }
}
