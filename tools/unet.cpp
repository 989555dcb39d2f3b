// unet: train, evaluate and inspect the U-Net engine from the command line.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "engine/build_info.h"
#include "tools/cli.h"
#include "tools/commands.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const unet::Args& args);
};

const Command commands[] = {
    {"train", "train the U-Net on a folder of MRI slices; writes a run folder", unet::command_train},
    {"eval", "score weights on a dataset, per patient and in summary", unet::command_eval},
    {"predict", "masks and overlay pictures for MRI slices", unet::command_predict},
    {"report", "one self-contained HTML page for a run folder", unet::command_report},
    {"dataset", "what a dataset folder holds, and how long loading it takes", unet::command_dataset},
    {"synth", "write phantom MRI data in the kaggle_3m layout", unet::command_synth},
    {"init", "write a freshly initialised model (safetensors weights)", unet::command_init},
    {"step", "K Adam steps on one fixed batch (debugging, parity with PyTorch)", unet::command_step},
    {"bench", "speed of a training step or of inference (images/s, memory, FLOP/s)", unet::command_bench},
    {"info", "build configuration, devices, CUDA and cuDNN versions", unet::command_info},
};

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: unet COMMAND [options]\n\n"
               "A from-scratch CUDA U-Net engine for brain-MRI tumour segmentation.\n\ncommands:\n");
  for (const Command& command : commands) std::fprintf(out, "  %-10s %s\n", command.name, command.summary);
  std::fprintf(out, "\n`unet COMMAND --help` lists a command's options and their defaults.\n");
}

int run(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("%s\n", unet::build_summary().c_str());
    return 0;
  }
  for (const Command& command : commands) {
    if (name == command.name) return command.run(unet::Args(argv + 2, argv + argc));
  }
  throw unet::UsageError("unknown command '" + name + "' (see unet --help)");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const unet::UsageError& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of host memory\n");
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
