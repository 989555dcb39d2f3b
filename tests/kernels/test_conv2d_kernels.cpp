// conv2d's CUDA kernels (every version) against the CPU reference in double, on sim or cuda.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "kernels/conv2d.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

using Conv = Conv2d<kDevice>;

struct Case {
  Conv2dShape shape;
  bool relu = false;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};  // channel slices of x/dx and of y/dy/relu_output; stride 0 is dense
  bool integers = false;      // small integers: every result is exact and must match bit for bit
  Slice mask{0, 0};           // relu_output's own slice, where it differs from dy's
};

// Runs every pass of every version on one case and compares each with the reference.
void check(const Case& c, uint64_t seed) {
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w;
  const int64_t weights = int64_t{s.c_out} * s.k * s.k * s.c_in;
  const Slice in = c.in.stride ? c.in : Slice{s.c_in, 0}, out = c.out.stride ? c.out : Slice{s.c_out, 0};
  const Slice mask_layout = c.mask.stride ? c.mask : out;
  INFO("k " << s.k << ", " << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out
            << (c.relu ? ", relu" : "") << (c.bias ? "" : ", no bias") << ", in " << in.offset << "/" << in.stride
            << ", out " << out.offset << "/" << out.stride << ", relu_output " << mask_layout.offset << "/"
            << mask_layout.stride << (c.integers ? ", integers" : ""));
  auto values = [&](int64_t count, uint64_t offset) {
    return c.integers ? test::random_integers(count, seed + offset) : test::random_uniform(count, seed + offset);
  };
  const auto x = values(p * s.c_in, 1), weight = values(weights, 2), bias = values(s.c_out, 3);
  const auto dy = values(p * s.c_out, 4);
  const auto prior_dx = values(p * s.c_in, 5), prior_dweight = values(weights, 6), prior_dbias = values(s.c_out, 7);

  // The reference in double. The ReLU mask is the float forward output, as the kernels see it.
  const auto xd = test::to_double(x), weightd = test::to_double(weight), dyd = test::to_double(dy);
  const auto biasd = test::to_double(bias);
  std::vector<double> y_ref(p * s.c_out), dx_ref(p * s.c_in), dweight_ref(weights), dbias_ref(s.c_out);
  cpu::conv2d_forward(s, xd.data(), s.c_in, weightd.data(), c.bias ? biasd.data() : nullptr, c.relu, y_ref.data(),
                      s.c_out);
  const auto y_float = test::to_float(y_ref);
  const auto maskd = test::to_double(y_float);
  const double* mask = c.relu ? maskd.data() : nullptr;
  cpu::conv2d_backward_data(s, dyd.data(), s.c_out, mask, s.c_out, weightd.data(), 0.0, dx_ref.data(), s.c_in);
  cpu::conv2d_backward_weight(s, xd.data(), s.c_in, dyd.data(), s.c_out, mask, s.c_out, 0.0, dweight_ref.data());
  cpu::conv2d_backward_bias(s, dyd.data(), s.c_out, mask, s.c_out, 0.0, dbias_ref.data());

  // Inputs in their slices, NaN around them: a kernel that reads another channel fails.
  DeviceBuffer<float> d_x(dev(), test::widen(x, p, s.c_in, in, NAN));
  DeviceBuffer<float> d_dy(dev(), test::widen(dy, p, s.c_out, out, NAN));
  DeviceBuffer<float> d_mask(dev(), test::widen(y_float, p, s.c_out, mask_layout, NAN));
  DeviceBuffer<float> d_weight(dev(), weight), d_bias(dev(), bias);
  const float* x_slice = d_x.data() + in.offset;
  const float* dy_slice = d_dy.data() + out.offset;
  const float* mask_slice = c.relu ? d_mask.data() + mask_layout.offset : nullptr;

  for (int version = 1; version <= Conv::versions; ++version) {
    INFO("version " << version);
    {
      DeviceBuffer<float> d_y(dev(), p * out.stride);
      d_y.poison();
      Conv::forward(s, x_slice, in.stride, d_weight.data(), c.bias ? d_bias.data() : nullptr, c.relu,
                    d_y.data() + out.offset, out.stride, {}, version);
      const auto wide = d_y.download();
      INFO("forward");
      test::compare(test::narrow(wide, p, s.c_out, out), y_ref, c.integers);
      CHECK(test::outside_untouched(wide, p, s.c_out, out, NAN));
    }
    for (float beta : {0.0f, 1.0f}) {
      INFO("beta " << beta);
      // beta = 0 must overwrite whatever is there, NaN included.
      const auto prior = beta == 0.0f ? std::vector<float>(prior_dx.size(), NAN) : prior_dx;
      DeviceBuffer<float> d_dx(dev(), test::widen(prior, p, s.c_in, in, -7.0f));
      Conv::backward_data(s, dy_slice, out.stride, mask_slice, mask_layout.stride, d_weight.data(), beta,
                          d_dx.data() + in.offset, in.stride, {}, version);
      const auto wide = d_dx.download();
      INFO("backward_data");
      test::compare(test::narrow(wide, p, s.c_in, in), beta == 0.0f ? dx_ref : test::plus(dx_ref, prior_dx), c.integers);
      CHECK(test::outside_untouched(wide, p, s.c_in, in, -7.0f));
    }
    for (float beta : {0.0f, 1.0f}) {
      INFO("beta " << beta << ", backward_weight");
      DeviceBuffer<float> d_dweight(dev(), beta == 0.0f ? std::vector<float>(weights, NAN) : prior_dweight);
      test::Workspace scratch(dev(), Conv::backward_weight_workspace(s, version));
      Conv::backward_weight(s, x_slice, in.stride, dy_slice, out.stride, mask_slice, mask_layout.stride, beta,
                            d_dweight.data(), scratch.data(), {}, version);
      test::compare(d_dweight.download(), beta == 0.0f ? dweight_ref : test::plus(dweight_ref, prior_dweight), c.integers);
    }
  }
  for (float beta : {0.0f, 1.0f}) {
    INFO("beta " << beta << ", backward_bias");
    DeviceBuffer<float> d_dbias(dev(), beta == 0.0f ? std::vector<float>(s.c_out, NAN) : prior_dbias);
    test::Workspace scratch(dev(), Conv::backward_bias_workspace(s));
    Conv::backward_bias(s, dy_slice, out.stride, mask_slice, mask_layout.stride, beta, d_dbias.data(), scratch.data(),
                        {});
    test::compare(d_dbias.download(), beta == 0.0f ? dbias_ref : test::plus(dbias_ref, prior_dbias), c.integers);
  }
}

