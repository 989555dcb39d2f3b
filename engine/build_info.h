// What this binary is: version, commit and build configuration, for `unet info`, the training log
// and every benchmark result.
#pragma once

#include <string>

namespace unet {

struct BuildInfo {
  const char* version;
  const char* commit;               // git describe --dirty at build time
  const char* build_type;           // Release, Debug, ...
  const char* compiler;             // host compiler and version
  bool cuda;                        // the cuda device is built
  const char* cuda_toolkit;         // nvcc's version, or ""
  const char* cuda_architectures;   // "80;90", or ""
  bool sanitizers;                  // AddressSanitizer + UndefinedBehaviorSanitizer
};

const BuildInfo& build_info();

// One line: "unet 0.1.0 (abc123, Release, g++ 12.2.0, cuda 13.0 sm 80;90)".
std::string build_summary();

}  // namespace unet
