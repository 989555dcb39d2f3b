// conv_transpose2d: the CPU reference (conv_transpose2d.h). Each input pixel feeds four output
// pixels, one per tap (r, s), through conv_transpose2d_output_pixel. Loops are ordered so that the
// innermost runs over contiguous channels, and parallel over what each pass writes: input pixels
// for forward and backward_data, input channels (rows of dW) for the weight gradient, output
// channels for the bias gradient.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/conv_transpose2d.h"
#include "kernels/rounding.h"

namespace unet::cpu {

namespace {

template <class T>
void write_gradient(T* out, T value, T beta) {
  *out = beta == T(0) ? value : beta * *out + value;  // beta = 0 overwrites, even NaN
}

// Below this many multiply-adds a parallel region costs more than it saves (and the gradient
// checks run thousands of tiny convolutions).
bool worth_parallel(const ConvTranspose2dShape& s) { return conv_transpose2d_macs(s) >= (int64_t{1} << 16); }

}  // namespace

template <class T>
void conv_transpose2d_forward(const ConvTranspose2dShape& s, const T* x, int x_stride, const T* weight,
                              const T* bias, T* y, int y_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
#pragma omp parallel if (worth_parallel(s))
  {
    std::vector<T> sum(s.c_out);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pixels; ++p) {
      const int w = static_cast<int>(p % s.w);
      for (int tap = 0; tap < 4; ++tap) {
        for (int o = 0; o < s.c_out; ++o) sum[o] = bias ? bias[o] : T(0);
        for (int i = 0; i < s.c_in; ++i) {
          const T in = x[p * x_stride + i];
          const T* wt = weight + (int64_t{i} * 4 + tap) * s.c_out;
          for (int o = 0; o < s.c_out; ++o) sum[o] += in * wt[o];
        }
        T* out = y + conv_transpose2d_output_pixel(p, w, s.w, tap / 2, tap % 2) * y_stride;
        std::copy(sum.begin(), sum.end(), out);
      }
    }
  }
}

template <class T>
void conv_transpose2d_backward_data(const ConvTranspose2dShape& s, const T* dy, int dy_stride, const T* weight,
                                    T beta, T* dx, int dx_stride) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
#pragma omp parallel for schedule(static) if (worth_parallel(s))
  for (int64_t p = 0; p < pixels; ++p) {
    const int w = static_cast<int>(p % s.w);
    for (int i = 0; i < s.c_in; ++i) {
      T sum = T(0);
      for (int tap = 0; tap < 4; ++tap) {
        const T* g = dy + conv_transpose2d_output_pixel(p, w, s.w, tap / 2, tap % 2) * dy_stride;
        const T* wt = weight + (int64_t{i} * 4 + tap) * s.c_out;
        for (int o = 0; o < s.c_out; ++o) sum += g[o] * wt[o];
      }
      write_gradient(&dx[p * dx_stride + i], sum, beta);
    }
  }
}

template <class T>
void conv_transpose2d_backward_weight(const ConvTranspose2dShape& s, const T* x, int x_stride, const T* dy,
                                      int dy_stride, T beta, T* dweight) {
  const int64_t pixels = int64_t{s.n} * s.h * s.w;
  const int64_t weight_row = int64_t{4} * s.c_out;  // dW(i, ., ., .)
#pragma omp parallel if (worth_parallel(s))
  {
    std::vector<T> sum(weight_row);
#pragma omp for schedule(static)
    for (int i = 0; i < s.c_in; ++i) {
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t p = 0; p < pixels; ++p) {
        const T in = x[p * x_stride + i];
        const int w = static_cast<int>(p % s.w);
        for (int tap = 0; tap < 4; ++tap) {
          const T* g = dy + conv_transpose2d_output_pixel(p, w, s.w, tap / 2, tap % 2) * dy_stride;
          T* acc = sum.data() + tap * s.c_out;
          for (int o = 0; o < s.c_out; ++o) acc[o] += in * g[o];
        }
      }
      for (int64_t j = 0; j < weight_row; ++j) write_gradient(&dweight[i * weight_row + j], sum[j], beta);
    }
  }
}

