// The run folder: one writer at a time, what it tidies when taken, and what resuming checks first.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "engine/files.h"
#include "models/checkpoint.h"
#include "models/run_folder.h"
#include "tests/data/data_test_util.h"

using namespace unet;
namespace fs = std::filesystem;

namespace {

const UNetConfig small{3, 4, 2};

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string text_of(const fs::path& path) { return read_text_file(path.string()); }

// The PID of a child that has exited and been reaped: no process has it (until the PID is reused).
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

std::string error_of(const fs::path& path, RunStart start) {
  try {
    RunFolder folder(path.string(), start);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("run folder: a second writer is refused with the holder's PID and changes nothing", "[run_folder]") {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  {
    const RunFolder first(run.string(), RunStart::fresh);
    CHECK(text_of(run / ".lock") == std::to_string(::getpid()) + "\n");
    write(run / "log.jsonl", "{}\n");
    const auto before = test::snapshot(run);
    const std::string refused = run.string() + " is in use by another unet process (PID " + std::to_string(::getpid()) +
                                "); a run folder has one writer at a time";
    CHECK(error_of(run, RunStart::fresh) == refused);  // flock: a second open file is a second holder
    CHECK(error_of(run, RunStart::resume) == refused);
    CHECK(test::snapshot(run) == before);
  }
  CHECK_THAT(error_of(run, RunStart::resume), Catch::Contains("nothing to resume"));  // released: now it is checked
}

TEST_CASE("run folder: resuming needs a checkpoint and says what to do without one", "[run_folder]") {
  test::TempDir dir;
  CHECK(error_of(dir.path() / "absent", RunStart::resume) ==
        dir / "absent" + ": nothing to resume (no last.safetensors)");
  CHECK_FALSE(fs::exists(dir.path() / "absent"));
  write(dir.path() / "failed" / "log.jsonl", "{}\n");
  CHECK(error_of(dir.path() / "failed", RunStart::resume) ==
        dir / "failed" +
            ": nothing to resume (no last.safetensors; the run stopped before its first checkpoint: start "
            "it again without --resume)");
}

TEST_CASE("run folder: a fresh start clears a start that left no checkpoint, and refuses a run", "[run_folder]") {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  const char* first_files[] = {"log.jsonl", "metrics.csv", "split.json", "best.safetensors"};
  for (const char* name : first_files) write(run / name, "x");
  write(run / "mine.txt", "x");
  {
    const RunFolder folder(run.string(), RunStart::fresh);
    REQUIRE(folder.notes().size() == 1);
    CHECK(folder.notes()[0] ==
          run.string() + " held a start that stopped before its first checkpoint; starting it again");
  }
  for (const char* name : first_files) CHECK_FALSE(fs::exists(run / name));
  CHECK(fs::exists(run / "mine.txt"));  // only what training writes
  CHECK(RunFolder(run.string(), RunStart::fresh).notes().empty());
  write(run / "last.safetensors", "x");
  CHECK(error_of(run, RunStart::fresh) ==
        run.string() + " already holds a run (use --resume to continue it, or another --out)");
}

TEST_CASE("run folder: temporaries of writers no longer alive are removed when the folder is taken", "[run_folder]") {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  const std::string dead = std::to_string(dead_pid());
  const std::string stale[] = {"last.safetensors.tmp-" + dead, "overlays/1-best.png.tmp-" + dead};
  const std::string kept[] = {"best.safetensors.tmp-" + std::to_string(::getpid()), "split.json.tmp-1",  // alive
                              "notes.tmp-abc", "last.safetensors"};
  for (const std::string& name : stale) write(run / name, "partial");
  for (const std::string& name : kept) write(run / name, "keep");
  const RunFolder folder(run.string(), RunStart::resume);
  for (const std::string& name : stale) CHECK_FALSE(fs::exists(run / name));
  for (const std::string& name : kept) CHECK(fs::exists(run / name));
  REQUIRE(folder.notes().size() == 1);
  CHECK_THAT(folder.notes()[0], Catch::StartsWith("removed 2 stale temporary files left by interrupted writes ("));
}

TEST_CASE("run folder: resuming truncates a partial last line of log.jsonl", "[run_folder]") {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  write(run / "last.safetensors", "x");
  write(run / "log.jsonl", "{\"event\":\"start\"}\n{\"event\":\"epo");
  {
    const RunFolder folder(run.string(), RunStart::resume);
    REQUIRE(folder.notes().size() == 1);
    CHECK(folder.notes()[0] == "log.jsonl: removed a partial last line (13 bytes) left by an interrupted write");
  }
  CHECK(text_of(run / "log.jsonl") == "{\"event\":\"start\"}\n");
  CHECK(RunFolder(run.string(), RunStart::resume).notes().empty());

  write(dir.path() / "one", "no newline at all");
  CHECK(truncate_partial_last_line(dir / "one") == 17);
  CHECK(text_of(dir.path() / "one").empty());
  CHECK(truncate_partial_last_line(dir / "one") == 0);
  CHECK(truncate_partial_last_line(dir / "absent") == 0);
}

TEST_CASE("run folder: best.safetensors is checked before resuming, with the way to recover", "[run_folder]") {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  write(run / "last.safetensors", "x");
  const RunFolder folder(run.string(), RunStart::resume);
  CHECK_FALSE(folder.check_best_weights(small));

  UNet model(small, device(DeviceKind::cpu));
  model.parameters().initialize(1);
  const std::string best = (run / "best.safetensors").string();
  save_weights(best, model);
  CHECK(folder.check_best_weights(small));
  const std::string hint =
      "; to resume, remove " + best + " (the best weights are then chosen among the epochs still to come)";
  CHECK_THROWS_WITH(folder.check_best_weights(UNetConfig{3, 8, 2}),
                    Catch::Contains("another configuration") && Catch::EndsWith(hint));

  SafeTensors poisoned = weights_file(model);
  std::vector<float> bias = poisoned.floats("head.bias");
  bias[0] = std::nanf("");
  poisoned.add_floats("head.bias", {1}, bias);
  poisoned.save(best);
  CHECK_THROWS_WITH(folder.check_best_weights(small), Catch::Contains("non-finite") && Catch::EndsWith(hint));

  const std::string bytes = text_of(best);
  write_file_atomic(best, bytes.substr(0, bytes.size() - 10));
  CHECK_THROWS_WITH(folder.check_best_weights(small), Catch::Contains("run past the end") && Catch::EndsWith(hint));
}
