// conv2d's version 3 (TF32 tensor cores) against the reference at its rounding points,
// cpu::conv2d_{forward,backward_data,backward_weight}_tf32, on sim or cuda.
//
// Tolerance. The kernel's products of tf32 operands are exact in fp32; what remains is the order
// and precision of the K + 1 additions (forward: K = k*k*Cin products and the bias; backward_data:
// K = k*k*Cout products and beta times the prior dx). Summing n terms in
// fp32 is off by at most gamma_n * sum|term|, gamma_n = n u / (1 - n u); with u = 2^-23 (not 2^-24:
// the ISA leaves the mma's internal rounding open, and hardware truncates partial sums, which
// costs up to a whole unit) that bound holds for sim and GPU alike:
//     |y - y_ref| <= (K + 1) 2^-23 / (1 - (K + 1) 2^-23) * (sum_k |x_k w_k| + |b|)   per element
// (for backward_data |g_k w_k| and |beta dx_prior| in their places). backward_weight sums the P
// products of each weight (P = pixels) in chunks, then the chunks' partials in order, then beta
// dW: any chain of additions in that tree is at most P + 2 long, so n = P + 2 there.
// ReLU is 1-Lipschitz, so the bound survives it. Small integers are exact in tf32 and their sums
// exact in fp32: those cases must match bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "kernels/conv2d.h"
#include "kernels/rounding.h"
#include "kernels/tile_choice.h"
#include "models/unet_shapes.h"
#include "tests/kernels/bf16_test_util.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer;
using test::Slice;

namespace {

constexpr DeviceKind kDevice = DeviceKind::UNET_TEST_DEVICE;
Device& dev() { return device(kDevice); }
using Conv = Conv2d<kDevice>;

enum class Values { uniform, integers, tf32_ties };

struct Case {
  Conv2dShape shape;
  bool relu = false;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};  // channel slices of x and y; stride 0 is dense
  Values values = Values::uniform;
};

// tf32_ties: x = +-1 or +-2 times (1 + 2^-11), exactly halfway between two tf32 values, so
// cvt.rna moves every one of them (away from zero); weights and bias small integers. Every sum is
// then exact in fp32 both with and without the rounding, and the two differ.
std::vector<float> inputs(Values kind, size_t count, uint64_t seed, bool activations) {
  if (kind == Values::uniform) return test::random_uniform(count, seed);
  auto values = test::random_integers(count, seed);
  if (kind == Values::tf32_ties && activations) {
    for (float& v : values) v = (v == 0.0f ? 1.0f : std::copysign(std::fabs(v) > 1.5f ? 2.0f : 1.0f, v)) *
                                (1.0f + 1.0f / 2048);
  }
  return values;
}

std::vector<float> absolute(std::vector<float> values) {
  for (float& v : values) v = std::fabs(v);
  return values;
}

// The dense forward output of version 3.
std::vector<float> run_forward(const Case& c, const std::vector<float>& x, const std::vector<float>& weight,
                               const std::vector<float>& bias) {
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w;
  const Slice in = c.in.stride ? c.in : Slice{s.c_in, 0}, out = c.out.stride ? c.out : Slice{s.c_out, 0};
  // Inputs in their slices, NaN around them: a kernel that reads another channel fails.
  DeviceBuffer<float> d_x(dev(), test::widen(x, p, s.c_in, in, NAN));
  DeviceBuffer<float> d_weight(dev(), weight), d_bias(dev(), bias), d_y(dev(), p * out.stride);
  d_y.poison();
  Conv::forward(s, d_x.data() + in.offset, in.stride, d_weight.data(), c.bias ? d_bias.data() : nullptr, c.relu,
                d_y.data() + out.offset, out.stride, {}, Conv::tensor_core_version);
  const auto wide = d_y.download();
  CHECK(test::outside_untouched(wide, p, s.c_out, out, NAN));
  return test::narrow(wide, p, s.c_out, out);
}

