// conv2d's bf16 overloads, every version, on sim or cuda and on the cpu device, against the
// reference at the kernels' rounding points (cpu::conv2d_*_bf16) and the exact double convolution
// of the same bf16 operands.
//
// Tolerance. bf16 operands have 8 significant bits, so each product of two is exact in fp32 (16
// bits); what remains is the order and precision of the fp32 additions, then, for a bf16 output,
// one rounding. Summing n terms in fp32 is off by at most gamma_n * sum|term|, gamma_n =
// n u / (1 - n u), u = 2^-23 (a whole fp32 unit, not half: the ISA leaves the mma's internal
// rounding open and hardware truncates partial sums). Rounding s to bf16 (nearest even) moves it
// by at most 2^-8 |s|. So, against the exact sum e of the same operands (|s - e| <= gamma_n M):
//     y, dx (bf16):      |out - e| <= gamma_n M + 2^-8 (|e| + gamma_n M)
//     dW, db (fp32):     |out - e| <= gamma_n M
// with M = sum of the magnitudes of the terms (the convolution of |operands|, plus |bias| or
// |beta dx_prior|). n = K + 1 for forward (K = k*k*Cin products and the bias) and backward_data
// (K = k*k*Cout and the prior dx); n = P + 2 for the weight and bias gradients (P = pixels, summed
// in chunks, then the chunks' partials in order, then beta: no chain of additions is longer).
// ReLU is 1-Lipschitz, so the bounds survive it. Small integers are exact in bf16 and their sums
// exact in fp32, so there the output must be the reference's bits.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "kernels/conv2d.h"
#include "kernels/rounding.h"
#include "kernels/tile_choice.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer;
using test::Slice;

namespace {

constexpr double kFp32Unit = 0x1p-23;
constexpr double kBf16Rounding = 0x1p-8;
const bf16 kBf16Nan{0xffff};

struct Case {
  Conv2dShape shape;
  bool relu = false;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};  // channel slices of x (dx) and y (dy, the mask); stride 0 is dense
  bool integers = false;
};

std::vector<bf16> to_bf16(const std::vector<float>& values) {
  std::vector<bf16> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = unet::to_bf16(values[i]);
  return out;
}

std::vector<double> widen(const std::vector<bf16>& values, bool absolute = false) {
  std::vector<double> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = absolute ? std::fabs(to_float(values[i])) : to_float(values[i]);
  return out;
}

std::vector<bf16> inputs(const Case& c, size_t count, uint64_t seed) {
  return to_bf16(c.integers ? test::random_integers(count, seed) : test::random_uniform(count, seed));
}

bool same_bits(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

// bf16 values in a slice of a wider buffer, `fill` around them (NaN: a kernel that reads another
// channel fails).
std::vector<bf16> in_slice(const std::vector<bf16>& dense, int64_t pixels, int channels, Slice slice,
                           bf16 fill = kBf16Nan) {
  std::vector<bf16> wide(static_cast<size_t>(pixels) * slice.stride, fill);
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) wide[p * slice.stride + slice.offset + c] = dense[p * channels + c];
  }
  return wide;
}

// The slice's values, dense; `untouched` is false if anything outside it is no longer `fill`.
std::vector<bf16> from_slice(const std::vector<bf16>& wide, int64_t pixels, int channels, Slice slice, bf16 fill,
                             bool& untouched) {
  std::vector<bf16> dense(static_cast<size_t>(pixels) * channels);
  untouched = true;
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < slice.stride; ++c) {
      const bf16 v = wide[p * slice.stride + c];
      if (c >= slice.offset && c < slice.offset + channels) dense[p * channels + c - slice.offset] = v;
      else untouched = untouched && v.bits == fill.bits;
    }
  }
  return dense;
}

double gamma(int n) { return n * kFp32Unit / (1 - n * kFp32Unit); }

// Every bf16 `out` within the bound above of the exact `e`, magnitude M.
void check_bf16_bound(const std::vector<bf16>& out, const std::vector<double>& exact, const std::vector<double>& m,
                      int n) {
  int outside = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double bound = gamma(n) * m[i] + kBf16Rounding * (std::fabs(exact[i]) + gamma(n) * m[i]);
    if (!(std::fabs(to_float(out[i]) - exact[i]) <= bound)) {
      if (outside++ < 5) UNSCOPED_INFO("element " << i << ": " << to_float(out[i]) << " against " << exact[i]);
    }
  }
  CHECK(outside == 0);
}

