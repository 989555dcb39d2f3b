// Test-time augmentation and ensembles: the mean sigmoid probability over several models and, with
// mirroring, over the 4 flips of each image (none, left-right, up-down, both: nnU-Net's 2-D
// mirroring), each prediction flipped back before averaging:
//
//   p(x) = 1 / (M F) sum_models sum_flips  flip^-1( sigmoid( model( flip(x) ) ) )
//
// Probabilities are averaged, not logits or masks (the sigmoid kernel runs on the device: kernels/sigmoid.h).
// The sum is in double and in a fixed order (model, then flip), so the result is deterministic.
// A flip is its own inverse.
#pragma once

#include <vector>

#include "engine/autograd.h"
#include "models/unet.h"

namespace unet {

// Mirrors (n, h, w, c) images: x -> w-1-x where `horizontal`, y -> h-1-y where `vertical`.
void flip_images(const float* in /*(n, h, w, c)*/, float* out /*(n, h, w, c)*/, int n, int h, int w, int c,
                 bool horizontal, bool vertical);

// `images` (N, H, W, C) on ctx's device, not in ctx's arena (the arena is rewound between passes).
// Returns (N, H, W) probabilities on the host. The models must share the input's channels.
std::vector<float> mean_probabilities(Context& ctx, const std::vector<const UNet*>& models, const Tensor& images,
                                      bool mirror);

}  // namespace unet
