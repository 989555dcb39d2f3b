// The U-Net: parameters in a ParameterStore, forward pass composed of engine ops.
//
//   encoder level l (l = 0 is full resolution): conv3x3+ReLU, conv3x3+ReLU -> skip l, max-pool
//   bottleneck: conv3x3+ReLU x2 at 1/2^depth resolution
//   decoder stage i (i = 0 next to the bottleneck, level l = depth-1-i): 2x2 stride-2 up-conv,
//     concatenate [upsampled, skip l] along channels, conv3x3+ReLU x2
//   head: 1x1 conv to one logit per pixel (the sigmoid lives in the loss and at inference)
//
// The concatenation is free: each level's [upsampled, skip] buffer is allocated first, the
// encoder's second convolution writes its output into the buffer's upper channels, and the
// up-convolution writes into the lower ones (engine/ops.h `out`). No concat kernel runs.
#pragma once

#include <memory>
#include <string>

#include "engine/autograd.h"
#include "engine/parameters.h"
#include "models/unet_config.h"

namespace unet {

class UNet {
 public:
  // `precision` (engine/precision.h): what the contexts that run this model compute in.
  UNet(const UNetConfig& config, Device& device, Precision precision = Precision::fp32);

  const UNetConfig& config() const { return config_; }
  Precision precision() const { return precision_; }
  ParameterStore& parameters() { return *parameters_; }
  const ParameterStore& parameters() const { return *parameters_; }

  // Logits (N, H, W, 1) for an image batch (N, H, W, in_channels). Throws unet::Error if H or W is
  // not a multiple of 2^depth, the channels do not match, or ctx's precision is not the model's.
  Var forward(Context& ctx, const Tensor& image) const;
  void check_input(const Shape& shape) const;

 private:
  struct Conv {
    int weight, bias;
    std::string name;  // the layer's, as its parameters are named: encoder.0.conv1, decoder.1.up, head
  };
  struct Level {
    Conv conv1, conv2;
  };
  struct Stage {
    Conv up, conv1, conv2;
  };
  Conv declare_conv(const std::string& name, int c_in, int c_out, int k);
  Conv declare_up_conv(const std::string& name, int c_in, int c_out);
  Var conv(Context& ctx, const Var& x, const Conv& conv, bool relu, const Var* out = nullptr) const;

  UNetConfig config_;
  Precision precision_;
  std::unique_ptr<ParameterStore> parameters_;
  std::vector<Level> encoder_;
  Level bottleneck_{};
  std::vector<Stage> decoder_;
  Conv head_{};
};

}  // namespace unet
