// The sim device's mma.sync and ldmatrix: the warp's fragments reassembled into matrices by the
// PTX ISA's layouts (kernels/tensor_core.h lists them), multiplied or loaded, and handed back.
#include "kernels/sim/tensor_core.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace unet::sim {
namespace {

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

MmaLane& mma_lane(void* const (&lanes)[32], int lane) { return *static_cast<MmaLane*>(lanes[lane]); }

// C and D share one layout: c[0] (g, 2t), c[1] (g, 2t+1), c[2] (g+8, 2t), c[3] (g+8, 2t+1).
int accumulator_row(int lane, int i) { return (lane >> 2) + (i >= 2 ? 8 : 0); }
int accumulator_col(int lane, int i) { return (lane & 3) * 2 + (i & 1); }

// D = A B + C over the 16 x 8 tile, the exact products summed in double and rounded once.
template <int K>
void multiply(void* const (&lanes)[32], const float (&a)[16][K], const float (&b)[K][8]) {
  float c[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) c[accumulator_row(lane, i)][accumulator_col(lane, i)] = mma_lane(lanes, lane).c[i];
  }
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const int row = accumulator_row(lane, i), col = accumulator_col(lane, i);
      double sum = c[row][col];
      for (int k = 0; k < K; ++k) sum += double{a[row][k]} * double{b[k][col]};
      mma_lane(lanes, lane).d[i] = static_cast<float>(sum);
    }
  }
}

// A tf32 operand must have its low 13 bits clear: the hardware ignores them, which would hide a
// missing cvt.rna.
float tf32_operand(uint32_t bits, const char* name, int lane, int i, const std::source_location& site) {
  if ((bits & 0x1fffu) != 0) {
    fail_thread("mma.sync.m16n8k8.tf32 at " + where(site) + ": lane " + std::to_string(lane) + "'s " + name + "[" +
                std::to_string(i) + "] = " + hex32(bits) +
                " is not a tf32 (low 13 bits nonzero); round it with tf32_from_float (cvt.rna)");
  }
  return bits_float(bits);
}

}  // namespace

void complete_mma_tf32_m16n8k8(void* const (&lanes)[32], const std::source_location& site) {
  float a[16][8], b[8][8];
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& l = mma_lane(lanes, lane);
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) {
      a[g + (i & 1) * 8][t + (i >> 1) * 4] = tf32_operand(l.a[i], "a", lane, i, site);
    }
    for (int i = 0; i < 2; ++i) b[t + i * 4][g] = tf32_operand(l.b[i], "b", lane, i, site);
  }
  multiply(lanes, a, b);
}

void complete_mma_bf16_m16n8k16(void* const (&lanes)[32], const std::source_location&) {
  float a[16][16], b[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& l = mma_lane(lanes, lane);
    const int g = lane >> 2, t = lane & 3;
    for (int r = 0; r < 4; ++r) {
      for (int half = 0; half < 2; ++half) {
        const auto value = static_cast<uint16_t>(l.a[r] >> (16 * half));
        a[g + (r & 1) * 8][2 * t + half + (r >> 1) * 8] = bf16_to_float(value);
      }
    }
    for (int r = 0; r < 2; ++r) {
      for (int half = 0; half < 2; ++half) {
        b[2 * t + half + r * 8][g] = bf16_to_float(static_cast<uint16_t>(l.b[r] >> (16 * half)));
      }
    }
  }
  multiply(lanes, a, b);
}

void complete_ldmatrix(void* const (&lanes)[32], const std::source_location& site) {
  const auto& first = *static_cast<const LdmatrixLane*>(lanes[0]);
  const int matrices = first.matrices;
  // rows[j][r]: row r of matrix j, 8 b16 values.
  uint16_t rows[4][8][8];
  for (int j = 0; j < matrices; ++j) {
    for (int r = 0; r < 8; ++r) {
      const int lane = 8 * j + r;
      const void* row = static_cast<const LdmatrixLane*>(lanes[lane])->row;
      if (row == nullptr || reinterpret_cast<uintptr_t>(row) % 16 != 0) {
        char text[24];
        std::snprintf(text, sizeof text, "%p", row);
        fail_thread(std::string(first.transpose ? "ldmatrix.trans" : "ldmatrix") + " at " + where(site) + ": lane " +
                    std::to_string(lane) + "'s row address " + text + " is not 16-byte aligned");
      }
      std::memcpy(rows[j][r], row, 16);
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    auto& out = *static_cast<LdmatrixLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int j = 0; j < matrices; ++j) {
      const uint16_t low = first.transpose ? rows[j][2 * t][g] : rows[j][g][2 * t];
      const uint16_t high = first.transpose ? rows[j][2 * t + 1][g] : rows[j][g][2 * t + 1];
      out.d[j] = uint32_t{low} | uint32_t{high} << 16;
    }
  }
}

}  // namespace unet::sim
