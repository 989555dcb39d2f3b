// column_sum: deterministic column sums over many rows, the reduction behind every gradient that
// sums over pixels: conv2d's and conv_transpose2d's bias gradients, and the second pass of the
// split-K weight gradients.
//
//   sum           out(c) = beta*out(c) + sum_r x(r, c) * [mask(r, c) > 0]   (mask optional: a ReLU's output)
//   sum_partials  out(c) = beta*out(c) + sum_r partial(r, c)                   (dense rows)
//
// No floating-point atomics: `sum` cuts the rows into fixed chunks (a function of the shape only),
// each block adds its chunk in a fixed order and writes one row of partial sums into the caller's
// workspace, then `sum_partials` adds those rows in order. The same bits on every run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"

namespace unet {

template <DeviceKind D>
struct ColumnSum {
  // Bytes of scratch `sum` needs for this shape.
  static size_t workspace(int64_t rows, int cols);
  static void sum(int64_t rows, int cols,
                  const float* x, int x_stride,        // (rows, cols), row stride >= cols
                  const float* mask, int mask_stride,  // (rows, cols), or nullptr
                  float beta,
                  float* out,                          // (cols)
                  void* workspace,                     // workspace(rows, cols) bytes
                  Stream stream);
  static void sum_partials(int64_t rows, int64_t cols,
                           const float* partial,  // (rows, cols), dense
                           float beta,
                           float* out,            // (cols)
                           Stream stream);
};

extern template struct ColumnSum<DeviceKind::sim>;
extern template struct ColumnSum<DeviceKind::cuda>;

}  // namespace unet
