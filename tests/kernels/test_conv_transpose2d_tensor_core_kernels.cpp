// conv_transpose2d in reduced precision against the references at the kernels' rounding points:
// version 3 (TF32 tensor cores, the fp32 overloads) against cpu::conv_transpose2d_*_tf32, and the
// bf16 overloads (every version, on sim or cuda, and the cpu device's) against
// cpu::conv_transpose2d_*_bf16, on sim or cuda.
//
// Tolerance. The products of tf32 or bf16 operands are exact in fp32; what remains is the order and
// precision of the n additions of each output: forward n = Cin + 1 (the products and the bias),
// backward_data n = 4 Cout + 1 (the products of the four taps and beta times the prior dx),
// backward_weight n = P + 2 (P = input pixels: any chain of additions in the split-K tree of chunks,
// then their partials in order, then beta dW), backward_bias n = 4 P + 1. Summing n terms in fp32 is
// off by at most e = gamma_n * sum|term|, gamma_n = n u / (1 - n u), with u = 2^-23 rather than
// 2^-24 because the ISA leaves the mma's internal rounding open and hardware truncates partial sums
// (a whole unit): that bound holds for sim and GPU alike. A bf16 output s' = bf16(s_fp32) adds one
// rounding to nearest, at most 2^-8 |s_fp32| <= 2^-8 (|s| + e), so there
//     |out - ref| <= e + 2^-8 (|ref| + e)                                         per element.
// Small integers are exact in tf32 and bf16 and their sums exact in fp32, so those cases must match
// bit for bit (a bf16 output: the reference rounded once to bf16, as the kernel rounds its exact sum).
#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>

#include "kernels/conv_transpose2d.h"
#include "kernels/rounding.h"
#include "kernels/tile_choice.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::Slice, test::dev, test::kDevice;

namespace {

using Up = ConvTranspose2d<kDevice>;

enum class Values { uniform, integers, ties };

struct Case {
  ConvTranspose2dShape shape;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};  // channel slices of x/dx and of y/dy; stride 0 is dense
  Values values = Values::uniform;
};

// ties: activations +-1 or +-2 times (1 + 2^-11), exactly halfway between two tf32 values (cvt.rna
// moves each away from zero), weights small integers: every sum is exact with and without the
// rounding, and the two differ. For bf16 every input is first rounded to bf16 (what a bf16 tensor holds).
std::vector<float> inputs(Values kind, size_t count, uint64_t seed, bool activations) {
  if (kind == Values::uniform) return test::random_uniform(count, seed);
  auto values = test::random_integers(count, seed);
  if (kind == Values::ties && activations) {
    for (float& v : values) {
      v = (v == 0.0f ? 1.0f : std::copysign(std::fabs(v) > 1.5f ? 2.0f : 1.0f, v)) * (1.0f + 1.0f / 2048);
    }
  }
  return values;
}

std::vector<float> absolute(std::vector<float> values) {
  for (float& v : values) v = std::fabs(v);
  return values;
}

std::vector<bf16> to_bf16(const std::vector<float>& values) {
  std::vector<bf16> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = unet::to_bf16(values[i]);
  return out;
}
std::vector<float> widen_bf16(const std::vector<bf16>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = to_float(values[i]);
  return out;
}
std::vector<float> round_bf16(const std::vector<float>& values) { return widen_bf16(to_bf16(values)); }
std::vector<float> round_bf16(const std::vector<double>& values) { return round_bf16(test::to_float(values)); }

// Every element of `out` within the bound above of `ref`; `output_unit` 2^-8 for a bf16 output, 0
// for fp32.
void check_bound(const std::vector<float>& out, const std::vector<double>& ref, const std::vector<double>& magnitude,
                 int64_t n, double output_unit) {
  const double unit = std::ldexp(1.0, -23), gamma = n * unit / (1 - n * unit);
  int outside = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double e = gamma * magnitude[i];
    if (!(std::fabs(out[i] - ref[i]) <= e + output_unit * (std::fabs(ref[i]) + e))) {
      if (outside++ < 5) UNSCOPED_INFO("element " << i << ": " << out[i] << " against " << ref[i]);
    }
  }
  CHECK(outside == 0);
}

// The tensors of one case, dense, as floats (bf16-representable where `bf16` asks).
struct Tensors {
  std::vector<float> x, weight, bias, dy, prior_dx, prior_dweight, prior_dbias;
};

