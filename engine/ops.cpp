#include "engine/ops.h"

#include <string>

#include "engine/dispatch.h"
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "kernels/max_pool2d.h"

namespace unet::ops {

namespace {

void require(bool condition, const std::string& what) {
  if (!condition) throw Error(what);
}

// The convolutions' version for the context's precision: tf32 runs the TF32 tensor-core version
// (on the cpu device, the reference at its rounding points), fp32 the default.
template <class Conv>
int conv_version(const Context& ctx) {
  return ctx.precision() == Precision::tf32 ? Conv::tensor_core_version : 0;
}

Var output_or_new(Context& ctx, const Var* out, const Shape& shape, const char* op) {
  if (out == nullptr) return ctx.activation(shape);
  require(out->value().shape() == shape,
          std::string(op) + ": output is " + out->value().shape().text() + ", expected " + shape.text());
  return *out;
}

}  // namespace

Var conv2d(Context& ctx, const Var& x, const Var& weight, const Var& bias, bool relu, const Var* out) {
  const Shape xs = x.value().shape(), ws = weight.value().shape();
  require(ws.c == xs.c && ws.h == ws.w && ws.h % 2 == 1,
          "conv2d: weight " + ws.text() + " does not fit input " + xs.text());
  const Conv2dShape shape{xs.n, xs.h, xs.w, xs.c, ws.n, ws.h};
  Var y = output_or_new(ctx, out, {xs.n, xs.h, xs.w, ws.n}, "conv2d");
  const Tensor& in = x.value();
  const Tensor& result = y.value();
  const float* b = bias.defined() ? bias.value().data() : nullptr;
  dispatch(ctx.kind(), [&]<DeviceKind D>() {
    Conv2d<D>::forward(shape, in.data(), in.pixel_stride(), weight.value().data(), b, relu, result.data(),
                       result.pixel_stride(), ctx.stream(), conv_version<Conv2d<D>>(ctx));
  });

  ctx.record([&ctx, x, weight, bias, relu, y, shape] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    const float* mask = relu ? y.value().data() : nullptr;
    const int mask_stride = y.value().pixel_stride();
    const Tensor& in = x.value();
    float beta = 0;
    if (const Tensor dx = ctx.outgoing_grad(x, &beta); dx.defined()) {
      dispatch(ctx.kind(), [&]<DeviceKind D>() {
        Conv2d<D>::backward_data(shape, dy.data(), dy.pixel_stride(), mask, mask_stride, weight.value().data(), beta,
                                 dx.data(), dx.pixel_stride(), ctx.stream(), conv_version<Conv2d<D>>(ctx));
      });
    }
    if (const Tensor dw = ctx.outgoing_grad(weight, &beta); dw.defined()) {
      dispatch(ctx.kind(), [&]<DeviceKind D>() {
        const int version = conv_version<Conv2d<D>>(ctx);
        void* workspace = ctx.workspace(Conv2d<D>::backward_weight_workspace(shape, version));
        Conv2d<D>::backward_weight(shape, in.data(), in.pixel_stride(), dy.data(), dy.pixel_stride(), mask,
                                   mask_stride, beta, dw.data(), workspace, ctx.stream(), version);
      });
    }
    if (!bias.defined()) return;
    if (const Tensor db = ctx.outgoing_grad(bias, &beta); db.defined()) {
      dispatch(ctx.kind(), [&]<DeviceKind D>() {
        void* workspace = ctx.workspace(Conv2d<D>::backward_bias_workspace(shape));
        Conv2d<D>::backward_bias(shape, dy.data(), dy.pixel_stride(), mask, mask_stride, beta, db.data(), workspace,
                                 ctx.stream());
      });
    }
  });
  return y;
}

