// The tensor-core instructions of the kernel dialect (docs/dialect.md): one small wrapper per PTX
// instruction, inline PTX under nvcc and, on sim, a host body that follows the PTX ISA's
// definition lane by lane (kernels/sim/tensor_core.cpp). Include it after kernels/dialect.h.
//
//   mma_tf32_m16n8k8   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32    D = A B + C
//   mma_bf16_m16n8k16  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32   D = A B + C
//   ldmatrix<N, T>     ldmatrix.sync.aligned.m8n8.xN[.trans].shared.b16       N = 1, 2, 4
//   cp_async<B>        cp.async.{ca,cg}.shared.global [dst], [src], B, src_size   B = 4, 8, 16
//   cp_async_commit_group, cp_async_wait_group<N>
//   tf32_from_float    cvt.rna.tf32.f32          bf16x2_from_floats  cvt.rn.bf16x2.f32
//
// Fragments (PTX ISA 9.7.14.5; lane = %laneid, g = lane >> 2 (groupID), t = lane & 3
// (threadID_in_group)). A is M x K row-major, B is K x N column-major, C and D are M x N.
//
//   m16n8k8 tf32   a[0] A(g, t)    a[1] A(g+8, t)    a[2] A(g, t+4)    a[3] A(g+8, t+4)
//                  b[0] B(t, g)    b[1] B(t+4, g)
//   m16n8k16 bf16  each uint32 holds two bf16, the lower column (or row) in the low half:
//                  a[0] A(g, 2t..2t+1)    a[1] A(g+8, 2t..2t+1)    a[2] A(g, 2t+8..)    a[3] A(g+8, 2t+8..)
//                  b[0] B(2t..2t+1, g)    b[1] B(2t+8..2t+9, g)
//   both, fp32     c[0] C(g, 2t)   c[1] C(g, 2t+1)   c[2] C(g+8, 2t)   c[3] C(g+8, 2t+1)
//
//   ldmatrix: matrix j (0 <= j < N) is 8 rows of 8 b16 values (16 bytes, 16-byte aligned in
//   shared memory); lane 8j + r gives the address of its row r (lanes past 8N give none). Lane l
//   receives in d[j] row g, columns 2t and 2t+1 (low half first): exactly an A or B fragment
//   register. With .trans it receives column g, rows 2t and 2t+1 of matrix j instead.
//
// mma.sync and ldmatrix are warp-collective: all 32 lanes must execute the same call (on sim a
// divergent call is an error naming the kernel and both lines). The tf32 mma takes operands that
// are already tf32 (low 13 bits zero, as tf32_from_float leaves them); sim refuses any other, since
// the hardware would silently ignore those bits. The ISA does not define the order or the internal
// precision of an mma's sums: sim adds the exact products in double and rounds once, hardware may
// truncate partial sums, so the two agree bit for bit only where every partial sum is exact.
//
// cp.async is per thread: it copies `bytes` from global to shared memory asynchronously, reading
// source_bytes of them and zero-filling the rest (source_bytes = 0 writes zeros: padding and
// edges). Both addresses must be aligned to `bytes`. The copies issued since the last commit form
// a group; wait_group<N> returns once at most N of the thread's committed groups are still in
// flight. Only then is the data in shared memory, and only for the calling thread: other threads
// see it after a __syncthreads. On sim a cp.async fills its destination with all-ones bytes (NaN)
// when issued and writes the data at the wait_group that covers it, so reading too early, or
// refilling a stage that another thread still reads, gives NaN.
#pragma once

#include <cstdint>

#include "kernels/rounding.h"

#if defined(__CUDACC__)

namespace unet::cuda {

__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

template <int kMatrices, bool kTranspose>
__device__ __forceinline__ void ldmatrix(uint32_t (&d)[kMatrices], const void* row) {
  static_assert(kMatrices == 1 || kMatrices == 2 || kMatrices == 4, "ldmatrix loads 1, 2 or 4 matrices");
  if constexpr (kMatrices == 1 && kTranspose) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(d[0]) : "r"(shared_address(row)));
  } else if constexpr (kMatrices == 1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(d[0]) : "r"(shared_address(row)));
  } else if constexpr (kMatrices == 2 && kTranspose) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(d[0]), "=r"(d[1]) : "r"(shared_address(row)));
  } else if constexpr (kMatrices == 2) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(d[0]), "=r"(d[1]) : "r"(shared_address(row)));
  } else if constexpr (kTranspose) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3]) : "r"(shared_address(row)));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3]) : "r"(shared_address(row)));
  }
}

// .cg (cache in L2 only) exists for 16 bytes; smaller copies use .ca.
template <int kBytes>
__device__ __forceinline__ void cp_async(void* shared_destination, const void* global_source, int source_bytes) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  if constexpr (kBytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared_destination)),
                 "l"(global_source), "r"(source_bytes)
                 : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(shared_address(shared_destination)),
                 "l"(global_source), "n"(kBytes), "r"(source_bytes)
                 : "memory");
  }
}

__device__ __forceinline__ void cp_async_commit_group() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int kPending>
__device__ __forceinline__ void cp_async_wait_group() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ uint32_t tf32_from_float(float x) {
  uint32_t bits;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(bits) : "f"(x));
  return bits;
}

// cvt.rn.bf16x2.f32 d, a, b puts a in the upper half and b in the lower.
__device__ __forceinline__ uint32_t bf16x2_from_floats(float low, float high) {
  uint32_t bits;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(bits) : "f"(high), "f"(low));
  return bits;
}

}  // namespace unet::cuda

#else  // the sim device

#include "kernels/sim/tensor_core.h"

#endif