void check_fp32_bound(const std::vector<float>& out, const std::vector<double>& exact, const std::vector<double>& m,
                      int n) {
  int outside = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!(std::fabs(out[i] - exact[i]) <= gamma(n) * m[i])) {
      if (outside++ < 5) UNSCOPED_INFO("element " << i << ": " << out[i] << " against " << exact[i]);
    }
  }
  CHECK(outside == 0);
}

// g as the exact reference sees it: dy widened, zero where the mask is not positive.
std::vector<double> masked(const std::vector<bf16>& dy, const std::vector<bf16>* mask, bool absolute = false) {
  std::vector<double> g = widen(dy, absolute);
  if (mask == nullptr) return g;
  for (size_t i = 0; i < g.size(); ++i) {
    if (!(to_float((*mask)[i]) > 0.0f)) g[i] = 0.0;
  }
  return g;
}

template <DeviceKind D>
class Checker {
 public:
  Checker(const Case& c, uint64_t seed, int version) : c_(c), s_(c.shape), seed_(seed), version_(version) {
    p_ = int64_t{s_.n} * s_.h * s_.w;
    weights_ = int64_t{s_.c_out} * s_.k * s_.k * s_.c_in;
    in_ = c.in.stride ? c.in : Slice{s_.c_in, 0};
    out_ = c.out.stride ? c.out : Slice{s_.c_out, 0};
    x_ = inputs(c, p_ * s_.c_in, seed + 1);
    weight_ = inputs(c, weights_, seed + 2);
    // The bias stays fp32: uniform values are (almost always) not bf16 values.
    bias_ = fp32_inputs(s_.c_out, seed + 3);
  }

  void run() {
    forward();
    backward_data();
    backward_weight();
    backward_bias();
  }

 private:
  Device& dev() { return device(D); }
  std::vector<float> fp32_inputs(size_t count, uint64_t seed) const {
    return c_.integers ? test::random_integers(count, seed) : test::random_uniform(count, seed);
  }

  void forward() {
    INFO("forward");
    const float* bias = c_.bias ? bias_.data() : nullptr;
    std::vector<bf16> y_ref(p_ * s_.c_out);
    cpu::conv2d_forward_bf16<double>(s_, x_.data(), s_.c_in, weight_.data(), bias, c_.relu, y_ref.data(), s_.c_out);
    DeviceBuffer<bf16> d_x(dev(), in_slice(x_, p_, s_.c_in, in_)), d_weight(dev(), weight_);
    DeviceBuffer<float> d_bias(dev(), bias_);
    DeviceBuffer<bf16> d_y(dev(), p_ * out_.stride);
    d_y.poison();
    Conv2d<D>::forward(s_, d_x.data() + in_.offset, in_.stride, d_weight.data(), c_.bias ? d_bias.data() : nullptr,
                       c_.relu, d_y.data() + out_.offset, out_.stride, {}, version_);
    bool untouched = false;
    const auto y = from_slice(d_y.download(), p_, s_.c_out, out_, kBf16Nan, untouched);
    CHECK(untouched);
    y_ = y_ref;  // the mask of the backward passes: the reference's bf16 forward output
    if (c_.integers) {
      CHECK(same_bits(y, y_ref));
      return;
    }
    std::vector<double> exact(p_ * s_.c_out), magnitude(p_ * s_.c_out);
    const auto x = widen(x_), w = widen(weight_), x_abs = widen(x_, true), w_abs = widen(weight_, true);
    std::vector<double> b(bias_.begin(), bias_.end()), b_abs(s_.c_out);
    for (int o = 0; o < s_.c_out; ++o) b_abs[o] = std::fabs(b[o]);
    cpu::conv2d_forward<double>(s_, x.data(), s_.c_in, w.data(), c_.bias ? b.data() : nullptr, c_.relu, exact.data(),
                                s_.c_out);
    cpu::conv2d_forward<double>(s_, x_abs.data(), s_.c_in, w_abs.data(), c_.bias ? b_abs.data() : nullptr, false,
                                magnitude.data(), s_.c_out);
    check_bf16_bound(y, exact, magnitude, s_.k * s_.k * s_.c_in + 1);
  }

