// How the cpu device runs a memory-bound op in bf16 (the *_cpu.cpp files' bf16 references): widen
// each bf16 operand to T exactly, run the op's float or double reference on the widened copy,
// round each output element to bf16 once. Those are the bf16 kernels' rounding points, so a
// reference in float computes what they compute.
//
// Operands are (rows, channels) through a pixel stride, as the kernels take them. A widened copy
// has the operand's own layout, over its extent (rows - 1) * stride + channels, so the reference
// runs with the same strides; rounding back writes only the `channels` of each row (the padding of
// a stride is never written).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/rounding.h"

namespace unet::cpu {

inline int64_t strided_extent(int64_t rows, int channels, int stride) {
  return rows == 0 || channels == 0 ? 0 : (rows - 1) * stride + channels;
}

template <class T>
std::vector<T> widen_bf16(const bf16* x, int64_t rows, int channels, int stride) {
  std::vector<T> wide(static_cast<size_t>(strided_extent(rows, channels, stride)));
  for (int64_t r = 0; r < rows; ++r) {
    for (int c = 0; c < channels; ++c) wide[r * stride + c] = T(to_float(x[r * stride + c]));
  }
  return wide;
}

// T = double goes through float: the bf16 kernels round the float they computed.
template <class T>
void round_to_bf16(const std::vector<T>& wide, int64_t rows, int channels, int stride, bf16* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int c = 0; c < channels; ++c) out[r * stride + c] = to_bf16(static_cast<float>(wide[r * stride + c]));
  }
}

}  // namespace unet::cpu
