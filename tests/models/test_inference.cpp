// Test-time mirroring and ensembles (models/inference.h) on the cpu device: the mean of the
// probabilities of each model on each flip, flipped back, computed here pass by pass.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "models/inference.h"

using namespace unet;

namespace {

const Shape shape{2, 8, 12, 3};  // not square, so a transposition would show

std::vector<float> random_images(uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> images(static_cast<size_t>(shape.numel()));
  for (float& v : images) v = unit(random);
  return images;
}

// One model's probabilities on images mirrored by hand, mirrored back by hand: (n, h, w).
std::vector<double> one_pass(Context& ctx, const UNet& model, const std::vector<float>& images, bool horizontal,
                             bool vertical) {
  std::vector<float> mirrored(images.size());
  for (int n = 0; n < shape.n; ++n)
    for (int y = 0; y < shape.h; ++y)
      for (int x = 0; x < shape.w; ++x)
        for (int c = 0; c < shape.c; ++c) {
          const int from_y = vertical ? shape.h - 1 - y : y, from_x = horizontal ? shape.w - 1 - x : x;
          mirrored[((n * shape.h + y) * shape.w + x) * shape.c + c] =
              images[((n * shape.h + from_y) * shape.w + from_x) * shape.c + c];
        }
  const Tensor input = ctx.scratch(shape);
  input.from_host(mirrored);
  const std::vector<float> logits = model.forward(ctx, input).value().to_host();
  ctx.end_step();
  std::vector<double> back(logits.size());
  for (int n = 0; n < shape.n; ++n)
    for (int y = 0; y < shape.h; ++y)
      for (int x = 0; x < shape.w; ++x) {
        const int from_y = vertical ? shape.h - 1 - y : y, from_x = horizontal ? shape.w - 1 - x : x;
        back[(n * shape.h + y) * shape.w + x] =
            1 / (1 + std::exp(-static_cast<double>(logits[(n * shape.h + from_y) * shape.w + from_x])));
      }
  return back;
}

}  // namespace

TEST_CASE("inference: mirroring and ensembles average the probabilities of every pass", "[inference]") {
  Device& cpu = device(DeviceKind::cpu);
  UNet a({3, 4, 2}, cpu), b({3, 4, 2}, cpu);
  a.parameters().initialize(1);
  b.parameters().initialize(2);
  Context ctx(cpu, cpu.create_stream());
  ctx.set_recording(false);
  const std::vector<float> images = random_images(3);
  const Shape& s = shape;
  float* held = static_cast<float*>(cpu.allocate(s.numel() * sizeof(float)));
  const Tensor input(&cpu, held, s);
  input.from_host(images);

  std::vector<double> plain = one_pass(ctx, a, images, false, false);
  std::vector<double> mirrored(plain.size(), 0.0), ensemble(plain.size(), 0.0);
  for (int f = 0; f < 4; ++f) {
    const auto pass_a = one_pass(ctx, a, images, f & 1, f & 2), pass_b = one_pass(ctx, b, images, f & 1, f & 2);
    for (size_t i = 0; i < plain.size(); ++i) {
      mirrored[i] += pass_a[i] / 4;
      ensemble[i] += (pass_a[i] + pass_b[i]) / 8;
    }
  }
  const auto expect = [&](const std::vector<float>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
    CHECK(worst < 1e-6);
  };
  expect(mean_probabilities(ctx, {&a}, input, false), plain);
  const std::vector<float> with_tta = mean_probabilities(ctx, {&a}, input, true);
  expect(with_tta, mirrored);
  expect(mean_probabilities(ctx, {&a, &b}, input, true), ensemble);
  // The model is not mirror-symmetric, so mirroring changes something; and it is deterministic.
  double change = 0;
  for (size_t i = 0; i < plain.size(); ++i) change = std::max(change, std::abs(with_tta[i] - plain[i]));
  CHECK(change > 1e-4);
  CHECK(mean_probabilities(ctx, {&a}, input, true) == with_tta);
  cpu.release(held);
}
