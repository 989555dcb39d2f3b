// conv2d: the fast CPU kernels (conv2d.h), every pass an implicit GEMM of gemm_cpu.h. With
// P = N*H*W pixels, T = k*k taps and (r, c) = (t / k, t % k) the tap's row and column:
//
//   forward          tap_gemm    M = P, N = Cout, K = T x Cin   A_t(p) = x(p + (r - k/2, c - k/2), :)
//                                B(t*Cin + i, o) = W(o, r, c, i); bias and ReLU in the epilogue
//   backward_data    tap_gemm    M = P, N = Cin, K = T x Cout   A_t(p) = g(p + (k/2 - r, k/2 - c), :)
//                                B(t*Cout + o, i) = W(o, r, c, i); beta in the prologue
//   backward_weight  reduce_gemm M = Cout, N = Cin per tap      A(q, o) = g(q, o), B_t(q, i) = x(q + (r - k/2,
//                                c - k/2), i), one run per image row and tap over the pixels whose
//                                neighbour is inside the image
//   backward_bias    column sums of g
//
// where g = dy, or dy * (y > 0) when the forward fused ReLU: g is formed once per pass into
// scratch (P x Cout), so the micro-kernel reads plain values. The weights are packed into 16-column
// panels per call (T*Cin*Cout values, against P times as many multiply-adds).
#include <cstdint>
#include <vector>

#include "kernels/gemm_cpu.h"
#include "kernels/conv_fast_cpu_isa.h"

namespace unet::cpu::fast::UNET_CPU_ISA {

namespace {

// g = dy, masked by the fused ReLU's output if there was one: the values and their pixel stride.
struct Gradient {
  const float* values;
  int64_t stride;
};

Gradient output_gradient(const Conv2dShape& s, const float* dy, int dy_stride, const float* relu_output,
                         int relu_output_stride, int slot) {
  if (relu_output == nullptr) return {dy, dy_stride};
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  std::vector<float>& g = scratch(slot);
  g.resize(static_cast<size_t>(pixels) * s.c_out);
#pragma omp parallel for schedule(static) if (worth_parallel(pixels * s.c_out * 64))
  for (int64_t p = 0; p < pixels; ++p) {
    for (int o = 0; o < s.c_out; ++o) {
      g[p * s.c_out + o] = relu_output[p * relu_output_stride + o] > 0.0f ? dy[p * dy_stride + o] : 0.0f;
    }
  }
  return {g.data(), s.c_out};
}

// Pixel p's neighbour at offset (dr, ds), or -1 where that is padding.
int64_t neighbour(const Conv2dShape& s, int64_t p, int dr, int ds) {
  const int h = static_cast<int>(p / s.w % s.h), w = static_cast<int>(p % s.w);
  if (h + dr < 0 || h + dr >= s.h || w + ds < 0 || w + ds >= s.w) return -1;
  return p + int64_t{dr} * s.w + ds;
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, int x_stride, const float* weight, const float* bias,
                    bool relu, float* y, int y_stride) {
  const int pad = s.k / 2, taps = s.k * s.k;
  const int64_t depth = int64_t{taps} * s.c_in;  // one output channel's weights
  std::vector<float>& panels = scratch(0);
  pack_panels(depth, s.c_out, [&](int64_t k, int o) { return weight[o * depth + k]; }, panels);
  const TapGemm gemm{int64_t{s.n} * s.h * s.w, taps, s.c_in, s.c_out, panels.data(), bias, relu, 0.0f,
                     zeros(s.c_in, 1)};
  tap_gemm(
      gemm,
      [&](int64_t p, int t) -> const float* {
        const int64_t q = neighbour(s, p, t / s.k - pad, t % s.k - pad);
        return q < 0 ? nullptr : x + q * x_stride;
      },
      [&](int64_t p) { return y + p * y_stride; });
}

void conv2d_backward_data(const Conv2dShape& s, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, const float* weight, float beta, float* dx, int dx_stride) {
  const int pad = s.k / 2, taps = s.k * s.k;
  const int64_t weight_row = int64_t{taps} * s.c_in;
  const Gradient g = output_gradient(s, dy, dy_stride, relu_output, relu_output_stride, 2);
  std::vector<float>& panels = scratch(0);
  pack_panels(
      int64_t{taps} * s.c_out, s.c_in,
      [&](int64_t k, int i) { return weight[k % s.c_out * weight_row + k / s.c_out * s.c_in + i]; }, panels);
  const TapGemm gemm{int64_t{s.n} * s.h * s.w, taps, s.c_out, s.c_in, panels.data(), nullptr, false, beta,
                     zeros(s.c_out, 1)};
  // Output pixel p - (r - pad, c - pad) saw input pixel p through tap (r, c).
  tap_gemm(
      gemm,
      [&](int64_t p, int t) -> const float* {
        const int64_t q = neighbour(s, p, pad - t / s.k, pad - t % s.k);
        return q < 0 ? nullptr : g.values + q * g.stride;
      },
      [&](int64_t p) { return dx + p * dx_stride; });
}

void conv2d_backward_weight(const Conv2dShape& s, const float* x, int x_stride, const float* dy, int dy_stride,
                            const float* relu_output, int relu_output_stride, float beta, float* dweight) {
  const int pad = s.k / 2, taps = s.k * s.k;
  const Gradient g = output_gradient(s, dy, dy_stride, relu_output, relu_output_stride, 2);
  const ReduceGemm gemm{s.c_out, taps, s.c_in, int64_t{s.n} * s.h, chunk_rows(s.w, s.c_in + s.c_out), beta,
                        dweight, int64_t{taps} * s.c_in};
  // Row (n, h), tap (r, c): the pixels w whose neighbour (h + r - pad, w + c - pad) is inside.
  auto segment_of = [&](int t, int64_t row) {
    const int dr = t / s.k - pad, ds = t % s.k - pad;
    const int h = static_cast<int>(row % s.h);
    Segment segment;
    if (h + dr < 0 || h + dr >= s.h) return segment;
    const int w_begin = std::max(0, -ds), w_end = std::min(s.w, s.w - ds);
    const int64_t p = row * s.w + w_begin;
    segment.a = g.values + p * g.stride;
    segment.a_step = g.stride;
    segment.b = x + (p + int64_t{dr} * s.w + ds) * x_stride;
    segment.b_step = x_stride;
    segment.count = w_end - w_begin;
    return segment;
  };
  reduce_gemm(gemm, segment_of, conv2d_macs(s));
}

void conv2d_backward_bias(const Conv2dShape& s, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, float beta, float* dbias) {
  const Gradient g = output_gradient(s, dy, dy_stride, relu_output, relu_output_stride, 2);
  column_sums(int64_t{s.n} * s.h * s.w, s.c_out, g.values, g.stride, beta, dbias);
}

}  // namespace unet::cpu::fast::UNET_CPU_ISA
