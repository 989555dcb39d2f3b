// conv2d: the CPU reference (conv2d.h). Readable loops over the definitions, ordered so that the
// innermost loop runs over contiguous channels (of x and of a weight row, both NHWC/OHWI), and
// parallel over what each pass writes without races: pixels for forward and backward_data, output
// channels for the weight and bias gradients.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/rounding.h"

namespace unet::cpu {

namespace {

// The gradient flowing into the convolution's output: dy, masked by the fused ReLU if there was one.
template <class T>
T output_gradient(const T* dy, int dy_stride, const T* relu_output, int relu_output_stride, int64_t pixel, int o) {
  const T g = dy[pixel * dy_stride + o];
  if (relu_output == nullptr) return g;
  return relu_output[pixel * relu_output_stride + o] > T(0) ? g : T(0);
}

// Whether (h + dr, w + ds) lies inside the image: outside it, the zero padding contributes nothing.
bool inside(const Conv2dShape& s, int h, int w, int dr, int ds) {
  return h + dr >= 0 && h + dr < s.h && w + ds >= 0 && w + ds < s.w;
}

template <class T>
void write_gradient(T* out, T value, T beta) {
  *out = beta == T(0) ? value : beta * *out + value;  // beta = 0 overwrites, even NaN
}

// Below this many multiply-adds a parallel region costs more than it saves (and the gradient
// checks run thousands of tiny convolutions).
bool worth_parallel(const Conv2dShape& s) { return conv2d_macs(s) >= (int64_t{1} << 16); }

}  // namespace

template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, int x_stride, const T* weight, const T* bias, bool relu, T* y,
                    int y_stride) {
  const int pad = s.k / 2;
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const int64_t weight_row = int64_t{s.k} * s.k * s.c_in;  // one output channel's weights
#pragma omp parallel for schedule(static) if (worth_parallel(s))
  for (int64_t p = 0; p < pixels; ++p) {
    const int h = static_cast<int>(p / s.w % s.h), w = static_cast<int>(p % s.w);
    for (int o = 0; o < s.c_out; ++o) {
      T sum = bias ? bias[o] : T(0);
      for (int r = 0; r < s.k; ++r) {
        for (int c = 0; c < s.k; ++c) {
          if (!inside(s, h, w, r - pad, c - pad)) continue;
          const T* in = x + (p + int64_t{r - pad} * s.w + (c - pad)) * x_stride;
          const T* wt = weight + o * weight_row + (r * s.k + c) * s.c_in;
          for (int i = 0; i < s.c_in; ++i) sum += in[i] * wt[i];
        }
      }
      y[p * y_stride + o] = relu && !(sum > T(0)) ? T(0) : sum;
    }
  }
}

template <class T>
void conv2d_backward_data(const Conv2dShape& s, const T* dy, int dy_stride, const T* relu_output,
                          int relu_output_stride, const T* weight, T beta, T* dx, int dx_stride) {
  const int pad = s.k / 2;
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const int64_t weight_row = int64_t{s.k} * s.k * s.c_in;
#pragma omp parallel if (worth_parallel(s))
  {
    std::vector<T> sum(s.c_in);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pixels; ++p) {
      const int h = static_cast<int>(p / s.w % s.h), w = static_cast<int>(p % s.w);
      std::fill(sum.begin(), sum.end(), T(0));
      // Output pixel p - (r - pad, c - pad) saw input pixel p through tap (r, c).
      for (int r = 0; r < s.k; ++r) {
        for (int c = 0; c < s.k; ++c) {
          if (!inside(s, h, w, pad - r, pad - c)) continue;
          const int64_t source = p + int64_t{pad - r} * s.w + (pad - c);
          for (int o = 0; o < s.c_out; ++o) {
            const T g = output_gradient(dy, dy_stride, relu_output, relu_output_stride, source, o);
            const T* wt = weight + o * weight_row + (r * s.k + c) * s.c_in;
            for (int i = 0; i < s.c_in; ++i) sum[i] += g * wt[i];
          }
        }
      }
      for (int i = 0; i < s.c_in; ++i) write_gradient(&dx[p * dx_stride + i], sum[i], beta);
    }
  }
}

