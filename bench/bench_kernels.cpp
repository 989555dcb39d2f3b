// bench_kernels: every kernel of the model at its real layer shapes (default U-Net, batch 16,
// 256x256), every version of ours beside the library's best, in one Google Benchmark binary.
//
//   bench_kernels [--budget_s=SECONDS] [Google Benchmark flags]
//   bench_kernels --benchmark_filter='conv3x3/decoder.2.conv1/' --benchmark_out=k.json --benchmark_out_format=json
//
// Names are op/layer/pass/implementation:
//   conv3x3, conv1x1 (the head), up_conv: forward, backward_data, backward_weight (with the bias
//     gradient); implementations ours_v<N> (Conv2d / ConvTranspose2d, every version; conv2d also
//     ours_v3, TF32 on tensor cores, precision tf32),
//     cudnn_{nhwc,nchw}_{fp32,tf32} (the algorithm cudnnFind*AlgorithmEx finds fastest; fp32 means
//     FMA kernels only, tf32 allows tensor cores), and for the GEMM-shaped layers cublas_{fp32,tf32}
//     (SGEMM alone, no bias, output in GEMM order: bench/gemm.h);
//   max_pool, relu, concat: forward, backward; loss (bce, bce_dice): forward_backward; adam (all
//     parameters): step; each with ours_v<N> and `copy`, a cudaMemcpyAsync moving as many bytes
//     (half read, half written) as the op's minimum traffic; the same ops in bf16 as passes
//     `<pass>_bf16` (Adam's `step_bf16_copy` also writes the bf16 weight copy), each beside a copy
//     of its own, smaller, traffic (bf16 outputs are poisoned but not checked finite).
// The model's 3x3 convs run as the engine runs them: bias and ReLU fused into the forward, the
// ReLU mask applied inside both backward passes. cuDNN's forward fuses bias and ReLU too
// (cudnnConvolutionBiasActivationForward); its backward passes do not apply the mask (a framework
// runs that as a separate elementwise kernel, timed here as relu/backward).
//
// Timing (one method for every entry): inputs random in [-1, 1] (never zeros), generated on the
// GPU; outputs poisoned with NaN once before the first run and checked for NaN/Inf after the last
// (a failure is reported in the label and the `finite` counter, never an abort). One run timed by
// CUDA events as warm-up (two more when it is quick), then as many timed repetitions as fit in
// 0.2 s, at least 3 and at most 21, each after a 256 MiB cudaMemsetAsync that flushes the L2. The
// median is ours, not Google Benchmark's: each benchmark is one Google Benchmark iteration whose
// manual time is the median (so real_time in the JSON is the median), with counters ms, ms_min,
// ms_max, reps, flop or bytes, gflops or gbs, pct_peak (H100 SXM and H200 only: bench/card.h) and
// finite. Ratios between ours and the libraries are left to scripts/bench_summary.py, which sees
// every entry of a layer and pass at once.
//
// Order: memory-bound ops first, then per layer the libraries and our fast versions, and every
// compute-bound version 1 (the slow teaching kernels) last, so that when the run's time budget
// (--budget_s, default 100) is spent, what is skipped (visibly, with SkipWithError) is the least
// informative. Without a GPU it says so and exits with status 77 (skipped); a missing cuDNN or
// cuBLAS skips only the baselines, each named with the reason.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/baselines.h"
#include "bench/card.h"
#include "bench/device_fill.h"
#include "bench/gemm.h"
#include "bench/timing.h"
#include "engine/build_info.h"
#include "kernels/adam.h"
#include "kernels/concat.h"
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "kernels/cuda_check.h"
#include "kernels/loss.h"
#include "kernels/max_pool2d.h"
#include "kernels/relu.h"
#include "models/unet_shapes.h"

