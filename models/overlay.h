// The picture users look at: the FLAIR channel in grey, the ground truth outlined in red, the
// prediction outlined in green (yellow where the two outlines meet). And PNG writing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace unet {

// rgb (height, width, 3) of a slice (height, width, 3) whose channel 1 is FLAIR; `truth` may be
// null (no ground truth); masks are (height, width) of 0/1.
std::vector<uint8_t> overlay(const uint8_t* slice, const uint8_t* truth, const uint8_t* predicted, int height, int width);

// Writes an 8-bit grey (channels 1) or RGB (channels 3) PNG, atomically; throws unet::Error.
void write_png(const std::string& path, const uint8_t* pixels, int height, int width, int channels);

}  // namespace unet