template <class T>
void conv_transpose2d_backward_bias(const ConvTranspose2dShape& s, const T* dy, int dy_stride, T beta, T* dbias) {
  const int64_t out_pixels = int64_t{s.n} * 2 * s.h * 2 * s.w;
#pragma omp parallel for schedule(static) if (worth_parallel(s))
  for (int o = 0; o < s.c_out; ++o) {
    T sum = T(0);
    for (int64_t q = 0; q < out_pixels; ++q) sum += dy[q * dy_stride + o];
    write_gradient(&dbias[o], sum, beta);
  }
}

namespace {

// A dense (rows x channels) copy in T of a strided float or bf16 tensor, each element through `value`.
template <class T, class Source, class Value>
std::vector<T> dense(int64_t rows, int channels, const Source* source, int stride, const Value& value) {
  std::vector<T> out(static_cast<size_t>(rows) * channels);
  for (int64_t r = 0; r < rows; ++r) {
    for (int c = 0; c < channels; ++c) out[r * channels + c] = value(source[r * stride + c]);
  }
  return out;
}

template <class T>
std::vector<T> tf32_copy(int64_t rows, int channels, const float* source, int stride) {
  return dense<T>(rows, channels, source, stride, [](float v) { return T(round_to_tf32(v)); });
}

template <class T>
std::vector<T> widened(int64_t rows, int channels, const bf16* source, int stride) {
  return dense<T>(rows, channels, source, stride, [](bf16 v) { return T(to_float(v)); });
}

template <class T>
std::vector<T> bias_copy(const ConvTranspose2dShape& s, const float* bias) {
  return bias == nullptr ? std::vector<T>{} : std::vector<T>(bias, bias + s.c_out);
}

int64_t input_pixels(const ConvTranspose2dShape& s) { return int64_t{s.n} * s.h * s.w; }
int64_t weight_rows(const ConvTranspose2dShape& s) { return int64_t{s.c_in} * 4; }  // W as (Cin * 4) x Cout

}  // namespace

template <class T>
void conv_transpose2d_forward_tf32(const ConvTranspose2dShape& s, const float* x, int x_stride, const float* weight,
                                   const float* bias, T* y, int y_stride) {
  const auto x_t = tf32_copy<T>(input_pixels(s), s.c_in, x, x_stride);
  const auto weight_t = tf32_copy<T>(weight_rows(s), s.c_out, weight, s.c_out);
  const auto bias_t = bias_copy<T>(s, bias);
  conv_transpose2d_forward(s, x_t.data(), s.c_in, weight_t.data(), bias ? bias_t.data() : nullptr, y, y_stride);
}

template <class T>
void conv_transpose2d_backward_data_tf32(const ConvTranspose2dShape& s, const float* dy, int dy_stride,
                                         const float* weight, T beta, T* dx, int dx_stride) {
  const auto dy_t = tf32_copy<T>(4 * input_pixels(s), s.c_out, dy, dy_stride);
  const auto weight_t = tf32_copy<T>(weight_rows(s), s.c_out, weight, s.c_out);
  conv_transpose2d_backward_data(s, dy_t.data(), s.c_out, weight_t.data(), beta, dx, dx_stride);
}

template <class T>
void conv_transpose2d_backward_weight_tf32(const ConvTranspose2dShape& s, const float* x, int x_stride,
                                           const float* dy, int dy_stride, T beta, T* dweight) {
  const auto x_t = tf32_copy<T>(input_pixels(s), s.c_in, x, x_stride);
  const auto dy_t = tf32_copy<T>(4 * input_pixels(s), s.c_out, dy, dy_stride);
  conv_transpose2d_backward_weight(s, x_t.data(), s.c_in, dy_t.data(), s.c_out, beta, dweight);
}

template <class T>
void conv_transpose2d_forward_bf16(const ConvTranspose2dShape& s, const bf16* x, int x_stride, const bf16* weight,
                                   const float* bias, T* y, int y_stride) {
  const auto x_t = widened<T>(input_pixels(s), s.c_in, x, x_stride);
  const auto weight_t = widened<T>(weight_rows(s), s.c_out, weight, s.c_out);
  const auto bias_t = bias_copy<T>(s, bias);
  conv_transpose2d_forward(s, x_t.data(), s.c_in, weight_t.data(), bias ? bias_t.data() : nullptr, y, y_stride);
}

