// cuDNN convolution passes and cuBLAS GEMMs for the benchmarks (baselines.h).
#include "bench/baselines.h"

#include <vector>

#include "kernels/backend.h"

namespace unet::bench {
namespace {

const char* const kForwardAlgorithms[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT",
                                          "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
const char* const kBackwardDataAlgorithms[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD",
                                               "WINOGRAD_NONFUSED"};
const char* const kBackwardFilterAlgorithms[] = {"ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD",
                                                 "WINOGRAD_NONFUSED", "FFT_TILING"};
const char* const kMathTypes[] = {"DEFAULT", "TENSOR_OP", "TENSOR_OP_ALLOW_CONVERSION", "FMA"};

constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;

// The search's results that the requested precision allows, fastest first (cuDNN sorts them).
// True fp32 accepts only FMA kernels, as PyTorch does with TF32 off.
// If none is allowed, the error lists what the search returned, so one GPU run says why.
template <class Perf>
std::vector<Perf> usable(const Perf* results, int count, Math math) {
  std::vector<Perf> kept;
  std::string seen;
  for (int i = 0; i < count; ++i) {
    seen += " [algo " + std::to_string(results[i].algo) + " status " + std::to_string(results[i].status) + " math " +
            std::to_string(results[i].mathType) + "]";
    if (results[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (math == Math::fp32 && results[i].mathType != CUDNN_FMA_MATH) continue;
    kept.push_back(results[i]);
  }
  if (kept.empty()) throw Error("cuDNN's search found no usable algorithm; it returned" + seen);
  return kept;
}

template <class Perf>
std::string describe(const Perf& perf, const char* const* names) {
  std::string text = std::string("algo=") + names[perf.algo] + " math=" + kMathTypes[perf.mathType] +
                     " workspace=" + std::to_string(perf.memory >> 20) + "MiB";
  if (perf.determinism != CUDNN_DETERMINISTIC) text += " nondeterministic";
  return text;
}

}  // namespace

CudnnPass::CudnnPass(Cudnn& api, const ConvGeometry& g, Layout layout, Math math, const CudnnJob& job,
                     void* workspace, size_t workspace_bytes)
    : api_(api), job_(job), math_(math), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  const cudnnTensorFormat_t format = layout == Layout::nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  const cudnnDataType_t type = math == Math::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  check(api_, api_.cudnnCreateTensorDescriptor(&input_), "cudnnCreateTensorDescriptor");
  check(api_, api_.cudnnSetTensor4dDescriptor(input_, format, type, g.n, g.in_c, g.in_h, g.in_w),
        "cudnnSetTensor4dDescriptor(input)");
  check(api_, api_.cudnnCreateTensorDescriptor(&output_), "cudnnCreateTensorDescriptor");
  check(api_, api_.cudnnSetTensor4dDescriptor(output_, format, type, g.n, g.out_c, g.out_h, g.out_w),
        "cudnnSetTensor4dDescriptor(output)");
  check(api_, api_.cudnnCreateFilterDescriptor(&filter_), "cudnnCreateFilterDescriptor");
  check(api_, api_.cudnnSetFilter4dDescriptor(filter_, type, format, g.out_c, g.in_c, g.r, g.s),
        "cudnnSetFilter4dDescriptor");
  check(api_, api_.cudnnCreateConvolutionDescriptor(&convolution_), "cudnnCreateConvolutionDescriptor");
  check(api_, api_.cudnnSetConvolution2dDescriptor(convolution_, g.pad, g.pad, g.stride, g.stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
        "cudnnSetConvolution2dDescriptor");
  check(api_, api_.cudnnSetConvolutionMathType(convolution_, math == Math::fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH),
        "cudnnSetConvolutionMathType");
  if (job_.bias_on != BiasOn::none) {
    check(api_, api_.cudnnCreateTensorDescriptor(&bias_), "cudnnCreateTensorDescriptor");
    const int channels = job_.bias_on == BiasOn::input ? g.in_c : g.out_c;
    check(api_, api_.cudnnSetTensor4dDescriptor(bias_, CUDNN_TENSOR_NCHW, type, 1, channels, 1, 1),
          "cudnnSetTensor4dDescriptor(bias)");
  }
  if (job_.relu) {
    check(api_, api_.cudnnCreateActivationDescriptor(&activation_), "cudnnCreateActivationDescriptor");
    check(api_, api_.cudnnSetActivationDescriptor(activation_, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0),
          "cudnnSetActivationDescriptor");
  }
  switch (job_.op) {
    case CudnnOp::forward: find_forward(); break;
    case CudnnOp::backward_data: find_backward_data(); break;
    case CudnnOp::backward_filter: find_backward_filter(); break;
  }
}

CudnnPass::~CudnnPass() {
  if (activation_) api_.cudnnDestroyActivationDescriptor(activation_);
  if (bias_) api_.cudnnDestroyTensorDescriptor(bias_);
  if (convolution_) api_.cudnnDestroyConvolutionDescriptor(convolution_);
  if (filter_) api_.cudnnDestroyFilterDescriptor(filter_);
  if (output_) api_.cudnnDestroyTensorDescriptor(output_);
  if (input_) api_.cudnnDestroyTensorDescriptor(input_);
}

void CudnnPass::find_forward() {
  cudnnConvolutionFwdAlgoPerf_t results[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int count = 0;
  check(api_, api_.cudnnFindConvolutionForwardAlgorithmEx(
                  api_.handle, input_, job_.input, filter_, job_.filter, convolution_, output_, job_.output,
                  CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, results, workspace_, workspace_bytes_),
        "cudnnFindConvolutionForwardAlgorithmEx");
  const auto candidates = usable(results, count, math_);
  // The model's convs fuse bias and ReLU: cuDNN's fused call, with the fastest algorithm that
  // supports it, else the fastest algorithm and separate bias and ReLU calls.
  if (job_.relu) {
    for (const auto& perf : candidates) {
      check(api_, api_.cudnnSetConvolutionMathType(convolution_, perf.mathType), "cudnnSetConvolutionMathType");
      if (fused_forward(perf.algo) == CUDNN_STATUS_SUCCESS) {
        algo_ = perf.algo;
        fused_ = true;
        label_ = describe(perf, kForwardAlgorithms) + " fused-bias-relu";
        return;
      }
    }
  }
  const auto& best = candidates.front();
  check(api_, api_.cudnnSetConvolutionMathType(convolution_, best.mathType), "cudnnSetConvolutionMathType");
  algo_ = best.algo;
  label_ = describe(best, kForwardAlgorithms);
  if (job_.bias) label_ += " +AddTensor(bias)";
  if (job_.relu) label_ += " +ActivationForward(relu)";
}

cudnnStatus_t CudnnPass::fused_forward(int algo) {
  return api_.cudnnConvolutionBiasActivationForward(
      api_.handle, &kOne, input_, job_.input, filter_, job_.filter, convolution_,
      static_cast<cudnnConvolutionFwdAlgo_t>(algo), workspace_, workspace_bytes_, &kZero, output_, job_.output, bias_,
      job_.bias, activation_, output_, job_.output);
}

void CudnnPass::find_backward_data() {
  cudnnConvolutionBwdDataAlgoPerf_t results[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int count = 0;
  check(api_, api_.cudnnFindConvolutionBackwardDataAlgorithmEx(
                  api_.handle, filter_, job_.filter, output_, job_.output, convolution_, input_, job_.input,
                  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, results, workspace_, workspace_bytes_),
        "cudnnFindConvolutionBackwardDataAlgorithmEx");
  const auto best = usable(results, count, math_).front();
  check(api_, api_.cudnnSetConvolutionMathType(convolution_, best.mathType), "cudnnSetConvolutionMathType");
  algo_ = best.algo;
  label_ = describe(best, kBackwardDataAlgorithms);
  if (job_.bias) label_ += " +AddTensor(bias)";
}

void CudnnPass::find_backward_filter() {
  cudnnConvolutionBwdFilterAlgoPerf_t results[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  int count = 0;
  check(api_, api_.cudnnFindConvolutionBackwardFilterAlgorithmEx(
                  api_.handle, input_, job_.input, output_, job_.output, convolution_, filter_, job_.filter,
                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, results, workspace_, workspace_bytes_),
        "cudnnFindConvolutionBackwardFilterAlgorithmEx");
  const auto best = usable(results, count, math_).front();
  check(api_, api_.cudnnSetConvolutionMathType(convolution_, best.mathType), "cudnnSetConvolutionMathType");
  algo_ = best.algo;
  label_ = describe(best, kBackwardFilterAlgorithms);
  if (job_.bias) label_ += " +BackwardBias";
}

void CudnnPass::run() {
  switch (job_.op) {
    case CudnnOp::forward: run_forward(); return;
    case CudnnOp::backward_data:
      check(api_, api_.cudnnConvolutionBackwardData(api_.handle, &kOne, filter_, job_.filter, output_, job_.output,
                                                    convolution_, static_cast<cudnnConvolutionBwdDataAlgo_t>(algo_),
                                                    workspace_, workspace_bytes_, &kZero, input_, job_.input),
            "cudnnConvolutionBackwardData");
      if (job_.bias) {
        check(api_, api_.cudnnAddTensor(api_.handle, &kOne, bias_, job_.bias, &kOne, input_, job_.input),
              "cudnnAddTensor");
      }
      return;
    case CudnnOp::backward_filter:
      check(api_, api_.cudnnConvolutionBackwardFilter(
                      api_.handle, &kOne, input_, job_.input, output_, job_.output, convolution_,
                      static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo_), workspace_, workspace_bytes_, &kZero,
                      filter_, job_.filter),
            "cudnnConvolutionBackwardFilter");
      if (job_.bias) {
        const bool on_output = job_.bias_on == BiasOn::output;
        check(api_, api_.cudnnConvolutionBackwardBias(api_.handle, &kOne, on_output ? output_ : input_,
                                                      on_output ? job_.output : job_.input, &kZero, bias_, job_.bias),
              "cudnnConvolutionBackwardBias");
      }
      return;
  }
}

void CudnnPass::run_forward() {
  if (fused_) {
    check(api_, fused_forward(algo_), "cudnnConvolutionBiasActivationForward");
    return;
  }
  check(api_, api_.cudnnConvolutionForward(api_.handle, &kOne, input_, job_.input, filter_, job_.filter, convolution_,
                                           static_cast<cudnnConvolutionFwdAlgo_t>(algo_), workspace_,
                                           workspace_bytes_, &kZero, output_, job_.output),
        "cudnnConvolutionForward");
  if (job_.bias) {
    check(api_, api_.cudnnAddTensor(api_.handle, &kOne, bias_, job_.bias, &kOne, output_, job_.output),
          "cudnnAddTensor");
  }
  if (job_.relu) {
    check(api_, api_.cudnnActivationForward(api_.handle, activation_, &kOne, output_, job_.output, &kZero, output_,
                                            job_.output),
          "cudnnActivationForward");
  }
}

// ---------------------------------------------------------------------------------------------

CublasGemm::CublasGemm(Cublas& api, const RowMajorGemm& gemm, Math math, float* const operands[6])
    : api_(api),
      gemm_(to_column_major(gemm)),
      math_(math),
      a_(operands[static_cast<int>(gemm_.a)]),
      b_(operands[static_cast<int>(gemm_.b)]),
      c_(operands[static_cast<int>(gemm_.c)]) {}

void CublasGemm::run() {
  // The handle is shared by both precisions' benchmarks: set the mode every time.
  check(api_, api_.cublasSetMathMode(api_.handle, math_ == Math::fp32 ? CUBLAS_DEFAULT_MATH : CUBLAS_TF32_TENSOR_OP_MATH),
        "cublasSetMathMode");
  check(api_, api_.cublasSgemm_v2(api_.handle, gemm_.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  gemm_.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, gemm_.m, gemm_.n, gemm_.k, &kOne, a_,
                                  gemm_.lda, b_, gemm_.ldb, &kZero, c_, gemm_.ldc),
        "cublasSgemm");
}

std::string CublasGemm::label() const {
  return std::string("sgemm ") + (gemm_.transpose_a ? "T" : "N") + (gemm_.transpose_b ? "T" : "N") + " m=" +
         std::to_string(gemm_.m) + " n=" + std::to_string(gemm_.n) + " k=" + std::to_string(gemm_.k) +
         (math_ == Math::fp32 ? " math=DEFAULT(fp32)" : " math=TF32_TENSOR_OP");
}

}  // namespace unet::bench
