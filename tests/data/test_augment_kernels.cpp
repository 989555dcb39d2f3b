// The augmentation kernels (every version) against the CPU reference, on sim or cuda, and the
// resident dataset that drives them. On sim the batches must be equal bit for bit; on cuda within
// a rounding of the map (fused multiply-adds, the GPU's sinf/cosf: see kernels/augment.h), with at
// most 0.1% of mask pixels different.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "data/dataset.h"
#include "data/phantom.h"
#include "data/resident.h"
#include "data/split.h"
#include "kernels/augment.h"
#include "kernels/clock.h"
#include "models/unet_shapes.h"
#include "tests/data/augment_test_util.h"
#include "tests/data/data_test_util.h"
#include "tests/test_util.h"

using namespace unet;
using test::DeviceBuffer, test::HostSlices, test::Slice, test::dev, test::kDevice;

namespace {

// The slices on the device.
struct DeviceSlices {
  DeviceBuffer<uint8_t> images, masks;
  DeviceBuffer<int32_t> volume;
  DeviceBuffer<float> mean, stddev;
  int slices, height, width;

  explicit DeviceSlices(const HostSlices& s)
      : images(dev(), s.images), masks(dev(), s.masks), volume(dev(), s.volume), mean(dev(), s.mean),
        stddev(dev(), s.stddev), slices(s.slices), height(s.height), width(s.width) {}
  SliceData view(bool zscore) const {
    return {images.data(), masks.data(), volume.data(), zscore ? mean.data() : nullptr, zscore ? stddev.data() : nullptr,
            slices, height, width};
  }
};

// The device's batch, a slice of `layout` wide buffers, against the reference's (dense).
void check_batch(const std::vector<float>& image, const std::vector<float>& mask, const test::HostBatch& expected,
                 int64_t pixels, Slice image_layout, Slice mask_layout) {
  const auto ours_image = test::narrow(image, pixels, 3, image_layout);
  const auto ours_mask = test::narrow(mask, pixels, 1, mask_layout);
  const auto& ref_image = expected.image;
  const auto& ref_mask = expected.mask;
  if (kDevice == DeviceKind::sim) {
    CHECK(std::memcmp(ours_image.data(), ref_image.data(), ours_image.size() * sizeof(float)) == 0);  // bit for bit
    CHECK(std::memcmp(ours_mask.data(), ref_mask.data(), ours_mask.size() * sizeof(float)) == 0);
  } else {
    CHECK(test::relative_error(ours_image, ref_image) < 1e-5);
    int64_t different = 0;
    for (size_t i = 0; i < ours_mask.size(); ++i) different += !(ours_mask[i] == ref_mask[i]);
    CHECK(different <= static_cast<int64_t>(ours_mask.size()) / 1000);
  }
  CHECK(test::outside_untouched(image, pixels, 3, image_layout, -7.0f));
  CHECK(test::outside_untouched(mask, pixels, 1, mask_layout, -7.0f));
}

struct Shape {
  int slices, batch, height, width;
};

std::vector<Shape> shapes() {
  // The model's input at reduced size: its batch, its channels (3) and a height the U-Net takes.
  const LayerShape input = unet_layers(UNetConfig{}, 3, 32, 32).front();
  REQUIRE(input.c_in == 3);
  return {{4, 1, 9, 13}, {7, 5, 16, 16}, {3, 2, 1, 1}, {9, input.n, input.h, input.w}};
}

AugmentRanges strong() {  // every branch busy: large turns, zoom out and in, big shifts
  AugmentRanges r;
  r.rotate_min = -180;
  r.rotate_max = 180;
  r.zoom_min = 0.5f;
  r.zoom_max = 1.6f;
  r.shift = 0.3f;
  return r;
}

}  // namespace