// Every element of `out` within gamma_n * magnitude of `ref`, n the number of terms summed.
void check_bound(const std::vector<float>& out, const std::vector<double>& ref, const std::vector<double>& magnitude,
                 int n) {
  const double unit = std::ldexp(1.0, -23), gamma = n * unit / (1 - n * unit);
  int outside = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!(std::fabs(out[i] - ref[i]) <= gamma * magnitude[i])) {
      if (outside++ < 5) UNSCOPED_INFO("element " << i << ": " << out[i] << " against " << ref[i]);
    }
  }
  CHECK(outside == 0);
}

// backward_data of version 3 for beta 0 (over NaN) and 1, against the tf32 reference.
void check_backward_data(const Case& c, uint64_t seed, const std::vector<float>& weight,
                         const std::vector<float>& forward_output) {
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w;
  const Slice in = c.in.stride ? c.in : Slice{s.c_in, 0}, out = c.out.stride ? c.out : Slice{s.c_out, 0};
  const auto dy = inputs(c.values, p * s.c_out, seed + 4, true), prior = inputs(c.values, p * s.c_in, seed + 5, false);
  const float* mask = c.relu ? forward_output.data() : nullptr;
  // The gradient and the mask in the output's slice, NaN around them; the weights dense.
  DeviceBuffer<float> d_dy(dev(), test::widen(dy, p, s.c_out, out, NAN));
  DeviceBuffer<float> d_mask(dev(), test::widen(forward_output, p, s.c_out, out, NAN)), d_weight(dev(), weight);
  for (float beta : {0.0f, 1.0f}) {
    INFO("backward_data, beta " << beta);
    std::vector<double> dx_ref(p * s.c_in), magnitude(p * s.c_in);
    for (int64_t i = 0; i < p * s.c_in; ++i) {
      dx_ref[i] = prior[i];
      magnitude[i] = std::fabs(prior[i]);
    }
    cpu::conv2d_backward_data_tf32<double>(s, dy.data(), s.c_out, mask, s.c_out, weight.data(), beta, dx_ref.data(),
                                           s.c_in);
    cpu::conv2d_backward_data_tf32<double>(s, absolute(dy).data(), s.c_out, mask, s.c_out, absolute(weight).data(),
                                           beta, magnitude.data(), s.c_in);
    DeviceBuffer<float> d_dx(dev(), test::widen(beta == 0.0f ? std::vector<float>(prior.size(), NAN) : prior, p,
                                                s.c_in, in, -7.0f));
    Conv::backward_data(s, d_dy.data() + out.offset, out.stride, c.relu ? d_mask.data() + out.offset : nullptr,
                        out.stride, d_weight.data(), beta, d_dx.data() + in.offset, in.stride, {},
                        Conv::tensor_core_version);
    const auto wide = d_dx.download();
    CHECK(test::outside_untouched(wide, p, s.c_in, in, -7.0f));
    const auto dx = test::narrow(wide, p, s.c_in, in);
    if (c.values != Values::uniform) {
      CHECK(dx == test::to_float(dx_ref));
    } else {
      check_bound(dx, dx_ref, magnitude, s.k * s.k * s.c_out + 1);
    }
  }
}

