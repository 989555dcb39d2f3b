// Adam's bf16-copy overload on the device under test (cpu, sim or cuda): the same launch updates
// the fp32 master weights and moments exactly as the fp32 overload does, and writes each updated
// weight rounded to bf16, bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "kernels/adam.h"
#include "tests/kernels/bf16_test_util.h"

using namespace unet;
using test::DeviceBuffer, test::dev, test::kDevice;

namespace {

struct Buffers {
  DeviceBuffer<float> param, grad, m, v;
  Buffers(const std::vector<float>& p, const std::vector<float>& g)
      : param(dev(), p), grad(dev(), g), m(dev(), std::vector<float>(p.size(), 0.01f)),
        v(dev(), std::vector<float>(p.size(), 0.02f)) {}
};

}  // namespace

TEST_CASE("adam bf16: the weight copy is the updated fp32 weights rounded once, the rest unchanged",
          "[adam][bf16]") {
  AdamConfig config;
  config.lr = 1e-2;
  config.weight_decay = 0.1;
  config.decoupled_weight_decay = true;
  for (int version = 1; version <= Adam<kDevice>::versions; ++version) {
    // 4099: version 2's quads and a tail of 3; offset 1 leaves the copy 2-byte aligned (version 1).
    for (int copy_offset : {0, 1}) {
      INFO("version " << version << ", copy offset " << copy_offset);
      const int64_t n = 4099;
      auto param = test::random_uniform(n, 301, -2.0f, 2.0f);
      param[17] = NAN;  // NaN stays NaN in the copy
      const auto grad = test::random_uniform(n, 302);
      int64_t host_step = 3;
      DeviceBuffer<int64_t> clock(dev(), std::vector<int64_t>{host_step});
      // The cpu device reads the step from host memory, sim and cuda from device memory.
      const int64_t* step = kDevice == DeviceKind::cpu ? &host_step : clock.data();

      Buffers fp32(param, grad), with_copy(param, grad);
      DeviceBuffer<bf16> copy(dev(), n + copy_offset);
      copy.poison();
      Adam<kDevice>::step(n, fp32.param.data(), fp32.grad.data(), fp32.m.data(), fp32.v.data(), config, step, {},
                          version);
      Adam<kDevice>::step(n, with_copy.param.data(), with_copy.grad.data(), with_copy.m.data(), with_copy.v.data(),
                          copy.data() + copy_offset, config, step, {}, version);
      const auto master = fp32.param.download();
      CHECK(std::memcmp(with_copy.param.download().data(), master.data(), n * sizeof(float)) == 0);
      CHECK(std::memcmp(with_copy.m.download().data(), fp32.m.download().data(), n * sizeof(float)) == 0);
      CHECK(std::memcmp(with_copy.v.download().data(), fp32.v.download().data(), n * sizeof(float)) == 0);
      const auto got = test::bits(copy.download());
      std::vector<uint16_t> expected(copy_offset, test::poison_bits);
      for (float w : master) expected.push_back(to_bf16(w).bits);
      CHECK(got == expected);
      CHECK(std::isnan(to_float(bf16{got[17 + copy_offset]})));

      // nullptr: no copy, the same step.
      Buffers no_copy(param, grad);
      Adam<kDevice>::step(n, no_copy.param.data(), no_copy.grad.data(), no_copy.m.data(), no_copy.v.data(), nullptr,
                          config, step, {}, version);
      CHECK(std::memcmp(no_copy.param.download().data(), master.data(), n * sizeof(float)) == 0);
    }
  }
}
