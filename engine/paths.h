// Paths the commands compare and the outputs they may replace.
//
// Canonical paths: absolute, `.` and `..` resolved and symbolic links followed as far as the path
// exists (std::filesystem::weakly_canonical), so "data", "./data/" and "/home/u/data" compare equal
// and a stored path works from any working directory.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace unet {

std::filesystem::path canonical_path(const std::string& path);

// Whether `inner` is `outer` or lies under it, comparing canonical paths.
bool is_same_or_inside(const std::string& inner, const std::string& outer);

// Throws unet::Error("<output_flag> <output> is inside <input_flag> <input> ...") when the output
// is the input folder or lies under it: a command never writes into the data it reads.
void refuse_output_inside_input(const std::string& output, const std::string& output_flag, const std::string& input,
                                const std::string& input_flag);

// Throws unet::Error unless `path` is absent, or holds `kind` (as `is_kind` tells), or `force`:
// an output flag replaces only a file of the kind it writes.
void refuse_replacing_another_kind(const std::string& path, const std::string& kind,
                                   const std::function<bool(const std::string&)>& is_kind, bool force);

// Whether the regular file at `path` begins with `prefix` (reads only that many bytes).
bool file_starts_with(const std::string& path, const std::string& prefix);

}  // namespace unet
