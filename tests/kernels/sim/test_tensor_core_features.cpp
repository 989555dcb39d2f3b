// The tensor-core instructions of the dialect (kernels/tensor_core.h) against known answers.
// Compiled twice: for sim (always run) and for cuda (run where a GPU is present): the cuda run is
// the proof that sim's fragment layouts are the hardware's.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/rounding.h"
#include "tests/kernels/sim/tensor_core_kernels.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer;

namespace {

constexpr DeviceKind kDevice = DeviceKind::UNET_TEST_DEVICE;
using Kernels = TensorCoreKernels<kDevice>;
Device& dev() { return device(kDevice); }

// Distinct small integers: every product and partial sum of the tiles below is exact in fp32, so
// any summation order gives the same bits, on sim and on hardware.
std::vector<float> distinct_integers(int count, int first, int step) {
  std::vector<float> values(count);
  for (int i = 0; i < count; ++i) values[i] = static_cast<float>((first + i * step) % 23 - 11);
  return values;
}

// d = a b + c for row-major a (16, K), b (K, 8), c (16, 8).
std::vector<float> multiply_add(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                                int k) {
  std::vector<float> d(c);
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      for (int kk = 0; kk < k; ++kk) d[i * 8 + j] += a[i * k + kk] * b[kk * 8 + j];
    }
  }
  return d;
}

}  // namespace

TEST_CASE("mma.sync m16n8k8 tf32: distinct small integers give the exact product", "[features][tensor-core]") {
  const auto a = distinct_integers(16 * 8, 0, 5), b = distinct_integers(8 * 8, 3, 7), c = distinct_integers(128, 1, 3);
  DeviceBuffer<float> da(dev(), a), db(dev(), b), dc(dev(), c), dd(dev(), 128);
  dd.poison();
  Kernels::mma_tf32(da.data(), db.data(), dc.data(), dd.data(), {});
  CHECK(dd.download() == multiply_add(a, b, c, 8));
}

TEST_CASE("mma.sync m16n8k16 bf16: distinct small integers give the exact product", "[features][tensor-core]") {
  const auto a = distinct_integers(16 * 16, 2, 5), b = distinct_integers(16 * 8, 4, 7);
  const auto c = distinct_integers(128, 6, 3);
  DeviceBuffer<float> da(dev(), a), db(dev(), b), dc(dev(), c), dd(dev(), 128);
  dd.poison();
  Kernels::mma_bf16(da.data(), db.data(), dc.data(), dd.data(), {});
  CHECK(dd.download() == multiply_add(a, b, c, 16));
}

TEST_CASE("mma.sync tf32 rounds where the operands were rounded, then accumulates in fp32", "[features][tensor-core]") {
  // 1 + 2^-11 is a tf32 tie: cvt.rna takes it to 1 + 2^-10. a(0, 0) = that, b(0, 0) = 1, all else 0.
  std::vector<float> a(128, 0.0f), b(64, 0.0f), c(128, 0.0f);
  a[0] = 1.0f + 1.0f / 2048;
  b[0] = 1.0f;
  DeviceBuffer<float> da(dev(), a), db(dev(), b), dc(dev(), c), dd(dev(), 128);
  Kernels::mma_tf32(da.data(), db.data(), dc.data(), dd.data(), {});
  CHECK(dd.download()[0] == 1.0f + 1.0f / 1024);
}

TEST_CASE("ldmatrix returns the documented element in every lane, x1, x2, x4 and .trans", "[features][tensor-core]") {
  std::vector<uint16_t> matrices(4 * 64);
  for (int i = 0; i < 4 * 64; ++i) matrices[i] = static_cast<uint16_t>(0x1000 + i);  // (matrix, row, col)
  DeviceBuffer<uint16_t> dm(dev(), matrices);
  DeviceBuffer<uint32_t> dr(dev(), std::vector<uint32_t>(6 * 32 * 4, 0xdeadbeefu));
  Kernels::ldmatrix(dm.data(), dr.data(), {});
  const auto registers = dr.download();
  const auto element = [&](int j, int row, int col) { return uint32_t{matrices[j * 64 + row * 8 + col]}; };
  const int counts[3] = {1, 2, 4};
  for (int variant = 0; variant < 6; ++variant) {
    const bool transpose = variant >= 3;
    const int n = counts[variant % 3];
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, t = lane % 4;
      for (int j = 0; j < 4; ++j) {
        INFO("x" << n << (transpose ? ".trans" : "") << ", lane " << lane << ", d[" << j << "]");
        const uint32_t expected = j >= n ? 0xdeadbeefu
                                  : transpose ? element(j, 2 * t, g) | element(j, 2 * t + 1, g) << 16
                                              : element(j, g, 2 * t) | element(j, g, 2 * t + 1) << 16;
        REQUIRE(registers[(variant * 32 + lane) * 4 + j] == expected);
      }
    }
  }
}

