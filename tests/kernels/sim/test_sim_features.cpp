// The kernel dialect feature by feature, against plain host computations. Compiled twice: for the
// sim device (always run) and for cuda (run where a GPU is present, skipped elsewhere).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "tests/kernels/sim/feature_kernels.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::dev, test::kDevice;

namespace {

using Kernels = FeatureKernels<kDevice>;

}  // namespace

TEST_CASE("grid-stride loop covers more elements than threads", "[features]") {
  for (int n : {1, 127, 1000, 5000}) {
    const auto x = test::random_uniform(n, 1);
    const auto y0 = test::random_uniform(n, 2);
    DeviceBuffer<float> dx(dev(), x), dy(dev(), y0);
    Kernels::saxpy(n, 2.5f, dx.data(), dy.data(), {});
    const auto y = dy.download();
    // nvcc contracts a * x + y into one fused multiply-add, rounded once; the host compiler rounds
    // the product first. Both are right, and they differ in about a fifth of these elements.
    for (int i = 0; i < n; ++i) {
      INFO("element " << i);
      REQUIRE((y[i] == 2.5f * x[i] + y0[i] || y[i] == std::fma(2.5f, x[i], y0[i])));
    }
  }
}

TEST_CASE("shared-memory tiled transpose with 2-D blocks and bank padding", "[features]") {
  for (auto [rows, cols] : {std::pair{1, 1}, {32, 32}, {37, 70}, {100, 3}}) {
    const auto in = test::random_uniform(rows * cols, 3);
    DeviceBuffer<float> din(dev(), in), dout(dev(), rows * cols);
    dout.poison();
    Kernels::transpose(rows, cols, din.data(), dout.data(), {});
    const auto out = dout.download();
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) REQUIRE(out[c * rows + r] == in[r * cols + c]);
    }
  }
}

TEST_CASE("block reduction with warp shuffles and __syncthreads", "[features]") {
  for (int threads : {32, 256, 1024}) {
    const int n = 3 * threads + 17;
    const auto x = test::random_integers(n, 4, -50, 50);  // integer sums are exact in any order
    const int blocks = static_cast<int>(ceil_div(n, threads));
    DeviceBuffer<float> dx(dev(), x), dsums(dev(), blocks);
    dsums.poison();
    Kernels::block_sums(n, threads, dx.data(), dsums.data(), {});
    const auto sums = dsums.download();
    for (int b = 0; b < blocks; ++b) {
      float expected = 0;
      for (int i = b * threads; i < std::min(n, (b + 1) * threads); ++i) expected += x[i];
      REQUIRE(sums[b] == expected);
    }
  }
}

TEST_CASE("atomic histogram in dynamic shared memory", "[features]") {
  const int n = 10000, bins = 37;
  std::vector<int> values(n);
  for (int i = 0; i < n; ++i) values[i] = (i * 7919) % bins;
  std::vector<int> expected(bins, 0);
  for (int v : values) ++expected[v];
  DeviceBuffer<int> dvalues(dev(), values), dcounts(dev(), std::vector<int>(bins, 0));
  Kernels::histogram(n, dvalues.data(), bins, dcounts.data(), {});
  REQUIRE(dcounts.download() == expected);
}

TEST_CASE("dynamic shared memory holds each block's slice", "[features]") {
  const int n = 300, threads = 128;
  const auto x = test::random_uniform(n, 5);
  DeviceBuffer<float> dx(dev(), x), dy(dev(), n);
  dy.poison();
  Kernels::reverse_blocks(n, threads, dx.data(), dy.data(), {});
  const auto y = dy.download();
  for (int base = 0; base < n; base += threads) {
    const int count = std::min(threads, n - base);
    for (int i = 0; i < count; ++i) REQUIRE(y[base + i] == x[base + count - 1 - i]);
  }
}

TEST_CASE("a 1024-thread block scans with __shfl_up_sync", "[features]") {
  const int segments = 3;
  std::vector<int> x(segments * 1024);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<int>(i % 13) - 6;
  DeviceBuffer<int> dx(dev(), x), dy(dev(), x.size());
  dy.poison();
  Kernels::scan_1024(segments, dx.data(), dy.data(), {});
  const auto y = dy.download();
  for (int s = 0; s < segments; ++s) {
    int running = 0;
    for (int i = 0; i < 1024; ++i) {
      running += x[s * 1024 + i];
      REQUIRE(y[s * 1024 + i] == running);
    }
  }
}

TEST_CASE("3-D grid of 3-D blocks: every thread sees its own indices", "[features]") {
  const int grid[3] = {3, 2, 2}, block[3] = {4, 3, 2};
  const int threads_per_block = block[0] * block[1] * block[2];
  const int total = grid[0] * grid[1] * grid[2] * threads_per_block;
  DeviceBuffer<int> dout(dev(), total * 6);
  dout.poison();
  Kernels::index_3d(grid, block, dout.data(), {});
  const auto out = dout.download();
  int global = 0;
  for (int bz = 0; bz < grid[2]; ++bz)
    for (int by = 0; by < grid[1]; ++by)
      for (int bx = 0; bx < grid[0]; ++bx)
        for (int tz = 0; tz < block[2]; ++tz)
          for (int ty = 0; ty < block[1]; ++ty)
            for (int tx = 0; tx < block[0]; ++tx, ++global) {
              const std::vector<int> expected = {bx, by, bz, tx, ty, tz};
              REQUIRE(std::vector<int>(out.begin() + global * 6, out.begin() + global * 6 + 6) == expected);
            }
}

