#include "models/evaluator.h"

#include <algorithm>
#include <cstdio>

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
    : model_(model),
      resident_(resident),
      data_(data),
      batch_(batch),
      channels_(input_channels(model)),
      device_(resident.device()),
      stream_(device_.create_stream()),
      context_(std::make_unique<Context>(device_, stream_)) {
  context_->set_recording(false);
  const Shape image_shape{batch, data.height, data.width, channels_}, mask_shape{batch, data.height, data.width, 1};
  image_ = Tensor(&device_, static_cast<float*>(device_.allocate(image_shape.numel() * sizeof(float))), image_shape);
  mask_ = Tensor(&device_, static_cast<float*>(device_.allocate(mask_shape.numel() * sizeof(float))), mask_shape);
}

Evaluator::~Evaluator() {
  context_.reset();
  device_.release(image_.data());
  device_.release(mask_.data());
  device_.destroy_stream(stream_);
}

Evaluation Evaluator::run(const std::vector<int32_t>& unordered, bool largest_component, float logit_threshold) {
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
    resident_.eval_batch(chunk, {image_.data(), channels_, mask_.data(), 1}, stream_);
    context_->end_step();
    const Tensor images(&device_, image_.data(), {n, data_.height, data_.width, channels_});
    const std::vector<float> logits = model_.forward(*context_, images).value().to_host();
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
  if (largest_component) {
    for (size_t begin = 0; begin < slices.size();) {
      size_t end = begin;
      while (end < slices.size() && data_.volume[slices[end]] == data_.volume[slices[begin]]) ++end;
      std::vector<uint8_t> volume(result.predicted.begin() + static_cast<long>(begin * plane),
                                  result.predicted.begin() + static_cast<long>(end * plane));
      keep_largest_component(volume, static_cast<int>(end - begin), data_.height, data_.width);
      std::copy(volume.begin(), volume.end(), result.predicted.begin() + static_cast<long>(begin * plane));
      begin = end;
    }
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
  return result;
}

std::string patient_table_csv(const MetricsSummary& summary) {
  const auto six_decimals = [](double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.6f", value);
    return std::string(text);
  };
  std::string text = "patient,slices,dice,iou,true_voxels,predicted_voxels\n";
  for (const VolumeMetrics& v : summary.volumes) {
    text += csv_line({v.name, std::to_string(v.slices), six_decimals(v.confusion.dice()),
                      six_decimals(v.confusion.iou()), std::to_string(v.confusion.truth()),
                      std::to_string(v.confusion.predicted())}) +
            "\n";
  }
  return text;
}

}  // namespace unet
