// The differentiable ops: each runs its forward kernels on the context's device and stream and,
// when the context records, puts its backward on the tape (engine/autograd.h). The kernels are
// kernels/*, reached through dispatch() (engine/dispatch.h): the CPU references on the cpu device, the
// CUDA kernels on sim and cuda.
//
// Weights are tensors in the kernels' layouts: conv2d (Cout, k, k, Cin) as Shape{Cout, k, k, Cin};
// conv_transpose2d (Cin, 2, 2, Cout) as Shape{Cin, 2, 2, Cout}; biases Shape{1, 1, 1, Cout}.
// Ops that take `out` write their result into it (a channel view of a wider buffer, usually: the
// zero-copy skip concatenation) instead of a fresh tensor.
//
// Precision (engine/precision.h): the activations' scalar type picks the kernels' fp32 or bf16
// overloads (bf16: the weights are the parameter store's bf16 copy, biases and every weight or
// bias gradient fp32); under tf32 the convolutions run their tensor-core version. The loss reads
// logits of either type and computes in fp32.
#pragma once

#include <functional>

#include "engine/autograd.h"
#include "kernels/loss.h"

namespace unet::ops {

Var conv2d(Context& ctx, const Var& x, const Var& weight, const Var& bias, bool relu, const Var* out = nullptr);
Var conv_transpose2d(Context& ctx, const Var& x, const Var& weight, const Var& bias, const Var* out = nullptr);
Var max_pool2d(Context& ctx, const Var& x);

// The loss of (N, H, W, 1) logits against (N, H, W, 1) 0/1 targets: returns a device tensor of
// three values (total, BCE, Dice; kernels/loss.h). When recording, dL/dlogits is computed in the
// same pass and becomes the logits' gradient, so the loss must be the last op before backward().
// With `across`, these logits are one rank's share of a global batch (docs/distributed.md).
struct LossReduction {
  int global_samples;  // the global batch's N
  // Adds the batch sums (loss_sum::count doubles in device memory) across the ranks, in place,
  // ordered on the stream: between the sums and the loss formed from them (kernels/loss.h).
  std::function<void(double* batch_sums, Stream stream)> add_across_ranks;
};
Tensor segmentation_loss(Context& ctx, const Var& logits, const Tensor& target, const LossConfig& config,
                         const LossReduction* across = nullptr);

}  // namespace unet::ops
