// What bench_kernels' two halves share: a benchmark's entry and its prepared run, the buffers it
// runs on, how a device times it, and our convolution passes, written once for the cuda and the
// cpu device's launchers. bench_kernels.cpp registers and reports; gpu_rows.cpp (CUDA) and
// cpu_rows.cpp supply the rows.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bench/gemm.h"
#include "bench/timing.h"
#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "models/unet_shapes.h"

namespace unet::bench {

constexpr double kRepetitionBudgetMs = 200;
constexpr int kFewestRepetitions = 3;
constexpr int kMostRepetitions = 21;

// The model whose layers a device's rows run at (flags --batch, --image_size, --base_width, --depth).
struct ModelShape {
  int batch = 16;
  int image_size = 256;
  UNetConfig config;
  std::string describe() const;
};

struct Entry {
  std::string op, layer, pass, impl;
  double flop = 0;   // compute-bound: floating-point operations of one run
  double bytes = 0;  // memory-bound: minimum bytes one run moves
  Math precision = Math::fp32;
  // A peak row (mma_sync/...) records its rate as the mma.sync peak of its precision; a tensor-core
  // row of ours that runs after it reports its share of that peak too (pct_mma_peak).
  bool is_mma_peak = false;
  bool versus_mma_peak = false;
  std::string name() const { return op + "/" + layer + "/" + pass + "/" + impl; }
};

// What an output's bytes hold: fp32 or bf16 values (checked finite after the last run, each read
// as its own type), or bytes that are no floating-point values (argmax indices, a copy's target).
enum class Values { f32, bf16, unchecked };

// An output of a run: poisoned (all-ones bytes, NaN as fp32 and as bf16) before the first run, and
// checked finite after the last unless its values are `unchecked`. A bf16 tensor with a padded
// pixel stride (engine/tensor.h's padded_stride) has `channels` values in every `pixel_stride`
// elements: only those are written, so only those are checked (0: every element).
struct Output {
  void* data;
  size_t bytes;
  Values values = Values::f32;
  bool poison = true;
  int channels = 0, pixel_stride = 0;
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

inline Output floats_out(float* data, size_t count) { return {data, count * sizeof(float)}; }

// Buffers by role, grown on demand and kept: consecutive benchmarks reuse them.
enum Slot { kIn0, kIn1, kIn2, kIn3, kOut0, kOut1, kWork0, kWork1, kLibraryWork, kAux, kSlots };

// A device as the benchmarks see it: its memory, its clock and its peak.
class BenchDevice {
 public:
  virtual ~BenchDevice() = default;
  virtual void* slot(Slot s, size_t bytes) = 0;
  // `count` fresh random floats in [low, high) (never zeros: the kernels' work must not be trivial).
  virtual void fill_uniform(float* data, size_t count, float low, float high) = 0;
  virtual void poison(const Output& out) = 0;
  virtual int64_t count_nonfinite(const Output& out) = 0;
  // The median and spread of repeated runs after warm-up.
  virtual Timing measure(const std::function<void()>& run_once) = 0;
  // What `entry`'s GFLOP/s (flop) or GB/s (bytes) is a share of; nullopt where not known.
  virtual std::optional<double> peak(const Entry& entry) const = 0;

