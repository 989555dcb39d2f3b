// The U-Net's layer table: every layer's shapes, multiply-adds, parameters and the fewest bytes
// each pass must move. Tests, benchmarks, `unet bench` and docs/performance.md all read it, so the
// numbers they quote agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/unet_config.h"

namespace unet {

enum class LayerKind { conv3x3, conv1x1, up_conv, max_pool };

struct LayerShape {
  std::string name;  // the checkpoint's prefix: encoder.0.conv1, decoder.2.up, head, encoder.1.pool
  LayerKind kind;
  int n, h, w;       // the input's batch, height and width
  int c_in, c_out;

  int out_h() const;
  int out_w() const;
  int64_t parameters() const;  // weights + biases
  int64_t macs() const;        // multiply-adds of the forward pass (each gradient pass does as many)
  // Fewest bytes through device memory, fp32: each input read once, each output written once.
  int64_t forward_bytes() const;
  int64_t backward_data_bytes() const;
  int64_t backward_weight_bytes() const;  // weight and bias gradients
};

std::vector<LayerShape> unet_layers(const UNetConfig& config, int batch, int height, int width);

int64_t unet_parameters(const UNetConfig& config);
// 2 * multiply-adds of the forward pass per image.
double unet_forward_flops_per_image(const UNetConfig& config, int height, int width);
// 2 * multiply-adds of a training step per image: the forward pass, the data gradients (none for
// the input image, so encoder.0.conv1 has none) and the weight gradients, each as many as forward.
double unet_training_flops_per_image(const UNetConfig& config, int height, int width);

}  // namespace unet