TEST_CASE("__constant__ memory", "[features]") {
  const int n = 200;
  const float c[4] = {0.5f, -1.25f, 2.0f, 0.75f};
  const auto x = test::random_uniform(n, 6);
  DeviceBuffer<float> dx(dev(), x), dy(dev(), n);
  Kernels::polynomial(n, c, dx.data(), dy.data(), {});
  const auto y = dy.download();
  for (int i = 0; i < n; ++i) {
    const double expected = c[0] + x[i] * (c[1] + x[i] * (c[2] + x[i] * static_cast<double>(c[3])));
    REQUIRE(std::abs(y[i] - expected) < 1e-5);
  }
}

TEST_CASE("warp votes: ballot, any, all, and a half-warp mask", "[features]") {
  std::vector<int> predicate(32);
  for (int lane = 0; lane < 32; ++lane) predicate[lane] = (lane % 3 == 0) ? lane + 1 : 0;
  unsigned expected_ballot = 0;
  for (int lane = 0; lane < 32; ++lane) expected_ballot |= (predicate[lane] != 0 ? 1u : 0u) << lane;
  DeviceBuffer<int> dpredicate(dev(), predicate);
  DeviceBuffer<unsigned> dresults(dev(), 4);
  Kernels::warp_votes(dpredicate.data(), dresults.data(), {});
  const auto results = dresults.download();
  CHECK(results[0] == expected_ballot);
  CHECK(results[1] == 1u);
  CHECK(results[2] == 0u);
  CHECK(results[3] == (expected_ballot & 0xffffu));
}

TEST_CASE("warp shuffles: xor, segments, broadcast, down, up", "[features]") {
  const auto x = test::random_integers(32, 7, -20, 20);
  DeviceBuffer<float> dx(dev(), x), dresults(dev(), 32 * 5);
  Kernels::warp_shuffles(dx.data(), dresults.data(), {});
  const auto r = dresults.download();
  const float maximum = *std::max_element(x.begin(), x.end());
  for (int lane = 0; lane < 32; ++lane) {
    const int segment = lane / 8 * 8;
    const float segment_sum = std::accumulate(x.begin() + segment, x.begin() + segment + 8, 0.0f);
    CHECK(r[lane * 5 + 0] == maximum);
    CHECK(r[lane * 5 + 1] == segment_sum);
    CHECK(r[lane * 5 + 2] == x[3]);
    CHECK(r[lane * 5 + 3] == (lane + 5 < 32 ? x[lane + 5] : x[lane]));
    CHECK(r[lane * 5 + 4] == (lane % 16 >= 2 ? x[lane - 2] : x[lane]));
  }
}

TEST_CASE("float4 loads through __ldg, integer and float atomics", "[features]") {
  const int n4 = 100;
  const auto x = test::random_integers(n4 * 4, 8, 0, 1000);
  DeviceBuffer<float> dx(dev(), x), dtotal(dev(), std::vector<float>{0.0f});
  DeviceBuffer<int> dmax(dev(), std::vector<int>{0}), dslot(dev(), std::vector<int>{-1});
  Kernels::vector_atomics(n4, dx.data(), dmax.data(), dslot.data(), dtotal.data(), {});
  const float maximum = *std::max_element(x.begin(), x.end());
  int maximum_bits = 0;
  std::memcpy(&maximum_bits, &maximum, sizeof maximum_bits);
  CHECK(dmax.download()[0] == maximum_bits);
  const int slot = dslot.download()[0];
  CHECK((slot >= 0 && slot < n4));
  CHECK(dtotal.download()[0] == std::accumulate(x.begin(), x.end(), 0.0f));
}

TEST_CASE("math intrinsics agree with the C library to a few ulp", "[features]") {
  const int n = 100;
  const auto x = test::random_uniform(n, 9, 0.01f, 4.0f);
  DeviceBuffer<float> dx(dev(), x), dy(dev(), n * 5);
  Kernels::intrinsics(n, dx.data(), dy.data(), {});
  const auto y = dy.download();
  for (int i = 0; i < n; ++i) {
    const double v = x[i];
    const double expected[5] = {std::exp(v), std::log(v), 1.0 / v, 1.0 / std::sqrt(v), v * v + 1.0};
    for (int k = 0; k < 5; ++k) {
      INFO("element " << i << ", intrinsic " << k);
      CHECK(std::abs(y[i * 5 + k] - expected[k]) <= 1e-5 * std::max(1.0, std::abs(expected[k])));
    }
  }
}

TEST_CASE("a 1024-thread block launches, 1025 threads is an invalid configuration", "[features][errors]") {
  Kernels::launch_block(1024, 1, 1, {});
  Kernels::launch_block(16, 16, 4, {});
  dev().synchronize();
  CHECK_THROWS_WITH(Kernels::launch_block(1025, 1, 1, {}), Catch::Contains("invalid configuration argument"));
  CHECK_THROWS_WITH(Kernels::launch_block(32, 32, 2, {}), Catch::Contains("invalid configuration argument"));
}

TEST_CASE("dynamic shared memory over 48 KiB needs an opt-in", "[features][errors]") {
  Kernels::launch_dynamic_shared(48 * 1024, false, {});
  CHECK_THROWS_WITH(Kernels::launch_dynamic_shared(64 * 1024, false, {}), Catch::Contains("dynamic_shared_kernel"));
  Kernels::launch_dynamic_shared(64 * 1024, true, {});
  dev().synchronize();
}
