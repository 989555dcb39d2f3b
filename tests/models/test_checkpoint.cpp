// Weights and training checkpoints: round trips, every kind of bad file, and crash-safe writes.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "engine/files.h"
#include "models/checkpoint.h"

using namespace unet;

namespace {

const UNetConfig small{3, 4, 2};

std::string temporary(const std::string& name) {
  const auto folder = std::filesystem::temp_directory_path() / ("unet-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  return (folder / name).string();
}

std::unique_ptr<UNet> initialised(uint64_t seed, const UNetConfig& config = small) {
  auto model = std::make_unique<UNet>(config, device(DeviceKind::cpu));
  model->parameters().initialize(seed);
  return model;
}

std::string load_error(const SafeTensors& file, const UNetConfig& config = small) {
  UNet model(config, device(DeviceKind::cpu));
  try {
    load_weights(file, model);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("checkpoint: weights round-trip through PyTorch layouts", "[checkpoint]") {
  const auto model = initialised(1);
  const std::string path = temporary("weights.safetensors");
  save_weights(path, *model);
  const SafeTensors file = SafeTensors::load(path);
  CHECK(file.get("encoder.0.conv1.weight").shape == std::vector<int64_t>{4, 3, 3, 3});  // [Cout, Cin, k, k]
  CHECK(file.get("decoder.0.up.weight").shape == std::vector<int64_t>{16, 8, 2, 2});   // [Cin, Cout, 2, 2]
  CHECK(file.get("head.weight").shape == std::vector<int64_t>{1, 4, 1, 1});
  CHECK(file.metadata.at("unet.config") == R"({"in_channels":3,"base_width":4,"depth":2})");
  UNet loaded(read_config(file), device(DeviceKind::cpu));
  load_weights(file, loaded);
  CHECK(loaded.parameters().download(loaded.parameters().values()) == model->parameters().download(model->parameters().values()));
}

TEST_CASE("checkpoint: the layout conversion puts each weight where PyTorch has it", "[checkpoint]") {
  const auto model = initialised(2);
  const SafeTensors file = weights_file(*model);
  const std::vector<float> ours = model->parameters().download(model->parameters().values());
  for (const ParameterEntry& entry : model->parameters().entries()) {
    if (entry.kind == ParameterKind::bias) continue;
    const std::vector<float> theirs = file.floats(entry.name);
    const Shape& s = entry.shape;  // ours (A, kh, kw, B); PyTorch (A, B, kh, kw)
    const int a = s.n - 1, r = s.h - 1, q = 0, b = s.c / 2;
    CHECK(theirs[((int64_t{a} * s.c + b) * s.h + r) * s.w + q] == ours[entry.offset + ((int64_t{a} * s.h + r) * s.w + q) * s.c + b]);
  }
}

TEST_CASE("checkpoint: bad weights files are refused with one clear line", "[checkpoint]") {
  const SafeTensors good = weights_file(*initialised(3));
  CHECK(load_error(good).empty());

  CHECK_THAT(load_error(good, UNetConfig{3, 8, 2}), Catch::Contains("another configuration"));
  SafeTensors no_config = good;
  no_config.metadata.clear();
  CHECK_THAT(load_error(no_config), Catch::Contains("no unet.config"));
  SafeTensors bad_config = good;
  bad_config.metadata["unet.config"] = R"({"in_channels":3,"base_width":"4","depth":2})";
  CHECK_THAT(load_error(bad_config), Catch::Contains("base_width"));

  SafeTensors extra = good;
  extra.add_floats("encoder.9.conv1.weight", {1}, {0.0f});
  CHECK_THAT(load_error(extra), Catch::Contains("unknown tensor 'encoder.9.conv1.weight'"));

  SafeTensors missing;
  missing.metadata = good.metadata;
  for (const std::string& name : good.names()) {
    if (name != "head.bias") missing.add_floats(name, good.get(name).shape, good.floats(name));
  }
  CHECK_THAT(load_error(missing), Catch::Contains("missing tensor 'head.bias'"));

  SafeTensors reshaped;
  reshaped.metadata = good.metadata;
  for (const std::string& name : good.names()) {
    std::vector<int64_t> shape = good.get(name).shape;
    if (name == "head.weight") shape = {1, 4};
    reshaped.add_floats(name, shape, good.floats(name));
  }
  CHECK_THAT(load_error(reshaped), Catch::Contains("'head.weight' has shape [1, 4], expected [1, 4, 1, 1]"));

  SafeTensors wrong_dtype;
  wrong_dtype.metadata = good.metadata;
  for (const std::string& name : good.names()) {
    const TensorData& tensor = good.get(name);
    if (name == "head.bias") {
      const double value = 0.5;
      wrong_dtype.add(name, DType::f64, {1}, &value);
    } else {
      wrong_dtype.add(name, tensor.dtype, tensor.shape, tensor.bytes.data());
    }
  }
  CHECK_THAT(load_error(wrong_dtype), Catch::Contains("'head.bias' is F64, expected F32"));
}

TEST_CASE("checkpoint: weights or moments holding NaN or infinity are refused, naming the tensor and the count",
          "[checkpoint]") {
  const auto model = initialised(5);
  SafeTensors poisoned = weights_file(*model);
  std::vector<float> values = poisoned.floats("decoder.0.up.weight");
  values[3] = std::nanf("");
  values[7] = -std::numeric_limits<float>::infinity();
  poisoned.add_floats("decoder.0.up.weight", poisoned.get("decoder.0.up.weight").shape, values);
  CHECK(load_error(poisoned) == "safetensors: tensor 'decoder.0.up.weight' holds 2 non-finite values (NaN or "
                                "infinity) of " + std::to_string(values.size()) + "; refusing to load it");

  const std::string path = temporary("poisoned-moments.safetensors");
  save_training_checkpoint(path, *model, Json::object());
  SafeTensors checkpoint = SafeTensors::load(path);
  std::vector<float> moments = checkpoint.floats("optimizer.exp_avg_sq.head.bias");
  moments[0] = std::numeric_limits<float>::infinity();
  checkpoint.add_floats("optimizer.exp_avg_sq.head.bias", {1}, moments);
  UNet loaded(small, device(DeviceKind::cpu));
  CHECK_THROWS_WITH(load_training_checkpoint(checkpoint, loaded),
                    Catch::Contains("tensor 'optimizer.exp_avg_sq.head.bias' holds 1 non-finite value"));
}

TEST_CASE("checkpoint: is_unet_weights_file tells weights from other files", "[checkpoint]") {
  const std::string weights = temporary("kind.safetensors"), other = temporary("kind.txt");
  save_weights(weights, *initialised(6));
  write_file_atomic(other, "patient,slices\n");
  CHECK(is_unet_weights_file(weights));
  CHECK_FALSE(is_unet_weights_file(other));
  CHECK_FALSE(is_unet_weights_file(temporary("absent.safetensors")));
}

TEST_CASE("checkpoint: a training checkpoint restores weights, moments and state", "[checkpoint]") {
  const auto model = initialised(4);
  ParameterStore& p = model->parameters();
  std::vector<float> m(static_cast<size_t>(p.count())), v(m.size());
  for (size_t i = 0; i < m.size(); ++i) {
    m[i] = 0.001f * static_cast<float>(i % 97);
    v[i] = 0.002f * static_cast<float>(i % 89);
  }
  p.upload(p.first_moments(), m);
  p.upload(p.second_moments(), v);
  Json state = Json::object();
  state.set("step", int64_t{1234});
  state.set("epoch", 5);
  const std::string path = temporary("training.safetensors");
  save_training_checkpoint(path, *model, state);

  const SafeTensors file = SafeTensors::load(path);
  UNet restored(read_config(file), device(DeviceKind::cpu));
  const Json back = load_training_checkpoint(file, restored);
  CHECK(back.at("step").as_integer() == 1234);
  CHECK(restored.parameters().download(restored.parameters().first_moments()) == m);
  CHECK(restored.parameters().download(restored.parameters().second_moments()) == v);
  CHECK(restored.parameters().download(restored.parameters().values()) == p.download(p.values()));
  // A training checkpoint is also a weights file; a weights file is not a training checkpoint.
  UNet weights_only(small, device(DeviceKind::cpu));
  load_weights(file, weights_only);
  CHECK_THROWS_WITH(load_training_checkpoint(weights_file(*model), weights_only), Catch::Contains("not a training checkpoint"));
}

TEST_CASE("checkpoint: a writer killed mid-write never leaves a damaged file", "[checkpoint]") {
  const auto small_model = initialised(5);
  const std::string path = temporary("crash.safetensors");
  save_weights(path, *small_model);
  const std::string original = read_text_file(path);
  // A large file, so the kill lands mid-write.
  const auto large = initialised(6, UNetConfig{3, 64, 3});
  int killed_mid_write = 0;
  for (int trial = 0; trial < 6; ++trial) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      save_weights(path, *large);
      ::_exit(0);
    }
    ::usleep(static_cast<useconds_t>(2000 + 15000 * trial));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    if (WIFSIGNALED(status)) ++killed_mid_write;
    const std::string now = read_text_file(path);
    const SafeTensors file = SafeTensors::parse(std::vector<uint8_t>(now.begin(), now.end()), path);  // whole
    CHECK((now == original || read_config(file).base_width == 64));
    for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
      if (entry.path().string().find(".tmp-") != std::string::npos) std::filesystem::remove(entry.path());
    }
  }
  CHECK(killed_mid_write > 0);  // the test did interrupt writes
}
