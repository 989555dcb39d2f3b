// augment: the CPU reference (augment.h). One sample at a time, one pixel at a time, through the
// same per-sample and per-pixel functions as the kernels.
#include <cmath>
#include <cstdint>

#include "kernels/augment.h"

#include <vector>

namespace unet::cpu {

void build_batch(const SliceData& data, const BatchSource& source, int batch, const BatchTarget& target) {
  const int64_t plane = static_cast<int64_t>(data.height) * data.width;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < batch; ++b) {
    int slice = 0;
    AffineMap map{};
    const bool valid = plan_sample(data, source, batch, b, &slice, &map);
    for (int y = 0; y < data.height; ++y) {
      for (int x = 0; x < data.width; ++x) {
        const int64_t pixel = b * plane + static_cast<int64_t>(y) * data.width + x;
        float* image = target.image + pixel * target.image_stride;
        float* mask = target.mask + pixel * target.mask_stride;
        if (valid) {
          sample_pixel(data, slice, map, x, y, image, mask);
        } else {
          image[0] = image[1] = image[2] = *mask = NAN;
        }
      }
    }
  }
}

}  // namespace unet::cpu

namespace unet {

// The cpu device's launcher (augment.h): the reference above.
template <>
void Augment<DeviceKind::cpu>::build_batch(const SliceData& data, const BatchSource& source, int batch,
                                           const BatchTarget& target, Stream, int) {
  cpu::build_batch(data, source, batch, target);
}

}  // namespace unet

// ---------------------------------------------------------------------------------------------
// bf16

namespace unet::cpu {

// The fp32 batch into a dense image (the mask straight into its target), then each value rounded.
void build_batch(const SliceData& data, const BatchSource& source, int batch, const BatchTargetBf16& target) {
  const int64_t pixels = int64_t{batch} * data.height * data.width;
  std::vector<float> image(static_cast<size_t>(pixels) * 3);
  build_batch(data, source, batch, BatchTarget{image.data(), 3, target.mask, target.mask_stride});
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < 3; ++c) target.image[p * target.image_stride + c] = to_bf16(image[p * 3 + c]);
  }
}

}  // namespace unet::cpu

namespace unet {

template <>
void Augment<DeviceKind::cpu>::build_batch(const SliceData& data, const BatchSource& source, int batch,
                                           const BatchTargetBf16& target, Stream, int) {
  cpu::build_batch(data, source, batch, target);
}

}  // namespace unet
