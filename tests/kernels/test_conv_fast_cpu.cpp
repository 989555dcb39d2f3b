// The cpu device's fast convolutions (cpu::fast, conv2d.h and conv_transpose2d.h), both instruction
// sets this CPU runs, against the reference in double: NaN-poisoned outputs, channel slices of wider
// buffers, beta 0 and 1, bit for bit on small integers, and the same bits at 1 and 2 threads.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "kernels/cpu_kernels.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using cpu::fast::CpuKernels;
using test::Slice;

namespace {

// Runs `body` once per instruction set this CPU has, and leaves the default chosen again.
void for_each_kernels(const std::function<void()>& body) {
  const CpuKernels chosen = cpu::fast::cpu_kernels();
  for (CpuKernels kernels : {CpuKernels::generic, CpuKernels::avx2}) {
    if (!cpu::fast::supported(kernels)) continue;
    INFO("kernels " << cpu::fast::name(kernels));
    cpu::fast::use_cpu_kernels(kernels);
    body();
  }
  cpu::fast::use_cpu_kernels(chosen);
}

template <class T>
std::vector<T> values(bool integers, int64_t count, uint64_t seed) {
  return integers ? test::random_integers(count, seed) : test::random_uniform(count, seed);
}

struct ConvCase {
  Conv2dShape shape;
  bool relu = false;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};  // channel slices of x/dx and of y/dy/relu_output; stride 0 is dense
  bool integers = false;
};

void check_conv(const ConvCase& c, uint64_t seed) {
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * s.k * s.k * s.c_in;
  const Slice in = c.in.stride ? c.in : Slice{s.c_in, 0}, out = c.out.stride ? c.out : Slice{s.c_out, 0};
  INFO("k " << s.k << ", " << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out
            << (c.relu ? ", relu" : "") << (c.bias ? "" : ", no bias") << ", in " << in.offset << "/" << in.stride
            << ", out " << out.offset << "/" << out.stride << (c.integers ? ", integers" : ""));
  const auto x = values<float>(c.integers, p * s.c_in, seed + 1), weight = values<float>(c.integers, weights, seed + 2);
  const auto bias = values<float>(c.integers, s.c_out, seed + 3), dy = values<float>(c.integers, p * s.c_out, seed + 4);
  const auto prior_dx = values<float>(c.integers, p * s.c_in, seed + 5);
  const auto prior_dweight = values<float>(c.integers, weights, seed + 6);
  const auto prior_dbias = values<float>(c.integers, s.c_out, seed + 7);

  const auto xd = test::to_double(x), weightd = test::to_double(weight), dyd = test::to_double(dy);
  const auto biasd = test::to_double(bias);
  std::vector<double> y_ref(p * s.c_out), dx_ref(p * s.c_in), dweight_ref(weights), dbias_ref(s.c_out);
  cpu::conv2d_forward(s, xd.data(), s.c_in, weightd.data(), c.bias ? biasd.data() : nullptr, c.relu, y_ref.data(),
                      s.c_out);
  const auto y_float = test::to_float(y_ref);
  const auto maskd = test::to_double(y_float);
  const double* mask_ref = c.relu ? maskd.data() : nullptr;
  cpu::conv2d_backward_data(s, dyd.data(), s.c_out, mask_ref, s.c_out, weightd.data(), 0.0, dx_ref.data(), s.c_in);
  cpu::conv2d_backward_weight(s, xd.data(), s.c_in, dyd.data(), s.c_out, mask_ref, s.c_out, 0.0, dweight_ref.data());
  cpu::conv2d_backward_bias(s, dyd.data(), s.c_out, mask_ref, s.c_out, 0.0, dbias_ref.data());

  // Inputs in their slices, NaN around them: a kernel that reads another channel fails.
  const auto x_wide = test::widen(x, p, s.c_in, in, NAN), dy_wide = test::widen(dy, p, s.c_out, out, NAN);
  const auto mask_wide = test::widen(y_float, p, s.c_out, out, NAN);
  const float* mask = c.relu ? mask_wide.data() + out.offset : nullptr;
  for_each_kernels([&] {
    {
      std::vector<float> y(p * out.stride, NAN);
      cpu::fast::conv2d_forward(s, x_wide.data() + in.offset, in.stride, weight.data(), c.bias ? bias.data() : nullptr,
                                c.relu, y.data() + out.offset, out.stride);
      INFO("forward");
      test::compare(test::narrow(y, p, s.c_out, out), y_ref, c.integers);
      CHECK(test::outside_untouched(y, p, s.c_out, out, NAN));
    }
    for (float beta : {0.0f, 1.0f}) {
      INFO("beta " << beta);
      // beta = 0 must overwrite whatever is there, NaN included.
      auto dx = test::widen(beta == 0.0f ? std::vector<float>(prior_dx.size(), NAN) : prior_dx, p, s.c_in, in, -7.0f);
      cpu::fast::conv2d_backward_data(s, dy_wide.data() + out.offset, out.stride, mask, out.stride, weight.data(), beta,
                                      dx.data() + in.offset, in.stride);
      INFO("backward_data");
      test::compare(test::narrow(dx, p, s.c_in, in), beta == 0.0f ? dx_ref : test::plus(dx_ref, prior_dx), c.integers);
      CHECK(test::outside_untouched(dx, p, s.c_in, in, -7.0f));

      auto dweight = beta == 0.0f ? std::vector<float>(weights, NAN) : prior_dweight;
      cpu::fast::conv2d_backward_weight(s, x_wide.data() + in.offset, in.stride, dy_wide.data() + out.offset,
                                        out.stride, mask, out.stride, beta, dweight.data());
      INFO("backward_weight");
      test::compare(dweight, beta == 0.0f ? dweight_ref : test::plus(dweight_ref, prior_dweight), c.integers);

      auto dbias = beta == 0.0f ? std::vector<float>(s.c_out, NAN) : prior_dbias;
      cpu::fast::conv2d_backward_bias(s, dy_wide.data() + out.offset, out.stride, mask, out.stride, beta, dbias.data());
      INFO("backward_bias");
      test::compare(dbias, beta == 0.0f ? dbias_ref : test::plus(dbias_ref, prior_dbias), c.integers);
    }
  });
}