namespace unet::bench {
namespace {

constexpr DeviceKind kCuda = DeviceKind::cuda;
constexpr int kBatch = 16;
constexpr int kImageSize = 256;
constexpr size_t kFlushBytes = size_t{256} << 20;
constexpr double kRepetitionBudgetMs = 200;
constexpr int kFewestRepetitions = 3;
constexpr int kMostRepetitions = 21;

// ---------------------------------------------------------------------------------------------
// The run's state: one stream, reusable buffers, the clock of the time budget.

// Buffers by role, grown on demand and kept: consecutive benchmarks reuse them.
enum Slot { kIn0, kIn1, kIn2, kIn3, kOut0, kOut1, kWork0, kWork1, kLibraryWork, kAux, kSlots };

struct Run {
  cudaStream_t stream = nullptr;
  void* flush = nullptr;
  std::optional<Peaks> peaks;
  size_t library_workspace = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double budget_s = 100;
  uint64_t seed = 1;
  void* slots[kSlots] = {};
  size_t slot_bytes[kSlots] = {};
  std::vector<cudaEvent_t> events;  // 2 per timed repetition
};

Run& run_state() {
  static Run run;
  return run;
}

void* slot(Slot s, size_t bytes) {
  Run& run = run_state();
  if (run.slot_bytes[s] < bytes) {
    if (run.slots[s]) CUDA_CHECK(cudaFree(run.slots[s]));
    run.slots[s] = nullptr;
    run.slot_bytes[s] = 0;
    CUDA_CHECK(cudaMalloc(&run.slots[s], bytes));
    run.slot_bytes[s] = bytes;
  }
  return run.slots[s];
}

// An input: `count` fresh random floats in [low, high).
float* input(Slot s, size_t count, float low = -1.0f, float high = 1.0f) {
  auto* data = static_cast<float*>(slot(s, count * sizeof(float)));
  fill_uniform(data, count, run_state().seed++, low, high, run_state().stream);
  return data;
}

float* output(Slot s, size_t count) { return static_cast<float*>(slot(s, count * sizeof(float))); }

// The run's stream, for launchers. Only while preparing a benchmark: at registration it does not
// exist yet (launches there would go to the default stream, outside the timing events).
Stream stream() { return Stream{run_state().stream}; }

// ---------------------------------------------------------------------------------------------
// One benchmark: what it is, how to prepare it, and the timer.

struct Entry {
  std::string op, layer, pass, impl;
  double flop = 0;   // compute-bound: floating-point operations of one run
  double bytes = 0;  // memory-bound: minimum bytes one run moves
  Math precision = Math::fp32;
  std::string name() const { return op + "/" + layer + "/" + pass + "/" + impl; }
};

// An output of a run: poisoned (all-ones bytes, NaN as float) before the first run, and, if
// float, checked finite after the last.
struct Output {
  void* data;
  size_t bytes;
  bool is_float = true;
  bool poison = true;
};

struct Prepared {
  std::function<void()> run;
  std::vector<Output> outputs;
  std::string label;
};

// A baseline whose library is absent: the benchmark is skipped with this message.
struct Unavailable {
  std::string why;
};

Output floats_out(float* data, size_t count) { return {data, count * sizeof(float)}; }

Timing measure(const std::function<void()>& run_once) {
  Run& run = run_state();
  const cudaStream_t s = run.stream;
  const auto timed = [&](int i) {
    CUDA_CHECK(cudaMemsetAsync(run.flush, i & 0xff, kFlushBytes, s));
    CUDA_CHECK(cudaEventRecord(run.events[2 * i], s));
    run_once();
    CUDA_CHECK(cudaEventRecord(run.events[2 * i + 1], s));
  };
  const auto elapsed_ms = [&](int i) {
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(run.events[2 * i + 1]));
    CUDA_CHECK(cudaEventElapsedTime(&ms, run.events[2 * i], run.events[2 * i + 1]));
    return static_cast<double>(ms);
  };

