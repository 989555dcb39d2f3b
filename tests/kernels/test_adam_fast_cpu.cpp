// The cpu device's Adam (cpu::fast, adam.h) against the reference in float: bit for bit over five
// steps of Adam, Adam with L2 decay, AdamW and a warm-up with cosine decay, at the narrow model's
// parameter count and at counts off any vector width; the non-finite flag; the same bits at 1 and
// 2 threads; the launcher's two versions.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/adam.h"
#include "tests/kernels/adam_cases.h"
#include "models/unet_shapes.h"
#include "tests/test_util.h"

using namespace unet;
using test::adam_configs;

namespace {

struct State {
  std::vector<float> param, m, v;
};

// Five steps of `step_function` from the same start, new gradients each step.
template <class Step>
State five_steps(int64_t n, const AdamConfig& config, Step step_function) {
  State s{test::random_uniform(n, 1400), std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f)};
  for (int64_t step = 1; step <= 5; ++step) {
    const auto grad = test::random_uniform(n, 1400 + step);
    step_function(n, s.param.data(), grad.data(), s.m.data(), s.v.data(), config, step);
  }
  return s;
}

int64_t narrow_model_parameters() {
  UNetConfig config;
  config.base_width = 8;
  return unet_parameters(config);
}

}  // namespace

TEST_CASE("fast cpu adam: five steps give exactly the reference's bits", "[cpu][adam]") {
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{100003}, narrow_model_parameters()}) {
    for (const auto& [name, config] : adam_configs) {
      INFO(name << ", " << n << " parameters");
      const State expected = five_steps(n, config, [](auto... a) { cpu::adam_step<float>(a..., nullptr); });
      const State got = five_steps(n, config, [](auto... a) { cpu::fast::adam_step(a..., nullptr); });
      CHECK(got.param == expected.param);
      CHECK(got.m == expected.m);
      CHECK(got.v == expected.v);
    }
  }
}

TEST_CASE("fast cpu adam: the non-finite flag is raised by one bad parameter anywhere, and only then", "[cpu][adam]") {
  const int64_t n = 70001;
  for (int64_t bad : {int64_t{0}, int64_t{5}, n / 2, n - 1}) {
    // A NaN gradient makes the parameter NaN; an infinite parameter stays infinite, not NaN.
    for (bool nan_gradient : {true, false}) {
      INFO((nan_gradient ? "NaN gradient" : "infinite parameter") << " at " << bad);
      auto param = test::random_uniform(n, 1500), grad = test::random_uniform(n, 1501);
      std::vector<float> m(n, 0.0f), v(n, 0.0f);
      int32_t flag = 0;
      cpu::fast::adam_step(n, param.data(), grad.data(), m.data(), v.data(), adam_configs[0].second, 1, &flag);
      CHECK(flag == 0);
      (nan_gradient ? grad[bad] : param[bad]) = nan_gradient ? NAN : INFINITY;
      cpu::fast::adam_step(n, param.data(), grad.data(), m.data(), v.data(), adam_configs[0].second, 2, &flag);
      CHECK(flag == 1);
      CHECK((nan_gradient ? std::isnan(param[bad]) : std::isinf(param[bad])));
    }
  }
}

TEST_CASE("fast cpu adam: the same bits at 1 and 2 threads, and the launcher's versions", "[cpu][adam]") {
  const int64_t n = 100003;
  const AdamConfig& config = adam_configs[3].second;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const State one = five_steps(n, config, [](auto... a) { cpu::fast::adam_step(a..., nullptr); });
  omp_set_num_threads(2);
  const State two = five_steps(n, config, [](auto... a) { cpu::fast::adam_step(a..., nullptr); });
  omp_set_num_threads(saved);
  CHECK(one.param == two.param);
  CHECK(one.v == two.v);
  for (int version : {0, 1}) {
    INFO("version " << version);
    const State launched =
        five_steps(n, config,
                   [version](int64_t count, float* p, const float* g, float* m, float* v, const AdamConfig& c,
                             int64_t step) { Adam<DeviceKind::cpu>::step(count, p, g, m, v, c, &step, {}, version); });
    CHECK(launched.param == one.param);
  }
}
