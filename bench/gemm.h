// The GEMM-shaped layers as cuBLAS calls: the 1x1 head and the 2x2 up-convolution.
//
// Our tensors are row-major (NHWC rows of channels); cuBLAS is column-major. A row-major product
// C(m x n) = op(A) op(B) is the column-major product C^T = op(B)^T op(A)^T, so the call swaps the
// operands and their transposes, and m and n; leading dimensions stay the row lengths. The
// mapping is pure arithmetic, tested on the CPU (tests/bench/test_bench_helpers.cpp), because a
// wrong leading dimension would make cuBLAS read out of bounds on the GPU.
#pragma once

#include <cstdint>

#include "models/unet_shapes.h"

namespace unet::bench {

// Which of a layer pass's buffers an operand is.
enum class Operand { x, dy, weight, y, dx, dweight };

// C(m x n) = op(A)(m x k) op(B)(k x n), all row-major; ld* are the stored row lengths.
struct RowMajorGemm {
  Operand a, b, c;
  bool transpose_a, transpose_b;
  int m, n, k;
  int lda, ldb, ldc;
};

// The same product as a column-major BLAS takes it: C' = op(A') op(B'), C' (m x n).
struct ColumnMajorGemm {
  Operand a, b, c;
  bool transpose_a, transpose_b;
  int m, n, k;
  int lda, ldb, ldc;
};

inline ColumnMajorGemm to_column_major(const RowMajorGemm& g) {
  return {g.b, g.a, g.c, g.transpose_b, g.transpose_a, g.n, g.m, g.k, g.ldb, g.lda, g.ldc};
}

enum class Pass { forward, backward_data, backward_weight };

// The GEMM of one pass of a conv1x1 or up_conv layer, with the pixels P = N*H*W of the layer's
// input as the long dimension:
//   conv1x1 (weight Cout x Cin):     y = x W^T,  dx = dy W,   dW = dy^T x
//   up_conv (weight Cin x 4Cout, the four 1x1 taps side by side): y' = x W,  dx = dy' W^T,
//   dW = x^T dy', where y' and dy' hold each input pixel's four output pixels in one row
//   (N, H, W, 2, 2, Cout): the four 1x1 GEMMs as one, in GEMM order rather than NHWC.
inline RowMajorGemm layer_gemm(const LayerShape& layer, Pass pass) {
  const int pixels = layer.n * layer.h * layer.w;
  const int ci = layer.c_in;
  const int co = layer.kind == LayerKind::up_conv ? 4 * layer.c_out : layer.c_out;
  const bool head = layer.kind == LayerKind::conv1x1;
  switch (pass) {
    case Pass::forward:  // (P x Ci) (Ci x Co)
      return {Operand::x, Operand::weight, Operand::y, false, head, pixels, co, ci, ci, head ? ci : co, co};
    case Pass::backward_data:  // (P x Co) (Co x Ci)
      return {Operand::dy, Operand::weight, Operand::dx, false, !head, pixels, ci, co, co, head ? ci : co, ci};
    case Pass::backward_weight:
      if (head) return {Operand::dy, Operand::x, Operand::dweight, true, false, co, ci, pixels, co, ci, ci};
      return {Operand::x, Operand::dy, Operand::dweight, true, false, ci, co, pixels, ci, co, co};
  }
  return {};
}

}  // namespace unet::bench