Tensors tensors(const Case& c, uint64_t seed, bool bf16) {
  const ConvTranspose2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_in} * 4 * s.c_out;
  Tensors t;
  t.x = inputs(c.values, p * s.c_in, seed + 1, true);
  t.weight = inputs(c.values, weights, seed + 2, false);
  t.bias = inputs(c.values, s.c_out, seed + 3, false);
  // With ties dy carries them for backward_data; backward_weight pairs them with x, so keep dy integer there.
  t.dy = inputs(c.values, 4 * p * s.c_out, seed + 4, true);
  t.prior_dx = inputs(c.values, p * s.c_in, seed + 5, false);
  t.prior_dweight = inputs(c.values, weights, seed + 6, false);
  t.prior_dbias = inputs(c.values, s.c_out, seed + 7, false);
  if (bf16) {
    for (auto* v : {&t.x, &t.weight, &t.dy, &t.prior_dx}) *v = round_bf16(*v);
  }
  return t;
}

std::string describe(const Case& c) {
  const ConvTranspose2dShape& s = c.shape;
  std::ostringstream text;
  text << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out << (c.bias ? "" : ", no bias")
       << ", in " << c.in.offset << "/" << c.in.stride << ", out " << c.out.offset << "/" << c.out.stride
       << ", values " << static_cast<int>(c.values);
  return text.str();
}

Slice dense_or(Slice slice, int channels) { return slice.stride ? slice : Slice{channels, 0}; }

// ---------------------------------------------------------------------------------------------
// TF32: version 3 of the fp32 overloads