// backward_weight of version 3 for beta 0 (over NaN) and 1, against the tf32 reference.
void check_backward_weight(const Case& c, uint64_t seed, const std::vector<float>& x,
                           const std::vector<float>& forward_output) {
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * s.k * s.k * s.c_in;
  const Slice in = c.in.stride ? c.in : Slice{s.c_in, 0}, out = c.out.stride ? c.out : Slice{s.c_out, 0};
  // With tf32 ties x carries them; g stays small integers, so that every product is exact.
  const auto dy = inputs(c.values, p * s.c_out, seed + 6, false), prior = inputs(c.values, weights, seed + 7, false);
  const float* mask = c.relu ? forward_output.data() : nullptr;
  DeviceBuffer<float> d_x(dev(), test::widen(x, p, s.c_in, in, NAN));
  DeviceBuffer<float> d_dy(dev(), test::widen(dy, p, s.c_out, out, NAN));
  DeviceBuffer<float> d_mask(dev(), test::widen(forward_output, p, s.c_out, out, NAN));
  for (float beta : {0.0f, 1.0f}) {
    INFO("backward_weight, beta " << beta);
    std::vector<double> dw_ref(prior.begin(), prior.end()), magnitude(weights);
    for (int64_t i = 0; i < weights; ++i) magnitude[i] = std::fabs(prior[i]);
    cpu::conv2d_backward_weight_tf32<double>(s, x.data(), s.c_in, dy.data(), s.c_out, mask, s.c_out, beta,
                                             dw_ref.data());
    cpu::conv2d_backward_weight_tf32<double>(s, absolute(x).data(), s.c_in, absolute(dy).data(), s.c_out, mask,
                                             s.c_out, beta, magnitude.data());
    DeviceBuffer<float> d_dw(dev(), beta == 0.0f ? std::vector<float>(weights, NAN) : prior);
    test::Workspace scratch(dev(), Conv::backward_weight_workspace(s, Conv::tensor_core_version));
    Conv::backward_weight(s, d_x.data() + in.offset, in.stride, d_dy.data() + out.offset, out.stride,
                          c.relu ? d_mask.data() + out.offset : nullptr, out.stride, beta, d_dw.data(), scratch.data(),
                          {}, Conv::tensor_core_version);
    const auto dw = d_dw.download();
    if (c.values != Values::uniform) {
      CHECK(dw == test::to_float(dw_ref));
    } else {
      check_bound(dw, dw_ref, magnitude, static_cast<int>(p) + 2);
    }
  }
}

void check(const Case& c, uint64_t seed) {
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * s.k * s.k * s.c_in;
  INFO("k " << s.k << ", " << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out
            << (c.relu ? ", relu" : "") << (c.bias ? "" : ", no bias") << ", in " << c.in.offset << "/" << c.in.stride
            << ", out " << c.out.offset << "/" << c.out.stride << ", values " << static_cast<int>(c.values));
  const auto x = inputs(c.values, p * s.c_in, seed + 1, true), weight = inputs(c.values, weights, seed + 2, false);
  const auto bias = inputs(c.values, s.c_out, seed + 3, false);
  const float* b = c.bias ? bias.data() : nullptr;
  std::vector<double> y_ref(p * s.c_out), magnitude(p * s.c_out);
  cpu::conv2d_forward_tf32(s, x.data(), s.c_in, weight.data(), b, c.relu, y_ref.data(), s.c_out);
  const auto abs_bias = absolute(bias);
  cpu::conv2d_forward_tf32(s, absolute(x).data(), s.c_in, absolute(weight).data(), c.bias ? abs_bias.data() : nullptr,
                           false, magnitude.data(), s.c_out);

  const auto y = run_forward(c, x, weight, bias);
  {
    INFO("forward");
    if (c.values != Values::uniform) {
      CHECK(y == test::to_float(y_ref));
    } else {
      check_bound(y, y_ref, magnitude, s.k * s.k * s.c_in + 1);
    }
  }
  // The ReLU mask is the float forward output of the reference, as in the version-2 tests.
  check_backward_data(c, seed, weight, test::to_float(y_ref));
  check_backward_weight(c, seed, x, test::to_float(y_ref));
}

// check() on each block tile of version 3 (kernels/tile_choice.h), pinned: the awkward shapes on
// both, where the model would pick the small tile for nearly all of them.
void check_each_tile(const Case& c, uint64_t seed) {
  for (MmaTile tile : {MmaTile::large, MmaTile::small}) {
    INFO((tile == MmaTile::large ? "128 x 64" : "64 x 64") << " block tile");
    const PinnedMmaTile pinned(tile);
    check(c, seed);
  }
}

Conv2dShape shape(int n, int h, int w, int c_in, int c_out, int k) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out, .k = k};
}

}  // namespace

