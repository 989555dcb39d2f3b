#include "data/image.h"

#include <fcntl.h>
#include <stb/stb_image.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>

#include "kernels/backend.h"

namespace unet {

namespace {

constexpr int64_t max_samples = int64_t{1} << 28;  // 256 Mi samples: 16384 x 16384 RGBA

[[noreturn]] void fail(const std::string& path, const std::string& reason) { throw Error(path + ": " + reason); }

bool starts_with(const std::vector<uint8_t>& file, std::initializer_list<uint8_t> magic) {
  if (file.size() < magic.size()) return false;
  return std::equal(magic.begin(), magic.end(), file.begin());
}

// ---------------------------------------------------------------------------------------------
// TIFF through libtiff, from memory (the file is read once, whole).

struct MemoryFile {
  const uint8_t* data;
  toff_t size;
  toff_t offset = 0;
};

tmsize_t memory_read(thandle_t handle, void* buffer, tmsize_t bytes) {
  auto* file = static_cast<MemoryFile*>(handle);
  const toff_t available = file->offset < file->size ? file->size - file->offset : 0;
  const toff_t n = std::min<toff_t>(available, static_cast<toff_t>(bytes));
  std::memcpy(buffer, file->data + file->offset, n);
  file->offset += n;
  return static_cast<tmsize_t>(n);
}
tmsize_t memory_write(thandle_t, void*, tmsize_t) { return -1; }
toff_t memory_seek(thandle_t handle, toff_t offset, int whence) {
  auto* file = static_cast<MemoryFile*>(handle);
  if (whence == SEEK_CUR) offset += file->offset;
  if (whence == SEEK_END) offset += file->size;
  file->offset = offset;
  return offset;
}
int memory_close(thandle_t) { return 0; }
toff_t memory_size(thandle_t handle) { return static_cast<MemoryFile*>(handle)->size; }
// Mapping lets libtiff take uncompressed strips straight from the buffer.
int memory_map(thandle_t handle, void** base, toff_t* size) {
  auto* file = static_cast<MemoryFile*>(handle);
  *base = const_cast<uint8_t*>(file->data);
  *size = file->size;
  return 1;
}
void memory_unmap(thandle_t, void*, toff_t) {}

// libtiff's messages for one file: the first error is the one that explains.
int keep_first_error(TIFF*, void* user_data, const char*, const char* format, va_list arguments) {
  auto* message = static_cast<std::string*>(user_data);
  if (message->empty()) {
    char text[512];
    std::vsnprintf(text, sizeof text, format, arguments);
    *message = text;
  }
  return 1;  // handled: libtiff prints nothing
}
int ignore_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffCloser {
  void operator()(TIFF* tiff) const { TIFFClose(tiff); }
};
using TiffHandle = std::unique_ptr<TIFF, TiffCloser>;

// Opens with handlers that collect libtiff's first error in *message instead of printing it.
TiffHandle open_tiff(const std::string& path, const char* mode, MemoryFile* memory, std::string* message) {
  TIFFOpenOptions* options = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(options, keep_first_error, message);
  TIFFOpenOptionsSetWarningHandlerExtR(options, ignore_warning, nullptr);
  TIFF* tiff = memory != nullptr ? TIFFClientOpenExt(path.c_str(), mode, memory, memory_read, memory_write,
                                                     memory_seek, memory_close, memory_size, memory_map,
                                                     memory_unmap, options)
                                 : TIFFOpenExt(path.c_str(), mode, options);
  TIFFOpenOptionsFree(options);
  return TiffHandle(tiff);
}

struct TiffFormat {
  uint32_t width = 0, height = 0;
  uint16_t bits = 1, channels = 1, photometric = PHOTOMETRIC_MINISBLACK, planar = PLANARCONFIG_CONTIG;
  uint16_t sample_format = SAMPLEFORMAT_UINT;
};

TiffFormat read_format(TIFF* tiff, const std::string& path) {
  TiffFormat f;
  TIFFGetField(tiff, TIFFTAG_IMAGEWIDTH, &f.width);
  TIFFGetField(tiff, TIFFTAG_IMAGELENGTH, &f.height);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_BITSPERSAMPLE, &f.bits);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_SAMPLESPERPIXEL, &f.channels);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_PLANARCONFIG, &f.planar);
  TIFFGetFieldDefaulted(tiff, TIFFTAG_SAMPLEFORMAT, &f.sample_format);
  if (!TIFFGetField(tiff, TIFFTAG_PHOTOMETRIC, &f.photometric)) {
    f.photometric = f.channels >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
  }
  if (f.width == 0 || f.height == 0) fail(path, "empty image (" + std::to_string(f.width) + "x" + std::to_string(f.height) + ")");
  if (f.bits != 8 && f.bits != 16) fail(path, "unsupported TIFF: " + std::to_string(f.bits) + "-bit samples (8 or 16 are read)");
  if (f.sample_format != SAMPLEFORMAT_UINT) fail(path, "unsupported TIFF: signed or floating-point samples (unsigned are read)");
  const bool grey = f.photometric == PHOTOMETRIC_MINISBLACK || f.photometric == PHOTOMETRIC_MINISWHITE;
  if (!grey && f.photometric != PHOTOMETRIC_RGB) {
    fail(path, "unsupported TIFF: colour model " + std::to_string(f.photometric) + " (grey and RGB are read)");
  }
  if ((grey && f.channels != 1 && f.channels != 2) || (!grey && f.channels != 3 && f.channels != 4)) {
    fail(path, "unsupported TIFF: " + std::to_string(f.channels) + " samples per pixel in a " +
                   (grey ? "grey" : "RGB") + " image");
  }
  if (int64_t{f.width} * f.height * f.channels > max_samples) {
    fail(path, "image too large (" + std::to_string(f.width) + "x" + std::to_string(f.height) + ")");
  }
  return f;
}

