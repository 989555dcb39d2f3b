// Training steps in each precision (engine/precision.h): tf32 and bf16 close to fp32 but visibly
// different from it (the reduced precision really is in use), and cpu and sim agreeing.
//
// Tolerances. A tf32 operand carries a relative rounding error of at most u = 2^-11 (10 stored
// mantissa bits, round to nearest), a bf16 one of u = 2^-8 (7 bits); a product of two rounded
// operands, at most 2u (to first order). Accumulation stays fp32. Through the L = 11 convolutions of
// the depth-2 test model the first-order relative error of the logits is then at most 2uL in norm
// (errors add layer by layer when each layer is well conditioned, as He-initialised layers are):
// 1.1e-2 for tf32, 8.6e-2 for bf16 (whose activations are also stored rounded: one more u per layer,
// 3uL = 0.13). "Visibly different" means at least 10x the difference between fp32 on cpu and on sim,
// which is summation order alone. Between cpu and sim in the same reduced precision the rounding
// points are the same and only the order of the fp32 sums differs, but an operand whose fp32 value
// differs in the last bit can round to the neighbouring tf32 or bf16 value: a flip by one unit u,
// with a probability of about delta / u for an fp32 difference delta. That turns a difference of
// delta into one of about sqrt(delta u) in rms, so cpu and sim in tf32 differ about as much as tf32
// and fp32 do (measured: 5e-6 and 1.5e-5 for the logits); the bound there is u itself.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "models/checkpoint.h"
#include "models/trainer.h"

using namespace unet;

namespace {

const UNetConfig model_config{3, 8, 2};
const Shape batch_shape{2, 16, 24, 3};
constexpr int layers = 11;  // depth 2: 2 x 2 encoder, 2 bottleneck, 2 x 3 decoder (one up-conv), 1 head

struct Run {
  std::vector<float> logits;  // of the first step
  std::vector<float> losses;
  std::vector<float> weights;  // after the steps
};

Run train(DeviceKind kind, Precision precision, int steps) {
  UNet model(model_config, device(kind), precision);
  model.parameters().initialize(42);
  AdamConfig adam;
  adam.lr = 1e-3f;
  Trainer trainer(model, adam, LossConfig{1, 1}, batch_shape, false);
  std::mt19937 random(3);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> image(static_cast<size_t>(batch_shape.numel())), mask(static_cast<size_t>(batch_shape.pixels()));
  for (float& v : image) v = unit(random);
  for (float& v : mask) v = unit(random) < 0.2f ? 1.0f : 0.0f;
  trainer.image().from_host(image);
  trainer.mask().from_host(mask);
  Run run;
  for (int k = 0; k < steps; ++k) run.losses.push_back(trainer.step(k == 0 ? &run.logits : nullptr).total);
  run.weights = model.parameters().download(model.parameters().values());
  return run;
}

double relative(const std::vector<float>& ours, const std::vector<float>& reference) {
  REQUIRE(ours.size() == reference.size());
  double difference = 0, norm = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    difference += std::pow(double{ours[i]} - reference[i], 2);
    norm += std::pow(double{reference[i]}, 2);
  }
  return std::sqrt(difference / norm);
}

// The change Adam made: weights compared by their updates, which is where the precision shows.
std::vector<float> updates(const Run& run, const std::vector<float>& initial) {
  std::vector<float> delta(initial.size());
  for (size_t i = 0; i < initial.size(); ++i) delta[i] = run.weights[i] - initial[i];
  return delta;
}

std::vector<float> initial_weights() {
  UNet model(model_config, device(DeviceKind::cpu));
  model.parameters().initialize(42);
  return model.parameters().download(model.parameters().values());
}

}  // namespace

TEST_CASE("precision: a tf32 step on cpu is close to fp32 and visibly different", "[precision]") {
  const Run fp32_cpu = train(DeviceKind::cpu, Precision::fp32, 3);
  const Run fp32_sim = train(DeviceKind::sim, Precision::fp32, 3);
  const Run tf32 = train(DeviceKind::cpu, Precision::tf32, 3);
  const double order_alone = relative(fp32_sim.logits, fp32_cpu.logits);
  const double off = relative(tf32.logits, fp32_cpu.logits);
  INFO("fp32 cpu vs sim " << order_alone << ", tf32 vs fp32 " << off);
  CHECK(off < 2 * 0x1p-11 * layers);
  CHECK(off > 10 * order_alone);
  const std::vector<float> initial = initial_weights();
  CHECK(relative(updates(tf32, initial), updates(fp32_cpu, initial)) > 10 * relative(updates(fp32_sim, initial),
                                                                                    updates(fp32_cpu, initial)));
  for (int k = 0; k < 3; ++k) CHECK(tf32.losses[k] == Approx(fp32_cpu.losses[k]).epsilon(2 * 0x1p-11 * layers));
}

