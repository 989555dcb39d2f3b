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
#include "tests/test_util.h"

using namespace unet;
using cpu::fast::CpuKernels;
using test::ConvCase, test::Slice, test::UpCase, test::conv_shape, test::up_shape;

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

void check_conv(const ConvCase& c, uint64_t seed) {
  const Conv2dShape& s = c.shape;
  const int64_t p = int64_t{s.n} * s.h * s.w, weights = int64_t{s.c_out} * s.k * s.k * s.c_in;
  const Slice in = c.in.stride ? c.in : Slice{s.c_in, 0}, out = c.out.stride ? c.out : Slice{s.c_out, 0};
  const Slice mask_layout = c.mask.stride ? c.mask : out;
  INFO("k " << s.k << ", " << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out
            << (c.relu ? ", relu" : "") << (c.bias ? "" : ", no bias") << ", in " << in.offset << "/" << in.stride
            << ", out " << out.offset << "/" << out.stride << ", relu_output " << mask_layout.offset << "/"
            << mask_layout.stride << (c.integers ? ", integers" : ""));
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
  const auto mask_wide = test::widen(y_float, p, s.c_out, mask_layout, NAN);
  const float* mask = c.relu ? mask_wide.data() + mask_layout.offset : nullptr;
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
      cpu::fast::conv2d_backward_data(s, dy_wide.data() + out.offset, out.stride, mask, mask_layout.stride,
                                      weight.data(), beta, dx.data() + in.offset, in.stride);
      INFO("backward_data");
      test::compare(test::narrow(dx, p, s.c_in, in), beta == 0.0f ? dx_ref : test::plus(dx_ref, prior_dx), c.integers);
      CHECK(test::outside_untouched(dx, p, s.c_in, in, -7.0f));

      auto dweight = beta == 0.0f ? std::vector<float>(weights, NAN) : prior_dweight;
      cpu::fast::conv2d_backward_weight(s, x_wide.data() + in.offset, in.stride, dy_wide.data() + out.offset,
                                        out.stride, mask, mask_layout.stride, beta, dweight.data());
      INFO("backward_weight");
      test::compare(dweight, beta == 0.0f ? dweight_ref : test::plus(dweight_ref, prior_dweight), c.integers);

      auto dbias = beta == 0.0f ? std::vector<float>(s.c_out, NAN) : prior_dbias;
      cpu::fast::conv2d_backward_bias(s, dy_wide.data() + out.offset, out.stride, mask, mask_layout.stride, beta,
                                      dbias.data());
      INFO("backward_bias");
      test::compare(dbias, beta == 0.0f ? dbias_ref : test::plus(dbias_ref, prior_dbias), c.integers);
    }
  });
}

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

}  // namespace

TEST_CASE("fast cpu conv2d: odd sizes, channels off the 6 x 16 tile, k = 1, 3 and 5, N = 1 and 2", "[cpu][conv2d]") {
  uint64_t seed = 100;
  for (const ConvCase& c : test::conv2d_odd_cases()) check_conv(c, seed += 10);
}

TEST_CASE("fast cpu conv2d: channel slices of wider buffers", "[cpu][conv2d]") {
  uint64_t seed = 300;
  for (const ConvCase& c : test::conv2d_slice_cases()) check_conv(c, seed += 10);
}

TEST_CASE("fast cpu conv2d: small-integer inputs give exactly the reference", "[cpu][conv2d]") {
  uint64_t seed = 400;
  for (const ConvCase& c : test::conv2d_integer_cases()) check_conv(c, seed += 10);
}

TEST_CASE("fast cpu conv2d: the weight gradient's row tiles, B read in place and packed", "[cpu][conv2d]") {
  // 32 output channels (6 row tiles): B in place, the last 8 rows two tiles of 4.
  check_conv({conv_shape(2, 16, 16, 24, 32, 3), true}, 1000);
  // 128 (22 row tiles): B packed per block, the last 8 rows two tiles of 4; 40 input channels end
  // in a partial column tile; ragged 13-pixel rows.
  check_conv({conv_shape(1, 16, 13, 40, 128, 3), true}, 1010);
  // 96 (16 row tiles, the fewest that pack B), in a channel slice, on small integers.
  check_conv({conv_shape(2, 7, 9, 16, 96, 3), true, true, Slice{20, 2}, Slice{100, 3}, true}, 1020);
}

