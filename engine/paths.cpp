#include "engine/paths.h"

#include <algorithm>
#include <fstream>

#include "kernels/backend.h"

namespace unet {

namespace fs = std::filesystem;

fs::path canonical_path(const std::string& path) {
  std::error_code error;
  fs::path resolved = fs::weakly_canonical(fs::absolute(path, error), error);
  if (error) resolved = fs::absolute(path).lexically_normal();
  // "a/b/" and "a/b" name one folder: drop the empty last element a trailing slash leaves.
  if (!resolved.has_filename() && resolved.has_parent_path() && resolved != resolved.root_path()) {
    resolved = resolved.parent_path();
  }
  return resolved;
}

bool is_same_or_inside(const std::string& inner, const std::string& outer) {
  const fs::path in = canonical_path(inner), out = canonical_path(outer);
  return std::mismatch(out.begin(), out.end(), in.begin(), in.end()).first == out.end();
}

void refuse_output_inside_input(const std::string& output, const std::string& output_flag, const std::string& input,
                                const std::string& input_flag) {
  if (!is_same_or_inside(output, input)) return;
  const bool same = canonical_path(output) == canonical_path(input);
  throw Error(output_flag + " " + output + (same ? " is " : " is inside ") + input_flag + " " + input +
              ": nothing is written into the data a command reads (choose another " + output_flag + ")");
}

void refuse_replacing_another_kind(const std::string& path, const std::string& kind,
                                   const std::function<bool(const std::string&)>& is_kind, bool force) {
  std::error_code error;
  if (force || !fs::exists(fs::symlink_status(path, error))) return;
  if (!fs::is_regular_file(path, error) || !is_kind(path)) {
    throw Error(path + ": exists and is not " + kind + "; refusing to replace it (--force replaces it anyway)");
  }
}

bool file_starts_with(const std::string& path, const std::string& prefix) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return false;
  std::ifstream file(path, std::ios::binary);
  std::string head(prefix.size(), '\0');
  file.read(head.data(), static_cast<std::streamsize>(head.size()));
  return file.gcount() == static_cast<std::streamsize>(prefix.size()) && head == prefix;
}

}  // namespace unet
