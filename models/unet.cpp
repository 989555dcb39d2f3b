#include "models/unet.h"

#include "engine/nvtx.h"
#include "engine/ops.h"

namespace unet {

namespace {

// Runs one layer's forward inside the NVTX range "<layer> forward" and, when recording, brackets
// its backward closures on the tape with "<layer> backward": the tape runs in reverse, so the
// push is recorded after the layer's ops and the pop before them. Without NVTX, just the forward.
template <class Forward>
Var traced(Context& ctx, const std::string& layer, Forward&& forward) {
  if constexpr (!nvtx::enabled) {
    return forward();
  } else {
    if (ctx.recording()) ctx.record([] { nvtx::pop(); });
    Var out;
    {
      const nvtx::Range range((layer + " forward").c_str());
      out = forward();
    }
    if (ctx.recording()) ctx.record([label = layer + " backward"] { nvtx::push(label.c_str()); });
    return out;
  }
}

}  // namespace

UNet::UNet(const UNetConfig& config, Device& device, Precision precision)
    : config_(config), precision_(precision), parameters_(std::make_unique<ParameterStore>(device, precision)) {
  if (config.in_channels < 1 || config.base_width < 1 || config.depth < 1 || config.depth > 8) {
    throw Error("model: invalid configuration (" + config.describe() + ", depth " + std::to_string(config.depth) + ")");
  }
  int channels = config.in_channels;
  for (int level = 0; level < config.depth; ++level) {
    const std::string prefix = "encoder." + std::to_string(level) + ".";
    encoder_.push_back({declare_conv(prefix + "conv1", channels, config.width(level), 3),
                        declare_conv(prefix + "conv2", config.width(level), config.width(level), 3)});
    channels = config.width(level);
  }
  const int bottom = config.width(config.depth);
  bottleneck_ = {declare_conv("bottleneck.conv1", channels, bottom, 3), declare_conv("bottleneck.conv2", bottom, bottom, 3)};
  channels = bottom;
  for (int stage = 0; stage < config.depth; ++stage) {
    const int out = config.width(config.depth - 1 - stage);
    const std::string prefix = "decoder." + std::to_string(stage) + ".";
    decoder_.push_back({declare_up_conv(prefix + "up", channels, out), declare_conv(prefix + "conv1", 2 * out, out, 3),
                        declare_conv(prefix + "conv2", out, out, 3)});
    channels = out;
  }
  head_ = declare_conv("head", channels, 1, 1);
  parameters_->allocate();
}

UNet::Conv UNet::declare_conv(const std::string& name, int c_in, int c_out, int k) {
  const int fan_in = c_in * k * k;
  return {parameters_->declare(name + ".weight", ParameterKind::conv_weight, {c_out, k, k, c_in}, fan_in),
          parameters_->declare(name + ".bias", ParameterKind::bias, {1, 1, 1, c_out}, fan_in), name};
}

UNet::Conv UNet::declare_up_conv(const std::string& name, int c_in, int c_out) {
  // PyTorch's fan_in for ConvTranspose2d comes from weight.size(1) = Cout, times the window.
  const int fan_in = c_out * 4;
  return {parameters_->declare(name + ".weight", ParameterKind::up_conv_weight, {c_in, 2, 2, c_out}, fan_in),
          parameters_->declare(name + ".bias", ParameterKind::bias, {1, 1, 1, c_out}, fan_in), name};
}

void UNet::check_input(const Shape& shape) const {
  const int multiple = 1 << config_.depth;
  if (shape.c != config_.in_channels) {
    throw Error("model: input has " + std::to_string(shape.c) + " channels, the model takes " + std::to_string(config_.in_channels));
  }
  if (shape.h % multiple != 0 || shape.w % multiple != 0 || shape.h == 0 || shape.w == 0) {
    throw Error("model: input " + std::to_string(shape.h) + "x" + std::to_string(shape.w) +
                " is not a multiple of " + std::to_string(multiple) + " (2^depth, depth " + std::to_string(config_.depth) +
                ") in height and width");
  }
}

Var UNet::conv(Context& ctx, const Var& x, const Conv& conv, bool relu, const Var* out) const {
  const Var weight = ctx.parameter(parameters_->kernel_value(conv.weight), parameters_->grad(conv.weight));
  const Var bias = ctx.parameter(parameters_->value(conv.bias), parameters_->grad(conv.bias));
  return traced(ctx, conv.name, [&] { return ops::conv2d(ctx, x, weight, bias, relu, out); });
}

Var UNet::forward(Context& ctx, const Tensor& image) const {
  const Shape in = image.shape();
  check_input(in);
  if (ctx.precision() != precision_) {
    throw Error(std::string("model: a ") + precision_name(precision_) + " model run in a " +
                precision_name(ctx.precision()) + " context");
  }
  if (image.scalar_type() != ctx.activation_type()) {
    throw Error(std::string("model: a ") + scalar_type_name(image.scalar_type()) + " input to a " +
                precision_name(precision_) + " model (it takes " + scalar_type_name(ctx.activation_type()) + ")");
  }
  Var x = ctx.input(image);
  std::vector<Var> concatenated;  // per level: [upsampled, skip]
  int h = in.h, w = in.w;
  for (int level = 0; level < config_.depth; ++level) {
    const int width = config_.width(level);
    concatenated.push_back(ctx.activation({in.n, h, w, 2 * width}));
    const Var skip = concatenated.back().channels(width, width);
    const Var hidden = conv(ctx, x, encoder_[level].conv1, true);
    conv(ctx, hidden, encoder_[level].conv2, true, &skip);
    x = traced(ctx, "encoder." + std::to_string(level) + ".pool", [&] { return ops::max_pool2d(ctx, skip); });
    h /= 2;
    w /= 2;
  }
  x = conv(ctx, conv(ctx, x, bottleneck_.conv1, true), bottleneck_.conv2, true);
  for (int stage = 0; stage < config_.depth; ++stage) {
    const int level = config_.depth - 1 - stage;
    const Stage& s = decoder_[stage];
    const Var upsampled = concatenated[level].channels(0, config_.width(level));
    const Var up_weight = ctx.parameter(parameters_->kernel_value(s.up.weight), parameters_->grad(s.up.weight));
    const Var up_bias = ctx.parameter(parameters_->value(s.up.bias), parameters_->grad(s.up.bias));
    traced(ctx, s.up.name, [&] { return ops::conv_transpose2d(ctx, x, up_weight, up_bias, &upsampled); });
    x = conv(ctx, conv(ctx, concatenated[level], s.conv1, true), s.conv2, true);
  }
  return conv(ctx, x, head_, false);
}

}  // namespace unet