TEST_CASE("conv2d v3 (tf32): odd sizes, channels not a multiple of the tile, N = 1 and 2", "[conv2d][tensor-core]") {
  const std::vector<Case> cases = {
      {shape(1, 5, 7, 3, 64, 3), true},         // the first layer: 3 channels, the 4-byte copy path
      {shape(2, 3, 9, 5, 3, 3)},                // fewer output channels than one mma tile
      {shape(2, 9, 11, 17, 33, 3), true},       // 198 pixels: a partial second block of pixels
      {shape(1, 7, 5, 33, 17, 3), false, false},
      {shape(2, 5, 6, 64, 64, 3), true},        // 16-byte copies, one full N tile
      {shape(1, 4, 3, 64, 129, 3)},             // a partial third N tile
      {shape(2, 1, 1, 20, 17, 3), true},        // 1x1 images: every tap but the centre is padding
      {shape(1, 6, 6, 36, 68, 1)},              // k = 1; Cin = 36: a partial K-step of 16
      {shape(2, 4, 5, 64, 1, 1)},               // the head's shape: one output channel
      {shape(1, 6, 7, 8, 17, 5), true},         // k = 5
      {shape(2, 17, 19, 16, 24, 3), true},      // 646 pixels: six blocks of pixels
  };
  uint64_t seed = 100;
  for (const Case& c : cases) check_each_tile(c, seed += 10);
}

TEST_CASE("conv2d v3 (tf32): inputs and outputs as channel slices of wider buffers", "[conv2d][tensor-core]") {
  check_each_tile({shape(2, 5, 7, 64, 64, 3), true, true, Slice{128, 64}, Slice{128, 0}}, 200);  // 16-byte copies
  check_each_tile({shape(1, 6, 5, 64, 68, 3), true, true, Slice{71, 3}, Slice{69, 1}}, 210);     // 4-byte copies
  check_each_tile({shape(2, 3, 5, 17, 33, 3), false, true, Slice{20, 2}, Slice{40, 7}}, 220);
}

TEST_CASE("conv2d v3 (tf32): small integers and tf32 ties give exactly the reference", "[conv2d][tensor-core]") {
  const std::vector<Case> cases = {
      {shape(2, 5, 7, 3, 64, 3), true, true, {}, {}, Values::integers},
      {shape(1, 7, 6, 64, 64, 3), true, true, {}, {}, Values::integers},
      {shape(1, 4, 5, 33, 5, 3), true, true, Slice{40, 3}, Slice{9, 4}, Values::integers},
      {shape(1, 3, 4, 64, 129, 3), false, false, {}, {}, Values::integers},
      {shape(2, 5, 6, 32, 40, 3), false, true, {}, {}, Values::tf32_ties},
      {shape(1, 4, 7, 5, 9, 3), true, true, {}, {}, Values::tf32_ties},
  };
  uint64_t seed = 300;
  for (const Case& c : cases) check_each_tile(c, seed += 10);
}

TEST_CASE("conv2d v3 (tf32): the operands really are rounded to tf32", "[conv2d][tensor-core]") {
  // At tf32 ties every operand moves by 2^-11 relative: the exact fp32 convolution is not the result.
  const Case c{shape(2, 5, 6, 32, 40, 3), false, true, {}, {}, Values::tf32_ties};
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w;
  const auto x = inputs(c.values, p * s.c_in, 1, true), weight = inputs(c.values, s.c_out * 9 * s.c_in, 2, false);
  const auto bias = inputs(c.values, s.c_out, 3, false);
  std::vector<float> y_fp32(p * s.c_out);
  cpu::conv2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), false, y_fp32.data(), s.c_out);
  const auto y = run_forward(c, x, weight, bias);
  int differ = 0;
  for (size_t i = 0; i < y.size(); ++i) differ += y[i] != y_fp32[i];
  CHECK(differ > static_cast<int>(y.size()) / 2);
}