  // beta 0 over a NaN dx, and beta 1.
  void backward_data() {
    const auto dy = inputs(c_, p_ * s_.c_out, seed_ + 4), prior = inputs(c_, p_ * s_.c_in, seed_ + 5);
    const std::vector<bf16>* mask = c_.relu ? &y_ : nullptr;
    DeviceBuffer<bf16> d_dy(dev(), in_slice(dy, p_, s_.c_out, out_)), d_mask(dev(), in_slice(y_, p_, s_.c_out, out_));
    DeviceBuffer<bf16> d_weight(dev(), weight_);
    const bf16 fill = unet::to_bf16(-7.0f);
    for (float beta : {0.0f, 1.0f}) {
      INFO("backward_data, beta " << beta);
      std::vector<bf16> dx_ref = beta == 0.0f ? std::vector<bf16>(prior.size(), kBf16Nan) : prior;
      cpu::conv2d_backward_data_bf16<double>(s_, dy.data(), s_.c_out, c_.relu ? y_.data() : nullptr, s_.c_out,
                                             weight_.data(), beta, dx_ref.data(), s_.c_in);
      DeviceBuffer<bf16> d_dx(dev(), in_slice(beta == 0.0f ? std::vector<bf16>(prior.size(), kBf16Nan) : prior, p_,
                                              s_.c_in, in_, fill));
      Conv2d<D>::backward_data(s_, d_dy.data() + out_.offset, out_.stride,
                               c_.relu ? d_mask.data() + out_.offset : nullptr, out_.stride, d_weight.data(), beta,
                               d_dx.data() + in_.offset, in_.stride, {}, version_);
      bool untouched = false;
      const auto dx = from_slice(d_dx.download(), p_, s_.c_in, in_, fill, untouched);
      CHECK(untouched);
      if (c_.integers) {
        CHECK(same_bits(dx, dx_ref));
        continue;
      }
      std::vector<double> exact = widen(prior), magnitude = widen(prior, true);
      const auto g = masked(dy, mask), g_abs = masked(dy, mask, true);
      const auto w = widen(weight_), w_abs = widen(weight_, true);
      cpu::conv2d_backward_data<double>(s_, g.data(), s_.c_out, nullptr, 0, w.data(), beta, exact.data(), s_.c_in);
      cpu::conv2d_backward_data<double>(s_, g_abs.data(), s_.c_out, nullptr, 0, w_abs.data(), beta, magnitude.data(),
                                        s_.c_in);
      check_bf16_bound(dx, exact, magnitude, s_.k * s_.k * s_.c_out + 1);
    }
  }

  // beta 0 over a NaN dW, and beta 1.
  void backward_weight() {
    const auto dy = inputs(c_, p_ * s_.c_out, seed_ + 6);
    const auto prior = fp32_inputs(weights_, seed_ + 7);
    const std::vector<bf16>* mask = c_.relu ? &y_ : nullptr;
    DeviceBuffer<bf16> d_x(dev(), in_slice(x_, p_, s_.c_in, in_)), d_dy(dev(), in_slice(dy, p_, s_.c_out, out_));
    DeviceBuffer<bf16> d_mask(dev(), in_slice(y_, p_, s_.c_out, out_));
    for (float beta : {0.0f, 1.0f}) {
      INFO("backward_weight, beta " << beta);
      DeviceBuffer<float> d_dw(dev(), beta == 0.0f ? std::vector<float>(weights_, NAN) : prior);
      test::Workspace scratch(dev(), Conv2d<D>::backward_weight_workspace(s_, bf16{}, version_));
      Conv2d<D>::backward_weight(s_, d_x.data() + in_.offset, in_.stride, d_dy.data() + out_.offset, out_.stride,
                                 c_.relu ? d_mask.data() + out_.offset : nullptr, out_.stride, beta, d_dw.data(),
                                 scratch.data(), {}, version_);
      const auto dw = d_dw.download();
      std::vector<double> exact(prior.begin(), prior.end()), magnitude(weights_);
      for (int64_t i = 0; i < weights_; ++i) magnitude[i] = std::fabs(prior[i]);
      const auto x = widen(x_), x_abs = widen(x_, true), g = masked(dy, mask), g_abs = masked(dy, mask, true);
      cpu::conv2d_backward_weight<double>(s_, x.data(), s_.c_in, g.data(), s_.c_out, nullptr, 0, beta, exact.data());
      cpu::conv2d_backward_weight<double>(s_, x_abs.data(), s_.c_in, g_abs.data(), s_.c_out, nullptr, 0, beta,
                                          magnitude.data());
      if (c_.integers) {
        std::vector<double> reference(prior.begin(), prior.end());
        cpu::conv2d_backward_weight_bf16<double>(s_, x_.data(), s_.c_in, dy.data(), s_.c_out,
                                                 c_.relu ? y_.data() : nullptr, s_.c_out, beta, reference.data());
        CHECK(reference == exact);
        CHECK(dw == test::to_float(reference));
      } else {
        check_fp32_bound(dw, exact, magnitude, static_cast<int>(p_) + 2);
      }
    }
  }

