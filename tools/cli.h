// Command-line options for the `unet` subcommands: every option has a type, a default and a line
// of help; unknown options and bad values are errors (UsageError), never ignored.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "kernels/backend.h"

namespace unet {

// A mistake in how a command was called; `unet` prints it and exits with status 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

class Options {
 public:
  Options(std::string command, std::string summary);

  // Each option writes into *value; the value there beforehand is the default shown in --help.
  Options& add(const std::string& name, std::string* value, const std::string& value_name, const std::string& help);
  Options& add(const std::string& name, int* value, const std::string& value_name, const std::string& help);
  Options& add(const std::string& name, int64_t* value, const std::string& value_name, const std::string& help);
  Options& add(const std::string& name, double* value, const std::string& value_name, const std::string& help);
  Options& flag(const std::string& name, bool* value, const std::string& help);
  // Repeatable: each --name VALUE appends to *values (every other option may be given once).
  Options& add(const std::string& name, std::vector<std::string>* values, const std::string& value_name,
               const std::string& help);
  // Constraints on the option added last.
  Options& required();
  Options& choices(std::vector<std::string> allowed);
  Options& at_least(double minimum);
  // What --help shows as the default, where the stored value is a sentinel.
  Options& shown_default(const std::string& text);

  // False if --help was asked for (the help is then printed); throws UsageError on bad input.
  bool parse(const std::vector<std::string>& args);
  bool given(const std::string& name) const;
  std::string help() const;

 private:
  using Target = std::variant<std::string*, int*, int64_t*, double*, bool*, std::vector<std::string>*>;
  struct Option {
    std::string name, value_name, help, default_text;
    Target target;
    bool required = false;
    bool given = false;
    std::vector<std::string> allowed;
    bool has_minimum = false;
    double minimum = 0;
  };
  Option& add_option(const std::string& name, Target target, const std::string& value_name, const std::string& help);
  void assign(Option& option, const std::string& text);

  std::string command_, summary_;
  std::vector<Option> options_;
};

}  // namespace unet