template <class T>
void conv_transpose2d_backward_data_bf16(const ConvTranspose2dShape& s, const bf16* dy, int dy_stride,
                                         const bf16* weight, T beta, T* dx, int dx_stride) {
  const auto dy_t = widened<T>(4 * input_pixels(s), s.c_out, dy, dy_stride);
  const auto weight_t = widened<T>(weight_rows(s), s.c_out, weight, s.c_out);
  conv_transpose2d_backward_data(s, dy_t.data(), s.c_out, weight_t.data(), beta, dx, dx_stride);
}

template <class T>
void conv_transpose2d_backward_weight_bf16(const ConvTranspose2dShape& s, const bf16* x, int x_stride,
                                           const bf16* dy, int dy_stride, T beta, T* dweight) {
  const auto x_t = widened<T>(input_pixels(s), s.c_in, x, x_stride);
  const auto dy_t = widened<T>(4 * input_pixels(s), s.c_out, dy, dy_stride);
  conv_transpose2d_backward_weight(s, x_t.data(), s.c_in, dy_t.data(), s.c_out, beta, dweight);
}

template <class T>
void conv_transpose2d_backward_bias_bf16(const ConvTranspose2dShape& s, const bf16* dy, int dy_stride, T beta,
                                         T* dbias) {
  const auto dy_t = widened<T>(4 * input_pixels(s), s.c_out, dy, dy_stride);
  conv_transpose2d_backward_bias(s, dy_t.data(), s.c_out, beta, dbias);
}

#define UNET_CONV_TRANSPOSE2D_REFERENCE(T)                                                                        \
  template void conv_transpose2d_forward(const ConvTranspose2dShape&, const T*, int, const T*, const T*, T*, int); \
  template void conv_transpose2d_backward_data(const ConvTranspose2dShape&, const T*, int, const T*, T, T*, int);  \
  template void conv_transpose2d_backward_weight(const ConvTranspose2dShape&, const T*, int, const T*, int, T, T*); \
  template void conv_transpose2d_backward_bias(const ConvTranspose2dShape&, const T*, int, T, T*);             \
  template void conv_transpose2d_forward_tf32(const ConvTranspose2dShape&, const float*, int, const float*,      \
                                              const float*, T*, int);                                            \
  template void conv_transpose2d_backward_data_tf32(const ConvTranspose2dShape&, const float*, int, const float*, \
                                                    T, T*, int);                                                 \
  template void conv_transpose2d_backward_weight_tf32(const ConvTranspose2dShape&, const float*, int, const float*, \
                                                      int, T, T*);                                                 \
  template void conv_transpose2d_forward_bf16(const ConvTranspose2dShape&, const bf16*, int, const bf16*,        \
                                              const float*, T*, int);                                            \
  template void conv_transpose2d_backward_data_bf16(const ConvTranspose2dShape&, const bf16*, int, const bf16*, T, \
                                                    T*, int);                                                      \
  template void conv_transpose2d_backward_weight_bf16(const ConvTranspose2dShape&, const bf16*, int, const bf16*, \
                                                      int, T, T*);                                                \
  template void conv_transpose2d_backward_bias_bf16(const ConvTranspose2dShape&, const bf16*, int, T, T*);
UNET_CONV_TRANSPOSE2D_REFERENCE(float)
UNET_CONV_TRANSPOSE2D_REFERENCE(double)
#undef UNET_CONV_TRANSPOSE2D_REFERENCE

}  // namespace unet::cpu

