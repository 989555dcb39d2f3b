// bench_kernels' GPU rows (bench_kernels.cpp says what every row reports): every kernel of the
// model at the default U-Net's layer shapes (batch 16, 256x256 unless the shape flags say
// otherwise), every version of ours beside the library's best.
//
// Names are op/layer/pass/implementation:
//   mma_sync/registers/{bf16_m16n8k16,tf32_m16n8k8}/peak: the card's mma.sync throughput
//     (bench/mma_peak.h), run first; the ours_v3 rows after it report pct_mma_peak, their share of
//     the peak of their precision;
//   conv3x3, conv1x1 (the head), up_conv: forward, backward_data, backward_weight (with the bias
//     gradient); implementations ours_v<N> (Conv2d / ConvTranspose2d, every version; both also
//     ours_v3, TF32 on tensor cores, precision tf32),
//     cudnn_{nhwc,nchw}_{fp32,tf32} (the algorithm cudnnFind*AlgorithmEx finds fastest; fp32 means
//     FMA kernels only, tf32 allows tensor cores), and for the GEMM-shaped layers cublas_{fp32,tf32}
//     (SGEMM alone, no bias, output in GEMM order: bench/gemm.h);
//   the same layers in bf16 as passes `<pass>_bf16`: ours_v3 (the bf16 overloads the engine's bf16
//     mode calls: bf16 activations, gradients and weight copy with the arena's padded pixel
//     strides, fp32 bias and weight and bias gradients) beside cudnn_{nhwc,nchw}_bf16 (bf16
//     tensors, filter and bias, fp32 compute type, tensor-op math, dense layouts);
//   max_pool, relu, concat, sigmoid (of the head's logits): forward, backward; loss (bce,
//     bce_dice): forward_backward; adam (all parameters): step; each with ours_v<N> and `copy`, a
//     cudaMemcpyAsync moving as many bytes (half read, half written) as the op's minimum traffic;
//     the same ops in bf16 as passes `<pass>_bf16` (sigmoid: bf16 logits, fp32 probabilities, no
//     backward; Adam's `step_bf16_copy` also writes the bf16 weight copy), each beside a copy of
//     its own, smaller, traffic. bf16 outputs are checked finite as bf16 values.
// The model's 3x3 convs run as the engine runs them (bench_kernels.h). cuDNN's forward fuses bias
// and ReLU too (cudnnConvolutionBiasActivationForward); its backward passes do not apply the mask
// (a framework runs that as a separate elementwise kernel, timed here as relu/backward).
//
// Timing: inputs generated on the GPU; one run timed by CUDA events as warm-up (two more when it
// is quick), then as many timed repetitions as fit in 0.2 s, at least 3 and at most 21, each after
// a 256 MiB cudaMemsetAsync that flushes the L2. pct_peak only on the H100 SXM and H200
// (bench/card.h). A missing cuDNN or cuBLAS skips only the baselines, each named with the reason.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "bench/baselines.h"
#include "bench/bench_kernels.h"
#include "bench/card.h"
#include "bench/device_fill.h"
#include "bench/mma_peak.h"
#include "engine/tensor.h"
#include "kernels/adam.h"
#include "kernels/concat.h"
#include "kernels/cuda_check.h"
#include "kernels/loss.h"
#include "kernels/max_pool2d.h"
#include "kernels/relu.h"
#include "kernels/sigmoid.h"

namespace unet::bench {
namespace {

constexpr DeviceKind kCuda = DeviceKind::cuda;
constexpr size_t kFlushBytes = size_t{256} << 20;

// ---------------------------------------------------------------------------------------------
// The GPU as the benchmarks see it: one stream, reusable buffers, CUDA events.

struct Run final : BenchDevice {
  cudaStream_t stream = nullptr;
  void* flush = nullptr;
  std::optional<Peaks> peaks;
  int multiprocessors = 0;
  size_t library_workspace = 0;
  uint64_t seed = 1;
  void* slots[kSlots] = {};
  size_t slot_bytes[kSlots] = {};
  std::vector<cudaEvent_t> events;  // 2 per timed repetition

