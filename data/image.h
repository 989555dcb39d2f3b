// Image files: reading TIFF (libtiff) and PNG, JPEG, BMP (stb_image), writing TIFF, and the
// conversions a slice goes through at load time (to three 8-bit channels or a 0/1 mask; resize).
//
// TIFF: 8- or 16-bit unsigned samples; grey (min-is-black or min-is-white), grey + alpha, RGB,
// RGBA; strips or tiles; interleaved or planar; any compression this libtiff decodes (none, LZW,
// Deflate, PackBits among them); the first image of the file. The format is told by the file's
// first bytes, not its name. Anything else is one unet::Error "<path>: <reason>".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace unet {

// Decoded samples as stored: height x width pixels of `channels` interleaved samples of `bits`.
struct Image {
  int width = 0, height = 0;
  int channels = 0;  // 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
  int bits = 8;      // 8 or 16; 0 is black (min-is-white TIFFs are inverted when read)
  std::vector<uint16_t> samples;  // (height, width, channels)
};

Image read_image(const std::string& path);
// The same into `image`, reusing its storage (and a per-thread file buffer): loading thousands of
// slices then allocates, and faults in, no memory per slice.
void read_image(const std::string& path, Image& image);

// The three channels of a slice, 8-bit: grey repeated in each, alpha dropped; 16-bit samples are
// scaled to 8 bits with rounding, v8 = (255 v16 + 32767) / 65535 (so 65535 -> 255, 0 -> 0).
void slice_channels(const Image& image, uint8_t* out /*(height, width, 3)*/);
// 1 where any colour sample is non-zero (at the file's depth, before any scaling), else 0; alpha
// is ignored.
void mask_pixels(const Image& image, uint8_t* out /*(height, width)*/);

// Resizing with pixel centres aligned (PyTorch's align_corners=False): bilinear with edge
// replication and rounding to nearest for images, nearest ("nearest-exact") for masks. No
// antialiasing: a large reduction aliases.
std::vector<uint8_t> resize_bilinear(const std::vector<uint8_t>& pixels, int height, int width, int channels,
                                     int out_height, int out_width);
std::vector<uint8_t> resize_nearest(const std::vector<uint8_t>& pixels, int height, int width, int channels,
                                    int out_height, int out_width);

// How write_tiff lays a file out.
struct TiffLayout {
  enum class Compression { none, lzw, deflate, packbits };
  Compression compression = Compression::none;
  bool predictor = false;     // horizontal differencing (LZW and Deflate)
  int rows_per_strip = 0;     // 0: libtiff's default; ignored when tiled
  int tile = 0;               // > 0: square tiles of this size (a multiple of 16)
  bool planar = false;        // one plane per channel instead of interleaved samples
  bool min_is_white = false;  // grey only
  bool big_endian = false;    // "MM" byte order (libtiff swaps 16-bit samples when reading)
};

// Writes `image` (its samples at its depth) as a TIFF; `channels` 1 and 2 are grey, 3 and 4 RGB.
void write_tiff(const std::string& path, const Image& image, const TiffLayout& layout = {});

}  // namespace unet
