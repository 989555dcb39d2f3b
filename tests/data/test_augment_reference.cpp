// The augmentation's reference (kernels/augment.h): exact identities (no augmentation, flips, a
// quarter turn), the random draws, the batch's place in the epoch, the z-score, and the geometry
// against PyTorch's affine_grid + grid_sample (and the load-time resize against F.interpolate).
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "data/image.h"
#include "engine/safetensors.h"
#include "kernels/augment.h"
#include "tests/data/augment_test_util.h"
#include "tests/test_util.h"

using namespace unet;
using test::HostSlices;

namespace {

// The training batch at `step` with `ranges`, order = 0, 1, 2, ... (one epoch of `steps` steps).
test::HostBatch train_batch(const HostSlices& slices, const AugmentRanges& ranges, int64_t step, int steps, int batch,
                            bool zscore = false, uint64_t seed = 11) {
  static std::vector<int32_t> order;
  order.resize(static_cast<size_t>(steps) * batch);
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i % slices.slices);
  return test::reference_batch(slices, zscore, {&step, order.data(), steps, seed, ranges}, batch);
}

AugmentRanges only(void (*set)(AugmentRanges&)) {
  AugmentRanges r = no_augmentation;
  set(r);
  return r;
}

}  // namespace

TEST_CASE("augment reference: all ranges zero is the identity, exactly", "[augment]") {
  for (auto [h, w] : {std::pair{9, 13}, std::pair{16, 16}, std::pair{1, 1}}) {
    const HostSlices s = test::random_slices(6, h, w, 3);
    const int batch = 3;
    const auto out = train_batch(s, no_augmentation, 2, 2, batch);  // step 2: slices 3, 4, 5
    const size_t plane = static_cast<size_t>(h) * w;
    for (int b = 0; b < batch; ++b) {
      for (size_t p = 0; p < plane; ++p) {
        for (int c = 0; c < 3; ++c) {
          REQUIRE(out.image[(b * plane + p) * 3 + c] == static_cast<float>(s.images[((3 + b) * plane + p) * 3 + c]) / 255.0f);
        }
        REQUIRE(out.mask[b * plane + p] == static_cast<float>(s.masks[(3 + b) * plane + p]));
      }
    }
    // An evaluation batch of the same slices is the same batch.
    const std::vector<int32_t> ids = {3, 4, 5};
    const auto eval = test::reference_batch(s, false, {nullptr, ids.data(), 0, 0, AugmentRanges{}}, batch);
    CHECK(eval.image == out.image);
    CHECK(eval.mask == out.mask);
  }
}

TEST_CASE("augment reference: flips are exact mirror images", "[augment]") {
  const int h = 7, w = 10;
  const HostSlices s = test::random_slices(1, h, w, 4);
  const auto plain = train_batch(s, no_augmentation, 1, 1, 1);
  const auto flip_h = train_batch(s, only([](AugmentRanges& r) { r.flip_h = 1; }), 1, 1, 1);
  const auto flip_v = train_batch(s, only([](AugmentRanges& r) { r.flip_v = 1; }), 1, 1, 1);
  const auto both = train_batch(s, only([](AugmentRanges& r) { r.flip_h = r.flip_v = 1; }), 1, 1, 1);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int p = y * w + x, mirror_x = y * w + (w - 1 - x), mirror_y = (h - 1 - y) * w + x;
      const int mirror_both = (h - 1 - y) * w + (w - 1 - x);
      CHECK(flip_h.mask[p] == plain.mask[mirror_x]);
      CHECK(flip_v.mask[p] == plain.mask[mirror_y]);
      CHECK(both.mask[p] == plain.mask[mirror_both]);
      for (int c = 0; c < 3; ++c) {
        CHECK(flip_h.image[p * 3 + c] == plain.image[mirror_x * 3 + c]);
        CHECK(flip_v.image[p * 3 + c] == plain.image[mirror_y * 3 + c]);
        CHECK(both.image[p * 3 + c] == plain.image[mirror_both * 3 + c]);
      }
    }
  }
}

