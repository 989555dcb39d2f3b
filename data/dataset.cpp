#include "data/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
// GCC 12 reports <regex>'s std::function members as maybe-uninitialised under the sanitizers
// (a false positive inside libstdc++).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop

#include "data/image.h"
#include "kernels/backend.h"

namespace unet {

namespace fs = std::filesystem;

const char* layout_name(Layout layout) { return layout == Layout::kaggle_3m ? "kaggle_3m" : "images/masks"; }

namespace {

bool hidden(const fs::path& path) { return path.filename().string().rfind('.', 0) == 0; }

bool image_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
  return extension == ".tif" || extension == ".tiff" || extension == ".png" || extension == ".jpg" ||
         extension == ".jpeg" || extension == ".bmp";
}

// Names with their digit runs compared as numbers: slice_2 before slice_10.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && std::isdigit(static_cast<unsigned char>(a[i_end]))) ++i_end;
      while (j_end < b.size() && std::isdigit(static_cast<unsigned char>(b[j_end]))) ++j_end;
      // Compare the runs without leading zeros: first by length, then digit by digit.
      std::string_view x(a.data() + i, i_end - i), y(b.data() + j, j_end - j);
      while (x.size() > 1 && x[0] == '0') x.remove_prefix(1);
      while (y.size() > 1 && y[0] == '0') y.remove_prefix(1);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = i_end;
      j = j_end;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j || (a.size() - i == b.size() - j && a < b);
}

// Throws the first problem, or, when skipping, records it and carries on.
class Problems {
 public:
  explicit Problems(bool skip) : skip_(skip) {}
  void report(const std::string& path, const std::string& reason) {
    if (!skip_) throw Error(path + ": " + reason);
    skipped_.push_back(path + ": " + reason);
  }
  std::vector<std::string> take() { return std::move(skipped_); }

 private:
  bool skip_;
  std::vector<std::string> skipped_;
};

void check_folder(const fs::path& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) throw Error(path.string() + ": no such file or folder");
  if (!fs::is_directory(status)) throw Error(path.string() + ": not a folder");
}

// The folder's entries, sorted, hidden ones left out.
std::vector<fs::directory_entry> entries(const fs::path& folder) {
  std::vector<fs::directory_entry> out;
  std::error_code error;
  fs::directory_iterator it(folder, error);
  if (error) throw Error(folder.string() + ": cannot list (" + error.message() + ")");
  for (const auto& entry : it) {
    if (!hidden(entry.path())) out.push_back(entry);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return natural_less(a.path().string(), b.path().string()); });
  return out;
}

bool is_folder(const fs::directory_entry& entry) {
  std::error_code error;
  return entry.is_directory(error);
}

// Image files by stem; two files with one stem are a problem (which would be the slice?).
std::map<std::string, fs::path> images_by_stem(const fs::path& folder, Problems& problems) {
  std::map<std::string, fs::path> out;
  for (const auto& entry : entries(folder)) {
    if (is_folder(entry) || !image_extension(entry.path())) continue;
    std::error_code error;
    const fs::file_status status = entry.status(error);  // a dangling link is left to fail as unreadable
    if (fs::exists(status) && !fs::is_regular_file(status)) {  // a FIFO would block the loader forever
      problems.report(entry.path().string(), "not a regular file (a FIFO, socket or device)");
      continue;
    }
    const std::string stem = entry.path().stem().string();
    const auto [it, added] = out.emplace(stem, entry.path());
    if (!added) problems.report(entry.path().string(), "a second image with the stem '" + stem + "' (" + it->second.filename().string() + ")");
  }
  return out;
}

// kaggle_3m: "<case>_<n>" -> n, or -1 if the stem does not end in _<digits>.
int64_t slice_number(const std::string& stem) {
  const size_t underscore = stem.rfind('_');
  if (underscore == std::string::npos || underscore + 1 == stem.size() || stem.size() - underscore > 10) return -1;
  int64_t n = 0;
  for (size_t i = underscore + 1; i < stem.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(stem[i]))) return -1;
    n = n * 10 + (stem[i] - '0');
  }
  return n;
}

void find_patient_slices(const fs::path& folder, Problems& problems, std::vector<SliceFiles>& out) {
  const std::map<std::string, fs::path> files = images_by_stem(folder, problems);
  const std::string suffix = "_mask";
  std::vector<std::pair<int64_t, SliceFiles>> slices;
  for (const auto& [stem, path] : files) {
    const bool is_mask = stem.size() > suffix.size() && stem.compare(stem.size() - suffix.size(), suffix.size(), suffix) == 0;
    const std::string key = is_mask ? stem.substr(0, stem.size() - suffix.size()) : stem;
    const int64_t n = slice_number(key);
    if (n < 0) {
      problems.report(path.string(), "name does not end in _<slice number> (kaggle_3m names are <case>_<n>.tif and <case>_<n>_mask.tif)");
      continue;
    }
    const bool partner = files.count(is_mask ? key : key + suffix) != 0;
    if (is_mask) {
      if (!partner) problems.report(path.string(), "mask without an image (no " + key + ".* beside it)");
      continue;
    }
    if (!partner) {
      problems.report(path.string(), "image without a mask (no " + key + suffix + ".* beside it)");
      continue;
    }
    slices.push_back({n, {path.string(), files.at(key + suffix).string(), folder.filename().string()}});
  }
  if (slices.empty()) {
    problems.report(folder.string(), "no slices (expected <case>_<n>.tif with <case>_<n>_mask.tif)");
    return;
  }
  std::stable_sort(slices.begin(), slices.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& slice : slices) out.push_back(std::move(slice.second));
}

