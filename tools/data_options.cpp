#include "tools/data_options.h"

#include <cstdio>

namespace unet {

void add_data_options(Options& options, DataOptions* data, bool with_zscore, bool data_required, FlagRole role) {
  options.add("data", &data->data, "DIR", "dataset folder: kaggle_3m layout (patient folders) or images/ + masks/")
      .role(role);
  if (data_required) options.required();
  options.add("image-size", &data->image_size, "N", "resize slices to N x N (bilinear images, nearest masks)")
      .at_least(1).role(role);
  options.add("patient-pattern", &data->patient_pattern, "REGEX",
              "images/ + masks/: the patient id is REGEX's first group in each file stem "
              "(default: one patient per image)")
      .role(role);
  options.flag("skip-bad", &data->skip_bad,
               "leave out unreadable or unpaired slices (and count them) instead of stopping")
      .role(role);
  if (with_zscore) {
    options.flag("zscore", &data->zscore, "normalise each channel by its volume's mean and standard deviation")
        .role(role);
  }
}

void add_augment_options(Options& options, AugmentOptions* augment, FlagRole role) {
  options.add("flip-h", &augment->flip_h, "P", "probability of a horizontal flip").role(role)
      .add("flip-v", &augment->flip_v, "P", "probability of a vertical flip").role(role)
      .add("rotate", &augment->rotate, "DEGREES", "rotation uniform in [-DEGREES, DEGREES]").role(role)
      .add("zoom", &augment->zoom, "F", "scale uniform in [1 - F, 1 + F]").role(role)
      .add("shift", &augment->shift, "F", "shift uniform in [-F, F] of the image size, each direction").role(role)
      .flag("no-augment", &augment->none, "no augmentation: every sample is its slice as loaded").role(role);
}

Preprocessing preprocessing_for(const std::optional<Preprocessing>& recorded, const std::string& source,
                                const Options& options, int image_size, bool zscore) {
  if (!recorded) {
    std::fprintf(stderr,
                 "note: %s records no preprocessing (written before unet recorded it); using --image-size %d %s\n",
                 source.c_str(), image_size, zscore ? "with --zscore" : "without --zscore");
    return {image_size, zscore};
  }
  if (zscore && !recorded->zscore) {
    throw UsageError("--zscore contradicts " + source + ", whose model takes slices without it; "
                     "leave --zscore out");
  }
  Preprocessing chosen = *recorded;
  if (options.given("image-size") && image_size != recorded->image_size) {
    std::fprintf(stderr, "warning: %s was trained on %dx%d slices; using %dx%d as --image-size asks (figures at "
                 "another size than training's)\n", source.c_str(), recorded->image_size,
                 recorded->image_size, image_size, image_size);
    chosen.image_size = image_size;
  }
  return chosen;
}

AugmentRanges AugmentOptions::ranges() const {
  auto check = [](const char* name, double value, double low, double high) {
    if (!(value >= low && value <= high)) {
      throw UsageError(std::string("--") + name + ": " + std::to_string(value) + " is outside [" +
                       std::to_string(low) + ", " + std::to_string(high) + "]");
    }
  };
  if (none) return no_augmentation;
  check("flip-h", flip_h, 0.0, 1.0);
  check("flip-v", flip_v, 0.0, 1.0);
  check("rotate", rotate, 0.0, 180.0);
  check("zoom", zoom, 0.0, 0.9);
  check("shift", shift, 0.0, 1.0);
  AugmentRanges r;
  r.flip_h = static_cast<float>(flip_h);
  r.flip_v = static_cast<float>(flip_v);
  r.rotate_min = static_cast<float>(-rotate);
  r.rotate_max = static_cast<float>(rotate);
  r.zoom_min = static_cast<float>(1.0 - zoom);
  r.zoom_max = static_cast<float>(1.0 + zoom);
  r.shift = static_cast<float>(shift);
  return r;
}

}  // namespace unet
