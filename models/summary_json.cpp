#include "models/summary_json.h"

#include <cmath>
#include <utility>

#include "kernels/backend.h"

namespace unet {

namespace {

Json number_or_null(double value) { return std::isnan(value) ? Json() : Json(value); }

// Each metric of one case, in nnU-Net's order; NaN where nnU-Net's formula divides 0 by 0.
std::vector<std::pair<std::string, double>> case_metrics(const VolumeMetrics& v, bool with_hd95) {
  const Confusion& c = v.confusion;
  const auto tp = static_cast<double>(c.tp), fp = static_cast<double>(c.fp), fn = static_cast<double>(c.fn);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::pair<std::string, double>> metrics = {{"Dice", c.empty() ? nan : 2 * tp / (2 * tp + fp + fn)},
                                                         {"IoU", c.empty() ? nan : tp / (tp + fp + fn)},
                                                         {"FP", fp},
                                                         {"TP", tp},
                                                         {"FN", fn},
                                                         {"TN", static_cast<double>(c.tn)},
                                                         {"n_pred", static_cast<double>(c.predicted())},
                                                         {"n_ref", static_cast<double>(c.truth())}};
  if (with_hd95) {
    metrics.emplace_back("HD95", v.hd95_voxels);
    metrics.emplace_back("HD95_mm", v.hd95_mm);
  }
  return metrics;
}

}  // namespace

Json nnunet_summary(const std::vector<VolumeMetrics>& volumes, const std::vector<std::string>& reference,
                    const std::vector<std::string>& prediction, bool with_hd95) {
  if (reference.size() != volumes.size() || prediction.size() != volumes.size()) {
    throw Error("summary.json: one reference and one prediction name per case are needed");
  }
  Json cases = Json::array();
  std::vector<std::pair<std::string, std::vector<double>>> columns;
  for (size_t i = 0; i < volumes.size(); ++i) {
    const auto metrics = case_metrics(volumes[i], with_hd95);
    Json label = Json::object();
    for (size_t m = 0; m < metrics.size(); ++m) {
      const auto& [name, value] = metrics[m];
      const bool count = name != "Dice" && name != "IoU" && name.rfind("HD95", 0) != 0;
      label.set(name, count ? Json(static_cast<int64_t>(value)) : number_or_null(value));
      if (columns.size() <= m) columns.push_back({name, {}});
      columns[m].second.push_back(value);
    }
    Json by_label = Json::object();
    by_label.set("1", label);
    Json entry = Json::object();
    entry.set("reference_file", reference[i]);
    entry.set("prediction_file", prediction[i]);
    entry.set("metrics", by_label);
    cases.push(entry);
  }
  Json mean = Json::object();
  for (const auto& [name, values] : columns) {
    int undefined = 0;
    const double m = mean_of_defined(values, &undefined);
    mean.set(name, undefined == static_cast<int>(values.size()) ? Json() : Json(m));  // nanmean of no numbers: NaN
  }
  Json means = Json::object();
  means.set("1", mean);
  Json summary = Json::object();
  summary.set("metric_per_case", cases);
  summary.set("mean", means);
  summary.set("foreground_mean", mean);  // one foreground label: its mean
  return summary;
}

}  // namespace unet