void find_kaggle(const fs::path& root, Problems& problems, DatasetFiles& out) {
  bool any_folder = false;
  for (const auto& entry : entries(root)) {
    if (!is_folder(entry)) continue;
    any_folder = true;
    find_patient_slices(entry.path(), problems, out.slices);
  }
  if (!any_folder) {
    throw Error(root.string() + (entries(root).empty() ? ": empty folder" : ": no patient folders") +
                " (expected kaggle_3m/<case>/<case>_<n>.tif, or images/ and masks/)");
  }
}

void find_images_masks(const fs::path& root, const FindOptions& options, Problems& problems, DatasetFiles& out) {
  std::regex pattern;
  if (!options.patient_pattern.empty()) {
    try {
      pattern = std::regex(options.patient_pattern);
    } catch (const std::regex_error& error) {
      throw Error("patient pattern '" + options.patient_pattern + "': not a regular expression (" + error.what() + ")");
    }
    if (pattern.mark_count() < 1) {
      throw Error("patient pattern '" + options.patient_pattern + "': needs a group, ( ), around the patient id");
    }
  }
  const std::map<std::string, fs::path> images = images_by_stem(root / "images", problems);
  const std::map<std::string, fs::path> masks = images_by_stem(root / "masks", problems);
  for (const auto& [stem, path] : masks) {
    if (images.count(stem) == 0) problems.report(path.string(), "mask without an image (no images/" + stem + ".*)");
  }
  for (const auto& [stem, path] : images) {
    const auto mask = masks.find(stem);
    if (mask == masks.end()) {
      problems.report(path.string(), "image without a mask (no masks/" + stem + ".*)");
      continue;
    }
    std::string patient = stem;
    if (!options.patient_pattern.empty()) {
      std::smatch match;
      if (!std::regex_search(stem, match, pattern) || !match[1].matched || match[1].length() == 0) {
        problems.report(path.string(), "name does not match the patient pattern '" + options.patient_pattern + "'");
        continue;
      }
      patient = match[1].str();
    }
    out.slices.push_back({path.string(), mask->second.string(), patient});
  }
  std::stable_sort(out.slices.begin(), out.slices.end(), [](const SliceFiles& a, const SliceFiles& b) {
    if (a.patient != b.patient) return natural_less(a.patient, b.patient);
    return natural_less(fs::path(a.image).stem().string(), fs::path(b.image).stem().string());
  });
}

}  // namespace

DatasetFiles find_slices(const std::string& root_text, const FindOptions& options) {
  fs::path root(root_text);
  check_folder(root);
  std::error_code error;
  DatasetFiles out;
  Problems problems(options.skip_bad);
  if (fs::is_directory(root / "images", error) && fs::is_directory(root / "masks", error)) {
    out.layout = Layout::images_masks;
    find_images_masks(root, options, problems, out);
  } else {
    if (fs::is_directory(root / "kaggle_3m", error)) root /= "kaggle_3m";
    out.layout = Layout::kaggle_3m;
    find_kaggle(root, problems, out);
  }
  out.root = root.string();
  out.skipped = problems.take();
  if (out.slices.empty()) throw Error(root.string() + ": no slices found (" + std::to_string(out.skipped.size()) + " files skipped)");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

void load_slice(const SliceFiles& files, int side, uint8_t* image_out, uint8_t* mask_out, bool* tumour,
                std::pair<int, int>* file_size) {
  // Per thread and reused from slice to slice: no allocation (and no page faults) per slice.
  thread_local Image image, mask;
  thread_local std::vector<uint8_t> rgb, binary;
  read_image(files.image, image);
  read_image(files.mask, mask);
  if (mask.width != image.width || mask.height != image.height) {
    throw Error(files.mask + ": mask is " + std::to_string(mask.width) + "x" + std::to_string(mask.height) +
                " but its image is " + std::to_string(image.width) + "x" + std::to_string(image.height));
  }
  const int64_t plane = int64_t{side} * side;
  if (image.width == side && image.height == side) {
    slice_channels(image, image_out);
    mask_pixels(mask, mask_out);
  } else {
    rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
    binary.resize(static_cast<size_t>(image.width) * image.height);
    slice_channels(image, rgb.data());
    mask_pixels(mask, binary.data());
    const std::vector<uint8_t> resized = resize_bilinear(rgb, image.height, image.width, 3, side, side);
    const std::vector<uint8_t> resized_mask = resize_nearest(binary, mask.height, mask.width, 1, side, side);
    std::memcpy(image_out, resized.data(), resized.size());
    std::memcpy(mask_out, resized_mask.data(), resized_mask.size());
  }
  *tumour = std::any_of(mask_out, mask_out + plane, [](uint8_t v) { return v != 0; });
  *file_size = {image.width, image.height};
}

}  // namespace

