// Autograd: a define-by-run tape.
//
// Each differentiable op (engine/ops.h) runs its forward kernels at once and, when the context is
// recording, appends a closure holding what its backward needs. backward() runs the closures in
// reverse. Gradients are accumulated with the kernels' beta: the first contribution to a tensor's
// gradient overwrites (beta = 0), later ones add (beta = 1), so nothing is ever zero-filled first.
//
// A Var may be a channel view of another (Var::channels): its gradient is then the same view of the
// root's gradient. That is the zero-copy skip concatenation's other half: the decoder's first
// convolution writes the gradient of the whole [upsampled, skip] buffer, and the up-convolution and
// the encoder read their slices of it.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/arena.h"
#include "engine/precision.h"
#include "engine/tensor.h"

namespace unet {

struct VarState;

class Var {
 public:
  Var() = default;
  const Tensor& value() const;
  bool requires_grad() const;
  bool defined() const { return state_ != nullptr; }
  // Channels [offset, offset + count): shares memory, and gradient, with this Var.
  Var channels(int offset, int count) const;

 private:
  friend class Context;
  explicit Var(std::shared_ptr<VarState> state) : state_(std::move(state)) {}
  std::shared_ptr<VarState> state_;
};

class Context {
 public:
  // `stream` orders everything this context launches; graphs capture it. `precision` chooses the
  // kernels the ops run (engine/precision.h).
  Context(Device& device, Stream stream, Precision precision = Precision::fp32);

  Device& device() const { return device_; }
  DeviceKind kind() const { return device_.kind(); }
  Stream stream() const { return stream_; }
  Precision precision() const { return precision_; }
  Arena& arena() { return arena_; }

  // Recording on: ops append their backward to the tape. Off (inference): nothing is recorded and
  // no gradient memory is taken.
  bool recording() const { return recording_; }
  void set_recording(bool on) { recording_ = on; }

  // Leaves: an input (no gradient) and a parameter (its gradient goes to `grad`, persistent; under
  // bf16 the value is the bf16 copy of the weights and the gradient fp32).
  Var input(const Tensor& value);
  Var parameter(const Tensor& value, const Tensor& grad);
  // What activations and their gradients are stored as: bf16 under Precision::bf16, else f32.
  ScalarType activation_type() const;
  // A fresh arena tensor of activation_type(); requires_grad if recording and `differentiable`.
  Var activation(const Shape& shape, bool differentiable = true);
  // A fresh arena tensor, with padded_stride() (engine/tensor.h: bf16 strides a multiple of 8, the
  // padding never read for its value), on the arena's 256-byte aligned base.
  Tensor scratch(const Shape& shape, ScalarType type = ScalarType::f32);
  void* workspace(size_t bytes) { return bytes == 0 ? nullptr : arena_.allocate(bytes); }

  void record(std::function<void()> backward);
  // Runs the tape in reverse, then clears it; parameters that received no gradient get zeros.
  void backward();
  // After a step: clears the tape and rewinds the arena (the memory of this step's tensors).
  void end_step();

  // For op backwards: the gradient flowing into `v` from later ops, or an undefined Tensor if none
  // was written this step (then v contributed nothing and its op has nothing to propagate).
  Tensor incoming_grad(const Var& v) const;
  // The gradient of `v` to write into, and the beta to write it with (0 the first time this step,
  // then 1). Allocates it from the arena on first use (parameters have theirs already).
  Tensor outgoing_grad(const Var& v, float* beta);

 private:
  Device& device_;
  Stream stream_;
  Precision precision_;
  Arena arena_;
  bool recording_ = true;
  std::vector<std::function<void()>> tape_;
  std::vector<std::shared_ptr<VarState>> parameters_;  // this step's, to zero those left untouched
};

}  // namespace unet
