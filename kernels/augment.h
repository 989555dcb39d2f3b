// augment: builds a whole batch in one pass from the resident uint8 dataset (data/resident.h).
// For sample b of a training batch, at training step t (1-based) with E steps per epoch and batch B:
//
//   epoch e = (t - 1) / E, place in the epoch k = (t - 1) % E, position i = k B + b
//
// In data-parallel training (docs/distributed.md) B is the global batch and a rank builds the
// samples b = first, ..., first + n - 1 of it: the same positions, slices and random words as one
// process building the whole batch, so each sample is augmented exactly as it would be there.
//   slice s = order[i]                                      (the epoch's shuffled order)
//   random words = Philox4x32-10(key = seed, counter = (s, e, i, stream))   (kernels/philox.h)
//   flips with probability p_h, p_v; angle in [rotate_min, rotate_max] degrees; scale in
//   [zoom_min, zoom_max]; shift in [-shift, shift] times the width (x) and height (y)
//
// and the sample is the slice seen through one affine map about the image centre. Pixel (x, y) of
// the output has its centre at p = (x + 0.5, y + 0.5); c = (W/2, H/2). The augmentation moves a
// point q of the slice to T(q) = c + t + s R(a) F (q - c), so output pixel p shows the slice at
//
//   q = T^-1(p) = c + F R(-a) (p - c - t) / s = A p + b,     F = diag(+-1, +-1) the flips,
//   R(a) = [cos a, -sin a; sin a, cos a] (y points down: positive angles turn clockwise on screen).
//
// The image is sampled bilinearly at q from the four pixel centres around it, the mask at the
// nearest pixel (the one containing q); pixels outside the slice count as zero. Intensities are
// divided by 255 to [0, 1]; with a z-score table, channel c of a slice of volume v becomes
// (x - mean[v][c]) / std[v][c], and outside stays zero (the normalised value of "no signal" is
// taken as zero, as when the reference implementation pads its normalised volumes).
//
// An evaluation batch takes its slices from a list and applies no map (A = I, b = 0).
//
// Graph-safe: the step is read from device memory (kernels/clock.h) and the order from a device
// buffer the host refills at each epoch boundary, outside any captured graph; nothing that changes
// between steps is a launch argument. The CPU reference and the sim kernel compute the same float
// operations in the same order, so their batches are equal bit for bit; on cuda, nvcc contracts
// a * b + c into one fused multiply-add and sinf/cosf may round differently, so an image value can
// differ by a rounding of the bilinear weights and a mask pixel whose sample point falls within a
// rounding of a pixel edge can take its neighbour's value.
//
// bf16 (the overload taking a BatchTargetBf16): the image is stored in bf16, each value the fp32
// value above rounded once at the store (NaN stays NaN); the mask stays fp32. The 3-channel image
// is written with one 2-byte store per channel whatever its pixel stride (an 8-channel stride's
// padding is never written), so this pass has no 16-byte path: it writes 6 bytes of image and 4
// of mask a pixel, against 16 in fp32.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/philox.h"
#include "kernels/rounding.h"

