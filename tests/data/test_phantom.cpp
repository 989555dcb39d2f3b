// Phantom data: the kaggle_3m layout in real uncompressed TIFFs, lesions brighter in FLAIR in
// about a third of the slices, the same files from the same seed, and never an overwrite.
#include <catch2/catch.hpp>
#include <tiffio.h>

#include <filesystem>

#include "data/dataset.h"
#include "data/phantom.h"
#include "kernels/backend.h"
#include "tests/data/data_test_util.h"
#include "tests/test_util.h"

using namespace unet;
using test::error_of;
namespace fs = std::filesystem;

TEST_CASE("phantom: kaggle_3m layout, uncompressed TIFFs, lesions in about a third of the slices", "[phantom]") {
  test::TempDir dir;
  const std::string root = dir / "phantom";
  const PhantomSummary summary = write_phantom(root, {3, 18, 64, 5});
  CHECK(summary.slices == 54);
  CHECK(summary.tumour_slices >= 12);
  CHECK(summary.tumour_slices <= 24);
  CHECK(fs::exists(fs::path(root) / "PHANTOM_P002" / "PHANTOM_P002_18_mask.tif"));

  TIFF* tiff = TIFFOpen((fs::path(root) / "PHANTOM_P001" / "PHANTOM_P001_1.tif").c_str(), "r");
  REQUIRE(tiff != nullptr);
  uint16_t compression = 0, samples = 0, bits = 0;
  TIFFGetField(tiff, TIFFTAG_COMPRESSION, &compression);
  TIFFGetField(tiff, TIFFTAG_SAMPLESPERPIXEL, &samples);
  TIFFGetField(tiff, TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFClose(tiff);
  CHECK(compression == COMPRESSION_NONE);
  CHECK(samples == 3);
  CHECK(bits == 8);

  const Dataset data = load_dataset(root, {}, {64, false});
  CHECK(data.slices() == 54);
  CHECK(data.patients == std::vector<std::string>{"PHANTOM_P001", "PHANTOM_P002", "PHANTOM_P003"});
  int tumour = 0;
  for (uint8_t t : data.tumour) tumour += t;
  CHECK(tumour == summary.tumour_slices);

  // Each patient's lesion spans consecutive slices.
  for (int p = 0; p < 3; ++p) {
    int first = -1, last = -1, count = 0;
    for (int k = 0; k < 18; ++k) {
      if (!data.tumour[p * 18 + k]) continue;
      if (first < 0) first = k;
      last = k;
      ++count;
    }
    CHECK(count > 0);
    CHECK(last - first + 1 == count);
  }

  // In lesion pixels FLAIR (channel 1) is bright: far above the rest of the brain, and its
  // contrast is the largest of the three channels.
  double lesion[3] = {0, 0, 0}, brain[3] = {0, 0, 0};
  int64_t lesion_n = 0, brain_n = 0;
  const int64_t plane = 64 * 64;
  for (int64_t s = 0; s < data.slices(); ++s) {
    for (int64_t p = 0; p < plane; ++p) {
      const uint8_t* v = &data.images[(s * plane + p) * 3];
      const bool in_lesion = data.masks[s * plane + p] != 0;
      if (!in_lesion && v[0] == 0 && v[1] == 0 && v[2] == 0) continue;  // background
      for (int c = 0; c < 3; ++c) (in_lesion ? lesion : brain)[c] += v[c];
      (in_lesion ? lesion_n : brain_n) += 1;
    }
  }
  REQUIRE(lesion_n > 0);
  double contrast[3];
  for (int c = 0; c < 3; ++c) contrast[c] = lesion[c] / lesion_n - brain[c] / brain_n;
  CHECK(contrast[1] > 60);
  CHECK(contrast[1] > 2 * std::abs(contrast[0]));
  CHECK(contrast[1] > 2 * std::abs(contrast[2]));
}

TEST_CASE("phantom: the same seed writes the same files, another seed others", "[phantom]") {
  test::TempDir dir;
  write_phantom(dir / "a", {2, 4, 32, 9});
  write_phantom(dir / "b", {2, 4, 32, 9});
  write_phantom(dir / "c", {2, 4, 32, 10});
  const std::string file = "PHANTOM_P002/PHANTOM_P002_3.tif";
  CHECK(test::read_bytes(dir / ("a/" + file)) == test::read_bytes(dir / ("b/" + file)));
  CHECK(test::read_bytes(dir / ("a/" + file)) != test::read_bytes(dir / ("c/" + file)));
}

TEST_CASE("phantom: never written into a folder that holds anything", "[phantom]") {
  test::TempDir dir;
  test::write_bytes(dir / "keep.txt", {'x'});
  const auto before = test::snapshot(dir.path());
  CHECK(error_of([&] { write_phantom(dir.path().string(), {1, 1, 32, 1}); }) ==
        dir.path().string() + ": exists and is not empty (phantom data is written only into a new or empty folder)");
  CHECK(test::snapshot(dir.path()) == before);
  CHECK(error_of([&] { write_phantom(dir / "keep.txt", {1, 1, 32, 1}); }) == dir / "keep.txt" + ": exists and is not a folder");
}

TEST_CASE("phantom: unet synth writes it, and refuses to overwrite", "[phantom]") {
  test::TempDir dir;
  const std::string out = dir / "synth";
  const test::CommandResult first = test::run_unet("synth --out '" + out + "' --patients 2 --slices 6 --size 48 --seed 3");
  CHECK(first.exit_status == 0);
  CHECK_THAT(first.output, Catch::StartsWith("wrote 2 patients, 12 slices ("));
  CHECK(find_slices(out).slices.size() == 12);
  const auto before = test::snapshot(out);
  const test::CommandResult second = test::run_unet("synth --out '" + out + "' --patients 2");
  CHECK(second.exit_status == 1);
  CHECK(second.output == "error: " + out + ": exists and is not empty (phantom data is written only into a new or empty folder)\n");
  CHECK(test::snapshot(out) == before);
  const test::CommandResult usage = test::run_unet("synth --patients 2");
  CHECK(usage.exit_status == 2);
  CHECK(usage.output == "error: synth: --out is required\n");
}