  float* input(Slot s, size_t count, float low = -1.0f, float high = 1.0f) {
    auto* data = static_cast<float*>(slot(s, count * sizeof(float)));
    fill_uniform(data, count, low, high);
    return data;
  }
  float* output(Slot s, size_t count) { return static_cast<float*>(slot(s, count * sizeof(float))); }
};

// Benchmarks are collected in phases and registered phase by phase: on the GPU the mma.sync peak
// first (the tensor-core rows are measured against it), then memory-bound ops, then the
// convolutions in bf16 (the cuda device's default precision), in TF32, in fp32 (ours and the
// libraries in each), then every compute-bound version 1 (the slow teaching kernels), so that what
// the time budget skips is the least informative; the cpu rows, the other machine's half, after
// them.
enum Phase { kPeaks, kMemoryBound, kBf16Convolutions, kTf32Convolutions, kComputeBound, kSlowest, kCpuRows, kPhases };

// Queues one benchmark: `prepare` runs on `device` when the benchmark starts, never at registration.
void add(Phase phase, Entry entry, BenchDevice& device, std::function<Prepared()> prepare);

// The rows of each half; `listing` registers them without measuring anything
// (--benchmark_list_tests). register_gpu_rows returns false, with the reason, where there is no
// GPU to measure.
bool register_gpu_rows(const ModelShape& shape, bool listing, std::string* why);
void register_cpu_rows(const ModelShape& shape, bool listing);

// ---------------------------------------------------------------------------------------------
// The layers' names and operand sizes, and our convolution passes on device D as the engine runs
// them: bias and ReLU fused into the forward, the ReLU mask applied inside both backward passes,
// the bias gradient timed with the weight gradient.

const char* pass_name(Pass pass);
const char* kind_name(LayerKind kind);

inline int64_t input_count(const LayerShape& l) { return int64_t{l.n} * l.h * l.w * l.c_in; }
inline int64_t output_count(const LayerShape& l) { return int64_t{l.n} * l.out_h() * l.out_w() * l.c_out; }
inline int64_t weight_count(const LayerShape& l) { return l.parameters() - l.c_out; }

template <DeviceKind D>
Prepared ours_conv(BenchDevice& device, const LayerShape& l, Pass pass, int version, Stream st) {
  const Conv2dShape s{l.n, l.h, l.w, l.c_in, l.c_out, l.kind == LayerKind::conv3x3 ? 3 : 1};
  const bool relu = l.kind == LayerKind::conv3x3;
  const int ci = s.c_in, co = s.c_out;
  switch (pass) {
    case Pass::forward: {
      const float* x = device.input(kIn0, input_count(l));
      const float* w = device.input(kIn1, weight_count(l));
      const float* b = device.input(kIn2, co);
      float* y = device.output(kOut0, output_count(l));
      return {[=] { Conv2d<D>::forward(s, x, ci, w, b, relu, y, co, st, version); },
              {floats_out(y, output_count(l))}, ""};
    }
    case Pass::backward_data: {
      const float* dy = device.input(kIn0, output_count(l));
      const float* y = relu ? device.input(kIn1, output_count(l)) : nullptr;
      const float* w = device.input(kIn2, weight_count(l));
      float* dx = device.output(kOut0, input_count(l));
      return {[=] { Conv2d<D>::backward_data(s, dy, co, y, co, w, 0.0f, dx, ci, st, version); },
              {floats_out(dx, input_count(l))}, ""};
    }
    case Pass::backward_weight: {
      const float* x = device.input(kIn0, input_count(l));
      const float* dy = device.input(kIn1, output_count(l));
      const float* y = relu ? device.input(kIn2, output_count(l)) : nullptr;
      float* dw = device.output(kOut0, weight_count(l));
      float* db = device.output(kOut1, co);
      void* work = device.slot(kWork0, Conv2d<D>::backward_weight_workspace(s, version));
      void* bias_work = device.slot(kWork1, Conv2d<D>::backward_bias_workspace(s));
      return {[=] {
                Conv2d<D>::backward_weight(s, x, ci, dy, co, y, co, 0.0f, dw, work, st, version);
                Conv2d<D>::backward_bias(s, dy, co, y, co, 0.0f, db, bias_work, st);
              },
              {floats_out(dw, weight_count(l)), floats_out(db, co)}, ""};
    }
  }
  return {};
}

template <DeviceKind D>
Prepared ours_up_conv(BenchDevice& device, const LayerShape& l, Pass pass, int version, Stream st) {
  const ConvTranspose2dShape s{l.n, l.h, l.w, l.c_in, l.c_out};
  const int ci = s.c_in, co = s.c_out;
  switch (pass) {
    case Pass::forward: {
      const float* x = device.input(kIn0, input_count(l));
      const float* w = device.input(kIn1, weight_count(l));
      const float* b = device.input(kIn2, co);
      float* y = device.output(kOut0, output_count(l));
      return {[=] { ConvTranspose2d<D>::forward(s, x, ci, w, b, y, co, st, version); },
              {floats_out(y, output_count(l))}, ""};
    }
    case Pass::backward_data: {
      const float* dy = device.input(kIn0, output_count(l));
      const float* w = device.input(kIn1, weight_count(l));
      float* dx = device.output(kOut0, input_count(l));
      return {[=] { ConvTranspose2d<D>::backward_data(s, dy, co, w, 0.0f, dx, ci, st, version); },
              {floats_out(dx, input_count(l))}, ""};
    }
    case Pass::backward_weight: {
      const float* x = device.input(kIn0, input_count(l));
      const float* dy = device.input(kIn1, output_count(l));
      float* dw = device.output(kOut0, weight_count(l));
      float* db = device.output(kOut1, co);
      void* work = device.slot(kWork0, ConvTranspose2d<D>::backward_weight_workspace(s, version));
      void* bias_work = device.slot(kWork1, ConvTranspose2d<D>::backward_bias_workspace(s));
      return {[=] {
                ConvTranspose2d<D>::backward_weight(s, x, ci, dy, co, 0.0f, dw, work, st, version);
                ConvTranspose2d<D>::backward_bias(s, dy, co, 0.0f, db, bias_work, st);
              },
              {floats_out(dw, weight_count(l)), floats_out(db, co)}, ""};
    }
  }
  return {};
}

}  // namespace unet::bench
