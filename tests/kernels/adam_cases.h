// The Adam configurations the Adam tests share (the kernels' and the cpu device's fast path).
#pragma once

#include <utility>

#include "kernels/adam.h"

namespace unet::test {

inline AdamConfig adam_config(double weight_decay, bool decoupled, LrSchedule schedule = LrSchedule::constant) {
  AdamConfig config;
  config.lr = 0.01;  // large enough that the parameters' movement is far above their rounding
  config.weight_decay = weight_decay;
  config.decoupled_weight_decay = decoupled;
  config.schedule = schedule;
  if (schedule == LrSchedule::cosine) {
    config.warmup_steps = 2;
    config.total_steps = 6;
  }
  return config;
}

inline const std::pair<const char*, AdamConfig> adam_configs[] = {
    {"Adam", adam_config(0.0, false)},
    {"Adam, L2 weight decay", adam_config(0.1, false)},
    {"AdamW", adam_config(0.1, true)},
    {"AdamW, warm-up and cosine schedule", adam_config(0.1, true, LrSchedule::cosine)},
};

}  // namespace unet::test