TEST_CASE("augment reference: a 90-degree rotation is a transpose and a flip", "[augment]") {
  for (int n : {8, 11}) {
    const HostSlices s = test::random_slices(1, n, n, 5);
    const auto plain = train_batch(s, no_augmentation, 1, 1, 1);
    const auto quarter = train_batch(s, only([](AugmentRanges& r) { r.rotate_min = r.rotate_max = 90; }), 1, 1, 1);
    const auto back = train_batch(s, only([](AugmentRanges& r) { r.rotate_min = r.rotate_max = -90; }), 1, 1, 1);
    double worst = 0;
    for (int y = 0; y < n; ++y) {
      for (int x = 0; x < n; ++x) {
        // +90 (clockwise on screen): out(x, y) = in(y, n-1-x) = the transpose, flipped left-right.
        const int p = y * n + x, turned = (n - 1 - x) * n + y, unturned = x * n + (n - 1 - y);
        CHECK(quarter.mask[p] == plain.mask[turned]);
        CHECK(back.mask[p] == plain.mask[unturned]);
        for (int c = 0; c < 3; ++c) {
          // cos(pi/2) is -4e-8 in float, not 0: the sample points miss the centres by ~1e-6.
          worst = std::max(worst, static_cast<double>(std::abs(quarter.image[p * 3 + c] - plain.image[turned * 3 + c])));
          worst = std::max(worst, static_cast<double>(std::abs(back.image[p * 3 + c] - plain.image[unturned * 3 + c])));
        }
      }
    }
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("augment reference: pixels outside the slice are zero, in z-scored units too", "[augment]") {
  const HostSlices s = test::random_slices(2, 12, 12, 6);
  const AugmentRanges half = only([](AugmentRanges& r) { r.zoom_min = r.zoom_max = 0.5f; });
  for (bool zscore : {false, true}) {
    const auto out = train_batch(s, half, 1, 1, 2, zscore);
    for (int b = 0; b < 2; ++b) {
      for (int y : {0, 1, 10, 11}) {  // the shrunken slice covers pixels 3..8
        for (int x = 0; x < 12; ++x) {
          const size_t p = static_cast<size_t>(b) * 144 + y * 12 + x;
          CHECK(out.mask[p] == 0.0f);
          for (int c = 0; c < 3; ++c) CHECK(out.image[p * 3 + c] == 0.0f);
        }
      }
    }
  }
}

TEST_CASE("augment reference: the z-score uses the slice's volume row", "[augment]") {
  const HostSlices s = test::random_slices(4, 5, 6, 7);
  const auto out = train_batch(s, no_augmentation, 1, 1, 4, true);
  const size_t plane = 30;
  for (int b = 0; b < 4; ++b) {
    for (size_t p = 0; p < plane; ++p) {
      for (int c = 0; c < 3; ++c) {
        const int row = s.volume[b] * 3 + c;
        const float expected = (static_cast<float>(s.images[(b * plane + p) * 3 + c]) / 255.0f - s.mean[row]) / s.stddev[row];
        CHECK(out.image[(b * plane + p) * 3 + c] == expected);
      }
    }
  }
}

TEST_CASE("augment reference: draws lie in their ranges and follow their probabilities", "[augment]") {
  const AugmentRanges r;  // the defaults: flips 0.5, +-15 degrees, zoom 0.9..1.1, shift 0.1
  int flips_h = 0, flips_v = 0;
  double angle_sum = 0;
  const int n = 4000;
  std::set<float> angles;
  for (int i = 0; i < n; ++i) {
    const SampleTransform t = draw_transform(r, 3, static_cast<uint32_t>(i % 50), static_cast<uint32_t>(i / 50), i, 256, 200);
    flips_h += t.flip_h;
    flips_v += t.flip_v;
    angle_sum += t.angle;
    angles.insert(t.angle);
    CHECK(t.angle >= -15.0f);
    CHECK(t.angle <= 15.0f);
    CHECK(t.scale >= 0.9f);
    CHECK(t.scale <= 1.1f);
    CHECK(std::abs(t.shift_x) <= 20.0f);  // 0.1 of the width
    CHECK(std::abs(t.shift_y) <= 25.6f);  // 0.1 of the height
  }
  CHECK(std::abs(flips_h - n / 2) < 150);  // 4.7 standard deviations
  CHECK(std::abs(flips_v - n / 2) < 150);
  CHECK(std::abs(angle_sum / n) < 0.7);
  CHECK(angles.size() > n * 99 / 100);
  // A pure function of (seed, slice, epoch, position).
  const SampleTransform a = draw_transform(r, 3, 7, 2, 9, 256, 256), b = draw_transform(r, 3, 7, 2, 9, 256, 256);
  CHECK(a.angle == b.angle);
  CHECK(draw_transform(r, 3, 7, 3, 9, 256, 256).angle != a.angle);  // next epoch
  CHECK(draw_transform(r, 3, 7, 2, 10, 256, 256).angle != a.angle);  // the same slice elsewhere in the epoch
  CHECK(draw_transform(r, 4, 7, 2, 9, 256, 256).angle != a.angle);   // another seed
}

TEST_CASE("augment reference: the step picks the epoch and the batch's place in it", "[augment]") {
  const HostSlices s = test::random_slices(10, 6, 6, 8);
  const AugmentRanges r;
  const int steps = 3, batch = 2;
  const std::vector<int32_t> order = {9, 1, 4, 4, 0, 7};
  const size_t plane = 36;
  for (int64_t step : {1, 2, 3, 4, 8}) {
    const auto out = test::reference_batch(s, false, {&step, order.data(), steps, 5, r}, batch);
    const uint32_t epoch = static_cast<uint32_t>((step - 1) / steps);
    for (int b = 0; b < batch; ++b) {
      const int position = static_cast<int>((step - 1) % steps) * batch + b;
      const int slice = order[position];
      const AffineMap map = affine_map(draw_transform(r, 5, slice, epoch, position, 6, 6), 6, 6);
      for (int y = 0; y < 6; ++y) {
        for (int x = 0; x < 6; ++x) {
          float image[3], mask;
          sample_pixel(s.view(false), slice, map, x, y, image, &mask);
          const size_t p = b * plane + y * 6 + x;
          CHECK(out.mask[p] == mask);
          for (int c = 0; c < 3; ++c) CHECK(out.image[p * 3 + c] == image[c]);
        }
      }
    }
  }
  // Slice 4 twice in one batch: two different augmentations.
  int64_t step = 2;
  const auto out = test::reference_batch(s, false, {&step, order.data(), steps, 5, r}, batch);
  CHECK(std::vector<float>(out.image.begin(), out.image.begin() + plane * 3) !=
        std::vector<float>(out.image.begin() + plane * 3, out.image.end()));
}

TEST_CASE("augment reference: an order naming no slice, or step 0, gives a NaN sample; the others are built", "[augment]") {
  const HostSlices s = test::random_slices(3, 4, 4, 9);
  const std::vector<int32_t> order = {1, 3, -1, 2};
  int64_t step = 1;
  const auto out = test::reference_batch(s, false, {&step, order.data(), 1, 5, AugmentRanges{}}, 4);
  auto all_nan = [&](int b) {
    for (int i = 0; i < 16; ++i) {
      if (!std::isnan(out.mask[b * 16 + i]) || !std::isnan(out.image[(b * 16 + i) * 3])) return false;
    }
    return true;
  };
  CHECK_FALSE(all_nan(0));
  CHECK(all_nan(1));
  CHECK(all_nan(2));
  CHECK_FALSE(all_nan(3));
  // A clock that was never advanced (step 0) names no place in the epoch.
  step = 0;
  const auto early = test::reference_batch(s, false, {&step, order.data(), 1, 5, AugmentRanges{}}, 1);
  CHECK(std::isnan(early.mask[0]));
}

TEST_CASE("augment reference: the affine sampling agrees with PyTorch's grid_sample", "[augment][oracle]") {
  const SafeTensors oracle = SafeTensors::load(UNET_ORACLE_DIR "/augment.safetensors");
  int checked = 0;
  for (int i = 0; oracle.contains("warp" + std::to_string(i) + ".image"); ++i) {
    const std::string name = "warp" + std::to_string(i);
    const TensorData& image = oracle.get(name + ".image");  // (1, 3, H, W) uint8
    const TensorData& mask = oracle.get(name + ".mask");    // (1, 1, H, W) uint8
    const int h = static_cast<int>(image.shape[2]), w = static_cast<int>(image.shape[3]);
    HostSlices s;
    s.slices = 1;
    s.height = h;
    s.width = w;
    s.images.resize(static_cast<size_t>(h) * w * 3);
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < h * w; ++p) s.images[p * 3 + c] = image.bytes[c * h * w + p];  // NCHW -> NHWC
    }
    s.masks = mask.bytes;
    s.volume = {0};
    const std::vector<float> transforms = oracle.floats(name + ".transforms");
    for (size_t j = 0; j < transforms.size() / 6; ++j) {
      INFO(name << " (" << h << "x" << w << "), transform " << j);
      const float* t = &transforms[j * 6];
      SampleTransform transform;
      transform.flip_h = t[0] != 0;
      transform.flip_v = t[1] != 0;
      transform.angle = t[2];
      transform.scale = t[3];
      transform.shift_x = t[4];
      transform.shift_y = t[5];
      const AffineMap map = affine_map(transform, h, w);
      const std::string prefix = name + "." + std::to_string(j);
      const std::vector<float> expected_image = oracle.floats(prefix + ".image", {1, 3, h, w});
      const std::vector<float> expected_mask = oracle.floats(prefix + ".mask", {1, 1, h, w});
      std::vector<float> ours(static_cast<size_t>(h) * w * 3), theirs(ours.size());
      int mask_differences = 0;
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          float pixel[3], m;
          sample_pixel(s.view(false), 0, map, x, y, pixel, &m);
          for (int c = 0; c < 3; ++c) {
            ours[(y * w + x) * 3 + c] = pixel[c];
            theirs[(y * w + x) * 3 + c] = expected_image[(c * h + y) * w + x];
          }
          mask_differences += m != expected_mask[y * w + x];
        }
      }
      CHECK(test::relative_error(ours, theirs) < 1e-5);
      CHECK(mask_differences == 0);
      ++checked;
    }
  }
  CHECK(checked == 9);
}

