// The benchmarks' arithmetic that needs no GPU: the cuBLAS argument mapping for the GEMM-shaped
// layers (a wrong leading dimension would read out of bounds on the GPU), the median and the
// repetition count, and the card table behind "% of peak".
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "bench/card.h"
#include "bench/gemm.h"
#include "bench/timing.h"

using namespace unet;
using namespace unet::bench;

namespace {

// A column-major SGEMM exactly as BLAS defines it (alpha 1, beta 0), which fails the test (rather
// than reading past a buffer) if an index leaves its operand.
void sgemm_column_major(const ColumnMajorGemm& g, const std::vector<float>& a, const std::vector<float>& b,
                        std::vector<float>& c) {
  const auto at = [](const std::vector<float>& m, int64_t index) {
    REQUIRE(index >= 0);
    REQUIRE(index < static_cast<int64_t>(m.size()));
    return m[index];
  };
  for (int j = 0; j < g.n; ++j) {
    for (int i = 0; i < g.m; ++i) {
      double sum = 0;
      for (int p = 0; p < g.k; ++p) {
        const float av = g.transpose_a ? at(a, i * int64_t{g.lda} + p) : at(a, p * int64_t{g.lda} + i);
        const float bv = g.transpose_b ? at(b, p * int64_t{g.ldb} + j) : at(b, j * int64_t{g.ldb} + p);
        sum += double{av} * bv;
      }
      const int64_t index = j * int64_t{g.ldc} + i;
      REQUIRE(index < static_cast<int64_t>(c.size()));
      c[index] = static_cast<float>(sum);
    }
  }
}

std::vector<float> random(size_t count, unsigned seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> small(-3, 3);  // exact sums
  std::vector<float> values(count);
  for (float& v : values) v = static_cast<float>(small(generator));
  return values;
}

// Every operand of a layer, dense, in our layouts (GEMM order for the up-conv's y and dy).
struct Operands {
  std::vector<float> v[6];
  std::vector<float>& operator[](Operand o) { return v[static_cast<int>(o)]; }
};

Operands make_operands(const LayerShape& l) {
  const int64_t pixels = int64_t{l.n} * l.h * l.w;
  const int64_t wide_out = (l.kind == LayerKind::up_conv ? 4 : 1) * int64_t{l.c_out};
  Operands o;
  o[Operand::x] = random(pixels * l.c_in, 1);
  o[Operand::dy] = random(pixels * wide_out, 2);
  o[Operand::weight] = random(l.c_in * wide_out, 3);
  o[Operand::y].assign(pixels * wide_out, NAN);
  o[Operand::dx].assign(pixels * l.c_in, NAN);
  o[Operand::dweight].assign(l.c_in * wide_out, NAN);
  return o;
}

std::vector<float> run(const LayerShape& l, Pass pass, Operands& o) {
  const RowMajorGemm row = layer_gemm(l, pass);
  const ColumnMajorGemm column = to_column_major(row);
  sgemm_column_major(column, o[column.a], o[column.b], o[column.c]);
  return o[column.c];
}

}  // namespace

TEST_CASE("bench gemm: the 1x1 head's three passes as cuBLAS computes them", "[bench]") {
  for (const int c_out : {1, 3}) {
    const LayerShape head{"head", LayerKind::conv1x1, 2, 3, 5, 4, c_out};
    const int pixels = 2 * 3 * 5, ci = 4, co = c_out;
    INFO("c_out " << c_out);
    Operands o = make_operands(head);
    const auto& x = o[Operand::x];
    const auto& dy = o[Operand::dy];
    const auto& w = o[Operand::weight];  // (Cout, Cin), OHWI with 1x1

    const auto y = run(head, Pass::forward, o);
    const auto dx = run(head, Pass::backward_data, o);
    const auto dw = run(head, Pass::backward_weight, o);
    for (int p = 0; p < pixels; ++p) {
      for (int j = 0; j < co; ++j) {
        float sum = 0;
        for (int i = 0; i < ci; ++i) sum += x[p * ci + i] * w[j * ci + i];
        CHECK(y[p * co + j] == sum);
      }
      for (int i = 0; i < ci; ++i) {
        float sum = 0;
        for (int j = 0; j < co; ++j) sum += dy[p * co + j] * w[j * ci + i];
        CHECK(dx[p * ci + i] == sum);
      }
    }
    for (int j = 0; j < co; ++j) {
      for (int i = 0; i < ci; ++i) {
        float sum = 0;
        for (int p = 0; p < pixels; ++p) sum += dy[p * co + j] * x[p * ci + i];
        CHECK(dw[j * ci + i] == sum);
      }
    }
  }
}

