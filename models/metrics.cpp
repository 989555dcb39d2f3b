#include "models/metrics.h"

#include <algorithm>
#include <cmath>

#include "kernels/backend.h"

namespace unet {

void Confusion::operator+=(const Confusion& other) {
  tp += other.tp;
  fp += other.fp;
  fn += other.fn;
  tn += other.tn;
}

double Confusion::dice() const { return empty() ? 1.0 : 2.0 * tp / static_cast<double>(2 * tp + fp + fn); }
double Confusion::iou() const { return empty() ? 1.0 : tp / static_cast<double>(tp + fp + fn); }

Confusion confusion_of(const uint8_t* predicted, const float* mask, int64_t pixels) {
  Confusion c;
  for (int64_t i = 0; i < pixels; ++i) {
    const bool p = predicted[i] != 0, t = mask[i] > 0.5f;
    c.tp += p && t;
    c.fp += p && !t;
    c.fn += !p && t;
    c.tn += !p && !t;
  }
  return c;
}

double bce_sum(const float* logits, const float* mask, int64_t pixels) {
  double sum = 0;
  for (int64_t i = 0; i < pixels; ++i) {
    const double x = logits[i], g = mask[i];
    sum += std::max(x, 0.0) - x * g + std::log1p(std::exp(-std::abs(x)));
  }
  return sum;
}

void keep_largest_component(std::vector<uint8_t>& volume, int depth, int height, int width) {
  const int64_t total = int64_t{depth} * height * width;
  if (static_cast<int64_t>(volume.size()) != total) throw Error("largest component: volume size mismatch");
  std::vector<int32_t> label(static_cast<size_t>(total), 0);
  std::vector<int64_t> sizes{0};
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < total; ++start) {
    if (!volume[start] || label[start]) continue;
    const auto id = static_cast<int32_t>(sizes.size());
    int64_t size = 0;
    stack.assign(1, start);
    label[start] = id;
    while (!stack.empty()) {
      const int64_t at = stack.back();
      stack.pop_back();
      ++size;
      const int z = static_cast<int>(at / (int64_t{height} * width));
      const int y = static_cast<int>(at / width % height);
      const int x = static_cast<int>(at % width);
      for (int dz = -1; dz <= 1; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const int nz = z + dz, ny = y + dy, nx = x + dx;
            if (nz < 0 || nz >= depth || ny < 0 || ny >= height || nx < 0 || nx >= width) continue;
            const int64_t next = (int64_t{nz} * height + ny) * width + nx;
            if (volume[next] && !label[next]) {
              label[next] = id;
              stack.push_back(next);
            }
          }
    }
    sizes.push_back(size);
  }
  if (sizes.size() <= 2) return;  // zero or one component
  const auto largest = static_cast<int32_t>(std::max_element(sizes.begin() + 1, sizes.end()) - sizes.begin());
  for (int64_t i = 0; i < total; ++i) volume[i] = label[i] == largest;
}

MetricsAccumulator::MetricsAccumulator(std::vector<std::string> volume_names) {
  for (auto& name : volume_names) volumes_.push_back({std::move(name), {}, 0});
}

void MetricsAccumulator::add_slice(int volume, const uint8_t* predicted, const float* mask, int64_t pixels, double bce) {
  const Confusion c = confusion_of(predicted, mask, pixels);
  VolumeMetrics& v = volumes_.at(static_cast<size_t>(volume));
  v.confusion += c;
  ++v.slices;
  if (c.truth() > 0) {
    slice_dice_sum_ += c.dice();
    slice_iou_sum_ += c.iou();
    ++tumour_slices_;
  }
  bce_sum_ += bce;
  pixels_ += pixels;
}

namespace {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double mean(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v;
  return values.empty() ? 0 : sum / static_cast<double>(values.size());
}

}  // namespace

MetricsSummary MetricsAccumulator::summary() const {
  MetricsSummary s;
  Confusion global;
  std::vector<double> dice, iou;
  for (const VolumeMetrics& v : volumes_) {
    if (v.slices == 0) continue;
    s.volumes.push_back(v);
    dice.push_back(v.confusion.dice());
    iou.push_back(v.confusion.iou());
    s.empty_volumes += v.confusion.empty();
    global += v.confusion;
  }
  s.volume_dice_mean = mean(dice);
  s.volume_dice_median = median(dice);
  s.volume_iou_mean = mean(iou);
  s.volume_iou_median = median(iou);
  s.tumour_slices = tumour_slices_;
  s.slice_dice_mean = tumour_slices_ ? slice_dice_sum_ / tumour_slices_ : 0;
  s.slice_iou_mean = tumour_slices_ ? slice_iou_sum_ / tumour_slices_ : 0;
  s.global_dice = global.dice();
  s.global_iou = global.iou();
  s.bce = pixels_ ? bce_sum_ / static_cast<double>(pixels_) : 0;
  return s;
}

}  // namespace unet
