// The tests' main for cuda tests: without a usable GPU they exit with status 77, which CTest
// reports as skipped (SKIP_RETURN_CODE), not passed. Listing the tests works anywhere, so that
// CTest can discover them at build time.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "engine/device.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::string(argv[i]).rfind("--list", 0) == 0;
  std::string why;
  if (!listing && !unet::cuda_available(&why)) {
    std::printf("skipped: %s\n", why.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
