// Loading cuDNN and cuBLAS at run time (libraries.h).
#include "bench/libraries.h"

#include <dlfcn.h>
#include <link.h>

#include <initializer_list>
#include <memory>

#include "kernels/backend.h"

namespace unet::bench {
namespace {

// The first of `names` that dlopen finds, and its path; nullptr with every failure in `why`.
void* open_first(std::initializer_list<const char*> names, std::string* path, std::string* why) {
  std::string failures;
  for (const char* name : names) {
    if (void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
      link_map* map = nullptr;
      *path = dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr ? map->l_name : name;
      return handle;
    }
    const char* error = dlerror();
    failures += (failures.empty() ? "" : "; ") + std::string(error != nullptr ? error : name);
  }
  *why = failures;
  return nullptr;
}

template <class Function>
bool find(void* library, const char* name, Function& function, std::string* missing) {
  function = reinterpret_cast<Function>(dlsym(library, name));
  if (function == nullptr) *missing += (missing->empty() ? "" : ", ") + std::string(name);
  return function != nullptr;
}

std::unique_ptr<Cudnn> load_cudnn(cudaStream_t stream, std::string* why) {
  auto api = std::make_unique<Cudnn>();
  void* library = open_first({"libcudnn.so.9", "libcudnn.so"}, &api->path, why);
  if (library == nullptr) {
    *why = "cuDNN not found: " + *why;
    return nullptr;
  }
  std::string missing;
#define UNET_FIND(name) find(library, #name, api->name, &missing);
  UNET_CUDNN_FUNCTIONS(UNET_FIND)
#undef UNET_FIND
  if (!missing.empty()) {
    *why = "cuDNN at " + api->path + " lacks " + missing;
    return nullptr;
  }
  const cudnnStatus_t status = api->cudnnCreate(&api->handle);
  if (status != CUDNN_STATUS_SUCCESS) {
    *why = "cuDNN at " + api->path + " does not start: " + api->cudnnGetErrorString(status);
    return nullptr;
  }
  check(*api, api->cudnnSetStream(api->handle, stream), "cudnnSetStream");
  return api;
}

std::unique_ptr<Cublas> load_cublas(cudaStream_t stream, std::string* why) {
  auto api = std::make_unique<Cublas>();
  void* library = open_first({"libcublas.so.13", "libcublas.so.12", "libcublas.so"}, &api->path, why);
  if (library == nullptr) {
    *why = "cuBLAS not found: " + *why;
    return nullptr;
  }
  std::string missing;
#define UNET_FIND(name) find(library, #name, api->name, &missing);
  UNET_CUBLAS_FUNCTIONS(UNET_FIND)
#undef UNET_FIND
  if (!missing.empty()) {
    *why = "cuBLAS at " + api->path + " lacks " + missing;
    return nullptr;
  }
  const cublasStatus_t status = api->cublasCreate_v2(&api->handle);
  if (status != CUBLAS_STATUS_SUCCESS) {
    *why = "cuBLAS at " + api->path + " does not start: " + api->cublasGetStatusString(status);
    return nullptr;
  }
  check(*api, api->cublasSetStream_v2(api->handle, stream), "cublasSetStream");
  check(*api, api->cublasGetVersion_v2(api->handle, &api->version), "cublasGetVersion");
  return api;
}

// Loaded once per process; a failure is remembered, so every baseline reports the same reason.
template <class Api>
struct Loaded {
  bool tried = false;
  std::unique_ptr<Api> api;
  std::string why;
};

}  // namespace

Cudnn* cudnn(cudaStream_t stream, std::string* why) {
  static Loaded<Cudnn> loaded;
  if (!loaded.tried) {
    loaded.tried = true;
    loaded.api = load_cudnn(stream, &loaded.why);
  }
  *why = loaded.why;
  return loaded.api.get();
}

Cublas* cublas(cudaStream_t stream, std::string* why) {
  static Loaded<Cublas> loaded;
  if (!loaded.tried) {
    loaded.tried = true;
    loaded.api = load_cublas(stream, &loaded.why);
  }
  *why = loaded.why;
  return loaded.api.get();
}

void check(const Cudnn& api, cudnnStatus_t status, const char* call) {
  if (status != CUDNN_STATUS_SUCCESS) throw Error(std::string(call) + ": " + api.cudnnGetErrorString(status));
}

void check(const Cublas& api, cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) throw Error(std::string(call) + ": " + api.cublasGetStatusString(status));
}

}  // namespace unet::bench
