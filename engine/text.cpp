#include "engine/text.h"

#include <cstdio>
#include <ctime>

namespace unet {

std::string fixed(double value, int decimals) {
  char text[64];  // enough for any double below 1e40 at the decimals the tools use
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace unet