namespace unet {

// The resident dataset as the batch builder reads it (all in device memory).
struct SliceData {
  const uint8_t* images;  // (slices, height, width, 3) NHWC: pre-contrast, FLAIR, post-contrast
  const uint8_t* masks;   // (slices, height, width), 0 or 1
  const int32_t* volume;  // (slices) each slice's volume: its row of the z-score table
  const float* mean;      // (volumes, 3) of intensities in [0, 1]; null: no z-score
  const float* stddev;    // (volumes, 3), positive
  int slices, height, width;
};

// The random augmentation's ranges. All zero (no_augmentation) is the identity, exactly.
struct AugmentRanges {
  float flip_h = 0.5f;       // probability of a horizontal flip (x -> W - x)
  float flip_v = 0.5f;       // probability of a vertical flip
  float rotate_min = -15.0f;  // degrees
  float rotate_max = 15.0f;
  float zoom_min = 0.9f;  // scale; above 1 enlarges
  float zoom_max = 1.1f;
  float shift = 0.1f;  // each direction uniform in [-shift, shift] times the size
};

constexpr AugmentRanges no_augmentation{0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 0.0f};

// One sample's augmentation, as drawn.
struct SampleTransform {
  bool flip_h = false, flip_v = false;
  float angle = 0.0f;  // degrees
  float scale = 1.0f;
  float shift_x = 0.0f, shift_y = 0.0f;  // pixels
};

// q = A p + b: the point of the slice that output point p shows.
struct AffineMap {
  float a00, a01, a10, a11, b0, b1;
};

// Where a batch's samples come from.
struct BatchSource {
  const int64_t* step;   // (1) the training clock, 1-based; null for an evaluation batch
  const int32_t* order;  // training: (steps_per_epoch * batch) the epoch's slice ids;
                         // evaluation: (batch) the slices, in batch order
  int steps_per_epoch;   // training only
  uint64_t seed;         // training only
  AugmentRanges ranges;  // training only
  int first_sample = 0;  // training: this batch is samples [first_sample, first_sample + batch) of a
  int global_batch = 0;  // global batch of global_batch samples (0: the batch is the whole batch)
};

// Where the batch goes: NHWC float tensors, each through its pixel stride (a channel slice of a
// wider buffer is a valid target).
struct BatchTarget {
  float* image;  // (batch, height, width, 3), pixel stride image_stride >= 3
  int image_stride;
  float* mask;   // (batch, height, width, 1), pixel stride mask_stride >= 1; 0 or 1
  int mask_stride;
};

// The same with the image in bf16.
struct BatchTargetBf16 {
  bf16* image;  // (batch, height, width, 3), pixel stride image_stride >= 3
  int image_stride;
  float* mask;  // (batch, height, width, 1), pixel stride mask_stride >= 1; 0 or 1
  int mask_stride;
};

// ---------------------------------------------------------------------------------------------
// The per-sample and per-pixel maths, shared by the CPU reference and the kernels so that both
// compute the same operations in the same order.

UNET_HOST_DEVICE static inline SampleTransform draw_transform(const AugmentRanges& r, uint64_t seed, uint32_t slice,
                                                              uint32_t epoch, uint32_t position, int height,
                                                              int width) {
  const PhiloxKey key = philox_key(seed);
  const Philox4 a = philox4x32_10(philox_counter(slice, epoch, position, RandomStream::augment), key);
  const Philox4 b = philox4x32_10(philox_counter(slice, epoch, position, RandomStream::augment_shift), key);
  SampleTransform t;
  t.flip_h = philox_uniform(a.w[0]) < r.flip_h;
  t.flip_v = philox_uniform(a.w[1]) < r.flip_v;
  t.angle = r.rotate_min + philox_uniform(a.w[2]) * (r.rotate_max - r.rotate_min);
  t.scale = r.zoom_min + philox_uniform(a.w[3]) * (r.zoom_max - r.zoom_min);
  t.shift_x = (2.0f * philox_uniform(b.w[0]) - 1.0f) * r.shift * static_cast<float>(width);
  t.shift_y = (2.0f * philox_uniform(b.w[1]) - 1.0f) * r.shift * static_cast<float>(height);
  return t;
}

// A = F R(-a) / s, b = c - A (c + t). The identity transform gives A = I and b = 0 exactly, and
// flips give b = W or H exactly, so those maps sample pixel centres with no rounding at all.
UNET_HOST_DEVICE static inline AffineMap affine_map(const SampleTransform& t, int height, int width) {
  const float radians = t.angle * (3.14159265358979f / 180.0f);
  const float cosine = cosf(radians), sine = sinf(radians);
  const float fx = t.flip_h ? -1.0f : 1.0f, fy = t.flip_v ? -1.0f : 1.0f;
  const float inverse_scale = 1.0f / t.scale;
  AffineMap m;
  m.a00 = fx * cosine * inverse_scale;
  m.a01 = fx * sine * inverse_scale;
  m.a10 = -fy * sine * inverse_scale;
  m.a11 = fy * cosine * inverse_scale;
  const float cx = 0.5f * static_cast<float>(width), cy = 0.5f * static_cast<float>(height);
  const float px = cx + t.shift_x, py = cy + t.shift_y;
  m.b0 = cx - (m.a00 * px + m.a01 * py);
  m.b1 = cy - (m.a10 * px + m.a11 * py);
  return m;
}

UNET_HOST_DEVICE static inline AffineMap identity_map() { return {1.0f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f}; }

// Output pixel (x, y) of a sample of `slice` seen through `m`: three channels and the mask.
UNET_HOST_DEVICE static inline void sample_pixel(const SliceData& data, int slice, const AffineMap& m, int x, int y,
                                                 float* image, float* mask) {
  const float px = static_cast<float>(x) + 0.5f, py = static_cast<float>(y) + 0.5f;
  const float qx = m.a00 * px + m.a01 * py + m.b0;
  const float qy = m.a10 * px + m.a11 * py + m.b1;
  const int64_t plane = static_cast<int64_t>(data.height) * data.width;
  const uint8_t* pixels = data.images + slice * plane * 3;

  // Bilinear: the four pixel centres around q, weighted by closeness; outside pixels add nothing.
  const float gx = qx - 0.5f, gy = qy - 0.5f;
  const float x0 = floorf(gx), y0 = floorf(gy);
  const float wx = gx - x0, wy = gy - y0;
  const int ix = static_cast<int>(x0), iy = static_cast<int>(y0);
  float sum[3] = {0.0f, 0.0f, 0.0f};
  float inside = 0.0f;  // the weight that fell on the slice
  for (int dy = 0; dy < 2; ++dy) {
    for (int dx = 0; dx < 2; ++dx) {
      const int sx = ix + dx, sy = iy + dy;
      if (sx < 0 || sx >= data.width || sy < 0 || sy >= data.height) continue;
      const float w = (dy ? wy : 1.0f - wy) * (dx ? wx : 1.0f - wx);
      const uint8_t* v = pixels + (static_cast<int64_t>(sy) * data.width + sx) * 3;
      for (int c = 0; c < 3; ++c) sum[c] += w * static_cast<float>(v[c]);
      inside += w;
    }
  }
  for (int c = 0; c < 3; ++c) {
    float value = sum[c] / 255.0f;
    if (data.mean != nullptr) {
      const int64_t row = static_cast<int64_t>(data.volume[slice]) * 3 + c;
      value = (value - data.mean[row] * inside) / data.stddev[row];
    }
    image[c] = value;
  }

  // Nearest: the pixel that contains q.
  const int nx = static_cast<int>(floorf(qx)), ny = static_cast<int>(floorf(qy));
  const bool on_slice = nx >= 0 && nx < data.width && ny >= 0 && ny < data.height;
  *mask = on_slice ? static_cast<float>(data.masks[slice * plane + static_cast<int64_t>(ny) * data.width + nx]) : 0.0f;
}

// The slice and map of sample b, or false if the order names no slice of `data` or the clock has
// not been advanced yet (step 0): the sample is then written as NaN, so the loss shows it.
UNET_HOST_DEVICE static inline bool plan_sample(const SliceData& data, const BatchSource& source, int batch, int b,
                                                int* slice, AffineMap* map) {
  if (source.step == nullptr) {
    *slice = source.order[b];
    *map = identity_map();
  } else {
    const int64_t step = *source.step - 1;
    if (step < 0) return false;
    const uint32_t epoch = static_cast<uint32_t>(step / source.steps_per_epoch);
    const int global_batch = source.global_batch > 0 ? source.global_batch : batch;
    const int64_t position = (step % source.steps_per_epoch) * global_batch + source.first_sample + b;
    *slice = source.order[position];
    if (*slice < 0 || *slice >= data.slices) return false;
    const SampleTransform t = draw_transform(source.ranges, source.seed, static_cast<uint32_t>(*slice), epoch,
                                             static_cast<uint32_t>(position), data.height, data.width);
    *map = affine_map(t, data.height, data.width);
  }
  return *slice >= 0 && *slice < data.slices;
}

// ---------------------------------------------------------------------------------------------

namespace cpu {

// The reference: the batch the kernels must reproduce, bit for bit on sim. No double version: the
// batch is defined by its float arithmetic, and nothing differentiates through it.
void build_batch(const SliceData& data, const BatchSource& source, int batch, const BatchTarget& target);
// The bf16 image: the batch above with each image value rounded to bf16 once.
void build_batch(const SliceData& data, const BatchSource& source, int batch, const BatchTargetBf16& target);

}  // namespace cpu

template <DeviceKind D>
struct Augment {
  static constexpr int versions = 2;

  // Every pointer in `data`, `source` and `target` is device memory; `batch` samples are written.
  static void build_batch(const SliceData& data, const BatchSource& source, int batch, const BatchTarget& target,
                          Stream stream, int version = 0);
  // bf16 image (the same versions; see the top).
  static void build_batch(const SliceData& data, const BatchSource& source, int batch,
                          const BatchTargetBf16& target, Stream stream, int version = 0);
};

extern template struct Augment<DeviceKind::sim>;
extern template struct Augment<DeviceKind::cuda>;

// The cpu device: the reference in float, on the calling thread (no stream, one version), defined in
// augment_cpu.cpp. Declared here so that the compiler checks each against the launcher above.
template <>
void Augment<DeviceKind::cpu>::build_batch(const SliceData&, const BatchSource&, int, const BatchTarget&, Stream, int);
template <>
void Augment<DeviceKind::cpu>::build_batch(const SliceData&, const BatchSource&, int, const BatchTargetBf16&, Stream,
                                           int);

}  // namespace unet
