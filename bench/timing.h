// How many times a benchmark runs, and what it reports: the arithmetic, apart from the GPU.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace unet::bench {

// The precision a row computes in. fp32: FMA only (cuDNN's CUDNN_FMA_MATH); tf32: fp32 storage,
// tensor cores allowed; bf16: bf16 activations and weights, fp32 accumulation on the tensor cores.
enum class Math { fp32, tf32, bf16 };

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int repetitions = 0;
};

inline Timing summarize(std::vector<double> ms) {
  Timing t;
  if (ms.empty()) return t;
  std::sort(ms.begin(), ms.end());
  const size_t half = ms.size() / 2;
  t.median_ms = ms.size() % 2 ? ms[half] : 0.5 * (ms[half - 1] + ms[half]);
  t.min_ms = ms.front();
  t.max_ms = ms.back();
  t.repetitions = static_cast<int>(ms.size());
  return t;
}

// Timed repetitions after a first run that took first_ms: as many as fit in budget_ms, but at
// least `fewest` (a median needs a few) and at most `most` (more would not change the median).
// Slow kernels (version 1, the teaching kernels) get the fewest.
inline int repetitions(double first_ms, double budget_ms, int fewest, int most) {
  if (!(first_ms > 0)) return most;
  const double fit = std::floor(budget_ms / first_ms);
  return static_cast<int>(std::clamp(fit, static_cast<double>(fewest), static_cast<double>(most)));
}

}  // namespace unet::bench
