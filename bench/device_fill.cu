// Benchmark helpers on the GPU (device_fill.h). Not a kernels/ op: cuda only, plain CUDA.
#include "bench/device_fill.h"

#include "kernels/cuda_check.h"

namespace unet::bench {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocks = 4096;  // grid-stride loops: enough blocks to fill any GPU

__device__ uint32_t hash(uint64_t seed, uint64_t index) {  // splitmix64's finaliser
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + index;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
}

__device__ float unit(uint64_t seed, uint64_t index) {  // [0, 1) with 24 random bits
  return static_cast<float>(hash(seed, index) >> 8) * (1.0f / 16777216.0f);
}

__global__ void fill_uniform_kernel(float* data, size_t count, uint64_t seed, float low, float high) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < count; i += size_t{gridDim.x} * blockDim.x) {
    data[i] = low + (high - low) * unit(seed, i);
  }
}

__global__ void fill_uniform_bf16_kernel(bf16* data, size_t count, uint64_t seed, float low, float high) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < count; i += size_t{gridDim.x} * blockDim.x) {
    data[i] = to_bf16(low + (high - low) * unit(seed, i));
  }
}

__global__ void fill_binary_kernel(float* data, size_t count, uint64_t seed, float ones) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < count; i += size_t{gridDim.x} * blockDim.x) {
    data[i] = unit(seed, i) < ones ? 1.0f : 0.0f;
  }
}

__device__ bool finite(float x) { return isfinite(x); }
__device__ bool finite(bf16 x) { return (x.bits & 0x7f80u) != 0x7f80u; }  // NaN and Inf: exponent all ones

// data: count elements, pixels of pixel_stride of which the first `channels` are values.
template <class T>
__global__ void count_nonfinite_kernel(const T* data, size_t count, int channels, int pixel_stride,
                                       unsigned long long* total) {
  unsigned long long bad = 0;
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < count; i += size_t{gridDim.x} * blockDim.x) {
    if (static_cast<int>(i % pixel_stride) < channels) bad += finite(data[i]) ? 0 : 1;
  }
  if (bad) atomicAdd(total, bad);  // an integer count: exact in any order
}

template <class T>
int64_t count_nonfinite_of(const T* data, size_t count, int channels, int pixel_stride, cudaStream_t stream) {
  unsigned long long* total = nullptr;
  CUDA_CHECK(cudaMallocAsync(&total, sizeof(*total), stream));
  CUDA_CHECK(cudaMemsetAsync(total, 0, sizeof(*total), stream));
  count_nonfinite_kernel<<<kBlocks, kThreads, 0, stream>>>(data, count, channels, pixel_stride, total);
  CUDA_CHECK(cudaGetLastError());
  unsigned long long host = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host, total, sizeof(host), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaFreeAsync(total, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return static_cast<int64_t>(host);
}

}  // namespace

void fill_uniform(float* data, size_t count, uint64_t seed, float low, float high, cudaStream_t stream) {
  fill_uniform_kernel<<<kBlocks, kThreads, 0, stream>>>(data, count, seed, low, high);
  CUDA_CHECK(cudaGetLastError());
}

void fill_uniform_bf16(bf16* data, size_t count, uint64_t seed, float low, float high, cudaStream_t stream) {
  fill_uniform_bf16_kernel<<<kBlocks, kThreads, 0, stream>>>(data, count, seed, low, high);
  CUDA_CHECK(cudaGetLastError());
}

void fill_binary(float* data, size_t count, uint64_t seed, float ones, cudaStream_t stream) {
  fill_binary_kernel<<<kBlocks, kThreads, 0, stream>>>(data, count, seed, ones);
  CUDA_CHECK(cudaGetLastError());
}

int64_t count_nonfinite(const float* data, size_t count, cudaStream_t stream) {
  return count_nonfinite_of(data, count, 1, 1, stream);
}

int64_t count_nonfinite(const bf16* data, size_t count, int channels, int pixel_stride, cudaStream_t stream) {
  return count_nonfinite_of(data, count, channels, pixel_stride, stream);
}

}  // namespace unet::bench
