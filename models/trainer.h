// Trainer: one training step of a UNet — clock, batch, forward, loss, backward, Adam — eager or
// as a CUDA graph (also on sim, whose graphs record and replay launches).
//
// With graphs on, the first step runs eagerly (it sizes the arena), the second is captured and
// replayed, and every later step is one replay. That is correct because nothing in the step is a
// launch argument that changes: the step number, the learning rate, Adam's bias corrections and
// the batch's random augmentation are all read from device memory (the training clock).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/optimizer.h"
#include "kernels/loss.h"
#include "models/unet.h"

namespace unet {

struct StepLosses {
  float total = 0, bce = 0, dice = 0;
};

class Trainer {
 public:
  // batch_shape: the image batch (N, H, W, in_channels); the mask batch is (N, H, W, 1).
  Trainer(UNet& model, const AdamConfig& adam, const LossConfig& loss, const Shape& batch_shape, bool use_graph);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // The batch the step trains on: persistent device buffers, filled by the caller once, or by the
  // batch source at the start of every step.
  Tensor image() const { return image_; }
  Tensor mask() const { return mask_; }
  TrainingClock& clock() { return clock_; }
  Stream stream() const { return stream_; }
  Context& context() { return *context_; }

  // Launched on stream() right after the clock advances, inside the graph when graphs are on.
  void set_batch_source(std::function<void(Stream)> source) { batch_source_ = std::move(source); }

  // One step. With `logits`, the step runs eagerly and its logits are copied out (N*H*W values).
  StepLosses step(std::vector<float>* logits = nullptr);
  bool graph_captured() const { return graph_ != nullptr; }

  // False once a step has left a parameter NaN or infinite (Adam raises a flag on the device, so
  // the check costs nothing per step; reading it synchronises). It stays false.
  bool parameters_finite() const;

 private:
  const Tensor* run_step();  // launches everything; returns the device loss values

  UNet& model_;
  AdamConfig adam_;
  LossConfig loss_;
  bool use_graph_;
  Device& device_;
  Stream stream_;
  std::unique_ptr<Context> context_;
  TrainingClock clock_;
  Tensor image_, mask_;
  Tensor losses_;   // this step's (total, BCE, Dice), in the arena
  Tensor logits_;   // this step's logits, in the arena
  std::function<void(Stream)> batch_source_;
  int32_t* non_finite_ = nullptr;  // (1) device memory: Adam's flag
  std::unique_ptr<Graph> graph_;
  int eager_steps_ = 0;
};

}  // namespace unet
