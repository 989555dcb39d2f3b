// A training run on tiny phantom data (cpu): stopped after K steps and resumed, it ends with the
// same metrics and the same weights, to the bit, as a run never interrupted; and the run folder's
// refusals.
#include <catch2/catch.hpp>

#include <filesystem>

#include "data/phantom.h"
#include "engine/files.h"
#include "models/training_run.h"
#include "tests/test_util.h"

using namespace unet;
using test::error_of;

namespace {

namespace fs = std::filesystem;

// A folder for this process's runs, removed when it ends.
const fs::path& scratch() {
  static const test::TempDir folder;
  return folder.path();
}

// Six patients of twelve 32x32 slices, written once per process.
const std::string& phantom() {
  static const std::string root = [] {
    const std::string path = (scratch() / "phantom").string();
    write_phantom(path, {6, 12, 32, 5});
    return path;
  }();
  return root;
}

// Two epochs of 7 steps (48 training slices, batch 8, tumour slices shown twice) of a tiny model.
TrainingConfig tiny_run() {
  TrainingConfig config;
  config.data = phantom();
  config.load.image_size = 32;
  config.model = {3, 4, 2};
  config.epochs = 2;
  config.batch = 8;
  config.oversample = 2;
  config.adam.lr = 3e-3f;
  config.loss = {1, 1};
  config.val_patients = 2;
  config.seed = 1;
  config.device = DeviceKind::cpu;
  return config;
}

// metrics.csv without its last column (seconds).
std::vector<std::string> metrics_without_time(const fs::path& run) {
  std::vector<std::string> rows;
  const std::string text = read_text_file((run / "metrics.csv").string());
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    const std::string line = text.substr(begin, end - begin);
    rows.push_back(line.substr(0, line.rfind(',')));
    begin = end + 1;
  }
  return rows;
}

void check_same_tensors(const fs::path& a, const fs::path& b) {
  const SafeTensors first = SafeTensors::load(a.string()), second = SafeTensors::load(b.string());
  REQUIRE(first.names() == second.names());
  for (const std::string& name : first.names()) {
    INFO(a.filename().string() << ": " << name);
    CHECK(first.get(name).bytes == second.get(name).bytes);
  }
}

}  // namespace

TEST_CASE("training run: stopped after 4 steps and resumed, it ends bit for bit as an uninterrupted run (cpu)",
          "[training_run]") {
  const fs::path whole = scratch() / "whole", parts = scratch() / "parts";
  TrainingConfig config = tiny_run();
  REQUIRE(TrainingRun(whole, false).run(config) == 0);

  config.stop_after_steps = 4;  // inside the first epoch
  REQUIRE(TrainingRun(parts, false).run(config) == 130);
  CHECK(fs::exists(parts / "last.safetensors"));
  CHECK_FALSE(fs::exists(parts / "best.safetensors"));  // no epoch ended yet
  config.stop_after_steps = 10;  // inside the second epoch, after a validation and a best
  {
    TrainingRun resumed(parts, true);  // holds the folder's lock until the end of this block
    CHECK(resumed.resumed_state().at("step").as_integer() == 4);
    REQUIRE(resumed.run(config) == 130);
  }
  config.stop_after_steps = 0;
  REQUIRE(TrainingRun(parts, true).run(config) == 0);

  const std::vector<std::string> rows = metrics_without_time(whole);
  CHECK(rows.size() == 3);  // the header and two epochs
  CHECK(rows == metrics_without_time(parts));
  check_same_tensors(whole / "last.safetensors", parts / "last.safetensors");
  check_same_tensors(whole / "best.safetensors", parts / "best.safetensors");
  CHECK(read_text_file((whole / "val_patients.csv").string()) == read_text_file((parts / "val_patients.csv").string()));
  CHECK(read_text_file((whole / "split.json").string()) == read_text_file((parts / "split.json").string()));
}

TEST_CASE("training run: a folder that holds a run is refused, one without a checkpoint cannot resume",
          "[training_run]") {
  const fs::path run = scratch() / "refusals";
  REQUIRE(TrainingRun(run, false).run(tiny_run()) == 0);
  CHECK_THAT(error_of([&] { TrainingRun(run, false); }), Catch::Contains("already holds a run"));
  CHECK_THAT(error_of([&] { TrainingRun(scratch() / "empty", true); }),
             Catch::Contains("nothing to resume (no last.safetensors)"));
}