  void backward_bias() {
    const auto dy = inputs(c_, p_ * s_.c_out, seed_ + 8);
    const std::vector<bf16>* mask = c_.relu ? &y_ : nullptr;
    DeviceBuffer<bf16> d_dy(dev(), in_slice(dy, p_, s_.c_out, out_)), d_mask(dev(), in_slice(y_, p_, s_.c_out, out_));
    const auto prior = fp32_inputs(s_.c_out, seed_ + 9);
    for (float beta : {0.0f, 1.0f}) {
      INFO("backward_bias, beta " << beta);
      DeviceBuffer<float> d_db(dev(), beta == 0.0f ? std::vector<float>(s_.c_out, NAN) : prior);
      test::Workspace scratch(dev(), Conv2d<D>::backward_bias_workspace(s_, bf16{}));
      Conv2d<D>::backward_bias(s_, d_dy.data() + out_.offset, out_.stride,
                               c_.relu ? d_mask.data() + out_.offset : nullptr, out_.stride, beta, d_db.data(),
                               scratch.data(), {});
      const auto db = d_db.download();
      std::vector<double> exact(prior.begin(), prior.end()), magnitude(s_.c_out);
      for (int o = 0; o < s_.c_out; ++o) magnitude[o] = std::fabs(prior[o]);
      const auto g = masked(dy, mask), g_abs = masked(dy, mask, true);
      cpu::conv2d_backward_bias<double>(s_, g.data(), s_.c_out, nullptr, 0, beta, exact.data());
      cpu::conv2d_backward_bias<double>(s_, g_abs.data(), s_.c_out, nullptr, 0, beta, magnitude.data());
      if (c_.integers) {
        std::vector<double> reference(prior.begin(), prior.end());
        cpu::conv2d_backward_bias_bf16<double>(s_, dy.data(), s_.c_out, c_.relu ? y_.data() : nullptr, s_.c_out, beta,
                                               reference.data());
        CHECK(reference == exact);
        CHECK(db == test::to_float(reference));
      } else {
        check_fp32_bound(db, exact, magnitude, static_cast<int>(p_) + 2);
      }
    }
  }

  Case c_;
  Conv2dShape s_;
  uint64_t seed_;
  int version_;
  int64_t p_, weights_;
  Slice in_, out_;
  std::vector<bf16> x_, weight_, y_;
  std::vector<float> bias_;
};

constexpr DeviceKind kDevice = DeviceKind::UNET_TEST_DEVICE;

// Every bf16 version of the device under test, and the cpu device's reference-backed launchers;
// version 3 on each of its block tiles (kernels/tile_choice.h), pinned, with `each_tile` (the
// awkward shapes, where the model would pick the small tile for nearly all), else the model's.
void check(const Case& c, uint64_t seed, bool each_tile = false) {
  const Conv2dShape& s = c.shape;
  INFO("k " << s.k << ", " << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out
            << (c.relu ? ", relu" : "") << (c.bias ? "" : ", no bias") << ", in " << c.in.offset << "/" << c.in.stride
            << ", out " << c.out.offset << "/" << c.out.stride << (c.integers ? ", integers" : ""));
  {
    INFO(device_name(kDevice) << " version 1");
    Checker<kDevice>(c, seed, 1).run();
  }
  if (each_tile) {
    for (MmaTile tile : {MmaTile::large, MmaTile::small}) {
      INFO(device_name(kDevice) << " version 3, " << (tile == MmaTile::large ? "128 x 64" : "64 x 64")
                                << " block tile");
      const PinnedMmaTile pinned(tile);
      Checker<kDevice>(c, seed, 3).run();
    }
  } else {
    INFO(device_name(kDevice) << " version 3");
    Checker<kDevice>(c, seed, 3).run();
  }
  INFO("cpu");
  Checker<DeviceKind::cpu>(c, seed, 0).run();
}

Conv2dShape shape(int n, int h, int w, int c_in, int c_out, int k) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out, .k = k};
}

}  // namespace