struct UpCase {
  ConvTranspose2dShape shape;
  bool bias = true;
  Slice in{0, 0}, out{0, 0};
  bool integers = false;
};

void check_up(const UpCase& c, uint64_t seed) {
  const ConvTranspose2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w, q = 4 * p, weights = int64_t{s.c_in} * 4 * s.c_out;
  const Slice in = c.in.stride ? c.in : Slice{s.c_in, 0}, out = c.out.stride ? c.out : Slice{s.c_out, 0};
  INFO(s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out << (c.bias ? "" : ", no bias")
            << ", in " << in.offset << "/" << in.stride << ", out " << out.offset << "/" << out.stride
            << (c.integers ? ", integers" : ""));
  const auto x = values<float>(c.integers, p * s.c_in, seed + 1), weight = values<float>(c.integers, weights, seed + 2);
  const auto bias = values<float>(c.integers, s.c_out, seed + 3), dy = values<float>(c.integers, q * s.c_out, seed + 4);
  const auto prior_dx = values<float>(c.integers, p * s.c_in, seed + 5);
  const auto prior_dweight = values<float>(c.integers, weights, seed + 6);
  const auto prior_dbias = values<float>(c.integers, s.c_out, seed + 7);

  const auto xd = test::to_double(x), weightd = test::to_double(weight), dyd = test::to_double(dy);
  const auto biasd = test::to_double(bias);
  std::vector<double> y_ref(q * s.c_out), dx_ref(p * s.c_in), dweight_ref(weights), dbias_ref(s.c_out);
  cpu::conv_transpose2d_forward(s, xd.data(), s.c_in, weightd.data(), c.bias ? biasd.data() : nullptr, y_ref.data(),
                                s.c_out);
  cpu::conv_transpose2d_backward_data(s, dyd.data(), s.c_out, weightd.data(), 0.0, dx_ref.data(), s.c_in);
  cpu::conv_transpose2d_backward_weight(s, xd.data(), s.c_in, dyd.data(), s.c_out, 0.0, dweight_ref.data());
  cpu::conv_transpose2d_backward_bias(s, dyd.data(), s.c_out, 0.0, dbias_ref.data());

  const auto x_wide = test::widen(x, p, s.c_in, in, NAN), dy_wide = test::widen(dy, q, s.c_out, out, NAN);
  for_each_kernels([&] {
    {
      std::vector<float> y(q * out.stride, NAN);
      cpu::fast::conv_transpose2d_forward(s, x_wide.data() + in.offset, in.stride, weight.data(),
                                          c.bias ? bias.data() : nullptr, y.data() + out.offset, out.stride);
      INFO("forward");
      test::compare(test::narrow(y, q, s.c_out, out), y_ref, c.integers);
      CHECK(test::outside_untouched(y, q, s.c_out, out, NAN));
    }
    for (float beta : {0.0f, 1.0f}) {
      INFO("beta " << beta);
      auto dx = test::widen(beta == 0.0f ? std::vector<float>(prior_dx.size(), NAN) : prior_dx, p, s.c_in, in, -7.0f);
      cpu::fast::conv_transpose2d_backward_data(s, dy_wide.data() + out.offset, out.stride, weight.data(), beta,
                                                dx.data() + in.offset, in.stride);
      INFO("backward_data");
      test::compare(test::narrow(dx, p, s.c_in, in), beta == 0.0f ? dx_ref : test::plus(dx_ref, prior_dx), c.integers);
      CHECK(test::outside_untouched(dx, p, s.c_in, in, -7.0f));

      auto dweight = beta == 0.0f ? std::vector<float>(weights, NAN) : prior_dweight;
      cpu::fast::conv_transpose2d_backward_weight(s, x_wide.data() + in.offset, in.stride,
                                                  dy_wide.data() + out.offset, out.stride, beta, dweight.data());
      INFO("backward_weight");
      test::compare(dweight, beta == 0.0f ? dweight_ref : test::plus(dweight_ref, prior_dweight), c.integers);

      auto dbias = beta == 0.0f ? std::vector<float>(s.c_out, NAN) : prior_dbias;
      cpu::fast::conv_transpose2d_backward_bias(s, dy_wide.data() + out.offset, out.stride, beta, dbias.data());
      INFO("backward_bias");
      test::compare(dbias, beta == 0.0f ? dbias_ref : test::plus(dbias_ref, prior_dbias), c.integers);
    }
  });
}

