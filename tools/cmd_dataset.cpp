// unet dataset: what a dataset folder holds, and how long loading it takes.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "data/dataset.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/data_options.h"

namespace unet {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string file_sizes_text(const Dataset& data) {
  std::map<std::pair<int, int>, int> counts;
  for (const auto& size : data.file_sizes) ++counts[size];
  std::string text;
  for (const auto& [size, count] : counts) {
    if (!text.empty()) text += ", ";
    text += std::to_string(size.first) + "x" + std::to_string(size.second);
    if (counts.size() > 1) text += " (" + std::to_string(count) + ")";
  }
  return text;
}

}  // namespace

int command_dataset(const Args& args) {
  DataOptions data_options;
  bool list_patients = false;
  Options options("dataset", "Prints what a dataset folder holds and how long loading it takes. Writes nothing.");
  add_data_options(options, &data_options, false);
  options.flag("patients", &list_patients, "also list each patient's slices and slices with tumour");
  if (!options.parse(args)) return 0;

  const auto start = std::chrono::steady_clock::now();
  const DatasetFiles files = find_slices(data_options.data, data_options.find());
  const double find_seconds = seconds_since(start);
  const Dataset data = load_dataset(files, data_options.load());
  const double total_seconds = seconds_since(start);

  const int64_t plane = int64_t{data.height} * data.width;
  int64_t tumour_slices = 0, tumour_pixels = 0;
  for (int64_t s = 0; s < data.slices(); ++s) tumour_slices += data.tumour[s];
  for (const uint8_t m : data.masks) tumour_pixels += m;
  const double resident_mib = static_cast<double>(data.images.size() + data.masks.size()) / (1 << 20);

  std::printf("dataset       %s\n", data.root.c_str());
  std::printf("layout        %s\n", layout_name(data.layout));
  std::printf("patients      %zu\n", data.patients.size());
  std::printf("slices        %lld (%lld with tumour, %.1f%%)\n", static_cast<long long>(data.slices()),
              static_cast<long long>(tumour_slices), 100.0 * tumour_slices / data.slices());
  std::printf("tumour pixels %.3f%% of all pixels\n", 100.0 * tumour_pixels / (plane * data.slices()));
  std::printf("image size    %s as stored; %dx%d x 3 channels loaded\n", file_sizes_text(data).c_str(), data.width,
              data.height);
  std::printf("memory        %.1f MiB as uint8 (images and masks)\n", resident_mib);
  std::printf("loading       %.3f s (finding files %.3f s; decoding and resizing %.3f s on %d threads)\n",
              total_seconds, find_seconds, total_seconds - find_seconds, omp_get_max_threads());
  if (!data.skipped.empty()) {
    std::printf("skipped       %zu (--skip-bad):\n", data.skipped.size());
    for (const auto& line : data.skipped) std::printf("  %s\n", line.c_str());
  }
  if (list_patients) {
    std::vector<int64_t> slices(data.patients.size(), 0), tumour(data.patients.size(), 0);
    for (int64_t s = 0; s < data.slices(); ++s) {
      ++slices[data.volume[s]];
      tumour[data.volume[s]] += data.tumour[s];
    }
    std::printf("\n%-32s %7s %7s\n", "patient", "slices", "tumour");
    for (size_t v = 0; v < data.patients.size(); ++v) {
      std::printf("%-32s %7lld %7lld\n", data.patients[v].c_str(), static_cast<long long>(slices[v]),
                  static_cast<long long>(tumour[v]));
    }
  }
  return 0;
}

}  // namespace unet
