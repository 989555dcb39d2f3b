// The baselines: cuDNN and cuBLAS, loaded at run time.
//
// The benchmark binary is built here and run on a GPU machine whose cuDNN and cuBLAS come from
// PyTorch's wheels (or the toolkit), in whatever versions those carry; where neither is found the
// baselines are skipped, visibly, and our kernels are still measured. So nothing is linked: the
// functions are looked up with dlsym and typed from the headers (decltype(&cudnnCreate)), which
// keeps every call checked by the compiler against the API it was written for.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

namespace unet::bench {

#define UNET_CUDNN_FUNCTIONS(X)                                                                     \
  X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream)       \
  X(cudnnCreateTensorDescriptor) X(cudnnSetTensor4dDescriptor) X(cudnnDestroyTensorDescriptor)     \
  X(cudnnCreateFilterDescriptor) X(cudnnSetFilter4dDescriptor) X(cudnnDestroyFilterDescriptor)     \
  X(cudnnCreateConvolutionDescriptor) X(cudnnSetConvolution2dDescriptor)                           \
  X(cudnnSetConvolutionMathType) X(cudnnDestroyConvolutionDescriptor)                              \
  X(cudnnCreateActivationDescriptor) X(cudnnSetActivationDescriptor)                               \
  X(cudnnDestroyActivationDescriptor) X(cudnnFindConvolutionForwardAlgorithmEx)                    \
  X(cudnnFindConvolutionBackwardDataAlgorithmEx) X(cudnnFindConvolutionBackwardFilterAlgorithmEx)  \
  X(cudnnConvolutionForward) X(cudnnConvolutionBiasActivationForward)                              \
  X(cudnnConvolutionBackwardData) X(cudnnConvolutionBackwardFilter) X(cudnnConvolutionBackwardBias) \
  X(cudnnAddTensor) X(cudnnActivationForward)

#define UNET_CUBLAS_FUNCTIONS(X)                                                                  \
  X(cublasCreate_v2) X(cublasDestroy_v2) X(cublasSetStream_v2) X(cublasSetMathMode)              \
  X(cublasSgemm_v2) X(cublasGetVersion_v2) X(cublasGetStatusString)

#define UNET_DECLARE_FUNCTION(name) decltype(&::name) name = nullptr;

struct Cudnn {
  UNET_CUDNN_FUNCTIONS(UNET_DECLARE_FUNCTION)
  std::string path;     // the file dlopen found
  cudnnHandle_t handle = nullptr;
};

struct Cublas {
  UNET_CUBLAS_FUNCTIONS(UNET_DECLARE_FUNCTION)
  std::string path;
  cublasHandle_t handle = nullptr;
  int version = 0;
};

#undef UNET_DECLARE_FUNCTION

// The library with a handle on `stream`, loaded on first use; nullptr where it cannot be loaded or
// started, with the reason in `why` ("cuDNN not found: libcudnn.so.9: cannot open ...").
Cudnn* cudnn(cudaStream_t stream, std::string* why);
Cublas* cublas(cudaStream_t stream, std::string* why);

// Throw unet::Error naming the call and the library's message.
void check(const Cudnn& api, cudnnStatus_t status, const char* call);
void check(const Cublas& api, cublasStatus_t status, const char* call);

}  // namespace unet::bench