Conv2dShape conv(int n, int h, int w, int c_in, int c_out, int k) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out, .k = k};
}

ConvTranspose2dShape up(int n, int h, int w, int c_in, int c_out) {
  return {.n = n, .h = h, .w = w, .c_in = c_in, .c_out = c_out};
}

}  // namespace

TEST_CASE("fast cpu conv2d: odd sizes, channels off the 6 x 16 tile, k = 1, 3 and 5, N = 1 and 2", "[cpu][conv2d]") {
  const std::vector<ConvCase> cases = {
      {conv(1, 5, 7, 3, 5, 1)},
      {conv(2, 3, 9, 17, 33, 1), true},
      {conv(2, 4, 5, 64, 1, 1)},  // the output head: one output channel
      {conv(1, 6, 6, 33, 64, 1), true, false},
      {conv(1, 5, 7, 3, 64, 3), true},  // the first layer: three input channels
      {conv(2, 3, 9, 5, 3, 3)},
      {conv(2, 9, 11, 17, 33, 3), true},  // 198 pixels: partial 96-pixel tiles and 6-pixel micro-tiles
      {conv(1, 7, 5, 33, 17, 3), false, false},
      {conv(1, 4, 3, 40, 129, 3)},        // K = 9 x 40: taps in two blocks; a partial 16-column panel
      {conv(2, 1, 1, 5, 17, 3), true},    // 1x1 images: every tap but the centre is padding
      {conv(2, 3, 1, 17, 5, 3), true},
      {conv(2, 40, 41, 8, 7, 3), true},   // 3280 pixels: the weight gradient in several chunks
      {conv(1, 6, 7, 5, 17, 5), true},
      {conv(1, 4, 9, 17, 3, 5)},
  };
  uint64_t seed = 100;
  for (const ConvCase& c : cases) check_conv(c, seed += 10);
}

TEST_CASE("fast cpu conv2d: channel slices of wider buffers", "[cpu][conv2d]") {
  check_conv({conv(2, 5, 7, 64, 64, 3), true, true, Slice{128, 64}, Slice{128, 0}}, 300);
  check_conv({conv(1, 6, 5, 20, 36, 3), true, true, Slice{27, 3}, Slice{41, 1}}, 310);
  check_conv({conv(1, 5, 5, 64, 1, 1), false, true, Slice{128, 64}, Slice{4, 3}}, 320);
}

TEST_CASE("fast cpu conv2d: small-integer inputs give exactly the reference", "[cpu][conv2d]") {
  check_conv({conv(2, 5, 7, 3, 64, 3), true, true, {}, {}, true}, 400);
  check_conv({conv(1, 7, 6, 64, 48, 3), true, true, {}, {}, true}, 410);
  check_conv({conv(1, 4, 5, 33, 5, 3), false, true, Slice{40, 3}, Slice{9, 4}, true}, 420);
  check_conv({conv(2, 4, 6, 16, 1, 1), false, true, {}, {}, true}, 430);
}

TEST_CASE("fast cpu conv_transpose2d: odd sizes and channel counts, N = 1 and 2", "[cpu][conv_transpose2d]") {
  const std::vector<UpCase> cases = {
      {up(1, 3, 5, 3, 5)},
      {up(2, 5, 3, 5, 3), false},
      {up(2, 3, 7, 17, 33)},
      {up(1, 7, 5, 33, 17)},
      {up(2, 1, 1, 33, 64)},
      {up(2, 11, 13, 5, 20)},
      {up(1, 20, 30, 64, 32)},  // 600 pixels: the weight gradient in several chunks
  };
  uint64_t seed = 500;
  for (const UpCase& c : cases) check_up(c, seed += 10);
}

