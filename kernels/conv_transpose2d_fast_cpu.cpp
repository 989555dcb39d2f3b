// conv_transpose2d: the fast CPU kernels (conv_transpose2d.h), every pass a GEMM of gemm_cpu.h.
// With P = N*H*W input pixels, tap t = 2r + s and out(p, t) = conv_transpose2d_output_pixel:
//
//   forward          per tap t: tap_gemm  M = P, N = Cout, K = Cin    A(p) = x(p, :), C row = y(out(p, t), :)
//                                B(i, o) = W(i, t, o); bias in the epilogue. Four GEMMs of one tap
//                                each, so that every C row is one contiguous output pixel.
//   backward_data    tap_gemm    M = P, N = Cin, K = 4 x Cout     A_t(p) = dy(out(p, t), :)
//                                B(t*Cout + o, i) = W(i, t, o); beta in the prologue
//   backward_weight  reduce_gemm M = Cin, N = Cout per tap        A(q, i) = x(q, i), B_t(q, o) = dy(out(q, t), o):
//                                along an input row, out(q, t) steps by 2 output pixels
//   backward_bias    column sums of dy over the 4P output pixels
#include <cstdint>
#include <vector>

#include "kernels/gemm_cpu.h"
#include "kernels/conv_fast_cpu_isa.h"

namespace unet::cpu::fast::UNET_CPU_ISA {

namespace {

int64_t output_pixel(const ConvTranspose2dShape& s, int64_t p, int tap) {
  return conv_transpose2d_output_pixel(p, static_cast<int>(p % s.w), s.w, tap / 2, tap % 2);
}

}  // namespace

void conv_transpose2d_forward(const ConvTranspose2dShape& s, const float* x, int x_stride, const float* weight,
                              const float* bias, float* y, int y_stride) {
  const int64_t panel_values = int64_t{(s.c_out + kTileColumns - 1) / kTileColumns} * s.c_in * kTileColumns;
  std::vector<float>& panels = scratch(0);
  panels.resize(static_cast<size_t>(4 * panel_values));
  for (int tap = 0; tap < 4; ++tap) {
    pack_panels(
        s.c_in, s.c_out, [&](int64_t i, int o) { return weight[(i * 4 + tap) * s.c_out + o]; }, scratch(2));
    std::copy(scratch(2).begin(), scratch(2).end(), panels.begin() + tap * panel_values);
  }
  const int64_t no_offset = 0;
  for (int tap = 0; tap < 4; ++tap) {
    const TapGemm gemm{int64_t{s.n} * s.h * s.w, 1, s.c_in, s.c_out, panels.data() + tap * panel_values, bias,
                       false, 0.0f, &no_offset};
    tap_gemm(
        gemm, [&](int64_t p) { return x + p * x_stride; },
        [&](int64_t p) { return y + output_pixel(s, p, tap) * y_stride; });
  }
}

void conv_transpose2d_backward_data(const ConvTranspose2dShape& s, const float* dy, int dy_stride,
                                    const float* weight, float beta, float* dx, int dx_stride) {
  std::vector<float>& panels = scratch(0);
  pack_panels(
      int64_t{4} * s.c_out, s.c_in, [&](int64_t k, int i) { return weight[i * 4 * int64_t{s.c_out} + k]; }, panels);
  // out(p, t) = out(p, 0) + r * 2W + s: the taps are fixed offsets from the first.
  const int64_t offsets[4] = {0, dy_stride, 2 * int64_t{s.w} * dy_stride, (2 * int64_t{s.w} + 1) * dy_stride};
  const TapGemm gemm{int64_t{s.n} * s.h * s.w, 4, s.c_out, s.c_in, panels.data(), nullptr, false, beta, offsets};
  tap_gemm(
      gemm, [&](int64_t p) { return dy + output_pixel(s, p, 0) * dy_stride; },
      [&](int64_t p) { return dx + p * dx_stride; });
}

void conv_transpose2d_backward_weight(const ConvTranspose2dShape& s, const float* x, int x_stride,
                                      const float* dy, int dy_stride, float beta, float* dweight) {
  const ReduceGemm gemm{s.c_in, 4, s.c_out, int64_t{s.n} * s.h, s.w, x, x_stride, nullptr, 0, beta, dweight,
                        4 * int64_t{s.c_out}};
  auto segment_of = [&](int tap, int64_t row) {
    return Segment{0, s.w, dy + output_pixel(s, row * s.w, tap) * dy_stride, 2 * int64_t{dy_stride}};
  };
  reduce_gemm(gemm, segment_of, conv_transpose2d_macs(s));
}

void conv_transpose2d_backward_bias(const ConvTranspose2dShape& s, const float* dy, int dy_stride, float beta,
                                    float* dbias) {
  column_sums(int64_t{s.n} * 4 * s.h * s.w, s.c_out, dy, dy_stride, nullptr, 0, beta, dbias);
}

}  // namespace unet::cpu::fast::UNET_CPU_ISA
