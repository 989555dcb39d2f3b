// Progress for long work: a bar redrawn in place on a terminal, plain lines (one every few seconds)
// when the output is a file or a pipe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace unet {

class Progress {
 public:
  // `total` units of work (steps); `label` prefixes every line.
  Progress(std::string label, int64_t total);
  // Done `done` units; `detail` is appended (loss, images/s, ...).
  void update(int64_t done, const std::string& detail);
  // Ends the bar's line (terminal) so the next output starts clean.
  void finish();

 private:
  std::string label_;
  int64_t total_;
  bool terminal_;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool printed_ = false;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "42s"

}  // namespace unet
