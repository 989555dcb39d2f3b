// The U-Net's configuration: what varies between models of this family.
#pragma once

#include <string>

namespace unet {

// Default: the specified model. Encoder widths base*2^l for l < depth (64, 128, 256), bottleneck
// base*2^depth (512), decoder the encoder's widths in reverse, two 3x3 conv + bias + ReLU per
// level, 2x2 max-pool down, 2x2 stride-2 transposed conv up, skip concatenation [upsampled, skip],
// and a 1x1 convolution to one logit per pixel.
struct UNetConfig {
  int in_channels = 3;
  int base_width = 64;
  int depth = 3;  // pooling steps; the input's height and width must be multiples of 2^depth

  int width(int level) const { return base_width << level; }  // level depth is the bottleneck
  std::string describe() const;  // "in 3, widths 64/128/256, bottleneck 512"
};

}  // namespace unet
