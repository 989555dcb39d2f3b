// safetensors reading: every malformed file is one clear error, never a crash or an out-of-bounds
// read (the sanitizer build runs these too).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/json.h"
#include "engine/safetensors.h"

using namespace unet;

namespace {

std::vector<uint8_t> bytes_of(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

SafeTensors sample() {
  SafeTensors file;
  file.metadata["unet.config"] = R"({"in_channels":3})";
  file.add_floats("a.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  file.add_floats("b", {4}, {-1, -2, -3, -4});
  const int64_t steps[2] = {7, 8};
  file.add("steps", DType::i64, {2}, steps);
  return file;
}

// A file with the given header JSON and `data_bytes` bytes of data.
std::vector<uint8_t> with_header(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out(8);
  const uint64_t length = header.size();
  for (int k = 0; k < 8; ++k) out[k] = static_cast<uint8_t>(length >> (8 * k));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

std::string error_of(const std::vector<uint8_t>& file) {
  try {
    SafeTensors::parse(file, "f.safetensors");
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("safetensors: a file round-trips with its metadata", "[safetensors]") {
  const std::string text = sample().serialize();
  const SafeTensors back = SafeTensors::parse(bytes_of(text), "f");
  CHECK(back.names() == std::vector<std::string>{"a.weight", "b", "steps"});
  CHECK(back.floats("a.weight", {2, 3}) == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(back.get("steps").dtype == DType::i64);
  CHECK(back.metadata.at("unet.config") == R"({"in_channels":3})");
  CHECK((text.size() - 8 - back.get("b").bytes.size() - 24 - 16) % 8 == 0);  // data starts 8-aligned
}

TEST_CASE("safetensors: each kind of malformed file has its own message", "[safetensors]") {
  CHECK_THAT(error_of({1, 2, 3}), Catch::Contains("f.safetensors") && Catch::Contains("shorter than"));
  CHECK_THAT(error_of(bytes_of("GIF89a\x01\x02 not a tensor file")), Catch::Contains("exceeds 100 MiB") || Catch::Contains("truncated"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)),
             Catch::Contains("run past the end"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8)),
             Catch::Contains("malformed header"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("unsupported dtype BF16"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
             Catch::Contains("needs 12"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
             Catch::Contains("overlaps"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
             Catch::Contains("gap"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8)),
             Catch::Contains("belong to no tensor"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("not a size"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("too large"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8)),
             Catch::Contains("begin <= end"));
  CHECK_THAT(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
             Catch::Contains("duplicate key"));
  std::vector<uint8_t> huge(16, 0);
  huge[6] = 1;  // a header length of 2^48
  CHECK_THAT(error_of(huge), Catch::Contains("exceeds 100 MiB"));
}

TEST_CASE("safetensors: thousands of mutated files parse or fail cleanly", "[safetensors]") {
  const std::vector<uint8_t> valid = bytes_of(sample().serialize());
  std::mt19937_64 random(12345);
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    std::vector<uint8_t> file = valid;
    const int mutations = 1 + static_cast<int>(random() % 4);
    for (int m = 0; m < mutations; ++m) {
      switch (random() % 5) {
        case 0: file[random() % file.size()] ^= static_cast<uint8_t>(1u << (random() % 8)); break;  // bit flip
        case 1: file[random() % file.size()] = static_cast<uint8_t>(random()); break;              // byte
        case 2: file.resize(random() % file.size()); break;                                           // truncate
        case 3: file.insert(file.begin() + static_cast<long>(random() % file.size()), static_cast<uint8_t>(random())); break;
        case 4: file[random() % 8] = static_cast<uint8_t>(random()); break;                           // header length
      }
      if (file.empty()) file.push_back(0);
    }
    try {
      const SafeTensors result = SafeTensors::parse(file, "mutant");
      for (const std::string& name : result.names()) {
        const TensorData& tensor = result.get(name);
        REQUIRE(static_cast<size_t>(tensor.numel()) * dtype_size(tensor.dtype) == tensor.bytes.size());
      }
      ++parsed;
    } catch (const Error& error) {
      REQUIRE(std::string(error.what()).rfind("mutant: ", 0) == 0);
      ++rejected;
    }
  }
  CHECK(rejected > 2500);  // most mutations must be caught
  CHECK(parsed + rejected == 5000);
}

TEST_CASE("json: strict parsing and exact integers", "[json]") {
  const Json value = Json::parse(R"({"a": [1, -2.5e3, "x\u00e9\n"], "big": 9007199254740993, "t": true, "n": null})");
  CHECK(value.at("a").items()[0].as_integer() == 1);
  CHECK(value.at("a").items()[1].as_number() == -2500.0);
  CHECK(value.at("a").items()[2].as_string() == "x\xc3\xa9\n");
  CHECK(value.at("big").as_integer() == 9007199254740993LL);
  CHECK(value.at("t").as_bool());
  CHECK(value.at("n").is_null());
  CHECK(Json::parse(value.dump()).dump() == value.dump());
  for (const char* bad : {"{", "[1,]", "{\"a\":1,}", "01", "\"\\x\"", "{\"a\":1} x", "[1 2]", "nul", "\"\x01\""}) {
    INFO(bad);
    CHECK_THROWS_AS(Json::parse(bad), Error);
  }
  std::string deep(100, '[');
  CHECK_THROWS_WITH(Json::parse(deep), Catch::Contains("deeper than 64"));
  CHECK_THROWS_WITH(Json::parse(R"({"a": 1, "b": {"a": 2}, "a": 3})"), "JSON: duplicate key 'a'");
  CHECK_THROWS_WITH(Json::parse("[1,]"), Catch::StartsWith("JSON: ") && Catch::EndsWith(" at offset 4"));
}

TEST_CASE("json: writing keeps order and integers, and writes non-finite numbers as null", "[json]") {
  Json value = Json::object();
  value.set("z", int64_t{9007199254740993});
  value.set("a", Json::array()).push(0.1);
  value.set("nan", std::nan(""));
  value.set("inf", HUGE_VAL);
  CHECK(value.dump() == R"({"z":9007199254740993,"a":[0.1],"nan":null,"inf":null})");
}