template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* x, int x_stride, const T* dy, int dy_stride,
                            const T* relu_output, int relu_output_stride, T beta, T* dweight) {
  const int pad = s.k / 2;
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const int64_t weight_row = int64_t{s.k} * s.k * s.c_in;
#pragma omp parallel if (worth_parallel(s))
  {
    std::vector<T> sum(weight_row);
#pragma omp for schedule(dynamic)
    for (int o = 0; o < s.c_out; ++o) {
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t p = 0; p < pixels; ++p) {
        const T g = output_gradient(dy, dy_stride, relu_output, relu_output_stride, p, o);
        const int h = static_cast<int>(p / s.w % s.h), w = static_cast<int>(p % s.w);
        for (int r = 0; r < s.k; ++r) {
          for (int c = 0; c < s.k; ++c) {
            if (!inside(s, h, w, r - pad, c - pad)) continue;
            const T* in = x + (p + int64_t{r - pad} * s.w + (c - pad)) * x_stride;
            T* tap = sum.data() + (r * s.k + c) * s.c_in;
            for (int i = 0; i < s.c_in; ++i) tap[i] += g * in[i];
          }
        }
      }
      for (int64_t j = 0; j < weight_row; ++j) write_gradient(&dweight[o * weight_row + j], sum[j], beta);
    }
  }
}

template <class T>
void conv2d_backward_bias(const Conv2dShape& s, const T* dy, int dy_stride, const T* relu_output,
                          int relu_output_stride, T beta, T* dbias) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
#pragma omp parallel for schedule(static) if (worth_parallel(s))
  for (int o = 0; o < s.c_out; ++o) {
    T sum = T(0);
    for (int64_t p = 0; p < pixels; ++p) sum += output_gradient(dy, dy_stride, relu_output, relu_output_stride, p, o);
    write_gradient(&dbias[o], sum, beta);
  }
}

template <class T>
void conv2d_forward_tf32(const Conv2dShape& s, const float* x, int x_stride, const float* weight, const float* bias,
                         bool relu, T* y, int y_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  // The operands as the tensor cores see them: dense copies, rounded once.
  std::vector<T> x_tf32(static_cast<size_t>(pixels) * s.c_in), weight_tf32(int64_t{s.c_out} * s.k * s.k * s.c_in);
  for (int64_t p = 0; p < pixels; ++p) {
    for (int i = 0; i < s.c_in; ++i) x_tf32[p * s.c_in + i] = round_to_tf32(x[p * x_stride + i]);
  }
  for (size_t j = 0; j < weight_tf32.size(); ++j) weight_tf32[j] = round_to_tf32(weight[j]);
  std::vector<T> bias_t;
  if (bias != nullptr) bias_t.assign(bias, bias + s.c_out);
  conv2d_forward(s, x_tf32.data(), s.c_in, weight_tf32.data(), bias ? bias_t.data() : nullptr, relu, y, y_stride);
}

template <class T>
void conv2d_backward_data_tf32(const Conv2dShape& s, const float* dy, int dy_stride, const float* relu_output,
                               int relu_output_stride, const float* weight, T beta, T* dx, int dx_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  std::vector<T> g_tf32(static_cast<size_t>(pixels) * s.c_out), weight_tf32(int64_t{s.c_out} * s.k * s.k * s.c_in);
  for (int64_t p = 0; p < pixels; ++p) {
    for (int o = 0; o < s.c_out; ++o) {
      g_tf32[p * s.c_out + o] = round_to_tf32(output_gradient(dy, dy_stride, relu_output, relu_output_stride, p, o));
    }
  }
  for (size_t j = 0; j < weight_tf32.size(); ++j) weight_tf32[j] = round_to_tf32(weight[j]);
  conv2d_backward_data<T>(s, g_tf32.data(), s.c_out, nullptr, 0, weight_tf32.data(), beta, dx, dx_stride);
}

