// Filling benchmark buffers on the GPU and checking them afterwards: hundreds of MiB per layer,
// too many to generate on the host and copy for every benchmark.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/rounding.h"

namespace unet::bench {

// Uniform in [low, high), from a hash of (seed, index): different seeds give different values.
void fill_uniform(float* data, size_t count, uint64_t seed, float low, float high, cudaStream_t stream);
// The same rounded to bf16 (the bf16 kernels' inputs).
void fill_uniform_bf16(bf16* data, size_t count, uint64_t seed, float low, float high, cudaStream_t stream);
// 1 with probability `ones`, else 0: segmentation targets.
void fill_binary(float* data, size_t count, uint64_t seed, float ones, cudaStream_t stream);
// How many of the values are NaN or infinite; waits for the stream.
int64_t count_nonfinite(const float* data, size_t count, cudaStream_t stream);
// The same for bf16 values, read as bf16 (exponent bits all ones), never as pairs of floats: of
// `count` elements laid out as pixels of `pixel_stride`, the first `channels` of each pixel.
int64_t count_nonfinite(const bf16* data, size_t count, int channels, int pixel_stride, cudaStream_t stream);

}  // namespace unet::bench
