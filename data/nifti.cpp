#include "data/nifti.h"

#include <nifti2_io.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>

#include "data/image.h"
#include "kernels/backend.h"

namespace unet {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& path, const std::string& reason) { throw Error(path + ": " + reason); }

struct NiftiFree {
  void operator()(nifti_image* image) const { nifti_image_free(image); }
};
using NiftiHandle = std::unique_ptr<nifti_image, NiftiFree>;

// niftilib reports on stderr unless told not to; our errors are one line each.
void quiet() {
  static const bool silenced = [] {
    nifti_set_debug_level(0);
    return true;
  }();
  (void)silenced;
}

NiftiHandle open_nifti(const std::string& path, bool with_data) {
  quiet();
  std::error_code error;
  if (!fs::is_regular_file(path, error)) fail(path, fs::exists(path, error) ? "not a file" : "no such file");
  if (access(path.c_str(), R_OK) != 0) fail(path, "cannot open (Permission denied)");
  NiftiHandle image(nifti_image_read(path.c_str(), 0));
  if (!image) fail(path, "not a NIfTI file, or its header is corrupt");
  if (image->ndim < 1 || image->nx < 1 || image->ny < 1 || image->nz < 1 || image->nt < 1) {
    fail(path, "corrupt NIfTI header (a dimension below 1)");
  }
  for (int d = 5; d <= 7; ++d) {
    if (image->dim[0] >= d && image->dim[d] > 1) fail(path, "unsupported NIfTI: more than 4 dimensions");
  }
  if (image->nx * image->ny > (int64_t{1} << 28) || image->nvox > (int64_t{1} << 32)) fail(path, "volume too large");
  if (with_data && nifti_image_load(image.get()) != 0)
    fail(path, "truncated or corrupt NIfTI (its voxels cannot be read)");
  return image;
}

// One voxel as a double, whatever the stored type; false for a type that is not a real number.
bool voxel_value(const nifti_image& image, int64_t index, double* value) {
  const void* data = image.data;
  switch (image.datatype) {
    case DT_UINT8: *value = static_cast<const uint8_t*>(data)[index]; return true;
    case DT_INT8: *value = static_cast<const int8_t*>(data)[index]; return true;
    case DT_UINT16: *value = static_cast<const uint16_t*>(data)[index]; return true;
    case DT_INT16: *value = static_cast<const int16_t*>(data)[index]; return true;
    case DT_UINT32: *value = static_cast<const uint32_t*>(data)[index]; return true;
    case DT_INT32: *value = static_cast<const int32_t*>(data)[index]; return true;
    case DT_UINT64: *value = static_cast<double>(static_cast<const uint64_t*>(data)[index]); return true;
    case DT_INT64: *value = static_cast<double>(static_cast<const int64_t*>(data)[index]); return true;
    case DT_FLOAT32: *value = static_cast<const float*>(data)[index]; return true;
    case DT_FLOAT64: *value = static_cast<const double*>(data)[index]; return true;
    default: return false;
  }
}

bool identity_scaling(const nifti_image& image) {
  return (image.scl_slope == 0 || image.scl_slope == 1) && image.scl_inter == 0;
}

// Voxel (i, j, k) of channel t, in niftilib's storage order (i fastest).
int64_t voxel_index(const nifti_image& image, int64_t i, int64_t j, int64_t k, int64_t t) {
  return i + image.nx * (j + image.ny * (k + image.nz * t));
}

// Writes channel `t` of `image` into `out` (depth, height, width, 3) at channel `c`, converted to
// 8 bits by the rule of the header comment.
void convert_channel(const nifti_image& image, const std::string& path, int64_t t, int c, std::vector<uint8_t>& out) {
  const int64_t height = image.nx, width = image.ny, depth = image.nz;
  const bool scaled = !identity_scaling(image);
  const double slope = image.scl_slope == 0 ? 1 : image.scl_slope;
  double value = 0;
  if (!voxel_value(image, 0, &value)) {
    fail(path, std::string("unsupported NIfTI voxel type ") + nifti_datatype_to_string(image.datatype) +
                   " (integers and floating point are read)");
  }
  auto place = [&](auto&& eight_bits) {
    for (int64_t k = 0; k < depth; ++k)
      for (int64_t i = 0; i < height; ++i)
        for (int64_t j = 0; j < width; ++j) {
          out[((k * height + i) * width + j) * 3 + c] = eight_bits(voxel_index(image, i, j, k, t));
        }
  };
  if (image.datatype == DT_UINT8 && !scaled) {
    place([&](int64_t at) { return static_cast<const uint8_t*>(image.data)[at]; });
  } else if (image.datatype == DT_UINT16 && !scaled) {
    place([&](int64_t at) {
      return static_cast<uint8_t>((255 * uint32_t{static_cast<const uint16_t*>(image.data)[at]} + 32767) / 65535);
    });
  } else {
    const int64_t first = voxel_index(image, 0, 0, 0, t), count = height * width * depth;
    double low = INFINITY, high = -INFINITY;
    for (int64_t at = first; at < first + count; ++at) {
      voxel_value(image, at, &value);
      value = value * slope + image.scl_inter;
      if (!std::isfinite(value)) fail(path, "a voxel is not a finite number (NaN or infinity)");
      low = std::min(low, value);
      high = std::max(high, value);
    }
    const double range = high - low;
    place([&](int64_t at) {
      voxel_value(image, at, &value);
      value = value * slope + image.scl_inter;
      return static_cast<uint8_t>(range > 0 ? std::lround(255 * (value - low) / range) : 0);
    });
  }
}

