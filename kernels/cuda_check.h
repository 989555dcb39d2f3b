// CUDA_CHECK(expr): runs a CUDA runtime call and throws unet::CudaError, naming the call, the file
// and the line, if it fails. Only for code compiled against the CUDA toolkit.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "kernels/backend.h"

namespace unet {

class CudaError : public Error {
 public:
  using Error::Error;
};

inline void cuda_check(cudaError_t status, const char* expression, const char* file, int line) {
  if (status != cudaSuccess) {
    throw CudaError(std::string(expression) + " failed at " + file + ":" + std::to_string(line) + ": " +
                    cudaGetErrorString(status));
  }
}

}  // namespace unet

#define CUDA_CHECK(expr) ::unet::cuda_check((expr), #expr, __FILE__, __LINE__)
