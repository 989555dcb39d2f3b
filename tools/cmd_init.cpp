// unet init: a freshly initialised model, as a weights file.
#include <cstdio>

#include "engine/paths.h"
#include "models/checkpoint.h"
#include "models/unet_shapes.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace unet {

int command_init(const Args& args) {
  UNetConfig config;
  int64_t seed = 0;
  std::string out;
  bool force = false;
  Options options("init", "Writes a U-Net initialised as PyTorch initialises it (uniform in +-1/sqrt(fan_in)),\nas safetensors weights that `unet step`, `unet train --init` and bench/pytorch_unet.py read.");
  options.add("base-width", &config.base_width, "W", "channels of the first level; level l has W*2^l").at_least(1)
      .add("depth", &config.depth, "D", "pooling steps (the bottleneck is at 1/2^D resolution)").at_least(1)
      .add("in-channels", &config.in_channels, "C", "input channels").at_least(1)
      .add("seed", &seed, "S", "random seed").at_least(0)
      .add("out", &out, "FILE", "weights file to write (.safetensors)").required()
      .flag("force", &force, "replace --out even if it is not a unet weights file");
  if (!options.parse(args)) return 0;
  if (config.depth > 8) throw UsageError("--depth: at most 8");
  check_writable(out);
  refuse_replacing_another_kind(out, "a unet weights file", is_unet_weights_file, force);

  UNet model(config, device(DeviceKind::cpu));
  model.parameters().initialize(static_cast<uint64_t>(seed));
  save_weights(out, model);
  std::printf("wrote %s: %s, depth %d, %lld parameters, %.2f GFLOP forward per 256x256 image\n", out.c_str(),
              config.describe().c_str(), config.depth, static_cast<long long>(unet_parameters(config)),
              unet_forward_flops_per_image(config, 256, 256) / 1e9);
  return 0;
}

}  // namespace unet
