// Finding and loading datasets in both layouts; every kind of bad input as one line naming the
// file, from the library and from `unet dataset` (exit status, message, nothing written).
#include <catch2/catch.hpp>
#include <stb/stb_image_write.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/image.h"
#include "tests/data/data_test_util.h"
#include "tests/test_util.h"
#include "tools/data_options.h"

using namespace unet;
using test::TempDir;
using test::error_of;
namespace fs = std::filesystem;

namespace {

constexpr int kSize = 16;

// A slice whose pixels encode (slice tag, channel) so that order and channels can be checked:
// channel c of every pixel is tag * 4 + c; the mask marks the first `tumour` pixels.
Image tagged_image(int tag, int width = kSize, int height = kSize) {
  Image image{width, height, 3, 8, std::vector<uint16_t>(static_cast<size_t>(width) * height * 3)};
  for (size_t i = 0; i < image.samples.size(); ++i) image.samples[i] = static_cast<uint16_t>(tag * 4 + i % 3);
  return image;
}

Image mask_image(int tumour, int width = kSize, int height = kSize) {
  Image mask{width, height, 1, 8, std::vector<uint16_t>(static_cast<size_t>(width) * height, 0)};
  for (int i = 0; i < tumour; ++i) mask.samples[i] = 255;
  return mask;
}

void write_slice(const fs::path& folder, const std::string& stem, int tag, int tumour) {
  fs::create_directories(folder);
  write_tiff((folder / (stem + ".tif")).string(), tagged_image(tag));
  write_tiff((folder / (stem + "_mask.tif")).string(), mask_image(tumour));
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// kaggle_3m with two patients: slices 1, 2, 10 of TCGA_A_1 and 1, 3 of TCGA_B_2, plus files
// the reader must ignore.
void make_kaggle(const fs::path& root) {
  write_slice(root / "TCGA_B_2", "TCGA_B_2_3", 5, 0);
  write_slice(root / "TCGA_B_2", "TCGA_B_2_1", 4, 7);
  write_slice(root / "TCGA_A_1", "TCGA_A_1_10", 3, 0);
  write_slice(root / "TCGA_A_1", "TCGA_A_1_2", 2, 20);
  write_slice(root / "TCGA_A_1", "TCGA_A_1_1", 1, 0);
  write_text(root / "README.md", "# about\n");
  write_text(root / "data.csv", "Patient,RNASeqCluster\n");
  write_text(root / "TCGA_A_1" / ".DS_Store", "junk");
  write_text(root / "TCGA_A_1" / "notes.txt", "not an image");
  write_text(root / ".hidden_image.tif", "junk");
  fs::create_directories(root / ".cache");
  write_text(root / ".cache" / "x.tif", "junk");
}

std::vector<int> tags_of(const Dataset& data) {
  std::vector<int> tags;
  const int64_t plane = int64_t{data.height} * data.width;
  for (int64_t s = 0; s < data.slices(); ++s) tags.push_back(data.images[s * plane * 3] / 4);
  return tags;
}

std::string quoted(const std::string& text) { return "'" + text + "'"; }

// The library's message, `unet dataset`'s exit status 1 with that message as its only line, and
// nothing written under the dataset.
void check_bad_input(const fs::path& root, const std::string& expected, const std::string& extra_args = "") {
  const auto before = test::snapshot(root);
  FindOptions find;
  if (extra_args.find("--patient-pattern") != std::string::npos) find.patient_pattern = "^(P[0-9]+)_";
  CHECK(error_of([&] { load_dataset(root.string(), find); }) == expected);
  const test::CommandResult result = test::run_unet("dataset --data " + quoted(root.string()) + " " + extra_args);
  CHECK(result.exit_status == 1);
  CHECK(result.output == "error: " + expected + "\n");
  CHECK(test::snapshot(root) == before);
}

}  // namespace

TEST_CASE("dataset: kaggle_3m slices in numeric order, other files ignored", "[dataset]") {
  TempDir dir;
  const fs::path root = dir.path() / "kaggle_3m";
  make_kaggle(root);
  const auto before = test::snapshot(dir.path());

  const DatasetFiles files = find_slices(root.string());
  CHECK(files.layout == Layout::kaggle_3m);
  REQUIRE(files.slices.size() == 5);
  CHECK(fs::path(files.slices[0].image).filename() == "TCGA_A_1_1.tif");
  CHECK(fs::path(files.slices[1].image).filename() == "TCGA_A_1_2.tif");  // 2 before 10
  CHECK(fs::path(files.slices[2].image).filename() == "TCGA_A_1_10.tif");
  CHECK(fs::path(files.slices[2].mask).filename() == "TCGA_A_1_10_mask.tif");
  CHECK(files.slices[3].patient == "TCGA_B_2");

  const Dataset data = load_dataset(files);
  CHECK(data.slices() == 5);
  CHECK(tags_of(data) == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(data.patients == std::vector<std::string>{"TCGA_A_1", "TCGA_B_2"});
  CHECK(data.volume == std::vector<int32_t>{0, 0, 0, 1, 1});
  CHECK(data.tumour == std::vector<uint8_t>{0, 1, 0, 1, 0});
  CHECK(data.height == 256);  // resized from 16 by default
  // The channels stay in file order (pre-contrast, FLAIR, post-contrast).
  const int64_t plane = 256 * 256;
  CHECK(data.images[plane * 3 * 1 + 0] == 8);
  CHECK(data.images[plane * 3 * 1 + 1] == 9);
  CHECK(data.images[plane * 3 * 1 + 2] == 10);
  CHECK(data.file_sizes[0] == std::pair<int, int>{16, 16});

  // The folder above kaggle_3m (as the Kaggle download unpacks) finds the same slices.
  CHECK(find_slices(dir.path().string()).slices.size() == 5);
  CHECK(test::snapshot(dir.path()) == before);
}

TEST_CASE("dataset: loading resizes images bilinearly and masks to nearest, 0 or 1", "[dataset]") {
  TempDir dir;
  make_kaggle(dir.path());
  const Dataset data = load_dataset(dir.path().string(), {}, {8, false});
  CHECK(data.height == 8);
  CHECK(data.width == 8);
  CHECK(data.images.size() == 5 * 8 * 8 * 3);
  // Slice 2 marks its first 20 pixels (row 0 and 4 of row 1 at 16 wide): at 8 wide, the nearest
  // pixels are row 0 (source row 1, columns 1, 3, ..., 15) -> the first 2 of 8 (columns 1, 3).
  std::vector<uint8_t> row0(data.masks.begin() + 64, data.masks.begin() + 72);
  CHECK(row0 == std::vector<uint8_t>{1, 1, 0, 0, 0, 0, 0, 0});
  CHECK(*std::max_element(data.masks.begin(), data.masks.end()) == 1);
  // Slice 4's 7 tumour pixels lie in row 0, which no output pixel's centre falls in: nearest
  // downsampling can lose a lesion thinner than the step.
  CHECK(data.tumour == std::vector<uint8_t>{0, 1, 0, 0, 0});
}

TEST_CASE("dataset: images/ and masks/ matched by stem, patients from a pattern", "[dataset]") {
  TempDir dir;
  const fs::path images = dir.path() / "images", masks = dir.path() / "masks";
  fs::create_directories(images);
  fs::create_directories(masks);
  const int tags[] = {3, 1, 2, 4};
  const char* stems[] = {"P2_slice10", "P2_slice2", "P1_slice1", "P10_slice1"};
  for (int i = 0; i < 4; ++i) {
    const std::vector<uint8_t> pixels = test::image_bytes(tagged_image(tags[i]));
    // Images as PNG, masks as TIFF: the stem is what matches.
    REQUIRE(stbi_write_png((images / (std::string(stems[i]) + ".png")).c_str(), kSize, kSize, 3, pixels.data(), kSize * 3));
    write_tiff((masks / (std::string(stems[i]) + ".tif")).string(), mask_image(i));
  }
  write_text(images / "README.md", "ignored");

  FindOptions find;
  find.patient_pattern = "^(P[0-9]+)_";
  const DatasetFiles files = find_slices(dir.path().string(), find);
  CHECK(files.layout == Layout::images_masks);
  const Dataset data = load_dataset(files, {kSize, false});
  CHECK(data.patients == std::vector<std::string>{"P1", "P2", "P10"});
  CHECK(tags_of(data) == std::vector<int>{2, 1, 3, 4});  // P1; P2 slice2, slice10; P10
  CHECK(data.volume == std::vector<int32_t>{0, 1, 1, 2});

  // Without a pattern, each image is its own patient.
  const Dataset each = load_dataset(dir.path().string(), {}, {kSize, false});
  CHECK(each.patients.size() == 4);

  CHECK_THAT(error_of([&] { find_slices(dir.path().string(), {"P(", false}); }),
             Catch::StartsWith("patient pattern 'P(': not a regular expression ("));
  CHECK(error_of([&] { find_slices(dir.path().string(), {"^P[0-9]+", false}); }) ==
        "patient pattern '^P[0-9]+': needs a group, ( ), around the patient id");
}

TEST_CASE("dataset: each bad input is one line naming the file, exit 1, nothing written", "[dataset][bad]") {
  SECTION("an image without its mask") {
    TempDir dir;
    make_kaggle(dir.path());
    fs::remove(dir.path() / "TCGA_A_1" / "TCGA_A_1_2_mask.tif");
    check_bad_input(dir.path(), (dir.path() / "TCGA_A_1" / "TCGA_A_1_2.tif").string() +
                                    ": image without a mask (no TCGA_A_1_2_mask.* beside it)");
  }
  SECTION("a mask without its image") {
    TempDir dir;
    make_kaggle(dir.path());
    fs::remove(dir.path() / "TCGA_B_2" / "TCGA_B_2_3.tif");
    check_bad_input(dir.path(), (dir.path() / "TCGA_B_2" / "TCGA_B_2_3_mask.tif").string() +
                                    ": mask without an image (no TCGA_B_2_3.* beside it)");
  }
  SECTION("a mask whose size differs from its image") {
    TempDir dir;
    make_kaggle(dir.path());
    const fs::path mask = dir.path() / "TCGA_A_1" / "TCGA_A_1_10_mask.tif";
    write_tiff(mask.string(), mask_image(0, 16, 12));
    check_bad_input(dir.path(), mask.string() + ": mask is 16x12 but its image is 16x16");
  }
  SECTION("an unreadable file") {
    TempDir dir;
    make_kaggle(dir.path());
    const fs::path image = dir.path() / "TCGA_A_1" / "TCGA_A_1_1.tif";
    if (::geteuid() == 0) {  // root reads anything: a link to nowhere cannot be opened either
      fs::remove(image);
      fs::create_symlink(dir.path() / "nowhere.tif", image);
      check_bad_input(dir.path(), image.string() + ": cannot open (No such file or directory)");
    } else {
      fs::permissions(image, fs::perms::none);
      check_bad_input(dir.path(), image.string() + ": cannot open (Permission denied)");
    }
  }
  SECTION("a truncated file") {
    TempDir dir;
    make_kaggle(dir.path());
    const fs::path image = dir.path() / "TCGA_B_2" / "TCGA_B_2_1.tif";
    const std::vector<uint8_t> bytes = test::read_bytes(image.string());
    test::write_bytes(image.string(), std::vector<uint8_t>(bytes.begin(), bytes.begin() + 300));
    const auto before = test::snapshot(dir.path());
    const std::string message = error_of([&] { load_dataset(dir.path().string()); });
    CHECK_THAT(message, Catch::StartsWith(image.string() + ": truncated or corrupt TIFF ("));
    const test::CommandResult result = test::run_unet("dataset --data " + quoted(dir.path().string()));
    CHECK(result.exit_status == 1);
    CHECK(result.output == "error: " + message + "\n");
    CHECK(test::snapshot(dir.path()) == before);
  }
  SECTION("an empty file") {
    TempDir dir;
    make_kaggle(dir.path());
    const fs::path mask = dir.path() / "TCGA_B_2" / "TCGA_B_2_3_mask.tif";
    test::write_bytes(mask.string(), {});
    check_bad_input(dir.path(), mask.string() + ": empty file");
  }
  SECTION("a file that is not an image") {
    TempDir dir;
    make_kaggle(dir.path());
    const fs::path image = dir.path() / "TCGA_A_1" / "TCGA_A_1_10.tif";
    write_text(image, "Patient,RNASeqCluster\n");
    check_bad_input(dir.path(), image.string() + ": not an image (not TIFF, PNG, JPEG or BMP)");
  }
  SECTION("an image name without a slice number") {
    TempDir dir;
    make_kaggle(dir.path());
    const fs::path image = dir.path() / "TCGA_A_1" / "overview.tif";
    write_tiff(image.string(), tagged_image(9));
    check_bad_input(dir.path(), image.string() +
                                    ": name does not end in _<slice number> (kaggle_3m names are <case>_<n>.tif and "
                                    "<case>_<n>_mask.tif)");
  }
  SECTION("a patient folder without slices") {
    TempDir dir;
    make_kaggle(dir.path());
    fs::create_directories(dir.path() / "TCGA_C_3");
    check_bad_input(dir.path(), (dir.path() / "TCGA_C_3").string() +
                                    ": no slices (expected <case>_<n>.tif with <case>_<n>_mask.tif)");
  }
  SECTION("an empty folder") {
    TempDir dir;
    check_bad_input(dir.path(), dir.path().string() +
                                    ": empty folder (expected kaggle_3m/<case>/<case>_<n>.tif, or images/ and masks/)");
  }
  SECTION("a folder of files but no patient folders") {
    TempDir dir;
    write_tiff(dir / "a_1.tif", tagged_image(1));
    check_bad_input(dir.path(), dir.path().string() +
                                    ": no patient folders (expected kaggle_3m/<case>/<case>_<n>.tif, or images/ and masks/)");
  }
  SECTION("a path that does not exist") {
    TempDir dir;
    const fs::path missing = dir.path() / "no-such-folder";
    CHECK(error_of([&] { load_dataset(missing.string()); }) == missing.string() + ": no such file or folder");
    const test::CommandResult result = test::run_unet("dataset --data " + quoted(missing.string()));
    CHECK(result.exit_status == 1);
    CHECK(result.output == "error: " + missing.string() + ": no such file or folder\n");
    CHECK_FALSE(fs::exists(missing));
  }
  SECTION("a file where a folder should be") {
    TempDir dir;
    write_text(dir.path() / "data.csv", "x");
    check_bad_input(dir.path() / "data.csv", (dir.path() / "data.csv").string() + ": not a folder");
  }
  SECTION("images/masks: an image without its mask, a name outside the pattern") {
    TempDir dir;
    fs::create_directories(dir.path() / "images");
    fs::create_directories(dir.path() / "masks");
    write_tiff(dir / "images/P1_a.tif", tagged_image(1));
    write_tiff(dir / "masks/P1_a.tif", mask_image(0));
    write_tiff(dir / "images/P1_b.tif", tagged_image(2));
    check_bad_input(dir.path(), dir / "images/P1_b.tif" + ": image without a mask (no masks/P1_b.*)");
    write_tiff(dir / "masks/P1_b.tif", mask_image(0));
    write_tiff(dir / "images/scan.tif", tagged_image(3));
    write_tiff(dir / "masks/scan.tif", mask_image(0));
    check_bad_input(dir.path(), dir / "images/scan.tif" + ": name does not match the patient pattern '^(P[0-9]+)_'",
                    "--patient-pattern '^(P[0-9]+)_'");
  }
}

TEST_CASE("dataset: --skip-bad leaves bad slices out and counts them", "[dataset][bad]") {
  TempDir dir;
  make_kaggle(dir.path());
  fs::remove(dir.path() / "TCGA_A_1" / "TCGA_A_1_2_mask.tif");
  test::write_bytes((dir.path() / "TCGA_B_2" / "TCGA_B_2_3.tif").string(), {});
  const auto before = test::snapshot(dir.path());

  const Dataset data = load_dataset(dir.path().string(), {"", true}, {kSize, true});
  CHECK(data.slices() == 3);
  CHECK(tags_of(data) == std::vector<int>{1, 3, 4});
  REQUIRE(data.skipped.size() == 2);
  CHECK_THAT(data.skipped[0], Catch::EndsWith("TCGA_A_1_2.tif: image without a mask (no TCGA_A_1_2_mask.* beside it)"));
  CHECK_THAT(data.skipped[1], Catch::EndsWith("TCGA_B_2_3.tif: empty file"));

  const test::CommandResult result = test::run_unet("dataset --skip-bad --data " + quoted(dir.path().string()));
  CHECK(result.exit_status == 0);
  CHECK_THAT(result.output, Catch::Contains("slices        3 (1 with tumour, 33.3%)"));
  CHECK_THAT(result.output, Catch::Contains("skipped       2 (--skip-bad):"));
  CHECK(test::snapshot(dir.path()) == before);
}

TEST_CASE("dataset: unet dataset reports the folder; usage errors exit 2", "[dataset]") {
  TempDir dir;
  make_kaggle(dir.path());
  const test::CommandResult result = test::run_unet("dataset --patients --data " + quoted(dir.path().string()));
  CHECK(result.exit_status == 0);
  CHECK_THAT(result.output, Catch::Contains("layout        kaggle_3m"));
  CHECK_THAT(result.output, Catch::Contains("patients      2"));
  CHECK_THAT(result.output, Catch::Contains("slices        5 (2 with tumour, 40.0%)"));
  CHECK_THAT(result.output, Catch::Contains("image size    16x16 as stored; 256x256 x 3 channels loaded"));
  CHECK_THAT(result.output, Catch::Contains("TCGA_A_1                               3       1"));

  const test::CommandResult missing = test::run_unet("dataset");
  CHECK(missing.exit_status == 2);
  CHECK(missing.output == "error: dataset: --data is required\n");
  const test::CommandResult bad_size = test::run_unet("dataset --image-size 0 --data x");
  CHECK(bad_size.exit_status == 2);
  CHECK(bad_size.output == "error: --image-size: 0 is below the minimum, 1\n");
}

TEST_CASE("dataset: the per-volume z-score table", "[dataset]") {
  Dataset data;
  data.height = 1;
  data.width = 2;
  // Two slices of volume 0, one of volume 1; channel 2 of volume 1 is constant.
  data.images = {0, 10, 50, 255, 10, 50, /**/ 0, 10, 50, 255, 10, 50, /**/ 51, 0, 7, 102, 20, 7};
  data.volume = {0, 0, 1};
  data.patients = {"a", "b"};
  const ZScoreTable table = volume_zscore(data);
  CHECK(table.mean[0] == Approx(0.5));
  CHECK(table.stddev[0] == Approx(0.5));
  CHECK(table.mean[1] == Approx(10.0 / 255));
  CHECK(table.stddev[1] == 1.0f);  // constant: 1, not 0
  CHECK(table.mean[3] == Approx(76.5 / 255));
  CHECK(table.stddev[3] == Approx(25.5 / 255));
  CHECK(table.mean[4] == Approx(10.0 / 255));
  CHECK(table.stddev[4] == Approx(10.0 / 255));
  CHECK(table.stddev[5] == 1.0f);
}

TEST_CASE("dataset: the augmentation flags become ranges; --no-augment is the identity", "[dataset][options]") {
  auto parse = [](std::vector<std::string> args) {
    AugmentOptions augment;
    Options options("train", "test");
    add_augment_options(options, &augment);
    options.parse(args);
    return augment.ranges();
  };
  const AugmentRanges defaults = parse({});
  CHECK(defaults.flip_h == 0.5f);
  CHECK(defaults.rotate_min == -15.0f);
  CHECK(defaults.rotate_max == 15.0f);
  CHECK(defaults.zoom_min == 0.9f);
  CHECK(defaults.zoom_max == 1.1f);
  CHECK(defaults.shift == 0.1f);
  const AugmentRanges custom = parse({"--rotate", "30", "--zoom", "0.2", "--flip-v", "0", "--shift", "0.05"});
  CHECK(custom.rotate_min == -30.0f);
  CHECK(custom.zoom_max == 1.2f);
  CHECK(custom.flip_v == 0.0f);
  CHECK(custom.shift == 0.05f);
  const AugmentRanges none = parse({"--no-augment"});
  CHECK(none.flip_h == 0.0f);
  CHECK(none.rotate_max == 0.0f);
  CHECK(none.zoom_min == 1.0f);
  CHECK(none.zoom_max == 1.0f);
  CHECK(none.shift == 0.0f);
  CHECK_THROWS_WITH(parse({"--flip-h", "1.5"}), "--flip-h: 1.500000 is outside [0.000000, 1.000000]");
}

TEST_CASE("dataset: an image name that is not a regular file is refused, or skipped, and never opened",
          "[dataset][bad]") {
  TempDir dir;
  make_kaggle(dir.path());
  const fs::path fifo = dir.path() / "TCGA_A_1" / "TCGA_A_1_3.tif";  // opening it would wait for a writer forever
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  write_tiff((dir.path() / "TCGA_A_1" / "TCGA_A_1_3_mask.tif").string(), mask_image(0));
  // REQUIRE: where the finder let the FIFO through, loading would hang instead of failing.
  const std::string refused = fifo.string() + ": not a regular file (a FIFO, socket or device)";
  REQUIRE_THROWS_WITH(find_slices(dir.path().string()), refused);
  const Dataset data = load_dataset(dir.path().string(), {"", true}, {kSize, true});
  CHECK(tags_of(data) == std::vector<int>{1, 2, 3, 4, 5});
  REQUIRE(data.skipped.size() == 2);  // the FIFO, and the mask it leaves without an image
  CHECK(data.skipped[0] == refused);
  CHECK_THROWS_WITH(read_image(fifo.string()), refused);
}
