// NCCL for real with one rank, in process, without a launcher or MPI (Communicator::alone): the
// only NCCL run a machine with one GPU allows (NCCL refuses two ranks on one GPU), and the one
// tools/gpu_check.sh makes. libnccl is loaded at run time: gpu_check puts the nvidia-nccl wheel's
// lib folder on LD_LIBRARY_PATH; without it these tests fail with NcclLink's one-line reason.
//
// Over one rank a sum is the buffer itself, so these check that NCCL's calls run (ncclGetUniqueId,
// ncclCommInitRank with one rank, ncclAllReduce in fp32 and fp64 on the link's own stream), that
// the fork and join by events are complete (a capture that left the link's stream unjoined would
// fail), and that a training step through NCCL keeps the bits of one without it.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "engine/comm.h"
#include "engine/nccl_link.h"
#include "models/trainer.h"

using namespace unet;

namespace {

template <typename T>
std::vector<T> ramp(size_t count) {
  std::vector<T> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = static_cast<T>(0.25 * static_cast<double>(i) - 1000.0) / T(3);
  return values;
}

// Copies `host` to a scratch buffer, then on `stream`: the scratch into `buffer`, the all-reduce,
// and `buffer` back into the scratch; returns the scratch. The all-reduce sits between two copies
// of the caller's stream, as the gradients' sits between backward and Adam.
template <typename T>
std::vector<T> reduce_between_copies(Communicator& comm, Device& device, Stream stream, const std::vector<T>& host,
                                     bool capture) {
  const size_t bytes = host.size() * sizeof(T);
  T* const buffer = static_cast<T*>(device.allocate(bytes));   // (count)
  T* const scratch = static_cast<T*>(device.allocate(bytes));  // (count)
  device.copy_to_device(scratch, host.data(), bytes);
  device.fill_bytes(buffer, 0xff, bytes, stream);  // NaN: a copy the all-reduce overtook would show
  std::unique_ptr<Graph> graph;
  if (capture) device.begin_capture(stream);
  device.copy(buffer, scratch, bytes, stream);
  comm.all_reduce(device, buffer, static_cast<int64_t>(host.size()), stream, "the test's all-reduce");
  device.fill_bytes(scratch, 0xff, bytes, stream);
  device.copy(scratch, buffer, bytes, stream);
  if (capture) {
    graph = device.end_capture(stream);  // throws if the link's stream was not joined back
    graph->replay(stream);
  }
  comm.wait(device, stream, "the test's all-reduce");
  std::vector<T> result(host.size());
  device.copy_to_host(result.data(), scratch, bytes);
  device.release(buffer);
  device.release(scratch);
  return result;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace

TEST_CASE("NCCL alone: one rank's all-reduce in fp32 and fp64, eager and captured, leaves the buffer's bits",
          "[nccl]") {
  INFO("NCCL: " << NcclLink::library_version());
  Device& device = unet::device(DeviceKind::cuda);
  const Stream stream = device.create_stream();
  const std::unique_ptr<Communicator> comm = Communicator::alone();
  REQUIRE(comm->launched());
  REQUIRE(comm->size() == 1);
  const std::vector<float> floats = ramp<float>(3 << 20);  // 12 MB: more than one NCCL chunk
  const std::vector<double> doubles = ramp<double>(5);      // the loss's batch sums
  for (const bool capture : {false, true}) {
    CAPTURE(capture);
    CHECK(same_bits(reduce_between_copies(*comm, device, stream, floats, capture), floats));
    CHECK(same_bits(reduce_between_copies(*comm, device, stream, doubles, capture), doubles));
  }
  device.destroy_stream(stream);
}

namespace {

struct Steps {
  std::vector<float> losses;  // total, BCE, Dice of each step
  std::vector<float> weights;
  bool captured = false;
};

// Three steps of a small model on a fixed batch, graphs on: eager, captured, replayed.
Steps train(Communicator* comm) {
  UNet model(UNetConfig{3, 8, 2}, device(DeviceKind::cuda));
  model.parameters().initialize(42);
  AdamConfig adam;
  adam.lr = 1e-3f;
  const Shape batch{4, 32, 32, 3};
  Trainer trainer(model, adam, LossConfig{1, 1}, batch, true);
  if (comm != nullptr) trainer.set_communicator(*comm);
  std::vector<float> image(static_cast<size_t>(batch.numel())), mask(static_cast<size_t>(batch.pixels()));
  for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
  for (size_t p = 0; p < mask.size(); ++p) mask[p] = (p / 32) % 32 > 12 && (p / 32) % 32 < 20 ? 1.0f : 0.0f;
  trainer.image().from_host(image);
  trainer.mask().from_host(mask);
  Steps steps;
  for (int k = 0; k < 3; ++k) {
    const StepLosses losses = trainer.step();
    CHECK_FALSE(losses.stop);
    steps.losses.insert(steps.losses.end(), {losses.total, losses.bce, losses.dice});
  }
  steps.captured = trainer.graph_captured();
  steps.weights = model.parameters().download(model.parameters().values());
  return steps;
}

}  // namespace

TEST_CASE("NCCL alone: training steps through a one-rank NCCL communicator keep the bits of steps without it",
          "[nccl]") {
  const Steps plain = train(nullptr);
  const std::unique_ptr<Communicator> comm = Communicator::alone();
  const Steps through_nccl = train(comm.get());
  CHECK(plain.captured);
  CHECK(through_nccl.captured);  // the two NCCL calls sit inside the step's graph
  CHECK(same_bits(through_nccl.losses, plain.losses));
  CHECK(same_bits(through_nccl.weights, plain.weights));
  CHECK(plain.losses[6] < plain.losses[0]);  // it trains
}