double millimetres(const nifti_image& image, double length) {
  switch (XYZT_TO_SPACE(image.xyz_units)) {
    case NIFTI_UNITS_METER: return length * 1000;
    case NIFTI_UNITS_MICRON: return length / 1000;
    default: return length;  // mm, or unknown (read as mm, as other tools do)
  }
}

// The voxel-to-world matrix niftilib chose (sform, else qform, else the pixdim scaling).
const nifti_dmat44& affine(const nifti_image& image) { return image.sform_code > 0 ? image.sto_xyz : image.qto_xyz; }

void check_same_grid(const nifti_image& image, const std::string& path, const nifti_image& reference,
                     const std::string& reference_path) {
  if (image.nx != reference.nx || image.ny != reference.ny || image.nz != reference.nz) {
    fail(path, "its grid is " + std::to_string(image.nx) + "x" + std::to_string(image.ny) + "x" +
                   std::to_string(image.nz) + " but " + reference_path + "'s is " + std::to_string(reference.nx) + "x" +
                   std::to_string(reference.ny) + "x" + std::to_string(reference.nz));
  }
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) {
      if (std::abs(affine(image).m[r][c] - affine(reference).m[r][c]) > 1e-3) {
        fail(path, "its affine differs from " + reference_path + "'s (not the same voxel grid in space)");
      }
    }
}

const std::regex& channel_suffix() {
  static const std::regex suffix(R"(^(.*)_([0-9]{4})(\.nii(\.gz)?)$)");
  return suffix;
}

std::string extension_of(const std::string& name) {
  if (name.size() > 7 && name.compare(name.size() - 7, 7, ".nii.gz") == 0) return ".nii.gz";
  return ".nii";
}

}  // namespace

bool is_nifti_name(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  auto ends = [&](const std::string& tail) {
    return name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  return ends(".nii") || ends(".nii.gz");
}

std::string nifti_case_name(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  std::smatch match;
  if (std::regex_match(name, match, channel_suffix())) return match[1].str();
  return name.substr(0, name.size() - extension_of(name).size());
}

NiftiVolume read_nifti_volume(const std::string& path) {
  if (!is_nifti_name(path)) fail(path, "not a NIfTI file name (.nii or .nii.gz)");
  NiftiVolume volume;
  volume.name = nifti_case_name(path);
  volume.files.push_back(path);
  const std::string name = fs::path(path).filename().string();
  std::smatch match;
  if (std::regex_match(name, match, channel_suffix())) {
    if (match[2].str() != "0000") fail(path, "a channel file of a case: give its _0000 file");
    for (int channel = 1;; ++channel) {
      char suffix[16];
      std::snprintf(suffix, sizeof suffix, "_%04d", channel);
      const fs::path next = fs::path(path).parent_path() / (match[1].str() + suffix + match[3].str());
      std::error_code error;
      if (!fs::exists(next, error)) break;
      volume.files.push_back(next.string());
    }
  }
  std::vector<NiftiHandle> files;
  for (const std::string& file : volume.files) files.push_back(open_nifti(file, true));
  const nifti_image& first = *files[0];
  if (files.size() > 1) {
    for (size_t f = 0; f < files.size(); ++f) {
      if (files[f]->nt != 1)
        fail(volume.files[f], "a channel file must be 3-D (it has " + std::to_string(files[f]->nt) + " channels)");
      if (f > 0) check_same_grid(*files[f], volume.files[f], first, volume.files[0]);
    }
  }
  volume.channels = files.size() > 1 ? static_cast<int>(files.size()) : static_cast<int>(first.nt);
  if (volume.channels != 1 && volume.channels != 3) {
    fail(path, "has " + std::to_string(volume.channels) +
                   " channels; 1 (repeated, as a grey slice) or 3 (pre-contrast, FLAIR, post-contrast) are read");
  }
  volume.height = static_cast<int>(first.nx);
  volume.width = static_cast<int>(first.ny);
  volume.depth = static_cast<int>(first.nz);
  volume.spacing[0] = millimetres(first, first.dx);
  volume.spacing[1] = millimetres(first, first.dy);
  volume.spacing[2] = millimetres(first, first.dz);
  volume.slices.resize(static_cast<size_t>(volume.depth) * volume.height * volume.width * 3);
  for (int c = 0; c < volume.channels; ++c) {
    const bool per_file = files.size() > 1;
    convert_channel(per_file ? *files[c] : first, volume.files[per_file ? c : 0], per_file ? 0 : c, c, volume.slices);
  }
  if (volume.channels == 1) {
    for (size_t p = 0; p < volume.slices.size(); p += 3) volume.slices[p + 1] = volume.slices[p + 2] = volume.slices[p];
  }
  return volume;
}

std::vector<std::string> find_nifti_cases(const std::string& folder) {
  std::error_code error;
  if (!fs::exists(folder, error)) fail(folder, "no such file or folder");
  if (!fs::is_directory(folder, error)) fail(folder, "not a folder");
  std::vector<std::string> cases;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename().string();
    if (name[0] == '.' || !entry.is_regular_file() || !is_nifti_name(name)) continue;
    std::smatch match;
    if (std::regex_match(name, match, channel_suffix()) && match[2].str() != "0000") continue;  // found via _0000
    cases.push_back(entry.path().string());
  }
  if (error) fail(folder, "cannot list (" + error.message() + ")");
  std::sort(cases.begin(), cases.end());
  return cases;
}

