// Adam's CUDA kernels (every version) against the CPU reference in double, on sim or cuda, with the
// step read from the training clock in device memory.
#include <catch2/catch.hpp>

#include <cstring>

#include "kernels/adam.h"
#include "tests/kernels/adam_cases.h"
#include "kernels/clock.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using test::adam_configs;
using test::DeviceBuffer, test::dev, test::kDevice;

namespace {

// Parameters, gradients and moments, on the host in double for the reference.
struct State {
  std::vector<double> param, m, v;
};

State initial_state(int64_t n) {
  return {test::to_double(test::random_uniform(n, 121)), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
}

// The four flat buffers on the device, `offset` floats into their allocations (1 misaligns them).
struct DeviceState {
  DeviceState(const State& s, int offset)
      : offset(offset),
        param(dev(), padded(s.param)),
        grad(dev(), s.param.size() + offset),
        m(dev(), padded(s.m)),
        v(dev(), padded(s.v)) {}

  std::vector<float> padded(const std::vector<double>& values) const {
    std::vector<float> out(offset, 0.0f);
    out.insert(out.end(), values.begin(), values.end());
    return out;
  }
  std::vector<float> unpadded(const DeviceBuffer<float>& buffer) const {
    const auto all = buffer.download();
    return {all.begin() + offset, all.end()};
  }
  void step(int64_t n, const AdamConfig& config, const int64_t* clock, Stream stream, int version) {
    Adam<kDevice>::step(n, param.data() + offset, grad.data() + offset, m.data() + offset, v.data() + offset, config,
                        clock, stream, version);
  }

  int offset;
  DeviceBuffer<float> param, grad, m, v;
};

void check_state(const DeviceState& got, const State& expected, const State& initial) {
  const auto param = got.unpadded(got.param);
  CHECK(test::relative_error(param, expected.param) < 1e-5);
  CHECK(test::relative_error(got.unpadded(got.m), expected.m) < 1e-5);
  CHECK(test::relative_error(got.unpadded(got.v), expected.v) < 1e-5);
  // The movement, which a wrong update changes far more than the parameters' norm shows.
  std::vector<double> moved(param.size()), expected_moved(param.size());
  for (size_t i = 0; i < param.size(); ++i) {
    moved[i] = param[i] - initial.param[i];
    expected_moved[i] = expected.param[i] - initial.param[i];
  }
  CHECK(test::relative_error(moved, expected_moved) < 1e-5);
}

// The flat parameter count of a narrow U-Net (base width 8): the model's parameter buffer, smaller.
int64_t narrow_model_parameters() {
  UNetConfig config;
  config.base_width = 8;
  return unet_parameters(config);
}

}  // namespace

TEST_CASE("adam kernels: steps taken with the clock equal the reference", "[adam]") {
  constexpr int steps = 5;
  for (int version = 1; version <= Adam<kDevice>::versions; ++version) {
    for (const auto& [name, config] : adam_configs) {
      for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{4}, int64_t{1023}, int64_t{4099}, narrow_model_parameters()}) {
        for (int offset : {0, 1}) {  // aligned, and misaligned (version 2 falls back)
          if (n > 4099 && offset == 1) continue;
          INFO("version " << version << ", " << name << ", n " << n << ", offset " << offset);
          const State initial = initial_state(n);
          State expected = initial;
          DeviceState state(initial, offset);
          DeviceBuffer<int64_t> clock(dev(), std::vector<int64_t>{0});
          for (int t = 1; t <= steps; ++t) {
            const auto grad = test::random_uniform(n, 122 + t);
            cpu::adam_step<double>(n, expected.param.data(), test::to_double(grad).data(), expected.m.data(),
                                   expected.v.data(), config, t);
            state.grad.upload(state.padded(test::to_double(grad)));
            Clock<kDevice>::advance(clock.data(), {});
            state.step(n, config, clock.data(), {}, version);
          }
          CHECK(clock.download()[0] == steps);
          check_state(state, expected, initial);
        }
      }
    }
  }
}

TEST_CASE("adam kernels: a captured step replays with the clock's new step each time", "[adam]") {
  const int64_t n = 1023;
  const AdamConfig config = adam_configs[3].second;  // the schedule depends on the step too
  const auto grad = test::random_uniform(n, 131);
  for (int version = 1; version <= Adam<kDevice>::versions; ++version) {
    INFO("version " << version);
    const State initial = initial_state(n);
    State expected = initial;
    DeviceState state(initial, 0);
    state.grad.upload(state.padded(test::to_double(grad)));
    DeviceBuffer<int64_t> clock(dev(), std::vector<int64_t>{0});

    const Stream stream = dev().create_stream();
    dev().begin_capture(stream);
    Clock<kDevice>::advance(clock.data(), stream);
    state.step(n, config, clock.data(), stream, version);
    const auto graph = dev().end_capture(stream);
    for (int t = 1; t <= 4; ++t) {
      graph->replay(stream);
      cpu::adam_step<double>(n, expected.param.data(), test::to_double(grad).data(), expected.m.data(),
                             expected.v.data(), config, t);
    }
    dev().synchronize(stream);
    dev().destroy_stream(stream);
    CHECK(clock.download()[0] == 4);
    check_state(state, expected, initial);
  }
}

TEST_CASE("adam kernels: the same inputs give the same bits", "[adam]") {
  const int64_t n = 4099;
  const auto grad = test::random_uniform(n, 132);
  for (int version = 1; version <= Adam<kDevice>::versions; ++version) {
    std::vector<float> results[2];
    for (auto& result : results) {
      DeviceState state(initial_state(n), 0);
      state.grad.upload(state.padded(test::to_double(grad)));
      DeviceBuffer<int64_t> clock(dev(), std::vector<int64_t>{3});
      state.step(n, adam_configs[2].second, clock.data(), {}, version);
      result = state.unpadded(state.param);
    }
    CHECK(std::memcmp(results[0].data(), results[1].data(), sizeof(float) * n) == 0);
  }
}

TEST_CASE("adam kernels: no parameters launches nothing", "[adam]") {
  Adam<kDevice>::step(0, nullptr, nullptr, nullptr, nullptr, AdamConfig{}, nullptr, {});
}

TEST_CASE("adam kernels: the non-finite flag is raised by one bad parameter anywhere, and only then", "[adam]") {
  const int64_t n = 4099;  // version 2: 1024 quads and a tail of 3
  const auto grad = test::random_uniform(n, 133);
  for (int version = 1; version <= Adam<kDevice>::versions; ++version) {
    for (const int64_t bad : {int64_t{-1}, int64_t{0}, int64_t{2050}, n - 1}) {  // -1: none
      CAPTURE(version, bad);
      DeviceState state(initial_state(n), 0);
      std::vector<double> g = test::to_double(grad);
      if (bad >= 0) g[static_cast<size_t>(bad)] = std::nan("");  // a NaN gradient makes its parameter NaN
      state.grad.upload(state.padded(g));
      DeviceBuffer<int64_t> clock(dev(), std::vector<int64_t>{1});
      DeviceBuffer<int32_t> flag(dev(), std::vector<int32_t>{0});
      Adam<kDevice>::step(n, state.param.data(), state.grad.data(), state.m.data(), state.v.data(),
                          adam_configs[0].second, clock.data(), {}, version, flag.data());
      dev().synchronize();
      CHECK(flag.download()[0] == (bad >= 0 ? 1 : 0));
    }
  }
}