template <class T>
void conv2d_backward_weight_tf32(const Conv2dShape& s, const float* x, int x_stride, const float* dy, int dy_stride,
                                 const float* relu_output, int relu_output_stride, T beta, T* dweight) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  std::vector<T> x_tf32(static_cast<size_t>(pixels) * s.c_in), g_tf32(static_cast<size_t>(pixels) * s.c_out);
  for (int64_t p = 0; p < pixels; ++p) {
    for (int i = 0; i < s.c_in; ++i) x_tf32[p * s.c_in + i] = round_to_tf32(x[p * x_stride + i]);
    for (int o = 0; o < s.c_out; ++o) {
      g_tf32[p * s.c_out + o] = round_to_tf32(output_gradient(dy, dy_stride, relu_output, relu_output_stride, p, o));
    }
  }
  conv2d_backward_weight<T>(s, x_tf32.data(), s.c_in, g_tf32.data(), s.c_out, nullptr, 0, beta, dweight);
}

namespace {

// A bf16 tensor widened exactly into a dense T array: (rows, cols) through a row stride.
template <class T>
std::vector<T> widen(const bf16* values, int64_t rows, int cols, int stride) {
  std::vector<T> dense(static_cast<size_t>(rows) * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) dense[r * cols + c] = to_float(values[r * stride + c]);
  }
  return dense;
}

// The dense T gradient that flows into the convolution's output: dy, masked by the fused ReLU.
template <class T>
std::vector<T> widen_gradient(const Conv2dShape& s, const bf16* dy, int dy_stride, const bf16* relu_output,
                              int relu_output_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  std::vector<T> g = widen<T>(dy, pixels, s.c_out, dy_stride);
  if (relu_output == nullptr) return g;
  for (int64_t p = 0; p < pixels; ++p) {
    for (int o = 0; o < s.c_out; ++o) {
      if (!(to_float(relu_output[p * relu_output_stride + o]) > 0.0f)) g[p * s.c_out + o] = T(0);
    }
  }
  return g;
}

template <class T>
void round_into(int64_t pixels, int channels, const std::vector<T>& dense, bf16* out,
                int out_stride) {
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < channels; ++c) out[p * out_stride + c] = to_bf16(static_cast<float>(dense[p * channels + c]));
  }
}

}  // namespace

template <class T>
void conv2d_forward_bf16(const Conv2dShape& s, const bf16* x, int x_stride, const bf16* weight, const float* bias,
                         bool relu, bf16* y, int y_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const std::vector<T> x_t = widen<T>(x, pixels, s.c_in, x_stride);
  const std::vector<T> weight_t = widen<T>(weight, s.c_out, s.k * s.k * s.c_in, s.k * s.k * s.c_in);
  std::vector<T> bias_t, y_t(static_cast<size_t>(pixels) * s.c_out);
  if (bias != nullptr) bias_t.assign(bias, bias + s.c_out);
  conv2d_forward(s, x_t.data(), s.c_in, weight_t.data(), bias ? bias_t.data() : nullptr, relu, y_t.data(), s.c_out);
  round_into(pixels, s.c_out, y_t, y, y_stride);
}

template <class T>
void conv2d_backward_data_bf16(const Conv2dShape& s, const bf16* dy, int dy_stride, const bf16* relu_output,
                               int relu_output_stride, const bf16* weight, T beta, bf16* dx, int dx_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const std::vector<T> g = widen_gradient<T>(s, dy, dy_stride, relu_output, relu_output_stride);
  const std::vector<T> weight_t = widen<T>(weight, s.c_out, s.k * s.k * s.c_in, s.k * s.k * s.c_in);
  // beta = 0 overwrites (a NaN prior included): the prior is read only when beta is not 0.
  std::vector<T> dx_t = beta == T(0) ? std::vector<T>(static_cast<size_t>(pixels) * s.c_in)
                                     : widen<T>(dx, pixels, s.c_in, dx_stride);
  conv2d_backward_data<T>(s, g.data(), s.c_out, nullptr, 0, weight_t.data(), beta, dx_t.data(), s.c_in);
  round_into(pixels, s.c_in, dx_t, dx, dx_stride);
}

