// augment: the CUDA kernels and their launchers (augment.h).
//
// Versions (run one alone with: test_sim_augment "augment*", or test_cuda_augment on a GPU):
//   1  one thread per output pixel; every thread draws its sample's transform (two Philox calls,
//      a sine and a cosine) and builds the map itself: the simplest correct form.
//   2  one block per 256 pixels of one sample: thread 0 draws the transform and builds the map
//      once, in shared memory, and the block's threads read it after a barrier. The work left
//      per pixel is the bilinear gather: four 3-byte reads (cached: neighbouring threads read
//      neighbouring pixels), one mask byte, and 16 bytes of float output.
// Each kernel is a template on its output, `augment_kernel<version><Target>`: BatchTarget (an fp32
// image), and BatchTargetBf16 (a bf16 image: the same two versions through the same per-pixel
// code, each image value rounded once as it is stored; three 2-byte stores, since a 3-channel pixel
// has no 16-byte path).
#include "kernels/augment.h"

#include <cstdint>
#include <string>

#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

// ---------------------------------------------------------------------------------------------
// kernels

__device__ __forceinline__ void store_image(const float* values, float* image) {
  for (int c = 0; c < 3; ++c) image[c] = values[c];
}

__device__ __forceinline__ void store_image(const float* values, bf16* image) {
  for (int c = 0; c < 3; ++c) image[c] = to_bf16(values[c]);
}

// Target: BatchTarget or BatchTargetBf16. The pixel is sampled in fp32 and stored in the target's type.
template <class Target>
__device__ __forceinline__ void write_pixel(const SliceData& data, const Target& target, int b, int64_t p,
                                            bool valid, int slice, const AffineMap& map) {
  const int64_t pixel = b * static_cast<int64_t>(data.height) * data.width + p;
  float* mask = target.mask + pixel * target.mask_stride;
  float image[3] = {NAN, NAN, NAN};
  if (valid) {
    const int y = static_cast<int>(p / data.width), x = static_cast<int>(p % data.width);
    sample_pixel(data, slice, map, x, y, image, mask);
  } else {
    *mask = NAN;
  }
  store_image(image, target.image + pixel * target.image_stride);
}

// grid (ceil(H W / blockDim.x), batch): thread -> pixel p of sample blockIdx.y.
template <class Target>
__device__ __forceinline__ void augment_pixel1(const SliceData& data, const BatchSource& source, int batch,
                                               const Target& target) {
  const int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (p >= static_cast<int64_t>(data.height) * data.width) return;
  const int b = static_cast<int>(blockIdx.y);
  int slice = 0;
  AffineMap map{};
  const bool valid = plan_sample(data, source, batch, b, &slice, &map);
  write_pixel(data, target, b, p, valid, slice, map);
}

template <class Target>
__device__ __forceinline__ void augment_pixel2(const SliceData& data, const BatchSource& source, int batch,
                                               const Target& target) {
  __shared__ AffineMap shared_map;
  __shared__ int shared_slice;
  __shared__ int shared_valid;
  const int b = static_cast<int>(blockIdx.y);
  if (threadIdx.x == 0) {
    int slice = 0;
    AffineMap map{};
    shared_valid = plan_sample(data, source, batch, b, &slice, &map) ? 1 : 0;
    shared_slice = slice;
    shared_map = map;
  }
  __syncthreads();
  const int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (p >= static_cast<int64_t>(data.height) * data.width) return;
  write_pixel(data, target, b, p, shared_valid != 0, shared_slice, shared_map);
}

// Target: BatchTarget (an fp32 image) or BatchTargetBf16.
template <class Target>
__global__ void augment_kernel1(SliceData data, BatchSource source, int batch, Target target) {
  augment_pixel1(data, source, batch, target);
}

template <class Target>
__global__ void augment_kernel2(SliceData data, BatchSource source, int batch, Target target) {
  augment_pixel2(data, source, batch, target);
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

namespace {

constexpr int block_threads = 256;

template <class Target>
void check_arguments(const SliceData& data, const BatchSource& source, int batch, const Target& target) {
  auto fail = [](const std::string& what) { throw Error("augment: " + what); };
  if (batch < 0 || batch > 65535) fail("batch " + std::to_string(batch) + " is outside [0, 65535]");
  if (target.image_stride < 3 || target.mask_stride < 1) {
    fail("pixel strides " + std::to_string(target.image_stride) + " (image) and " +
         std::to_string(target.mask_stride) + " (mask) must be at least 3 and 1");
  }
  if (source.step != nullptr && source.steps_per_epoch < 1) fail("steps_per_epoch must be positive");
  if (data.height < 0 || data.width < 0) fail("negative image size");
}

}  // namespace

template <DeviceKind D>
void Augment<D>::build_batch(const SliceData& data, const BatchSource& source, int batch, const BatchTarget& target,
                             Stream stream, int version) {
  check_arguments(data, source, batch, target);
  const int64_t plane = static_cast<int64_t>(data.height) * data.width;
  if (batch == 0 || plane == 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(plane, block_threads)), static_cast<unsigned>(batch));
  if (version == 1) {
    launch(KERNEL(augment_kernel1<BatchTarget>), grid, dim3(block_threads), 0, stream, data, source, batch, target);
  } else {
    launch(KERNEL(augment_kernel2<BatchTarget>), grid, dim3(block_threads), 0, stream, data, source, batch, target);
  }
}

template <DeviceKind D>
void Augment<D>::build_batch(const SliceData& data, const BatchSource& source, int batch,
                             const BatchTargetBf16& target, Stream stream, int version) {
  check_arguments(data, source, batch, target);
  const int64_t plane = static_cast<int64_t>(data.height) * data.width;
  if (batch == 0 || plane == 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(plane, block_threads)), static_cast<unsigned>(batch));
  if (version == 1) {
    launch(KERNEL(augment_kernel1<BatchTargetBf16>), grid, dim3(block_threads), 0, stream, data, source, batch, target);
  } else {
    launch(KERNEL(augment_kernel2<BatchTargetBf16>), grid, dim3(block_threads), 0, stream, data, source, batch, target);
  }
}

template struct Augment<KERNEL_DEVICE>;

}  // namespace unet
