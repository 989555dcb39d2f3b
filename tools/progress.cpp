#include "tools/progress.h"

#include <unistd.h>

#include <cstdio>

namespace unet {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)),
      total_(total),
      terminal_(::isatty(STDOUT_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60));
  else if (s >= 60) std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else std::snprintf(text, sizeof text, "%llds", static_cast<long long>(s));
  return text;
}

void Progress::update(int64_t done, const std::string& detail) {
  const auto now = std::chrono::steady_clock::now();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  const bool last = done >= total_;
  // A terminal redraws a few times a second; a log gets a line every 10 s and at the end.
  if (printed_ && !last && since_print < (terminal_ ? 0.2 : 10.0)) return;
  last_print_ = now;
  printed_ = true;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0;
  const std::string eta_text = last ? format_duration(elapsed) : "ETA " + format_duration(eta);
  if (terminal_) {
    constexpr int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::printf("\r%s [%s] %lld/%lld %s %s\x1b[K", label_.c_str(), bar.c_str(), static_cast<long long>(done),
                static_cast<long long>(total_), detail.c_str(), eta_text.c_str());
  } else {
    std::printf("%s %lld/%lld %s %s\n", label_.c_str(), static_cast<long long>(done), static_cast<long long>(total_),
                detail.c_str(), eta_text.c_str());
  }
  std::fflush(stdout);
}

void Progress::finish() {
  if (terminal_ && printed_) std::printf("\n");
  std::fflush(stdout);
}

}  // namespace unet
