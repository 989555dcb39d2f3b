#include "models/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "models/inference.h"
#include "tools/csv.h"

namespace unet {

namespace {

int input_channels(const UNet& model) {
  const int channels = model.config().in_channels;
  if (channels != slice_channel_count) {
    throw Error("the model takes " + std::to_string(channels) + " input channels; the slices have " +
                std::to_string(slice_channel_count) + " (pre-contrast, FLAIR, post-contrast)");
  }
  return channels;
}

}  // namespace

Evaluator::Evaluator(const UNet& model, ResidentDataset& resident, const Dataset& data, int batch)
    : Evaluator(std::vector<const UNet*>{&model}, resident, data, batch, false) {}

Evaluator::Evaluator(std::vector<const UNet*> models, ResidentDataset& resident, const Dataset& data, int batch,
                     bool mirror)
    : models_(std::move(models)),
      mirror_(mirror),
      resident_(resident),
      data_(data),
      batch_(batch),
      channels_(input_channels(*models_.front())),
      device_(resident.device()),
      stream_(device_.create_stream()),
      context_(std::make_unique<Context>(device_, stream_, models_.front()->precision())) {
  context_->set_recording(false);
  const Shape image_shape{batch, data.height, data.width, channels_}, mask_shape{batch, data.height, data.width, 1};
  image_ = allocate_tensor(device_, image_shape, context_->activation_type());  // bf16 under bf16
  mask_ = Tensor(&device_, static_cast<float*>(device_.allocate(mask_shape.numel() * sizeof(float))), mask_shape);
}

Evaluator::~Evaluator() {
  context_.reset();
  device_.release(image_.bytes());
  device_.release(mask_.data());
  device_.destroy_stream(stream_);
}

std::vector<float> Evaluator::batch_logits(const std::vector<int32_t>& chunk) {
  const int n = static_cast<int>(chunk.size());
  if (image_.scalar_type() == ScalarType::bf16) {
    resident_.eval_batch(chunk, BatchTargetBf16{image_.data<bf16>(), image_.pixel_stride(), mask_.data(), 1}, stream_);
  } else {
    resident_.eval_batch(chunk, BatchTarget{image_.data(), image_.pixel_stride(), mask_.data(), 1}, stream_);
  }
  context_->end_step();
  const Tensor images = image_.samples(n);
  if (models_.size() == 1 && !mirror_) return models_[0]->forward(*context_, images).value().to_host();
  // The mean probability's logit, from probabilities kept within [1e-7, 1 - 1e-7] so that it is finite.
  std::vector<float> logits = mean_probabilities(*context_, models_, images, mirror_);
  for (float& v : logits) {
    const double p = std::clamp(static_cast<double>(v), 1e-7, 1 - 1e-7);
    v = static_cast<float>(std::log(p / (1 - p)));
  }
  return logits;
}

std::vector<float> Evaluator::probabilities(const std::vector<int32_t>& slices) {
  const int64_t plane = int64_t{data_.height} * data_.width;
  std::vector<float> out(static_cast<size_t>(plane) * slices.size());
  for (size_t first = 0; first < slices.size(); first += static_cast<size_t>(batch_)) {
    const std::vector<int32_t> chunk(slices.begin() + static_cast<long>(first),
                                     slices.begin() + static_cast<long>(std::min(slices.size(), first + batch_)));
    const std::vector<float> logits = batch_logits(chunk);
    for (size_t i = 0; i < logits.size(); ++i) out[first * plane + i] = 1 / (1 + std::exp(-logits[i]));
  }
  return out;
}

Evaluation Evaluator::run(const std::vector<int32_t>& unordered, bool largest_component, float logit_threshold,
                          bool hd95) {
  // In dataset order, each volume's slices are contiguous and in slice order.
  std::vector<int32_t> slices = unordered;
  std::sort(slices.begin(), slices.end());
  const int64_t plane = int64_t{data_.height} * data_.width;
  Evaluation result;
  result.slices = slices;
  result.predicted.resize(static_cast<size_t>(plane) * slices.size());
  std::vector<double> bce(slices.size());
  std::vector<float> mask(static_cast<size_t>(plane));
  for (size_t first = 0; first < slices.size(); first += static_cast<size_t>(batch_)) {
    const std::vector<int32_t> chunk(slices.begin() + static_cast<long>(first),
                                     slices.begin() + static_cast<long>(std::min(slices.size(), first + batch_)));
    const int n = static_cast<int>(chunk.size());
    const std::vector<float> logits = batch_logits(chunk);
    for (int i = 0; i < n; ++i) {
      const size_t at = first + static_cast<size_t>(i);
      const float* slice_logits = logits.data() + i * plane;
      const uint8_t* truth = data_.masks.data() + chunk[i] * plane;
      for (int64_t p = 0; p < plane; ++p) {
        result.predicted[at * plane + p] = slice_logits[p] > logit_threshold;
        mask[p] = truth[p];
      }
      bce[at] = bce_sum(slice_logits, mask.data(), plane);
    }
  }
  std::vector<double> volume_hd95(data_.patients.size(), std::numeric_limits<double>::quiet_NaN());
  for (size_t begin = 0; begin < slices.size() && (largest_component || hd95);) {
    size_t end = begin;
    while (end < slices.size() && data_.volume[slices[end]] == data_.volume[slices[begin]]) ++end;
    const int depth = static_cast<int>(end - begin);
    if (largest_component) {
      std::vector<uint8_t> volume(result.predicted.begin() + static_cast<long>(begin * plane),
                                  result.predicted.begin() + static_cast<long>(end * plane));
      keep_largest_component(volume, depth, data_.height, data_.width);
      std::copy(volume.begin(), volume.end(), result.predicted.begin() + static_cast<long>(begin * plane));
    }
    if (hd95) {
      std::vector<uint8_t> truth(static_cast<size_t>(depth * plane));
      for (size_t at = begin; at < end; ++at) {
        std::copy_n(data_.masks.data() + slices[at] * plane, plane, truth.begin() + static_cast<long>((at - begin) * plane));
      }
      const double voxel[3] = {1, 1, 1};  // slices one voxel apart: a slice dataset has no spacing
      volume_hd95[data_.volume[slices[begin]]] =
          unet::hd95(result.predicted.data() + begin * plane, truth.data(), depth, data_.height, data_.width, voxel);
    }
    begin = end;
  }
  MetricsAccumulator metrics(data_.patients);
  for (size_t at = 0; at < slices.size(); ++at) {
    const uint8_t* truth = data_.masks.data() + slices[at] * plane;
    for (int64_t p = 0; p < plane; ++p) mask[p] = truth[p];
    result.confusions.push_back(confusion_of(result.predicted.data() + at * plane, mask.data(), plane));
    metrics.add_slice(data_.volume[slices[at]], result.confusions.back(), plane, bce[at]);
  }
  result.summary = metrics.summary();
  result.bce = std::move(bce);
  if (hd95) {
    for (VolumeMetrics& v : result.summary.volumes) {
      const auto id = std::find(data_.patients.begin(), data_.patients.end(), v.name) - data_.patients.begin();
      v.hd95_voxels = volume_hd95[static_cast<size_t>(id)];
    }
    summarise_hd95(result.summary);
  }
  return result;
}

std::string patient_table_csv(const MetricsSummary& summary) {
  const auto six_decimals = [](double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.6f", value);
    return std::string(text);
  };
  const auto defined = [&](double value) { return std::isnan(value) ? std::string() : six_decimals(value); };
  std::string text = std::string("patient,slices,dice,iou,true_voxels,predicted_voxels") +
                     (summary.has_hd95 ? ",hd95,hd95_mm" : "") + "\n";
  for (const VolumeMetrics& v : summary.volumes) {
    std::vector<std::string> row = {v.name, std::to_string(v.slices), six_decimals(v.confusion.dice()),
                                    six_decimals(v.confusion.iou()), std::to_string(v.confusion.truth()),
                                    std::to_string(v.confusion.predicted())};
    if (summary.has_hd95) {
      row.push_back(defined(v.hd95_voxels));
      row.push_back(defined(v.hd95_mm));
    }
    text += csv_line(row) + "\n";
  }
  return text;
}

}  // namespace unet