void check_tf32(const Case& c, uint64_t seed) {
  const ConvTranspose2dShape& s = c.shape;
  INFO("tf32, " << describe(c));
  const int64_t p = int64_t{s.n} * s.h * s.w, q = 4 * p, weights = int64_t{s.c_in} * 4 * s.c_out;
  const Slice in = dense_or(c.in, s.c_in), out = dense_or(c.out, s.c_out);
  const Tensors t = tensors(c, seed, false);
  const bool exact = c.values != Values::uniform;
  const float* bias = c.bias ? t.bias.data() : nullptr;
  const auto abs_bias = absolute(t.bias);
  // Inputs in their slices, NaN around them: a kernel that reads another channel fails.
  DeviceBuffer<float> d_x(dev(), test::widen(t.x, p, s.c_in, in, NAN));
  DeviceBuffer<float> d_dy(dev(), test::widen(t.dy, q, s.c_out, out, NAN));
  DeviceBuffer<float> d_weight(dev(), t.weight), d_bias(dev(), t.bias);
  {
    INFO("forward");
    std::vector<double> ref(q * s.c_out), magnitude(q * s.c_out);
    cpu::conv_transpose2d_forward_tf32(s, t.x.data(), s.c_in, t.weight.data(), bias, ref.data(), s.c_out);
    cpu::conv_transpose2d_forward_tf32(s, absolute(t.x).data(), s.c_in, absolute(t.weight).data(),
                                       c.bias ? abs_bias.data() : nullptr, magnitude.data(), s.c_out);
    DeviceBuffer<float> d_y(dev(), q * out.stride);
    d_y.poison();
    Up::forward(s, d_x.data() + in.offset, in.stride, d_weight.data(), c.bias ? d_bias.data() : nullptr,
                d_y.data() + out.offset, out.stride, {}, Up::tensor_core_version);
    const auto wide = d_y.download();
    CHECK(test::outside_untouched(wide, q, s.c_out, out, NAN));
    const auto y = test::narrow(wide, q, s.c_out, out);
    if (exact) CHECK(y == test::to_float(ref));
    else check_bound(y, ref, magnitude, s.c_in + 1, 0);
  }
  for (float beta : {0.0f, 1.0f}) {
    INFO("backward_data, beta " << beta);
    std::vector<double> ref(t.prior_dx.begin(), t.prior_dx.end()), magnitude(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) magnitude[i] = std::fabs(ref[i]);
    cpu::conv_transpose2d_backward_data_tf32<double>(s, t.dy.data(), s.c_out, t.weight.data(), beta, ref.data(),
                                                     s.c_in);
    cpu::conv_transpose2d_backward_data_tf32<double>(s, absolute(t.dy).data(), s.c_out, absolute(t.weight).data(),
                                                     beta, magnitude.data(), s.c_in);
    const auto prior = beta == 0.0f ? std::vector<float>(t.prior_dx.size(), NAN) : t.prior_dx;
    DeviceBuffer<float> d_dx(dev(), test::widen(prior, p, s.c_in, in, -7.0f));
    Up::backward_data(s, d_dy.data() + out.offset, out.stride, d_weight.data(), beta, d_dx.data() + in.offset,
                      in.stride, {}, Up::tensor_core_version);
    const auto wide = d_dx.download();
    CHECK(test::outside_untouched(wide, p, s.c_in, in, -7.0f));
    const auto dx = test::narrow(wide, p, s.c_in, in);
    if (exact) CHECK(dx == test::to_float(ref));
    else check_bound(dx, ref, magnitude, 4 * s.c_out + 1, 0);
  }
  // With ties, x carries them and dy must not (a product of two ties is not exact in fp32).
  const auto dy_w = c.values == Values::ties ? inputs(Values::integers, q * s.c_out, seed + 8, false) : t.dy;
  DeviceBuffer<float> d_dy_w(dev(), test::widen(dy_w, q, s.c_out, out, NAN));
  for (float beta : {0.0f, 1.0f}) {
    INFO("backward_weight, beta " << beta);
    std::vector<double> ref(t.prior_dweight.begin(), t.prior_dweight.end()), magnitude(weights);
    for (int64_t i = 0; i < weights; ++i) magnitude[i] = std::fabs(ref[i]);
    cpu::conv_transpose2d_backward_weight_tf32<double>(s, t.x.data(), s.c_in, dy_w.data(), s.c_out, beta, ref.data());
    cpu::conv_transpose2d_backward_weight_tf32<double>(s, absolute(t.x).data(), s.c_in, absolute(dy_w).data(),
                                                       s.c_out, beta, magnitude.data());
    DeviceBuffer<float> d_dw(dev(), beta == 0.0f ? std::vector<float>(weights, NAN) : t.prior_dweight);
    test::Workspace scratch(dev(), Up::backward_weight_workspace(s, Up::tensor_core_version));
    Up::backward_weight(s, d_x.data() + in.offset, in.stride, d_dy_w.data() + out.offset, out.stride, beta,
                        d_dw.data(), scratch.data(), {}, Up::tensor_core_version);
    const auto dw = d_dw.download();
    if (exact) CHECK(dw == test::to_float(ref));
    else check_bound(dw, ref, magnitude, p + 2, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// bf16: the bf16 overloads on device D at `version`

template <DeviceKind D>
void check_bf16(const Case& c, uint64_t seed, int version) {
  using Op = ConvTranspose2d<D>;
  Device& device = unet::device(D);
  const ConvTranspose2dShape& s = c.shape;
  INFO("bf16 on " << device_name(D) << ", version " << version << ", " << describe(c));
  const int64_t p = int64_t{s.n} * s.h * s.w, q = 4 * p, weights = int64_t{s.c_in} * 4 * s.c_out;
  const Slice in = dense_or(c.in, s.c_in), out = dense_or(c.out, s.c_out);
  const Tensors t = tensors(c, seed, true);
  const bool exact = c.values != Values::uniform;
  const float* bias = c.bias ? t.bias.data() : nullptr;
  const auto abs_bias = absolute(t.bias);
  const auto x = to_bf16(t.x), weight = to_bf16(t.weight), dy = to_bf16(t.dy);
  // Inputs in their slices, NaN around them: a kernel that reads another channel fails.
  DeviceBuffer<bf16> d_x(device, to_bf16(test::widen(t.x, p, s.c_in, in, NAN)));
  DeviceBuffer<bf16> d_dy(device, to_bf16(test::widen(t.dy, q, s.c_out, out, NAN)));
  DeviceBuffer<bf16> d_weight(device, weight);
  DeviceBuffer<float> d_bias(device, t.bias);
  {
    INFO("forward");
    std::vector<double> ref(q * s.c_out), magnitude(q * s.c_out);
    cpu::conv_transpose2d_forward_bf16(s, x.data(), s.c_in, weight.data(), bias, ref.data(), s.c_out);
    cpu::conv_transpose2d_forward_bf16(s, to_bf16(absolute(t.x)).data(), s.c_in, to_bf16(absolute(t.weight)).data(),
                                       c.bias ? abs_bias.data() : nullptr, magnitude.data(), s.c_out);
    DeviceBuffer<bf16> d_y(device, q * out.stride);
    d_y.poison();
    Op::forward(s, d_x.data() + in.offset, in.stride, d_weight.data(), c.bias ? d_bias.data() : nullptr,
                d_y.data() + out.offset, out.stride, {}, version);
    const auto wide = widen_bf16(d_y.download());
    CHECK(test::outside_untouched(wide, q, s.c_out, out, NAN));
    const auto y = test::narrow(wide, q, s.c_out, out);
    if (exact) CHECK(y == round_bf16(ref));
    else check_bound(y, ref, magnitude, s.c_in + 1, std::ldexp(1.0, -8));
  }
  for (float beta : {0.0f, 1.0f}) {
    INFO("backward_data, beta " << beta);
    std::vector<double> ref(t.prior_dx.begin(), t.prior_dx.end()), magnitude(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) magnitude[i] = std::fabs(ref[i]);
    cpu::conv_transpose2d_backward_data_bf16<double>(s, dy.data(), s.c_out, weight.data(), beta, ref.data(), s.c_in);
    cpu::conv_transpose2d_backward_data_bf16<double>(s, to_bf16(absolute(t.dy)).data(), s.c_out,
                                                     to_bf16(absolute(t.weight)).data(), beta, magnitude.data(),
                                                     s.c_in);
    const auto prior = beta == 0.0f ? std::vector<float>(t.prior_dx.size(), NAN) : t.prior_dx;
    DeviceBuffer<bf16> d_dx(device, to_bf16(test::widen(prior, p, s.c_in, in, -7.0f)));
    Op::backward_data(s, d_dy.data() + out.offset, out.stride, d_weight.data(), beta, d_dx.data() + in.offset,
                      in.stride, {}, version);
    const auto wide = widen_bf16(d_dx.download());
    CHECK(test::outside_untouched(wide, p, s.c_in, in, -7.0f));
    const auto dx = test::narrow(wide, p, s.c_in, in);
    if (exact) CHECK(dx == round_bf16(ref));
    else check_bound(dx, ref, magnitude, 4 * s.c_out + 1, std::ldexp(1.0, -8));
  }
  const auto dy_w = c.values == Values::ties ? to_bf16(inputs(Values::integers, q * s.c_out, seed + 8, false)) : dy;
  DeviceBuffer<bf16> d_dy_w(device, to_bf16(test::widen(widen_bf16(dy_w), q, s.c_out, out, NAN)));
  for (float beta : {0.0f, 1.0f}) {
    INFO("backward_weight, beta " << beta);
    std::vector<double> ref(t.prior_dweight.begin(), t.prior_dweight.end()), magnitude(weights);
    for (int64_t i = 0; i < weights; ++i) magnitude[i] = std::fabs(ref[i]);
    cpu::conv_transpose2d_backward_weight_bf16<double>(s, x.data(), s.c_in, dy_w.data(), s.c_out, beta, ref.data());
    cpu::conv_transpose2d_backward_weight_bf16<double>(s, to_bf16(absolute(t.x)).data(), s.c_in,
                                                       to_bf16(absolute(widen_bf16(dy_w))).data(), s.c_out, beta,
                                                       magnitude.data());
    DeviceBuffer<float> d_dw(device, beta == 0.0f ? std::vector<float>(weights, NAN) : t.prior_dweight);
    test::Workspace scratch(device, Op::backward_weight_workspace(s, version));
    Op::backward_weight(s, d_x.data() + in.offset, in.stride, d_dy_w.data() + out.offset, out.stride, beta,
                        d_dw.data(), scratch.data(), {}, version);
    const auto dw = d_dw.download();
    if (exact) CHECK(dw == test::to_float(ref));
    else check_bound(dw, ref, magnitude, p + 2, 0);
  }
  for (float beta : {0.0f, 1.0f}) {
    INFO("backward_bias, beta " << beta);
    std::vector<double> ref(t.prior_dbias.begin(), t.prior_dbias.end()), magnitude(s.c_out);
    for (int o = 0; o < s.c_out; ++o) magnitude[o] = std::fabs(ref[o]);
    cpu::conv_transpose2d_backward_bias_bf16<double>(s, dy.data(), s.c_out, beta, ref.data());
    cpu::conv_transpose2d_backward_bias_bf16<double>(s, to_bf16(absolute(t.dy)).data(), s.c_out, beta,
                                                     magnitude.data());
    DeviceBuffer<float> d_db(device, beta == 0.0f ? std::vector<float>(s.c_out, NAN) : t.prior_dbias);
    test::Workspace scratch(device, Op::backward_bias_workspace(s));
    Op::backward_bias(s, d_dy.data() + out.offset, out.stride, beta, d_db.data(), scratch.data(), {});
    const auto db = d_db.download();
    if (exact) CHECK(db == test::to_float(ref));
    else check_bound(db, ref, magnitude, q + 1, 0);
  }
}

// Each pass in TF32, and in bf16 at every bf16 version here and on the cpu device.
void check(const Case& c, uint64_t seed) {
  check_tf32(c, seed);
  for (int version : {1, Up::tensor_core_version}) check_bf16<kDevice>(c, seed, version);
  check_bf16<DeviceKind::cpu>(c, seed, 0);
}

// check() with version 3 on each of its block tiles (kernels/tile_choice.h), pinned: the awkward
// shapes on both, where the model would pick the small tile for nearly all of them.
void check_each_tile(const Case& c, uint64_t seed) {
  for (MmaTile tile : {MmaTile::large, MmaTile::small}) {
    INFO((tile == MmaTile::large ? "128 x 64" : "64 x 64") << " block tile");
    const PinnedMmaTile pinned(tile);
    check_tf32(c, seed);
    check_bf16<kDevice>(c, seed, Up::tensor_core_version);
  }
  check_bf16<kDevice>(c, seed, 1);
  check_bf16<DeviceKind::cpu>(c, seed, 0);
}

ConvTranspose2dShape shape(int n, int h, int w, int c_in, int c_out) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out};
}

}  // namespace

