// A training run folder (docs/training.md), held by one writer for the whole run.
//
// Opening one takes an advisory lock (flock on RUN_DIR/.lock, which holds the holder's PID) that
// the process keeps until it exits, so two `unet train` processes never write one folder: the
// second gets one error naming the folder and the PID and changes nothing. With the lock held, the
// folder is tidied of what interrupted writers leave behind:
//   - checkpoint temporaries "<name>.tmp-<pid>" whose writer is no longer alive are removed;
//   - a fresh start in a folder holding no checkpoint (a start that failed or was killed before
//     its first epoch ended) removes that start's files and begins again;
//   - resuming truncates a partial last line of log.jsonl (a kill in the middle of an append).
// What was done is in notes(), one line each, for the command to print.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "models/unet_config.h"

namespace unet {

enum class RunStart { fresh, resume };

class RunFolder {
 public:
  // fresh: creates the folder if needed and refuses one that holds a checkpoint. resume: refuses a
  // folder without last.safetensors (saying what to do instead).
  RunFolder(const std::string& path, RunStart start);
  ~RunFolder();
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<std::string>& notes() const { return notes_; }

  // Resuming: whether best.safetensors is there; throws, saying how to recover, if it is there but
  // cannot be loaded as finite weights of `config`. Checked before the first step, not at the end.
  bool check_best_weights(const UNetConfig& config) const;

 private:
  void lock();
  void start_fresh();
  void prepare_resume();
  void remove_stale_temporaries();

  std::filesystem::path path_;
  std::string shown_;  // the folder as the user typed it, for messages
  int lock_fd_ = -1;
  std::vector<std::string> notes_;
};

// Truncates the file after its last newline when it does not end in one; returns the bytes removed.
size_t truncate_partial_last_line(const std::string& path);

}  // namespace unet
