#include "engine/ops.h"

#include <string>
#include <type_traits>

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
// (on the cpu device, the reference at its rounding points); fp32 and bf16 the default (for the
// bf16 overloads, the fastest bf16 kernel).
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

// Calls run.template operator()<T>() with T the C++ type of `type`: float or bf16. The ops name
// each launcher once for both, as the kernels' bf16 overloads keep the fp32 argument order.
template <class Run>
void with_type(ScalarType type, Run&& run) {
  if (type == ScalarType::bf16) {
    run.template operator()<bf16>();
  } else {
    run.template operator()<float>();
  }
}

// An op's activations (and, for the convolutions, the weights the kernels read) share one type.
void require_type(const char* op, ScalarType expected, const Tensor& t, const char* what) {
  require(t.scalar_type() == expected, std::string(op) + ": " + what + " is " + scalar_type_name(t.scalar_type()) +
                                           ", the input " + scalar_type_name(expected));
}

// conv2d's workspace sizes: the bf16 overloads take a bf16 tag.
template <DeviceKind D, class T>
size_t conv2d_weight_workspace(const Conv2dShape& shape, int version) {
  if constexpr (std::is_same_v<T, bf16>) {
    return Conv2d<D>::backward_weight_workspace(shape, bf16{}, version);
  } else {
    return Conv2d<D>::backward_weight_workspace(shape, version);
  }
}

template <DeviceKind D, class T>
size_t conv2d_bias_workspace(const Conv2dShape& shape) {
  if constexpr (std::is_same_v<T, bf16>) {
    return Conv2d<D>::backward_bias_workspace(shape, bf16{});
  } else {
    return Conv2d<D>::backward_bias_workspace(shape);
  }
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
  const ScalarType type = in.scalar_type();
  require_type("conv2d", type, weight.value(), "the weight");
  require_type("conv2d", type, result, "the output");
  const float* b = bias.defined() ? bias.value().data() : nullptr;
  with_type(type, [&]<class T>() {
    dispatch(ctx.kind(), [&]<DeviceKind D>() {
      Conv2d<D>::forward(shape, in.data<T>(), in.pixel_stride(), weight.value().data<T>(), b, relu,
                         result.data<T>(), result.pixel_stride(), ctx.stream(), conv_version<Conv2d<D>>(ctx));
    });
  });

  ctx.record([&ctx, x, weight, bias, relu, y, shape, type] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    with_type(type, [&]<class T>() {
      const T* mask = relu ? y.value().data<T>() : nullptr;
      const int mask_stride = y.value().pixel_stride();
      const Tensor& in = x.value();
      float beta = 0;
      if (const Tensor dx = ctx.outgoing_grad(x, &beta); dx.defined()) {
        dispatch(ctx.kind(), [&]<DeviceKind D>() {
          Conv2d<D>::backward_data(shape, dy.data<T>(), dy.pixel_stride(), mask, mask_stride,
                                   weight.value().data<T>(), beta, dx.data<T>(), dx.pixel_stride(), ctx.stream(),
                                   conv_version<Conv2d<D>>(ctx));
        });
      }
      // The weight and bias gradients are fp32 in every precision.
      if (const Tensor dw = ctx.outgoing_grad(weight, &beta); dw.defined()) {
        dispatch(ctx.kind(), [&]<DeviceKind D>() {
          const int version = conv_version<Conv2d<D>>(ctx);
          void* workspace = ctx.workspace(conv2d_weight_workspace<D, T>(shape, version));
          Conv2d<D>::backward_weight(shape, in.data<T>(), in.pixel_stride(), dy.data<T>(), dy.pixel_stride(), mask,
                                     mask_stride, beta, dw.data(), workspace, ctx.stream(), version);
        });
      }
      if (!bias.defined()) return;
      if (const Tensor db = ctx.outgoing_grad(bias, &beta); db.defined()) {
        dispatch(ctx.kind(), [&]<DeviceKind D>() {
          void* workspace = ctx.workspace(conv2d_bias_workspace<D, T>(shape));
          Conv2d<D>::backward_bias(shape, dy.data<T>(), dy.pixel_stride(), mask, mask_stride, beta, db.data(),
                                   workspace, ctx.stream());
        });
      }
    });
  });
  return y;
}

