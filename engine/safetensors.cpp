#include "engine/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/files.h"
#include "engine/json.h"
#include "kernels/backend.h"

namespace unet {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "?";
}

int64_t TensorData::numel() const {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return count;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

namespace {

bool parse_dtype(const std::string& name, DType* dtype) {
  for (DType candidate : {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8}) {
    if (name == dtype_name(candidate)) {
      *dtype = candidate;
      return true;
    }
  }
  return false;
}

struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};


// The 8-byte little-endian header length, checked against the limit.
uint64_t header_length(const std::vector<uint8_t>& file, const std::string& source) {
  if (file.size() < 8) throw Error(source + ": not a safetensors file (shorter than its 8-byte header length)");
  uint64_t header_bytes = 0;
  for (int k = 7; k >= 0; --k) header_bytes = (header_bytes << 8) | file[k];
  if (header_bytes > SafeTensors::max_header_bytes) {
    throw Error(source + ": not a safetensors file (header length " + std::to_string(header_bytes) +
                " exceeds 100 MiB)");
  }
  return header_bytes;
}

}  // namespace

SafeTensors SafeTensors::parse(const std::vector<uint8_t>& file, const std::string& source) {
  const auto fail = [&](const std::string& what) -> void { throw Error(source + ": " + what); };
  const uint64_t header_bytes = header_length(file, source);
  if (header_bytes > file.size() - 8) fail("truncated: the header claims " + std::to_string(header_bytes) + " bytes, the file has " + std::to_string(file.size() - 8) + " after the length");
  if (header_bytes < 2 || file[8] != '{') fail("not a safetensors file (the header is not a JSON object)");
  const uint64_t data_bytes = file.size() - 8 - header_bytes;

  Json header;
  try {
    header = Json::parse(std::string_view(reinterpret_cast<const char*>(file.data() + 8), header_bytes));
  } catch (const Error& error) {
    fail(std::string("malformed header: ") + error.what());
  }
  if (!header.is_object()) fail("malformed header: not a JSON object");

  SafeTensors result;
  result.source_ = source;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.members()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("__metadata__ is not an object");
      for (const auto& [key, text] : value.members()) {
        if (!text.is_string()) fail("__metadata__ value of '" + key + "' is not a string");
        result.metadata[key] = text.as_string();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!value.is_object()) fail(where + "not an object");
    const Json* dtype = value.find("dtype");
    const Json* shape = value.find("shape");
    const Json* offsets = value.find("data_offsets");
    if (!dtype || !shape || !offsets) fail(where + "needs dtype, shape and data_offsets");
    if (value.members().size() != 3) fail(where + "has unknown fields");
    Entry entry;
    entry.name = name;
    if (!dtype->is_string() || !parse_dtype(dtype->as_string(), &entry.dtype)) {
      fail(where + "unsupported dtype " + (dtype->is_string() ? dtype->as_string() : std::string("(not a string)")) + " (F32, F64, I32, I64 and U8 are)");
    }
    if (!shape->is_array() || shape->items().size() > 8) fail(where + "shape must be an array of at most 8 sizes");
    uint64_t elements = 1;
    for (const Json& size : shape->items()) {
      if (!size.is_integer() || size.as_integer() < 0) fail(where + "shape holds a value that is not a size");
      const auto d = static_cast<uint64_t>(size.as_integer());
      if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / 8 / d) fail(where + "shape is too large");
      elements *= d;
      entry.shape.push_back(size.as_integer());
    }
    if (!offsets->is_array() || offsets->items().size() != 2 || !offsets->items()[0].is_integer() ||
        !offsets->items()[1].is_integer() || offsets->items()[0].as_integer() < 0 ||
        offsets->items()[1].as_integer() < offsets->items()[0].as_integer()) {
      fail(where + "data_offsets must be two integers 0 <= begin <= end");
    }
    entry.begin = static_cast<uint64_t>(offsets->items()[0].as_integer());
    entry.end = static_cast<uint64_t>(offsets->items()[1].as_integer());
    if (entry.end > data_bytes) fail(where + "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + ") run past the end of the data (" + std::to_string(data_bytes) + " bytes; truncated file?)");
    if (entry.end - entry.begin != elements * dtype_size(entry.dtype)) {
      fail(where + "holds " + std::to_string(entry.end - entry.begin) + " bytes, but " + dtype_name(entry.dtype) + " " + shape_text(entry.shape) + " needs " + std::to_string(elements * dtype_size(entry.dtype)));
    }
    entries.push_back(std::move(entry));
  }

  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  uint64_t covered = 0;
  for (const Entry& entry : entries) {
    if (entry.begin < covered) fail("tensor '" + entry.name + "' overlaps another tensor's bytes");
    if (entry.begin > covered) fail("the data has a gap before tensor '" + entry.name + "'");
    covered = entry.end;
  }
  if (covered != data_bytes) fail("the data has " + std::to_string(data_bytes - covered) + " bytes that belong to no tensor");

  const uint8_t* data = file.data() + 8 + header_bytes;
  for (Entry& entry : entries) {
    TensorData tensor;
    tensor.dtype = entry.dtype;
    tensor.shape = std::move(entry.shape);
    tensor.bytes.assign(data + entry.begin, data + entry.end);
    result.tensors_.emplace(entry.name, std::move(tensor));
  }
  return result;
}