  timed(0);
  const double first_ms = elapsed_ms(0);
  if (first_ms < 20) {  // quick: two more warm-up runs cost nothing
    run_once();
    run_once();
  }
  const int repetitions =
      bench::repetitions(first_ms, kRepetitionBudgetMs, kFewestRepetitions, kMostRepetitions);
  for (int i = 0; i < repetitions; ++i) timed(i);  // queued back to back: launch costs stay hidden
  std::vector<double> ms;
  for (int i = 0; i < repetitions; ++i) ms.push_back(elapsed_ms(i));
  return summarize(ms);
}

void report(benchmark::State& state, const Entry& entry, const Timing& t, int64_t nonfinite, std::string label) {
  const std::optional<Peaks>& peaks = run_state().peaks;
  state.counters["ms"] = t.median_ms;
  state.counters["ms_min"] = t.min_ms;
  state.counters["ms_max"] = t.max_ms;
  state.counters["reps"] = t.repetitions;
  state.counters["finite"] = nonfinite == 0 ? 1 : 0;
  const double seconds = t.median_ms * 1e-3;
  if (entry.flop > 0) {
    const double gflops = entry.flop / seconds * 1e-9;
    state.counters["flop"] = entry.flop;
    state.counters["gflops"] = gflops;
    if (peaks) {
      const double peak = entry.precision == Math::fp32 ? peaks->fp32_tflops : peaks->tf32_tflops;
      state.counters["pct_peak"] = 100 * gflops / (peak * 1e3);
    }
  }
  if (entry.bytes > 0) {
    const double gbs = entry.bytes / seconds * 1e-9;
    state.counters["bytes"] = entry.bytes;
    state.counters["gbs"] = gbs;
    if (peaks) state.counters["pct_peak"] = 100 * gbs / peaks->memory_gbs;
  }
  if (nonfinite > 0) {
    label += (label.empty() ? "" : " ") + std::string("NON-FINITE-OUTPUT(") + std::to_string(nonfinite) + ")";
    std::fprintf(stderr, "bench_kernels: %s wrote %lld non-finite values\n", entry.name().c_str(),
                 static_cast<long long>(nonfinite));
  }
  state.SetLabel(label);
}

void run_benchmark(benchmark::State& state, const Entry& entry, const std::function<Prepared()>& prepare) {
  Run& run = run_state();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
  if (elapsed > run.budget_s) {
    const std::string why = "skipped: the run's time budget (--budget_s=" + std::to_string(static_cast<int>(run.budget_s)) +
                            ") was spent";
    state.SkipWithError(why.c_str());
    return;
  }
  try {
    const Prepared prepared = prepare();
    for (const Output& out : prepared.outputs) {
      if (out.poison) CUDA_CHECK(cudaMemsetAsync(out.data, 0xff, out.bytes, run.stream));
    }
    const Timing timing = measure(prepared.run);
    int64_t nonfinite = 0;
    for (const Output& out : prepared.outputs) {
      if (out.is_float) nonfinite += count_nonfinite(static_cast<const float*>(out.data), out.bytes / sizeof(float), run.stream);
    }
    for (auto _ : state) state.SetIterationTime(timing.median_ms * 1e-3);
    report(state, entry, timing, nonfinite, prepared.label);
  } catch (const Unavailable& missing) {
    state.SkipWithError(missing.why.c_str());
  } catch (const std::exception& error) {
    const std::string why = std::string("failed: ") + error.what();
    std::fprintf(stderr, "bench_kernels: %s %s\n", entry.name().c_str(), why.c_str());
    state.SkipWithError(why.c_str());
  }
}

// Benchmarks are collected in three phases and registered phase by phase (see the top).
enum Phase { kMemoryBound, kComputeBound, kSlowest, kPhases };

struct Pending {
  Entry entry;
  std::function<Prepared()> prepare;
};

std::vector<Pending>& phase(Phase p) {
  static std::vector<Pending> phases[kPhases];
  return phases[p];
}

void add(Phase p, Entry entry, std::function<Prepared()> prepare) {
  phase(p).push_back({std::move(entry), std::move(prepare)});
}

Cudnn& require_cudnn() {
  std::string why;
  Cudnn* api = cudnn(run_state().stream, &why);
  if (api == nullptr) throw Unavailable{why};
  return *api;
}

Cublas& require_cublas() {
  std::string why;
  Cublas* api = cublas(run_state().stream, &why);
  if (api == nullptr) throw Unavailable{why};
  return *api;
}

// ---------------------------------------------------------------------------------------------
// Convolutions: conv3x3, the conv1x1 head, and the up-conv.

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

Conv2dShape conv_shape(const LayerShape& l) {
  return {l.n, l.h, l.w, l.c_in, l.c_out, l.kind == LayerKind::conv3x3 ? 3 : 1};
}

int64_t input_count(const LayerShape& l) { return int64_t{l.n} * l.h * l.w * l.c_in; }
int64_t output_count(const LayerShape& l) { return int64_t{l.n} * l.out_h() * l.out_w() * l.c_out; }
int64_t weight_count(const LayerShape& l) { return l.parameters() - l.c_out; }

Prepared ours_conv(const LayerShape& l, Pass pass, int version) {
  const Conv2dShape s = conv_shape(l);
  const bool relu = l.kind == LayerKind::conv3x3;
  const int ci = s.c_in, co = s.c_out;
  const Stream st = stream();
  switch (pass) {
    case Pass::forward: {
      const float* x = input(kIn0, input_count(l));
      const float* w = input(kIn1, weight_count(l));
      const float* b = input(kIn2, co);
      float* y = output(kOut0, output_count(l));
      return {[=] { Conv2d<kCuda>::forward(s, x, ci, w, b, relu, y, co, st, version); },
              {floats_out(y, output_count(l))}, ""};
    }
    case Pass::backward_data: {
      const float* dy = input(kIn0, output_count(l));
      const float* y = relu ? input(kIn1, output_count(l)) : nullptr;
      const float* w = input(kIn2, weight_count(l));
      float* dx = output(kOut0, input_count(l));
      return {[=] { Conv2d<kCuda>::backward_data(s, dy, co, y, co, w, 0.0f, dx, ci, st, version); },
              {floats_out(dx, input_count(l))}, ""};
    }
    case Pass::backward_weight: {
      const float* x = input(kIn0, input_count(l));
      const float* dy = input(kIn1, output_count(l));
      const float* y = relu ? input(kIn2, output_count(l)) : nullptr;
      float* dw = output(kOut0, weight_count(l));
      float* db = output(kOut1, co);
      void* work = slot(kWork0, Conv2d<kCuda>::backward_weight_workspace(s, version));
      void* bias_work = slot(kWork1, Conv2d<kCuda>::backward_bias_workspace(s));
      return {[=] {
                Conv2d<kCuda>::backward_weight(s, x, ci, dy, co, y, co, 0.0f, dw, work, st, version);
                Conv2d<kCuda>::backward_bias(s, dy, co, y, co, 0.0f, db, bias_work, st);
              },
              {floats_out(dw, weight_count(l)), floats_out(db, co)}, ""};
    }
  }
  return {};
}

Prepared ours_up_conv(const LayerShape& l, Pass pass, int version) {
  const ConvTranspose2dShape s{l.n, l.h, l.w, l.c_in, l.c_out};
  const int ci = s.c_in, co = s.c_out;
  const Stream st = stream();
  switch (pass) {
    case Pass::forward: {
      const float* x = input(kIn0, input_count(l));
      const float* w = input(kIn1, weight_count(l));
      const float* b = input(kIn2, co);
      float* y = output(kOut0, output_count(l));
      return {[=] { ConvTranspose2d<kCuda>::forward(s, x, ci, w, b, y, co, st, version); },
              {floats_out(y, output_count(l))}, ""};
    }
    case Pass::backward_data: {
      const float* dy = input(kIn0, output_count(l));
      const float* w = input(kIn1, weight_count(l));
      float* dx = output(kOut0, input_count(l));
      return {[=] { ConvTranspose2d<kCuda>::backward_data(s, dy, co, w, 0.0f, dx, ci, st, version); },
              {floats_out(dx, input_count(l))}, ""};
    }
    case Pass::backward_weight: {
      const float* x = input(kIn0, input_count(l));
      const float* dy = input(kIn1, output_count(l));
      float* dw = output(kOut0, weight_count(l));
      float* db = output(kOut1, co);
      void* work = slot(kWork0, ConvTranspose2d<kCuda>::backward_weight_workspace(s, version));
      void* bias_work = slot(kWork1, ConvTranspose2d<kCuda>::backward_bias_workspace(s));
      return {[=] {
                ConvTranspose2d<kCuda>::backward_weight(s, x, ci, dy, co, 0.0f, dw, work, st, version);
                ConvTranspose2d<kCuda>::backward_bias(s, dy, co, 0.0f, db, bias_work, st);
              },
              {floats_out(dw, weight_count(l)), floats_out(db, co)}, ""};
    }
  }
  return {};
}

// The layer's convolution in cuDNN's terms, and which buffer plays which role (baselines.h).
Prepared cudnn_conv(const LayerShape& l, Pass pass, Layout layout, Math math) {
  Cudnn& api = require_cudnn();
  const bool up = l.kind == LayerKind::up_conv;
  const int k = l.kind == LayerKind::conv3x3 ? 3 : up ? 2 : 1;
  const ConvGeometry geometry =
      up ? ConvGeometry{l.n, l.c_out, l.out_h(), l.out_w(), l.c_in, l.h, l.w, 2, 2, 0, 2}
         : ConvGeometry{l.n, l.c_in, l.h, l.w, l.c_out, l.h, l.w, k, k, k / 2, 1};
  // Our x and dx have geometry.in_* for a conv, geometry.out_* for the up-conv; y and dy the other.
  CudnnJob job{};
  std::vector<Output> outputs;
  const int64_t ours_in = input_count(l), ours_out = output_count(l), weights = weight_count(l);
  switch (pass) {
    case Pass::forward: {
      float* x = input(kIn0, ours_in);
      float* w = input(kIn1, weights);
      float* b = input(kIn2, l.c_out);
      float* y = output(kOut0, ours_out);
      job = up ? CudnnJob{CudnnOp::backward_data, y, x, w, b, BiasOn::input}
               : CudnnJob{CudnnOp::forward, x, y, w, b, BiasOn::output, l.kind == LayerKind::conv3x3};
      outputs = {floats_out(y, ours_out)};
      break;
    }
    case Pass::backward_data: {
      float* dy = input(kIn0, ours_out);
      float* w = input(kIn1, weights);
      float* dx = output(kOut0, ours_in);
      job = up ? CudnnJob{CudnnOp::forward, dy, dx, w, nullptr, BiasOn::none}
               : CudnnJob{CudnnOp::backward_data, dx, dy, w, nullptr, BiasOn::none};
      outputs = {floats_out(dx, ours_in)};
      break;
    }
    case Pass::backward_weight: {
      float* x = input(kIn0, ours_in);
      float* dy = input(kIn1, ours_out);
      float* dw = output(kOut0, weights);
      float* db = output(kOut1, l.c_out);
      job = up ? CudnnJob{CudnnOp::backward_filter, dy, x, dw, db, BiasOn::input}
               : CudnnJob{CudnnOp::backward_filter, x, dy, dw, db, BiasOn::output};
      outputs = {floats_out(dw, weights), floats_out(db, l.c_out)};
      break;
    }
  }
  const size_t workspace_bytes = run_state().library_workspace;
  auto pass_plan = std::make_shared<CudnnPass>(api, geometry, layout, math, job, slot(kLibraryWork, workspace_bytes),
                                               workspace_bytes);
  return {[pass_plan] { pass_plan->run(); }, outputs, pass_plan->label()};
}

Prepared cublas_gemm(const LayerShape& l, Pass pass, Math math) {
  Cublas& api = require_cublas();
  const RowMajorGemm gemm = layer_gemm(l, pass);
  // x and dx: (P, Cin); y and dy: (P, Cout) or the up-conv's (P, 4 Cout); the weights: Cin x Cout'.
  const int64_t wide = int64_t{l.n} * l.h * l.w * (l.kind == LayerKind::up_conv ? 4 : 1) * l.c_out;
  const int64_t counts[6] = {input_count(l), wide, weight_count(l), wide, input_count(l), weight_count(l)};
  float* operands[6] = {};
  Slot next_input = kIn0;
  for (Operand o : {gemm.a, gemm.b}) {
    operands[static_cast<int>(o)] = input(next_input, counts[static_cast<int>(o)]);
    next_input = static_cast<Slot>(next_input + 1);
  }
  const int c = static_cast<int>(gemm.c);
  operands[c] = output(kOut0, counts[c]);
  auto plan = std::make_shared<CublasGemm>(api, gemm, math, operands);
  return {[plan] { plan->run(); }, {floats_out(operands[c], counts[c])}, plan->label()};
}

void add_convolution(const LayerShape& l) {
  const bool up = l.kind == LayerKind::up_conv;
  const int versions = up ? ConvTranspose2d<kCuda>::versions : Conv2d<kCuda>::versions;
  for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weight}) {
    const Entry base{kind_name(l.kind), l.name, pass_name(pass), "", 2.0 * static_cast<double>(l.macs())};
    const auto entry = [&](std::string impl, Math precision) {
      Entry e = base;
      e.impl = std::move(impl);
      e.precision = precision;
      return e;
    };
    for (Layout layout : {Layout::nhwc, Layout::nchw}) {
      for (Math math : {Math::fp32, Math::tf32}) {
        const std::string impl = std::string("cudnn_") + (layout == Layout::nhwc ? "nhwc" : "nchw") +
                                 (math == Math::fp32 ? "_fp32" : "_tf32");
        add(kComputeBound, entry(impl, math), [=] { return cudnn_conv(l, pass, layout, math); });
      }
    }
    if (l.kind != LayerKind::conv3x3) {
      for (Math math : {Math::fp32, Math::tf32}) {
        add(kComputeBound, entry(math == Math::fp32 ? "cublas_fp32" : "cublas_tf32", math),
            [=] { return cublas_gemm(l, pass, math); });
      }
    }
    if (!up) {  // version 3: TF32 tensor cores, conv2d only so far
      const int version = Conv2d<kCuda>::tensor_core_version;
      add(kComputeBound, entry("ours_v" + std::to_string(version), Math::tf32),
          [=] { return ours_conv(l, pass, version); });
    }
    for (int version = versions; version >= 1; --version) {
      add(version == 1 ? kSlowest : kComputeBound, entry("ours_v" + std::to_string(version), Math::fp32),
          [=] { return up ? ours_up_conv(l, pass, version) : ours_conv(l, pass, version); });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Memory-bound ops, each beside a copy of the same traffic.

Prepared copy_of(int64_t bytes) {
  const size_t half = static_cast<size_t>(bytes / 2);
  const size_t count = (half + sizeof(float) - 1) / sizeof(float);
  const float* src = input(kIn0, count);
  float* dst = output(kOut0, count);
  const cudaStream_t s = run_state().stream;
  return {[=] { CUDA_CHECK(cudaMemcpyAsync(dst, src, half, cudaMemcpyDeviceToDevice, s)); },
          {Output{dst, half, false}},
          "cudaMemcpyAsync " + std::to_string(half >> 20) + "MiB"};
}

void add_memory_bound(const std::string& op, const std::string& layer, const std::string& pass, int versions,
                      int64_t bytes, const std::function<Prepared(int)>& ours) {
  Entry base{op, layer, pass, "", 0, static_cast<double>(bytes)};
  for (int version = versions; version >= 1; --version) {
    Entry e = base;
    e.impl = "ours_v" + std::to_string(version);
    add(kMemoryBound, e, [ours, version] { return ours(version); });
  }
  Entry copy = base;
  copy.impl = "copy";
  add(kMemoryBound, copy, [bytes] { return copy_of(bytes); });
}

void add_max_pool(const LayerShape& l) {
  const PoolShape s{l.n, l.h, l.w, l.c_in};
  const int c = l.c_in;
  const int64_t in = input_count(l), out = output_count(l);
  add_memory_bound("max_pool", l.name, "forward", MaxPool2d<kCuda>::versions, l.forward_bytes(), [=](int version) {
    const Stream st = stream();
    const float* x = input(kIn0, in);
    float* y = output(kOut0, out);
    auto* argmax = static_cast<uint8_t*>(slot(kAux, out));
    return Prepared{[=] { MaxPool2d<kCuda>::forward(s, x, c, y, c, argmax, st, version); },
                    {floats_out(y, out), Output{argmax, static_cast<size_t>(out), false}}, ""};
  });
  add_memory_bound("max_pool", l.name, "backward", MaxPool2d<kCuda>::versions, l.backward_data_bytes(), [=](int version) {
    const Stream st = stream();
    // A real argmax, from the default forward on random inputs.
    const float* x = input(kIn0, in);
    auto* argmax = static_cast<uint8_t*>(slot(kAux, out));
    MaxPool2d<kCuda>::forward(s, x, c, output(kOut1, out), c, argmax, st);
    const float* dy = input(kIn1, out);
    float* dx = output(kOut0, in);
    return Prepared{[=] { MaxPool2d<kCuda>::backward(s, dy, c, argmax, 0.0f, dx, c, st, version); },
                    {floats_out(dx, in)}, ""};
  });
}

// Standalone ReLU at every 3x3 conv's output (the model fuses it; this is the unfused cost).
void add_relu(const LayerShape& l) {
  const int64_t pixels = int64_t{l.n} * l.h * l.w;
  const int c = l.c_out;
  const int64_t count = pixels * c;
  add_memory_bound("relu", l.name, "forward", Relu<kCuda>::versions, 8 * count, [=](int version) {
    const Stream st = stream();
    const float* x = input(kIn0, count);
    float* y = output(kOut0, count);
    return Prepared{[=] { Relu<kCuda>::forward(pixels, c, x, c, y, c, st, version); }, {floats_out(y, count)}, ""};
  });
  add_memory_bound("relu", l.name, "backward", Relu<kCuda>::versions, 12 * count, [=](int version) {
    const Stream st = stream();
    const float* dy = input(kIn0, count);
    const float* y = input(kIn1, count);
    float* dx = output(kOut0, count);
    return Prepared{[=] { Relu<kCuda>::backward(pixels, c, dy, c, y, c, 0.0f, dx, c, st, version); },
                    {floats_out(dx, count)}, ""};
  });
}

// The skip concatenation at each decoder level: [up-conv output, encoder output].
void add_concat(const LayerShape& up) {
  const int64_t pixels = int64_t{up.n} * up.out_h() * up.out_w();
  const int c = up.c_out;
  const std::string layer = up.name.substr(0, up.name.rfind('.')) + ".concat";
  const int64_t bytes = 4 * 2 * (pixels * 2 * c);
  add_memory_bound("concat", layer, "forward", Concat<kCuda>::versions, bytes, [=](int version) {
    const Stream st = stream();
    const float* a = input(kIn0, pixels * c);
    const float* b = input(kIn1, pixels * c);
    float* y = output(kOut0, pixels * 2 * c);
    return Prepared{[=] { Concat<kCuda>::forward(pixels, a, c, c, b, c, c, y, 2 * c, st, version); },
                    {floats_out(y, pixels * 2 * c)}, ""};
  });
  add_memory_bound("concat", layer, "backward", Concat<kCuda>::versions, bytes, [=](int version) {
    const Stream st = stream();
    const float* dy = input(kIn0, pixels * 2 * c);
    float* da = output(kOut0, pixels * c);
    float* db = output(kOut1, pixels * c);
    return Prepared{[=] { Concat<kCuda>::backward(pixels, dy, 2 * c, c, c, 0.0f, da, c, db, c, st, version); },
                    {floats_out(da, pixels * c), floats_out(db, pixels * c)}, ""};
  });
}

// The loss at the model's output: logits and targets in, the gradient out (the sums are tiny).
void add_loss(const LayerShape& head) {
  const int n = head.n;
  const int64_t pixels = int64_t{head.out_h()} * head.out_w();
  for (const bool dice : {false, true}) {
    LossConfig config;
    if (dice) config.dice_weight = 1.0f;
    add_memory_bound("loss", dice ? "bce_dice" : "bce", "forward_backward", SegmentationLoss<kCuda>::versions,
                     12 * n * pixels, [=](int version) {
                       const Stream st = stream();
                       const float* logits = input(kIn0, n * pixels);
                       auto* target = output(kIn1, n * pixels);
                       fill_binary(target, n * pixels, run_state().seed++, 0.01f, run_state().stream);
                       float* loss = output(kOut1, loss_values);
                       float* dlogits = output(kOut0, n * pixels);
                       void* work = slot(kWork0, SegmentationLoss<kCuda>::workspace(n, pixels));
                       return Prepared{[=] {
                                         SegmentationLoss<kCuda>::forward_backward(n, pixels, logits, target, config,
                                                                                   loss, dlogits, work, st, version);
                                       },
                                       {floats_out(dlogits, n * pixels), floats_out(loss, loss_values)}, ""};
                     });
  }
}

// One Adam step over every parameter: param, grad, m, v read; param, m, v written.
void add_adam() {
  const int64_t n = unet_parameters(UNetConfig{});
  add_memory_bound("adam", "all", "step", Adam<kCuda>::versions, 28 * n, [=](int version) {
    const Stream st = stream();
    float* param = input(kIn0, n);
    const float* grad = input(kIn1, n);
    float* m = input(kIn2, n);
    float* v = input(kIn3, n, 0.0f, 1.0f);  // second moments are never negative
    auto* step = static_cast<int64_t*>(slot(kAux, sizeof(int64_t)));
    const int64_t first = 1;
    CUDA_CHECK(cudaMemcpyAsync(step, &first, sizeof(first), cudaMemcpyHostToDevice, run_state().stream));
    CUDA_CHECK(cudaStreamSynchronize(run_state().stream));
    const AdamConfig config;
    // Updated in place, so never poisoned; checked finite after.
    return Prepared{[=] { Adam<kCuda>::step(n, param, grad, m, v, config, step, st, version); },
                    {Output{param, n * sizeof(float), true, false}, Output{m, n * sizeof(float), true, false},
                     Output{v, n * sizeof(float), true, false}},
                    ""};
  });
}

// ---------------------------------------------------------------------------------------------
// The memory-bound ops in bf16 (the precision mode's activations), each beside a copy of its bytes.

bf16* input_bf16(Slot s, size_t count) {
  auto* data = static_cast<bf16*>(slot(s, count * sizeof(bf16)));
  fill_uniform_bf16(data, count, run_state().seed++, -1.0f, 1.0f, run_state().stream);
  return data;
}

bf16* output_bf16(Slot s, size_t count) { return static_cast<bf16*>(slot(s, count * sizeof(bf16))); }

Output bf16_out(bf16* data, size_t count) { return {data, count * sizeof(bf16), false}; }

void add_max_pool_bf16(const LayerShape& l) {
  const PoolShape s{l.n, l.h, l.w, l.c_in};
  const int c = l.c_in;
  const int64_t in = input_count(l), out = output_count(l);
  const int64_t bytes = 2 * in + 2 * out + out;  // x and y (or dx and dy) in bf16, one argmax byte
  add_memory_bound("max_pool", l.name, "forward_bf16", MaxPool2d<kCuda>::versions, bytes, [=](int version) {
    const Stream st = stream();
    const bf16* x = input_bf16(kIn0, in);
    bf16* y = output_bf16(kOut0, out);
    auto* argmax = static_cast<uint8_t*>(slot(kAux, out));
    return Prepared{[=] { MaxPool2d<kCuda>::forward(s, x, c, y, c, argmax, st, version); },
                    {bf16_out(y, out), Output{argmax, static_cast<size_t>(out), false}}, ""};
  });
  add_memory_bound("max_pool", l.name, "backward_bf16", MaxPool2d<kCuda>::versions, bytes, [=](int version) {
    const Stream st = stream();
    const bf16* x = input_bf16(kIn0, in);
    auto* argmax = static_cast<uint8_t*>(slot(kAux, out));
    MaxPool2d<kCuda>::forward(s, x, c, output_bf16(kOut1, out), c, argmax, st);
    const bf16* dy = input_bf16(kIn1, out);
    bf16* dx = output_bf16(kOut0, in);
    return Prepared{[=] { MaxPool2d<kCuda>::backward(s, dy, c, argmax, 0.0f, dx, c, st, version); },
                    {bf16_out(dx, in)}, ""};
  });
}

void add_relu_bf16(const LayerShape& l) {
  const int64_t pixels = int64_t{l.n} * l.h * l.w;
  const int c = l.c_out;
  const int64_t count = pixels * c;
  add_memory_bound("relu", l.name, "forward_bf16", Relu<kCuda>::versions, 4 * count, [=](int version) {
    const Stream st = stream();
    const bf16* x = input_bf16(kIn0, count);
    bf16* y = output_bf16(kOut0, count);
    return Prepared{[=] { Relu<kCuda>::forward(pixels, c, x, c, y, c, st, version); }, {bf16_out(y, count)}, ""};
  });
  add_memory_bound("relu", l.name, "backward_bf16", Relu<kCuda>::versions, 6 * count, [=](int version) {
    const Stream st = stream();
    const bf16* dy = input_bf16(kIn0, count);
    const bf16* y = input_bf16(kIn1, count);
    bf16* dx = output_bf16(kOut0, count);
    return Prepared{[=] { Relu<kCuda>::backward(pixels, c, dy, c, y, c, 0.0f, dx, c, st, version); },
                    {bf16_out(dx, count)}, ""};
  });
}

void add_concat_bf16(const LayerShape& up) {
  const int64_t pixels = int64_t{up.n} * up.out_h() * up.out_w();
  const int c = up.c_out;
  const std::string layer = up.name.substr(0, up.name.rfind('.')) + ".concat";
  const int64_t bytes = 2 * 2 * (pixels * 2 * c);
  add_memory_bound("concat", layer, "forward_bf16", Concat<kCuda>::bf16_versions, bytes, [=](int version) {
    const Stream st = stream();
    const bf16* a = input_bf16(kIn0, pixels * c);
    const bf16* b = input_bf16(kIn1, pixels * c);
    bf16* y = output_bf16(kOut0, pixels * 2 * c);
    return Prepared{[=] { Concat<kCuda>::forward(pixels, a, c, c, b, c, c, y, 2 * c, st, version); },
                    {bf16_out(y, pixels * 2 * c)}, ""};
  });
  add_memory_bound("concat", layer, "backward_bf16", Concat<kCuda>::bf16_versions, bytes, [=](int version) {
    const Stream st = stream();
    const bf16* dy = input_bf16(kIn0, pixels * 2 * c);
    bf16* da = output_bf16(kOut0, pixels * c);
    bf16* db = output_bf16(kOut1, pixels * c);
    return Prepared{[=] { Concat<kCuda>::backward(pixels, dy, 2 * c, c, c, 0.0f, da, c, db, c, st, version); },
                    {bf16_out(da, pixels * c), bf16_out(db, pixels * c)}, ""};
  });
}

// bf16 logits in and dlogits out, fp32 targets: 8 bytes a pixel at the least. One entry: the
// layout (P % 8 == 0 here) chooses the 16-byte kernels.
void add_loss_bf16(const LayerShape& head) {
  const int n = head.n;
  const int64_t pixels = int64_t{head.out_h()} * head.out_w();
  for (const bool dice : {false, true}) {
    LossConfig config;
    if (dice) config.dice_weight = 1.0f;
    add_memory_bound("loss", dice ? "bce_dice" : "bce", "forward_backward_bf16", 1, 8 * n * pixels, [=](int) {
      const Stream st = stream();
      const bf16* logits = input_bf16(kIn0, n * pixels);
      auto* target = output(kIn1, n * pixels);
      fill_binary(target, n * pixels, run_state().seed++, 0.01f, run_state().stream);
      float* loss = output(kOut1, loss_values);
      bf16* dlogits = output_bf16(kOut0, n * pixels);
      void* work = slot(kWork0, SegmentationLoss<kCuda>::workspace(n, pixels));
      const auto run = [=] {
        SegmentationLoss<kCuda>::forward_backward(n, pixels, logits, target, config, loss, dlogits, work, st);
      };
      return Prepared{run, {bf16_out(dlogits, n * pixels), floats_out(loss, loss_values)}, ""};
    });
  }
}

// Adam with the bf16 weight copy: 28 bytes a parameter and 2 more written.
void add_adam_bf16_copy() {
  const int64_t n = unet_parameters(UNetConfig{});
  add_memory_bound("adam", "all", "step_bf16_copy", Adam<kCuda>::versions, 30 * n, [=](int version) {
    const Stream st = stream();
    float* param = input(kIn0, n);
    const float* grad = input(kIn1, n);
    float* m = input(kIn2, n);
    float* v = input(kIn3, n, 0.0f, 1.0f);
    bf16* copy = output_bf16(kOut0, n);
    auto* step = static_cast<int64_t*>(slot(kAux, sizeof(int64_t)));
    const int64_t first = 1;
    CUDA_CHECK(cudaMemcpyAsync(step, &first, sizeof(first), cudaMemcpyHostToDevice, run_state().stream));
    CUDA_CHECK(cudaStreamSynchronize(run_state().stream));
    const AdamConfig config;
    return Prepared{[=] { Adam<kCuda>::step(n, param, grad, m, v, copy, config, step, st, version); },
                    {Output{param, n * sizeof(float), true, false}, bf16_out(copy, n)}, ""};
  });
}

void register_all() {
  const std::vector<LayerShape> layers = unet_layers(UNetConfig{}, kBatch, kImageSize, kImageSize);
  for (const LayerShape& l : layers) {
    switch (l.kind) {
      case LayerKind::conv3x3:
        add_relu(l);
        add_relu_bf16(l);
        add_convolution(l);
        break;
      case LayerKind::conv1x1:
        add_loss(l);
        add_loss_bf16(l);
        add_convolution(l);
        break;
      case LayerKind::up_conv:
        add_concat(l);
        add_concat_bf16(l);
        add_convolution(l);
        break;
      case LayerKind::max_pool:
        add_max_pool(l);
        add_max_pool_bf16(l);
        break;
    }
  }
  add_adam();
  add_adam_bf16_copy();
  for (int p = 0; p < kPhases; ++p) {
    for (Pending& pending : phase(static_cast<Phase>(p))) {
      benchmark::RegisterBenchmark(pending.entry.name().c_str(),
                                   [entry = pending.entry, prepare = pending.prepare](benchmark::State& state) {
                                     run_benchmark(state, entry, prepare);
                                   })
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The machine, for the JSON's context.

std::string version_text(size_t version) {  // cuDNN 9: major*10000 + minor*100 + patch
  return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100);
}

void start_gpu_run() {
  Run& run = run_state();
  cudaDeviceProp properties{};
  CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  CUDA_CHECK(cudaStreamCreateWithFlags(&run.stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaMalloc(&run.flush, kFlushBytes));
  run.events.resize(2 * kMostRepetitions);
  for (cudaEvent_t& event : run.events) CUDA_CHECK(cudaEventCreate(&event));
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  run.library_workspace = std::min(size_t{4} << 30, free_bytes / 8);
  run.peaks = card_peaks(properties.name);

  benchmark::AddCustomContext("card", properties.name);
  benchmark::AddCustomContext("compute_capability", std::to_string(properties.major * 10 + properties.minor));
  benchmark::AddCustomContext("multiprocessors", std::to_string(properties.multiProcessorCount));
  benchmark::AddCustomContext("l2_mib", std::to_string(properties.l2CacheSize >> 20));
  if (run.peaks) {
    benchmark::AddCustomContext("peak_fp32_tflops", std::to_string(run.peaks->fp32_tflops));
    benchmark::AddCustomContext("peak_tf32_tflops", std::to_string(run.peaks->tf32_tflops));
    benchmark::AddCustomContext("peak_bf16_tflops", std::to_string(run.peaks->bf16_tflops));
    benchmark::AddCustomContext("peak_memory_gbs", std::to_string(run.peaks->memory_gbs));
  } else {
    benchmark::AddCustomContext("peaks", "not known for this card: no % of peak");
  }
  std::string why;
  if (Cudnn* api = cudnn(run.stream, &why)) {
    benchmark::AddCustomContext("cudnn", version_text(api->cudnnGetVersion()) + " (" + api->path + ")");
  } else {
    benchmark::AddCustomContext("cudnn", why);
  }
  if (Cublas* api = cublas(run.stream, &why)) {
    benchmark::AddCustomContext("cublas", std::to_string(api->version) + " (" + api->path + ")");
  } else {
    benchmark::AddCustomContext("cublas", why);
  }
  benchmark::AddCustomContext("commit", build_info().commit);
  benchmark::AddCustomContext("build", build_summary());
  benchmark::AddCustomContext("model", UNetConfig{}.describe() + "; batch " + std::to_string(kBatch) + ", " +
                                           std::to_string(kImageSize) + "x" + std::to_string(kImageSize));
  benchmark::AddCustomContext("timing", "median of 3 to 21 repetitions after warm-up, CUDA events, L2 flushed "
                                        "before each by a 256 MiB cudaMemsetAsync");
  benchmark::AddCustomContext("budget_s", std::to_string(static_cast<int>(run.budget_s)));
}

// Takes --budget_s=N out of argv (Google Benchmark rejects flags it does not know).
void take_own_flags(int* argc, char** argv) {
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const char* flag = "--budget_s=";
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) {
      run_state().budget_s = std::stod(argv[i] + std::strlen(flag));
    } else {
      argv[kept++] = argv[i];
    }
  }
  *argc = kept;
}

bool listing_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0) return true;
  }
  return false;
}

// Whether there is a GPU to measure; if not, why.
bool gpu_present(std::string* why) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess && count > 0) return true;
  *why = status == cudaSuccess ? "no CUDA GPU" : std::string("no usable CUDA GPU: ") + cudaGetErrorString(status);
  return false;
}

}  // namespace
}  // namespace unet::bench

int main(int argc, char** argv) {
  using namespace unet::bench;
  try {
    take_own_flags(&argc, argv);
    register_all();
    const bool listing = listing_only(argc, argv);  // before Initialize, which removes the flags it reads
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    if (!listing) {
      std::string why;
      if (!gpu_present(&why)) {
        std::fprintf(stderr, "bench_kernels: %s; nothing measured.\n", why.c_str());
        return 77;  // skipped, as the tests report it
      }
      start_gpu_run();
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench_kernels: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
