// Helpers for the data tests: generated images, folder snapshots, running `unet`.
#pragma once

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "data/image.h"
#include "tests/test_util.h"  // TempDir

namespace unet::test {

// Random samples over the whole range of `bits`.
inline Image random_image(int width, int height, int channels, int bits, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> sample(0, bits == 8 ? 255 : 65535);
  Image image{width, height, channels, bits, {}};
  image.samples.resize(static_cast<size_t>(width) * height * channels);
  for (auto& v : image.samples) v = static_cast<uint16_t>(sample(generator));
  return image;
}

inline std::vector<uint8_t> image_bytes(const Image& image) {  // 8-bit samples as bytes
  return std::vector<uint8_t>(image.samples.begin(), image.samples.end());
}

// Every file and folder under `root` with its size and modification time: equal snapshots
// before and after mean nothing was written, created, removed or touched.
// (A file instead of a folder is a snapshot of that file alone.)
inline std::map<std::string, std::pair<uintmax_t, int64_t>> snapshot(const std::filesystem::path& root) {
  std::map<std::string, std::pair<uintmax_t, int64_t>> out;
  auto add = [&](const std::filesystem::path& path) {
    struct stat info {};
    ::lstat(path.c_str(), &info);
    out[path.string()] = {static_cast<uintmax_t>(info.st_size),
                          int64_t{info.st_mtim.tv_sec} * 1000000000 + info.st_mtim.tv_nsec};
  };
  add(root);
  if (!std::filesystem::is_directory(root)) return out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) add(entry.path());
  return out;
}

struct CommandResult {
  int exit_status = -1;
  std::string output;  // stdout and stderr together
};

#ifdef UNET_BINARY
// Runs the `unet` binary this build made, with `arguments` (already shell-quoted).
inline CommandResult run_unet(const std::string& arguments) {
  const std::string command = std::string(UNET_BINARY) + " " + arguments + " 2>&1";
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}
#endif

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) throw std::runtime_error("cannot write " + path);
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), file);
  std::fclose(file);
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) throw std::runtime_error("cannot read " + path);
  std::vector<uint8_t> bytes;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  std::fclose(file);
  return bytes;
}

}  // namespace unet::test
