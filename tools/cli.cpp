#include "tools/cli.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace unet {

namespace {

Json value_json(const FlagTarget& target) {
  return std::visit(
      [](auto* value) {
        if constexpr (std::is_same_v<std::remove_pointer_t<decltype(value)>, std::vector<std::string>>) {
          Json list = Json::array();
          for (const std::string& item : *value) list.push(item);
          return list;
        } else {
          return Json(*value);
        }
      },
      target);
}

// Throws unet::Error unless `value` has the target's type.
void set_from_json(const FlagTarget& target, const Json& value) {
  std::visit(
      [&](auto* into) {
        using T = std::remove_pointer_t<decltype(into)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *into = value.as_string();
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          into->clear();
          for (const Json& item : value.items()) into->push_back(item.as_string());
        } else if constexpr (std::is_same_v<T, double>) {
          *into = value.as_number();
        } else if constexpr (std::is_same_v<T, bool>) {
          *into = value.as_bool();
        } else {
          *into = static_cast<T>(value.as_integer());
        }
      },
      target);
}

}  // namespace

Options::Options(std::string command, std::string summary) : command_(std::move(command)), summary_(std::move(summary)) {}

Options::Option& Options::add_option(const std::string& name, Target target, const std::string& value_name,
                                     const std::string& help) {
  Option option;
  option.name = name;
  option.value_name = value_name;
  option.help = help;
  option.target = target;
  std::visit(
      [&](auto* value) {
        using T = std::remove_pointer_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::string>) {
          option.default_text = value->empty() ? "" : *value;
        } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::vector<std::string>>) {
          option.default_text = "";
        } else if constexpr (std::is_same_v<T, double>) {
          std::ostringstream text;
          text << *value;
          option.default_text = text.str();
        } else {
          option.default_text = std::to_string(*value);
        }
      },
      target);
  option.default_value = value_json(target);
  options_.push_back(option);
  return options_.back();
}

Options& Options::add(const std::string& name, std::string* value, const std::string& value_name, const std::string& help) {
  add_option(name, value, value_name, help);
  return *this;
}
Options& Options::add(const std::string& name, int* value, const std::string& value_name, const std::string& help) {
  add_option(name, value, value_name, help);
  return *this;
}
Options& Options::add(const std::string& name, int64_t* value, const std::string& value_name, const std::string& help) {
  add_option(name, value, value_name, help);
  return *this;
}
Options& Options::add(const std::string& name, double* value, const std::string& value_name, const std::string& help) {
  add_option(name, value, value_name, help);
  return *this;
}
Options& Options::add(const std::string& name, std::vector<std::string>* values, const std::string& value_name,
                      const std::string& help) {
  add_option(name, values, value_name, help + " (repeatable)");
  return *this;
}
Options& Options::flag(const std::string& name, bool* value, const std::string& help) {
  add_option(name, value, "", help);
  return *this;
}
Options& Options::required() {
  options_.back().required = true;
  return *this;
}
Options& Options::choices(std::vector<std::string> allowed) {
  options_.back().allowed = std::move(allowed);
  return *this;
}
Options& Options::shown_default(const std::string& text) {
  options_.back().default_text = text;
  return *this;
}

Options& Options::shown_default(const std::string& name, const std::string& text) {
  for (auto& option : options_) {
    if (option.name == name) option.default_text = text;
  }
  return *this;
}

Options& Options::role(FlagRole role) {
  options_.back().role = role;
  return *this;
}

Options& Options::at_least(double minimum) {
  options_.back().has_minimum = true;
  options_.back().minimum = minimum;
  return *this;
}

namespace {

template <class T>
T parse_integer(const std::string& option, const std::string& text) {
  T value{};
  const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (status != std::errc{} || end != text.data() + text.size() || text.empty()) {
    throw UsageError("--" + option + ": '" + text + "' is not an integer");
  }
  return value;
}

double parse_number(const std::string& option, const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value)) {
    throw UsageError("--" + option + ": '" + text + "' is not a number");
  }
  return value;
}

}  // namespace