  void* slot(Slot s, size_t bytes) override {
    if (slot_bytes[s] < bytes) {
      if (slots[s]) CUDA_CHECK(cudaFree(slots[s]));
      slots[s] = nullptr;
      slot_bytes[s] = 0;
      CUDA_CHECK(cudaMalloc(&slots[s], bytes));
      slot_bytes[s] = bytes;
    }
    return slots[s];
  }
  void fill_uniform(float* data, size_t count, float low, float high) override {
    bench::fill_uniform(data, count, seed++, low, high, stream);
  }
  void poison(const Output& out) override { CUDA_CHECK(cudaMemsetAsync(out.data, 0xff, out.bytes, stream)); }
  int64_t count_nonfinite(const Output& out) override {
    if (out.values == Values::bf16) {
      const int stride = out.pixel_stride > 0 ? out.pixel_stride : 1;
      const int channels = out.pixel_stride > 0 ? out.channels : 1;
      return bench::count_nonfinite(static_cast<const bf16*>(out.data), out.bytes / sizeof(bf16), channels, stride,
                                    stream);
    }
    return bench::count_nonfinite(static_cast<const float*>(out.data), out.bytes / sizeof(float), stream);
  }
  Timing measure(const std::function<void()>& run_once) override;
  std::optional<double> peak(const Entry& entry) const override {
    if (!peaks) return std::nullopt;
    if (entry.bytes > 0) return peaks->memory_gbs;
    switch (entry.precision) {
      case Math::fp32: return 1e3 * peaks->fp32_tflops;
      case Math::tf32: return 1e3 * peaks->tf32_tflops;
      case Math::bf16: return 1e3 * peaks->bf16_tflops;
    }
    return std::nullopt;
  }
};

Run& run_state() {
  static Run run;
  return run;
}

void* slot(Slot s, size_t bytes) { return run_state().slot(s, bytes); }
float* input(Slot s, size_t count, float low = -1.0f, float high = 1.0f) {
  return run_state().input(s, count, low, high);
}
float* output(Slot s, size_t count) { return run_state().output(s, count); }
void add(Phase p, Entry entry, std::function<Prepared()> prepare) {
  bench::add(p, std::move(entry), run_state(), std::move(prepare));
}

// bf16 buffers: random values rounded to bf16, as the bf16 kernels read them.
bf16* input_bf16(Slot s, size_t count) {
  auto* data = static_cast<bf16*>(slot(s, count * sizeof(bf16)));
  fill_uniform_bf16(data, count, run_state().seed++, -1.0f, 1.0f, run_state().stream);
  return data;
}

bf16* output_bf16(Slot s, size_t count) { return static_cast<bf16*>(slot(s, count * sizeof(bf16))); }

Output bf16_out(bf16* data, size_t count) { return {data, count * sizeof(bf16), Values::bf16}; }

// The run's stream, for launchers. Only while preparing a benchmark: at registration it does not
// exist yet (launches there would go to the default stream, outside the timing events).
Stream stream() { return Stream{run_state().stream}; }

Timing Run::measure(const std::function<void()>& run_once) {
  const cudaStream_t s = stream;
  const auto timed = [&](int i) {
    CUDA_CHECK(cudaMemsetAsync(flush, i & 0xff, kFlushBytes, s));
    CUDA_CHECK(cudaEventRecord(events[2 * i], s));
    run_once();
    CUDA_CHECK(cudaEventRecord(events[2 * i + 1], s));
  };
  const auto elapsed_ms = [&](int i) {
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(events[2 * i + 1]));
    CUDA_CHECK(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]));
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

// The layer's convolution in cuDNN's terms, and which buffer plays which role (baselines.h), on
// dense tensors of T: float for Math::fp32 and tf32, bf16 for Math::bf16.
template <class T>
Prepared cudnn_conv(const LayerShape& l, Pass pass, Layout layout, Math math) {
  Cudnn& api = require_cudnn();
  const bool up = l.kind == LayerKind::up_conv;
  const int k = l.kind == LayerKind::conv3x3 ? 3 : up ? 2 : 1;
  const ConvGeometry geometry =
      up ? ConvGeometry{l.n, l.c_out, l.out_h(), l.out_w(), l.c_in, l.h, l.w, 2, 2, 0, 2}
         : ConvGeometry{l.n, l.c_in, l.h, l.w, l.c_out, l.h, l.w, k, k, k / 2, 1};
  const auto in = [](Slot s, int64_t count) -> T* {
    if constexpr (std::is_same_v<T, bf16>) {
      return input_bf16(s, count);
    } else {
      return input(s, count);
    }
  };
  const auto out = [](T* data, int64_t count) {
    return Output{data, count * sizeof(T), std::is_same_v<T, bf16> ? Values::bf16 : Values::f32};
  };
  const auto scratch = [](Slot s, int64_t count) { return static_cast<T*>(slot(s, count * sizeof(T))); };
  // Our x and dx have geometry.in_* for a conv, geometry.out_* for the up-conv; y and dy the other.
  CudnnJob job{};
  std::vector<Output> outputs;
  const int64_t ours_in = input_count(l), ours_out = output_count(l), weights = weight_count(l);
  switch (pass) {
    case Pass::forward: {
      T* x = in(kIn0, ours_in);
      T* w = in(kIn1, weights);
      T* b = in(kIn2, l.c_out);
      T* y = scratch(kOut0, ours_out);
      job = up ? CudnnJob{CudnnOp::backward_data, y, x, w, b, BiasOn::input}
               : CudnnJob{CudnnOp::forward, x, y, w, b, BiasOn::output, l.kind == LayerKind::conv3x3};
      outputs = {out(y, ours_out)};
      break;
    }
    case Pass::backward_data: {
      T* dy = in(kIn0, ours_out);
      T* w = in(kIn1, weights);
      T* dx = scratch(kOut0, ours_in);
      job = up ? CudnnJob{CudnnOp::forward, dy, dx, w, nullptr, BiasOn::none}
               : CudnnJob{CudnnOp::backward_data, dx, dy, w, nullptr, BiasOn::none};
      outputs = {out(dx, ours_in)};
      break;
    }
    case Pass::backward_weight: {
      T* x = in(kIn0, ours_in);
      T* dy = in(kIn1, ours_out);
      T* dw = scratch(kOut0, weights);
      T* db = scratch(kOut1, l.c_out);
      job = up ? CudnnJob{CudnnOp::backward_filter, dy, x, dw, db, BiasOn::input}
               : CudnnJob{CudnnOp::backward_filter, x, dy, dw, db, BiasOn::output};
      outputs = {out(dw, weights), out(db, l.c_out)};
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

// bf16 rows run first, then TF32, then fp32: the budget cuts the fp32 ones first.
Phase phase_of(Math math) {
  switch (math) {
    case Math::bf16: return kBf16Convolutions;
    case Math::tf32: return kTf32Convolutions;
    case Math::fp32: return kComputeBound;
  }
  return kComputeBound;
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
        add(phase_of(math), entry(impl, math), [=] { return cudnn_conv<float>(l, pass, layout, math); });
      }
    }
    if (l.kind != LayerKind::conv3x3) {
      for (Math math : {Math::fp32, Math::tf32}) {
        add(phase_of(math), entry(math == Math::fp32 ? "cublas_fp32" : "cublas_tf32", math),
            [=] { return cublas_gemm(l, pass, math); });
      }
    }
    {  // version 3: TF32 tensor cores
      const int version = up ? ConvTranspose2d<kCuda>::tensor_core_version : Conv2d<kCuda>::tensor_core_version;
      Entry e = entry("ours_v" + std::to_string(version), Math::tf32);
      e.versus_mma_peak = true;
      add(kTf32Convolutions, e,
          [=] { return up ? ours_up_conv<kCuda>(run_state(), l, pass, version, stream())
                : ours_conv<kCuda>(run_state(), l, pass, version, stream()); });
    }
    for (int version = versions; version >= 1; --version) {
      add(version == 1 ? kSlowest : kComputeBound, entry("ours_v" + std::to_string(version), Math::fp32),
          [=] { return up ? ours_up_conv<kCuda>(run_state(), l, pass, version, stream())
                : ours_conv<kCuda>(run_state(), l, pass, version, stream()); });
    }
  }
}

// Our version-3 passes in bf16 as the engine's bf16 mode runs them (engine/ops.cpp): bf16
// activations, activation gradients and weights (the copy Adam writes), fp32 bias and fp32 weight
// and bias gradients; every bf16 tensor laid out with the engine's pixel stride
// (engine/tensor.h's padded_stride: 8 for the image's 3 channels), and only its channels checked.
Output padded_out(bf16* data, int64_t pixels, int channels, int stride) {
  return Output{data, static_cast<size_t>(pixels * stride) * sizeof(bf16), Values::bf16, true, channels, stride};
}

Prepared ours_conv_bf16(const LayerShape& l, Pass pass) {
  const Conv2dShape s{l.n, l.h, l.w, l.c_in, l.c_out, l.kind == LayerKind::conv3x3 ? 3 : 1};
  const bool relu = l.kind == LayerKind::conv3x3;
  const int version = Conv2d<kCuda>::bf16_default_version;
  const int64_t pixels = int64_t{l.n} * l.h * l.w;
  const int ci = padded_stride(l.c_in, ScalarType::bf16), co = padded_stride(l.c_out, ScalarType::bf16);
  const Stream st = stream();
  switch (pass) {
    case Pass::forward: {
      const bf16* x = input_bf16(kIn0, pixels * ci);
      const bf16* w = input_bf16(kIn1, weight_count(l));
      const float* b = input(kIn2, l.c_out);
      bf16* y = output_bf16(kOut0, pixels * co);
      return {[=] { Conv2d<kCuda>::forward(s, x, ci, w, b, relu, y, co, st, version); },
              {padded_out(y, pixels, l.c_out, co)}, ""};
    }
    case Pass::backward_data: {
      const bf16* dy = input_bf16(kIn0, pixels * co);
      const bf16* y = relu ? input_bf16(kIn1, pixels * co) : nullptr;
      const bf16* w = input_bf16(kIn2, weight_count(l));
      bf16* dx = output_bf16(kOut0, pixels * ci);
      return {[=] { Conv2d<kCuda>::backward_data(s, dy, co, y, co, w, 0.0f, dx, ci, st, version); },
              {padded_out(dx, pixels, l.c_in, ci)}, ""};
    }
    case Pass::backward_weight: {
      const bf16* x = input_bf16(kIn0, pixels * ci);
      const bf16* dy = input_bf16(kIn1, pixels * co);
      const bf16* y = relu ? input_bf16(kIn2, pixels * co) : nullptr;
      float* dw = output(kOut0, weight_count(l));
      float* db = output(kOut1, l.c_out);
      void* work = slot(kWork0, Conv2d<kCuda>::backward_weight_workspace(s, bf16{}, version));
      void* bias_work = slot(kWork1, Conv2d<kCuda>::backward_bias_workspace(s, bf16{}));
      return {[=] {
                Conv2d<kCuda>::backward_weight(s, x, ci, dy, co, y, co, 0.0f, dw, work, st, version);
                Conv2d<kCuda>::backward_bias(s, dy, co, y, co, 0.0f, db, bias_work, st);
              },
              {floats_out(dw, weight_count(l)), floats_out(db, l.c_out)}, ""};
    }
  }
  return {};
}

Prepared ours_up_conv_bf16(const LayerShape& l, Pass pass) {
  const ConvTranspose2dShape s{l.n, l.h, l.w, l.c_in, l.c_out};
  const int version = ConvTranspose2d<kCuda>::tensor_core_version;
  const int64_t in_pixels = int64_t{l.n} * l.h * l.w, out_pixels = 4 * in_pixels;
  const int ci = padded_stride(l.c_in, ScalarType::bf16), co = padded_stride(l.c_out, ScalarType::bf16);
  const Stream st = stream();
  switch (pass) {
    case Pass::forward: {
      const bf16* x = input_bf16(kIn0, in_pixels * ci);
      const bf16* w = input_bf16(kIn1, weight_count(l));
      const float* b = input(kIn2, l.c_out);
      bf16* y = output_bf16(kOut0, out_pixels * co);
      return {[=] { ConvTranspose2d<kCuda>::forward(s, x, ci, w, b, y, co, st, version); },
              {padded_out(y, out_pixels, l.c_out, co)}, ""};
    }
    case Pass::backward_data: {
      const bf16* dy = input_bf16(kIn0, out_pixels * co);
      const bf16* w = input_bf16(kIn1, weight_count(l));
      bf16* dx = output_bf16(kOut0, in_pixels * ci);
      return {[=] { ConvTranspose2d<kCuda>::backward_data(s, dy, co, w, 0.0f, dx, ci, st, version); },
              {padded_out(dx, in_pixels, l.c_in, ci)}, ""};
    }
    case Pass::backward_weight: {
      const bf16* x = input_bf16(kIn0, in_pixels * ci);
      const bf16* dy = input_bf16(kIn1, out_pixels * co);
      float* dw = output(kOut0, weight_count(l));
      float* db = output(kOut1, l.c_out);
      void* work = slot(kWork0, ConvTranspose2d<kCuda>::backward_weight_workspace(s, version));
      void* bias_work = slot(kWork1, ConvTranspose2d<kCuda>::backward_bias_workspace(s));
      return {[=] {
                ConvTranspose2d<kCuda>::backward_weight(s, x, ci, dy, co, 0.0f, dw, work, st, version);
                ConvTranspose2d<kCuda>::backward_bias(s, dy, co, 0.0f, db, bias_work, st);
              },
              {floats_out(dw, weight_count(l)), floats_out(db, l.c_out)}, ""};
    }
  }
  return {};
}

// Every pass of the layer in bf16, as pass `<pass>_bf16`: ours_v3 beside cuDNN in bf16.
void add_convolution_bf16(const LayerShape& l) {
  const bool up = l.kind == LayerKind::up_conv;
  for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weight}) {
    Entry e{kind_name(l.kind), l.name, std::string(pass_name(pass)) + "_bf16", "",
            2.0 * static_cast<double>(l.macs())};
    e.precision = Math::bf16;
    for (Layout layout : {Layout::nhwc, Layout::nchw}) {
      e.impl = std::string("cudnn_") + (layout == Layout::nhwc ? "nhwc" : "nchw") + "_bf16";
      add(phase_of(Math::bf16), e, [=] { return cudnn_conv<bf16>(l, pass, layout, Math::bf16); });
    }
    e.impl = "ours_v" + std::to_string(up ? ConvTranspose2d<kCuda>::tensor_core_version
                                          : Conv2d<kCuda>::bf16_default_version);
    e.versus_mma_peak = true;
    add(phase_of(Math::bf16), e, [=] { return up ? ours_up_conv_bf16(l, pass) : ours_conv_bf16(l, pass); });
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
          {Output{dst, half, Values::unchecked}},
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
                    {floats_out(y, out), Output{argmax, static_cast<size_t>(out), Values::unchecked}}, ""};
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
void add_adam(const UNetConfig& config) {
  const int64_t n = unet_parameters(config);
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
    const auto in_place = [n](float* data) { return Output{data, n * sizeof(float), Values::f32, false}; };
    return Prepared{[=] { Adam<kCuda>::step(n, param, grad, m, v, config, step, st, version); },
                    {in_place(param), in_place(m), in_place(v)},
                    ""};
  });
}

