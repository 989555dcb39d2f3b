// Text that the tools and benchmarks write: fixed-point numbers and UTC timestamps.
#pragma once

#include <string>

namespace unet {

// value with `decimals` digits after the point, as printf's "%.*f" writes it.
std::string fixed(double value, int decimals = 4);

// The current time in UTC, as ISO 8601 to the second: "2026-12-01T09:20:15Z".
std::string utc_now();

}  // namespace unet