namespace unet {

// The cpu device's launchers (conv_transpose2d.h): the fast path (conv_transpose2d_fast_cpu.cpp) by
// default, version 1 the reference above in float, tensor_core_version the reference at the TF32
// kernels' rounding points (how the cpu device runs --precision tf32).
template <>
void ConvTranspose2d<DeviceKind::cpu>::forward(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                               const float* weight, const float* bias, float* y, int y_stride, Stream,
                                               int version) {
  if (version == 1) {
    cpu::conv_transpose2d_forward(shape, x, x_stride, weight, bias, y, y_stride);
  } else if (version == tensor_core_version) {
    cpu::conv_transpose2d_forward_tf32(shape, x, x_stride, weight, bias, y, y_stride);
  } else {
    cpu::fast::conv_transpose2d_forward(shape, x, x_stride, weight, bias, y, y_stride);
  }
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_data(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                                     const float* weight, float beta, float* dx, int dx_stride, Stream,
                                                     int version) {
  if (version == 1) {
    cpu::conv_transpose2d_backward_data(shape, dy, dy_stride, weight, beta, dx, dx_stride);
  } else if (version == tensor_core_version) {
    cpu::conv_transpose2d_backward_data_tf32(shape, dy, dy_stride, weight, beta, dx, dx_stride);
  } else {
    cpu::fast::conv_transpose2d_backward_data(shape, dy, dy_stride, weight, beta, dx, dx_stride);
  }
}

template <>
size_t ConvTranspose2d<DeviceKind::cpu>::backward_weight_workspace(const ConvTranspose2dShape&, int) {
  return 0;
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_weight(const ConvTranspose2dShape& shape, const float* x, int x_stride,
                                                       const float* dy, int dy_stride, float beta, float* dweight,
                                                       void*, Stream, int version) {
  if (version == 1) {
    cpu::conv_transpose2d_backward_weight(shape, x, x_stride, dy, dy_stride, beta, dweight);
  } else if (version == tensor_core_version) {
    cpu::conv_transpose2d_backward_weight_tf32(shape, x, x_stride, dy, dy_stride, beta, dweight);
  } else {
    cpu::fast::conv_transpose2d_backward_weight(shape, x, x_stride, dy, dy_stride, beta, dweight);
  }
}

template <>
size_t ConvTranspose2d<DeviceKind::cpu>::backward_bias_workspace(const ConvTranspose2dShape&) {
  return 0;
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_bias(const ConvTranspose2dShape& shape, const float* dy, int dy_stride,
                                                     float beta, float* dbias, void*, Stream) {
  cpu::fast::conv_transpose2d_backward_bias(shape, dy, dy_stride, beta, dbias);
}

// bf16 on the cpu device: the references above in float, each bf16 output rounded once (one
// version: `version` is accepted and ignored, as the contract of the launchers allows).
namespace {

// Writes a dense (rows x channels) float result into a strided bf16 tensor, rounding each once.
void store_bf16(int64_t rows, int channels, const std::vector<float>& values, bf16* out, int stride) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int c = 0; c < channels; ++c) out[r * stride + c] = to_bf16(values[r * channels + c]);
  }
}

}  // namespace

template <>
void ConvTranspose2d<DeviceKind::cpu>::forward(const ConvTranspose2dShape& shape, const bf16* x, int x_stride,
                                               const bf16* weight, const float* bias, bf16* y, int y_stride, Stream,
                                               int) {
  const int64_t out_pixels = 4 * cpu::input_pixels(shape);
  std::vector<float> sum(static_cast<size_t>(out_pixels) * shape.c_out);
  cpu::conv_transpose2d_forward_bf16(shape, x, x_stride, weight, bias, sum.data(), shape.c_out);
  store_bf16(out_pixels, shape.c_out, sum, y, y_stride);
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_data(const ConvTranspose2dShape& shape, const bf16* dy, int dy_stride,
                                                     const bf16* weight, float beta, bf16* dx, int dx_stride, Stream,
                                                     int) {
  const int64_t pixels = cpu::input_pixels(shape);
  // The prior dx only where beta reads it: beta = 0 overwrites, even NaN.
  auto sum = beta == 0.0f ? std::vector<float>(static_cast<size_t>(pixels) * shape.c_in)
                          : cpu::widened<float>(pixels, shape.c_in, dx, dx_stride);
  cpu::conv_transpose2d_backward_data_bf16(shape, dy, dy_stride, weight, beta, sum.data(), shape.c_in);
  store_bf16(pixels, shape.c_in, sum, dx, dx_stride);
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_weight(const ConvTranspose2dShape& shape, const bf16* x, int x_stride,
                                                       const bf16* dy, int dy_stride, float beta, float* dweight,
                                                       void*, Stream, int) {
  cpu::conv_transpose2d_backward_weight_bf16(shape, x, x_stride, dy, dy_stride, beta, dweight);
}

template <>
void ConvTranspose2d<DeviceKind::cpu>::backward_bias(const ConvTranspose2dShape& shape, const bf16* dy, int dy_stride,
                                                     float beta, float* dbias, void*, Stream) {
  cpu::conv_transpose2d_backward_bias_bf16(shape, dy, dy_stride, beta, dbias);
}

}  // namespace unet
