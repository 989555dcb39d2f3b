// augment: the CPU reference (augment.h). One sample at a time, one pixel at a time, through the
// same per-sample and per-pixel functions as the kernels.
#include <cmath>
#include <cstdint>

#include "kernels/augment.h"

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