Conv2dShape shape(int n, int h, int w, int c_in, int c_out, int k) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out, .k = k};
}

}  // namespace

TEST_CASE("conv2d kernels: k = 1 and 3, odd channel counts and image sizes, N = 1 and 2", "[conv2d]") {
  const std::vector<Case> cases = {
      {shape(1, 5, 7, 3, 5, 1)},
      {shape(2, 3, 9, 17, 33, 1), true},
      {shape(2, 4, 5, 64, 1, 1)},  // the output head: one output channel
      {shape(1, 6, 6, 33, 64, 1), true, false},
      {shape(1, 5, 7, 3, 64, 3), true},  // the first layer: three input channels
      {shape(2, 3, 9, 5, 3, 3)},
      {shape(2, 9, 11, 17, 33, 3), true},  // 198 pixels: a partial second block of pixels
      {shape(1, 7, 5, 33, 17, 3), false, false},
      {shape(2, 5, 6, 64, 64, 3), true},
      {shape(1, 4, 3, 64, 129, 3)},  // a partial 128-wide tile of output channels
      {shape(2, 1, 1, 5, 17, 3), true},  // 1x1 images: every tap but the centre is padding
      {shape(1, 1, 1, 64, 64, 3)},
      {shape(2, 3, 1, 17, 5, 3), true},
      {shape(2, 17, 19, 17, 33, 3), true},  // 646 pixels: the weight gradient's pixels in several chunks
      {shape(1, 23, 25, 3, 5, 3)},          // the same for the few-output-channel kernels
  };
  uint64_t seed = 1000;
  for (const Case& c : cases) check(c, seed += 10);
}

TEST_CASE("conv2d kernels: odd k in general (k = 5)", "[conv2d]") {
  check({shape(1, 6, 7, 5, 17, 5), true}, 2000);
  check({shape(1, 4, 9, 17, 3, 5)}, 2010);
}

