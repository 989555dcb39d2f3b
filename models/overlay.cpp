#include "models/overlay.h"

#include <stb/stb_image_write.h>


#include "engine/files.h"
#include "kernels/backend.h"

namespace unet {

namespace {

// A mask pixel on the boundary: set, with a 4-neighbour unset or outside the image.
bool outline(const uint8_t* mask, int height, int width, int y, int x) {
  if (!mask[y * width + x]) return false;
  return y == 0 || x == 0 || y == height - 1 || x == width - 1 || !mask[(y - 1) * width + x] ||
         !mask[(y + 1) * width + x] || !mask[y * width + x - 1] || !mask[y * width + x + 1];
}

}  // namespace

std::vector<uint8_t> overlay(const uint8_t* slice, const uint8_t* truth, const uint8_t* predicted, int height, int width) {
  std::vector<uint8_t> rgb(static_cast<size_t>(height) * width * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int64_t p = int64_t{y} * width + x;
      const uint8_t flair = slice[p * 3 + 1];
      const bool red = truth != nullptr && outline(truth, height, width, y, x);
      const bool green = predicted != nullptr && outline(predicted, height, width, y, x);
      uint8_t* out = &rgb[p * 3];
      out[0] = red ? 255 : (green ? 0 : flair);
      out[1] = green ? 255 : (red ? 0 : flair);
      out[2] = (red || green) ? 0 : flair;
    }
  }
  return rgb;
}

void write_png(const std::string& path, const uint8_t* pixels, int height, int width, int channels) {
  std::string data;
  const auto append = [](void* context, void* bytes, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(bytes), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(append, &data, width, height, channels, pixels, width * channels)) {
    throw Error(path + ": cannot encode the PNG");
  }
  write_file_atomic(path, data);
}

}  // namespace unet