TEST_CASE("conv_transpose2d tf32 and bf16: odd sizes, channels not a multiple of the tile, N = 1 and 2",
          "[conv_transpose2d][tensor-core]") {
  const std::vector<Case> cases = {
      {shape(1, 3, 5, 3, 5)},            // fewer channels than one mma tile: the narrow copies
      {shape(2, 5, 3, 5, 3), false},
      {shape(2, 3, 7, 17, 33)},          // Cin 17: a partial K-step
      {shape(1, 7, 5, 33, 17)},
      {shape(2, 4, 5, 64, 64)},          // 16-byte copies, N = 4 x 64 = 256 columns
      {shape(1, 3, 3, 64, 33), false},   // 132 columns: a partial N tile
      {shape(2, 1, 1, 33, 64)},          // 1x1 images
      {shape(2, 11, 13, 8, 16)},         // 286 pixels: a partial third M tile, the weight gradient in chunks
      {shape(1, 3, 4, 136, 8)},          // Cin 136: a partial second M tile of backward_weight
  };
  uint64_t seed = 6100;
  for (const Case& c : cases) check_each_tile(c, seed += 10);
}

TEST_CASE("conv_transpose2d tf32 and bf16: inputs and outputs as channel slices of wider buffers",
          "[conv_transpose2d][tensor-core]") {
  // The U-Net writes the up-convolution's output into channels [0, C) of the concat buffer.
  check_each_tile({shape(2, 3, 5, 128, 64), true, Slice{256, 128}, Slice{128, 0}}, 7100);  // aligned
  check_each_tile({shape(1, 4, 3, 64, 68), true, Slice{70, 5}, Slice{75, 3}}, 7110);       // odd offsets and strides
  check_each_tile({shape(2, 3, 3, 16, 32), true, Slice{24, 8}, Slice{40, 8}}, 7120);        // aligned for bf16 only
  // bf16's padded pixel strides (multiples of 8) around channel counts that are not: partial chunks.
  check_each_tile({shape(2, 3, 5, 17, 40), true, Slice{24, 0}, Slice{48, 0}}, 7130);
  check_each_tile({shape(1, 5, 3, 3, 20), false, Slice{8, 0}, Slice{24, 0}}, 7140);
}

