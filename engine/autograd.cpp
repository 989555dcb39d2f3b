#include "engine/autograd.h"

namespace unet {

struct VarState {
  Tensor value;
  Tensor grad;                        // allocated on first write (parameters: given)
  bool requires_grad = false;
  bool grad_written = false;          // this step
  std::shared_ptr<VarState> root;     // set for channel views
  int channel_offset = 0;
  bool some_view_written = false;     // on a root: a view's gradient was written on its own
};

const Tensor& Var::value() const { return state_->value; }
bool Var::requires_grad() const { return state_->requires_grad; }

Var Var::channels(int offset, int count) const {
  auto view = std::make_shared<VarState>();
  const std::shared_ptr<VarState>& root = state_->root ? state_->root : state_;
  view->value = state_->value.channels(offset, count);
  view->requires_grad = state_->requires_grad;
  view->root = root;
  view->channel_offset = state_->channel_offset + offset;
  return Var(view);
}

Context::Context(Device& device, Stream stream, Precision precision)
    : device_(device), stream_(stream), precision_(precision), arena_(device, stream) {}

Var Context::input(const Tensor& value) {
  auto state = std::make_shared<VarState>();
  state->value = value;
  return Var(state);
}

Var Context::parameter(const Tensor& value, const Tensor& grad) {
  auto state = std::make_shared<VarState>();
  state->value = value;
  state->grad = grad;
  state->requires_grad = recording_;
  if (recording_) parameters_.push_back(state);
  return Var(state);
}

ScalarType Context::activation_type() const {
  return precision_ == Precision::bf16 ? ScalarType::bf16 : ScalarType::f32;
}

Tensor Context::scratch(const Shape& shape, ScalarType type) {
  if (type == ScalarType::f32) return Tensor(&device_, arena_.allocate_floats(shape.numel()), shape);
  const int stride = padded_stride(shape.c, type);
  auto* data = static_cast<bf16*>(arena_.allocate(static_cast<size_t>(shape.pixels() * stride) * sizeof(bf16)));
  return Tensor(&device_, data, shape, stride);
}

Var Context::activation(const Shape& shape, bool differentiable) {
  auto state = std::make_shared<VarState>();
  state->value = scratch(shape, activation_type());
  state->requires_grad = recording_ && differentiable;
  return Var(state);
}

void Context::record(std::function<void()> backward) {
  if (recording_) tape_.push_back(std::move(backward));
}

void Context::backward() {
  for (auto step = tape_.rbegin(); step != tape_.rend(); ++step) (*step)();
  tape_.clear();
  for (const auto& parameter : parameters_) {
    if (!parameter->grad_written) {
      const Tensor& grad = parameter->grad;
      device_.fill_bytes(grad.bytes(), 0, static_cast<size_t>(grad.shape().numel()) * element_bytes(grad.scalar_type()),
                         stream_);
    }
  }
}

void Context::end_step() {
  tape_.clear();
  parameters_.clear();
  arena_.reset();
}

Tensor Context::incoming_grad(const Var& v) const {
  const VarState& state = *v.state_;
  if (!state.requires_grad) return {};
  if (state.root) {
    const VarState& root = *state.root;
    if (!state.grad_written && !root.grad_written) return {};
    return root.grad.channels(state.channel_offset, state.value.shape().c);
  }
  if (!state.grad_written) {
    if (state.some_view_written) throw Error("autograd: only part of a tensor's gradient was written");
    return {};
  }
  return state.grad;
}

Tensor Context::outgoing_grad(const Var& v, float* beta) {
  VarState& state = *v.state_;
  if (!state.requires_grad) return {};
  VarState& root = state.root ? *state.root : state;
  // A gradient is stored as its value is (parameters, whose fp32 gradients are given, aside).
  if (root.grad.bytes() == nullptr) root.grad = scratch(root.value.shape(), root.value.scalar_type());
  if (state.root) {
    const bool written = state.grad_written || root.grad_written;
    *beta = written ? 1.0f : 0.0f;
    state.grad_written = true;
    root.some_view_written = true;
    return root.grad.channels(state.channel_offset, state.value.shape().c);
  }
  if (state.some_view_written && !state.grad_written) {
    throw Error("autograd: a tensor's gradient is written whole after part of it was written alone");
  }
  *beta = state.grad_written ? 1.0f : 0.0f;
  state.grad_written = true;
  return state.grad;
}

}  // namespace unet