TEST_CASE("bench gemm: the up-conv's four 1x1 GEMMs as one cuBLAS call", "[bench]") {
  const LayerShape up{"decoder.0.up", LayerKind::up_conv, 2, 3, 5, 6, 3};
  const int pixels = 2 * 3 * 5, ci = 6, co = 3;
  Operands o = make_operands(up);
  const auto& x = o[Operand::x];
  const auto& dy = o[Operand::dy];  // (P, 2, 2, Cout): each input pixel's four output pixels
  const auto& w = o[Operand::weight];  // (Cin, 2, 2, Cout)

  const auto y = run(up, Pass::forward, o);
  const auto dx = run(up, Pass::backward_data, o);
  const auto dw = run(up, Pass::backward_weight, o);
  for (int p = 0; p < pixels; ++p) {
    for (int tap = 0; tap < 4; ++tap) {
      for (int j = 0; j < co; ++j) {  // y(n, 2h+r, 2w+s, o) = sum_i x(n,h,w,i) W(i,r,s,o), tap = 2r+s
        float sum = 0;
        for (int i = 0; i < ci; ++i) sum += x[p * ci + i] * w[(i * 4 + tap) * co + j];
        CHECK(y[(p * 4 + tap) * co + j] == sum);
      }
    }
    for (int i = 0; i < ci; ++i) {
      float sum = 0;
      for (int t = 0; t < 4 * co; ++t) sum += dy[p * 4 * co + t] * w[i * 4 * co + t];
      CHECK(dx[p * ci + i] == sum);
    }
  }
  for (int i = 0; i < ci; ++i) {
    for (int t = 0; t < 4 * co; ++t) {
      float sum = 0;
      for (int p = 0; p < pixels; ++p) sum += x[p * ci + i] * dy[p * 4 * co + t];
      CHECK(dw[i * 4 * co + t] == sum);
    }
  }
}

TEST_CASE("bench timing: the median of the repetitions, and how many", "[bench]") {
  const Timing odd = summarize({3.0, 1.0, 2.0});
  CHECK(odd.median_ms == 2.0);
  CHECK(odd.min_ms == 1.0);
  CHECK(odd.max_ms == 3.0);
  CHECK(odd.repetitions == 3);
  CHECK(summarize({4.0, 1.0, 2.0, 3.0}).median_ms == 2.5);

  CHECK(repetitions(1.0, 200, 3, 21) == 21);    // quick: the most
  CHECK(repetitions(20.0, 200, 3, 21) == 10);   // as many as fit
  CHECK(repetitions(900.0, 200, 3, 21) == 3);   // slow: the fewest
}

TEST_CASE("bench card: peaks only for the cards the project has figures for", "[bench]") {
  const auto h100 = card_peaks("NVIDIA H100 80GB HBM3");
  REQUIRE(h100);
  CHECK(h100->fp32_tflops == 67);
  CHECK(h100->tf32_tflops == 495);
  CHECK(h100->bf16_tflops == 989);
  CHECK(h100->memory_gbs == 3350);
  const auto h200 = card_peaks("NVIDIA H200");
  REQUIRE(h200);
  CHECK(h200->fp32_tflops == 67);
  CHECK(h200->memory_gbs == 4800);
  CHECK_FALSE(card_peaks("NVIDIA H100 PCIe"));
  CHECK_FALSE(card_peaks("NVIDIA H100 NVL"));
  CHECK_FALSE(card_peaks("NVIDIA A100-SXM4-80GB"));
}
