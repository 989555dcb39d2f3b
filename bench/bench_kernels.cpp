// bench_kernels: every kernel of the model at its real layer shapes, on the GPU every version of
// ours beside the library's best, and on the cpu device its convolution passes against the
// machine's measured FMA peak, in one Google Benchmark binary (docs/performance.md).
//
//   bench_kernels [--device=all|cuda|cpu] [--budget_s=SECONDS] [--batch=B] [--image_size=S]
//                 [--base_width=W] [--depth=D] [Google Benchmark flags]
//   bench_kernels --benchmark_filter='conv3x3/decoder.2.conv1/' --benchmark_out=k.json --benchmark_out_format=json
//   bench_kernels --device=cpu --benchmark_counters_tabular=true
//
// Names are op/layer/pass/implementation. The GPU rows (gpu_rows.cpp, built with CUDA) run at the
// default U-Net, batch 16, 256x256; the cpu rows (cpu_rows.cpp, always built) at the CPU model
// of issue 11 and docs/performance.md, batch 16, 128x128, base width 16, depth 3; the shape flags
// set both. --device=all (the default) runs the GPU rows where there is a GPU and the cpu rows
// always; --device=cuda without a GPU says so and exits with status 77 (skipped).
//
// Every row is one Google Benchmark iteration whose manual time is the median of our own timed
// repetitions (so real_time in the JSON is the median), with counters ms, ms_min, ms_max, reps,
// flop or bytes, gflops or gbs, pct_peak (where the device's peak is known), finite, and on our
// tensor-core rows pct_mma_peak (the share of the mma.sync peak this run measured first). Inputs
// are random in [-1, 1], outputs poisoned with NaN before the first run and checked after the
// last (a failure is reported in the label and the `finite` counter, never an abort). When the
// run's time budget (--budget_s, default 100) is spent, the rest is skipped visibly
// (SkipWithError); rows run in phases (bench_kernels.h), the least informative last. Ratios between
// ours and the libraries are left to scripts/bench_summary.py, which sees every row at once.
#include "bench/bench_kernels.h"

#include <benchmark/benchmark.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/build_info.h"

namespace unet::bench {

std::string ModelShape::describe() const {
  return config.describe() + "; batch " + std::to_string(batch) + ", " + std::to_string(image_size) + "x" +
         std::to_string(image_size);
}

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward_data: return "backward_data";
    case Pass::backward_weight: return "backward_weight";
  }
  return "?";
}

const char* kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::conv3x3: return "conv3x3";
    case LayerKind::conv1x1: return "conv1x1";
    case LayerKind::up_conv: return "up_conv";
    case LayerKind::max_pool: return "max_pool";
  }
  return "?";
}

namespace {

struct Budget {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double seconds = 100;
};

Budget& budget() {
  static Budget b;
  return b;
}

// The mma.sync peak of each precision (Math), in GFLOP/s, once its row has run.
std::optional<double>& mma_peak(Math precision) {
  static std::optional<double> peaks[3];
  return peaks[static_cast<int>(precision)];
}

void report(benchmark::State& state, const Entry& entry, const std::optional<double>& peak, const Timing& t,
            int64_t nonfinite, std::string label) {
  state.counters["ms"] = t.median_ms;
  state.counters["ms_min"] = t.min_ms;
  state.counters["ms_max"] = t.max_ms;
  state.counters["reps"] = t.repetitions;
  state.counters["finite"] = nonfinite == 0 ? 1 : 0;
  const double seconds = t.median_ms * 1e-3;
  const double rate = entry.flop > 0 ? entry.flop / seconds * 1e-9 : entry.bytes / seconds * 1e-9;
  if (entry.flop > 0) {
    state.counters["flop"] = entry.flop;
    state.counters["gflops"] = rate;
  } else {
    state.counters["bytes"] = entry.bytes;
    state.counters["gbs"] = rate;
  }
  if (peak) state.counters["pct_peak"] = 100 * rate / *peak;
  if (entry.is_mma_peak && nonfinite == 0) mma_peak(entry.precision) = rate;
  if (entry.versus_mma_peak && mma_peak(entry.precision)) {
    state.counters["pct_mma_peak"] = 100 * rate / *mma_peak(entry.precision);
  }
  if (nonfinite > 0) {
    label += (label.empty() ? "" : " ") + std::string("NON-FINITE-OUTPUT(") + std::to_string(nonfinite) + ")";
    std::fprintf(stderr, "bench_kernels: %s wrote %lld non-finite values\n", entry.name().c_str(),
                 static_cast<long long>(nonfinite));
  }
  state.SetLabel(label);
}

void run_benchmark(benchmark::State& state, const Entry& entry, BenchDevice& device,
                   const std::function<Prepared()>& prepare) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - budget().start).count();
  if (elapsed > budget().seconds) {
    const std::string why = "skipped: the run's time budget (--budget_s=" +
                            std::to_string(static_cast<int>(budget().seconds)) + ") was spent";
    state.SkipWithError(why.c_str());
    return;
  }
  try {
    const Prepared prepared = prepare();
    for (const Output& out : prepared.outputs) {
      if (out.poison) device.poison(out);
    }
    const Timing timing = device.measure(prepared.run);
    int64_t nonfinite = 0;
    for (const Output& out : prepared.outputs) {
      if (out.values != Values::unchecked) nonfinite += device.count_nonfinite(out);
    }
    for (auto _ : state) state.SetIterationTime(timing.median_ms * 1e-3);
    report(state, entry, device.peak(entry), timing, nonfinite, prepared.label);
  } catch (const Unavailable& missing) {
    state.SkipWithError(missing.why.c_str());
  } catch (const std::exception& error) {
    const std::string why = std::string("failed: ") + error.what();
    std::fprintf(stderr, "bench_kernels: %s %s\n", entry.name().c_str(), why.c_str());
    state.SkipWithError(why.c_str());
  }
}

