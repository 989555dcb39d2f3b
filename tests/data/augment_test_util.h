// Slices in host memory for the augmentation tests, and the reference batch built from them.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/augment.h"

namespace unet::test {

struct HostSlices {
  int slices = 0, height = 0, width = 0;
  std::vector<uint8_t> images;  // (slices, height, width, 3)
  std::vector<uint8_t> masks;   // (slices, height, width)
  std::vector<int32_t> volume;  // (slices)
  std::vector<float> mean, stddev;  // (volumes, 3)

  // Host pointers: valid for the cpu reference (and for sim, whose memory is the host's).
  SliceData view(bool zscore) const {
    return {images.data(), masks.data(), volume.data(), zscore ? mean.data() : nullptr,
            zscore ? stddev.data() : nullptr, slices, height, width};
  }
};

// Random intensities; masks of random rectangles (so nearest sampling has edges to get right);
// slices spread over two volumes with made-up z-score rows.
inline HostSlices random_slices(int slices, int height, int width, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  HostSlices s;
  s.slices = slices;
  s.height = height;
  s.width = width;
  const size_t plane = static_cast<size_t>(height) * width;
  s.images.resize(plane * slices * 3);
  for (auto& v : s.images) v = static_cast<uint8_t>(byte(generator));
  s.masks.assign(plane * slices, 0);
  for (int i = 0; i < slices; ++i) {
    const int x0 = byte(generator) % width, y0 = byte(generator) % height;
    const int x1 = x0 + 1 + byte(generator) % width, y1 = y0 + 1 + byte(generator) % height;
    for (int y = y0; y < std::min(y1, height); ++y) {
      for (int x = x0; x < std::min(x1, width); ++x) s.masks[i * plane + static_cast<size_t>(y) * width + x] = 1;
    }
    s.volume.push_back(i % 2);
  }
  s.mean = {0.40f, 0.50f, 0.45f, 0.30f, 0.52f, 0.61f};
  s.stddev = {0.20f, 0.25f, 0.22f, 0.18f, 0.30f, 0.27f};
  return s;
}

struct HostBatch {
  std::vector<float> image;  // (batch, height, width, 3)
  std::vector<float> mask;   // (batch, height, width, 1)
};

// Outputs start as NaN: an element the reference failed to write shows.
inline HostBatch reference_batch(const HostSlices& slices, bool zscore, const BatchSource& source, int batch) {
  const size_t pixels = static_cast<size_t>(batch) * slices.height * slices.width;
  HostBatch out{std::vector<float>(pixels * 3, NAN), std::vector<float>(pixels, NAN)};
  cpu::build_batch(slices.view(zscore), source, batch, {out.image.data(), 3, out.mask.data(), 1});
  return out;
}

}  // namespace unet::test