Dataset load_dataset(const DatasetFiles& files, const LoadOptions& options) {
  if (options.image_size < 1 || options.image_size > 8192) {
    throw Error("image size " + std::to_string(options.image_size) + " is outside [1, 8192]");
  }
  const int side = options.image_size;
  const int64_t count = static_cast<int64_t>(files.slices.size());
  const int64_t plane = int64_t{side} * side;
  Dataset data;
  data.root = files.root;
  data.layout = files.layout;
  data.height = data.width = side;
  data.images.resize(static_cast<size_t>(count * plane * 3));
  data.masks.resize(static_cast<size_t>(count * plane));
  std::vector<std::string> errors(static_cast<size_t>(count));
  std::vector<uint8_t> tumour(static_cast<size_t>(count), 0);
  std::vector<std::pair<int, int>> file_sizes(static_cast<size_t>(count));

  // Decoding dominates loading: one slice per thread at a time. Errors are kept per slice and
  // reported in slice order afterwards, so the message does not depend on thread timing.
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < count; ++i) {
    try {
      bool has_tumour = false;
      load_slice(files.slices[i], side, data.images.data() + i * plane * 3, data.masks.data() + i * plane, &has_tumour,
                 &file_sizes[i]);
      tumour[i] = has_tumour ? 1 : 0;
    } catch (const Error& error) {
      errors[i] = error.what();
    } catch (const std::exception& error) {
      errors[i] = files.slices[i].image + ": " + error.what();
    }
  }

  data.skipped = files.skipped;
  std::map<std::string, int32_t, bool (*)(const std::string&, const std::string&)> volumes(natural_less);
  int64_t kept = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (!errors[i].empty()) {
      if (!options.skip_bad) throw Error(errors[i]);
      data.skipped.push_back(errors[i]);
      continue;
    }
    if (kept != i) {
      std::memmove(data.images.data() + kept * plane * 3, data.images.data() + i * plane * 3, plane * 3);
      std::memmove(data.masks.data() + kept * plane, data.masks.data() + i * plane, plane);
    }
    volumes.emplace(files.slices[i].patient, 0);
    data.files.push_back(files.slices[i].image);
    data.tumour.push_back(tumour[i]);
    data.file_sizes.push_back(file_sizes[i]);
    ++kept;
  }
  if (kept == 0) throw Error(files.root + ": no slice could be read (" + std::to_string(data.skipped.size()) + " skipped)");
  data.images.resize(static_cast<size_t>(kept * plane * 3));
  data.masks.resize(static_cast<size_t>(kept * plane));

  for (auto& [patient, index] : volumes) {
    index = static_cast<int32_t>(data.patients.size());
    data.patients.push_back(patient);
  }
  for (int64_t i = 0; i < count; ++i) {
    if (errors[i].empty()) data.volume.push_back(volumes.at(files.slices[i].patient));
  }
  return data;
}

Dataset load_dataset(const std::string& root, const FindOptions& find, const LoadOptions& load) {
  LoadOptions options = load;
  options.skip_bad = options.skip_bad || find.skip_bad;
  return load_dataset(find_slices(root, find), options);
}

ZScoreTable volume_zscore(const Dataset& data) {
  const size_t volumes = data.patients.size();
  const int64_t plane = int64_t{data.height} * data.width;
  std::vector<uint64_t> sum(volumes * 3, 0), squares(volumes * 3, 0), pixels(volumes, 0);
  for (int64_t s = 0; s < data.slices(); ++s) {
    const size_t v = static_cast<size_t>(data.volume[s]);
    const uint8_t* image = data.images.data() + s * plane * 3;
    for (int64_t p = 0; p < plane; ++p) {
      for (int c = 0; c < 3; ++c) {
        const uint64_t x = image[p * 3 + c];
        sum[v * 3 + c] += x;
        squares[v * 3 + c] += x * x;
      }
    }
    pixels[v] += static_cast<uint64_t>(plane);
  }
  ZScoreTable table;
  table.mean.resize(volumes * 3);
  table.stddev.resize(volumes * 3);
  for (size_t i = 0; i < volumes * 3; ++i) {
    const double n = static_cast<double>(pixels[i / 3]);
    const double mean = static_cast<double>(sum[i]) / n;
    const double variance = std::max(static_cast<double>(squares[i]) / n - mean * mean, 0.0);
    const double deviation = std::sqrt(variance) / 255.0;
    table.mean[i] = static_cast<float>(mean / 255.0);
    table.stddev[i] = deviation > 1e-6 ? static_cast<float>(deviation) : 1.0f;
  }
  return table;
}

}  // namespace unet
