#include "models/trainer.h"

#include "engine/nvtx.h"
#include "engine/ops.h"

namespace unet {

Trainer::Trainer(UNet& model, const AdamConfig& adam, const LossConfig& loss, const Shape& batch_shape, bool use_graph)
    : model_(model),
      adam_(adam),
      loss_(loss),
      use_graph_(use_graph && model.parameters().device().kind() != DeviceKind::cpu),
      device_(model.parameters().device()),
      stream_(device_.create_stream()),
      context_(std::make_unique<Context>(device_, stream_, model.precision())),
      clock_(device_) {
  model_.check_input(batch_shape);
  const Shape mask_shape{batch_shape.n, batch_shape.h, batch_shape.w, 1};
  image_ = allocate_tensor(device_, batch_shape, context_->activation_type());  // bf16 under bf16
  mask_ = Tensor(&device_, static_cast<float*>(device_.allocate(mask_shape.numel() * sizeof(float))), mask_shape);
  non_finite_ = static_cast<int32_t*>(device_.allocate(sizeof(int32_t)));
  const int32_t zero = 0;
  device_.copy_to_device(non_finite_, &zero, sizeof zero);
}

Trainer::~Trainer() {
  graph_.reset();
  context_.reset();
  device_.release(image_.bytes());
  device_.release(mask_.data());
  device_.release(non_finite_);
  device_.destroy_stream(stream_);
}

const Tensor* Trainer::run_step() {
  Context& ctx = *context_;
  ctx.set_recording(true);
  clock_.advance(stream_);
  if (batch_source_) {
    const nvtx::Range range("data");
    batch_source_(stream_);
  }
  const Var logits = model_.forward(ctx, image_);
  logits_ = logits.value();
  {
    const nvtx::Range range("loss");
    if (distributed()) {
      const ops::LossReduction across{image_.shape().n * comm_->size(), [this](double* sums, Stream stream) {
                                        comm_->all_reduce(device_, sums, loss_sum::count, stream,
                                                          "the all-reduce of the loss's batch sums");
                                      }};
      losses_ = ops::segmentation_loss(ctx, logits, mask_, loss_, &across);
    } else {
      losses_ = ops::segmentation_loss(ctx, logits, mask_, loss_);
    }
  }
  ctx.backward();
  {
    const nvtx::Range range("optimizer");
    if (distributed()) {
      ParameterStore& parameters = model_.parameters();
      comm_->all_reduce(device_, parameters.grads(), parameters.count() + 1, stream_,
                        "the all-reduce of the gradients");
    }
    adam_update(model_.parameters(), adam_, clock_, stream_, non_finite_);
  }
  return &losses_;
}

StepLosses Trainer::step(std::vector<float>* logits) {
  const nvtx::Range range(graph_ != nullptr ? "step (graph replay)" : "step");
  // The last step's tensors are dead: rewind the arena (it may reallocate, which a capture forbids).
  if (graph_ == nullptr) context_->end_step();
  float* const stop_slot = model_.parameters().grads() + model_.parameters().count();
  if (distributed()) {
    comm_->set_step(clock_.read() + 1);
    const float request = stop_requested_ ? 1.0f : 0.0f;
    device_.copy_to_device(stop_slot, &request, sizeof request);
  }
  if (graph_ != nullptr) {
    if (logits != nullptr) throw Error("trainer: logits are only available from eager steps");
    graph_->replay(stream_);
  } else if (use_graph_ && eager_steps_ >= 1 && logits == nullptr) {
    // The first step sized the arena; this one is captured, then replayed from now on.
    device_.begin_capture(stream_);
    try {
      run_step();
    } catch (...) {
      // Leave capture mode, or the stream (and on sim every later launch) stays unusable.
      try {
        device_.end_capture(stream_);
      } catch (...) {  // an invalidated capture: its own error says less than the first one
      }
      throw;
    }
    graph_ = device_.end_capture(stream_);
    graph_->replay(stream_);
  } else {
    run_step();
    ++eager_steps_;
  }
  if (distributed()) {
    comm_->wait(device_, stream_, "the step's collectives");
  } else {
    device_.synchronize(stream_);
  }
  float values[loss_values];
  device_.copy_to_host(values, losses_.data(), sizeof values);
  if (logits != nullptr) *logits = logits_.to_host();
  bool stop = stop_requested_;
  if (distributed()) {
    float requests = 0;
    device_.copy_to_host(&requests, stop_slot, sizeof requests);
    stop = requests > 0;
  }
  return {values[0], values[1], values[2], stop};
}

bool Trainer::parameters_finite() const {
  device_.synchronize();
  int32_t flag = 0;
  device_.copy_to_host(&flag, non_finite_, sizeof flag);
  return flag == 0;
}

}  // namespace unet