// ---------------------------------------------------------------------------------------------
// The memory-bound ops in bf16 (the precision mode's activations), each beside a copy of its bytes.

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
                    {bf16_out(y, out), Output{argmax, static_cast<size_t>(out), Values::unchecked}}, ""};
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

// The sigmoid of the head's logits (probability outputs; the losses fuse their own): fp32 in and
// out, and bf16 logits in with fp32 probabilities out.
void add_sigmoid(const LayerShape& head) {
  const int64_t pixels = int64_t{head.n} * head.out_h() * head.out_w();
  const int c = head.c_out;
  const int64_t count = pixels * c;
  add_memory_bound("sigmoid", head.name, "forward", Sigmoid<kCuda>::versions, 8 * count, [=](int version) {
    const Stream st = stream();
    const float* x = input(kIn0, count);
    float* y = output(kOut0, count);
    return Prepared{[=] { Sigmoid<kCuda>::forward(pixels, c, x, c, y, c, st, version); }, {floats_out(y, count)}, ""};
  });
  add_memory_bound("sigmoid", head.name, "backward", Sigmoid<kCuda>::versions, 12 * count, [=](int version) {
    const Stream st = stream();
    const float* dy = input(kIn0, count);
    const float* y = input(kIn1, count, 0.0f, 1.0f);  // probabilities
    float* dx = output(kOut0, count);
    return Prepared{[=] { Sigmoid<kCuda>::backward(pixels, c, dy, c, y, c, 0.0f, dx, c, st, version); },
                    {floats_out(dx, count)}, ""};
  });
  add_memory_bound("sigmoid", head.name, "forward_bf16", Sigmoid<kCuda>::bf16_versions, 6 * count, [=](int version) {
    const Stream st = stream();
    const bf16* x = input_bf16(kIn0, count);
    float* y = output(kOut0, count);
    return Prepared{[=] { Sigmoid<kCuda>::forward(pixels, c, x, c, y, c, st, version); }, {floats_out(y, count)}, ""};
  });
}

