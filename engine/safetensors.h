// safetensors files: the format of model weights, checkpoints, `unet step` batches and traces, and
// the PyTorch oracle's test cases. Layout: an 8-byte little-endian header length N, N bytes of
// JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}), then
// the tensors' bytes.
//
// Reading validates everything before it allocates or reads a byte of data: the header's length
// against the file's, the JSON, every dtype, shape and offset pair, that each tensor's bytes match
// its shape, and that the tensors tile the data exactly (no gap, no overlap). Any violation is one
// unet::Error naming the file and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace unet {

enum class DType { f32, f64, i32, i64, u8 };
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "F32", ...

struct TensorData {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  int64_t numel() const;
};

class SafeTensors {
 public:
  static constexpr uint64_t max_header_bytes = 100u << 20;  // as the reference implementation

  SafeTensors() = default;
  // `source` names the data in error messages (usually the path).
  static SafeTensors parse(const std::vector<uint8_t>& file, const std::string& source);
  static SafeTensors load(const std::string& path);
  std::string serialize() const;
  void save(const std::string& path) const;  // atomic (engine/files.h)

  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data);
  void add_floats(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorData& get(const std::string& name) const;
  // The values of an F32 tensor; throws if it is missing, of another dtype, or (when `shape` is not
  // empty) of another shape.
  std::vector<float> floats(const std::string& name, const std::vector<int64_t>& shape = {}) const;
  std::vector<double> doubles(const std::string& name, const std::vector<int64_t>& shape = {}) const;  // F64
  std::vector<std::string> names() const;
  const std::string& source() const { return source_; }

  std::map<std::string, std::string> metadata;

 private:
  std::string source_ = "safetensors";
  std::map<std::string, TensorData> tensors_;
};

std::string shape_text(const std::vector<int64_t>& shape);  // "[2, 3, 4]"

}  // namespace unet