TEST_CASE("conv_transpose2d tf32 and bf16: small integers and tf32 ties give exactly the reference",
          "[conv_transpose2d][tensor-core]") {
  const std::vector<Case> cases = {
      {shape(2, 3, 5, 64, 64), true, {}, {}, Values::integers},
      {shape(1, 5, 3, 17, 33), true, {}, {}, Values::integers},
      {shape(1, 4, 4, 33, 5), false, Slice{40, 3}, Slice{10, 5}, Values::integers},
      {shape(2, 11, 13, 8, 4), true, {}, {}, Values::integers},
      {shape(2, 3, 5, 32, 40), true, {}, {}, Values::ties},
      {shape(1, 4, 7, 5, 9), false, {}, {}, Values::ties},
  };
  uint64_t seed = 8100;
  for (const Case& c : cases) check_each_tile(c, seed += 10);
}

TEST_CASE("conv_transpose2d tf32: the operands really are rounded to tf32", "[conv_transpose2d][tensor-core]") {
  // At ties every activation moves by 2^-11 relative: the exact fp32 result is not the kernel's.
  const ConvTranspose2dShape s = shape(2, 3, 5, 32, 40);
  const int64_t p = int64_t{s.n} * s.h * s.w;
  const auto x = inputs(Values::ties, p * s.c_in, 1, true);
  const auto weight = inputs(Values::ties, s.c_in * 4 * s.c_out, 2, false);
  std::vector<float> y_fp32(4 * p * s.c_out);
  cpu::conv_transpose2d_forward(s, x.data(), s.c_in, weight.data(), static_cast<const float*>(nullptr), y_fp32.data(),
                                s.c_out);
  DeviceBuffer<float> d_x(dev(), x), d_weight(dev(), weight), d_y(dev(), y_fp32.size());
  Up::forward(s, d_x.data(), s.c_in, d_weight.data(), nullptr, d_y.data(), s.c_out, {}, Up::tensor_core_version);
  const auto y = d_y.download();
  int differ = 0;
  for (size_t i = 0; i < y.size(); ++i) differ += y[i] != y_fp32[i];
  CHECK(differ > static_cast<int>(y.size()) / 2);
}