TEST_CASE("fast cpu conv_transpose2d: odd sizes and channel counts, N = 1 and 2", "[cpu][conv_transpose2d]") {
  uint64_t seed = 500;
  for (const UpCase& c : test::conv_transpose2d_odd_cases()) check_up(c, seed += 10);
}

TEST_CASE("fast cpu conv_transpose2d: channel slices and small integers", "[cpu][conv_transpose2d]") {
  uint64_t seed = 600;
  for (const UpCase& c : test::conv_transpose2d_slice_cases()) check_up(c, seed += 10);
  for (const UpCase& c : test::conv_transpose2d_integer_cases()) check_up(c, seed += 10);
}

TEST_CASE("fast cpu convolutions: every conv and up-conv layer of the default U-Net at 8x8", "[cpu][conv2d]") {
  for (const ConvCase& c : test::unet_conv_cases(8)) check_conv(c, 700 + c.shape.c_in);
  for (const UpCase& c : test::unet_up_cases(8)) check_up(c, 800 + c.shape.c_in);
}

namespace {

// Every pass of a conv and an up-conv at 1 and at 2 threads.
void check_thread_independence(const Conv2dShape& s, const ConvTranspose2dShape& u) {
  INFO("conv " << s.n << "x" << s.h << "x" << s.w << ", " << s.c_in << " -> " << s.c_out << "; up-conv " << u.n << "x"
               << u.h << "x" << u.w << ", " << u.c_in << " -> " << u.c_out);
  const int64_t p = int64_t{s.n} * s.h * s.w, pu = int64_t{u.n} * u.h * u.w;
  const auto x = test::random_uniform(p * s.c_in, 1), weight = test::random_uniform(9 * s.c_in * s.c_out, 2);
  const auto bias = test::random_uniform(s.c_out, 3), dy = test::random_uniform(p * s.c_out, 4);
  const auto ux = test::random_uniform(pu * u.c_in, 5), uweight = test::random_uniform(4 * u.c_in * u.c_out, 6);
  const auto udy = test::random_uniform(4 * pu * u.c_out, 7), ubias = test::random_uniform(u.c_out, 8);
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
    cpu::fast::conv_transpose2d_forward(u, ux.data(), u.c_in, uweight.data(), ubias.data(), results[4].data(),
                                        u.c_out);
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

}  // namespace

TEST_CASE("fast cpu convolutions: every pass gives the same bits at 1 and 2 threads", "[cpu][conv2d]") {
  // Several pixel tiles; weight gradients (C of 11,520 and 6,144 values) in 16 pixel chunks.
  check_thread_independence(conv_shape(2, 24, 30, 32, 40, 3), up_shape(2, 12, 30, 48, 32));
  // Weight gradients with B packed per block (128 and 96 rows: 16 row tiles or more).
  check_thread_independence(conv_shape(2, 16, 16, 32, 128, 3), up_shape(2, 8, 8, 96, 32));
  // Weight gradients (C of 552,960 and 557,056 values) too large for two partial sums: their C
  // tiles are split between the threads.
  check_thread_independence(conv_shape(1, 4, 5, 256, 240, 3), up_shape(1, 3, 4, 512, 272));
}

TEST_CASE("fast cpu convolutions: weight gradients too large for pixel chunks", "[cpu][conv2d]") {
  check_conv({conv_shape(1, 4, 5, 256, 240, 3), true}, 900);
  check_conv({conv_shape(1, 3, 4, 256, 240, 3), true, true, {}, {}, true}, 910);
  check_up({up_shape(1, 3, 4, 512, 272)}, 920);
  check_up({up_shape(1, 3, 3, 512, 272), true, {}, {}, true}, 930);
}

TEST_CASE("fast cpu kernels: UNET_CPU_KERNELS names an instruction set", "[cpu]") {
  CHECK(cpu::fast::parse_cpu_kernels("generic") == CpuKernels::generic);
  CHECK(cpu::fast::parse_cpu_kernels("avx2") == CpuKernels::avx2);
  CHECK_FALSE(cpu::fast::parse_cpu_kernels("AVX2").has_value());
  CHECK_FALSE(cpu::fast::parse_cpu_kernels("").has_value());
  CHECK(cpu::fast::supported(CpuKernels::generic));
}
