#include "models/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace unet {

namespace {

constexpr const char* config_key = "unet.config";
constexpr const char* preprocessing_key = "unet.preprocessing";
constexpr const char* training_key = "unet.training";
constexpr const char* precision_key = "unet.precision";
constexpr const char* exp_avg = "optimizer.exp_avg.";
constexpr const char* exp_avg_sq = "optimizer.exp_avg_sq.";

// Every tensor in the file must be one the model expects.
void check_no_unknown(const SafeTensors& file, const UNet& model, bool with_optimizer) {
  std::set<std::string> expected;
  for (const ParameterEntry& entry : model.parameters().entries()) {
    expected.insert(entry.name);
    if (with_optimizer) {
      expected.insert(exp_avg + entry.name);
      expected.insert(exp_avg_sq + entry.name);
    }
  }
  for (const std::string& name : file.names()) {
    if (!expected.count(name)) throw Error(file.source() + ": unknown tensor '" + name + "' (not part of this model)");
  }
}

// Every parameter (or moment) named `prefix + name` must be finite: one NaN spreads through
// training while the loss can stay finite, and makes every later prediction meaningless.
void check_finite(const SafeTensors& file, const UNet& model, const std::string& prefix) {
  for (const ParameterEntry& entry : model.parameters().entries()) {
    const std::string name = prefix + entry.name;
    if (!file.contains(name) || file.get(name).dtype != DType::f32) continue;  // import_tensors names the problem
    const std::vector<float> values = file.floats(name);
    const auto bad = std::count_if(values.begin(), values.end(), [](float x) { return !std::isfinite(x); });
    if (bad > 0) {
      throw Error(file.source() + ": tensor '" + name + "' holds " + std::to_string(bad) + " non-finite value" +
                  (bad > 1 ? "s" : "") + " (NaN or infinity) of " + std::to_string(values.size()) +
                  "; refusing to load it");
    }
  }
}

int config_field(const Json& config, const char* key, const std::string& source) {
  const Json* value = config.find(key);
  if (value == nullptr || !value->is_integer() || value->as_integer() < 1 || value->as_integer() > 4096) {
    throw Error(source + ": unet.config needs a positive integer '" + key + "'");
  }
  return static_cast<int>(value->as_integer());
}

// A metadata entry that holds a JSON object.
Json metadata_object(const SafeTensors& file, const std::string& key, const std::string& value) {
  Json json;
  try {
    json = Json::parse(value);
  } catch (const Error& error) {
    throw Error(file.source() + ": " + key + " is not valid JSON: " + error.what());
  }
  if (!json.is_object()) throw Error(file.source() + ": " + key + " is not a JSON object");
  return json;
}

}  // namespace

Json config_json(const UNetConfig& config) {
  Json json = Json::object();
  json.set("in_channels", config.in_channels);
  json.set("base_width", config.base_width);
  json.set("depth", config.depth);
  return json;
}

UNetConfig read_config(const SafeTensors& file) {
  const auto found = file.metadata.find(config_key);
  if (found == file.metadata.end()) throw Error(file.source() + ": no unet.config in the metadata (not a unet weights file)");
  const Json config = metadata_object(file, config_key, found->second);
  UNetConfig result;
  result.in_channels = config_field(config, "in_channels", file.source());
  result.base_width = config_field(config, "base_width", file.source());
  result.depth = config_field(config, "depth", file.source());
  if (result.depth > 8) throw Error(file.source() + ": unet.config depth " + std::to_string(result.depth) + " is out of range");
  return result;
}

std::optional<Preprocessing> read_preprocessing(const SafeTensors& file) {
  const auto found = file.metadata.find(preprocessing_key);
  if (found == file.metadata.end()) return std::nullopt;
  const Json json = metadata_object(file, preprocessing_key, found->second);
  const Json* size = json.find("image_size");
  const Json* zscore = json.find("zscore");
  if (size == nullptr || !size->is_integer() || size->as_integer() < 1 || size->as_integer() > 65536) {
    throw Error(file.source() + ": unet.preprocessing needs an 'image_size' from 1 to 65536");
  }
  if (zscore == nullptr || zscore->type() != Json::Type::boolean) {
    throw Error(file.source() + ": unet.preprocessing needs 'zscore', true or false");
  }
  return Preprocessing{static_cast<int>(size->as_integer()), zscore->as_bool()};
}

bool is_unet_weights_file(const std::string& path) {
  try {
    return SafeTensors::load(path).metadata.count(config_key) != 0;
  } catch (const Error&) {
    return false;
  }
}

SafeTensors weights_file(const UNet& model, const Preprocessing& preprocessing) {
  SafeTensors file;
  file.metadata[config_key] = config_json(model.config()).dump();
  Json recorded = Json::object();
  recorded.set("image_size", preprocessing.image_size);
  recorded.set("zscore", preprocessing.zscore);
  file.metadata[preprocessing_key] = recorded.dump();
  file.metadata[precision_key] = precision_name(model.precision());
  file.metadata["format"] = "pt";
  model.parameters().export_tensors(model.parameters().values(), "", file);
  return file;
}

void save_weights(const std::string& path, const UNet& model, const Preprocessing& preprocessing) {
  weights_file(model, preprocessing).save(path);
}

void load_weights(const SafeTensors& file, UNet& model) {
  const UNetConfig saved = read_config(file);
  const UNetConfig& ours = model.config();
  if (saved.in_channels != ours.in_channels || saved.base_width != ours.base_width || saved.depth != ours.depth) {
    throw Error(file.source() + ": weights of another configuration (" + saved.describe() + ", depth " +
                std::to_string(saved.depth) + "); the model is " + ours.describe() + ", depth " + std::to_string(ours.depth));
  }
  check_no_unknown(file, model, file.metadata.count(training_key) != 0);
  check_finite(file, model, "");
  ParameterStore& parameters = model.parameters();
  parameters.import_tensors(file, "", parameters.values());
}

void check_weights_file(const std::string& path, const UNetConfig& config) {
  UNet probe(config, device(DeviceKind::cpu));
  load_weights(SafeTensors::load(path), probe);
}

void save_training_checkpoint(const std::string& path, const UNet& model, const Preprocessing& preprocessing,
                              const Json& training_state) {
  SafeTensors file = weights_file(model, preprocessing);
  const ParameterStore& parameters = model.parameters();
  parameters.export_tensors(parameters.first_moments(), exp_avg, file);
  parameters.export_tensors(parameters.second_moments(), exp_avg_sq, file);
  file.metadata[training_key] = training_state.dump();
  file.save(path);
}

Json load_training_checkpoint(const SafeTensors& file, UNet& model) {
  const auto found = file.metadata.find(training_key);
  if (found == file.metadata.end()) throw Error(file.source() + ": not a training checkpoint (no unet.training in the metadata)");
  load_weights(file, model);
  check_finite(file, model, exp_avg);
  check_finite(file, model, exp_avg_sq);
  ParameterStore& parameters = model.parameters();
  parameters.import_tensors(file, exp_avg, parameters.first_moments());
  parameters.import_tensors(file, exp_avg_sq, parameters.second_moments());
  try {
    return Json::parse(found->second);
  } catch (const Error& error) {
    throw Error(file.source() + ": unet.training is not valid JSON: " + error.what());
  }
}

}  // namespace unet
