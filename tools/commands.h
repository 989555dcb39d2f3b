// The `unet` subcommands. Each takes the arguments after its name and returns the exit status;
// errors are thrown (unet::Error, UsageError) and reported by main as one `error:` line.
#pragma once

#include <string>
#include <vector>

namespace unet {

using Args = std::vector<std::string>;

int command_info(const Args& args);
int command_init(const Args& args);
int command_step(const Args& args);
int command_bench(const Args& args);
int command_report(const Args& args);
int command_train(const Args& args);
int command_eval(const Args& args);
int command_predict(const Args& args);
int command_dataset(const Args& args);
int command_synth(const Args& args);

}  // namespace unet