SafeTensors SafeTensors::load(const std::string& path) {
  header_length(read_file(path, 8), path);  // a header beyond the limit is refused before it is read
  return parse(read_file(path), path);
}

std::string SafeTensors::serialize() const {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [key, value] : metadata) meta.set(key, value);
    header.set("__metadata__", meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors_) {
    Json entry = Json::object();
    entry.set("dtype", dtype_name(tensor.dtype));
    Json shape = Json::array();
    for (int64_t d : tensor.shape) shape.push(d);
    entry.set("shape", shape);
    Json offsets = Json::array();
    offsets.push(static_cast<int64_t>(offset));
    offset += tensor.bytes.size();
    offsets.push(static_cast<int64_t>(offset));
    entry.set("data_offsets", offsets);
    header.set(name, entry);
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // the data starts 8-byte aligned
  std::string out(8, '\0');
  uint64_t length = text.size();
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>((length >> (8 * k)) & 0xff);
  out += text;
  for (const auto& [name, tensor] : tensors_) out.append(reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size());
  return out;
}

void SafeTensors::save(const std::string& path) const { write_file_atomic(path, serialize()); }

void SafeTensors::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data) {
  if (name.empty() || name == "__metadata__") throw Error("safetensors: invalid tensor name '" + name + "'");
  TensorData tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  const auto bytes = static_cast<size_t>(tensor.numel()) * dtype_size(dtype);
  const auto* begin = static_cast<const uint8_t*>(data);
  tensor.bytes.assign(begin, begin + bytes);
  tensors_[name] = std::move(tensor);
}

void SafeTensors::add_floats(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  if (count != static_cast<int64_t>(values.size())) throw Error("safetensors: '" + name + "' has " + std::to_string(values.size()) + " values for shape " + shape_text(shape));
  add(name, DType::f32, std::move(shape), values.data());
}

const TensorData& SafeTensors::get(const std::string& name) const {
  const auto found = tensors_.find(name);
  if (found == tensors_.end()) throw Error(source_ + ": no tensor named '" + name + "'");
  return found->second;
}

namespace {

template <class T>
std::vector<T> values_of(const SafeTensors& file, const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
  const TensorData& tensor = file.get(name);
  if (tensor.dtype != dtype) {
    throw Error(file.source() + ": tensor '" + name + "' is " + dtype_name(tensor.dtype) + ", expected " + dtype_name(dtype));
  }
  if (!shape.empty() && tensor.shape != shape) {
    throw Error(file.source() + ": tensor '" + name + "' has shape " + shape_text(tensor.shape) + ", expected " + shape_text(shape));
  }
  std::vector<T> values(tensor.bytes.size() / sizeof(T));
  std::memcpy(values.data(), tensor.bytes.data(), tensor.bytes.size());
  return values;
}

}  // namespace

std::vector<float> SafeTensors::floats(const std::string& name, const std::vector<int64_t>& shape) const {
  return values_of<float>(*this, name, DType::f32, shape);
}

std::vector<double> SafeTensors::doubles(const std::string& name, const std::vector<int64_t>& shape) const {
  return values_of<double>(*this, name, DType::f64, shape);
}

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  for (const auto& [name, tensor] : tensors_) out.push_back(name);
  return out;
}

}  // namespace unet
