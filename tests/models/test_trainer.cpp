// The training step as a whole, on sim (CUDA kernels on the CPU) and cpu: graphs, allocation,
// launches, determinism, and that a small model can learn.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/sim/runtime.h"
#include "models/trainer.h"

using namespace unet;

namespace {

const UNetConfig small{3, 8, 2};
const Shape batch_shape{2, 16, 24, 3};

// Images of noise with a brighter disc in channel 1 (FLAIR), and the disc as the mask.
void blob_batch(const Shape& shape, uint64_t seed, std::vector<float>& image, std::vector<float>& mask) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  image.assign(static_cast<size_t>(shape.numel()), 0.0f);
  mask.assign(static_cast<size_t>(shape.pixels()), 0.0f);
  for (int n = 0; n < shape.n; ++n) {
    const float cy = shape.h * (0.3f + 0.4f * unit(random)), cx = shape.w * (0.3f + 0.4f * unit(random));
    const float r = 0.2f * std::min(shape.h, shape.w) * (0.7f + 0.6f * unit(random));
    for (int y = 0; y < shape.h; ++y) {
      for (int x = 0; x < shape.w; ++x) {
        const int64_t p = (int64_t{n} * shape.h + y) * shape.w + x;
        const bool inside = (y + 0.5f - cy) * (y + 0.5f - cy) + (x + 0.5f - cx) * (x + 0.5f - cx) < r * r;
        mask[p] = inside ? 1.0f : 0.0f;
        for (int c = 0; c < shape.c; ++c) image[p * shape.c + c] = 0.3f * unit(random) + (inside && c == 1 ? 0.6f : 0.0f);
      }
    }
  }
}

struct Run {
  std::vector<StepLosses> losses;
  std::vector<float> weights;
};

Run train(DeviceKind kind, bool graph, int steps, const LossConfig& loss = {1, 1}, bool poison = false,
          Communicator* comm = nullptr) {
  UNet model(small, device(kind));
  model.parameters().initialize(42);
  AdamConfig adam;
  adam.lr = 1e-3f;
  Trainer trainer(model, adam, loss, batch_shape, graph);
  if (comm != nullptr) trainer.set_communicator(*comm);
  trainer.context().arena().set_poison(poison);
  std::vector<float> image, mask;
  blob_batch(batch_shape, 5, image, mask);
  trainer.image().from_host(image);
  trainer.mask().from_host(mask);
  Run run;
  for (int k = 0; k < steps; ++k) run.losses.push_back(trainer.step());
  run.weights = model.parameters().download(model.parameters().values());
  return run;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_bits(const std::vector<StepLosses>& a, const std::vector<StepLosses>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(StepLosses)) == 0;
}

}  // namespace

TEST_CASE("trainer: graph replay equals eager execution, bit for bit, over 3 steps (sim)", "[trainer]") {
  const Run eager = train(DeviceKind::sim, false, 3);
  const Run graphed = train(DeviceKind::sim, true, 3);
  CHECK(same_bits(eager.losses, graphed.losses));
  CHECK(same_bits(eager.weights, graphed.weights));
  CHECK(eager.losses[2].total < eager.losses[0].total);  // it is training
}

// Communicator::alone() is the one-rank job tools/gpu_check.sh runs NCCL with; on cpu and sim its
// collectives are the identity and must not call MPI, which no launcher initialised (it would abort).
TEST_CASE("trainer: through a one-rank communicator without MPI, the bits of no communicator (cpu, sim graphs)",
          "[trainer][comm]") {
  const std::unique_ptr<Communicator> alone = Communicator::alone();
  REQUIRE(alone->launched());
  for (const auto& [kind, graph] : {std::pair{DeviceKind::cpu, false}, std::pair{DeviceKind::sim, true}}) {
    CAPTURE(device_name(kind));
    const Run plain = train(kind, graph, 3);
    const Run through = train(kind, graph, 3, {1, 1}, false, alone.get());
    CHECK(same_bits(through.losses, plain.losses));
    CHECK(same_bits(through.weights, plain.weights));
  }
}

// The poison fills go on the step's stream, so they are captured with it: on the legacy default
// stream a GPU would refuse them during the capture (sim refuses them too).
TEST_CASE("trainer: with the arena poisoned, a captured step replays like an eager one (sim)", "[trainer]") {
  const Run eager = train(DeviceKind::sim, false, 3);
  const Run graphed = train(DeviceKind::sim, true, 3, {1, 1}, true);
  CHECK(same_bits(eager.losses, graphed.losses));
  CHECK(same_bits(eager.weights, graphed.weights));
}

TEST_CASE("trainer: a fixed seed gives the same losses to the bit (sim and cpu)", "[trainer]") {
  for (DeviceKind kind : {DeviceKind::sim, DeviceKind::cpu}) {
    INFO(device_name(kind));
    const Run a = train(kind, false, 2), b = train(kind, false, 2);
    CHECK(same_bits(a.losses, b.losses));
    CHECK(same_bits(a.weights, b.weights));
  }
}

