// The NIfTI reader and writer (data/nifti.h) as a small command for tests/data/test_nifti.py, which
// makes the volumes with nibabel and checks what comes back with nibabel and numpy.
//
//   nifti_tool read IMAGE OUT        OUT.u8: the slices (depth, height, width, 3); OUT.json: the rest
//   nifti_tool label IMAGE LABEL OUT OUT.u8: the mask (depth, height, width)
//   nifti_tool mask IMAGE OUT.nii.gz writes mask[k][i][j] = (3i + 5j + 7k) % 4 == 0 on IMAGE's grid
//   nifti_tool probabilities IMAGE OUT.nii.gz   writes (i + 10 j + 100 k) / 1000
//   nifti_tool cases FOLDER          prints the cases found, one a line
// A problem is one "error: ..." line and exit status 1.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "data/nifti.h"
#include "kernels/backend.h"

using namespace unet;

namespace {

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<long>(bytes.size()));
}

template <class T, class F>
std::vector<T> pattern(const NiftiVolume& v, F value) {
  std::vector<T> out(static_cast<size_t>(v.depth) * v.height * v.width);
  for (int k = 0; k < v.depth; ++k)
    for (int i = 0; i < v.height; ++i)
      for (int j = 0; j < v.width; ++j) out[(static_cast<size_t>(k) * v.height + i) * v.width + j] = value(i, j, k);
  return out;
}

int run(const std::vector<std::string>& a) {
  if (a.size() == 3 && a[0] == "read") {
    const NiftiVolume v = read_nifti_volume(a[1]);
    write_raw(a[2] + ".u8", v.slices);
    std::ofstream json(a[2] + ".json");
    json << "{\"name\": \"" << v.name << "\", \"files\": " << v.files.size() << ", \"height\": " << v.height
         << ", \"width\": " << v.width << ", \"depth\": " << v.depth << ", \"channels\": " << v.channels
         << ", \"spacing\": [" << v.spacing[0] << ", " << v.spacing[1] << ", " << v.spacing[2] << "]}\n";
    return 0;
  }
  if (a.size() == 4 && a[0] == "label") {
    write_raw(a[3] + ".u8", read_nifti_mask(a[2], read_nifti_volume(a[1])));
    return 0;
  }
  if (a.size() == 3 && a[0] == "mask") {
    const NiftiVolume v = read_nifti_volume(a[1]);
    write_nifti_mask(a[2], v,
                     pattern<uint8_t>(v, [](int i, int j, int k) { return (3 * i + 5 * j + 7 * k) % 4 == 0; }));
    return 0;
  }
  if (a.size() == 3 && a[0] == "probabilities") {
    const NiftiVolume v = read_nifti_volume(a[1]);
    write_nifti_probabilities(a[2], v,
                              pattern<float>(v, [](int i, int j, int k) { return (i + 10 * j + 100 * k) / 1000.0f; }));
    return 0;
  }
  if (a.size() == 2 && a[0] == "cases") {
    for (const std::string& path : find_nifti_cases(a[1])) std::printf("%s\n", path.c_str());
    return 0;
  }
  std::fprintf(stderr, "error: usage: nifti_tool read|label|mask|probabilities|cases ...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