template <class T>
void conv2d_backward_weight_bf16(const Conv2dShape& s, const bf16* x, int x_stride, const bf16* dy, int dy_stride,
                                 const bf16* relu_output, int relu_output_stride, T beta, T* dweight) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const std::vector<T> x_t = widen<T>(x, pixels, s.c_in, x_stride);
  const std::vector<T> g = widen_gradient<T>(s, dy, dy_stride, relu_output, relu_output_stride);
  conv2d_backward_weight<T>(s, x_t.data(), s.c_in, g.data(), s.c_out, nullptr, 0, beta, dweight);
}

template <class T>
void conv2d_backward_bias_bf16(const Conv2dShape& s, const bf16* dy, int dy_stride, const bf16* relu_output,
                               int relu_output_stride, T beta, T* dbias) {
  const std::vector<T> g = widen_gradient<T>(s, dy, dy_stride, relu_output, relu_output_stride);
  conv2d_backward_bias<T>(s, g.data(), s.c_out, nullptr, 0, beta, dbias);
}

#define UNET_CONV2D_REFERENCE(T)                                                                                  \
  template void conv2d_forward(const Conv2dShape&, const T*, int, const T*, const T*, bool, T*, int);             \
  template void conv2d_backward_data(const Conv2dShape&, const T*, int, const T*, int, const T*, T, T*, int);     \
  template void conv2d_backward_weight(const Conv2dShape&, const T*, int, const T*, int, const T*, int, T, T*); \
  template void conv2d_backward_bias(const Conv2dShape&, const T*, int, const T*, int, T, T*);                  \
  template void conv2d_forward_tf32(const Conv2dShape&, const float*, int, const float*, const float*, bool, T*, int); \
  template void conv2d_backward_data_tf32(const Conv2dShape&, const float*, int, const float*, int, const float*, T,  \
                                          T*, int);                                                                 \
  template void conv2d_backward_weight_tf32(const Conv2dShape&, const float*, int, const float*, int, const float*,   \
                                            int, T, T*);                                                    \
  template void conv2d_forward_bf16<T>(const Conv2dShape&, const bf16*, int, const bf16*, const float*, bool, bf16*, \
                                       int);                                                                         \
  template void conv2d_backward_data_bf16(const Conv2dShape&, const bf16*, int, const bf16*, int, const bf16*, T,    \
                                          bf16*, int);                                                              \
  template void conv2d_backward_weight_bf16(const Conv2dShape&, const bf16*, int, const bf16*, int, const bf16*,     \
                                            int, T, T*);                                                            \
  template void conv2d_backward_bias_bf16(const Conv2dShape&, const bf16*, int, const bf16*, int, T, T*);
UNET_CONV2D_REFERENCE(float)
UNET_CONV2D_REFERENCE(double)
#undef UNET_CONV2D_REFERENCE

}  // namespace unet::cpu

