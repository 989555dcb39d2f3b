// The loss configurations and masks the loss tests share (reference, kernels, the cpu device's fast
// path, bf16).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/loss.h"
#include "tests/test_util.h"

namespace unet::test {

inline LossConfig loss_config(float bce_weight, float dice_weight, float pos_weight, float smooth, bool per_sample) {
  LossConfig config;
  config.bce_weight = bce_weight;
  config.dice_weight = dice_weight;
  config.pos_weight = pos_weight;
  config.dice_smooth = smooth;
  config.dice_per_sample = per_sample;
  return config;
}

// BCE alone, Dice alone and both, with and without pos_weight, per sample and over the batch.
inline const std::pair<const char*, LossConfig> loss_configs[] = {
    {"BCE", loss_config(1, 0, 1, 1, false)},
    {"BCE, pos_weight 3", loss_config(1, 0, 3, 1, false)},
    {"Dice over the batch", loss_config(0, 1, 1, 1, false)},
    {"Dice per sample", loss_config(0, 1, 1, 1, true)},
    {"weighted sum, per sample, pos_weight 2", loss_config(0.7f, 1.3f, 2, 0.5f, true)},
    {"weighted sum over the batch", loss_config(1, 1, 1, 1, false)},
};

// A 0/1 mask with about 30% foreground.
inline std::vector<float> random_mask(size_t count, uint64_t seed) {
  auto mask = random_uniform(count, seed, 0.0f, 1.0f);
  for (float& g : mask) g = g < 0.3f ? 1.0f : 0.0f;
  return mask;
}

}  // namespace unet::test