TEST_CASE("augment reference: the load-time resize agrees with PyTorch's interpolate", "[augment][oracle]") {
  const SafeTensors oracle = SafeTensors::load(UNET_ORACLE_DIR "/augment.safetensors");
  int checked = 0;
  for (int i = 0; oracle.contains("resize" + std::to_string(i) + ".image"); ++i) {
    const std::string name = "resize" + std::to_string(i);
    const TensorData& image = oracle.get(name + ".image");
    const TensorData& mask = oracle.get(name + ".mask");
    const TensorData& nearest = oracle.get(name + ".nearest");
    const int h = static_cast<int>(image.shape[2]), w = static_cast<int>(image.shape[3]);
    const int oh = static_cast<int>(nearest.shape[2]), ow = static_cast<int>(nearest.shape[3]);
    INFO(name << ": " << h << "x" << w << " -> " << oh << "x" << ow);
    std::vector<uint8_t> nhwc(static_cast<size_t>(h) * w * 3);
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < h * w; ++p) nhwc[p * 3 + c] = image.bytes[c * h * w + p];
    }
    const std::vector<float> expected = oracle.floats(name + ".bilinear", {1, 3, oh, ow});
    const std::vector<uint8_t> ours = resize_bilinear(nhwc, h, w, 3, oh, ow);
    double worst = 0;
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < oh * ow; ++p) worst = std::max(worst, std::abs(ours[p * 3 + c] - double{expected[c * oh * ow + p]}));
    }
    CHECK(worst <= 0.5 + 1e-3);  // ours is torch's value rounded to the nearest level
    CHECK(resize_nearest(mask.bytes, h, w, 1, oh, ow) == nearest.bytes);
    ++checked;
  }
  CHECK(checked == 4);
}