TEST_CASE("conv_transpose2d tf32 and bf16: every up-convolution of the default U-Net at 16x16",
          "[conv_transpose2d][tensor-core]") {
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 1, 16, 16)) {
    if (layer.kind != LayerKind::up_conv) continue;
    INFO(layer.name);
    // Writes into channels [0, C) of the decoder's concat buffer, as the model does.
    check({shape(layer.n, layer.h, layer.w, layer.c_in, layer.c_out), true, {}, Slice{2 * layer.c_out, 0}},
          9100 + layer.c_in);
  }
}

TEST_CASE("conv_transpose2d tf32 and bf16: the weight gradient is the same bits on every run",
          "[conv_transpose2d][tensor-core]") {
  const ConvTranspose2dShape s = shape(2, 24, 24, 16, 24);  // 1152 pixels: several chunks
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_in} * 4 * s.c_out;
  const auto x = test::random_uniform(p * s.c_in, 1), dy = test::random_uniform(4 * p * s.c_out, 2);
  const size_t bytes = Up::backward_weight_workspace(s, Up::tensor_core_version);
  CHECK(bytes > weights * sizeof(float));  // split
  test::Workspace scratch(dev(), bytes);
  DeviceBuffer<float> d_x(dev(), x), d_dy(dev(), dy);
  DeviceBuffer<bf16> h_x(dev(), to_bf16(x)), h_dy(dev(), to_bf16(dy));
  std::vector<float> first_tf32, first_bf16;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float> dw_tf32(dev(), weights), dw_bf16(dev(), weights);
    Up::backward_weight(s, d_x.data(), s.c_in, d_dy.data(), s.c_out, 0.0f, dw_tf32.data(), scratch.data(), {},
                        Up::tensor_core_version);
    Up::backward_weight(s, h_x.data(), s.c_in, h_dy.data(), s.c_out, 0.0f, dw_bf16.data(), scratch.data(), {},
                        Up::tensor_core_version);
    if (run == 0) {
      first_tf32 = dw_tf32.download();
      first_bf16 = dw_bf16.download();
    } else {
      CHECK(dw_tf32.download() == first_tf32);
      CHECK(dw_bf16.download() == first_bf16);
    }
  }
}
