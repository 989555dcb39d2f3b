// Model files, as safetensors (engine/safetensors.h).
//
// Weights: every parameter in PyTorch's layout (Conv2d [Cout, Cin, k, k], ConvTranspose2d
// [Cin, Cout, 2, 2]), F32, named as bench/pytorch_unet.py's module names them (encoder.0.conv1.weight,
// ..., head.bias), with __metadata__ "unet.config" = {"in_channels", "base_width", "depth"} as JSON.
// PyTorch loads them with bench/pytorch_unet.py's load_unet().
//
// Training checkpoints: the weights, plus Adam's moments as optimizer.exp_avg.<name> and
// optimizer.exp_avg_sq.<name> (same layouts), plus __metadata__ "unet.training": the step, epoch,
// position in the epoch and whatever else resuming needs (JSON). Writes are atomic.
//
// Loading checks everything and throws one unet::Error naming the file: not safetensors, malformed,
// another configuration, a tensor unknown or missing, a wrong shape or dtype, a parameter or moment
// holding a NaN or an infinity (named, with the count).
#pragma once

#include <string>

#include "engine/json.h"
#include "engine/safetensors.h"
#include "models/unet.h"

namespace unet {

Json config_json(const UNetConfig& config);
// The configuration a weights or checkpoint file was saved with.
UNetConfig read_config(const SafeTensors& file);

// Whether `path` is a safetensors file with a unet.config: what `unet init --out` may replace.
bool is_unet_weights_file(const std::string& path);

SafeTensors weights_file(const UNet& model);
void save_weights(const std::string& path, const UNet& model);
// Loads into `model`, whose configuration must equal the file's.
void load_weights(const SafeTensors& file, UNet& model);
// Throws what load_weights would if `path` were loaded into a model of `config` (checked on the cpu).
void check_weights_file(const std::string& path, const UNetConfig& config);

void save_training_checkpoint(const std::string& path, const UNet& model, const Json& training_state);
// Loads the weights and Adam's moments into `model`; returns the "unet.training" state.
Json load_training_checkpoint(const SafeTensors& file, UNet& model);

}  // namespace unet
