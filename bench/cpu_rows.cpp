// bench_kernels' cpu rows (bench_kernels.cpp says what every row reports): the cpu device's
// convolution passes, through its launchers as the engine calls them, on every layer of the CPU
// model (batch 16, 128x128, base width 16, depth 3 unless the shape flags say otherwise), in
// GFLOP/s and in per cent of the machine's FMA peak, which is measured first.
//
// Names are op/layer/pass/cpu_<kernels>, the kernels being the instruction set in use
// (kernels/cpu_kernels.h: UNET_CPU_KERNELS=generic forces the plain C++ ones), at OpenMP's thread
// count (OMP_NUM_THREADS). The peak is timed, not derived from a clock (under a hypervisor clock
// readings are not reliable): 10 independent chains of 8-wide fused multiply-adds per thread, the
// best of 5 runs, at 1 thread and at OpenMP's thread count, in the context as
// cpu_fma_peak_1_thread_gflops and cpu_fma_peak_gflops (pct_peak is against the latter). It needs
// AVX2 and FMA: elsewhere no peak and no pct_peak.
//
// Timing: wall clock; one run as warm-up (it packs the kernels' scratch buffers), then as many
// timed repetitions as fit in 0.2 s, at least 3 and at most 21, caches left warm (the operands of
// the larger layers exceed the caches anyway).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <benchmark/benchmark.h>

#include "bench/bench_kernels.h"
#include "kernels/cpu_kernels.h"

namespace unet::bench {
namespace {

constexpr DeviceKind kCpu = DeviceKind::cpu;
constexpr int64_t kPeakIterations = 50'000'000;  // about 0.07 s a run on the build machine
constexpr int kPeakTrials = 5;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

#if defined(__x86_64__)
// 10 chains of 8-wide FMAs in registers: more than the FMA latency times the FMA pipes (4 x 2 on
// current x86 cores), so the pipes, not a dependency, set the pace. Each chain starts from its own
// value: chains that start equal compute equal values, and the compiler merges them into one
// (it did: one FMA per iteration, counted as ten, read 145 GFLOP/s on a core whose pipes do 117).
// `scripts/check_cpu_fma.py peak` (a test) counts the FMAs in the compiled loop.
__attribute__((target("avx2,fma"))) float fma_chains(int64_t iterations, float seed) {
  __m256 c0 = _mm256_set1_ps(seed), c1 = _mm256_set1_ps(seed + 1), c2 = _mm256_set1_ps(seed + 2),
         c3 = _mm256_set1_ps(seed + 3), c4 = _mm256_set1_ps(seed + 4), c5 = _mm256_set1_ps(seed + 5),
         c6 = _mm256_set1_ps(seed + 6), c7 = _mm256_set1_ps(seed + 7), c8 = _mm256_set1_ps(seed + 8),
         c9 = _mm256_set1_ps(seed + 9);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
    c0 = _mm256_fmadd_ps(c0, a, b), c1 = _mm256_fmadd_ps(c1, a, b), c2 = _mm256_fmadd_ps(c2, a, b);
    c3 = _mm256_fmadd_ps(c3, a, b), c4 = _mm256_fmadd_ps(c4, a, b), c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b), c7 = _mm256_fmadd_ps(c7, a, b), c8 = _mm256_fmadd_ps(c8, a, b);
    c9 = _mm256_fmadd_ps(c9, a, b);
  }
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                                   _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)),
                                                 _mm256_add_ps(c8, c9)));
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  return lanes[0];
}

// GFLOP/s of `threads` threads each running fma_chains (2 flops per lane per FMA), the best of
// kPeakTrials runs: a hypervisor that takes a core away for a while makes a run slow, never fast,
// and a peak read low would put rows above 100%. nullopt where the CPU has no AVX2 and FMA.
std::optional<double> fma_peak(int threads) {
  if (!cpu::fast::supported(cpu::fast::CpuKernels::avx2)) return std::nullopt;
  double best = 0;
  for (int trial = 0; trial < kPeakTrials; ++trial) {
    float sink = 0;
    const double start = now_ms();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += fma_chains(kPeakIterations, static_cast<float>(omp_get_thread_num()));
    const double ms = now_ms() - start;
    benchmark::DoNotOptimize(sink);
    best = std::max(best, threads * kPeakIterations * 10.0 * 16.0 / ms / 1e6);
  }
  return best;
}
#else
std::optional<double> fma_peak(int) { return std::nullopt; }
#endif

