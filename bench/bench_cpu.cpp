// bench_cpu: the cpu device's convolution passes (cpu::fast) on every layer of a U-Net, in
// GFLOP/s and in per cent of the machine's FMA peak, which it measures first (docs/performance.md).
//
//   bench_cpu [--batch B] [--image-size S] [--base-width W] [--depth D] [--repetitions R] [--clock wall|cpu]
//
// The peak is timed, not derived from a clock (under a hypervisor clock readings are not reliable):
// 12 independent chains of 8-wide fused multiply-adds per thread, at 1 thread and at OpenMP's
// thread count. Builds without CUDA; the instruction set is the cpu device's (UNET_CPU_KERNELS).
#include <omp.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "bench/timing.h"
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "kernels/cpu_kernels.h"
#include "models/unet_shapes.h"

namespace unet {
namespace {

// Wall time, or with --clock cpu the process's CPU time divided by the thread count: steadier on a
// machine shared with other work, which takes cores away from a wall-clock measurement.
bool cpu_clock = false;

double now_ms() {
  if (cpu_clock) {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (t.tv_sec * 1e3 + t.tv_nsec * 1e-6) / omp_get_max_threads();
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr int64_t kPeakIterations = 50'000'000;

#if defined(__x86_64__)
// 10 chains of 8-wide FMAs in registers: more than the FMA latency times the FMA pipes (4 x 2 on
// current x86 cores), so the pipes, not a dependency, set the pace.
__attribute__((target("avx2,fma"))) float fma_chains(int64_t iterations, float seed) {
  __m256 c0 = _mm256_set1_ps(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0;
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

// GFLOP/s of `threads` threads each running fma_chains (2 flops per lane per FMA).
double fma_peak(int threads) {
  float sink = 0;
  const double start = now_ms();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  sink += fma_chains(kPeakIterations, static_cast<float>(omp_get_thread_num()));
  const double ms = now_ms() - start;
  if (sink == 12345.0f) std::printf(" ");  // keeps the result alive
  return threads * kPeakIterations * 10.0 * 16.0 / ms / 1e6;
}
#else
double fma_peak(int) { return 0; }
#endif

struct Pass {
  std::string name;
  std::function<void()> run;
  int64_t macs;
};

double median_ms(const std::function<void()>& run, int repetitions) {
  run();  // warm-up: packs the scratch buffers
  std::vector<double> ms;
  for (int r = 0; r < repetitions; ++r) {
    const double start = now_ms();
    run();
    ms.push_back(now_ms() - start);
  }
  return bench::summarize(ms).median_ms;
}

int int_option(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == name) return std::atoi(argv[i + 1]);
  }
  return fallback;
}

int run(int argc, char** argv) {
  for (int i = 1; i < argc; i += 2) {
    const std::string option = argv[i];
    if (option != "--batch" && option != "--image-size" && option != "--base-width" && option != "--depth" &&
        option != "--repetitions" && option != "--clock") {
      std::fprintf(stderr, "error: unknown option %s (see the header of bench/bench_cpu.cpp)\n", option.c_str());
      return 2;
    }
  }
  const int batch = int_option(argc, argv, "--batch", 16), size = int_option(argc, argv, "--image-size", 128);
  const int repetitions = int_option(argc, argv, "--repetitions", 5);
  UNetConfig config;
  config.base_width = int_option(argc, argv, "--base-width", 16);
  config.depth = int_option(argc, argv, "--depth", 3);

  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--clock") cpu_clock = std::string(argv[i + 1]) == "cpu";
  }
  const int threads = omp_get_max_threads();
  const double peak_one = fma_peak(1), peak = fma_peak(threads);
  std::printf("%s clock; ", cpu_clock ? "cpu" : "wall");
  std::printf("cpu kernels %s, %d threads; FMA peak %.1f GFLOP/s at 1 thread, %.1f at %d\n",
              cpu::fast::name(cpu::fast::cpu_kernels()), threads, peak_one, peak, threads);
  std::printf("U-Net %s, batch %d, %dx%d\n\n", config.describe().c_str(), batch, size, size);
  std::printf("%-24s %-16s %9s %9s %7s\n", "layer", "pass", "ms", "GFLOP/s", "% peak");

  double total_ms = 0;
  int64_t total_macs = 0;
  for (const LayerShape& layer : unet_layers(config, batch, size, size)) {
    if (layer.kind == LayerKind::max_pool) continue;
    const int64_t pixels = int64_t{layer.n} * layer.h * layer.w;
    const int64_t out_pixels = pixels * (layer.kind == LayerKind::up_conv ? 4 : 1);
    const int taps = layer.kind == LayerKind::conv3x3 ? 9 : layer.kind == LayerKind::up_conv ? 4 : 1;
    std::vector<float> x(pixels * layer.c_in, 0.5f), dx(x.size()), y(out_pixels * layer.c_out, 0.25f);
    std::vector<float> dy(y.size(), 0.125f), weight(int64_t{taps} * layer.c_in * layer.c_out, 0.01f);
    std::vector<float> dweight(weight.size()), bias(layer.c_out, 0.1f), dbias(layer.c_out);
    std::vector<Pass> passes;
    if (layer.kind == LayerKind::up_conv) {
      const ConvTranspose2dShape s{layer.n, layer.h, layer.w, layer.c_in, layer.c_out};
      const int64_t macs = conv_transpose2d_macs(s);
      passes = {
          {"forward", [&] { cpu::fast::conv_transpose2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(),
                                                                  y.data(), s.c_out); }, macs},
          {"backward_data", [&] { cpu::fast::conv_transpose2d_backward_data(s, dy.data(), s.c_out, weight.data(),
                                                                              0.0f, dx.data(), s.c_in); }, macs},
          {"backward_weight", [&] { cpu::fast::conv_transpose2d_backward_weight(s, x.data(), s.c_in, dy.data(),
                                                                                  s.c_out, 0.0f, dweight.data()); },
           macs},
      };
    } else {
      const Conv2dShape s{layer.n, layer.h, layer.w, layer.c_in, layer.c_out, layer.kind == LayerKind::conv3x3 ? 3 : 1};
      const int64_t macs = conv2d_macs(s);
      const bool relu = layer.kind == LayerKind::conv3x3;
      const float* mask = relu ? y.data() : nullptr;
      passes = {
          {"forward", [&] { cpu::fast::conv2d_forward(s, x.data(), s.c_in, weight.data(), bias.data(), relu,
                                                        y.data(), s.c_out); }, macs},
          {"backward_data", [&] { cpu::fast::conv2d_backward_data(s, dy.data(), s.c_out, mask, s.c_out,
                                                                    weight.data(), 0.0f, dx.data(), s.c_in); }, macs},
          {"backward_weight", [&] { cpu::fast::conv2d_backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, mask,
                                                                        s.c_out, 0.0f, dweight.data()); }, macs},
      };
    }
    for (const Pass& pass : passes) {
      const double ms = median_ms(pass.run, repetitions);
      const double gflops = 2.0 * pass.macs / ms / 1e6;
      total_ms += ms;
      total_macs += pass.macs;
      std::printf("%-24s %-16s %9.2f %9.1f %6.0f%%\n", layer.name.c_str(), pass.name.c_str(), ms, gflops,
                  peak > 0 ? 100 * gflops / peak : 0.0);
    }
  }
  std::printf("\n%-24s %-16s %9.2f %9.1f %6.0f%%\n", "all", "", total_ms, 2.0 * total_macs / total_ms / 1e6,
              peak > 0 ? 100 * 2.0 * total_macs / total_ms / 1e6 / peak : 0.0);
  return 0;
}

}  // namespace
}  // namespace unet

int main(int argc, char** argv) { return unet::run(argc, argv); }
