#include "models/unet_shapes.h"

namespace unet {

std::string UNetConfig::describe() const {
  std::string widths;
  for (int level = 0; level < depth; ++level) widths += (level ? "/" : "") + std::to_string(width(level));
  return "in " + std::to_string(in_channels) + ", widths " + widths + ", bottleneck " + std::to_string(width(depth));
}

int LayerShape::out_h() const {
  if (kind == LayerKind::up_conv) return 2 * h;
  if (kind == LayerKind::max_pool) return h / 2;
  return h;
}

int LayerShape::out_w() const {
  if (kind == LayerKind::up_conv) return 2 * w;
  if (kind == LayerKind::max_pool) return w / 2;
  return w;
}

int64_t LayerShape::parameters() const {
  switch (kind) {
    case LayerKind::conv3x3: return int64_t{c_out} * c_in * 9 + c_out;
    case LayerKind::conv1x1: return int64_t{c_out} * c_in + c_out;
    case LayerKind::up_conv: return int64_t{c_in} * c_out * 4 + c_out;
    case LayerKind::max_pool: return 0;
  }
  return 0;
}

int64_t LayerShape::macs() const {
  const int64_t out_pixels = int64_t{n} * out_h() * out_w();
  switch (kind) {
    case LayerKind::conv3x3: return out_pixels * c_out * c_in * 9;
    case LayerKind::conv1x1: return out_pixels * c_out * c_in;
    case LayerKind::up_conv: return out_pixels * c_out * c_in;  // one source pixel per output pixel
    case LayerKind::max_pool: return 0;
  }
  return 0;
}

int64_t LayerShape::forward_bytes() const {
  const int64_t input = int64_t{n} * h * w * c_in;
  const int64_t output = int64_t{n} * out_h() * out_w() * c_out;
  // max-pool also writes its one-byte argmax per output
  if (kind == LayerKind::max_pool) return 4 * (input + output) + output;
  return 4 * (input + output + parameters());
}

int64_t LayerShape::backward_data_bytes() const {
  const int64_t input = int64_t{n} * h * w * c_in;
  const int64_t output = int64_t{n} * out_h() * out_w() * c_out;
  if (kind == LayerKind::max_pool) return 4 * (output + input) + output;  // dy, argmax in; dx out
  return 4 * (output + input + parameters());
}

int64_t LayerShape::backward_weight_bytes() const {
  if (kind == LayerKind::max_pool) return 0;
  const int64_t input = int64_t{n} * h * w * c_in;
  const int64_t output = int64_t{n} * out_h() * out_w() * c_out;
  return 4 * (input + output + parameters());
}

std::vector<LayerShape> unet_layers(const UNetConfig& config, int batch, int height, int width) {
  std::vector<LayerShape> layers;
  int h = height, w = width, channels = config.in_channels;
  for (int level = 0; level < config.depth; ++level) {
    const std::string prefix = "encoder." + std::to_string(level) + ".";
    layers.push_back({prefix + "conv1", LayerKind::conv3x3, batch, h, w, channels, config.width(level)});
    layers.push_back({prefix + "conv2", LayerKind::conv3x3, batch, h, w, config.width(level), config.width(level)});
    layers.push_back({prefix + "pool", LayerKind::max_pool, batch, h, w, config.width(level), config.width(level)});
    channels = config.width(level);
    h /= 2;
    w /= 2;
  }
  layers.push_back({"bottleneck.conv1", LayerKind::conv3x3, batch, h, w, channels, config.width(config.depth)});
  layers.push_back({"bottleneck.conv2", LayerKind::conv3x3, batch, h, w, config.width(config.depth),
                    config.width(config.depth)});
  channels = config.width(config.depth);
  for (int i = 0; i < config.depth; ++i) {
    const int level = config.depth - 1 - i;
    const int out = config.width(level);
    const std::string prefix = "decoder." + std::to_string(i) + ".";
    layers.push_back({prefix + "up", LayerKind::up_conv, batch, h, w, channels, out});
    h *= 2;
    w *= 2;
    layers.push_back({prefix + "conv1", LayerKind::conv3x3, batch, h, w, 2 * out, out});
    layers.push_back({prefix + "conv2", LayerKind::conv3x3, batch, h, w, out, out});
    channels = out;
  }
  layers.push_back({"head", LayerKind::conv1x1, batch, h, w, channels, 1});
  return layers;
}

int64_t unet_parameters(const UNetConfig& config) {
  int64_t total = 0;
  for (const LayerShape& layer : unet_layers(config, 1, 1 << config.depth, 1 << config.depth)) total += layer.parameters();
  return total;
}

double unet_forward_flops_per_image(const UNetConfig& config, int height, int width) {
  double macs = 0;
  for (const LayerShape& layer : unet_layers(config, 1, height, width)) macs += static_cast<double>(layer.macs());
  return 2 * macs;
}

double unet_training_flops_per_image(const UNetConfig& config, int height, int width) {
  double macs = 0;
  for (const LayerShape& layer : unet_layers(config, 1, height, width)) {
    const bool reads_the_image = layer.name == "encoder.0.conv1";
    macs += static_cast<double>(layer.macs()) * (reads_the_image ? 2 : 3);
  }
  return 2 * macs;
}

}  // namespace unet
