// max_pool2d's CUDA kernels (every version) against the CPU reference, on sim or cuda.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/max_pool2d.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

// Dense, an unaligned slice (version 2 falls back), and an aligned slice (version 2 runs).
std::vector<Slice> layouts(int channels) { return {{channels, 0}, {channels + 5, 3}, {channels + 8, 4}}; }

int64_t input_pixels(const PoolShape& s) { return int64_t{s.n} * s.h * s.w; }
int64_t output_pixels(const PoolShape& s) { return int64_t{s.n} * (s.h / 2) * (s.w / 2); }

// Odd H and W, 1x1 (nothing pooled), channel counts off the vector width; then the model's pooling
// layers at a reduced 16x16 input.
std::vector<PoolShape> shapes() {
  std::vector<PoolShape> all = {{1, 1, 1, 3}, {1, 2, 2, 5}, {2, 7, 5, 3}, {3, 5, 9, 17},
                                {1, 4, 6, 33}, {2, 6, 4, 4}, {1, 3, 7, 8}};
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 2, 16, 16)) {
    if (layer.kind == LayerKind::max_pool) all.push_back({layer.n, layer.h, layer.w, layer.c_in});
  }
  return all;
}

std::string describe(const PoolShape& s) {
  return std::to_string(s.n) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c);
}

struct Pooled {
  std::vector<float> y;
  std::vector<uint8_t> argmax;
};

Pooled reference_forward(const PoolShape& shape, const std::vector<float>& x) {
  const auto x64 = test::to_double(x);
  std::vector<double> y(output_pixels(shape) * shape.c);
  std::vector<uint8_t> argmax(y.size());
  cpu::max_pool2d_forward(shape, x64.data(), shape.c, y.data(), shape.c, argmax.data());
  return {std::vector<float>(y.begin(), y.end()), argmax};  // a max of floats is a float
}

// The kernel's output and argmax; checks that nothing outside the output slice was written.
Pooled kernel_forward(const PoolShape& shape, const std::vector<float>& x, Slice in, Slice out, int version,
                      int argmax_offset = 0) {
  DeviceBuffer<float> dx(dev(), test::widen(x, input_pixels(shape), shape.c, in, 0.0f));
  DeviceBuffer<float> dy(dev(), output_pixels(shape) * out.stride);
  DeviceBuffer<uint8_t> dargmax(dev(), output_pixels(shape) * shape.c + argmax_offset);
  dy.poison();
  dargmax.poison();
  MaxPool2d<kDevice>::forward(shape, dx.data() + in.offset, in.stride, dy.data() + out.offset, out.stride,
                              dargmax.data() + argmax_offset, {}, version);
  const auto wide = dy.download();
  CHECK(test::outside_untouched(wide, output_pixels(shape), shape.c, out, NAN));
  const auto argmax = dargmax.download();
  return {test::narrow(wide, output_pixels(shape), shape.c, out), {argmax.begin() + argmax_offset, argmax.end()}};
}

bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  }
  return a.size() == b.size();
}

}  // namespace

TEST_CASE("max_pool2d kernels: forward equals the reference bit for bit, argmax included", "[max_pool2d]") {
  for (int version = 1; version <= MaxPool2d<kDevice>::versions; ++version) {
    for (const PoolShape& shape : shapes()) {
      const bool large = shape.c >= 64;
      for (Slice in : layouts(shape.c)) {
        for (Slice out : layouts(shape.c)) {
          if (large && (in.stride != out.stride)) continue;  // the model's shapes: fewer layouts
          INFO("version " << version << ", shape " << describe(shape) << ", strides " << in.stride << "/"
                          << out.stride);
          // Random values, and small integers: ties everywhere, which must go to the first maximum.
          for (const auto& x : {test::random_uniform(input_pixels(shape) * shape.c, 81 + shape.c),
                                test::random_integers(input_pixels(shape) * shape.c, 82 + shape.c, -2, 2)}) {
            const Pooled expected = reference_forward(shape, x);
            const Pooled got = kernel_forward(shape, x, in, out, version);
            CHECK(got.y == expected.y);
            CHECK(got.argmax == expected.argmax);
          }
        }
      }
    }
  }
}