// Copies one decoded strip or tile (rows x cols pixels of `per_pixel` samples, `row_samples`
// apart) into the image at (x, y), channel `first`. Interleaved rows are one contiguous run in
// both, so the copy is a straight (vectorised) loop; planes go one sample per pixel.
template <class Sample>
void place_rows(const Sample* chunk, int rows, int cols, int per_pixel, int64_t row_samples, int x, int y, int first,
                Image& image) {
  for (int r = 0; r < rows; ++r) {
    const Sample* in = chunk + r * row_samples;
    uint16_t* out = image.samples.data() + ((int64_t{y} + r) * image.width + x) * image.channels + first;
    if (per_pixel == image.channels) {
      for (int64_t i = 0; i < int64_t{cols} * per_pixel; ++i) out[i] = in[i];
    } else {
      for (int c = 0; c < cols; ++c) out[int64_t{c} * image.channels] = in[c];
    }
  }
}

// `chunk` holds the decoded bytes (16-bit samples already native-endian: libtiff swaps them).
void place_chunk(const std::vector<uint16_t>& chunk, int bits, int rows, int cols, int per_pixel, int64_t row_samples,
                 int x, int y, int first, Image& image) {
  if (bits == 8) {
    place_rows(reinterpret_cast<const uint8_t*>(chunk.data()), rows, cols, per_pixel, row_samples, x, y, first, image);
  } else {
    place_rows(chunk.data(), rows, cols, per_pixel, row_samples, x, y, first, image);
  }
}

std::vector<uint16_t> chunk_buffer(int64_t bytes) { return std::vector<uint16_t>(static_cast<size_t>((bytes + 1) / 2)); }

