// nnU-Net v2's summary.json, for comparing with nnU-Net's own evaluation (nnunetv2/evaluation):
//
//   {"metric_per_case": [{"reference_file": ..., "prediction_file": ...,
//                         "metrics": {"1": {"Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref"}}}, ...],
//    "mean": {"1": {each metric's mean over the cases, NaNs left out}},
//    "foreground_mean": {the mean over foreground labels of "mean": here label 1's alone}}
//
// As in nnU-Net v2, a case with neither tumour nor prediction has Dice and IoU NaN (0/0), and the
// means skip it; JSON has no NaN, so it is written as null. (The tables and CSV of `unet eval` score
// that case as 1; docs/metrics.md.) With HD95, "HD95" (voxels) and "HD95_mm" join each case's
// metrics, null where undefined or the spacing unknown.
#pragma once

#include <string>
#include <vector>

#include "engine/json.h"
#include "models/metrics.h"

namespace unet {

// One entry per volume; `reference` and `prediction` name each case's files (or the patient).
Json nnunet_summary(const std::vector<VolumeMetrics>& volumes, const std::vector<std::string>& reference,
                    const std::vector<std::string>& prediction, bool with_hd95);

}  // namespace unet
