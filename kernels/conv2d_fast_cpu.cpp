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
// where g = dy, or dy * (y > 0) when the forward fused ReLU. The taps of forward and backward_data
// read a dense copy of x or g with a zero border of k/2 pixels (g masked on the way), so every A row
// is at a fixed offset from its pixel's and the micro-kernel needs no bounds checks; the weight
// gradient reads x in place, one run of pixels per image row and tap, and g masked as reduce_gemm
// packs it.
// The 1-channel head's forward is a dot product per pixel; the weight gradient of layers of fewer
// than 8 input channels (the first) reads an im2col copy of x. The weights are packed into 16-column
// panels per call (T*Cin*Cout values, against P times as many multiply-adds).
#include <cstdint>
#include <vector>

#include "kernels/gemm_cpu.h"
#include "kernels/conv_fast_cpu_isa.h"

namespace unet::cpu::fast::UNET_CPU_ISA {

namespace {

// An activation (N, H, W, C) as the taps read it: in a dense copy with a zero border of k/2 pixels
// (masked by the fused ReLU's output where given), or in place where k = 1 and there is no mask.
struct TapInput {
  const float* values;
  int64_t pixel_stride;
  int64_t row_stride;  // from one (padded) row to the next
  int64_t image_stride;
  int pad;

  const float* pixel(const Conv2dShape& s, int64_t p) const {
    const int64_t n = p / (int64_t{s.h} * s.w), h = p / s.w % s.h, w = p % s.w;
    return values + n * image_stride + (h + pad) * row_stride + (w + pad) * pixel_stride;
  }
  // Where tap (r, c) of pixel p reads, relative to pixel p, with taps flipped for backward_data.
  int64_t tap_offset(int dr, int ds) const { return dr * row_stride + ds * pixel_stride; }
};

TapInput tap_input(const Conv2dShape& s, int channels, const float* in, int in_stride, const float* mask,
                   int mask_stride, int slot) {
  const int pad = s.k / 2;
  if (pad == 0 && mask == nullptr) {
    return {in, in_stride, int64_t{s.w} * in_stride, int64_t{s.h} * s.w * in_stride, 0};
  }
  const int64_t padded_w = s.w + 2 * pad, padded_h = s.h + 2 * pad;
  const TapInput padded{nullptr, channels, padded_w * channels, padded_h * padded_w * channels, pad};
  std::vector<float>& copy = scratch(slot);
  copy.resize(static_cast<size_t>(s.n * padded.image_stride));
  float* out = copy.data();
#pragma omp parallel for schedule(static) if (worth_parallel(s.n * padded_h * padded_w * channels * 16))
  for (int64_t row = 0; row < s.n * padded_h; ++row) {
    const int64_t n = row / padded_h, h = row % padded_h - pad;
    float* dst = out + row * padded.row_stride;
    if (h < 0 || h >= s.h) {
      std::fill(dst, dst + padded.row_stride, 0.0f);
      continue;
    }
    std::fill(dst, dst + pad * channels, 0.0f);
    std::fill(dst + (pad + s.w) * channels, dst + padded.row_stride, 0.0f);
    for (int w = 0; w < s.w; ++w) {
      const int64_t p = (n * s.h + h) * s.w + w;
      float* pixel = dst + (pad + w) * channels;
      for (int c = 0; c < channels; c += 8) {
        const int count = channels - c;
        const Vec8 value = load_first(in + p * in_stride + c, count);
        store_first(pixel + c, mask ? where_positive(load_first(mask + p * mask_stride + c, count), value) : value,
                    count);
      }
    }
  }
  TapInput result = padded;
  result.values = out;
  return result;
}

// The 1-channel head: y(p) = act(b + x(p, :) . W), one dot product per pixel.
void forward_one_output(const Conv2dShape& s, const float* x, int x_stride, const float* weight, const float* bias,
                        bool relu, float* y, int y_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
#pragma omp parallel for schedule(static) if (worth_parallel(pixels * s.c_in * 16))
  for (int64_t p = 0; p < pixels; ++p) {
    Vec8 acc = zero();
    for (int i = 0; i < s.c_in; i += 8) {
      acc = fma(load_first(x + p * x_stride + i, s.c_in - i), load_first(weight + i, s.c_in - i), acc);
    }
    float lanes[8];
    store(lanes, acc);
    const float sum = (bias ? bias[0] : 0.0f) + ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                      ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    y[p * y_stride] = relu && !(sum > 0.0f) ? 0.0f : sum;
  }
}

// Below this many input channels a tap's K is too short for the weight gradient's micro-kernel
// to fill its 16 columns (the 3-channel first layer: 3), so it reads all T x Cin values of each
// pixel's window at once from an im2col copy instead: one tap of K = T x Cin.
constexpr int kFewChannels = 8;

// The windows of x, (P, T x Cin) in rows of window_width(s) values (zeros past T x Cin), copied row
// by row of the window from x's padded copy. The padding lets the micro-kernel read whole 16-value
// rows of B.
int64_t window_width(const Conv2dShape& s) {
  return (int64_t{s.k} * s.k * s.c_in + kTileColumns - 1) / kTileColumns * kTileColumns;
}

const float* windows(const Conv2dShape& s, const float* x, int x_stride, int slot) {
  const TapInput in = tap_input(s, s.c_in, x, x_stride, nullptr, 0, slot);
  const int pad = s.k / 2;
  const int64_t pixels = int64_t{s.n} * s.h * s.w, width = window_width(s);
  const int64_t window_row = int64_t{s.k} * s.c_in;  // one row of a window: k pixels of the padded copy
  std::vector<float>& copy = scratch(slot + 1);
  copy.resize(static_cast<size_t>(pixels * width));
#pragma omp parallel for schedule(static) if (worth_parallel(pixels * width * 16))
  for (int64_t p = 0; p < pixels; ++p) {
    const float* corner = in.pixel(s, p) - in.tap_offset(pad, pad);
    float* out = copy.data() + p * width;
    for (int r = 0; r < s.k; ++r) {
      std::copy(corner + r * in.row_stride, corner + r * in.row_stride + window_row, out + r * window_row);
    }
    std::fill(out + s.k * window_row, out + width, 0.0f);
  }
  return copy.data();
}

// The taps' offsets, in a buffer of the calling thread that is reused (no allocation per step).
std::vector<int64_t>& tap_offsets(int taps) {
  thread_local std::vector<int64_t> offsets;
  offsets.resize(taps);
  return offsets;
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, int x_stride, const float* weight, const float* bias,
                    bool relu, float* y, int y_stride) {
  if (s.c_out == 1 && s.k == 1) return forward_one_output(s, x, x_stride, weight, bias, relu, y, y_stride);
  const int pad = s.k / 2, taps = s.k * s.k;
  const int64_t depth = int64_t{taps} * s.c_in;  // one output channel's weights
  std::vector<float>& panels = scratch(0);
  pack_panels(depth, s.c_out, [&](int64_t k, int o) { return weight[o * depth + k]; }, panels);
  const TapInput in = tap_input(s, s.c_in, x, x_stride, nullptr, 0, 1);
  std::vector<int64_t>& offsets = tap_offsets(taps);
  for (int t = 0; t < taps; ++t) offsets[t] = in.tap_offset(t / s.k - pad, t % s.k - pad);
  const TapGemm gemm{int64_t{s.n} * s.h * s.w, taps, s.c_in, s.c_out, panels.data(), bias, relu, 0.0f,
                     offsets.data()};
  tap_gemm(gemm, [&](int64_t p) { return in.pixel(s, p); }, [&](int64_t p) { return y + p * y_stride; });
}

void conv2d_backward_data(const Conv2dShape& s, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, const float* weight, float beta, float* dx, int dx_stride) {
  const int pad = s.k / 2, taps = s.k * s.k;
  const int64_t weight_row = int64_t{taps} * s.c_in;
  std::vector<float>& panels = scratch(0);
  pack_panels(
      int64_t{taps} * s.c_out, s.c_in,
      [&](int64_t k, int i) { return weight[k % s.c_out * weight_row + k / s.c_out * s.c_in + i]; }, panels);
  const TapInput g = tap_input(s, s.c_out, dy, dy_stride, relu_output, relu_output_stride, 1);
  // Output pixel p - (r - pad, c - pad) saw input pixel p through tap (r, c).
  std::vector<int64_t>& offsets = tap_offsets(taps);
  for (int t = 0; t < taps; ++t) offsets[t] = g.tap_offset(pad - t / s.k, pad - t % s.k);
  const TapGemm gemm{int64_t{s.n} * s.h * s.w, taps, s.c_out, s.c_in, panels.data(), nullptr, false, beta,
                     offsets.data()};
  tap_gemm(gemm, [&](int64_t p) { return g.pixel(s, p); }, [&](int64_t p) { return dx + p * dx_stride; });
}

void conv2d_backward_weight(const Conv2dShape& s, const float* x, int x_stride, const float* dy, int dy_stride,
                            const float* relu_output, int relu_output_stride, float beta, float* dweight) {
  const int pad = s.k / 2, taps = s.k * s.k;
  const int64_t pixel_rows = int64_t{s.n} * s.h;
  if (s.c_in < kFewChannels) {
    const int64_t width = window_width(s), columns = int64_t{taps} * s.c_in;
    const float* patches = windows(s, x, x_stride, 0);
    const ReduceGemm gemm{s.c_out, 1, static_cast<int>(columns), pixel_rows, s.w, dy, dy_stride,
                          relu_output, relu_output_stride, beta, dweight, columns, true};
    auto segment_of = [&](int, int64_t row) { return Segment{0, s.w, patches + row * s.w * width, width}; };
    reduce_gemm(gemm, segment_of, conv2d_macs(s));
    return;
  }
  const ReduceGemm gemm{s.c_out, taps, s.c_in, pixel_rows, s.w, dy, dy_stride, relu_output, relu_output_stride,
                        beta, dweight, int64_t{taps} * s.c_in};
  // Row (n, h), tap (r, c): the pixels w whose neighbour (h + r - pad, w + c - pad) is inside.
  auto segment_of = [&](int t, int64_t row) {
    const int dr = t / s.k - pad, ds = t % s.k - pad;
    const int h = static_cast<int>(row % s.h);
    if (h + dr < 0 || h + dr >= s.h) return Segment{};
    const int w_begin = std::max(0, -ds), w_end = std::min(s.w, s.w - ds);
    const int64_t p = row * s.w + w_begin;
    return Segment{w_begin, w_end - w_begin, x + (p + int64_t{dr} * s.w + ds) * x_stride, x_stride};
  };
  reduce_gemm(gemm, segment_of, conv2d_macs(s));
}

void conv2d_backward_bias(const Conv2dShape& s, const float* dy, int dy_stride, const float* relu_output,
                          int relu_output_stride, float beta, float* dbias) {
  column_sums(int64_t{s.n} * s.h * s.w, s.c_out, dy, dy_stride, relu_output, relu_output_stride, beta, dbias);
}

}  // namespace unet::cpu::fast::UNET_CPU_ISA