void decode_tiff(const std::vector<uint8_t>& file, const std::string& path, Image& image) {
  MemoryFile memory{file.data(), file.size()};
  std::string message;
  TiffHandle tiff = open_tiff(path, "r", &memory, &message);
  if (!tiff) fail(path, "truncated or corrupt TIFF (" + (message.empty() ? std::string("cannot read its header") : message) + ")");
  const TiffFormat f = read_format(tiff.get(), path);

  image.width = static_cast<int>(f.width);
  image.height = static_cast<int>(f.height);
  image.channels = f.channels;
  image.bits = f.bits;
  image.samples.resize(static_cast<size_t>(f.width) * f.height * f.channels);  // every sample is written below

  const bool planar = f.planar == PLANARCONFIG_SEPARATE && f.channels > 1;
  const int planes = planar ? f.channels : 1;
  const int per_pixel = planar ? 1 : f.channels;
  const int bytes = f.bits / 8;
  auto corrupt = [&](const char* what, uint32_t index) {
    fail(path, std::string("truncated or corrupt TIFF (") + what + " " + std::to_string(index) +
                   (message.empty() ? std::string("") : ": " + message) + ")");
  };

  if (TIFFIsTiled(tiff.get())) {
    uint32_t tile_width = 0, tile_height = 0;
    TIFFGetField(tiff.get(), TIFFTAG_TILEWIDTH, &tile_width);
    TIFFGetField(tiff.get(), TIFFTAG_TILELENGTH, &tile_height);
    if (tile_width == 0 || tile_height == 0) fail(path, "corrupt TIFF (tiles of size 0)");
    const int64_t expected = int64_t{tile_width} * tile_height * per_pixel * bytes;
    if (TIFFTileSize(tiff.get()) < expected) fail(path, "corrupt TIFF (tile size)");
    std::vector<uint16_t> chunk = chunk_buffer(expected);
    for (int plane = 0; plane < planes; ++plane) {
      for (uint32_t y = 0; y < f.height; y += tile_height) {
        for (uint32_t x = 0; x < f.width; x += tile_width) {
          const uint32_t index = TIFFComputeTile(tiff.get(), x, y, 0, static_cast<uint16_t>(plane));
          if (TIFFReadEncodedTile(tiff.get(), index, chunk.data(), expected) != expected) corrupt("tile", index);
          const int rows = static_cast<int>(std::min(tile_height, f.height - y));
          const int cols = static_cast<int>(std::min(tile_width, f.width - x));
          place_chunk(chunk, f.bits, rows, cols, per_pixel, int64_t{tile_width} * per_pixel,
                      static_cast<int>(x), static_cast<int>(y), plane, image);
        }
      }
    }
  } else {
    uint32_t rows_per_strip = f.height;
    TIFFGetFieldDefaulted(tiff.get(), TIFFTAG_ROWSPERSTRIP, &rows_per_strip);
    rows_per_strip = std::clamp<uint32_t>(rows_per_strip, 1, f.height);
    const uint32_t strips_per_plane = (f.height + rows_per_strip - 1) / rows_per_strip;
    const int64_t row_samples = int64_t{f.width} * per_pixel;
    std::vector<uint16_t> chunk = chunk_buffer(rows_per_strip * row_samples * bytes);
    for (int plane = 0; plane < planes; ++plane) {
      for (uint32_t strip = 0; strip < strips_per_plane; ++strip) {
        const uint32_t y = strip * rows_per_strip;
        const int rows = static_cast<int>(std::min(rows_per_strip, f.height - y));
        const int64_t expected = rows * row_samples * bytes;
        const uint32_t index = plane * strips_per_plane + strip;
        if (TIFFReadEncodedStrip(tiff.get(), index, chunk.data(), expected) != expected) corrupt("strip", index);
        place_chunk(chunk, f.bits, rows, static_cast<int>(f.width), per_pixel, row_samples, 0,
                    static_cast<int>(y), plane, image);
      }
    }
  }
  if (f.photometric == PHOTOMETRIC_MINISWHITE) {
    const uint16_t white = f.bits == 8 ? 255 : 65535;
    for (size_t i = 0; i < image.samples.size(); i += image.channels) image.samples[i] = white - image.samples[i];
  }
}

// ---------------------------------------------------------------------------------------------
// PNG, JPEG and BMP through stb_image.