namespace unet {

// The cpu device's launchers (conv2d.h): the fast path (conv2d_fast_cpu.cpp) by default, version 1 the
// reference above in float, for comparing and teaching, and tensor_core_version the reference at
// the TF32 kernel's rounding points (how the cpu device runs --precision tf32, slowly).
template <>
void Conv2d<DeviceKind::cpu>::forward(const Conv2dShape& shape, const float* x, int x_stride, const float* weight,
                                      const float* bias, bool relu, float* y, int y_stride, Stream, int version) {
  if (version == 1) {
    cpu::conv2d_forward(shape, x, x_stride, weight, bias, relu, y, y_stride);
  } else if (version == tensor_core_version) {
    cpu::conv2d_forward_tf32(shape, x, x_stride, weight, bias, relu, y, y_stride);
  } else {
    cpu::fast::conv2d_forward(shape, x, x_stride, weight, bias, relu, y, y_stride);
  }
}

template <>
void Conv2d<DeviceKind::cpu>::backward_data(const Conv2dShape& shape, const float* dy, int dy_stride,
                                            const float* relu_output, int relu_output_stride, const float* weight,
                                            float beta, float* dx, int dx_stride, Stream, int version) {
  if (version == 1) {
    cpu::conv2d_backward_data(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride);
  } else if (version == tensor_core_version) {
    cpu::conv2d_backward_data_tf32(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride);
  } else {
    cpu::fast::conv2d_backward_data(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx, dx_stride);
  }
}

template <>
size_t Conv2d<DeviceKind::cpu>::backward_weight_workspace(const Conv2dShape&, int) {
  return 0;
}

template <>
void Conv2d<DeviceKind::cpu>::backward_weight(const Conv2dShape& shape, const float* x, int x_stride, const float* dy,
                                              int dy_stride, const float* relu_output, int relu_output_stride,
                                              float beta, float* dweight, void*, Stream, int version) {
  if (version == 1) {
    cpu::conv2d_backward_weight(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta, dweight);
  } else if (version == tensor_core_version) {
    cpu::conv2d_backward_weight_tf32(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta,
                                     dweight);
  } else {
    cpu::fast::conv2d_backward_weight(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta, dweight);
  }
}

template <>
size_t Conv2d<DeviceKind::cpu>::backward_bias_workspace(const Conv2dShape&) {
  return 0;
}

template <>
void Conv2d<DeviceKind::cpu>::backward_bias(const Conv2dShape& shape, const float* dy, int dy_stride,
                                            const float* relu_output, int relu_output_stride, float beta, float* dbias,
                                            void*, Stream) {
  cpu::fast::conv2d_backward_bias(shape, dy, dy_stride, relu_output, relu_output_stride, beta, dbias);
}

// bf16: the references in float, at the kernels' rounding points.
template <>
void Conv2d<DeviceKind::cpu>::forward(const Conv2dShape& shape, const bf16* x, int x_stride, const bf16* weight,
                                      const float* bias, bool relu, bf16* y, int y_stride, Stream, int) {
  cpu::conv2d_forward_bf16<float>(shape, x, x_stride, weight, bias, relu, y, y_stride);
}

template <>
void Conv2d<DeviceKind::cpu>::backward_data(const Conv2dShape& shape, const bf16* dy, int dy_stride,
                                            const bf16* relu_output, int relu_output_stride, const bf16* weight,
                                            float beta, bf16* dx, int dx_stride, Stream, int) {
  cpu::conv2d_backward_data_bf16<float>(shape, dy, dy_stride, relu_output, relu_output_stride, weight, beta, dx,
                                        dx_stride);
}

template <>
size_t Conv2d<DeviceKind::cpu>::backward_weight_workspace(const Conv2dShape&, bf16, int) {
  return 0;
}

template <>
void Conv2d<DeviceKind::cpu>::backward_weight(const Conv2dShape& shape, const bf16* x, int x_stride, const bf16* dy,
                                              int dy_stride, const bf16* relu_output, int relu_output_stride,
                                              float beta, float* dweight, void*, Stream, int) {
  cpu::conv2d_backward_weight_bf16<float>(shape, x, x_stride, dy, dy_stride, relu_output, relu_output_stride, beta,
                                          dweight);
}

template <>
size_t Conv2d<DeviceKind::cpu>::backward_bias_workspace(const Conv2dShape&, bf16) {
  return 0;
}

template <>
void Conv2d<DeviceKind::cpu>::backward_bias(const Conv2dShape& shape, const bf16* dy, int dy_stride,
                                            const bf16* relu_output, int relu_output_stride, float beta, float* dbias,
                                            void*, Stream) {
  cpu::conv2d_backward_bias_bf16<float>(shape, dy, dy_stride, relu_output, relu_output_stride, beta, dbias);
}

}  // namespace unet
