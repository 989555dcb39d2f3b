// max_pool2d: the cpu device's kernels (max_pool2d.h), the reference's definitions written without
// branches so that the compiler vectorises the loop over a pixel's channels (the reference's
// data-dependent branches keep it scalar, and make the pool compute-bound instead of memory-bound).
// Compiled with the baseline flags: a memory-bound op gains nothing from wider vectors.
#include <cstdint>

#include "kernels/max_pool2d.h"

namespace unet::cpu::fast {

void max_pool2d_forward(const PoolShape& s, const float* x, int x_stride, float* y, int y_stride, uint8_t* argmax) {
  const int out_h = s.h / 2, out_w = s.w / 2, c = s.c;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < s.n; ++n) {
    for (int oh = 0; oh < out_h; ++oh) {
      for (int ow = 0; ow < out_w; ++ow) {
        const int64_t out_pixel = (int64_t{n} * out_h + oh) * out_w + ow;
        const int64_t top_left = (int64_t{n} * s.h + 2 * oh) * s.w + 2 * ow;
        const float* window[4] = {x + top_left * x_stride, x + (top_left + 1) * x_stride,
                                  x + (top_left + s.w) * x_stride, x + (top_left + s.w + 1) * x_stride};
        float* out = y + out_pixel * y_stride;
        uint8_t* index = argmax + out_pixel * c;
        for (int ch = 0; ch < c; ++ch) {
          float best = window[0][ch];
          uint8_t best_index = 0;
          for (int k = 1; k < 4; ++k) {
            const float v = window[k][ch];
            const bool replaces = v > best || v != v;  // PyTorch's rule, as in the reference
            best = replaces ? v : best;
            best_index = replaces ? static_cast<uint8_t>(k) : best_index;
          }
          out[ch] = best;
          index[ch] = best_index;
        }
      }
    }
  }
}

void max_pool2d_backward(const PoolShape& s, const float* dy, int dy_stride, const uint8_t* argmax, float beta,
                         float* dx, int dx_stride) {
  const int out_h = s.h / 2, out_w = s.w / 2, c = s.c;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < s.n; ++n) {
    for (int ih = 0; ih < s.h; ++ih) {
      for (int iw = 0; iw < s.w; ++iw) {
        const int64_t in_pixel = (int64_t{n} * s.h + ih) * s.w + iw;
        const int oh = ih / 2, ow = iw / 2;
        float* out = dx + in_pixel * dx_stride;
        if (oh >= out_h || ow >= out_w) {  // the dropped row/column of an odd input
          for (int ch = 0; ch < c; ++ch) out[ch] = beta == 0.0f ? 0.0f : beta * out[ch];
          continue;
        }
        const int64_t out_pixel = (int64_t{n} * out_h + oh) * out_w + ow;
        const uint8_t position = static_cast<uint8_t>(2 * (ih % 2) + iw % 2);
        const float* g = dy + out_pixel * dy_stride;
        const uint8_t* index = argmax + out_pixel * c;
        if (beta == 0.0f) {  // overwrites, even NaN
          for (int ch = 0; ch < c; ++ch) out[ch] = index[ch] == position ? g[ch] : 0.0f;
        } else {
          for (int ch = 0; ch < c; ++ch) out[ch] = beta * out[ch] + (index[ch] == position ? g[ch] : 0.0f);
        }
      }
    }
  }
}

}  // namespace unet::cpu::fast
