// The command-line options of the commands that read a dataset (dataset, train, evaluate) and of
// the augmentation, so every command spells and defaults them the same way.
#pragma once

#include <cstdint>
#include <string>

#include "data/dataset.h"
#include "engine/safetensors.h"
#include "kernels/augment.h"
#include "models/checkpoint.h"
#include "tools/cli.h"

namespace unet {

struct DataOptions {
  std::string data;  // the dataset folder
  int image_size = 256;
  std::string patient_pattern;
  bool skip_bad = false;
  bool zscore = false;

  FindOptions find() const { return {patient_pattern, skip_bad}; }
  LoadOptions load() const { return {image_size, skip_bad}; }
};

// --data, --image-size, --patient-pattern, --skip-bad; and --zscore when `with_zscore`. Each has
// `role` (unet train: FlagRole::identity).
void add_data_options(Options& options, DataOptions* data, bool with_zscore, bool data_required = true,
                      FlagRole role = FlagRole::none);

// How `unet eval` and `unet predict` prepare slices for weights: as the weights record
// (models/checkpoint.h Preprocessing) unless --image-size or --zscore (the values given in
// `image_size` and `zscore`) say otherwise. Another --image-size is deliberate and supported (the
// model is fully convolutional): it is used, with a warning that the figures are not at the
// training's size. --zscore on weights trained without it is refused (UsageError): such a model
// was never shown normalised slices. Weights that record nothing (written before unet recorded
// it) get the flags' values, with a one-line notice.
// `recorded` is what the weights in `source` record (Ensemble::recorded()).
Preprocessing preprocessing_for(const std::optional<Preprocessing>& recorded, const std::string& source,
                                const Options& options, int image_size, bool zscore);

// Symmetric ranges, as flags: --flip-h P, --flip-v P, --rotate DEGREES (uniform in [-D, D]),
// --zoom F (scale uniform in [1 - F, 1 + F]), --shift F (of the size), --no-augment.
struct AugmentOptions {
  double flip_h = 0.5, flip_v = 0.5, rotate = 15.0, zoom = 0.1, shift = 0.1;
  bool none = false;

  AugmentRanges ranges() const;  // throws UsageError for a range out of bounds
};
void add_augment_options(Options& options, AugmentOptions* augment, FlagRole role = FlagRole::none);

}  // namespace unet
