// The cuda side of kernels/dialect.h's launch(): error checks that need only the runtime API, so
// this file is compiled by the host compiler.
#include <cstdlib>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/backend.h"

namespace unet::cuda {

void check_launch(const char* kernel_name, Stream stream) {
  const cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess) {
    throw CudaError("launch of kernel '" + std::string(kernel_name) + "' failed: " + cudaGetErrorString(launched));
  }
  static const bool synchronise_each_launch = [] {
    const char* value = std::getenv("UNET_SYNC_LAUNCHES");
    return value != nullptr && std::string(value) == "1";
  }();
  if (!synchronise_each_launch) return;
  const auto cuda_stream = static_cast<cudaStream_t>(stream.handle);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(cuda_stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return;  // waiting is not allowed while capturing
  const cudaError_t finished = cudaStreamSynchronize(cuda_stream);
  if (finished != cudaSuccess) {
    throw CudaError("kernel '" + std::string(kernel_name) + "' failed: " + cudaGetErrorString(finished));
  }
}

void set_dynamic_shared_limit(const void* kernel, const char* name, size_t bytes) {
  const cudaError_t status =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (status != cudaSuccess) {
    throw CudaError("kernel '" + std::string(name) + "': cannot allow " + std::to_string(bytes) +
                    " bytes of dynamic shared memory: " + cudaGetErrorString(status));
  }
}

}  // namespace unet::cuda
