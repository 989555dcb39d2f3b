// The library side of each comparison: one pass of a convolution as cuDNN computes it with the
// algorithm its search finds fastest, and a GEMM as cuBLAS computes it.
#pragma once

#include <string>

#include "bench/gemm.h"
#include "bench/libraries.h"
#include "bench/timing.h"

namespace unet::bench {

enum class Layout { nhwc, nchw };

// A convolution in cuDNN's terms, input -> output through a filter (K, C, R, S):
//   the model's k x k conv: input (N, Cin, H, W), filter (Cout, Cin, k, k), pad k/2, stride 1;
//   the up-conv, the data gradient of a 2x2 stride-2 conv: that conv's input is the up-conv's
//   output (N, Cout, 2H, 2W), its filter (Cin, Cout, 2, 2), pad 0, stride 2, its output (N, Cin, H, W).
struct ConvGeometry {
  int n;
  int in_c, in_h, in_w;
  int out_c, out_h, out_w;
  int r, s;
  int pad, stride;
};

// What one timed cuDNN run computes (conv roles as in ConvGeometry):
//   forward          output = conv(input, filter) [+ bias, ReLU]
//   backward_data    input = conv^T(output, filter) [+ bias over the input's channels]
//   backward_filter  filter = gradient from (input, output) [+ bias gradient of bias_tensor]
enum class CudnnOp { forward, backward_data, backward_filter };
enum class BiasOn { none, input, output };

// The buffers hold fp32 values, or bf16 ones for Math::bf16 (the bias and its gradient too: cuDNN's
// legacy API takes them in the tensors' type).
struct CudnnJob {
  CudnnOp op;
  void* input;
  void* output;
  void* filter;
  void* bias;          // bias, or its gradient for backward_filter; nullptr for none
  BiasOn bias_on;      // whose channels the bias has
  bool relu = false;   // forward only: fused bias + ReLU, as the model's 3x3 convs
};

class CudnnPass {
 public:
  // Searches for the fastest algorithm (cudnnFind*AlgorithmEx) on the job's own buffers, with up
  // to workspace_bytes of `workspace`; throws unet::Error if no algorithm suits. Math::fp32: FMA
  // kernels only; tf32: fp32 tensors, tensor-op math allowed; bf16: bf16 tensors and filter, fp32
  // compute type (accumulation), tensor-op math allowed.
  CudnnPass(Cudnn& api, const ConvGeometry& geometry, Layout layout, Math math, const CudnnJob& job,
            void* workspace, size_t workspace_bytes);
  ~CudnnPass();
  CudnnPass(const CudnnPass&) = delete;
  CudnnPass& operator=(const CudnnPass&) = delete;

  void run();
  const std::string& label() const { return label_; }  // "algo=IMPLICIT_PRECOMP_GEMM math=FMA ..."

 private:
  void find_forward();
  void find_backward_data();
  void find_backward_filter();
  cudnnStatus_t fused_forward(int algo);
  void run_forward();

  Cudnn& api_;
  CudnnJob job_;
  Math math_;
  void* workspace_;
  size_t workspace_bytes_;
  cudnnTensorDescriptor_t input_ = nullptr, output_ = nullptr, bias_ = nullptr;
  cudnnFilterDescriptor_t filter_ = nullptr;
  cudnnConvolutionDescriptor_t convolution_ = nullptr;
  cudnnActivationDescriptor_t activation_ = nullptr;
  int algo_ = 0;
  bool fused_ = false;
  std::string label_;
};

// One GEMM of gemm.h on cuBLAS (SGEMM; TF32 tensor cores allowed for Math::tf32).
class CublasGemm {
 public:
  // operands[static_cast<int>(Operand::x)] is x's pointer, and so on.
  CublasGemm(Cublas& api, const RowMajorGemm& gemm, Math math, float* const operands[6]);
  void run();
  std::string label() const;

 private:
  Cublas& api_;
  ColumnMajorGemm gemm_;
  Math math_;
  const float* a_;
  const float* b_;
  float* c_;
};

}  // namespace unet::bench
