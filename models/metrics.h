// Segmentation metrics, defined once (docs/metrics.md).
//
// A pixel is predicted tumour when sigmoid(logit) > 0.5, i.e. logit > 0.
//   Per-volume Dice: 2TP / (2TP + FP + FN) over all slices of one patient (3-D); the headline,
//     reported as mean and median over patients. A patient with no tumour and no prediction scores
//     1, and such patients are counted.
//   Slice Dice: the same per slice, averaged over the slices whose ground truth has tumour.
//   Global Dice: over every pixel of the split at once.
//   IoU = TP / (TP + FP + FN), aggregated the same three ways.
//   BCE: the mean over pixels of the binary cross-entropy of the logits.
//   HD95 (opt-in): the 95th percentile of the symmetric surface distances of a patient's 3-D
//     prediction and truth; 0 when both are empty, NaN (left out of means, and counted) when
//     exactly one is.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace unet {

struct Confusion {
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;

  void operator+=(const Confusion& other);
  bool empty() const { return tp + fp + fn == 0; }  // no tumour, none predicted
  double dice() const;                               // 1 when empty()
  double iou() const;                                // 1 when empty()
  int64_t truth() const { return tp + fn; }
  int64_t predicted() const { return tp + fp; }
};

Confusion confusion_of(const uint8_t* predicted, const float* mask, int64_t pixels);
double bce_sum(const float* logits, const float* mask, int64_t pixels);  // summed, not averaged

// Keeps only the largest 26-connected component of a (depth, height, width) binary volume.
void keep_largest_component(std::vector<uint8_t>& volume, int depth, int height, int width);

// The 95th percentile of the symmetric surface distances between two (depth, height, width) 0/1
// volumes. A surface voxel is a voxel of the mask with a face neighbour outside it (outside the
// volume counts as outside). Each surface voxel of one mask has a distance to the nearest surface
// voxel of the other (Euclidean, in units of `spacing`, which is per axis: depth, height, width);
// the two directed sets are pooled and the 95th percentile taken with linear interpolation between
// order statistics (numpy's default, as MedPy's hd95). 0 when both masks are empty, NaN when
// exactly one is.
double hd95(const uint8_t* predicted, const uint8_t* truth, int depth, int height, int width, const double spacing[3]);

// The mean of the values that are not NaN (0 if none); *undefined counts the NaNs.
double mean_of_defined(const std::vector<double>& values, int* undefined);

struct VolumeMetrics {
  std::string name;
  Confusion confusion;
  int slices = 0;
  double hd95_voxels = std::numeric_limits<double>::quiet_NaN();  // where asked for (set by the evaluator)
  double hd95_mm = std::numeric_limits<double>::quiet_NaN();      // where the spacing is known
};

struct MetricsSummary {
  std::vector<VolumeMetrics> volumes;
  double volume_dice_mean = 0, volume_dice_median = 0;
  double volume_iou_mean = 0, volume_iou_median = 0;
  int empty_volumes = 0;          // no tumour and no prediction: scored 1
  double slice_dice_mean = 0, slice_iou_mean = 0;
  int tumour_slices = 0;          // the slices those means are over
  double global_dice = 0, global_iou = 0;
  double bce = 0;
  // With HD95: the means over the patients where it is defined, and how many it is not (NaN).
  bool has_hd95 = false;
  double hd95_voxels_mean = 0, hd95_mm_mean = 0;
  int hd95_undefined = 0;
};

// Fills the HD95 means of `summary` from its volumes' values.
void summarise_hd95(MetricsSummary& summary);

// Accumulates slice by slice; volumes are identified by index into `names`.
class MetricsAccumulator {
 public:
  explicit MetricsAccumulator(std::vector<std::string> volume_names);
  // One slice: its predicted mask (0/1), ground truth (0/1 floats), and BCE summed over its pixels.
  void add_slice(int volume, const uint8_t* predicted, const float* mask, int64_t pixels, double bce);
  // The same, from the slice's confusion counts (as summed across ranks: models/training_run.cpp).
  void add_slice(int volume, const Confusion& confusion, int64_t pixels, double bce);
  MetricsSummary summary() const;

 private:
  std::vector<VolumeMetrics> volumes_;
  double slice_dice_sum_ = 0, slice_iou_sum_ = 0;
  int tumour_slices_ = 0;
  double bce_sum_ = 0;
  int64_t pixels_ = 0;
};

}  // namespace unet