TEST_CASE("augment kernels: training batches equal the reference", "[augment]") {
  for (int version = 1; version <= Augment<kDevice>::versions; ++version) {
    for (const Shape& shape : shapes()) {
      for (bool zscore : {false, true}) {
        for (const AugmentRanges& ranges : {AugmentRanges{}, strong(), no_augmentation}) {
          const HostSlices host = test::random_slices(shape.slices, shape.height, shape.width, 21 + shape.batch);
          const DeviceSlices slices(host);
          const int steps = 3;
          std::vector<int32_t> order(static_cast<size_t>(steps) * shape.batch);
          for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>((i * 5 + 1) % shape.slices);
          DeviceBuffer<int32_t> d_order(dev(), order);
          const int64_t pixels = int64_t{shape.batch} * shape.height * shape.width;
          // Dense outputs, then channel slices of wider buffers.
          for (auto [image_layout, mask_layout] : {std::pair{Slice{3, 0}, Slice{1, 0}}, std::pair{Slice{5, 1}, Slice{4, 2}}}) {
            for (int64_t step : {int64_t{2}, int64_t{7}}) {  // epochs 0 and 2
              INFO("version " << version << ", batch " << shape.batch << ", " << shape.height << "x" << shape.width
                              << ", zscore " << zscore << ", rotate max " << ranges.rotate_max << ", image stride "
                              << image_layout.stride << ", step " << step);
              DeviceBuffer<int64_t> d_step(dev(), std::vector<int64_t>{step});
              const BatchSource source{d_step.data(), d_order.data(), steps, 77, ranges};
              DeviceBuffer<float> image(dev(), test::widen(std::vector<float>(pixels * 3, NAN), pixels, 3, image_layout, -7.0f));
              DeviceBuffer<float> mask(dev(), test::widen(std::vector<float>(pixels, NAN), pixels, 1, mask_layout, -7.0f));
              Augment<kDevice>::build_batch(slices.view(zscore), source, shape.batch,
                                            {image.data() + image_layout.offset, image_layout.stride,
                                             mask.data() + mask_layout.offset, mask_layout.stride},
                                            {}, version);
              const BatchSource host_source{&step, order.data(), steps, 77, ranges};
              const auto expected = test::reference_batch(host, zscore, host_source, shape.batch);
              check_batch(image.download(), mask.download(), expected, pixels, image_layout, mask_layout);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("augment kernels: evaluation batches equal the reference", "[augment]") {
  const HostSlices host = test::random_slices(6, 11, 7, 3);
  const DeviceSlices slices(host);
  const std::vector<int32_t> ids = {5, 0, 5, 2};
  DeviceBuffer<int32_t> d_ids(dev(), ids);
  const int64_t pixels = 4 * 11 * 7;
  for (int version = 1; version <= Augment<kDevice>::versions; ++version) {
    for (bool zscore : {false, true}) {
      DeviceBuffer<float> image(dev(), pixels * 3), mask(dev(), pixels);
      image.poison();
      mask.poison();
      Augment<kDevice>::build_batch(slices.view(zscore), {nullptr, d_ids.data(), 0, 0, AugmentRanges{}}, 4,
                                    {image.data(), 3, mask.data(), 1}, {}, version);
      const auto expected = test::reference_batch(host, zscore, {nullptr, ids.data(), 0, 0, AugmentRanges{}}, 4);
      CHECK(image.download() == expected.image);  // no map: exact on every device
      CHECK(mask.download() == expected.mask);
    }
  }
}

TEST_CASE("augment kernels: an order naming no slice gives NaN for that sample only", "[augment]") {
  const HostSlices host = test::random_slices(3, 5, 5, 4);
  const DeviceSlices slices(host);
  DeviceBuffer<int32_t> d_order(dev(), std::vector<int32_t>{2, 3, 0});
  DeviceBuffer<int64_t> d_step(dev(), std::vector<int64_t>{1});
  for (int version = 1; version <= Augment<kDevice>::versions; ++version) {
    DeviceBuffer<float> image(dev(), 3 * 25 * 3), mask(dev(), 3 * 25);
    image.poison();
    mask.poison();
    Augment<kDevice>::build_batch(slices.view(false), {d_step.data(), d_order.data(), 1, 1, AugmentRanges{}}, 3,
                                  {image.data(), 3, mask.data(), 1}, {}, version);
    const auto m = mask.download();
    for (int i = 0; i < 25; ++i) {
      CHECK_FALSE(std::isnan(m[i]));
      CHECK(std::isnan(m[25 + i]));
      CHECK_FALSE(std::isnan(m[50 + i]));
    }
  }
}

TEST_CASE("augment kernels: a caller's impossible arguments are refused before launch", "[augment]") {
  const HostSlices host = test::random_slices(2, 4, 4, 5);
  const DeviceSlices slices(host);
  DeviceBuffer<int32_t> d_order(dev(), std::vector<int32_t>{0, 1});
  DeviceBuffer<int64_t> d_step(dev(), std::vector<int64_t>{1});
  DeviceBuffer<float> image(dev(), 2 * 16 * 3), mask(dev(), 2 * 16);
  const BatchSource source{d_step.data(), d_order.data(), 1, 1, AugmentRanges{}};
  CHECK_THROWS_WITH(Augment<kDevice>::build_batch(slices.view(false), source, 2, {image.data(), 2, mask.data(), 1}, {}),
                    "augment: pixel strides 2 (image) and 1 (mask) must be at least 3 and 1");
  CHECK_THROWS_AS(Augment<kDevice>::build_batch(slices.view(false), {d_step.data(), d_order.data(), 0, 1, AugmentRanges{}},
                                                2, {image.data(), 3, mask.data(), 1}, {}),
                  Error);
  CHECK_THROWS_AS(Augment<kDevice>::build_batch(slices.view(false), source, 70000, {image.data(), 3, mask.data(), 1}, {}),
                  Error);
}

TEST_CASE("augment kernels: a captured step replays with the clock's new step and the new epoch's order",
          "[augment][graph]") {
  const HostSlices host = test::random_slices(5, 8, 8, 6);
  const DeviceSlices slices(host);
  const int steps = 2, batch = 3;
  const auto order_of = [&](int epoch) {
    std::vector<int32_t> order(steps * batch);
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>((i + epoch * 2) % 5);
    return order;
  };
  for (int version = 1; version <= Augment<kDevice>::versions; ++version) {
    Device& d = dev();
    Stream stream = d.create_stream();
    DeviceBuffer<int64_t> d_step(d, std::vector<int64_t>{0});
    DeviceBuffer<int32_t> d_order(d, order_of(0));
    DeviceBuffer<float> image(d, batch * 64 * 3), mask(d, batch * 64);
    d.begin_capture(stream);
    Clock<kDevice>::advance(d_step.data(), stream);
    Augment<kDevice>::build_batch(slices.view(true), {d_step.data(), d_order.data(), steps, 9, strong()}, batch,
                                  {image.data(), 3, mask.data(), 1}, stream, version);
    auto graph = d.end_capture(stream);
    for (int64_t step = 1; step <= 5; ++step) {
      const int epoch = static_cast<int>((step - 1) / steps);
      if ((step - 1) % steps == 0) d_order.upload(order_of(epoch));  // the epoch boundary, between replays
      graph->replay(stream);
      d.synchronize(stream);
      INFO("version " << version << ", step " << step);
      const auto order = order_of(epoch);
      const auto expected = test::reference_batch(host, true, {&step, order.data(), steps, 9, strong()}, batch);
      check_batch(image.download(), mask.download(), expected, batch * 64, {3, 0}, {1, 0});
    }
    graph.reset();
    d.destroy_stream(stream);
  }
}

TEST_CASE("resident dataset: uploaded once, batches equal the cpu device's, no allocation per step", "[augment][resident]") {
  test::TempDir dir;
  write_phantom(dir / "phantom", {3, 6, 32, 4});
  const Dataset data = load_dataset(dir / "phantom", {}, {32, false});
  const EpochSampler sampler(split_slices(data, split_patients(data.patients, 1, 0, 2)).train, data.tumour, 2, 4, 8);

  ResidentDataset on_device(dev(), data, true);
  ResidentDataset on_cpu(device(DeviceKind::cpu), data, true);
  CHECK(on_device.device_bytes() >= data.images.size() + data.masks.size());
  const int batch = sampler.batch(), steps = sampler.steps_per_epoch();
  const int64_t pixels = int64_t{batch} * 32 * 32;
  DeviceBuffer<int64_t> d_step(dev(), std::vector<int64_t>{0});
  DeviceBuffer<float> image(dev(), pixels * 3), mask(dev(), pixels);
  std::vector<float> cpu_image(pixels * 3), cpu_mask(pixels);
  for (int64_t step = 1; step <= steps + 1; ++step) {  // into the second epoch
    if ((step - 1) % steps == 0) {
      const auto order = sampler.order((step - 1) / steps);
      on_device.set_order(order);
      on_cpu.set_order(order);
    }
    d_step.upload({step});
    const int64_t allocations = dev().allocation_count();
    on_device.train_batch(d_step.data(), steps, batch, AugmentRanges{}, 3, {image.data(), 3, mask.data(), 1});
    CHECK(dev().allocation_count() == allocations);  // steady state: nothing allocated, nothing uploaded
    on_cpu.train_batch(&step, steps, batch, AugmentRanges{}, 3, {cpu_image.data(), 3, cpu_mask.data(), 1});
    INFO("step " << step);
    check_batch(image.download(), mask.download(), {cpu_image, cpu_mask}, pixels, {3, 0}, {1, 0});
  }

  // Evaluation batches: the listed slices as loaded, z-scored.
  const std::vector<int32_t> ids = {0, 17, 5};
  DeviceBuffer<float> eval_image(dev(), 3 * 32 * 32 * 3), eval_mask(dev(), 3 * 32 * 32);
  on_device.eval_batch(ids, {eval_image.data(), 3, eval_mask.data(), 1});
  std::vector<float> cpu_eval_image(3 * 32 * 32 * 3), cpu_eval_mask(3 * 32 * 32);
  on_cpu.eval_batch(ids, {cpu_eval_image.data(), 3, cpu_eval_mask.data(), 1});
  CHECK(eval_image.download() == cpu_eval_image);
  CHECK(eval_mask.download() == cpu_eval_mask);
  CHECK(cpu_eval_mask[0] == data.masks[0]);

  auto error_of = [](const std::function<void()>& body) -> std::string {
    try {
      body();
    } catch (const Error& error) {
      return error.what();
    }
    return "(no error)";
  };
  CHECK(error_of([&] { on_device.set_order({1, 2}); }) ==
        "epoch order: 2 samples, but earlier epochs had " + std::to_string(steps * batch));
  CHECK(error_of([&] { on_device.set_order(std::vector<int32_t>(steps * batch, 18)); }) ==
        "epoch order: slice id 18 out of range");
  CHECK(error_of([&] { on_device.eval_batch({-1}, {eval_image.data(), 3, eval_mask.data(), 1}); }) ==
        "evaluation batch: slice id -1 out of range");
}

// Not run by default (hidden tag): the speed figure, on a GPU with
//   test_cuda_augment "[.benchmark]"
// It prints images per second for each version at 256x256, batch 64, default ranges, z-score on.
TEST_CASE("augment kernels: throughput at 256x256, batch 64", "[.benchmark]") {
  const int batch = 64, side = 256, steps = 10;
  const HostSlices host = test::random_slices(batch * 2, side, side, 1);
  const DeviceSlices slices(host);
  std::vector<int32_t> order(static_cast<size_t>(steps) * batch);
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i % host.slices);
  DeviceBuffer<int32_t> d_order(dev(), order);
  DeviceBuffer<int64_t> d_step(dev(), std::vector<int64_t>{1});
  const int64_t pixels = int64_t{batch} * side * side;
  DeviceBuffer<float> image(dev(), pixels * 3), mask(dev(), pixels);
  Event start = dev().create_event(), end = dev().create_event();
  for (int version = 1; version <= Augment<kDevice>::versions; ++version) {
    const auto run = [&] {
      Augment<kDevice>::build_batch(slices.view(true), {d_step.data(), d_order.data(), steps, 1, AugmentRanges{}}, batch,
                                    {image.data(), 3, mask.data(), 1}, {}, version);
    };
    for (int i = 0; i < 3; ++i) run();
    const int repeats = kDevice == DeviceKind::cuda ? 200 : 1;
    dev().record(start);
    for (int i = 0; i < repeats; ++i) run();
    dev().record(end);
    const double seconds = dev().elapsed_ms(start, end) / 1e3;
    std::printf("augment version %d on %s (%s): %.0f images/s at %dx%d, batch %d\n", version, device_name(kDevice),
                dev().info().name.c_str(), repeats * batch / seconds, side, side, batch);
  }
  dev().destroy_event(start);
  dev().destroy_event(end);
}

TEST_CASE("augment kernels: a bf16 image is this device's fp32 image rounded once, the mask unchanged",
          "[augment][bf16]") {
  const Shape shape = shapes()[1];
  const HostSlices host = test::random_slices(shape.slices, shape.height, shape.width, 23);
  const DeviceSlices slices(host);
  std::vector<int32_t> order(static_cast<size_t>(shape.batch));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>((i * 3 + 2) % shape.slices);
  DeviceBuffer<int32_t> d_order(dev(), order);
  DeviceBuffer<int64_t> d_step(dev(), std::vector<int64_t>{1});
  const int64_t pixels = int64_t{shape.batch} * shape.height * shape.width;
  for (int version = 1; version <= Augment<kDevice>::versions; ++version) {
    for (bool zscore : {false, true}) {
      // Dense, the arena's padded stride of 8, an odd offset.
      for (Slice layout : {Slice{3, 0}, Slice{8, 0}, Slice{5, 1}}) {
        INFO("version " << version << ", zscore " << zscore << ", image stride " << layout.stride);
        const BatchSource source{d_step.data(), d_order.data(), 1, 77, strong()};
        DeviceBuffer<float> image(dev(), pixels * 3), mask(dev(), pixels);
        Augment<kDevice>::build_batch(slices.view(zscore), source, shape.batch, {image.data(), 3, mask.data(), 1},
                                      {}, version);
        std::vector<uint16_t> expected;
        for (float v : image.download()) expected.push_back(to_bf16(v).bits);

        DeviceBuffer<bf16> image_bf16(dev(), pixels * layout.stride);
        DeviceBuffer<float> mask_bf16(dev(), pixels);
        image_bf16.poison();
        mask_bf16.poison();
        Augment<kDevice>::build_batch(slices.view(zscore), source, shape.batch,
                                      BatchTargetBf16{image_bf16.data() + layout.offset, layout.stride,
                                                      mask_bf16.data(), 1},
                                      {}, version);
        const auto wide = image_bf16.download();
        const auto dense = test::narrow(wide, pixels, 3, layout);
        std::vector<uint16_t> got;
        for (bf16 v : dense) got.push_back(v.bits);
        CHECK(got == expected);
        CHECK(std::memcmp(mask_bf16.download().data(), mask.download().data(), pixels * sizeof(float)) == 0);
        std::vector<uint16_t> wide_bits;
        for (bf16 v : wide) wide_bits.push_back(v.bits);
        CHECK(test::outside_untouched(wide_bits, pixels, 3, layout, uint16_t{0xffff}));
      }
    }
  }
}
