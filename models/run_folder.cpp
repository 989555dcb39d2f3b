#include "models/run_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "engine/files.h"
#include "models/checkpoint.h"

namespace unet {

namespace fs = std::filesystem;

namespace {

// What `unet train` writes before its first checkpoint: a start that stopped there left only these.
constexpr const char* first_files[] = {"log.jsonl", "metrics.csv", "split.json", "best.safetensors"};

// The PID the holder wrote; it writes it right after locking, so wait a moment for it.
std::string lock_holder(int fd) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    char text[32] = {};
    const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    if (n > 0 && text[n - 1] == '\n') return std::string(text, static_cast<size_t>(n - 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return "unknown";
}

// "<name>.tmp-<pid>" (engine/files.h's write_file_atomic) -> pid, or -1.
long temporary_writer(const std::string& name) {
  const size_t at = name.rfind(".tmp-");
  if (at == std::string::npos || at + 5 == name.size() || name.size() - at > 5 + 9) return -1;
  long pid = 0;
  for (size_t i = at + 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

bool process_alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH; }

std::string plural(size_t count, const std::string& noun) {
  return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

}  // namespace

RunFolder::RunFolder(const std::string& path, RunStart start) : path_(path), shown_(path) {
  std::error_code error;
  if (start == RunStart::resume) {
    if (!fs::is_directory(path_, error)) throw Error(shown_ + ": nothing to resume (no last.safetensors)");
  } else {
    fs::create_directories(path_, error);
    if (error) throw Error(shown_ + ": cannot create the run folder (" + error.message() + ")");
  }
  lock();
  remove_stale_temporaries();
  if (start == RunStart::resume) {
    prepare_resume();
  } else {
    start_fresh();
  }
}

RunFolder::~RunFolder() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

void RunFolder::lock() {
  const std::string lock_path = (path_ / ".lock").string();
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw Error(lock_path + ": cannot open the run folder's lock (" + std::strerror(errno) + ")");
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int reason = errno;
    const std::string holder = reason == EWOULDBLOCK ? lock_holder(lock_fd_) : "";
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (reason != EWOULDBLOCK) throw Error(lock_path + ": cannot lock the run folder (" + std::strerror(reason) + ")");
    throw Error(shown_ + " is in use by another unet process (PID " + holder +
                "); a run folder has one writer at a time");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 ||
      ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    throw Error(lock_path + ": cannot record this process in the lock (" + std::strerror(errno) + ")");
  }
}

void RunFolder::remove_stale_temporaries() {
  std::vector<std::string> removed;
  std::error_code error;
  for (const auto& entry : fs::recursive_directory_iterator(path_, error)) {
    const long pid = temporary_writer(entry.path().filename().string());
    if (pid <= 0 || pid == ::getpid() || process_alive(pid) || !entry.is_regular_file(error)) continue;
    if (fs::remove(entry.path(), error)) removed.push_back(fs::relative(entry.path(), path_, error).string());
  }
  if (removed.empty()) return;
  std::string names;
  for (const std::string& name : removed) names += (names.empty() ? "" : ", ") + name;
  notes_.push_back("removed " + plural(removed.size(), "stale temporary file") + " left by interrupted writes (" +
                   names + ")");
}

void RunFolder::start_fresh() {
  std::error_code error;
  if (fs::exists(path_ / "last.safetensors", error)) {
    throw Error(shown_ + " already holds a run (use --resume to continue it, or another --out)");
  }
  bool any = false;
  for (const char* name : first_files) any = fs::remove(path_ / name, error) || any;
  if (any) notes_.push_back(shown_ + " held a start that stopped before its first checkpoint; starting it again");
}

void RunFolder::prepare_resume() {
  std::error_code error;
  if (!fs::is_regular_file(path_ / "last.safetensors", error)) {
    const bool started = fs::exists(path_ / "log.jsonl", error);
    const char* why = started ? "; the run stopped before its first checkpoint: start it again without --resume)" : ")";
    throw Error(shown_ + ": nothing to resume (no last.safetensors" + why);
  }
  if (const size_t cut = truncate_partial_last_line((path_ / "log.jsonl").string()); cut > 0) {
    notes_.push_back("log.jsonl: removed a partial last line (" + plural(cut, "byte") +
                     ") left by an interrupted write");
  }
}

bool RunFolder::check_best_weights(const UNetConfig& config) const {
  const fs::path best = path_ / "best.safetensors";
  std::error_code error;
  if (!fs::exists(best, error)) return false;
  try {
    check_weights_file(best.string(), config);
  } catch (const Error& failure) {
    throw Error(std::string(failure.what()) + "; to resume, remove " + best.string() +
                " (the best weights are then chosen among the epochs still to come)");
  }
  return true;
}

size_t truncate_partial_last_line(const std::string& path) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return 0;
  const std::string text = read_text_file(path);
  if (text.empty() || text.back() == '\n') return 0;
  const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  fs::resize_file(path, keep, error);
  if (error) throw Error(path + ": cannot remove its partial last line (" + error.message() + ")");
  return text.size() - keep;
}

}  // namespace unet