// The CPU's name as the kernel reports it ("model name" in /proc/cpuinfo), for the context.
std::string cpu_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// The host as the benchmarks see it: buffers in memory, the wall clock, the measured FMA peak.
struct Host final : BenchDevice {
  std::vector<float> slots[kSlots];
  std::mt19937 generator{1};
  std::optional<double> fma_peak_gflops;

  void* slot(Slot s, size_t bytes) override {
    const size_t floats = (bytes + sizeof(float) - 1) / sizeof(float);
    if (slots[s].size() < floats) slots[s].resize(floats);
    return slots[s].data();
  }
  void fill_uniform(float* data, size_t count, float low, float high) override {
    std::uniform_real_distribution<float> uniform(low, high);
    for (size_t i = 0; i < count; ++i) data[i] = uniform(generator);
  }
  void poison(const Output& out) override { std::memset(out.data, 0xff, out.bytes); }
  int64_t count_nonfinite(const Output& out) override {
    const auto* values = static_cast<const float*>(out.data);
    int64_t count = 0;
    for (size_t i = 0; i < out.bytes / sizeof(float); ++i) count += !std::isfinite(values[i]);
    return count;
  }
  Timing measure(const std::function<void()>& run_once) override {
    const auto timed = [&] {
      const double start = now_ms();
      run_once();
      return now_ms() - start;
    };
    const double first_ms = timed();
    std::vector<double> ms(bench::repetitions(first_ms, kRepetitionBudgetMs, kFewestRepetitions, kMostRepetitions));
    for (double& t : ms) t = timed();
    return summarize(ms);
  }
  std::optional<double> peak(const Entry& entry) const override {
    return entry.flop > 0 ? fma_peak_gflops : std::nullopt;
  }
};

Host& host() {
  static Host h;
  return h;
}

void add_convolution(const LayerShape& l, const std::string& impl) {
  for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weight}) {
    const Entry entry{kind_name(l.kind), l.name, pass_name(pass), impl, 2.0 * static_cast<double>(l.macs())};
    add(kCpuRows, entry, host(), [=] {
      return l.kind == LayerKind::up_conv ? ours_up_conv<kCpu>(host(), l, pass, 0, Stream{})
                                          : ours_conv<kCpu>(host(), l, pass, 0, Stream{});
    });
  }
}

void add_context(const ModelShape& shape) {
  const int threads = omp_get_max_threads();
  const std::optional<double> one = fma_peak(1);
  host().fma_peak_gflops = fma_peak(threads);
  benchmark::AddCustomContext("cpu_name", cpu_name());
  benchmark::AddCustomContext("cpu_kernels", cpu::fast::name(cpu::fast::cpu_kernels()));
  benchmark::AddCustomContext("cpu_threads", std::to_string(threads));
  if (one && host().fma_peak_gflops) {
    benchmark::AddCustomContext("cpu_fma_peak_1_thread_gflops", std::to_string(*one));
    benchmark::AddCustomContext("cpu_fma_peak_gflops", std::to_string(*host().fma_peak_gflops));
  } else {
    benchmark::AddCustomContext("cpu_fma_peak", "not measured: no AVX2 and FMA, no % of peak");
  }
  benchmark::AddCustomContext("cpu_model", shape.describe());
  benchmark::AddCustomContext("cpu_timing", "median of 3 to 21 repetitions after a warm-up run, wall clock");
}

}  // namespace

void register_cpu_rows(const ModelShape& shape, bool listing) {
  if (!listing) add_context(shape);
  const std::string impl = std::string("cpu_") + cpu::fast::name(cpu::fast::cpu_kernels());
  for (const LayerShape& l : unet_layers(shape.config, shape.batch, shape.image_size, shape.image_size)) {
    if (l.kind != LayerKind::max_pool) add_convolution(l, impl);
  }
}

}  // namespace unet::bench
