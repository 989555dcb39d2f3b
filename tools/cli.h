// Command-line options for the `unet` subcommands: every option has a type, a default and a line
// of help; unknown options and bad values are errors (UsageError), never ignored.
//
// The table is also what a training run saves of its flags and restores on resume: each flag has
// a role, and saved()/restore() read and write the flags of a role as JSON keyed by name, so a flag
// declared once (one add() with its role) is parsed, recorded in the run's identity and checkpoint,
// and restored on resume.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "engine/json.h"
#include "kernels/backend.h"

namespace unet {

// A mistake in how a command was called; `unet` prints it and exits with status 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

// What a flag is to a run that saves its flags (unet train).
enum class FlagRole {
  none,       // not saved (where to write, what to do now)
  identity,   // makes the run this run: saved, and refused on resume if given with another value
  resumable,  // saved, and restored on resume unless given again (--epochs may be raised)
};

using FlagTarget = std::variant<std::string*, int*, int64_t*, double*, bool*, std::vector<std::string>*>;

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
  Options& shown_default(const std::string& name, const std::string& text);  // of the option `name`
  Options& role(FlagRole role);

  // The values (parsed, or the defaults) of the flags of `role`, as {"name": value}.
  Json saved(FlagRole role) const;
  // Resuming: each flag of `role` takes its value in `saved` unless given now. An identity flag
  // given with another value is refused (unet::Error), and one that `saved` lacks (a flag newer than
  // the run) counts as saved with its default. With `role` identity, a name in `saved` that is no
  // identity flag here is refused: the run was written by another version of unet.
  void restore(const Json& saved, FlagRole role);

  // False if --help was asked for (the help is then printed); throws UsageError on bad input.
  bool parse(const std::vector<std::string>& args);
  bool given(const std::string& name) const;
  std::string help() const;

 private:
  using Target = FlagTarget;
  struct Option {
    std::string name, value_name, help, default_text;
    Target target;
    bool required = false;
    bool given = false;
    std::vector<std::string> allowed;
    bool has_minimum = false;
    double minimum = 0;
    FlagRole role = FlagRole::none;
    Json default_value;
  };
  Option& add_option(const std::string& name, Target target, const std::string& value_name, const std::string& help);
  void assign(Option& option, const std::string& text);
  const Option* find(const std::string& name) const;

  std::string command_, summary_;
  std::vector<Option> options_;
};

}  // namespace unet
