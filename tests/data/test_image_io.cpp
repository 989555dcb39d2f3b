// Image files: every supported kind written and read back, conversions to slices, resizing, and
// each kind of bad file reported as one line naming the file.
#include <catch2/catch.hpp>
#include <stb/stb_image_write.h>
#include <tiffio.h>
#include <zlib.h>

#include "data/image.h"
#include "kernels/backend.h"
#include "tests/data/data_test_util.h"

using namespace unet;
using test::TempDir;

namespace {

using Compression = TiffLayout::Compression;

void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void png_chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put32(png, static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
}

// stb_image_write writes 8-bit PNGs only: a minimal 16-bit PNG encoder (no filtering).
std::vector<uint8_t> png16(const Image& image) {
  const uint8_t colour_types[] = {0, 0, 4, 2, 6};  // by channel count: grey, grey+alpha, RGB, RGBA
  std::vector<uint8_t> header;
  put32(header, static_cast<uint32_t>(image.width));
  put32(header, static_cast<uint32_t>(image.height));
  header.insert(header.end(), {16, colour_types[image.channels], 0, 0, 0});
  std::vector<uint8_t> raw;
  for (int y = 0; y < image.height; ++y) {
    raw.push_back(0);
    for (int i = 0; i < image.width * image.channels; ++i) {
      const uint16_t v = image.samples[static_cast<size_t>(y) * image.width * image.channels + i];
      raw.push_back(static_cast<uint8_t>(v >> 8));
      raw.push_back(static_cast<uint8_t>(v));
    }
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> compressed(size);
  compress(compressed.data(), &size, raw.data(), static_cast<uLong>(raw.size()));
  compressed.resize(size);
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  png_chunk(png, "IHDR", header);
  png_chunk(png, "IDAT", compressed);
  png_chunk(png, "IEND", {});
  return png;
}

std::vector<uint8_t> channels_of(const Image& image) {
  std::vector<uint8_t> out(static_cast<size_t>(image.width) * image.height * 3);
  slice_channels(image, out.data());
  return out;
}

std::vector<uint8_t> mask_of(const Image& image) {
  std::vector<uint8_t> out(static_cast<size_t>(image.width) * image.height);
  mask_pixels(image, out.data());
  return out;
}

std::string error_of(const std::string& path) {
  try {
    read_image(path);
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

// A TIFF written directly through libtiff with tags write_tiff never writes.
void write_odd_tiff(const std::string& path, uint16_t bits, uint16_t sample_format, uint16_t photometric) {
  TIFF* tiff = TIFFOpen(path.c_str(), "w");
  REQUIRE(tiff != nullptr);
  TIFFSetField(tiff, TIFFTAG_IMAGEWIDTH, 4u);
  TIFFSetField(tiff, TIFFTAG_IMAGELENGTH, 4u);
  TIFFSetField(tiff, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(tiff, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1});
  TIFFSetField(tiff, TIFFTAG_SAMPLEFORMAT, sample_format);
  TIFFSetField(tiff, TIFFTAG_PHOTOMETRIC, photometric);
  TIFFSetField(tiff, TIFFTAG_ROWSPERSTRIP, 4u);
  if (photometric == PHOTOMETRIC_PALETTE) {
    std::vector<uint16_t> map(size_t{1} << bits, 0);
    TIFFSetField(tiff, TIFFTAG_COLORMAP, map.data(), map.data(), map.data());
  }
  std::vector<uint8_t> data(4 * 4 * bits / 8, 7);
  TIFFWriteEncodedStrip(tiff, 0, data.data(), static_cast<tmsize_t>(data.size()));
  TIFFClose(tiff);
}

}  // namespace

TEST_CASE("image files: TIFF round trips, every depth, channel count, layout and compression", "[image]") {
  TempDir dir;
  struct Case {
    const char* name;
    TiffLayout layout;
  };
  std::vector<Case> cases;
  for (Compression compression : {Compression::none, Compression::lzw, Compression::deflate, Compression::packbits}) {
    TiffLayout strips{compression, false, 3, 0, false, false};
    TiffLayout tiles{compression, false, 0, 16, false, false};
    TiffLayout planar_strips{compression, false, 5, 0, true, false};
    TiffLayout planar_tiles{compression, false, 0, 16, true, false};
    cases.push_back({"strips", strips});
    cases.push_back({"tiles", tiles});
    cases.push_back({"planar strips", planar_strips});
    cases.push_back({"planar tiles", planar_tiles});
  }
  cases.push_back({"lzw + predictor", {Compression::lzw, true, 4, 0, false, false}});
  cases.push_back({"deflate + predictor", {Compression::deflate, true, 0, 0, false, false}});  // like the LGG subset
  cases.push_back({"one strip", {Compression::none, false, 1000, 0, false, false}});
  cases.push_back({"min-is-white", {Compression::none, false, 0, 0, false, true}});
  cases.push_back({"big-endian", {Compression::lzw, true, 7, 0, false, false, true}});
  cases.push_back({"big-endian planar tiles", {Compression::none, false, 0, 16, true, false, true}});
  int files = 0;
  for (const Case& c : cases) {
    for (int bits : {8, 16}) {
      for (int channels : {1, 2, 3, 4}) {
        if (c.layout.min_is_white && channels > 2) continue;
        INFO(c.name << ", compression " << static_cast<int>(c.layout.compression) << ", " << bits << "-bit, "
                    << channels << " channels");
        const Image image = test::random_image(37, 29, channels, bits, static_cast<uint32_t>(files));  // odd sizes: partial tiles and strips
        const std::string path = dir / ("image" + std::to_string(files++) + ".tif");
        write_tiff(path, image, c.layout);
        CHECK(test::read_bytes(path)[0] == (c.layout.big_endian ? 'M' : 'I'));
        const Image read = read_image(path);
        CHECK(read.width == 37);
        CHECK(read.height == 29);
        CHECK(read.channels == channels);
        CHECK(read.bits == bits);
        CHECK(read.samples == image.samples);
      }
    }
  }
  CHECK(files == 8 * 16 + 8 * 5 + 4);
}

TEST_CASE("image files: PNG (8 and 16 bit), BMP and JPEG through stb_image", "[image]") {
  TempDir dir;
  for (int channels : {1, 2, 3, 4}) {
    INFO(channels << " channels");
    const Image image8 = test::random_image(23, 17, channels, 8, 10 + channels);
    const std::vector<uint8_t> bytes = test::image_bytes(image8);
    const std::string png = dir / ("a" + std::to_string(channels) + ".png");
    REQUIRE(stbi_write_png(png.c_str(), 23, 17, channels, bytes.data(), 23 * channels) != 0);
    const Image read = read_image(png);
    CHECK(read.bits == 8);
    CHECK(read.channels == channels);
    CHECK(read.samples == image8.samples);

    const Image image16 = test::random_image(23, 17, channels, 16, 20 + channels);
    const std::string png16_path = dir / ("b" + std::to_string(channels) + ".png");
    test::write_bytes(png16_path, png16(image16));
    const Image read16 = read_image(png16_path);
    CHECK(read16.bits == 16);
    CHECK(read16.channels == channels);
    CHECK(read16.samples == image16.samples);
  }
  // BMP stores RGB (grey is written as three equal channels) or RGBA.
  for (int channels : {3, 4}) {
    const Image image = test::random_image(21, 13, channels, 8, 30 + channels);
    const std::string bmp = dir / ("c" + std::to_string(channels) + ".bmp");
    const std::vector<uint8_t> bytes = test::image_bytes(image);
    REQUIRE(stbi_write_bmp(bmp.c_str(), 21, 13, channels, bytes.data()) != 0);
    const Image read = read_image(bmp);
    CHECK(read.channels == channels);
    CHECK(read.samples == image.samples);
  }
  // JPEG is lossy: a smooth image at quality 100 comes back within a few levels.
  Image smooth{32, 32, 3, 8, std::vector<uint16_t>(32 * 32 * 3)};
  for (int i = 0; i < 32 * 32 * 3; ++i) smooth.samples[i] = static_cast<uint16_t>((i / 3 % 32) * 4 + (i / 96) * 2 + i % 3 * 10);
  const std::string jpg = dir / "d.jpg";
  const std::vector<uint8_t> bytes = test::image_bytes(smooth);
  REQUIRE(stbi_write_jpg(jpg.c_str(), 32, 32, 3, bytes.data(), 100) != 0);
  const Image read = read_image(jpg);
  REQUIRE(read.samples.size() == smooth.samples.size());
  double error = 0;
  for (size_t i = 0; i < read.samples.size(); ++i) error += std::abs(read.samples[i] - smooth.samples[i]);
  CHECK(error / read.samples.size() < 3.0);
}

TEST_CASE("image files: the format comes from the bytes, not the name", "[image]") {
  TempDir dir;
  const Image image = test::random_image(8, 8, 3, 8, 5);
  const std::string png_named_tif = dir / "really_a_png.tif";
  const std::vector<uint8_t> bytes = test::image_bytes(image);
  REQUIRE(stbi_write_png(png_named_tif.c_str(), 8, 8, 3, bytes.data(), 24) != 0);
  CHECK(read_image(png_named_tif).samples == image.samples);
}

TEST_CASE("image files: slices take three 8-bit channels, masks any non-zero colour", "[image]") {
  Image grey{3, 1, 1, 8, {0, 128, 255}};
  CHECK(channels_of(grey) == std::vector<uint8_t>{0, 0, 0, 128, 128, 128, 255, 255, 255});
  Image grey_alpha{2, 1, 2, 8, {10, 0, 20, 255}};
  CHECK(channels_of(grey_alpha) == std::vector<uint8_t>{10, 10, 10, 20, 20, 20});
  Image rgba{1, 1, 4, 8, {1, 2, 3, 4}};
  CHECK(channels_of(rgba) == std::vector<uint8_t>{1, 2, 3});
  // 16-bit: rounded to the nearest of 256 levels (65535/255 = 257 per level).
  Image deep{6, 1, 1, 16, {0, 128, 129, 257, 65406, 65535}};
  CHECK(channels_of(deep) == std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 254, 254, 254, 255, 255, 255});

  Image mask{4, 1, 1, 16, {0, 1, 256, 65535}};  // a 16-bit label 1 is tumour, though it scales to 0
  CHECK(mask_of(mask) == std::vector<uint8_t>{0, 1, 1, 1});
  Image rgba_mask{3, 1, 4, 8, {0, 0, 0, 255, 0, 0, 9, 0, 5, 0, 0, 0}};  // alpha alone is not tumour
  CHECK(mask_of(rgba_mask) == std::vector<uint8_t>{0, 1, 1});
}

TEST_CASE("image files: resizing keeps pixel centres aligned", "[image]") {
  // 2x2 -> 4x4 bilinear: output centres at input coordinates -0.25, 0.25, 0.75, 1.25; the edges
  // replicate, so each row is a, a, (a + 3b)/4 ... by weights 1, 0.75/0.25, 0.25/0.75, 1.
  const std::vector<uint8_t> small = {0, 100, 200, 40};
  const auto big = resize_bilinear(small, 2, 2, 1, 4, 4);
  CHECK(std::vector<uint8_t>(big.begin(), big.begin() + 4) == std::vector<uint8_t>{0, 25, 75, 100});
  CHECK(std::vector<uint8_t>(big.begin() + 12, big.end()) == std::vector<uint8_t>{200, 160, 80, 40});
  CHECK(big[4] == 50);  // a quarter of the way from row 0 to row 1: 0.75 * 0 + 0.25 * 200
  CHECK(big[5] == 59);  // 0.75 * 25 + 0.25 * 160 = 58.75, rounded
  // Nearest: each output pixel takes the input pixel holding its centre.
  CHECK(resize_nearest(small, 2, 2, 1, 4, 4) ==
        std::vector<uint8_t>{0, 0, 100, 100, 0, 0, 100, 100, 200, 200, 40, 40, 200, 200, 40, 40});
  const std::vector<uint8_t> four = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  CHECK(resize_nearest(four, 4, 4, 1, 2, 2) == std::vector<uint8_t>{5, 7, 13, 15});
  // The same size is a copy.
  CHECK(resize_bilinear(four, 4, 4, 1, 4, 4) == four);
}

TEST_CASE("image files: each bad file is one error naming it and the reason", "[image]") {
  TempDir dir;
  const Image image = test::random_image(64, 48, 3, 8, 3);
  const std::string good = dir / "good.tif";
  write_tiff(good, image, {Compression::deflate, true, 4, 0, false, false});
  const std::vector<uint8_t> bytes = test::read_bytes(good);

  test::write_bytes(dir / "empty.tif", {});
  CHECK(error_of(dir / "empty.tif") == dir / "empty.tif" + ": empty file");

  test::write_bytes(dir / "text.tif", std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', '\n'});
  CHECK(error_of(dir / "text.tif") == dir / "text.tif" + ": not an image (not TIFF, PNG, JPEG or BMP)");

  test::write_bytes(dir / "half.tif", std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  CHECK_THAT(error_of(dir / "half.tif"), Catch::StartsWith(dir / "half.tif" + ": truncated or corrupt TIFF ("));

  std::vector<uint8_t> garbled = bytes;  // the compressed strips start after the 8-byte header
  for (size_t i = 16; i < garbled.size() / 2; ++i) garbled[i] = static_cast<uint8_t>(i * 7);
  test::write_bytes(dir / "garbled.tif", garbled);
  CHECK_THAT(error_of(dir / "garbled.tif"), Catch::StartsWith(dir / "garbled.tif" + ": truncated or corrupt TIFF (strip "));

  const std::vector<uint8_t> pixels = test::image_bytes(image);
  REQUIRE(stbi_write_png((dir / "whole.png").c_str(), 64, 48, 3, pixels.data(), 64 * 3) != 0);
  const std::vector<uint8_t> png = test::read_bytes(dir / "whole.png");
  test::write_bytes(dir / "half.png", std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
  CHECK_THAT(error_of(dir / "half.png"), Catch::StartsWith(dir / "half.png" + ": truncated or corrupt PNG ("));
  test::write_bytes(dir / "header.jpg", std::vector<uint8_t>{0xff, 0xd8, 0xff, 0xe0, 0, 16});
  CHECK_THAT(error_of(dir / "header.jpg"), Catch::StartsWith(dir / "header.jpg" + ": truncated or corrupt JPEG ("));

  write_odd_tiff(dir / "float.tif", 32, SAMPLEFORMAT_IEEEFP, PHOTOMETRIC_MINISBLACK);
  CHECK(error_of(dir / "float.tif") == dir / "float.tif" + ": unsupported TIFF: 32-bit samples (8 or 16 are read)");
  write_odd_tiff(dir / "signed.tif", 16, SAMPLEFORMAT_INT, PHOTOMETRIC_MINISBLACK);
  CHECK(error_of(dir / "signed.tif") ==
        dir / "signed.tif" + ": unsupported TIFF: signed or floating-point samples (unsigned are read)");
  write_odd_tiff(dir / "palette.tif", 8, SAMPLEFORMAT_UINT, PHOTOMETRIC_PALETTE);
  CHECK(error_of(dir / "palette.tif") == dir / "palette.tif" + ": unsupported TIFF: colour model 3 (grey and RGB are read)");

  CHECK_THAT(error_of(dir / "missing.tif"), Catch::StartsWith(dir / "missing.tif" + ": cannot open"));
  CHECK(error_of(dir.path().string()) == dir.path().string() + ": is a folder, not a file");
}