TEST_CASE("precision: a tf32 step on sim (tensor-core version 3) agrees with cpu's TF32 reference", "[precision]") {
  const Run cpu = train(DeviceKind::cpu, Precision::tf32, 2), sim = train(DeviceKind::sim, Precision::tf32, 2);
  const Run fp32_cpu = train(DeviceKind::cpu, Precision::fp32, 2);
  const Run fp32_sim = train(DeviceKind::sim, Precision::fp32, 2);
  const double apart = relative(sim.logits, cpu.logits);
  INFO("tf32 sim vs cpu " << apart << ", tf32 vs fp32 on sim " << relative(sim.logits, fp32_sim.logits));
  CHECK(apart < 0x1p-11);
  CHECK(relative(sim.weights, cpu.weights) < 0x1p-11);
  // sim really ran the TF32 kernels, not fp32 ones (which would pass the bounds above as well).
  CHECK(relative(sim.logits, fp32_sim.logits) > 10 * relative(fp32_sim.logits, fp32_cpu.logits));
}

TEST_CASE("precision: a bf16 step is close to fp32 and visibly different, on cpu and on sim alike", "[precision]") {
  const Run fp32_cpu = train(DeviceKind::cpu, Precision::fp32, 2);
  const Run fp32_sim = train(DeviceKind::sim, Precision::fp32, 2);
  const Run cpu = train(DeviceKind::cpu, Precision::bf16, 2), sim = train(DeviceKind::sim, Precision::bf16, 2);
  const double order_alone = relative(fp32_sim.logits, fp32_cpu.logits);
  INFO("bf16 cpu vs fp32 " << relative(cpu.logits, fp32_cpu.logits) << ", bf16 sim vs fp32 "
                           << relative(sim.logits, fp32_sim.logits) << ", bf16 sim vs cpu "
                           << relative(sim.logits, cpu.logits));
  for (const Run* run : {&cpu, &sim}) {
    const std::vector<float>& fp32 = run == &cpu ? fp32_cpu.logits : fp32_sim.logits;
    CHECK(relative(run->logits, fp32) < 3 * 0x1p-8 * layers);
    CHECK(relative(run->logits, fp32) > 10 * order_alone);
    for (size_t k = 0; k < run->losses.size(); ++k) {
      CHECK(run->losses[k] == Approx(fp32_cpu.losses[k]).epsilon(3 * 0x1p-8 * layers));
    }
  }
  CHECK(relative(sim.logits, cpu.logits) < 0x1p-8);
  CHECK(relative(sim.weights, cpu.weights) < 0x1p-8);
}

TEST_CASE("precision: the bf16 copy follows the fp32 master weights through upload and Adam", "[precision]") {
  for (const DeviceKind kind : {DeviceKind::cpu, DeviceKind::sim}) {
    CAPTURE(device_name(kind));
    UNet model(model_config, device(kind), Precision::bf16);
    ParameterStore& parameters = model.parameters();
    const auto copy_matches = [&] {
      const std::vector<float> master = parameters.download(parameters.values());
      std::vector<bf16> copy(master.size());
      device(kind).copy_to_host(copy.data(), parameters.bf16_values(), copy.size() * sizeof(bf16));
      for (size_t i = 0; i < master.size(); ++i) {
        if (copy[i].bits != to_bf16(master[i]).bits) return false;
      }
      return true;
    };
    parameters.initialize(9);
    CHECK(copy_matches());
    CHECK(model.parameters().kernel_value(0).scalar_type() == ScalarType::bf16);
    CHECK(model.parameters().value(0).scalar_type() == ScalarType::f32);
    Trainer trainer(model, AdamConfig{}, LossConfig{1, 1}, batch_shape, false);
    trainer.image().from_host(std::vector<float>(static_cast<size_t>(batch_shape.numel()), 0.5f));
    trainer.mask().from_host(std::vector<float>(static_cast<size_t>(batch_shape.pixels()), 1.0f));
    trainer.step();
    CHECK(copy_matches());
  }
}

TEST_CASE("precision: weights record the precision they were trained in, and load into any", "[precision]") {
  Device& cpu = device(DeviceKind::cpu);
  UNet tf32(model_config, cpu, Precision::tf32);
  tf32.parameters().initialize(1);
  const SafeTensors file = weights_file(tf32, Preprocessing{});
  CHECK(file.metadata.at("unet.precision") == "tf32");
  UNet fp32(model_config, cpu);
  load_weights(file, fp32);
  const ParameterStore &loaded = fp32.parameters(), &saved = tf32.parameters();
  CHECK(loaded.download(loaded.values()) == saved.download(saved.values()));
}

TEST_CASE("precision: a model refuses a context of another precision", "[precision]") {
  Device& cpu = device(DeviceKind::cpu);
  UNet model(model_config, cpu, Precision::tf32);
  Context ctx(cpu, {});
  Tensor image = ctx.scratch({1, 16, 16, 3});
  CHECK_THROWS_WITH(model.forward(ctx, image), "model: a tf32 model run in a fp32 context");
}
