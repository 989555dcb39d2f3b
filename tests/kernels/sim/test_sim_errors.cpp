// Misuse that the sim runtime must report, naming the kernel, instead of hanging or carrying on.
// (On a GPU these are hangs or undefined behaviour, so they run on sim only.)
#include <catch2/catch.hpp>

#include "kernels/sim/runtime.h"
#include "tests/kernels/sim/feature_kernels.h"
#include "tests/test_util.h"

using namespace unet;
using Kernels = FeatureKernels<DeviceKind::sim>;

TEST_CASE("threads waiting at different __syncthreads are reported", "[sim][errors]") {
  CHECK_THROWS_WITH(Kernels::divergent_barrier({}),
                    Catch::Contains("divergent_barrier_kernel") && Catch::Contains("divergent __syncthreads") &&
                        Catch::Contains("feature_kernels.cu:"));
}

TEST_CASE("a thread that returns while others wait at __syncthreads is reported", "[sim][errors]") {
  CHECK_THROWS_WITH(Kernels::return_before_barrier({}),
                    Catch::Contains("return_before_barrier_kernel") && Catch::Contains("thread (5,0,0) returned"));
}

TEST_CASE("a shuffle whose partner lanes have returned is reported", "[sim][errors]") {
  CHECK_THROWS_WITH(Kernels::shuffle_with_returned_lanes({}),
                    Catch::Contains("shuffle_with_returned_lanes_kernel") && Catch::Contains("__shfl_xor_sync") &&
                        Catch::Contains("has returned"));
}

TEST_CASE("after a reported error the runtime runs the next launch normally", "[sim][errors]") {
  CHECK_THROWS(Kernels::divergent_barrier({}));
  std::vector<float> x(300, 1.0f), y(300, 2.0f);
  test::DeviceBuffer<float> dx(device(DeviceKind::sim), x), dy(device(DeviceKind::sim), y);
  Kernels::saxpy(300, 3.0f, dx.data(), dy.data(), {});
  for (float v : dy.download()) REQUIRE(v == 5.0f);
}

TEST_CASE("grids and blocks with a zero or oversized dimension are invalid", "[sim][errors]") {
  CHECK_THROWS_WITH(Kernels::launch_block(0, 1, 1, {}), Catch::Contains("zero dimension"));
  CHECK_THROWS_WITH(Kernels::launch_block(1, 1, 65, {}), Catch::Contains("per-dimension limits"));
}

TEST_CASE("a captured stream records launches and replays them", "[sim][graphs]") {
  Device& sim = device(DeviceKind::sim);
  Stream stream = sim.create_stream();
  std::vector<float> x(100, 1.0f), y(100, 0.0f);
  test::DeviceBuffer<float> dx(sim, x), dy(sim, y);
  sim.begin_capture(stream);
  Kernels::saxpy(100, 2.0f, dx.data(), dy.data(), stream);
  auto graph = sim.end_capture(stream);
  for (float v : dy.download()) REQUIRE(v == 0.0f);  // captured, not run
  graph->replay(stream);
  graph->replay(stream);
  for (float v : dy.download()) REQUIRE(v == 4.0f);
  sim.destroy_stream(stream);
}

TEST_CASE("during a capture, sim refuses what a GPU refuses", "[sim][graphs]") {
  Device& sim = device(DeviceKind::sim);
  Stream stream = sim.create_stream(), other = sim.create_stream();
  std::vector<float> x(100, 1.0f), y(100, 0.0f), host(100);
  test::DeviceBuffer<float> dx(sim, x), dy(sim, y);
  sim.begin_capture(stream);
  CHECK_THROWS_WITH(sim.allocate(16), Catch::Contains("allocation while a stream is being captured"));
  CHECK_THROWS_WITH(sim.copy_to_device(dy.data(), x.data(), 400), Catch::Contains("synchronous copy"));
  CHECK_THROWS_WITH(sim.copy_to_host(host.data(), dy.data(), 400), Catch::Contains("synchronous copy"));
  CHECK_THROWS_WITH(sim.synchronize(), Catch::Contains("waiting for the device"));
  CHECK_THROWS_WITH(sim.synchronize(stream), Catch::Contains("waiting for the device"));
  CHECK_THROWS_WITH(sim.fill_bytes(dy.data(), 0, 400), Catch::Contains("cudaErrorStreamCaptureImplicit"));
  CHECK_THROWS_WITH(Kernels::saxpy(100, 2.0f, dx.data(), dy.data(), {}), Catch::Contains("default stream"));
  // Another stream is not captured: its work runs, and waiting for it is allowed.
  Kernels::saxpy(100, 2.0f, dx.data(), dy.data(), other);
  sim.synchronize(other);
  Kernels::saxpy(100, 2.0f, dx.data(), dy.data(), stream);
  auto graph = sim.end_capture(stream);
  for (float v : dy.download()) REQUIRE(v == 2.0f);  // only the other stream's launch ran
  graph->replay(stream);
  for (float v : dy.download()) REQUIRE(v == 4.0f);
  sim.destroy_stream(stream);
  sim.destroy_stream(other);
}