TEST_CASE("augment reference: the bf16 image is the fp32 image rounded once, through any pixel stride",
          "[augment][bf16]") {
  const HostSlices host = test::random_slices(5, 9, 13, 31);
  const int batch = 3;
  const std::vector<int32_t> order = {4, 0, 2};
  const int64_t step = 1;
  AugmentRanges ranges;
  ranges.rotate_max = 90;
  const BatchSource source{&step, order.data(), 1, 5, ranges};
  const test::HostBatch expected = test::reference_batch(host, true, source, batch);
  const size_t pixels = expected.mask.size();
  for (const int stride : {3, 8}) {
    INFO("image stride " << stride);
    std::vector<bf16> image(pixels * stride, bf16{0x1234});
    std::vector<float> mask(pixels, NAN);
    cpu::build_batch(host.view(true), source, batch, BatchTargetBf16{image.data(), stride, mask.data(), 1});
    bool rounded = true, padding_untouched = true;
    for (size_t p = 0; p < pixels; ++p) {
      for (int c = 0; c < stride; ++c) {
        const uint16_t bits = image[p * stride + c].bits;
        if (c < 3) rounded = rounded && bits == to_bf16(expected.image[p * 3 + c]).bits;
        if (c >= 3) padding_untouched = padding_untouched && bits == 0x1234;
      }
    }
    CHECK(rounded);
    CHECK(padding_untouched);
    CHECK(mask == expected.mask);
  }
}
