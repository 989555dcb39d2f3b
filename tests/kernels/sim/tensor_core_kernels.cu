// Tensor-core feature kernels for the dialect tests; see tensor_core_kernels.h.
#include "tests/kernels/sim/tensor_core_kernels.h"

#include "kernels/dialect.h"
#include "kernels/tensor_core.h"

namespace unet::KERNEL_BACKEND {

__device__ __forceinline__ int lane_group() { return static_cast<int>(threadIdx.x) >> 2; }
__device__ __forceinline__ int lane_in_group() { return static_cast<int>(threadIdx.x) & 3; }

// C and D of both shapes: c[i] is (g + 8 (i >= 2), 2t + (i & 1)) of a (16, 8) row-major matrix.
__device__ __forceinline__ int accumulator_index(int i) {
  return (lane_group() + (i >= 2 ? 8 : 0)) * 8 + lane_in_group() * 2 + (i & 1);
}

__global__ void mma_tf32_kernel(const float* a, const float* b, const float* c, float* d) {
  const int g = lane_group(), t = lane_in_group();
  const uint32_t a_frag[4] = {tf32_from_float(a[g * 8 + t]), tf32_from_float(a[(g + 8) * 8 + t]),
                              tf32_from_float(a[g * 8 + t + 4]), tf32_from_float(a[(g + 8) * 8 + t + 4])};
  const uint32_t b_frag[2] = {tf32_from_float(b[t * 8 + g]), tf32_from_float(b[(t + 4) * 8 + g])};
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = c[accumulator_index(i)];
  mma_tf32_m16n8k8(acc, a_frag, b_frag, acc);
  for (int i = 0; i < 4; ++i) d[accumulator_index(i)] = acc[i];
}

__global__ void mma_bf16_kernel(const float* a, const float* b, const float* c, float* d) {
  const int g = lane_group(), t = lane_in_group();
  uint32_t a_frag[4], b_frag[2];
  for (int r = 0; r < 4; ++r) {
    const float* row = a + (g + (r & 1) * 8) * 16 + 2 * t + (r >> 1) * 8;
    a_frag[r] = bf16x2_from_floats(row[0], row[1]);
  }
  for (int r = 0; r < 2; ++r) {
    const int k = 2 * t + r * 8;
    b_frag[r] = bf16x2_from_floats(b[k * 8 + g], b[(k + 1) * 8 + g]);
  }
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = c[accumulator_index(i)];
  mma_bf16_m16n8k16(acc, a_frag, b_frag, acc);
  for (int i = 0; i < 4; ++i) d[accumulator_index(i)] = acc[i];
}

template <int kMatrices, bool kTranspose>
__device__ void load_matrices(const uint16_t* staged, uint32_t* registers) {
  const int lane = static_cast<int>(threadIdx.x);
  uint32_t d[kMatrices];
  // Lane 8j + r points at row r of matrix j; lanes past 8 x kMatrices point at valid rows too.
  ldmatrix<kMatrices, kTranspose>(d, staged + (lane % (8 * kMatrices)) * 8);
  for (int j = 0; j < kMatrices; ++j) registers[lane * 4 + j] = d[j];
}

__global__ void ldmatrix_kernel(const uint16_t* matrices, uint32_t* registers) {
  DYNAMIC_SHARED(uint16_t, staged);  // (4, 8, 8), 16-byte aligned rows
  for (int i = static_cast<int>(threadIdx.x); i < 4 * 64; i += 32) staged[i] = matrices[i];
  __syncthreads();
  load_matrices<1, false>(staged, registers + 0 * 128);
  load_matrices<2, false>(staged, registers + 1 * 128);
  load_matrices<4, false>(staged, registers + 2 * 128);
  load_matrices<1, true>(staged, registers + 3 * 128);
  load_matrices<2, true>(staged, registers + 4 * 128);
  load_matrices<4, true>(staged, registers + 5 * 128);
}

__global__ void cp_async_groups_kernel(const float* x, float* out) {
  DYNAMIC_SHARED(float, shared);  // four regions of 64 floats
  float* words = shared;
  float* quads = shared + 64;
  float* pairs = shared + 128;
  float* zeros = shared + 192;
  const int t = static_cast<int>(threadIdx.x);
  float* mine = out + t * 8;
  // Written first, as a stage used before would be: a copy in flight must not read as this.
  for (int i = t; i < 4 * 64; i += 64) shared[i] = -1.0f;
  __syncthreads();
  cp_async<4>(words + t, x + t, 4);
  cp_async_commit_group();
  if (t < 16) cp_async<16>(quads + 4 * t, x + 64 + 4 * t, 16);
  cp_async_commit_group();
  if (t < 32) cp_async<8>(pairs + 2 * t, x + 128 + 2 * t, 4);  // src-size 4: the upper half is zero
  cp_async<4>(zeros + t, x, 0);
  cp_async_commit_group();
  mine[0] = words[t];
  cp_async_wait_group<2>();
  mine[1] = words[t];
  mine[2] = t < 16 ? quads[4 * t] : 0.0f;
  cp_async_wait_group<0>();
  mine[3] = t < 16 ? quads[4 * t] : 0.0f;
  mine[4] = t < 32 ? pairs[2 * t] : 0.0f;
  mine[5] = t < 32 ? pairs[2 * t + 1] : 0.0f;
  mine[6] = zeros[t];
  __syncthreads();
  mine[7] = words[(t + 1) % 64];
}

__global__ void neighbour_after_wait_kernel(bool barrier, const float* x, float* y) {
  DYNAMIC_SHARED(float, staged);
  const int t = static_cast<int>(threadIdx.x);
  cp_async<4>(staged + t, x + t, 4);
  cp_async_commit_group();
  cp_async_wait_group<0>();
  if (barrier) __syncthreads();
  y[t] = staged[t > 0 ? t - 1 : 0];
}

__global__ void conversions_kernel(int n, const float* x, uint32_t* tf32, uint32_t* bf16x2) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  tf32[i] = tf32_from_float(x[i]);
  bf16x2[i] = bf16x2_from_floats(x[i], -x[i]);
}

