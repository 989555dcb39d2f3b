#include "engine/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "kernels/backend.h"

namespace unet {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what + (errno != 0 ? std::string(" (") + std::strerror(errno) + ")" : ""));
}

void write_all(int fd, std::string_view bytes, const std::string& path) {
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "cannot write");
    }
    written += static_cast<size_t>(n);
  }
}

// O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; only regular files are read.
int open_regular_file(const std::string& path) {
  errno = 0;
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) throw Error(path + ": is a folder, not a file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path, "cannot open");
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    errno = 0;
    fail(path, "not a regular file (a FIFO, socket or device)");
  }
  return fd;
}

}  // namespace

std::vector<uint8_t> read_file(const std::string& path, size_t max_bytes) {
  const int fd = open_regular_file(path);
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  while (bytes.size() < max_bytes) {
    const ssize_t n = ::read(fd, chunk, std::min(sizeof chunk, max_bytes - bytes.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      fail(path, "cannot read");
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  ::close(fd);
  return bytes;
}

std::string read_text_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  errno = 0;
  const std::filesystem::path target(path);
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(temporary, "cannot create");
  try {
    write_all(fd, bytes, temporary);
    if (::fsync(fd) != 0) fail(temporary, "cannot flush to disk");
  } catch (...) {
    ::close(fd);
    ::unlink(temporary.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temporary.c_str());
    errno = saved;
    fail(path, "cannot replace");
  }
  const std::string folder = target.has_parent_path() ? target.parent_path().string() : ".";
  const int folder_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (folder_fd >= 0) {
    ::fsync(folder_fd);  // makes the rename itself durable
    ::close(folder_fd);
  }
}

void append_line(const std::string& path, std::string_view line) {
  errno = 0;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, "cannot open for appending");
  std::string text(line);
  text += '\n';
  try {
    write_all(fd, text, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::fsync(fd);
  ::close(fd);
}

}  // namespace unet