Var conv_transpose2d(Context& ctx, const Var& x, const Var& weight, const Var& bias, const Var* out) {
  const Shape xs = x.value().shape(), ws = weight.value().shape();
  require(ws.n == xs.c && ws.h == 2 && ws.w == 2,
          "conv_transpose2d: weight " + ws.text() + " does not fit input " + xs.text());
  // Its TF32 version and reference come with the conv_transpose2d tensor-core kernels (issue 10).
  require(ctx.precision() != Precision::tf32, "conv_transpose2d: no tf32 kernel in this build yet; use fp32");
  const ConvTranspose2dShape shape{xs.n, xs.h, xs.w, xs.c, ws.c};
  Var y = output_or_new(ctx, out, {xs.n, 2 * xs.h, 2 * xs.w, ws.c}, "conv_transpose2d");
  const Tensor& in = x.value();
  const Tensor& result = y.value();
  const float* b = bias.defined() ? bias.value().data() : nullptr;
  dispatch(ctx.kind(), [&]<DeviceKind D>() {
    ConvTranspose2d<D>::forward(shape, in.data(), in.pixel_stride(), weight.value().data(), b, result.data(),
                                result.pixel_stride(), ctx.stream());
  });

  ctx.record([&ctx, x, weight, bias, y, shape] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    const Tensor& in = x.value();
    float beta = 0;
    if (const Tensor dx = ctx.outgoing_grad(x, &beta); dx.defined()) {
      dispatch(ctx.kind(), [&]<DeviceKind D>() {
        ConvTranspose2d<D>::backward_data(shape, dy.data(), dy.pixel_stride(), weight.value().data(), beta, dx.data(),
                                          dx.pixel_stride(), ctx.stream());
      });
    }
    if (const Tensor dw = ctx.outgoing_grad(weight, &beta); dw.defined()) {
      dispatch(ctx.kind(), [&]<DeviceKind D>() {
        void* workspace = ctx.workspace(ConvTranspose2d<D>::backward_weight_workspace(shape));
        ConvTranspose2d<D>::backward_weight(shape, in.data(), in.pixel_stride(), dy.data(), dy.pixel_stride(), beta,
                                            dw.data(), workspace, ctx.stream());
      });
    }
    if (!bias.defined()) return;
    if (const Tensor db = ctx.outgoing_grad(bias, &beta); db.defined()) {
      dispatch(ctx.kind(), [&]<DeviceKind D>() {
        void* workspace = ctx.workspace(ConvTranspose2d<D>::backward_bias_workspace(shape));
        ConvTranspose2d<D>::backward_bias(shape, dy.data(), dy.pixel_stride(), beta, db.data(), workspace,
                                          ctx.stream());
      });
    }
  });
  return y;
}

Var max_pool2d(Context& ctx, const Var& x) {
  const Shape xs = x.value().shape();
  const PoolShape shape{xs.n, xs.h, xs.w, xs.c};
  Var y = ctx.activation({xs.n, xs.h / 2, xs.w / 2, xs.c});
  auto* argmax = static_cast<uint8_t*>(ctx.workspace(static_cast<size_t>(y.value().shape().numel())));
  const Tensor& in = x.value();
  const Tensor& result = y.value();
  dispatch(ctx.kind(), [&]<DeviceKind D>() {
    MaxPool2d<D>::forward(shape, in.data(), in.pixel_stride(), result.data(), result.pixel_stride(), argmax,
                          ctx.stream());
  });

  ctx.record([&ctx, x, y, shape, argmax] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    float beta = 0;
    const Tensor dx = ctx.outgoing_grad(x, &beta);
    if (!dx.defined()) return;
    dispatch(ctx.kind(), [&]<DeviceKind D>() {
      MaxPool2d<D>::backward(shape, dy.data(), dy.pixel_stride(), argmax, beta, dx.data(), dx.pixel_stride(),
                             ctx.stream());
    });
  });
  return y;
}

Tensor segmentation_loss(Context& ctx, const Var& logits, const Tensor& target, const LossConfig& config,
                         const LossReduction* across) {
  const Shape ls = logits.value().shape();
  require(ls.c == 1 && logits.value().dense(), "loss: logits must be dense (N, H, W, 1), not " + ls.text());
  require(target.shape() == ls && target.dense(),
          "loss: target " + target.shape().text() + " does not match logits " + ls.text());
  Tensor values = ctx.scratch({1, 1, 1, loss_values});
  float* dlogits = nullptr;
  if (ctx.recording() && logits.requires_grad()) {
    float beta = 0;
    dlogits = ctx.outgoing_grad(logits, &beta).data();
    require(beta == 0, "loss: the logits already have a gradient; the loss must come last");
  }
  const int64_t per_sample = int64_t{ls.h} * ls.w;
  const int global_n = across != nullptr ? across->global_samples : ls.n;
  require(global_n >= ls.n, "loss: a global batch of " + std::to_string(global_n) + " is smaller than this rank's " +
                                std::to_string(ls.n));
  const float* x = logits.value().data();
  dispatch(ctx.kind(), [&]<DeviceKind D>() {
    void* workspace = ctx.workspace(SegmentationLoss<D>::workspace(ls.n, per_sample));
    if (across == nullptr) {
      SegmentationLoss<D>::forward_backward(ls.n, per_sample, x, target.data(), config, values.data(), dlogits,
                                            workspace, ctx.stream());
      return;
    }
    SegmentationLoss<D>::sums(ls.n, per_sample, global_n, x, target.data(), config, dlogits, workspace, ctx.stream());
    across->add_across_ranks(SegmentationLoss<D>::batch_sums(workspace), ctx.stream());
    SegmentationLoss<D>::finish(ls.n, per_sample, global_n, x, target.data(), config, values.data(), dlogits,
                                workspace, ctx.stream());
  });
  return values;
}

}  // namespace unet::ops
