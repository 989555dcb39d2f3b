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

namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();

// Felzenszwalb and Huttenlocher's squared distance transform along one line of `n` values `step`
// apart, in place: f(q) <- min_p (spacing (q - p))^2 + f(p), over the lower envelope of the
// parabolas rooted at the finite f(p). Lines with no finite value stay infinite.
void distance_transform_line(double* f, int64_t n, int64_t step, double spacing, std::vector<double>& line,
                             std::vector<int64_t>& roots, std::vector<double>& bounds) {
  const double s2 = spacing * spacing;
  line.resize(static_cast<size_t>(n));
  roots.clear();
  bounds.clear();
  for (int64_t q = 0; q < n; ++q) line[q] = f[q * step];
  auto meet = [&](int64_t p, int64_t r) {  // where the parabolas of p < r cross
    return ((line[r] + s2 * r * r) - (line[p] + s2 * p * p)) / (2 * s2 * (r - p));
  };
  for (int64_t q = 0; q < n; ++q) {
    if (line[q] == infinity) continue;
    while (!roots.empty() && meet(roots.back(), q) <= bounds.back()) {
      roots.pop_back();
      bounds.pop_back();
    }
    bounds.push_back(roots.empty() ? -infinity : meet(roots.back(), q));
    roots.push_back(q);
  }
  if (roots.empty()) return;
  size_t k = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (k + 1 < roots.size() && bounds[k + 1] < static_cast<double>(q)) ++k;
    const double d = static_cast<double>(q - roots[k]) * spacing;
    f[q * step] = d * d + line[roots[k]];
  }
}

// Surface voxels of a (depth, height, width) mask: in it, with a face neighbour outside it.
std::vector<uint8_t> surface_of(const uint8_t* mask, int depth, int height, int width) {
  std::vector<uint8_t> surface(static_cast<size_t>(depth) * height * width, 0);
  auto inside = [&](int z, int y, int x) {
    return z >= 0 && z < depth && y >= 0 && y < height && x >= 0 && x < width &&
           mask[(int64_t{z} * height + y) * width + x] != 0;
  };
  for (int z = 0; z < depth; ++z)
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        surface[(int64_t{z} * height + y) * width + x] =
            inside(z, y, x) && !(inside(z - 1, y, x) && inside(z + 1, y, x) && inside(z, y - 1, x) &&
                                 inside(z, y + 1, x) && inside(z, y, x - 1) && inside(z, y, x + 1));
      }
  return surface;
}

// Distance from every voxel to the nearest voxel of `surface`, in units of `spacing`.
std::vector<double> distance_to(const std::vector<uint8_t>& surface, int depth, int height, int width,
                                const double spacing[3]) {
  std::vector<double> f(surface.size());
  for (size_t i = 0; i < f.size(); ++i) f[i] = surface[i] ? 0 : infinity;
  std::vector<double> line, bounds;
  std::vector<int64_t> roots;
  const int64_t plane = int64_t{height} * width;
  for (int64_t z = 0; z < depth; ++z)
    for (int64_t y = 0; y < height; ++y) distance_transform_line(&f[z * plane + y * width], width, 1, spacing[2], line, roots, bounds);
  for (int64_t z = 0; z < depth; ++z)
    for (int64_t x = 0; x < width; ++x) distance_transform_line(&f[z * plane + x], height, width, spacing[1], line, roots, bounds);
  for (int64_t i = 0; i < plane; ++i) distance_transform_line(&f[i], depth, plane, spacing[0], line, roots, bounds);
  for (double& v : f) v = std::sqrt(v);
  return f;
}

// numpy.percentile's default: linear interpolation between the order statistics around
// (n - 1) q / 100.
double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double at = (static_cast<double>(values.size()) - 1) * q / 100;
  const auto below = static_cast<size_t>(std::floor(at));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (at - static_cast<double>(below)) * (values[above] - values[below]);
}

}  // namespace

double hd95(const uint8_t* predicted, const uint8_t* truth, int depth, int height, int width, const double spacing[3]) {
  const int64_t voxels = int64_t{depth} * height * width;
  const bool any_predicted = std::any_of(predicted, predicted + voxels, [](uint8_t v) { return v != 0; });
  const bool any_truth = std::any_of(truth, truth + voxels, [](uint8_t v) { return v != 0; });
  if (!any_predicted && !any_truth) return 0;
  if (any_predicted != any_truth) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<uint8_t> surface_p = surface_of(predicted, depth, height, width);
  const std::vector<uint8_t> surface_t = surface_of(truth, depth, height, width);
  const std::vector<double> to_p = distance_to(surface_p, depth, height, width, spacing);
  const std::vector<double> to_t = distance_to(surface_t, depth, height, width, spacing);
  std::vector<double> pooled;
  for (int64_t i = 0; i < voxels; ++i) {
    if (surface_p[i]) pooled.push_back(to_t[i]);
    if (surface_t[i]) pooled.push_back(to_p[i]);
  }
  return percentile(std::move(pooled), 95);
}

double mean_of_defined(const std::vector<double>& values, int* undefined) {
  double sum = 0;
  int count = 0;
  *undefined = 0;
  for (const double v : values) {
    if (std::isnan(v)) {
      ++*undefined;
    } else {
      sum += v;
      ++count;
    }
  }
  return count ? sum / count : 0;
}

void summarise_hd95(MetricsSummary& summary) {
  std::vector<double> voxels, mm;
  for (const VolumeMetrics& v : summary.volumes) {
    voxels.push_back(v.hd95_voxels);
    mm.push_back(v.hd95_mm);
  }
  int undefined_mm = 0;
  summary.has_hd95 = true;
  summary.hd95_voxels_mean = mean_of_defined(voxels, &summary.hd95_undefined);
  summary.hd95_mm_mean = mean_of_defined(mm, &undefined_mm);
}

MetricsAccumulator::MetricsAccumulator(std::vector<std::string> volume_names) {
  for (auto& name : volume_names) volumes_.push_back({std::move(name), {}, 0});
}

void MetricsAccumulator::add_slice(int volume, const uint8_t* predicted, const float* mask, int64_t pixels, double bce) {
  add_slice(volume, confusion_of(predicted, mask, pixels), pixels, bce);
}

void MetricsAccumulator::add_slice(int volume, const Confusion& c, int64_t pixels, double bce) {
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