struct Pending {
  Entry entry;
  BenchDevice* device;
  std::function<Prepared()> prepare;
};

std::vector<Pending>& phase(Phase p) {
  static std::vector<Pending> phases[kPhases];
  return phases[p];
}

void register_phases() {
  for (int p = 0; p < kPhases; ++p) {
    for (Pending& pending : phase(static_cast<Phase>(p))) {
      benchmark::RegisterBenchmark(pending.entry.name().c_str(), [pending](benchmark::State& state) {
        run_benchmark(state, pending.entry, *pending.device, pending.prepare);
      })
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

enum class Devices { all, cuda, cpu };

struct Options {
  Devices devices = Devices::all;
  std::optional<int> batch, image_size, base_width, depth;
};

// The value of --flag=text as a number greater than 0; throws std::invalid_argument otherwise.
template <class Number>
Number positive(const char* flag, const std::string& text) {
  Number value{};
  const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (status != std::errc{} || end != text.data() + text.size() || !(value > 0)) {
    throw std::invalid_argument(std::string(flag) + text + " is not a number greater than 0");
  }
  return value;
}

// Takes bench_kernels' own flags (--name=value) out of argv: Google Benchmark rejects flags it
// does not know. Throws std::invalid_argument on a malformed value.
Options take_own_flags(int* argc, char** argv) {
  Options options;
  const std::pair<const char*, std::optional<int>*> shape_flags[] = {{"--batch=", &options.batch},
                                                                     {"--image_size=", &options.image_size},
                                                                     {"--base_width=", &options.base_width},
                                                                     {"--depth=", &options.depth}};
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    const auto value_of = [&](const char* flag) -> std::optional<std::string> {
      if (arg.rfind(flag, 0) != 0) return std::nullopt;
      return arg.substr(std::strlen(flag));
    };
    bool taken = false;
    if (const auto v = value_of("--budget_s=")) {
      budget().seconds = positive<double>("--budget_s=", *v);
      taken = true;
    } else if (const auto v = value_of("--device=")) {
      if (*v != "all" && *v != "cuda" && *v != "cpu") throw std::invalid_argument("--device is all, cuda or cpu");
      options.devices = *v == "all" ? Devices::all : *v == "cuda" ? Devices::cuda : Devices::cpu;
      taken = true;
    }
    for (const auto& [flag, target] : shape_flags) {
      if (const auto v = value_of(flag)) {
        *target = positive<int>(flag, *v);
        taken = true;
      }
    }
    if (!taken) argv[kept++] = argv[i];
  }
  *argc = kept;
  return options;
}

// The device's default model with the flags' overrides.
ModelShape shape_of(const Options& options, ModelShape shape) {
  if (options.batch) shape.batch = *options.batch;
  if (options.image_size) shape.image_size = *options.image_size;
  if (options.base_width) shape.config.base_width = *options.base_width;
  if (options.depth) shape.config.depth = *options.depth;
  return shape;
}

ModelShape cpu_default() {
  ModelShape shape;
  shape.image_size = 128;
  shape.config.base_width = 16;
  return shape;
}

bool listing_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0) return true;
  }
  return false;
}

// Registers the rows the options ask for; false (with the message printed) where --device=cuda
// finds no GPU.
bool register_rows(const Options& options, bool listing) {
  if (options.devices != Devices::cpu) {
    std::string why;
    if (!register_gpu_rows(shape_of(options, ModelShape{}), listing, &why)) {
      if (options.devices == Devices::cuda) {
        std::fprintf(stderr, "bench_kernels: %s; nothing measured.\n", why.c_str());
        return false;
      }
      std::fprintf(stderr, "bench_kernels: %s; the cpu rows only.\n", why.c_str());
    }
  }
  if (options.devices != Devices::cuda) register_cpu_rows(shape_of(options, cpu_default()), listing);
  benchmark::AddCustomContext("commit", build_info().commit);
  benchmark::AddCustomContext("build", build_summary());
  benchmark::AddCustomContext("budget_s", std::to_string(static_cast<int>(budget().seconds)));
  return true;
}

}  // namespace

void add(Phase p, Entry entry, BenchDevice& device, std::function<Prepared()> prepare) {
  phase(p).push_back({std::move(entry), &device, std::move(prepare)});
}

}  // namespace unet::bench

int main(int argc, char** argv) {
  using namespace unet::bench;
  try {
    const Options options = take_own_flags(&argc, argv);
    const bool listing = listing_only(argc, argv);  // before Initialize, which removes the flags it reads
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    if (!register_rows(options, listing)) return 77;  // skipped, as the tests report it
    register_phases();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
  } catch (const std::invalid_argument& error) {
    std::fprintf(stderr, "error: bench_kernels: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: bench_kernels: %s\n", error.what());
    return 1;
  }
  return 0;
}
