// Precision: the arithmetic a model trains and infers in (docs/precision.md).
//
//   fp32  fp32 storage, fp32 CUDA-core math: the kernels as they were before tensor cores.
//   tf32  fp32 storage; the convolutions run version 3 (TF32 mma.sync, operands rounded with
//         cvt.rna, fp32 accumulation). On the cpu device, the references at the same rounding
//         points (cpu::conv2d_*_tf32).
//   bf16  activations and their gradients stored as bf16, the kernels reading a bf16 copy of the
//         weights; fp32 master weights, weight gradients and Adam moments, fp32 loss and sums.
//
// A run's precision is part of its identity (resuming in another is refused); in a weights file
// it is information only, since the fp32 weights load into a model of any precision.
#pragma once

#include <string>

#include "kernels/backend.h"

namespace unet {

enum class Precision { fp32, tf32, bf16 };

const char* precision_name(Precision precision);  // "fp32", "tf32", "bf16"
// "fp32", "tf32" or "bf16"; anything else throws unet::Error.
Precision parse_precision(const std::string& name);
// What a device runs when no precision is asked for: bf16 on cuda (tensor cores), fp32 on cpu and
// sim (the exact reference, and the fastest there).
Precision default_precision(DeviceKind kind);

}  // namespace unet
