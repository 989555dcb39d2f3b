// Trainer: one training step of a UNet — clock, batch, forward, loss, backward, Adam — eager or
// as a CUDA graph (also on sim, whose graphs record and replay launches).
//
// With graphs on, the first step runs eagerly (it sizes the arena), the second is captured and
// replayed, and every later step is one replay. That is correct because nothing in the step is a
// launch argument that changes: the step number, the learning rate, Adam's bias corrections and
// the batch's random augmentation are all read from device memory (the training clock).
//
// Data parallel (docs/distributed.md): with a communicator of R ranks, this trainer's batch is one
// rank's share of a global batch R times larger. Two collectives join the step: the loss's batch
// sums, added between the sums and the loss formed from them (so the loss and its gradient are the
// global batch's), and the flat gradient buffer, summed in one call between backward and Adam,
// with the ranks' stop requests in its spare last float. Both go on the step's stream, so a graph
// holds them: on cuda as NCCL calls, on sim as host nodes that call MPI.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/comm.h"
#include "engine/optimizer.h"
#include "kernels/loss.h"
#include "models/unet.h"

namespace unet {

struct StepLosses {
  float total = 0, bce = 0, dice = 0;
  bool stop = false;  // some rank asked to stop at this step (request_stop): all ranks agree on it
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

  // Train as one of comm's ranks; call before the first step.
  void set_communicator(Communicator& comm) { comm_ = &comm; }
  // This rank wants to stop (a signal): the next step's StepLosses::stop is then true on every rank.
  void request_stop() { stop_requested_ = true; }

  // One step. With `logits`, the step runs eagerly and its logits are copied out (N*H*W values).
  StepLosses step(std::vector<float>* logits = nullptr);
  bool graph_captured() const { return graph_ != nullptr; }

  // False once a step has left a parameter NaN or infinite (Adam raises a flag on the device, so
  // the check costs nothing per step; reading it synchronises). It stays false.
  bool parameters_finite() const;

 private:
  const Tensor* run_step();  // launches everything; returns the device loss values
  bool distributed() const { return comm_ != nullptr && comm_->launched(); }

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
  Communicator* comm_ = nullptr;
  bool stop_requested_ = false;
  std::unique_ptr<Graph> graph_;
  int eager_steps_ = 0;
};

}  // namespace unet