std::vector<uint8_t> read_nifti_mask(const std::string& path, const NiftiVolume& image) {
  const NiftiHandle label = open_nifti(path, true);
  const NiftiHandle reference = open_nifti(image.files[0], false);
  if (label->nt != 1) fail(path, "a label must be 3-D (it has " + std::to_string(label->nt) + " channels)");
  check_same_grid(*label, path, *reference, image.files[0]);
  std::vector<uint8_t> mask(static_cast<size_t>(image.depth) * image.height * image.width);
  double value = 0;
  if (!voxel_value(*label, 0, &value))
    fail(path, std::string("unsupported NIfTI voxel type ") + nifti_datatype_to_string(label->datatype));
  for (int64_t k = 0; k < image.depth; ++k)
    for (int64_t i = 0; i < image.height; ++i)
      for (int64_t j = 0; j < image.width; ++j) {
        voxel_value(*label, voxel_index(*label, i, j, k, 0), &value);
        mask[(k * image.height + i) * image.width + j] = value != 0;
      }
  return mask;
}

namespace {

// The header of `image` for a one-channel volume of `datatype` holding `values` (depth, height,
// width), written to a temporary file beside `path` and renamed over it.
template <class T>
void write_like(const std::string& path, const NiftiVolume& image, const std::vector<T>& values, int datatype) {
  const int64_t voxels = int64_t{image.depth} * image.height * image.width;
  if (static_cast<int64_t>(values.size()) != voxels) fail(path, "internal: the volume to write has the wrong size");
  if (!is_nifti_name(path)) fail(path, "not a NIfTI file name (.nii or .nii.gz)");
  const NiftiHandle reference = open_nifti(image.files[0], false);
  NiftiHandle out(nifti_copy_nim_info(reference.get()));
  out->dim[0] = out->ndim = 3;
  out->dim[4] = out->nt = 1;
  for (int d = 5; d <= 7; ++d) out->dim[d] = 1;
  out->nu = out->nv = out->nw = 1;
  out->datatype = datatype;
  nifti_datatype_sizes(datatype, &out->nbyper, &out->swapsize);
  nifti_update_dims_from_array(out.get());
  out->scl_slope = 1;
  out->scl_inter = 0;
  out->cal_min = 0;
  out->cal_max = 1;
  out->intent_code = NIFTI_INTENT_NONE;
  std::vector<T> stored(static_cast<size_t>(voxels));
  for (int64_t k = 0; k < image.depth; ++k)
    for (int64_t i = 0; i < image.height; ++i)
      for (int64_t j = 0; j < image.width; ++j) {
        stored[voxel_index(*out, i, j, k, 0)] = values[(k * image.height + i) * image.width + j];
      }
  out->data = stored.data();
  const fs::path target(path);
  const std::string name = target.filename().string();
  const std::string temporary = (target.parent_path() / ("." + name.substr(0, name.size() - extension_of(name).size()) +
                                                         ".tmp-" + std::to_string(::getpid()) + extension_of(name)))
                                    .string();
  const int is_nifti2 = out->nifti_type == NIFTI_FTYPE_NIFTI2_1 || out->nifti_type == NIFTI_FTYPE_NIFTI2_2;
  out->nifti_type = is_nifti2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;  // one file, whatever the input was
  const int failed = nifti_set_filenames(out.get(), temporary.c_str(), 0, 1);
  if (failed == 0) nifti_image_write(out.get());
  out->data = nullptr;  // ours, not niftilib's to free
  std::error_code error;
  if (failed != 0 || !fs::is_regular_file(temporary, error) || fs::file_size(temporary, error) == 0) {
    fs::remove(temporary, error);
    fail(path, "cannot write");
  }
  fs::rename(temporary, target, error);
  if (error) {
    fs::remove(temporary, error);
    fail(path, "cannot replace (" + error.message() + ")");
  }
}

}  // namespace

