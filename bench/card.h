// The peak rates a benchmark compares against, by the card's name as the CUDA runtime reports it.
// Only cards whose figures the project has checked are listed: elsewhere no "% of peak" is
// printed rather than a guess.
#pragma once

#include <optional>
#include <string>

namespace unet::bench {

struct Peaks {
  std::string card;    // "H100 SXM"
  double fp32_tflops;  // dense, FMA counted as two operations
  double tf32_tflops;  // dense tensor-core
  double bf16_tflops;  // dense tensor-core
  double memory_gbs;   // HBM, 1 GB = 1e9 bytes
};

// "NVIDIA H100 80GB HBM3" (the SXM5 card) and "NVIDIA H200" have the same compute rates and
// differ in memory bandwidth. The PCIe and NVL variants run at lower clocks and are left out.
inline std::optional<Peaks> card_peaks(const std::string& name) {
  const auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (has("PCIe") || has("NVL")) return std::nullopt;
  if (has("H100") && (has("HBM3") || has("SXM"))) return Peaks{"H100 SXM", 67, 495, 989, 3350};
  if (has("H200")) return Peaks{"H200 SXM", 67, 495, 989, 4800};
  return std::nullopt;
}

}  // namespace unet::bench