__global__ void divergent_mma_kernel(float* d) {
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float acc[4] = {0, 0, 0, 0};
  if (threadIdx.x < 16) {
    mma_tf32_m16n8k8(acc, a, b, acc);
  } else {
    mma_tf32_m16n8k8(acc, a, b, acc);
  }
  d[threadIdx.x] = acc[0];
}

__global__ void mma_with_returned_lanes_kernel(float* d) {
  if (threadIdx.x >= 16) return;
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float acc[4] = {0, 0, 0, 0};
  mma_tf32_m16n8k8(acc, a, b, acc);
  d[threadIdx.x] = acc[0];
}

__global__ void unrounded_tf32_mma_kernel(float* d) {
  const float unrounded = 1.0f + 1.0f / (1 << 20);  // mantissa bit 3: below tf32's precision
  const uint32_t a[4] = {__float_as_uint(unrounded), 0, 0, 0}, b[2] = {0, 0};
  float acc[4] = {0, 0, 0, 0};
  mma_tf32_m16n8k8(acc, a, b, acc);
  d[threadIdx.x] = acc[0];
}

__global__ void misaligned_ldmatrix_kernel(uint32_t* out) {
  DYNAMIC_SHARED(uint16_t, staged);
  const int lane = static_cast<int>(threadIdx.x);
  uint32_t d[1];
  ldmatrix<1, false>(d, staged + (lane % 8) * 8 + (lane == 3 ? 4 : 0));
  out[lane] = d[0];
}

__global__ void misaligned_cp_async_kernel(const float* x) {
  DYNAMIC_SHARED(float, staged);
  cp_async<16>(staged + 1, x, 16);
  cp_async_commit_group();
  cp_async_wait_group<0>();
}

}  // namespace unet::KERNEL_BACKEND

namespace unet {

using namespace KERNEL_BACKEND;

template <DeviceKind D>
void TensorCoreKernels<D>::mma_tf32(const float* a, const float* b, const float* c, float* d, Stream stream) {
  launch(KERNEL(mma_tf32_kernel), dim3(1), dim3(32), 0, stream, a, b, c, d);
}

template <DeviceKind D>
void TensorCoreKernels<D>::mma_bf16(const float* a, const float* b, const float* c, float* d, Stream stream) {
  launch(KERNEL(mma_bf16_kernel), dim3(1), dim3(32), 0, stream, a, b, c, d);
}

template <DeviceKind D>
void TensorCoreKernels<D>::ldmatrix(const uint16_t* matrices, uint32_t* registers, Stream stream) {
  launch(KERNEL(ldmatrix_kernel), dim3(1), dim3(32), 4 * 64 * sizeof(uint16_t), stream, matrices, registers);
}

template <DeviceKind D>
void TensorCoreKernels<D>::cp_async_groups(const float* x, float* out, Stream stream) {
  launch(KERNEL(cp_async_groups_kernel), dim3(1), dim3(64), 4 * 64 * sizeof(float), stream, x, out);
}

template <DeviceKind D>
void TensorCoreKernels<D>::neighbour_after_wait(bool barrier, const float* x, float* y, Stream stream) {
  launch(KERNEL(neighbour_after_wait_kernel), dim3(1), dim3(64), 64 * sizeof(float), stream, barrier, x, y);
}

template <DeviceKind D>
void TensorCoreKernels<D>::conversions(int n, const float* x, uint32_t* tf32, uint32_t* bf16x2, Stream stream) {
  launch(KERNEL(conversions_kernel), blocks_for(n, 64), dim3(64), 0, stream, n, x, tf32, bf16x2);
}

// The misuse kernels write nowhere that matters: their launches fail on sim before any output.
template <DeviceKind D>
void TensorCoreKernels<D>::divergent_mma(Stream stream) {
  launch(KERNEL(divergent_mma_kernel), dim3(1), dim3(32), 0, stream, nullptr);
}

template <DeviceKind D>
void TensorCoreKernels<D>::mma_with_returned_lanes(Stream stream) {
  launch(KERNEL(mma_with_returned_lanes_kernel), dim3(1), dim3(32), 0, stream, nullptr);
}

template <DeviceKind D>
void TensorCoreKernels<D>::unrounded_tf32_mma(Stream stream) {
  launch(KERNEL(unrounded_tf32_mma_kernel), dim3(1), dim3(32), 0, stream, nullptr);
}

template <DeviceKind D>
void TensorCoreKernels<D>::misaligned_ldmatrix(Stream stream) {
  launch(KERNEL(misaligned_ldmatrix_kernel), dim3(1), dim3(32), 64 * sizeof(uint16_t), stream, nullptr);
}

template <DeviceKind D>
void TensorCoreKernels<D>::misaligned_cp_async(Stream stream) {
  launch(KERNEL(misaligned_cp_async_kernel), dim3(1), dim3(1), 8 * sizeof(float), stream, nullptr);
}

template struct TensorCoreKernels<KERNEL_DEVICE>;

}  // namespace unet
