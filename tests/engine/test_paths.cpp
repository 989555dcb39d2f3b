// Canonical paths, the refusal to write into an input, and the refusal to replace a file of another kind.
#include <catch2/catch.hpp>

#include <fstream>

#include "engine/paths.h"
#include "kernels/backend.h"
#include "tests/test_util.h"

using namespace unet;
namespace fs = std::filesystem;

using test::error_of;

TEST_CASE("paths: canonical paths are absolute, resolved and without a trailing slash", "[paths]") {
  test::TempDir dir;
  fs::create_directories(dir.path() / "data" / "p1");
  fs::create_symlink(dir.path() / "data", dir.path() / "link");
  const fs::path data = fs::canonical(dir.path() / "data");
  CHECK(canonical_path(dir / "data/") == data);
  CHECK(canonical_path(dir / "data/p1/../.") == data);
  CHECK(canonical_path(dir / "link") == data);
  CHECK(canonical_path(dir / "link/not-yet/run") == data / "not-yet" / "run");  // resolved as far as it exists
  const fs::path here = fs::current_path();
  fs::current_path(dir.path());
  CHECK(canonical_path("data") == data);
  fs::current_path(here);
}

TEST_CASE("paths: an output is refused where it is, or is inside, an input", "[paths]") {
  test::TempDir dir;
  fs::create_directories(dir.path() / "data" / "p1");
  fs::create_symlink(dir.path() / "data", dir.path() / "link");
  CHECK(is_same_or_inside(dir / "data", dir / "data"));
  CHECK(is_same_or_inside(dir / "data/p1/run", dir / "data"));
  CHECK(is_same_or_inside(dir / "link/run", dir / "data"));
  CHECK_FALSE(is_same_or_inside(dir / "database", dir / "data"));  // a longer name is not inside
  CHECK_FALSE(is_same_or_inside(dir.path().string(), dir / "data"));
  CHECK(error_of([&] { refuse_output_inside_input(dir / "runs/a", "--out", dir / "data", "--data"); }) == "(no error)");
  CHECK(error_of([&] { refuse_output_inside_input(dir / "data/", "--out", dir / "data", "--data"); }) ==
        "--out " + (dir / "data/") + " is --data " + (dir / "data") +
            ": nothing is written into the data a command reads (choose another --out)");
  CHECK_THAT(error_of([&] { refuse_output_inside_input(dir / "link/p1/x.csv", "--csv", dir / "data", "--data"); }),
             Catch::StartsWith("--csv " + (dir / "link/p1/x.csv") + " is inside --data "));
}

TEST_CASE("paths: an output replaces only a file of its own kind, unless forced", "[paths]") {
  test::TempDir dir;
  std::ofstream(dir / "table.csv") << "patient,slices\n1,2\n";
  std::ofstream(dir / "notes.txt") << "my notes\n";
  fs::create_directories(dir.path() / "folder");
  const auto is_table = [](const std::string& path) { return file_starts_with(path, "patient,slices\n"); };
  CHECK(error_of([&] { refuse_replacing_another_kind(dir / "absent.csv", "a table", is_table, false); }) ==
        "(no error)");
  CHECK(error_of([&] { refuse_replacing_another_kind(dir / "table.csv", "a table", is_table, false); }) ==
        "(no error)");
  CHECK(error_of([&] { refuse_replacing_another_kind(dir / "notes.txt", "a table", is_table, false); }) ==
        (dir / "notes.txt") + ": exists and is not a table; refusing to replace it (--force replaces it anyway)");
  CHECK(error_of([&] { refuse_replacing_another_kind(dir / "notes.txt", "a table", is_table, true); }) == "(no error)");
  CHECK_THAT(error_of([&] { refuse_replacing_another_kind(dir / "folder", "a table", is_table, false); }),
             Catch::Contains("is not a table"));
  CHECK(file_starts_with(dir / "notes.txt", "my"));
  CHECK_FALSE(file_starts_with(dir / "notes.txt", "my notes\nand more"));  // shorter than the prefix
  CHECK_FALSE(file_starts_with(dir / "absent", ""));
}