TEST_CASE("cp.async: sizes, zero-fill, groups land at the wait_group that covers them", "[features][tensor-core]") {
  std::vector<float> x(192);
  for (int i = 0; i < 192; ++i) x[i] = static_cast<float>(i + 1);
  DeviceBuffer<float> dx(dev(), x), dout(dev(), 64 * 8);
  dout.poison();
  Kernels::cp_async_groups(dx.data(), dout.data(), {});
  const auto out = dout.download();
  for (int t = 0; t < 64; ++t) {
    INFO("thread " << t);
    const float* mine = &out[t * 8];
    CHECK(mine[1] == x[t]);  // group 0 is complete after wait_group<2>
    CHECK(mine[3] == (t < 16 ? x[64 + 4 * t] : 0.0f));
    CHECK(mine[4] == (t < 32 ? x[128 + 2 * t] : 0.0f));
    CHECK(mine[5] == 0.0f);  // src-size 4 of 8 bytes: zero-filled
    CHECK(mine[6] == 0.0f);  // src-size 0
    CHECK(mine[7] == x[(t + 1) % 64]);
    // What a thread reads before the wait is undefined on a GPU; sim makes it NaN, so that
    // reading too early fails a test.
    if (kDevice == DeviceKind::sim) {
      CHECK(std::isnan(mine[0]));
      if (t < 16) CHECK(std::isnan(mine[2]));  // group 1 is still in flight after wait_group<2>
    }
  }
}

TEST_CASE("cvt.rna.tf32.f32 and cvt.rn.bf16x2.f32 match kernels/rounding.h bit for bit", "[features][tensor-core]") {
  std::vector<uint32_t> patterns = {0x3f800000u, 0x3f801000u, 0x3f803000u, 0xbf801000u, 0x3f808000u, 0x3f818000u,
                                    0x00001000u, 0x007ff000u, 0x00008000u, 0x007fffffu, 0x7f7ff000u, 0x7f7f8000u,
                                    0x7f800000u, 0xff800000u, 0x80000000u, 0x00000001u};
  const auto random = test::random_uniform(1000, 17, -1000.0f, 1000.0f);
  for (float v : random) patterns.push_back(bits_float(float_bits(v)));
  std::vector<float> x(patterns.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = bits_float(patterns[i]);
  const int n = static_cast<int>(x.size());
  DeviceBuffer<float> dx(dev(), x);
  DeviceBuffer<uint32_t> dtf32(dev(), n), dbf16(dev(), n);
  Kernels::conversions(n, dx.data(), dtf32.data(), dbf16.data(), {});
  const auto tf32 = dtf32.download(), bf16 = dbf16.download();
  for (int i = 0; i < n; ++i) {
    INFO(std::hex << patterns[i]);
    REQUIRE(tf32[i] == tf32_bits(x[i]));
    REQUIRE(bf16[i] == (uint32_t{bf16_bits(x[i])} | uint32_t{bf16_bits(-x[i])} << 16));
  }
}

TEST_CASE("cp.async data is visible to other threads after __syncthreads", "[features][tensor-core]") {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i * 3 + 1);
  DeviceBuffer<float> dx(dev(), x), dy(dev(), 64);
  Kernels::neighbour_after_wait(true, dx.data(), dy.data(), {});
  const auto y = dy.download();
  for (int t = 0; t < 64; ++t) CHECK(y[t] == x[t > 0 ? t - 1 : 0]);
}