TEST_CASE("conv2d kernels: inputs and outputs as channel slices of wider buffers", "[conv2d]") {
  // The decoder's first conv reads a concat buffer, and an encoder conv writes into one: aligned
  // slices (float4 paths) and unaligned ones (scalar paths).
  check({shape(2, 5, 7, 64, 64, 3), true, true, Slice{128, 64}, Slice{128, 0}}, 3000);
  check({shape(1, 6, 5, 64, 68, 3), true, true, Slice{71, 3}, Slice{69, 1}}, 3010);
  check({shape(2, 3, 5, 17, 33, 3), false, true, Slice{20, 2}, Slice{40, 7}}, 3020);
  check({shape(1, 5, 5, 64, 1, 1), false, true, Slice{128, 64}, Slice{4, 3}}, 3030);
  check({shape(2, 4, 4, 33, 5, 3), true, true, Slice{40, 5}, Slice{8, 2}}, 3040);
  // The forward wrote y into a concat buffer; its gradient dy arrives dense.
  check({shape(2, 5, 7, 64, 64, 3), true, true, {}, {}, false, Slice{128, 64}}, 3050);
  check({shape(1, 5, 6, 17, 36, 3), true, true, {}, Slice{40, 4}, false, Slice{37, 1}}, 3060);
}

TEST_CASE("conv2d kernels: small-integer inputs give exactly the reference", "[conv2d]") {
  const std::vector<Case> cases = {
      {shape(2, 5, 7, 3, 64, 3), true, true, {}, {}, true},
      {shape(1, 7, 6, 64, 64, 3), true, true, {}, {}, true},
      {shape(2, 3, 5, 17, 33, 3), false, true, {}, {}, true},
      {shape(2, 4, 6, 64, 1, 1), false, true, {}, {}, true},
      {shape(1, 4, 5, 33, 5, 3), true, true, Slice{40, 3}, Slice{9, 4}, true},
      {shape(1, 3, 4, 64, 129, 3), false, false, {}, {}, true},
  };
  uint64_t seed = 4000;
  for (const Case& c : cases) check(c, seed += 10);
}

TEST_CASE("conv2d kernels: every conv layer of the default U-Net at 16x16", "[conv2d]") {
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 2, 16, 16)) {
    if (layer.kind != LayerKind::conv3x3 && layer.kind != LayerKind::conv1x1) continue;
    INFO(layer.name);
    const bool head = layer.kind == LayerKind::conv1x1;
    // Batch 2 where the layer is small enough for the sim device to run quickly.
    const int batch = layer.c_in * layer.c_out > 64 * 64 ? 1 : 2;
    check({shape(batch, layer.h, layer.w, layer.c_in, layer.c_out, head ? 1 : 3), !head}, 5000 + layer.c_in);
  }
}

TEST_CASE("conv2d kernels: the weight and bias gradients are the same bits on every run", "[conv2d]") {
  const Conv2dShape s = shape(2, 24, 24, 64, 64, 3);  // 1152 pixels: several split-K chunks
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * 9 * s.c_in;
  DeviceBuffer<float> x(dev(), test::random_uniform(p * s.c_in, 1)), dy(dev(), test::random_uniform(p * s.c_out, 2));
  std::vector<float> first_weight, first_bias;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float> dweight(dev(), weights), dbias(dev(), s.c_out);
    test::Workspace weight_scratch(dev(), Conv::backward_weight_workspace(s));
    test::Workspace bias_scratch(dev(), Conv::backward_bias_workspace(s));
    Conv::backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, nullptr, 0, 0.0f, dweight.data(),
                          weight_scratch.data(), {});
    Conv::backward_bias(s, dy.data(), s.c_out, nullptr, 0, 0.0f, dbias.data(), bias_scratch.data(), {});
    if (run == 0) {
      first_weight = dweight.download();
      first_bias = dbias.download();
    } else {
      CHECK(dweight.download() == first_weight);
      CHECK(dbias.download() == first_bias);
    }
  }
  CHECK(Conv::backward_weight_workspace(s, 1) == 0);
  CHECK(Conv::backward_weight_workspace(s) > 0);  // version 2 splits the pixels
}