TEST_CASE("max_pool2d kernels: NaN propagates and takes the argmax as PyTorch's does", "[max_pool2d]") {
  const PoolShape shape{2, 6, 4, 8};
  auto x = test::random_integers(input_pixels(shape) * shape.c, 83, -2, 2);
  for (size_t i = 0; i < x.size(); i += 7) x[i] = NAN;  // some windows get one NaN, some two
  const Pooled expected = reference_forward(shape, x);
  for (int version = 1; version <= MaxPool2d<kDevice>::versions; ++version) {
    INFO("version " << version);
    const Pooled got = kernel_forward(shape, x, {8, 0}, {8, 0}, version);
    CHECK(same_values(got.y, expected.y));
    CHECK(got.argmax == expected.argmax);
  }
}

TEST_CASE("max_pool2d kernels: version 2 falls back when argmax is not 4-byte aligned", "[max_pool2d]") {
  const PoolShape shape{1, 4, 4, 8};
  const auto x = test::random_integers(input_pixels(shape) * shape.c, 84, -2, 2);
  const Pooled expected = reference_forward(shape, x);
  const Pooled got = kernel_forward(shape, x, {8, 0}, {8, 0}, 2, /*argmax_offset=*/1);
  CHECK(got.y == expected.y);
  CHECK(got.argmax == expected.argmax);
}

TEST_CASE("max_pool2d kernels: backward equals the reference for beta 0 and 1", "[max_pool2d]") {
  for (int version = 1; version <= MaxPool2d<kDevice>::versions; ++version) {
    for (const PoolShape& shape : shapes()) {
      const bool large = shape.c >= 64;
      for (Slice layout : layouts(shape.c)) {
        for (float beta : {0.0f, 1.0f}) {
          for (bool integers : {false, true}) {
            if (large && (layout.offset == 3 || integers)) continue;
            INFO("version " << version << ", shape " << describe(shape) << ", stride " << layout.stride << ", beta "
                            << beta << (integers ? ", small integers" : ""));
            const int64_t in = input_pixels(shape), out = output_pixels(shape);
            const auto random = [&](size_t count, uint64_t seed) {
              return integers ? test::random_integers(count, seed) : test::random_uniform(count, seed);
            };
            // The argmax of a tied input, so every window position occurs.
            const auto argmax = reference_forward(shape, test::random_integers(in * shape.c, 85, -1, 1)).argmax;
            const auto dy = random(out * shape.c, 86);
            const auto prior = random(in * shape.c, 87);
            std::vector<double> expected = test::to_double(prior);
            cpu::max_pool2d_backward<double>(shape, test::to_double(dy).data(), shape.c, argmax.data(), beta,
                                             expected.data(), shape.c);

            DeviceBuffer<float> ddy(dev(), test::widen(dy, out, shape.c, layout, 0.0f));
            DeviceBuffer<uint8_t> dargmax(dev(), argmax);
            // beta = 0 must overwrite whatever is there, NaN included.
            DeviceBuffer<float> ddx(dev(), test::widen(beta == 0.0f ? std::vector<float>(prior.size(), NAN) : prior,
                                                       in, shape.c, layout, -7.0f));
            MaxPool2d<kDevice>::backward(shape, ddy.data() + layout.offset, layout.stride, dargmax.data(), beta,
                                         ddx.data() + layout.offset, layout.stride, {}, version);
            const auto wide = ddx.download();
            const auto got = test::narrow(wide, in, shape.c, layout);
            if (integers) {
              CHECK(test::to_double(got) == expected);  // sums of small integers are exact
            } else {
              CHECK(test::relative_error(got, expected) < 1e-5);
            }
            CHECK(test::outside_untouched(wide, in, shape.c, layout, -7.0f));
          }
        }
      }
    }
  }
}

TEST_CASE("max_pool2d kernels: the same inputs give the same bits", "[max_pool2d]") {
  const PoolShape shape{2, 7, 9, 12};
  const auto x = test::random_uniform(input_pixels(shape) * shape.c, 88);
  for (int version = 1; version <= MaxPool2d<kDevice>::versions; ++version) {
    const Pooled first = kernel_forward(shape, x, {12, 0}, {12, 0}, version);
    const Pooled second = kernel_forward(shape, x, {12, 0}, {12, 0}, version);
    CHECK(first.y == second.y);
    CHECK(first.argmax == second.argmax);
  }
}

TEST_CASE("max_pool2d kernels: an empty tensor launches nothing", "[max_pool2d]") {
  MaxPool2d<kDevice>::forward({0, 4, 4, 8}, static_cast<const float*>(nullptr), 8, nullptr, 8, nullptr, {});
  MaxPool2d<kDevice>::backward({1, 4, 4, 0}, static_cast<const float*>(nullptr), 0, nullptr, 0.0f, nullptr, 0, {});
}