void decode_stb(const std::vector<uint8_t>& file, const std::string& path, const char* format, Image& image) {
  const auto* bytes = file.data();
  const int length = static_cast<int>(std::min<size_t>(file.size(), INT32_MAX));
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(bytes, length, &width, &height, &channels)) {
    fail(path, std::string("truncated or corrupt ") + format + " (" + stbi_failure_reason() + ")");
  }
  if (int64_t{width} * height * channels > max_samples) {
    fail(path, "image too large (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  image.bits = stbi_is_16_bit_from_memory(bytes, length) ? 16 : 8;
  void* pixels = image.bits == 16 ? static_cast<void*>(stbi_load_16_from_memory(bytes, length, &width, &height, &channels, 0))
                                  : static_cast<void*>(stbi_load_from_memory(bytes, length, &width, &height, &channels, 0));
  if (pixels == nullptr) fail(path, std::string("truncated or corrupt ") + format + " (" + stbi_failure_reason() + ")");
  image.width = width;
  image.height = height;
  image.channels = channels;
  const size_t count = static_cast<size_t>(width) * height * channels;
  if (image.bits == 16) {
    const auto* samples = static_cast<const uint16_t*>(pixels);
    image.samples.assign(samples, samples + count);
  } else {
    const auto* samples = static_cast<const uint8_t*>(pixels);
    image.samples.assign(samples, samples + count);
  }
  stbi_image_free(pixels);
}

int colour_channels(const Image& image) { return image.channels >= 3 ? 3 : 1; }

}  // namespace

namespace {

void decode_image(const std::vector<uint8_t>& file, const std::string& path, Image& image) {
  if (file.empty()) fail(path, "empty file");
  if (starts_with(file, {'I', 'I', 42, 0}) || starts_with(file, {'M', 'M', 0, 42}) ||
      starts_with(file, {'I', 'I', 43, 0}) || starts_with(file, {'M', 'M', 0, 43})) {
    return decode_tiff(file, path, image);
  }
  if (starts_with(file, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})) return decode_stb(file, path, "PNG", image);
  if (starts_with(file, {0xff, 0xd8, 0xff})) return decode_stb(file, path, "JPEG", image);
  if (starts_with(file, {'B', 'M'})) return decode_stb(file, path, "BMP", image);
  fail(path, "not an image (not TIFF, PNG, JPEG or BMP)");
}

// The file's bytes into `bytes`, its storage reused (engine/files.h's read_file allocates anew).
void read_bytes(const std::string& path, std::vector<uint8_t>& bytes) {
  auto system_error = [&](const char* what) { fail(path, std::string(what) + " (" + std::strerror(errno) + ")"); };
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) system_error("cannot open");
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    system_error("cannot read");
  }
  if (S_ISDIR(info.st_mode)) {
    ::close(fd);
    fail(path, "is a folder, not a file");
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file (a FIFO, socket or device)");
  }
  bytes.resize(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      system_error("cannot read");
    }
    if (n == 0) break;  // shrank while we read: what is there is the file
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(done);
}

}  // namespace

void read_image(const std::string& path, Image& image) {
  thread_local std::vector<uint8_t> file;
  read_bytes(path, file);
  decode_image(file, path, image);
}

Image read_image(const std::string& path) {
  Image image;
  read_image(path, image);
  return image;
}

namespace {

// 16 bits to 8 with rounding: 65535 -> 255, 0 -> 0.
uint8_t to_8_bits(uint32_t v) { return static_cast<uint8_t>((255 * v + 32767) / 65535); }

}  // namespace

void slice_channels(const Image& image, uint8_t* out) {
  const int64_t pixels = int64_t{image.width} * image.height;
  const uint16_t* in = image.samples.data();
  if (image.channels == 3 && image.bits == 8) {  // the LGG slices: a straight narrowing copy
    for (int64_t i = 0; i < pixels * 3; ++i) out[i] = static_cast<uint8_t>(in[i]);
    return;
  }
  const bool grey = colour_channels(image) == 1;
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < 3; ++c) {
      const uint16_t v = in[p * image.channels + (grey ? 0 : c)];
      out[p * 3 + c] = image.bits == 16 ? to_8_bits(v) : static_cast<uint8_t>(v);
    }
  }
}

void mask_pixels(const Image& image, uint8_t* out) {
  const int64_t pixels = int64_t{image.width} * image.height;
  const uint16_t* in = image.samples.data();
  if (image.channels == 1) {
    for (int64_t p = 0; p < pixels; ++p) out[p] = in[p] != 0;
    return;
  }
  const int colours = colour_channels(image);
  for (int64_t p = 0; p < pixels; ++p) {
    bool any = false;
    for (int c = 0; c < colours; ++c) any = any || in[p * image.channels + c] != 0;
    out[p] = any ? 1 : 0;
  }
}