// Adam with the bf16 weight copy: 28 bytes a parameter and 2 more written.
void add_adam_bf16_copy(const UNetConfig& model) {
  const int64_t n = unet_parameters(model);
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
                    {Output{param, n * sizeof(float), Values::f32, false}, bf16_out(copy, n)}, ""};
  });
}

// ---------------------------------------------------------------------------------------------
// The card's mma.sync throughput (bench/mma_peak.h): 4 blocks of 4 warps on every multiprocessor
// (4 warps a scheduler, 8 independent chains each), 16,384 rounds, about 1 ms of work at the
// datasheet's bf16 peak. Registered first: our tensor-core rows report their share of it.

constexpr int kPeakBlocksPerMultiprocessor = 4;
constexpr int kPeakIterations = 16384;

void add_mma_peaks() {
  using Peak = MmaPeak<kCuda>;
  // Listing needs no GPU: there the FLOP count (never reported) is 0.
  const int blocks = run_state().multiprocessors * kPeakBlocksPerMultiprocessor;
  for (const MmaShape shape : {MmaShape::bf16_m16n8k16, MmaShape::tf32_m16n8k8}) {
    const bool bf16_shape = shape == MmaShape::bf16_m16n8k16;
    Entry e{"mma_sync", "registers", bf16_shape ? "bf16_m16n8k16" : "tf32_m16n8k8", "peak",
            Peak::flop(shape, blocks, kPeakIterations)};
    e.precision = bf16_shape ? Math::bf16 : Math::tf32;
    e.is_mma_peak = true;
    add(kPeaks, e, [=] {
      float* out = output(kOut0, Peak::out_count(blocks));
      const Stream st = stream();
      return Prepared{[=] { Peak::run(shape, blocks, kPeakIterations, 1, out, st); },
                      {floats_out(out, Peak::out_count(blocks))},
                      std::to_string(blocks) + " blocks of " + std::to_string(32 * Peak::kWarps) + " threads, " +
                          std::to_string(Peak::kChains) + " chains a warp"};
    });
  }
}

