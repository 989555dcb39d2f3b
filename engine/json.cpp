#include "engine/json.h"

#include <cstdint>

#include <nlohmann/json.hpp>

namespace unet {

namespace {

const char* type_name(Json::Type type) {
  switch (type) {
    case Json::Type::null: return "null";
    case Json::Type::boolean: return "a boolean";
    case Json::Type::number: return "a number";
    case Json::Type::string: return "a string";
    case Json::Type::array: return "an array";
    case Json::Type::object: return "an object";
  }
  return "?";
}

[[noreturn]] void wrong_type(Json::Type actual, const char* expected) {
  throw Error(std::string("JSON: expected ") + expected + ", found " + type_name(actual));
}

// The nlohmann value to write: numbers keep their kind (64-bit integer or double), objects their order.
nlohmann::ordered_json to_nlohmann(const Json& value) {
  switch (value.type()) {
    case Json::Type::null: return nullptr;
    case Json::Type::boolean: return value.as_bool();
    case Json::Type::number:
      if (value.is_integer()) return value.as_integer();
      return value.as_number();
    case Json::Type::string: return value.as_string();
    case Json::Type::array: {
      nlohmann::ordered_json array = nlohmann::ordered_json::array();
      for (const Json& item : value.items()) array.push_back(to_nlohmann(item));
      return array;
    }
    case Json::Type::object: {
      nlohmann::ordered_json object = nlohmann::ordered_json::object();
      for (const auto& [key, item] : value.members()) object[key] = to_nlohmann(item);
      return object;
    }
  }
  return nullptr;
}

// "[json.exception.parse_error.101] parse error at line 1, column 2: syntax error ..." without
// its prefix: the part a user can act on.
std::string reason(const nlohmann::detail::exception& error) {
  const std::string what = error.what();
  const size_t column = what.find("column ");
  const size_t colon = what.find(": ", column == std::string::npos ? 0 : column);
  return colon == std::string::npos ? what : what.substr(colon + 2);
}

}  // namespace

bool Json::as_bool() const {
  if (type_ != Type::boolean) wrong_type(type_, "a boolean");
  return boolean_;
}
double Json::as_number() const {
  if (type_ != Type::number) wrong_type(type_, "a number");
  return number_;
}
int64_t Json::as_integer() const {
  if (type_ != Type::number || !integral_) wrong_type(type_, "an integer");
  return integer_;
}
const std::string& Json::as_string() const {
  if (type_ != Type::string) wrong_type(type_, "a string");
  return string_;
}
const std::vector<Json>& Json::items() const {
  if (type_ != Type::array) wrong_type(type_, "an array");
  return items_;
}
const std::vector<std::pair<std::string, Json>>& Json::members() const {
  if (type_ != Type::object) wrong_type(type_, "an object");
  return members_;
}

const Json* Json::find(const std::string& key) const {
  if (type_ != Type::object) return nullptr;
  for (const auto& [name, value] : members_) {
    if (name == key) return &value;
  }
  return nullptr;
}

const Json& Json::at(const std::string& key) const {
  if (type_ != Type::object) wrong_type(type_, "an object");
  const Json* value = find(key);
  if (value == nullptr) throw Error("JSON: missing key '" + key + "'");
  return *value;
}

Json& Json::set(const std::string& key, Json value) {
  if (type_ != Type::object) wrong_type(type_, "an object");
  for (auto& [name, existing] : members_) {
    if (name == key) return existing = std::move(value);
  }
  members_.emplace_back(key, std::move(value));
  return members_.back().second;
}

Json& Json::push(Json value) {
  if (type_ != Type::array) wrong_type(type_, "an array");
  items_.push_back(std::move(value));
  return items_.back();
}

// Strings that are not valid UTF-8 are written with U+FFFD in place of the bad bytes; NaN and the
// infinities as null (JSON has neither). Doubles are written in the shortest form that reads back
// as the same double, so a checkpoint's numbers survive a round trip exactly.
std::string Json::dump() const {
  return to_nlohmann(*this).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// Builds a Json while nlohmann parses, refusing what nlohmann would accept and this project does
// not: a duplicate key (nlohmann keeps the last) and nesting deeper than 64.
class JsonBuilder : public nlohmann::json_sax<nlohmann::json> {
 public:
  Json result() { return std::move(root_); }

  bool null() override { return add(Json()); }
  bool boolean(bool value) override { return add(Json(value)); }
  bool number_integer(number_integer_t value) override { return add(Json(static_cast<int64_t>(value))); }
  bool number_unsigned(number_unsigned_t value) override {
    if (value <= static_cast<number_unsigned_t>(INT64_MAX)) return add(Json(static_cast<int64_t>(value)));
    return add(Json(static_cast<double>(value)));
  }
  bool number_float(number_float_t value, const string_t&) override { return add(Json(value)); }
  bool string(string_t& value) override { return add(Json(std::move(value))); }
  bool binary(binary_t&) override { return false; }  // JSON text has none

  bool start_object(std::size_t) override { return open(Json::object()); }
  bool key(string_t& key) override {
    Json& object = *open_.back();
    if (object.find(key) != nullptr) throw Error("JSON: duplicate key '" + key + "'");
    key_ = std::move(key);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(Json::array()); }
  bool end_array() override { return close(); }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) override {
    throw Error("JSON: " + reason(error) + " at offset " + std::to_string(position));
  }

 private:
  static constexpr size_t max_depth = 64;

  // Puts a value where the document is: the root, the next array item or the member under key_.
  Json* place(Json value) {
    if (open_.empty()) return &(root_ = std::move(value));
    Json& parent = *open_.back();
    if (parent.is_array()) return &parent.push(std::move(value));
    parent.members_.emplace_back(std::move(key_), std::move(value));
    return &parent.members_.back().second;
  }
  bool add(Json value) {
    place(std::move(value));
    return true;
  }
  bool open(Json container) {
    if (open_.size() == max_depth) throw Error("JSON: nesting deeper than 64");
    open_.push_back(place(std::move(container)));
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }

  Json root_;
  std::vector<Json*> open_;  // the containers being filled, outermost first
  std::string key_;
};

Json Json::parse(std::string_view text) {
  JsonBuilder builder;
  nlohmann::json::sax_parse(text, &builder);
  return builder.result();
}

}  // namespace unet
