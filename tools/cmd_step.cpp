// unet step: K Adam steps on one fixed batch, for debugging and for comparing with another
// framework (bench/pytorch_unet.py step does the same in PyTorch).
#include <cmath>
#include <cstdio>

#include "engine/safetensors.h"
#include "models/checkpoint.h"
#include "models/trainer.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace unet {

namespace {

struct Batch {
  Shape shape;  // of the image
  std::vector<float> image, mask;
};

Batch read_batch(const std::string& path, int in_channels) {
  const SafeTensors file = SafeTensors::load(path);
  for (const char* name : {"image", "mask"}) {
    if (!file.contains(name)) throw Error(path + ": no tensor named '" + std::string(name) + "' (a batch holds image [N,H,W,C] and mask [N,H,W,1])");
  }
  const TensorData& image = file.get("image");
  if (image.shape.size() != 4) throw Error(path + ": image has shape " + shape_text(image.shape) + ", expected [N, H, W, C]");
  Batch batch;
  batch.shape = {static_cast<int>(image.shape[0]), static_cast<int>(image.shape[1]), static_cast<int>(image.shape[2]),
                 static_cast<int>(image.shape[3])};
  if (batch.shape.c != in_channels) {
    throw Error(path + ": image has " + std::to_string(batch.shape.c) + " channels; the model takes " + std::to_string(in_channels));
  }
  batch.image = file.floats("image");
  batch.mask = file.floats("mask", {image.shape[0], image.shape[1], image.shape[2], 1});
  return batch;
}

}  // namespace

int command_step(const Args& args) {
  std::string weights, batch_path, out, trace, loss = "bce", device_name = "cpu", precision = "auto", graph = "on";
  int steps = 1;
  double lr = 1e-4;
  Options options("step", "Runs K Adam steps of the U-Net on one fixed batch, without augmentation.\nWrites the updated weights and a trace (losses [K], the first step's logits [N,H,W,1]):\nthe way to compare the engine with PyTorch (bench/pytorch_unet.py step).");
  options.add("weights", &weights, "FILE", "weights to start from (unet init, or a training run)").required()
      .add("batch", &batch_path, "FILE", "safetensors with image [N,H,W,C] and mask [N,H,W,1], F32").required()
      .add("steps", &steps, "K", "Adam steps").at_least(1)
      .add("lr", &lr, "LR", "learning rate").at_least(0)
      .add("loss", &loss, "LOSS", "bce, dice or bce+dice").choices({"bce", "dice", "bce+dice"})
      .add("device", &device_name, "DEVICE", "cpu, sim or cuda").choices({"cpu", "sim", "cuda"})
      .add("graph", &graph, "on|off", "capture the step as a graph after the first (sim, cuda)").choices({"on", "off"})
      .add("out", &out, "FILE", "updated weights to write").required()
      .add("trace", &trace, "FILE", "trace to write: losses [K], logits [N,H,W,1] of the first step");
  add_precision_option(options, &precision);
  int threads = 0;
  add_threads_option(options, &threads);
  if (!options.parse(args)) return 0;
  apply_threads(threads);
  check_readable_file(weights, "weights");
  check_readable_file(batch_path, "batch");
  check_writable(out);
  if (!trace.empty()) check_writable(trace);

  const SafeTensors weights_file = SafeTensors::load(weights);
  const DeviceKind kind = parse_device(device_name);
  UNet model(read_config(weights_file), device(kind), resolve_precision(precision, kind));
  load_weights(weights_file, model);
  const Batch batch = read_batch(batch_path, model.config().in_channels);

  AdamConfig adam;
  adam.lr = static_cast<float>(lr);
  Trainer trainer(model, adam, parse_loss(loss), batch.shape, graph == "on");
  trainer.image().from_host(batch.image);
  trainer.mask().from_host(batch.mask);

  std::vector<float> losses, first_logits;
  for (int k = 0; k < steps; ++k) {
    const StepLosses step = trainer.step(k == 0 ? &first_logits : nullptr);
    if (!std::isfinite(step.total)) throw Error("step " + std::to_string(k + 1) + ": the loss is not finite (" + std::to_string(step.total) + ")");
    losses.push_back(step.total);
    std::printf("step %d: loss %.6f (bce %.6f, dice %.6f)\n", k + 1, step.total, step.bce, step.dice);
  }

  // A fixed batch says nothing of preprocessing: the weights keep what they recorded.
  save_weights(out, model, read_preprocessing(weights_file).value_or(Preprocessing{}));
  if (!trace.empty()) {
    SafeTensors file;
    file.add_floats("losses", {steps}, losses);
    file.add_floats("logits", {batch.shape.n, batch.shape.h, batch.shape.w, 1}, first_logits);
    file.save(trace);
  }
  return 0;
}

}  // namespace unet