void register_all(const ModelShape& shape) {
  add_mma_peaks();
  const std::vector<LayerShape> layers = unet_layers(shape.config, shape.batch, shape.image_size, shape.image_size);
  for (const LayerShape& l : layers) {
    switch (l.kind) {
      case LayerKind::conv3x3:
        add_relu(l);
        add_relu_bf16(l);
        add_convolution(l);
        add_convolution_bf16(l);
        break;
      case LayerKind::conv1x1:
        add_loss(l);
        add_loss_bf16(l);
        add_sigmoid(l);
        add_convolution(l);
        add_convolution_bf16(l);
        break;
      case LayerKind::up_conv:
        add_concat(l);
        add_concat_bf16(l);
        add_convolution(l);
        add_convolution_bf16(l);
        break;
      case LayerKind::max_pool:
        add_max_pool(l);
        add_max_pool_bf16(l);
        break;
    }
  }
  add_adam(shape.config);
  add_adam_bf16_copy(shape.config);
}

// ---------------------------------------------------------------------------------------------
// The machine, for the JSON's context.

std::string version_text(size_t version) {  // cuDNN 9: major*10000 + minor*100 + patch
  return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100);
}

void start_gpu_run(const ModelShape& shape) {
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
  run.multiprocessors = properties.multiProcessorCount;

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
  benchmark::AddCustomContext("model", shape.describe());
  benchmark::AddCustomContext("timing", "median of 3 to 21 repetitions after warm-up, CUDA events, L2 flushed "
                                        "before each by a 256 MiB cudaMemsetAsync");
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

bool register_gpu_rows(const ModelShape& shape, bool listing, std::string* why) {
  if (!listing) {
    if (!gpu_present(why)) return false;
    start_gpu_run(shape);
  }
  register_all(shape);
  return true;
}

}  // namespace unet::bench