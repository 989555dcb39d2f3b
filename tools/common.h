// What several `unet` commands share: choosing the device, the loss, and checking paths.
#pragma once

#include <string>

#include "engine/device.h"
#include "engine/precision.h"
#include "models/training_run.h"
#include "tools/cli.h"
#include "kernels/loss.h"

namespace unet {

// How unet train chooses its validation patients: --val-frac below 1 or --val-patients, not both;
// or --folds K >= 2 with --fold I in 0..K-1, without either. A UsageError otherwise.
void check_validation_flags(const Options& options, const TrainingConfig& run);

// --threads N: the OpenMP threads the cpu device computes with (the default, 0, leaves OpenMP's:
// OMP_NUM_THREADS, else every core). Results do not depend on it (docs/kernels/convolution.md).
void add_threads_option(Options& options, int* threads);
void apply_threads(int threads);

// Under mpirun the global --batch is split evenly among the ranks: a UsageError unless it divides.
void check_batch_among_ranks(int batch, int ranks);

// --precision auto|fp32|tf32|bf16 (engine/precision.h), with `role` (unet train: identity). "auto"
// is the device's default, which resolve_precision() gives once the device is known.
void add_precision_option(Options& options, std::string* precision, FlagRole role = FlagRole::none);
Precision resolve_precision(const std::string& name, DeviceKind kind);

// "auto" is cuda where a GPU is usable, else cpu (saying so on stderr when `announce`).
DeviceKind resolve_device(const std::string& name, bool announce);
// bce | dice | bce+dice
LossConfig parse_loss(const std::string& name);
// Throws unet::Error unless `path`'s folder exists and is writable.
void check_writable(const std::string& path);
// Throws unet::Error unless `path` is an existing regular file.
void check_readable_file(const std::string& path, const std::string& what);

}  // namespace unet
