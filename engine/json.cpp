#include "engine/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

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

void dump_string(const std::string& text, std::string& out) {
  out += '"';
  for (const unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char escape[8];
          std::snprintf(escape, sizeof escape, "\\u%04x", c);
          out += escape;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void dump_value(const Json& value, std::string& out) {
  switch (value.type()) {
    case Json::Type::null: out += "null"; break;
    case Json::Type::boolean: out += value.as_bool() ? "true" : "false"; break;
    case Json::Type::number: {
      if (value.is_integer()) {
        out += std::to_string(value.as_integer());
      } else if (!std::isfinite(value.as_number())) {
        out += "null";  // JSON has no NaN or infinity
      } else {
        // The shortest of %.15g / %.17g that reads back as the same double: logs stay readable,
        // and a checkpoint's numbers survive a round trip exactly.
        char text[32];
        std::snprintf(text, sizeof text, "%.15g", value.as_number());
        if (std::strtod(text, nullptr) != value.as_number()) std::snprintf(text, sizeof text, "%.17g", value.as_number());
        out += text;
      }
      break;
    }
    case Json::Type::string: dump_string(value.as_string(), out); break;
    case Json::Type::array: {
      out += '[';
      bool first = true;
      for (const Json& item : value.items()) {
        if (!first) out += ',';
        first = false;
        dump_value(item, out);
      }
      out += ']';
      break;
    }
    case Json::Type::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.members()) {
        if (!first) out += ',';
        first = false;
        dump_string(key, out);
        out += ':';
        dump_value(item, out);
      }
      out += '}';
      break;
    }
  }
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

std::string Json::dump() const {
  std::string out;
  dump_value(*this, out);
  return out;
}

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  Json document() {
    Json value = parse_value(0);
    skip_space();
    if (at_ < text_.size()) fail("unexpected text after the value");
    return value;
  }

 private:
  static constexpr int max_depth = 64;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("JSON: " + what + " at offset " + std::to_string(at_));
  }
  void skip_space() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\r' || text_[at_] == '\t')) ++at_;
  }
  char peek() {
    skip_space();
    if (at_ >= text_.size()) fail("unexpected end");
    return text_[at_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++at_;
  }
  void literal(std::string_view word) {
    if (text_.substr(at_, word.size()) != word) fail("invalid literal");
    at_ += word.size();
  }

  Json parse_value(int depth) {
    if (depth > max_depth) fail("nesting deeper than 64");
    switch (peek()) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': return Json(parse_string());
      case 't': literal("true"); return Json(true);
      case 'f': literal("false"); return Json(false);
      case 'n': literal("null"); return Json();
      default: return parse_number();
    }
  }

  Json parse_object(int depth) {
    expect('{');
    Json object = Json::object();
    if (peek() == '}') {
      ++at_;
      return object;
    }
    for (;;) {
      if (peek() != '"') fail("expected a key");
      std::string key = parse_string();
      if (object.find(key) != nullptr) fail("duplicate key '" + key + "'");
      expect(':');
      object.members_.emplace_back(std::move(key), parse_value(depth + 1));
      const char c = peek();
      ++at_;
      if (c == '}') return object;
      if (c != ',') fail("expected ',' or '}'");
    }
  }

  Json parse_array(int depth) {
    expect('[');
    Json array = Json::array();
    if (peek() == ']') {
      ++at_;
      return array;
    }
    for (;;) {
      array.items_.push_back(parse_value(depth + 1));
      const char c = peek();
      ++at_;
      if (c == ']') return array;
      if (c != ',') fail("expected ',' or ']'");
    }
  }

  unsigned hex4() {
    if (at_ + 4 > text_.size()) fail("truncated \\u escape");
    unsigned value = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text_[at_++];
      value <<= 4;
      if (c >= '0' && c <= '9') value |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') value |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') value |= static_cast<unsigned>(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return value;
  }

  static void append_utf8(unsigned code, std::string& out) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (at_ >= text_.size()) fail("unterminated string");
      const char c = text_[at_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= text_.size()) fail("unterminated string");
      const char e = text_[at_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned code = hex4();
          if (code >= 0xd800 && code < 0xdc00) {  // a surrogate pair
            if (text_.substr(at_, 2) != "\\u") fail("unpaired surrogate");
            at_ += 2;
            const unsigned low = hex4();
            if (low < 0xdc00 || low >= 0xe000) fail("unpaired surrogate");
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          } else if (code >= 0xdc00 && code < 0xe000) {
            fail("unpaired surrogate");
          }
          append_utf8(code, out);
          break;
        }
        default: fail("bad escape");
      }
    }
  }

  Json parse_number() {
    const size_t start = at_;
    if (at_ < text_.size() && text_[at_] == '-') ++at_;
    const auto digits = [&] {
      const size_t from = at_;
      while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
      return at_ - from;
    };
    const size_t integer_start = at_;
    if (digits() == 0) fail("invalid value");
    if (text_[integer_start] == '0' && at_ - integer_start > 1) fail("leading zero");
    bool integral = true;
    if (at_ < text_.size() && text_[at_] == '.') {
      ++at_;
      integral = false;
      if (digits() == 0) fail("digits expected after '.'");
    }
    if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
      ++at_;
      integral = false;
      if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
      if (digits() == 0) fail("digits expected in exponent");
    }
    const std::string_view literal_text = text_.substr(start, at_ - start);
    if (integral) {
      int64_t value = 0;
      const auto [end, status] = std::from_chars(literal_text.data(), literal_text.data() + literal_text.size(), value);
      if (status == std::errc{} && end == literal_text.data() + literal_text.size()) return Json(value);
    }
    const std::string copy(literal_text);
    return Json(std::strtod(copy.c_str(), nullptr));
  }

  std::string_view text_;
  size_t at_ = 0;
};

Json Json::parse(std::string_view text) { return JsonParser(text).document(); }

}  // namespace unet