void write_nifti_mask(const std::string& path, const NiftiVolume& image, const std::vector<uint8_t>& mask) {
  std::vector<uint8_t> binary(mask.size());
  for (size_t i = 0; i < mask.size(); ++i) binary[i] = mask[i] != 0;
  write_like(path, image, binary, DT_UINT8);
}

void write_nifti_probabilities(const std::string& path, const NiftiVolume& image,
                               const std::vector<float>& probability) {
  write_like(path, image, probability, DT_FLOAT32);
}

void append_volume(Dataset& data, const NiftiVolume& volume, const std::vector<uint8_t>& mask, int size) {
  const int64_t plane = int64_t{volume.height} * volume.width;
  const int32_t id = static_cast<int32_t>(data.patients.size());
  data.patients.push_back(volume.name);
  data.height = data.width = size;
  for (int k = 0; k < volume.depth; ++k) {
    const std::vector<uint8_t> slice(volume.slices.begin() + k * plane * 3,
                                     volume.slices.begin() + (k + 1) * plane * 3);
    const std::vector<uint8_t> resized = resize_bilinear(slice, volume.height, volume.width, 3, size, size);
    std::vector<uint8_t> truth(static_cast<size_t>(plane), 0);
    if (!mask.empty()) std::copy(mask.begin() + k * plane, mask.begin() + (k + 1) * plane, truth.begin());
    const std::vector<uint8_t> resized_truth = resize_nearest(truth, volume.height, volume.width, 1, size, size);
    data.images.insert(data.images.end(), resized.begin(), resized.end());
    data.masks.insert(data.masks.end(), resized_truth.begin(), resized_truth.end());
    data.tumour.push_back(std::any_of(resized_truth.begin(), resized_truth.end(), [](uint8_t m) { return m != 0; }));
    data.volume.push_back(id);
    data.files.push_back(volume.files[0] + ":" + std::to_string(k));
    data.file_sizes.emplace_back(volume.width, volume.height);
  }
}

std::vector<float> resize_probabilities(const std::vector<float>& probability, int slices, int from_height,
                                        int from_width, int to_height, int to_width) {
  if (from_height == to_height && from_width == to_width) return probability;
  auto source = [](int i, int in, int out) { return std::max((static_cast<double>(i) + 0.5) * in / out - 0.5, 0.0); };
  std::vector<float> out(static_cast<size_t>(slices) * to_height * to_width);
  for (int s = 0; s < slices; ++s) {
    const float* in = probability.data() + int64_t{s} * from_height * from_width;
    for (int y = 0; y < to_height; ++y) {
      const double sy = source(y, from_height, to_height);
      const int y0 = std::min(static_cast<int>(sy), from_height - 1), y1 = std::min(y0 + 1, from_height - 1);
      const double ly = sy - y0;
      for (int x = 0; x < to_width; ++x) {
        const double sx = source(x, from_width, to_width);
        const int x0 = std::min(static_cast<int>(sx), from_width - 1), x1 = std::min(x0 + 1, from_width - 1);
        const double lx = sx - x0;
        auto at = [&](int yy, int xx) { return static_cast<double>(in[int64_t{yy} * from_width + xx]); };
        const double top = (1 - lx) * at(y0, x0) + lx * at(y0, x1), bottom = (1 - lx) * at(y1, x0) + lx * at(y1, x1);
        out[(int64_t{s} * to_height + y) * to_width + x] = static_cast<float>((1 - ly) * top + ly * bottom);
      }
    }
  }
  return out;
}

}  // namespace unet
