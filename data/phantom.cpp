#include "data/phantom.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "data/image.h"
#include "kernels/backend.h"
#include "kernels/philox.h"

namespace unet {

namespace fs = std::filesystem;

namespace {

// Uniform draws for one (patient, slice) pair: a small counter-based stream.
class Draws {
 public:
  Draws(uint64_t seed, uint32_t patient, uint32_t slice) : key_(philox_key(seed)), patient_(patient), slice_(slice) {}
  float uniform(float low, float high) {
    if (used_ == 4) {
      block_ = philox4x32_10(philox_counter(patient_, slice_, next_++, RandomStream::phantom), key_);
      used_ = 0;
    }
    return low + philox_uniform(block_.w[used_++]) * (high - low);
  }

 private:
  PhiloxKey key_;
  uint32_t patient_, slice_;
  uint32_t next_ = 0;
  Philox4 block_{};
  int used_ = 4;
};

struct Patient {
  float centre_x, centre_y, radius_x, radius_y, tilt;  // the brain's widest section, in pixels
  float gain[3];                                      // per channel
  float wave[3][3];                                   // texture: frequency x, frequency y, phase
  float lesion_x, lesion_y, lesion_radius;            // lesion centre relative to the brain's, radius
  float lesion_z, lesion_extent;                      // slice position of its centre, half-height
};

Patient draw_patient(uint64_t seed, int index, int size) {
  // Slice number 0xffffffff is the patient's own stream, apart from every slice's.
  Draws d(seed, static_cast<uint32_t>(index), 0xffffffffu);
  const float s = static_cast<float>(size);
  Patient p;
  p.centre_x = s * d.uniform(0.47f, 0.53f);
  p.centre_y = s * d.uniform(0.47f, 0.53f);
  p.radius_x = s * d.uniform(0.30f, 0.36f);
  p.radius_y = s * d.uniform(0.37f, 0.43f);
  p.tilt = d.uniform(-0.15f, 0.15f);
  for (float& g : p.gain) g = d.uniform(0.8f, 1.2f);
  for (auto& w : p.wave) {
    w[0] = d.uniform(6.0f, 14.0f) / s;
    w[1] = d.uniform(6.0f, 14.0f) / s;
    w[2] = d.uniform(0.0f, 6.2832f);
  }
  p.lesion_x = d.uniform(-0.45f, 0.45f);
  p.lesion_y = d.uniform(-0.45f, 0.45f);
  p.lesion_radius = s * d.uniform(0.06f, 0.11f);
  p.lesion_z = d.uniform(-0.4f, 0.4f);
  p.lesion_extent = 1.0f / 3.0f;  // of the stack's height of 2: a third of the slices
  return p;
}

// One slice: image (size, size, 3) and mask (size, size); returns whether the lesion shows.
bool draw_slice(const Patient& p, uint64_t seed, int patient, int slice, int slices, int size, std::vector<uint16_t>& image,
                std::vector<uint16_t>& mask) {
  Draws noise(seed, static_cast<uint32_t>(patient), static_cast<uint32_t>(slice));
  const float z = (2.0f * static_cast<float>(slice) + 1.0f) / static_cast<float>(slices) - 1.0f;  // in (-1, 1)
  const float section = std::sqrt(std::max(1.0f - 0.85f * z * z, 0.0f));  // the ellipsoid's cross-section
  const float rx = p.radius_x * section, ry = p.radius_y * section;
  const float dz = (z - p.lesion_z) / p.lesion_extent;
  const float lesion_r = dz * dz < 1.0f ? p.lesion_radius * std::sqrt(1.0f - dz * dz) : 0.0f;
  const float lx = p.centre_x + p.lesion_x * rx, ly = p.centre_y + p.lesion_y * ry;
  const float cos_t = std::cos(p.tilt), sin_t = std::sin(p.tilt);
  const float base[3] = {90.0f, 105.0f, 100.0f}, rim[3] = {60.0f, 20.0f, 80.0f}, ventricle[3] = {-30.0f, -60.0f, -20.0f};
  const float lesion[3] = {-10.0f, 110.0f, 25.0f};
  bool any = false;
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const float px = static_cast<float>(x) + 0.5f - p.centre_x, py = static_cast<float>(y) + 0.5f - p.centre_y;
      const float u = (cos_t * px + sin_t * py) / std::max(rx, 1e-3f), v = (-sin_t * px + cos_t * py) / std::max(ry, 1e-3f);
      const float r2 = u * u + v * v;
      const int64_t at = int64_t{y} * size + x;
      const bool inside = r2 < 1.0f;
      const float lx2 = (static_cast<float>(x) + 0.5f - lx), ly2 = (static_cast<float>(y) + 0.5f - ly);
      const bool in_lesion = inside && lesion_r > 1.0f && lx2 * lx2 + ly2 * ly2 < lesion_r * lesion_r;
      mask[at] = in_lesion ? 255 : 0;
      any = any || in_lesion;
      for (int c = 0; c < 3; ++c) {
        float value = 0.0f;
        if (inside) {
          const float* w = p.wave[c];
          const float texture = 12.0f * std::sin(w[0] * static_cast<float>(x) + w[2]) * std::sin(w[1] * static_cast<float>(y) + w[2]);
          const float near_rim = r2 > 0.8f ? rim[c] : 0.0f;
          const float vx = std::fabs(u) - 0.12f, vy = v + 0.05f;
          const float in_ventricle = vx * vx / 0.006f + vy * vy / 0.05f < 1.0f ? ventricle[c] : 0.0f;
          value = p.gain[c] * (base[c] + texture + near_rim + in_ventricle + (in_lesion ? lesion[c] : 0.0f)) +
                  noise.uniform(-8.0f, 8.0f);
        }
        image[at * 3 + c] = static_cast<uint16_t>(std::clamp(std::lround(value), 0L, 255L));
      }
    }
  }
  return any;
}

