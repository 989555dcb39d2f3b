#include "engine/ops.h"

#include <string>

#include "kernels/concat.h"
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "kernels/max_pool2d.h"
#include "kernels/relu.h"
#include "kernels/sigmoid.h"

namespace unet::ops {

namespace {

// Runs on_cpu() on the cpu device, and on_gpu<D>() on sim or cuda.
template <class Cpu, class Gpu>
void dispatch(DeviceKind kind, Cpu&& on_cpu, Gpu&& on_gpu) {
  switch (kind) {
    case DeviceKind::cpu: on_cpu(); return;
    case DeviceKind::sim: on_gpu.template operator()<DeviceKind::sim>(); return;
    case DeviceKind::cuda:
#if UNET_WITH_CUDA
      on_gpu.template operator()<DeviceKind::cuda>();
      return;
#else
      throw Error("this build has no cuda device");
#endif
  }
}

void require(bool condition, const std::string& what) {
  if (!condition) throw Error(what);
}

Var output_or_new(Context& ctx, const Var* out, const Shape& shape, const char* op) {
  if (out == nullptr) return ctx.activation(shape);
  require(out->value().shape() == shape, std::string(op) + ": output is " + out->value().shape().text() + ", expected " + shape.text());
  return *out;
}

}  // namespace

Var conv2d(Context& ctx, const Var& x, const Var& weight, const Var& bias, bool relu, const Var* out) {
  const Shape xs = x.value().shape(), ws = weight.value().shape();
  require(ws.c == xs.c && ws.h == ws.w && ws.h % 2 == 1, "conv2d: weight " + ws.text() + " does not fit input " + xs.text());
  const Conv2dShape shape{xs.n, xs.h, xs.w, xs.c, ws.n, ws.h};
  Var y = output_or_new(ctx, out, {xs.n, xs.h, xs.w, ws.n}, "conv2d");
  const Tensor& in = x.value();
  const Tensor& result = y.value();
  const float* b = bias.defined() ? bias.value().data() : nullptr;
  dispatch(
      ctx.kind(),
      [&] {
        cpu::conv2d_forward<float>(shape, in.data(), in.pixel_stride(), weight.value().data(), b, relu, result.data(),
                                   result.pixel_stride());
      },
      [&]<DeviceKind D>() {
        Conv2d<D>::forward(shape, in.data(), in.pixel_stride(), weight.value().data(), b, relu, result.data(),
                           result.pixel_stride(), ctx.stream());
      });

  ctx.record([&ctx, x, weight, bias, relu, y, shape] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    const float* mask = relu ? y.value().data() : nullptr;
    const int mask_stride = y.value().pixel_stride();
    const Tensor& in = x.value();
    float beta = 0;
    if (const Tensor dx = ctx.outgoing_grad(x, &beta); dx.defined()) {
      dispatch(
          ctx.kind(),
          [&] {
            cpu::conv2d_backward_data<float>(shape, dy.data(), dy.pixel_stride(), mask, mask_stride,
                                             weight.value().data(), beta, dx.data(), dx.pixel_stride());
          },
          [&]<DeviceKind D>() {
            Conv2d<D>::backward_data(shape, dy.data(), dy.pixel_stride(), mask, mask_stride, weight.value().data(),
                                     beta, dx.data(), dx.pixel_stride(), ctx.stream());
          });
    }
    if (const Tensor dw = ctx.outgoing_grad(weight, &beta); dw.defined()) {
      dispatch(
          ctx.kind(),
          [&] {
            cpu::conv2d_backward_weight<float>(shape, in.data(), in.pixel_stride(), dy.data(), dy.pixel_stride(), mask,
                                               mask_stride, beta, dw.data());
          },
          [&]<DeviceKind D>() {
            void* workspace = ctx.workspace(Conv2d<D>::backward_weight_workspace(shape));
            Conv2d<D>::backward_weight(shape, in.data(), in.pixel_stride(), dy.data(), dy.pixel_stride(), mask,
                                       mask_stride, beta, dw.data(), workspace, ctx.stream());
          });
    }
    if (!bias.defined()) return;
    if (const Tensor db = ctx.outgoing_grad(bias, &beta); db.defined()) {
      dispatch(
          ctx.kind(),
          [&] {
            cpu::conv2d_backward_bias<float>(shape, dy.data(), dy.pixel_stride(), mask, mask_stride, beta, db.data());
          },
          [&]<DeviceKind D>() {
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
  require(ws.n == xs.c && ws.h == 2 && ws.w == 2, "conv_transpose2d: weight " + ws.text() + " does not fit input " + xs.text());
  const ConvTranspose2dShape shape{xs.n, xs.h, xs.w, xs.c, ws.c};
  Var y = output_or_new(ctx, out, {xs.n, 2 * xs.h, 2 * xs.w, ws.c}, "conv_transpose2d");
  const Tensor& in = x.value();
  const Tensor& result = y.value();
  const float* b = bias.defined() ? bias.value().data() : nullptr;
  dispatch(
      ctx.kind(),
      [&] {
        cpu::conv_transpose2d_forward<float>(shape, in.data(), in.pixel_stride(), weight.value().data(), b,
                                             result.data(), result.pixel_stride());
      },
      [&]<DeviceKind D>() {
        ConvTranspose2d<D>::forward(shape, in.data(), in.pixel_stride(), weight.value().data(), b, result.data(),
                                    result.pixel_stride(), ctx.stream());
      });

  ctx.record([&ctx, x, weight, bias, y, shape] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    const Tensor& in = x.value();
    float beta = 0;
    if (const Tensor dx = ctx.outgoing_grad(x, &beta); dx.defined()) {
      dispatch(
          ctx.kind(),
          [&] {
            cpu::conv_transpose2d_backward_data<float>(shape, dy.data(), dy.pixel_stride(), weight.value().data(), beta,
                                                       dx.data(), dx.pixel_stride());
          },
          [&]<DeviceKind D>() {
            ConvTranspose2d<D>::backward_data(shape, dy.data(), dy.pixel_stride(), weight.value().data(), beta,
                                              dx.data(), dx.pixel_stride(), ctx.stream());
          });
    }
    if (const Tensor dw = ctx.outgoing_grad(weight, &beta); dw.defined()) {
      dispatch(
          ctx.kind(),
          [&] {
            cpu::conv_transpose2d_backward_weight<float>(shape, in.data(), in.pixel_stride(), dy.data(),
                                                         dy.pixel_stride(), beta, dw.data());
          },
          [&]<DeviceKind D>() {
            void* workspace = ctx.workspace(ConvTranspose2d<D>::backward_weight_workspace(shape));
            ConvTranspose2d<D>::backward_weight(shape, in.data(), in.pixel_stride(), dy.data(), dy.pixel_stride(),
                                                beta, dw.data(), workspace, ctx.stream());
          });
    }
    if (!bias.defined()) return;
    if (const Tensor db = ctx.outgoing_grad(bias, &beta); db.defined()) {
      dispatch(
          ctx.kind(),
          [&] { cpu::conv_transpose2d_backward_bias<float>(shape, dy.data(), dy.pixel_stride(), beta, db.data()); },
          [&]<DeviceKind D>() {
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
  dispatch(
      ctx.kind(),
      [&] { cpu::max_pool2d_forward<float>(shape, in.data(), in.pixel_stride(), result.data(), result.pixel_stride(), argmax); },
      [&]<DeviceKind D>() {
        MaxPool2d<D>::forward(shape, in.data(), in.pixel_stride(), result.data(), result.pixel_stride(), argmax,
                              ctx.stream());
      });

  ctx.record([&ctx, x, y, shape, argmax] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    float beta = 0;
    const Tensor dx = ctx.outgoing_grad(x, &beta);
    if (!dx.defined()) return;
    dispatch(
        ctx.kind(),
        [&] { cpu::max_pool2d_backward<float>(shape, dy.data(), dy.pixel_stride(), argmax, beta, dx.data(), dx.pixel_stride()); },
        [&]<DeviceKind D>() {
          MaxPool2d<D>::backward(shape, dy.data(), dy.pixel_stride(), argmax, beta, dx.data(), dx.pixel_stride(),
                                 ctx.stream());
        });
  });
  return y;
}

namespace {

// relu and sigmoid: y = f(x), dx = beta*dx + dy * f'(from y).
template <template <DeviceKind> class Kernels, class CpuForward, class CpuBackward>
Var elementwise(Context& ctx, const Var& x, CpuForward cpu_forward, CpuBackward cpu_backward) {
  const Shape xs = x.value().shape();
  Var y = ctx.activation(xs);
  const Tensor& in = x.value();
  const Tensor& result = y.value();
  dispatch(
      ctx.kind(), [&] { cpu_forward(xs.pixels(), xs.c, in.data(), in.pixel_stride(), result.data(), result.pixel_stride()); },
      [&]<DeviceKind D>() {
        Kernels<D>::forward(xs.pixels(), xs.c, in.data(), in.pixel_stride(), result.data(), result.pixel_stride(),
                            ctx.stream());
      });
  ctx.record([&ctx, x, y, cpu_backward] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    float beta = 0;
    const Tensor dx = ctx.outgoing_grad(x, &beta);
    if (!dx.defined()) return;
    const Shape s = dy.shape();
    const Tensor& out = y.value();
    dispatch(
        ctx.kind(),
        [&] { cpu_backward(s.pixels(), s.c, dy.data(), dy.pixel_stride(), out.data(), out.pixel_stride(), beta, dx.data(), dx.pixel_stride()); },
        [&]<DeviceKind D>() {
          Kernels<D>::backward(s.pixels(), s.c, dy.data(), dy.pixel_stride(), out.data(), out.pixel_stride(), beta,
                               dx.data(), dx.pixel_stride(), ctx.stream());
        });
  });
  return y;
}

}  // namespace

Var relu(Context& ctx, const Var& x) {
  return elementwise<Relu>(ctx, x, cpu::relu_forward<float>, cpu::relu_backward<float>);
}

Var sigmoid(Context& ctx, const Var& x) {
  return elementwise<Sigmoid>(ctx, x, cpu::sigmoid_forward<float>, cpu::sigmoid_backward<float>);
}

Var concat(Context& ctx, const Var& a, const Var& b) {
  const Shape as = a.value().shape(), bs = b.value().shape();
  require(as.n == bs.n && as.h == bs.h && as.w == bs.w, "concat: " + as.text() + " and " + bs.text() + " differ in N, H or W");
  Var y = ctx.activation({as.n, as.h, as.w, as.c + bs.c});
  const Tensor &ta = a.value(), &tb = b.value(), &result = y.value();
  dispatch(
      ctx.kind(),
      [&] {
        cpu::concat_forward<float>(as.pixels(), ta.data(), as.c, ta.pixel_stride(), tb.data(), bs.c, tb.pixel_stride(),
                                   result.data(), result.pixel_stride());
      },
      [&]<DeviceKind D>() {
        Concat<D>::forward(as.pixels(), ta.data(), as.c, ta.pixel_stride(), tb.data(), bs.c, tb.pixel_stride(),
                           result.data(), result.pixel_stride(), ctx.stream());
      });
  ctx.record([&ctx, a, b, y] {
    const Tensor dy = ctx.incoming_grad(y);
    if (!dy.defined()) return;
    const int ca = a.value().shape().c, cb = b.value().shape().c;
    float beta_a = 0, beta_b = 0;
    const Tensor da = ctx.outgoing_grad(a, &beta_a), db = ctx.outgoing_grad(b, &beta_b);
    require(da.defined() && db.defined() && beta_a == beta_b,
            "concat: backward needs both inputs to take gradients, both first or both accumulated");
    dispatch(
        ctx.kind(),
        [&] {
          cpu::concat_backward<float>(dy.shape().pixels(), dy.data(), dy.pixel_stride(), ca, cb, beta_a, da.data(),
                                      da.pixel_stride(), db.data(), db.pixel_stride());
        },
        [&]<DeviceKind D>() {
          Concat<D>::backward(dy.shape().pixels(), dy.data(), dy.pixel_stride(), ca, cb, beta_a, da.data(),
                              da.pixel_stride(), db.data(), db.pixel_stride(), ctx.stream());
        });
  });
  return y;
}

Tensor segmentation_loss(Context& ctx, const Var& logits, const Tensor& target, const LossConfig& config,
                         const LossReduction* across) {
  const Shape ls = logits.value().shape();
  require(ls.c == 1 && logits.value().dense(), "loss: logits must be dense (N, H, W, 1), not " + ls.text());
  require(target.shape() == ls && target.dense(), "loss: target " + target.shape().text() + " does not match logits " + ls.text());
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
  dispatch(
      ctx.kind(),
      [&] {
        auto* sums = static_cast<double*>(ctx.workspace(sizeof(double) * (loss_sum::count + 3 * int64_t{ls.n})));
        cpu::loss_sums<float>(ls.n, per_sample, x, target.data(), config, sums + loss_sum::count, sums);
        if (across != nullptr) across->add_across_ranks(sums, ctx.stream());
        cpu::loss_finish<float>(ls.n, per_sample, global_n, x, target.data(), config, sums + loss_sum::count, sums,
                                values.data(), dlogits);
      },
      [&]<DeviceKind D>() {
        void* workspace = ctx.workspace(SegmentationLoss<D>::workspace(ls.n, per_sample));
        if (across == nullptr) {
          SegmentationLoss<D>::forward_backward(ls.n, per_sample, x, target.data(), config, values.data(), dlogits,
                                                workspace, ctx.stream());
          return;
        }
        SegmentationLoss<D>::sums(ls.n, per_sample, global_n, x, target.data(), config, dlogits, workspace,
                                  ctx.stream());
        across->add_across_ranks(SegmentationLoss<D>::batch_sums(workspace), ctx.stream());
        SegmentationLoss<D>::finish(ls.n, per_sample, global_n, x, target.data(), config, values.data(), dlogits,
                                    workspace, ctx.stream());
      });
  return values;
}

}  // namespace unet::ops
