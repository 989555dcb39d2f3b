// Adam's CPU reference against torch.optim.Adam and AdamW (tests/oracle/adam.py), and the
// learning-rate schedule.
#include <catch2/catch.hpp>

#include <limits>
#include <string>

#include "engine/safetensors.h"
#include "kernels/adam.h"
#include "tests/test_util.h"

using namespace unet;

TEST_CASE("adam reference: five steps equal torch.optim.Adam and AdamW", "[adam]") {
  const auto oracle = SafeTensors::load(UNET_ORACLE_DIR "/adam.safetensors");
  const auto param0 = oracle.floats("param0");
  const int64_t n = static_cast<int64_t>(param0.size());
  const int steps = static_cast<int>(oracle.get("grads").shape[0]);
  const auto grads = oracle.floats("grads", {steps, n});
  for (const std::string name : {"adam", "adam_weight_decay", "adamw", "adamw_weight_decay"}) {
    INFO("case " << name);
    const auto c = oracle.doubles(name + ".config", {6});
    AdamConfig config;
    config.lr = c[0];
    config.beta1 = c[1];
    config.beta2 = c[2];
    config.eps = c[3];
    config.weight_decay = c[4];
    config.decoupled_weight_decay = c[5] != 0.0;

    std::vector<float> param = param0, m(n, 0.0f), v(n, 0.0f);
    for (int step = 1; step <= steps; ++step) {
      cpu::adam_step(n, param.data(), grads.data() + (step - 1) * n, m.data(), v.data(), config, step);
    }
    const auto expected = oracle.floats(name + ".param");
    CHECK(test::relative_error(param, expected) < 1e-5);
    CHECK(test::relative_error(m, oracle.floats(name + ".m")) < 1e-5);
    CHECK(test::relative_error(v, oracle.floats(name + ".v")) < 1e-5);
    // The parameters move by about 5 * lr: compare the movement too, which a wrong update would
    // change far more than the parameters' norm shows.
    std::vector<double> moved(n), expected_moved(n);
    for (int64_t i = 0; i < n; ++i) {
      moved[i] = double(param[i]) - param0[i];
      expected_moved[i] = double(expected[i]) - param0[i];
    }
    CHECK(test::relative_error(moved, expected_moved) < 1e-5);
  }
}

TEST_CASE("adam reference: linear warm-up, then constant or cosine decay", "[adam]") {
  AdamConfig config;
  config.lr = 0.5f;
  config.warmup_steps = 4;
  CHECK(scheduled_lr(config, 1) == 0.125);
  CHECK(scheduled_lr(config, 4) == 0.5);
  CHECK(scheduled_lr(config, 1000) == 0.5);
  config.schedule = LrSchedule::cosine;
  config.total_steps = 14;
  CHECK(scheduled_lr(config, 9) == Approx(0.25).epsilon(1e-12));  // halfway through the decay
  CHECK(scheduled_lr(config, 14) == Approx(0.0).margin(1e-15));
  CHECK(scheduled_lr(config, 20) == Approx(0.0).margin(1e-15));  // stays at 0 past the end
}

TEST_CASE("adam reference: the non-finite flag is raised by one bad parameter, and only then", "[adam]") {
  const int64_t n = 1000;
  for (const int64_t bad : {int64_t{-1}, int64_t{0}, int64_t{517}, n - 1}) {  // -1: none
    CAPTURE(bad);
    std::vector<float> param(n, 0.5f), grad(n, 0.25f), m(n, 0.0f), v(n, 0.0f);
    if (bad >= 0) param[bad] = std::numeric_limits<float>::infinity();
    int32_t flag = 0;
    cpu::adam_step(n, param.data(), grad.data(), m.data(), v.data(), AdamConfig{}, 1, &flag);
    CHECK(flag == (bad >= 0 ? 1 : 0));
  }
  std::vector<float> param(4, 0.5f), grad(4, 0.25f), m(4, 0.0f), v(4, 0.0f);
  int32_t flag = 1;  // raised by an earlier step: a finite step leaves it raised
  cpu::adam_step(4, param.data(), grad.data(), m.data(), v.data(), AdamConfig{}, 1, &flag);
  CHECK(flag == 1);
}