void Options::assign(Option& option, const std::string& text) {
  if (!option.allowed.empty()) {
    bool ok = false;
    std::string list;
    for (const auto& allowed : option.allowed) {
      ok = ok || allowed == text;
      list += (list.empty() ? "" : ", ") + allowed;
    }
    if (!ok) throw UsageError("--" + option.name + ": '" + text + "' is not one of " + list);
  }
  double numeric = 0;
  std::visit(
      [&](auto* value) {
        using T = std::remove_pointer_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *value = text;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          value->push_back(text);
        } else if constexpr (std::is_same_v<T, double>) {
          *value = numeric = parse_number(option.name, text);
        } else if constexpr (std::is_same_v<T, bool>) {
          *value = true;
        } else {
          *value = parse_integer<T>(option.name, text);
          numeric = static_cast<double>(*value);
        }
      },
      option.target);
  if (option.has_minimum && numeric < option.minimum) {
    std::ostringstream minimum;
    minimum << option.minimum;
    throw UsageError("--" + option.name + ": " + text + " is below the minimum, " + minimum.str());
  }
}

bool Options::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (arg.rfind("--", 0) != 0) throw UsageError(command_ + ": unexpected argument '" + arg + "'");
    std::string name = arg.substr(2);
    std::string value;
    bool inline_value = false;
    if (const size_t equals = name.find('='); equals != std::string::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
      inline_value = true;
    }
    Option* option = nullptr;
    for (auto& candidate : options_) {
      if (candidate.name == name) option = &candidate;
    }
    if (option == nullptr) throw UsageError(command_ + ": unknown option '--" + name + "' (see unet " + command_ + " --help)");
    const bool repeatable = std::holds_alternative<std::vector<std::string>*>(option->target);
    if (option->given && !repeatable) throw UsageError("--" + name + " given twice");
    option->given = true;
    if (std::holds_alternative<bool*>(option->target)) {
      if (inline_value) throw UsageError("--" + name + " takes no value");
      assign(*option, "");
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) throw UsageError("--" + name + " needs a value (" + option->value_name + ")");
      value = args[++i];
    }
    assign(*option, value);
  }
  for (const auto& option : options_) {
    if (option.required && !option.given) throw UsageError(command_ + ": --" + option.name + " is required");
  }
  return true;
}

const Options::Option* Options::find(const std::string& name) const {
  for (const auto& option : options_) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

bool Options::given(const std::string& name) const {
  const Option* option = find(name);
  return option != nullptr && option->given;
}

Json Options::saved(FlagRole role) const {
  Json json = Json::object();
  for (const auto& option : options_) {
    if (option.role == role) json.set(option.name, value_json(option.target));
  }
  return json;
}

void Options::restore(const Json& saved, FlagRole role) {
  if (role == FlagRole::identity) {
    for (const auto& [name, value] : saved.members()) {
      const Option* option = find(name);
      if (option == nullptr || option->role != FlagRole::identity) {
        throw Error("the run was started with --" + name + " " + value.dump() + ", which this unet " + command_ +
                    " does not know (a run of another version)");
      }
    }
  }
  for (auto& option : options_) {
    if (option.role != role) continue;
    const Json* found = saved.find(option.name);
    const Json& value = found != nullptr ? *found : option.default_value;
    if (option.given) {
      const std::string now = value_json(option.target).dump();
      if (role == FlagRole::identity && now != value.dump()) {
        throw Error("--" + option.name + " " + now + " differs from the run being resumed (" + value.dump() + ")");
      }
      continue;
    }
    try {
      set_from_json(option.target, value);
    } catch (const Error& error) {
      throw Error("the run's saved --" + option.name + " " + value.dump() + " is not valid: " + error.what());
    }
  }
}

std::string Options::help() const {
  std::ostringstream text;
  text << "usage: unet " << command_ << " [options]\n\n" << summary_ << "\n\noptions:\n";
  for (const auto& option : options_) {
    std::string left = "  --" + option.name + (option.value_name.empty() ? "" : " " + option.value_name);
    if (left.size() < 28) left.resize(28, ' ');
    else left += "\n" + std::string(28, ' ');
    text << left << option.help;
    if (option.required) text << " (required)";
    else if (!option.default_text.empty()) text << " (default: " << option.default_text << ")";
    text << "\n";
  }
  text << "  --help                    show this help\n";
  return text.str();
}

}  // namespace unet
