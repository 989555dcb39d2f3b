// unet bench: end-to-end speed of a training step or of inference, on synthetic data already on
// the device.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "engine/build_info.h"
#include "engine/files.h"
#include "engine/json.h"
#include "engine/ops.h"
#include "engine/text.h"
#include "models/trainer.h"
#include "models/unet_shapes.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace unet {

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace

int command_bench(const Args& args) {
  if (args.empty() || (args[0] != "train" && args[0] != "infer")) {
    if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
      std::printf("usage: unet bench train|infer [options]\n\nSpeed of a training step (train) or a forward pass (infer) on synthetic data.\n`unet bench train --help` lists the options.\n");
      return 0;
    }
    throw UsageError("bench: say what to measure: unet bench train|infer [options]");
  }
  const std::string mode = args[0];
  UNetConfig config;
  int batch = 16, size = 256, steps = 20, warmup = 3;
  std::string graph = "on", device_choice = "auto", precision = "auto", json_path;
  Options options("bench " + mode, mode == "train"
      ? "Times full training steps (forward, BCE loss, backward, Adam) on a synthetic batch already on the\ndevice: images/s, ms per step (median), peak device memory, achieved FLOP/s."
      : "Times forward passes (no gradients) on a synthetic batch already on the device: images/s, ms per\nbatch (median), peak device memory, achieved FLOP/s.");
  options.add("batch", &batch, "B", "images per step").at_least(1)
      .add("image-size", &size, "S", "height and width").at_least(1)
      .add("steps", &steps, "K", "timed steps, after the warm-up").at_least(1)
      .add("warmup", &warmup, "N", "untimed steps first").at_least(0)
      .add("graph", &graph, "on|off", "replay the step as a graph (sim, cuda; train only)").choices({"on", "off"})
      .add("base-width", &config.base_width, "W", "model width").at_least(1)
      .add("depth", &config.depth, "D", "model depth").at_least(1)
      .add("device", &device_choice, "DEVICE", "auto, cuda, cpu or sim").choices({"auto", "cuda", "cpu", "sim"})
      .add("json", &json_path, "FILE", "append the result as one JSON line");
  add_precision_option(options, &precision);
  int threads = 0;
  add_threads_option(options, &threads);
  if (!options.parse(Args(args.begin() + 1, args.end()))) return 0;
  apply_threads(threads);
  if (!json_path.empty()) check_writable(json_path);

  Device& dev = device(resolve_device(device_choice, true));
  UNet model(config, dev, resolve_precision(precision, dev.kind()));
  model.parameters().initialize(0);
  const Shape shape{batch, size, size, config.in_channels};
  model.check_input(shape);

  std::mt19937 random(1);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> image(static_cast<size_t>(shape.numel())), mask(static_cast<size_t>(shape.pixels()));
  for (float& v : image) v = unit(random);
  for (float& v : mask) v = unit(random) < 0.01f ? 1.0f : 0.0f;  // about the LGG data's tumour fraction

  std::vector<double> seconds;
  const auto time_one = [&](auto&& run) {
    const auto start = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  dev.reset_peak();
  const bool train = mode == "train";
  std::unique_ptr<Trainer> trainer;
  std::unique_ptr<Context> context;
  Tensor input;
  Stream stream{};
  if (train) {
    trainer = std::make_unique<Trainer>(model, AdamConfig{}, LossConfig{}, shape, graph == "on");
    trainer->image().from_host(image);
    trainer->mask().from_host(mask);
  } else {
    stream = dev.create_stream();
    context = std::make_unique<Context>(dev, stream, model.precision());
    context->set_recording(false);
    input = allocate_tensor(dev, shape, context->activation_type());
    input.from_host(image);
  }
  const auto step = [&] {
    if (train) {
      trainer->step();
    } else {
      context->end_step();
      model.forward(*context, input);
      dev.synchronize(stream);
    }
  };
  for (int k = 0; k < warmup; ++k) step();
  std::fprintf(stderr, "timing %d %s steps on %s...\n", steps, mode.c_str(), device_name(dev.kind()));
  std::fflush(stderr);
  for (int k = 0; k < steps; ++k) seconds.push_back(time_one(step));
  const double step_seconds = median(seconds);
  const double flops =
      train ? unet_training_flops_per_image(config, size, size) : unet_forward_flops_per_image(config, size, size);
  const double tflops = flops * batch / step_seconds / 1e12;
  const DeviceInfo info = dev.info();

  char rate[32];
  std::snprintf(rate, sizeof rate, tflops >= 1 ? "%.2f TFLOP/s" : "%.1f GFLOP/s", tflops >= 1 ? tflops : 1e3 * tflops);
  std::printf("%s: %s, %s, batch %d, %dx%d, %s%s: %.1f images/s, %.2f ms per step (median of %d), "
              "peak memory %.0f MiB, %s\n",
              mode.c_str(), info.name.c_str(), precision_name(model.precision()), batch, size, size,
              config.describe().c_str(),
              train ? (trainer->graph_captured() ? ", graph" : ", eager") : "", batch / step_seconds, 1e3 * step_seconds, steps,
              static_cast<double>(dev.peak_bytes()) / (1 << 20), rate);
  if (!json_path.empty()) {
    Json record = Json::object();
    record.set("name", "unet_" + mode);
    record.set("card", info.name);
    record.set("device", device_name(dev.kind()));
    record.set("precision", precision_name(model.precision()));
    record.set("commit", build_info().commit);
    record.set("date", utc_now());
    record.set("batch", batch);
    record.set("image_size", size);
    record.set("model", config.describe());
    if (train) record.set("graph", trainer->graph_captured());
    record.set("images_per_s", batch / step_seconds);
    record.set("ms_per_step", 1e3 * step_seconds);
    record.set("peak_memory_bytes", static_cast<int64_t>(dev.peak_bytes()));
    record.set("tflops", tflops);
    append_line(json_path, record.dump());
  }
  if (!train) {
    context.reset();
    dev.release(input.bytes());
    dev.destroy_stream(stream);
  }
  return 0;
}

}  // namespace unet