void check_output_folder(const fs::path& root) {
  std::error_code error;
  if (!fs::exists(root, error)) {
    if (!fs::create_directories(root, error)) throw Error(root.string() + ": cannot create (" + error.message() + ")");
    return;
  }
  if (!fs::is_directory(root, error)) throw Error(root.string() + ": exists and is not a folder");
  if (!fs::is_empty(root, error)) {
    throw Error(root.string() + ": exists and is not empty (phantom data is written only into a new or empty folder)");
  }
}

}  // namespace

PhantomSummary write_phantom(const std::string& root_text, const PhantomOptions& options) {
  if (options.patients < 1 || options.slices < 1) throw Error("phantom: needs at least one patient and one slice");
  if (options.size < 16 || options.size > 4096) throw Error("phantom: size " + std::to_string(options.size) + " is outside [16, 4096]");
  const fs::path root(root_text);
  check_output_folder(root);

  PhantomSummary summary;
  summary.slices = options.patients * options.slices;
  std::vector<std::string> names(static_cast<size_t>(options.patients));
  for (int p = 0; p < options.patients; ++p) {
    char name[32];
    std::snprintf(name, sizeof name, "PHANTOM_P%03d", p + 1);
    names[p] = name;
    std::error_code error;
    if (!fs::create_directory(root / name, error)) throw Error((root / name).string() + ": cannot create (" + error.message() + ")");
  }
  std::vector<std::string> errors(static_cast<size_t>(summary.slices));
  int tumour_slices = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : tumour_slices)
  for (int i = 0; i < summary.slices; ++i) {
    const int p = i / options.slices, k = i % options.slices;
    try {
      const Patient patient = draw_patient(options.seed, p, options.size);
      Image image{options.size, options.size, 3, 8, std::vector<uint16_t>(static_cast<size_t>(options.size) * options.size * 3)};
      Image mask{options.size, options.size, 1, 8, std::vector<uint16_t>(static_cast<size_t>(options.size) * options.size)};
      tumour_slices += draw_slice(patient, options.seed, p, k, options.slices, options.size, image.samples, mask.samples) ? 1 : 0;
      const fs::path stem = root / names[p] / (names[p] + "_" + std::to_string(k + 1));
      write_tiff(stem.string() + ".tif", image);
      write_tiff(stem.string() + "_mask.tif", mask);
    } catch (const std::exception& error) {
      errors[i] = error.what();
    }
  }
  for (const auto& error : errors) {
    if (!error.empty()) throw Error(error);
  }
  summary.tumour_slices = tumour_slices;
  return summary;
}

}  // namespace unet