TEST_CASE("fast cpu conv_transpose2d: channel slices and small integers", "[cpu][conv_transpose2d]") {
  check_up({up(2, 3, 5, 128, 64), true, Slice{256, 128}, Slice{128, 0}}, 600);
  check_up({up(1, 4, 3, 17, 33), true, Slice{20, 1}, Slice{66, 33}}, 610);
  check_up({up(2, 3, 5, 64, 64), true, {}, {}, true}, 620);
  check_up({up(1, 4, 4, 33, 5), false, Slice{40, 3}, Slice{10, 5}, true}, 630);
}

TEST_CASE("fast cpu convolutions: every conv and up-conv layer of the default U-Net at 8x8", "[cpu][conv2d]") {
  for (const LayerShape& layer : unet_layers(UNetConfig{}, 1, 8, 8)) {
    INFO(layer.name);
    if (layer.kind == LayerKind::conv3x3 || layer.kind == LayerKind::conv1x1) {
      const bool head = layer.kind == LayerKind::conv1x1;
      check_conv({conv(1, layer.h, layer.w, layer.c_in, layer.c_out, head ? 1 : 3), !head}, 700 + layer.c_in);
    } else if (layer.kind == LayerKind::up_conv) {
      check_up({up(1, layer.h, layer.w, layer.c_in, layer.c_out), true, {}, Slice{2 * layer.c_out, 0}},
               800 + layer.c_in);
    }
  }
}

TEST_CASE("fast cpu convolutions: every pass gives the same bits at 1 and 2 threads", "[cpu][conv2d]") {
  const Conv2dShape s = conv(2, 24, 30, 32, 40, 3);  // several pixel tiles and weight-gradient chunks
  const ConvTranspose2dShape u = up(2, 12, 30, 48, 32);
  const int64_t p = int64_t{s.n} * s.h * s.w, pu = int64_t{u.n} * u.h * u.w;
  const auto x = test::random_uniform(p * s.c_in, 1), weight = test::random_uniform(9 * s.c_in * s.c_out, 2);
  const auto bias = test::random_uniform(s.c_out, 3), dy = test::random_uniform(p * s.c_out, 4);
  const auto ux = test::random_uniform(pu * u.c_in, 5), uweight = test::random_uniform(4 * u.c_in * u.c_out, 6);
  const auto udy = test::random_uniform(4 * pu * u.c_out, 7);
  // Every pass's output at `threads` threads, one after the other.
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<std::vector<float>> results = {
        std::vector<float>(p * s.c_out), std::vector<float>(p * s.c_in), std::vector<float>(weight.size()),
        std::vector<float>(s.c_out),     std::vector<float>(4 * pu * u.c_out), std::vector<float>(pu * u.c_in),
        std::vector<float>(uweight.size()), std::vector<float>(u.c_out)};
    cpu::fast::conv2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), true, results[0].data(), s.c_out);
    const float* y = results[0].data();
    cpu::fast::conv2d_backward_data(s, dy.data(), s.c_out, y, s.c_out, weight.data(), 0.0f, results[1].data(), s.c_in);
    cpu::fast::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, y, s.c_out, 0.0f, results[2].data());
    cpu::fast::conv2d_backward_bias(s, dy.data(), s.c_out, y, s.c_out, 0.0f, results[3].data());
    cpu::fast::conv_transpose2d_forward(u, ux.data(), u.c_in, uweight.data(), bias.data(), results[4].data(), u.c_out);
    cpu::fast::conv_transpose2d_backward_data(u, udy.data(), u.c_out, uweight.data(), 0.0f, results[5].data(), u.c_in);
    cpu::fast::conv_transpose2d_backward_weight(u, ux.data(), u.c_in, udy.data(), u.c_out, 0.0f, results[6].data());
    cpu::fast::conv_transpose2d_backward_bias(u, udy.data(), u.c_out, 0.0f, results[7].data());
    omp_set_num_threads(saved);
    return results;
  };
  for_each_kernels([&] {
    const auto one = run(1), two = run(2);
    for (size_t pass = 0; pass < one.size(); ++pass) {
      INFO("pass " << pass);
      CHECK(one[pass] == two[pass]);
    }
  });
}

TEST_CASE("fast cpu kernels: UNET_CPU_KERNELS names an instruction set", "[cpu]") {
  CHECK(cpu::fast::parse_cpu_kernels("generic") == CpuKernels::generic);
  CHECK(cpu::fast::parse_cpu_kernels("avx2") == CpuKernels::avx2);
  CHECK_FALSE(cpu::fast::parse_cpu_kernels("AVX2").has_value());
  CHECK_FALSE(cpu::fast::parse_cpu_kernels("").has_value());
  CHECK(cpu::fast::supported(CpuKernels::generic));
}