Var conv_transpose2d(Context& ctx, const Var& x, const Var& weight, const Var& bias, const Var* out) {
  const Shape xs = x.value().shape(), ws = weight.value().shape();
  require(ws.n == xs.c && ws.h == 2 && ws.w == 2,
          "conv_transpose2d: weight " + ws.text() + " does not fit input " + xs.text());
  const ConvTranspose2dShape shape{xs.n, xs.h, xs.w, xs.c, ws.c};
  Var y = output_or_new(ctx, out, {xs.n, 2 * xs.h, 2 * xs.w, ws.c}, "conv_transpose2d");
  const Tensor& in = x.value();
  const Tensor& result = y.value();
  const ScalarType type = in.scalar_type();
  require_type("conv_transpose2d", type, weight.value(), "the weight");
  require_type("conv_transpose2d", type, result, "the output");
  const float* b = bias.defined() ? bias.value().data() : nullptr;
  with_type(type, [&]<class T>() {
    dispatch(ctx.kind(), [&]<DeviceKind D>() {
      ConvTranspose2d<D>::forward(shape, in.data<T>(), in.pixel_stride(), weight.value().data<T>(), b,
                                  result.data<T>(), result.pixel_stride(), ctx.stream(),
                                  conv_version<ConvTranspose2d<D>>(ctx));
    });
  });

  ctx.record([&ctx, x, weight, bias, y, shape, type] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    with_type(type, [&]<class T>() {
      const Tensor& in = x.value();
      float beta = 0;
      if (const Tensor dx = ctx.outgoing_grad(x, &beta); dx.defined()) {
        dispatch(ctx.kind(), [&]<DeviceKind D>() {
          ConvTranspose2d<D>::backward_data(shape, dy.data<T>(), dy.pixel_stride(), weight.value().data<T>(), beta,
                                            dx.data<T>(), dx.pixel_stride(), ctx.stream(),
                                            conv_version<ConvTranspose2d<D>>(ctx));
        });
      }
      if (const Tensor dw = ctx.outgoing_grad(weight, &beta); dw.defined()) {
        dispatch(ctx.kind(), [&]<DeviceKind D>() {
          const int version = conv_version<ConvTranspose2d<D>>(ctx);
          void* workspace = ctx.workspace(ConvTranspose2d<D>::backward_weight_workspace(shape, version));
          ConvTranspose2d<D>::backward_weight(shape, in.data<T>(), in.pixel_stride(), dy.data<T>(),
                                              dy.pixel_stride(), beta, dw.data(), workspace, ctx.stream(), version);
        });
      }
      if (!bias.defined()) return;
      if (const Tensor db = ctx.outgoing_grad(bias, &beta); db.defined()) {
        dispatch(ctx.kind(), [&]<DeviceKind D>() {
          void* workspace = ctx.workspace(ConvTranspose2d<D>::backward_bias_workspace(shape));
          ConvTranspose2d<D>::backward_bias(shape, dy.data<T>(), dy.pixel_stride(), beta, db.data(), workspace,
                                            ctx.stream());
        });
      }
    });
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
  const ScalarType type = in.scalar_type();
  require_type("max_pool2d", type, result, "the output");
  with_type(type, [&]<class T>() {
    dispatch(ctx.kind(), [&]<DeviceKind D>() {
      MaxPool2d<D>::forward(shape, in.data<T>(), in.pixel_stride(), result.data<T>(), result.pixel_stride(), argmax,
                            ctx.stream());
    });
  });

  ctx.record([&ctx, x, y, shape, argmax, type] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    float beta = 0;
    const Tensor dx = ctx.outgoing_grad(x, &beta);
    if (!dx.defined()) return;
    with_type(type, [&]<class T>() {
      dispatch(ctx.kind(), [&]<DeviceKind D>() {
        MaxPool2d<D>::backward(shape, dy.data<T>(), dy.pixel_stride(), argmax, beta, dx.data<T>(), dx.pixel_stride(),
                               ctx.stream());
      });
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
  Tensor dlogits;  // of the logits' type
  if (ctx.recording() && logits.requires_grad()) {
    float beta = 0;
    dlogits = ctx.outgoing_grad(logits, &beta);
    require(beta == 0, "loss: the logits already have a gradient; the loss must come last");
  }
  const int64_t per_sample = int64_t{ls.h} * ls.w;
  const int global_n = across != nullptr ? across->global_samples : ls.n;
  require(global_n >= ls.n, "loss: a global batch of " + std::to_string(global_n) + " is smaller than this rank's " +
                                std::to_string(ls.n));
  const Tensor& x = logits.value();
  with_type(x.scalar_type(), [&]<class T>() {
    T* dx = dlogits.defined() ? dlogits.data<T>() : nullptr;
    dispatch(ctx.kind(), [&]<DeviceKind D>() {
      void* workspace = ctx.workspace(SegmentationLoss<D>::workspace(ls.n, per_sample));
      if (across == nullptr) {
        SegmentationLoss<D>::forward_backward(ls.n, per_sample, x.data<T>(), target.data(), config, values.data(), dx,
                                              workspace, ctx.stream());
        return;
      }
      SegmentationLoss<D>::sums(ls.n, per_sample, global_n, x.data<T>(), target.data(), config, dx, workspace,
                                ctx.stream());
      across->add_across_ranks(SegmentationLoss<D>::batch_sums(workspace), ctx.stream());
      SegmentationLoss<D>::finish(ls.n, per_sample, global_n, x.data<T>(), target.data(), config, values.data(), dx,
                                  workspace, ctx.stream());
    });
  });
  return values;
}

}  // namespace unet::ops