TEST_CASE("conv2d bf16: odd sizes, channels not a multiple of the tile, N = 1 and 2", "[conv2d][bf16]") {
  const std::vector<Case> cases = {
      {shape(1, 5, 7, 3, 64, 3), true},         // the first layer: 3 channels
      {shape(2, 3, 9, 5, 3, 3)},                // fewer output channels than one mma tile
      {shape(2, 9, 11, 17, 33, 3), true},       // 198 pixels: a partial second block of pixels
      {shape(1, 7, 5, 33, 17, 3), false, false},
      {shape(2, 5, 6, 64, 64, 3), true},        // 16-byte copies, one full N tile
      {shape(1, 4, 3, 64, 129, 3)},             // a partial third N tile
      {shape(2, 1, 1, 24, 16, 3), true},        // 1x1 images: every tap but the centre is padding
      {shape(1, 6, 6, 40, 72, 1)},              // k = 1; Cin = 40: a partial K-step
      {shape(2, 4, 5, 64, 1, 1)},               // the head's shape: one output channel
      {shape(1, 6, 7, 8, 16, 5), true},         // k = 5
      {shape(2, 17, 19, 16, 24, 3), true},      // 646 pixels: six blocks of pixels, three bias chunks
  };
  uint64_t seed = 100;
  for (const Case& c : cases) check(c, seed += 10, true);
}

TEST_CASE("conv2d bf16: inputs and outputs as channel slices of wider buffers", "[conv2d][bf16]") {
  check({shape(2, 5, 7, 64, 64, 3), true, true, Slice{128, 64}, Slice{128, 0}}, 200, true);  // aligned: 16-byte copies
  check({shape(1, 6, 5, 64, 64, 3), true, true, Slice{72, 3}, Slice{72, 1}}, 210, true);  // odd offsets
  check({shape(1, 6, 5, 3, 16, 3), true, true, Slice{8, 0}, Slice{24, 8}}, 215, true);  // the arena's 3-in-8 image
  check({shape(2, 3, 5, 17, 33, 3), false, true, Slice{20, 2}, Slice{40, 7}}, 220, true);
}

TEST_CASE("conv2d bf16: small integers give exactly the reference's bits", "[conv2d][bf16]") {
  const std::vector<Case> cases = {
      {shape(2, 5, 7, 3, 64, 3), true, true, {}, {}, true},
      {shape(1, 7, 6, 64, 64, 3), true, true, {}, {}, true},
      {shape(1, 4, 5, 33, 5, 3), true, true, Slice{40, 3}, Slice{9, 4}, true},
      {shape(1, 3, 4, 64, 129, 3), false, false, {}, {}, true},
      {shape(2, 4, 4, 32, 1, 1), false, true, {}, {}, true},
  };
  uint64_t seed = 300;
  for (const Case& c : cases) check(c, seed += 10, true);
}

TEST_CASE("conv2d bf16: every conv layer of the default U-Net at 16x16", "[conv2d][bf16]") {
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 1, 16, 16)) {
    if (layer.kind != LayerKind::conv3x3 && layer.kind != LayerKind::conv1x1) continue;
    INFO(layer.name);
    const bool head = layer.kind == LayerKind::conv1x1;
    const Case c{shape(1, layer.h, layer.w, layer.c_in, layer.c_out, head ? 1 : 3), !head};
    for (int version : {1, 3}) {
      INFO("version " << version);
      Checker<kDevice>(c, 400 + layer.c_in, version).run();
    }
  }
}

TEST_CASE("conv2d bf16 v3: the weight and bias gradients are the same bits on every run", "[conv2d][bf16]") {
  const Conv2dShape s = shape(2, 24, 24, 16, 24, 3);  // 1152 pixels: several chunks of each
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * 9 * s.c_in;
  DeviceBuffer<bf16> x(device(kDevice), to_bf16(test::random_uniform(p * s.c_in, 1)));
  DeviceBuffer<bf16> dy(device(kDevice), to_bf16(test::random_uniform(p * s.c_out, 2)));
  using Conv = Conv2d<kDevice>;
  test::Workspace weight_scratch(device(kDevice), Conv::backward_weight_workspace(s, bf16{}, 3));
  test::Workspace bias_scratch(device(kDevice), Conv::backward_bias_workspace(s, bf16{}));
  CHECK(Conv::backward_weight_workspace(s, bf16{}, 3) > weights * sizeof(float));  // split over pixels
  CHECK(Conv::backward_bias_workspace(s, bf16{}) > s.c_out * sizeof(float));
  std::vector<float> first_dw, first_db;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float> dweight(device(kDevice), weights), dbias(device(kDevice), s.c_out);
    Conv::backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, nullptr, 0, 0.0f, dweight.data(),
                          weight_scratch.data(), {}, 3);
    Conv::backward_bias(s, dy.data(), s.c_out, nullptr, 0, 0.0f, dbias.data(), bias_scratch.data(), {});
    if (run == 0) {
      first_dw = dweight.download();
      first_db = dbias.download();
    } else {
      CHECK(dweight.download() == first_dw);
      CHECK(dbias.download() == first_db);
    }
  }
}