namespace {

// Source coordinate of output index i for a resize from `in` to `out` with aligned pixel centres.
float source_coordinate(int i, int in, int out) {
  return (static_cast<float>(i) + 0.5f) * (static_cast<float>(in) / static_cast<float>(out)) - 0.5f;
}

// The input pixel that contains output pixel i's centre.
int nearest_source(int i, int in, int out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  return std::min(static_cast<int>(std::floor((static_cast<float>(i) + 0.5f) * scale)), in - 1);
}

}  // namespace

std::vector<uint8_t> resize_bilinear(const std::vector<uint8_t>& pixels, int height, int width, int channels,
                                     int out_height, int out_width) {
  if (height == out_height && width == out_width) return pixels;
  std::vector<uint8_t> out(static_cast<size_t>(out_height) * out_width * channels);
  for (int y = 0; y < out_height; ++y) {
    const float sy = std::max(source_coordinate(y, height, out_height), 0.0f);
    const int y0 = std::min(static_cast<int>(sy), height - 1), y1 = std::min(y0 + 1, height - 1);
    const float ly = sy - static_cast<float>(y0);
    for (int x = 0; x < out_width; ++x) {
      const float sx = std::max(source_coordinate(x, width, out_width), 0.0f);
      const int x0 = std::min(static_cast<int>(sx), width - 1), x1 = std::min(x0 + 1, width - 1);
      const float lx = sx - static_cast<float>(x0);
      for (int c = 0; c < channels; ++c) {
        auto at = [&](int yy, int xx) { return static_cast<float>(pixels[(int64_t{yy} * width + xx) * channels + c]); };
        const float top = (1.0f - lx) * at(y0, x0) + lx * at(y0, x1);
        const float bottom = (1.0f - lx) * at(y1, x0) + lx * at(y1, x1);
        const float value = (1.0f - ly) * top + ly * bottom;
        out[(int64_t{y} * out_width + x) * channels + c] = static_cast<uint8_t>(std::clamp(std::lround(value), 0L, 255L));
      }
    }
  }
  return out;
}