TEST_CASE("conv2d v3 (tf32): every conv layer of the default U-Net at 16x16", "[conv2d][tensor-core]") {
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 1, 16, 16)) {
    if (layer.kind != LayerKind::conv3x3 && layer.kind != LayerKind::conv1x1) continue;
    INFO(layer.name);
    const bool head = layer.kind == LayerKind::conv1x1;
    check({shape(1, layer.h, layer.w, layer.c_in, layer.c_out, head ? 1 : 3), !head}, 400 + layer.c_in);
  }
}

TEST_CASE("conv2d v3 (tf32): the weight gradient is the same bits on every run", "[conv2d][tensor-core]") {
  const Conv2dShape s = shape(2, 24, 24, 16, 24, 3);  // 1152 pixels: several chunks
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * 9 * s.c_in;
  DeviceBuffer<float> x(dev(), test::random_uniform(p * s.c_in, 1)), dy(dev(), test::random_uniform(p * s.c_out, 2));
  test::Workspace scratch(dev(), Conv::backward_weight_workspace(s, Conv::tensor_core_version));
  CHECK(Conv::backward_weight_workspace(s, Conv::tensor_core_version) > weights * sizeof(float));  // split
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float> dweight(dev(), weights);
    Conv::backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, nullptr, 0, 0.0f, dweight.data(), scratch.data(),
                          {}, Conv::tensor_core_version);
    if (run == 0) first = dweight.download();
    else CHECK(dweight.download() == first);
  }
}

TEST_CASE("conv2d v3: both block tiles give the same bits, in tf32 and bf16", "[conv2d][tensor-core]") {
  // Each output's K-loop is the same on either tile, so the tile may change no bit (what lets
  // kernels/tile_choice.h pick per shape without changing results).
  const Conv2dShape s = shape(2, 9, 11, 24, 40, 3);  // 198 pixels: partial tiles of both heights
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * 9 * s.c_in;
  const auto x = test::random_uniform(p * s.c_in, 1), weight = test::random_uniform(weights, 2);
  const auto dy = test::random_uniform(p * s.c_out, 3), relu_output = test::random_uniform(p * s.c_out, 4);
  DeviceBuffer<float> d_x(dev(), x), d_w(dev(), weight), d_dy(dev(), dy), d_mask(dev(), relu_output);
  DeviceBuffer<bf16> h_x(dev(), test::rounded(x)), h_w(dev(), test::rounded(weight)), h_dy(dev(), test::rounded(dy));
  DeviceBuffer<bf16> h_mask(dev(), test::rounded(relu_output));
  // forward and backward_data masked by a ReLU output (the shape of dy) on one tile, in tf32 then
  // bf16 (as floats).
  const auto run = [&]() {
    DeviceBuffer<float> y(dev(), p * s.c_out), dx(dev(), p * s.c_in);
    DeviceBuffer<bf16> y_bf16(dev(), p * s.c_out), dx_bf16(dev(), p * s.c_in);
    Conv::forward(s, d_x.data(), s.c_in, d_w.data(), nullptr, true, y.data(), s.c_out, {}, Conv::tensor_core_version);
    Conv::backward_data(s, d_dy.data(), s.c_out, d_mask.data(), s.c_out, d_w.data(), 0.0f, dx.data(), s.c_in, {},
                        Conv::tensor_core_version);
    Conv::forward(s, h_x.data(), s.c_in, h_w.data(), nullptr, true, y_bf16.data(), s.c_out, {}, 3);
    Conv::backward_data(s, h_dy.data(), s.c_out, h_mask.data(), s.c_out, h_w.data(), 0.0f, dx_bf16.data(), s.c_in, {},
                        3);
    std::vector<float> all = y.download();
    for (const auto& more : {dx.download(), test::widened(y_bf16.download()), test::widened(dx_bf16.download())}) {
      all.insert(all.end(), more.begin(), more.end());
    }
    return all;
  };
  std::vector<float> large, small;
  {
    const PinnedMmaTile pinned(MmaTile::large);
    large = run();
  }
  {
    const PinnedMmaTile pinned(MmaTile::small);
    small = run();
  }
  CHECK(std::memcmp(large.data(), small.data(), large.size() * sizeof(float)) == 0);
}
