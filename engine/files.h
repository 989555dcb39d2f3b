// Whole-file reads and crash-safe writes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace unet {

// The file's bytes (its first max_bytes at most); throws unet::Error("<path>: <reason>") if it
// cannot be read or is not a regular file (a FIFO, socket or device is refused without waiting).
std::vector<uint8_t> read_file(const std::string& path, size_t max_bytes = SIZE_MAX);
std::string read_text_file(const std::string& path);

// Writes to "<path>.tmp-<pid>", fsyncs it, renames it over `path`, and fsyncs the folder: a crash
// at any point leaves either the old file or the new one, never a mix.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Appends one line and flushes it to disk (for logs).
void append_line(const std::string& path, std::string_view line);

}  // namespace unet
