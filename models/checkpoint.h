// Model files, as safetensors (engine/safetensors.h).
//
// Weights: every parameter in PyTorch's layout (Conv2d [Cout, Cin, k, k], ConvTranspose2d
// [Cin, Cout, 2, 2]), F32, named as bench/pytorch_unet.py's module names them (encoder.0.conv1.weight,
// ..., head.bias), with __metadata__ "unet.config" = {"in_channels", "base_width", "depth"} and
// "unet.preprocessing" = {"image_size", "zscore"} as JSON, and "unet.precision" = "fp32", "tf32" or "bf16",
// the precision the weights were trained or last stepped in (information only: any precision loads
// them; the tensors are F32 whatever it was). PyTorch loads them with
// bench/pytorch_unet.py's load_unet().
//
// Training checkpoints: the weights, plus Adam's moments as optimizer.exp_avg.<name> and
// optimizer.exp_avg_sq.<name> (same layouts), plus __metadata__ "unet.training" (JSON): the step
// (the epoch and the position in it follow from it), the resumable flags (epochs, device, graph),
// the unfinished epoch's loss sum, the best epoch and its Dice, and the run's identity flags
// (docs/checkpoints.md). Writes are atomic.
//
// Loading checks everything and throws one unet::Error naming the file: not safetensors, malformed,
// another configuration, a tensor unknown or missing, a wrong shape or dtype, a parameter or moment
// holding a NaN or an infinity (named, with the count).
#pragma once

#include <optional>
#include <string>

#include "engine/json.h"
#include "engine/safetensors.h"
#include "models/unet.h"

namespace unet {

// How the slices a model was trained on were prepared, so that `unet eval` and `unet predict`
// prepare theirs the same way: resized to image_size x image_size and, with zscore, each channel
// normalised by its volume's mean and deviation. (The input channels are unet.config's.)
struct Preprocessing {
  int image_size = 256;
  bool zscore = false;
};

Json config_json(const UNetConfig& config);
// The configuration a weights or checkpoint file was saved with.
UNetConfig read_config(const SafeTensors& file);

// What the file records; std::nullopt for one written before unet recorded it.
std::optional<Preprocessing> read_preprocessing(const SafeTensors& file);

// Whether `path` is a safetensors file with a unet.config: what `unet init --out` may replace.
bool is_unet_weights_file(const std::string& path);

SafeTensors weights_file(const UNet& model, const Preprocessing& preprocessing);
void save_weights(const std::string& path, const UNet& model, const Preprocessing& preprocessing);
// Loads into `model`, whose configuration must equal the file's.
void load_weights(const SafeTensors& file, UNet& model);
// Throws what load_weights would if `path` were loaded into a model of `config` (checked on the cpu).
void check_weights_file(const std::string& path, const UNetConfig& config);

void save_training_checkpoint(const std::string& path, const UNet& model, const Preprocessing& preprocessing,
                              const Json& training_state);
// Loads the weights and Adam's moments into `model`; returns the "unet.training" state.
Json load_training_checkpoint(const SafeTensors& file, UNet& model);

}  // namespace unet