TEST_CASE("trainer: a step that leaves a parameter non-finite is noticed while its loss is finite (sim and cpu)",
          "[trainer]") {
  for (const DeviceKind kind : {DeviceKind::cpu, DeviceKind::sim}) {
    CAPTURE(device_name(kind));
    for (const double lr : {1e-3, 1e39}) {  // 1e39 is beyond float: the step makes every parameter inf or NaN
      UNet model(small, device(kind));
      model.parameters().initialize(42);
      AdamConfig adam;
      adam.lr = lr;
      Trainer trainer(model, adam, {1, 1}, batch_shape, false);
      std::vector<float> image, mask;
      blob_batch(batch_shape, 5, image, mask);
      trainer.image().from_host(image);
      trainer.mask().from_host(mask);
      CHECK(std::isfinite(trainer.step().total));
      CHECK(trainer.parameters_finite() == (lr < 1));
    }
  }
}

TEST_CASE("trainer: cpu and sim agree to fp32 tolerance", "[trainer]") {
  const Run cpu = train(DeviceKind::cpu, false, 3), sim = train(DeviceKind::sim, false, 3);
  for (int k = 0; k < 3; ++k) CHECK(sim.losses[k].total == Approx(cpu.losses[k].total).epsilon(1e-4));
  double difference = 0, norm = 0;
  for (size_t i = 0; i < cpu.weights.size(); ++i) {
    difference += std::pow(double{sim.weights[i]} - cpu.weights[i], 2);
    norm += std::pow(double{cpu.weights[i]}, 2);
  }
  CHECK(std::sqrt(difference / norm) < 1e-4);
}

TEST_CASE("trainer: a steady-state step allocates nothing, launches Adam once and no concat", "[trainer]") {
  Device& sim = device(DeviceKind::sim);
  UNet model(small, sim);
  model.parameters().initialize(1);
  Trainer trainer(model, AdamConfig{}, LossConfig{}, batch_shape, false);
  std::vector<float> image, mask;
  blob_batch(batch_shape, 9, image, mask);
  trainer.image().from_host(image);
  trainer.mask().from_host(mask);
  std::vector<float> logits_first, logits_second;
  trainer.step();
  trainer.step(&logits_first);

  const int64_t allocations = sim.allocation_count();
  const size_t arena = trainer.context().arena().capacity();
  const auto before = sim::launch_counts();
  trainer.step(&logits_second);
  const auto after = sim::launch_counts();
  CHECK(sim.allocation_count() == allocations);
  CHECK(trainer.context().arena().capacity() == arena);

  int64_t adam = 0, concat = 0, total = 0;
  for (const auto& [name, count] : after) {
    const int64_t launched = count - (before.count(name) ? before.at(name) : 0);
    total += launched;
    if (name.find("adam") != std::string::npos) adam += launched;
    if (name.find("concat") != std::string::npos) concat += launched;
  }
  CHECK(adam == 1);
  CHECK(concat == 0);
  CHECK(total > 20);
}

TEST_CASE("trainer: the same arena addresses every steady-state step", "[trainer]") {
  UNet model(small, device(DeviceKind::sim));
  model.parameters().initialize(1);
  Trainer trainer(model, AdamConfig{}, LossConfig{}, batch_shape, false);
  trainer.step();
  std::vector<const float*> addresses;
  for (int k = 0; k < 3; ++k) {
    trainer.context().end_step();
    const Var logits = model.forward(trainer.context(), trainer.image());
    addresses.push_back(logits.value().data());
  }
  CHECK(addresses[0] == addresses[1]);
  CHECK(addresses[1] == addresses[2]);
}

TEST_CASE("trainer: a small model overfits 4 blob images on cpu (training Dice > 0.9)", "[trainer][slow]") {
  const Shape shape{4, 32, 32, 3};
  UNet model(UNetConfig{3, 8, 2}, device(DeviceKind::cpu));
  model.parameters().initialize(3);
  AdamConfig adam;
  adam.lr = 3e-3f;
  Trainer trainer(model, adam, LossConfig{1, 1}, shape, false);
  std::vector<float> image, mask, logits;
  blob_batch(shape, 11, image, mask);
  trainer.image().from_host(image);
  trainer.mask().from_host(mask);
  double dice = 0;
  int step = 0;
  for (; step < 400 && dice <= 0.9; ++step) {
    trainer.step(&logits);
    double intersection = 0, predicted = 0, truth = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      const double p = logits[i] > 0 ? 1 : 0;  // sigmoid(logit) > 0.5
      intersection += p * mask[i];
      predicted += p;
      truth += mask[i];
    }
    dice = 2 * intersection / (predicted + truth);
  }
  INFO("steps " << step << ", Dice " << dice);
  CHECK(dice > 0.9);
}
