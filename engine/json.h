// A small JSON value for safetensors headers, run logs (log.jsonl), splits and benchmark
// summaries, read and written by nlohmann-json (engine/json.cpp). Parsing is strict: duplicate
// keys, trailing commas, comments, bad escapes, invalid UTF-8 and nesting deeper than 64 are
// errors; integers keep all 64 bits. Writing is compact; NaN and the infinities are written as null.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/backend.h"

namespace unet {

class Json {
 public:
  enum class Type { null, boolean, number, string, array, object };

  Json() = default;
  Json(bool value) : type_(Type::boolean), boolean_(value) {}
  Json(int value) : Json(static_cast<int64_t>(value)) {}
  Json(int64_t value) : type_(Type::number), integral_(true), integer_(value), number_(static_cast<double>(value)) {}
  Json(double value) : type_(Type::number), number_(value) {}
  Json(const char* value) : type_(Type::string), string_(value) {}
  Json(std::string value) : type_(Type::string), string_(std::move(value)) {}
  static Json array() { return Json(Type::array); }
  static Json object() { return Json(Type::object); }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_object() const { return type_ == Type::object; }
  bool is_array() const { return type_ == Type::array; }
  bool is_string() const { return type_ == Type::string; }
  bool is_number() const { return type_ == Type::number; }
  bool is_integer() const { return type_ == Type::number && integral_; }

  // Each accessor throws unet::Error naming the expected type when the value has another.
  bool as_bool() const;
  double as_number() const;
  int64_t as_integer() const;
  const std::string& as_string() const;
  const std::vector<Json>& items() const;
  const std::vector<std::pair<std::string, Json>>& members() const;  // in document order

  const Json* find(const std::string& key) const;  // nullptr if absent (or not an object)
  const Json& at(const std::string& key) const;    // throws if absent
  Json& set(const std::string& key, Json value);   // replaces an existing key
  Json& push(Json value);

  std::string dump() const;
  // Throws unet::Error("<what> at offset N") on malformed text.
  static Json parse(std::string_view text);

 private:
  explicit Json(Type type) : type_(type) {}
  friend class JsonBuilder;

  Type type_ = Type::null;
  bool boolean_ = false;
  bool integral_ = false;
  int64_t integer_ = 0;
  double number_ = 0;
  std::string string_;
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
};

}  // namespace unet
