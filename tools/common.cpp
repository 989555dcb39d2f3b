#include "tools/common.h"

#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "tools/cli.h"

namespace unet {

void check_validation_flags(const Options& options, const TrainingConfig& run) {
  if (options.given("val-frac") && options.given("val-patients")) {
    throw UsageError("give --val-frac or --val-patients, not both");
  }
  if (run.val_patients < 0 && run.val_fraction >= 1) {
    throw UsageError("--val-frac: must be below 1 (or use --val-patients)");
  }
  if (options.given("fold") && !options.given("folds")) throw UsageError("--fold needs --folds");
  if (!options.given("folds")) return;
  if (options.given("val-frac") || options.given("val-patients")) {
    throw UsageError("--folds chooses the validation patients: give it without --val-frac or --val-patients");
  }
  if (run.folds < 2) throw UsageError("--folds: " + std::to_string(run.folds) + " is below the minimum, 2");
  if (run.fold < 0 || run.fold >= run.folds) {
    throw UsageError("--fold: " + std::to_string(run.fold) + " is not in 0.." + std::to_string(run.folds - 1) +
                     " (--folds " + std::to_string(run.folds) + ")");
  }
}

void add_threads_option(Options& options, int* threads) {
  options.add("threads", threads, "N", "OpenMP threads for the cpu device").at_least(1)
      .shown_default("OMP_NUM_THREADS, else every core");
}

void apply_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
}

void check_batch_among_ranks(int batch, int ranks) {
  if (ranks > batch) {
    throw UsageError("--batch " + std::to_string(batch) + " is smaller than the " + std::to_string(ranks) +
                     " ranks: each rank needs at least one sample of every batch");
  }
  if (batch % ranks != 0) {
    throw UsageError("--batch " + std::to_string(batch) + " does not divide among " + std::to_string(ranks) +
                     " ranks (the global batch is split evenly: use a multiple of " + std::to_string(ranks) + ")");
  }
}

void add_precision_option(Options& options, std::string* precision, FlagRole role) {
  options.add("precision", precision, "P", "auto, fp32, tf32 or bf16 (docs/precision.md)")
      .choices({"auto", "fp32", "tf32", "bf16"}).shown_default("auto: bf16 on cuda, fp32 on cpu and sim").role(role);
}

Precision resolve_precision(const std::string& name, DeviceKind kind) {
  return name == "auto" ? default_precision(kind) : parse_precision(name);
}

DeviceKind resolve_device(const std::string& name, bool announce) {
  if (name != "auto") {
    const DeviceKind kind = parse_device(name);
    if (kind == DeviceKind::cuda) device(kind);  // fails here, with the reason, if it cannot run
    return kind;
  }
  std::string why;
  if (cuda_available(&why)) return DeviceKind::cuda;
  if (announce) std::fprintf(stderr, "note: no usable GPU (%s); running on the cpu device\n", why.c_str());
  return DeviceKind::cpu;
}

LossConfig parse_loss(const std::string& name) {
  LossConfig config;
  if (name == "bce") {
    config.bce_weight = 1;
    config.dice_weight = 0;
  } else if (name == "dice") {
    config.bce_weight = 0;
    config.dice_weight = 1;
  } else if (name == "bce+dice") {
    config.bce_weight = 1;
    config.dice_weight = 1;
  } else {
    throw UsageError("--loss: '" + name + "' is not one of bce, dice, bce+dice");
  }
  return config;
}

void check_writable(const std::string& path) {
  const std::filesystem::path target(path);
  const std::filesystem::path folder = target.has_parent_path() ? target.parent_path() : ".";
  std::error_code error;
  if (!std::filesystem::is_directory(folder, error)) throw Error(path + ": folder " + folder.string() + " does not exist");
  if (std::filesystem::is_directory(target, error)) throw Error(path + ": is a folder, not a file");
  if (::access(folder.c_str(), W_OK) != 0) throw Error(path + ": folder " + folder.string() + " is not writable");
}

void check_readable_file(const std::string& path, const std::string& what) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw Error(what + " " + path + ": no such file");
  if (!std::filesystem::is_regular_file(path, error)) throw Error(what + " " + path + ": not a regular file");
}

}  // namespace unet