std::vector<uint8_t> resize_nearest(const std::vector<uint8_t>& pixels, int height, int width, int channels,
                                    int out_height, int out_width) {
  if (height == out_height && width == out_width) return pixels;
  std::vector<uint8_t> out(static_cast<size_t>(out_height) * out_width * channels);
  for (int y = 0; y < out_height; ++y) {
    const int sy = nearest_source(y, height, out_height);
    for (int x = 0; x < out_width; ++x) {
      const int sx = nearest_source(x, width, out_width);
      for (int c = 0; c < channels; ++c) {
        out[(int64_t{y} * out_width + x) * channels + c] = pixels[(int64_t{sy} * width + sx) * channels + c];
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing TIFF

namespace {

uint16_t compression_tag(TiffLayout::Compression compression) {
  switch (compression) {
    case TiffLayout::Compression::none: return COMPRESSION_NONE;
    case TiffLayout::Compression::lzw: return COMPRESSION_LZW;
    case TiffLayout::Compression::deflate: return COMPRESSION_ADOBE_DEFLATE;
    case TiffLayout::Compression::packbits: return COMPRESSION_PACKBITS;
  }
  return COMPRESSION_NONE;
}

// The samples of `image` as bytes: channel `plane` only when planar, else all of them.
std::vector<uint8_t> chunk_bytes(const Image& image, int y, int x, int rows, int cols, int stride_cols, int plane,
                                 bool planar) {
  const int per_pixel = planar ? 1 : image.channels;
  const int bytes = image.bits / 8;
  std::vector<uint8_t> out(static_cast<size_t>(rows) * stride_cols * per_pixel * bytes, 0);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      for (int s = 0; s < per_pixel; ++s) {
        uint16_t v = image.samples[((int64_t{y} + r) * image.width + x + c) * image.channels + (planar ? plane : s)];
        const int64_t at = (int64_t{r} * stride_cols + c) * per_pixel + s;
        if (bytes == 1) {
          out[at] = static_cast<uint8_t>(v);
        } else {
          std::memcpy(out.data() + at * 2, &v, 2);
        }
      }
    }
  }
  return out;
}

}  // namespace

void write_tiff(const std::string& path, const Image& image, const TiffLayout& layout) {
  std::string message;
  TiffHandle tiff = open_tiff(path, layout.big_endian ? "wb" : "wl", nullptr, &message);
  if (!tiff) fail(path, "cannot create TIFF (" + message + ")");
  TIFF* t = tiff.get();
  const bool grey = image.channels <= 2;
  const bool planar = layout.planar && image.channels > 1;
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, static_cast<uint32_t>(image.width));
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, static_cast<uint32_t>(image.height));
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, static_cast<uint16_t>(image.bits));
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, static_cast<uint16_t>(image.channels));
  TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_UINT);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC,
               grey ? (layout.min_is_white ? PHOTOMETRIC_MINISWHITE : PHOTOMETRIC_MINISBLACK) : PHOTOMETRIC_RGB);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_COMPRESSION, compression_tag(layout.compression));
  if (image.channels == 2 || image.channels == 4) {
    const uint16_t extra = EXTRASAMPLE_UNASSALPHA;
    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
  }
  if (layout.predictor) TIFFSetField(t, TIFFTAG_PREDICTOR, PREDICTOR_HORIZONTAL);

  Image stored = image;
  if (grey && layout.min_is_white) {
    const uint16_t white = image.bits == 8 ? 255 : 65535;
    for (size_t i = 0; i < stored.samples.size(); i += stored.channels) stored.samples[i] = white - stored.samples[i];
  }
  const int planes = planar ? image.channels : 1;
  auto check = [&](tmsize_t written) {
    if (written < 0) fail(path, "cannot write TIFF (" + message + ")");
  };
  if (layout.tile > 0) {
    TIFFSetField(t, TIFFTAG_TILEWIDTH, static_cast<uint32_t>(layout.tile));
    TIFFSetField(t, TIFFTAG_TILELENGTH, static_cast<uint32_t>(layout.tile));
    for (int plane = 0; plane < planes; ++plane) {
      for (int y = 0; y < image.height; y += layout.tile) {
        for (int x = 0; x < image.width; x += layout.tile) {
          const int rows = std::min(layout.tile, image.height - y), cols = std::min(layout.tile, image.width - x);
          // Whole tiles: the part past the image's edge is zero.
          std::vector<uint8_t> chunk = chunk_bytes(stored, y, x, rows, cols, layout.tile, plane, planar);
          chunk.resize(static_cast<size_t>(TIFFTileSize(t)), 0);
          check(TIFFWriteEncodedTile(t, TIFFComputeTile(t, x, y, 0, static_cast<uint16_t>(plane)), chunk.data(),
                                     static_cast<tmsize_t>(chunk.size())));
        }
      }
    }
  } else {
    const uint32_t rows_per_strip =
        layout.rows_per_strip > 0 ? static_cast<uint32_t>(layout.rows_per_strip) : TIFFDefaultStripSize(t, 0);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, rows_per_strip);
    const int strips = static_cast<int>((image.height + rows_per_strip - 1) / rows_per_strip);
    for (int plane = 0; plane < planes; ++plane) {
      for (int strip = 0; strip < strips; ++strip) {
        const int y = strip * static_cast<int>(rows_per_strip);
        const int rows = std::min(static_cast<int>(rows_per_strip), image.height - y);
        std::vector<uint8_t> chunk = chunk_bytes(stored, y, 0, rows, image.width, image.width, plane, planar);
        check(TIFFWriteEncodedStrip(t, static_cast<uint32_t>(plane * strips + strip), chunk.data(),
                                    static_cast<tmsize_t>(chunk.size())));
      }
    }
  }
  if (!TIFFWriteDirectory(t)) fail(path, "cannot write TIFF (" + message + ")");
}

}  // namespace unet
