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

using Case = test::ConvCase;

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

}  // namespace

TEST_CASE("conv2d kernels: k = 1, 3 and 5, odd channel counts and image sizes, N = 1 and 2", "[conv2d]") {
  uint64_t seed = 1000;
  for (const Case& c : test::conv2d_odd_cases()) check(c, seed += 10);
}

TEST_CASE("conv2d kernels: inputs and outputs as channel slices of wider buffers", "[conv2d]") {
  uint64_t seed = 3000;
  for (const Case& c : test::conv2d_slice_cases()) check(c, seed += 10);
}

TEST_CASE("conv2d kernels: small-integer inputs give exactly the reference", "[conv2d]") {
  uint64_t seed = 4000;
  for (const Case& c : test::conv2d_integer_cases()) check(c, seed += 10);
}

TEST_CASE("conv2d kernels: every conv layer of the default U-Net at 16x16", "[conv2d]") {
  for (const Case& c : test::unet_conv_cases(16)) check(c, 5000 + c.shape.c_in);
}

TEST_CASE("conv2d kernels: the weight and bias gradients are the same bits on every run", "[conv2d]") {
  const Conv2dShape s = test::conv_shape(2, 24, 24, 64, 64, 3);  // 1152 pixels: several split-K chunks
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
