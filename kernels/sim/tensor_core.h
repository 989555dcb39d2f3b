// The sim device's tensor-core instructions (their contract: kernels/tensor_core.h). mma.sync and
// ldmatrix are warp collectives of the runtime (kernels/sim/runtime.h): each lane hands over its
// operands, and the last lane to arrive computes every lane's results as the PTX ISA defines them
// (kernels/sim/tensor_core.cpp). cp.async and the conversions are per thread.
#pragma once

#include <cstdint>
#include <source_location>

#include "kernels/rounding.h"
#include "kernels/sim/runtime.h"

namespace unet::sim {

// One lane's operands of an mma (d is written by the collective).
struct MmaLane {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
  float d[4];
};
void complete_mma_tf32_m16n8k8(void* const (&lanes)[32], const std::source_location& site);
void complete_mma_bf16_m16n8k16(void* const (&lanes)[32], const std::source_location& site);

struct LdmatrixLane {
  const void* row;  // this lane's row address (used from lanes below 8 x matrices)
  int matrices;
  bool transpose;
  uint32_t d[4];
};
void complete_ldmatrix(void* const (&lanes)[32], const std::source_location& site);

inline void run_mma(const char* name, CollectiveBody body, float (&d)[4], const uint32_t (&a)[4],
                    const uint32_t (&b)[2], const float (&c)[4], const std::source_location& site) {
  MmaLane lane{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}, {c[0], c[1], c[2], c[3]}, {}};
  warp_collective(name, &lane, body, site);
  for (int i = 0; i < 4; ++i) d[i] = lane.d[i];  // d may alias c: written only now
}

inline void mma_tf32_m16n8k8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4],
                             const std::source_location site = std::source_location::current()) {
  run_mma("mma.sync.m16n8k8.tf32", &complete_mma_tf32_m16n8k8, d, a, b, c, site);
}

inline void mma_bf16_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4],
                              const std::source_location site = std::source_location::current()) {
  run_mma("mma.sync.m16n8k16.bf16", &complete_mma_bf16_m16n8k16, d, a, b, c, site);
}

template <int kMatrices, bool kTranspose>
void ldmatrix(uint32_t (&d)[kMatrices], const void* row,
              const std::source_location site = std::source_location::current()) {
  static_assert(kMatrices == 1 || kMatrices == 2 || kMatrices == 4, "ldmatrix loads 1, 2 or 4 matrices");
  LdmatrixLane lane{row, kMatrices, kTranspose, {}};
  warp_collective(kTranspose ? "ldmatrix.trans" : "ldmatrix", &lane, &complete_ldmatrix, site);
  for (int j = 0; j < kMatrices; ++j) d[j] = lane.d[j];
}

template <int kBytes>
void cp_async(void* shared_destination, const void* global_source, int source_bytes,
              const std::source_location site = std::source_location::current()) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  cp_async_issue(shared_destination, global_source, kBytes, source_bytes, site);
}

inline void cp_async_commit_group() { cp_async_commit(); }

template <int kPending>
void cp_async_wait_group() {
  cp_async_wait(kPending);
}

inline uint32_t tf32_from_float(float x) { return tf32_bits(x); }

inline uint32_t bf16x2_from_floats(float low, float high) {
  return uint32_t{bf16_bits(low)} | uint32_t{bf16_bits(high)} << 16;
}

}  // namespace unet::sim
