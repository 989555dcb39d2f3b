#include <cuda_runtime.h>
#include <dlfcn.h>
#include <link.h>
#include <nccl.h>

#include <cstring>
#include <string>

#include "engine/nccl_link.h"
#include "kernels/cuda_check.h"

namespace unet {

#define UNET_NCCL_FUNCTIONS(X)                                                                           \
  X(ncclGetVersion) X(ncclGetErrorString) X(ncclGetUniqueId) X(ncclCommInitRank) X(ncclAllReduce)        \
  X(ncclCommGetAsyncError) X(ncclCommAbort) X(ncclCommDestroy)

struct NcclLink::Api {
#define UNET_DECLARE_FUNCTION(name) decltype(&::name) name = nullptr;
  UNET_NCCL_FUNCTIONS(UNET_DECLARE_FUNCTION)
#undef UNET_DECLARE_FUNCTION
  void* library = nullptr;
  std::string path;
};

namespace {

// NCCL's functions from the first library dlopen finds; null with the reason in `why`.
std::unique_ptr<NcclLink::Api> load(std::string* why) {
  auto api = std::make_unique<NcclLink::Api>();
  for (const char* name : {"libnccl.so.2", "libnccl.so"}) {
    api->library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (api->library != nullptr) break;
    const char* error = dlerror();
    *why += (why->empty() ? "" : "; ") + std::string(error != nullptr ? error : name);
  }
  if (api->library == nullptr) return nullptr;
  link_map* map = nullptr;
  api->path = dlinfo(api->library, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr ? map->l_name : "libnccl";
  std::string missing;
#define UNET_FIND(name)                                                                   \
  api->name = reinterpret_cast<decltype(&::name)>(dlsym(api->library, #name));           \
  if (api->name == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(#name);
  UNET_NCCL_FUNCTIONS(UNET_FIND)
#undef UNET_FIND
  if (!missing.empty()) {
    *why = api->path + " lacks " + missing;
    dlclose(api->library);
    return nullptr;
  }
  return api;
}

}  // namespace

NcclLink::NcclLink(Device& device) {
  if (device.kind() != DeviceKind::cuda) throw Error("NCCL: only for the cuda device");
  std::string why;
  api_ = load(&why);
  if (api_ == nullptr) throw Error("NCCL: cannot load libnccl (" + why + "); put it on LD_LIBRARY_PATH");
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_ = stream;
  for (void** event : {&before_, &after_}) {
    cudaEvent_t created = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&created, cudaEventDisableTiming));
    *event = created;
  }
}

NcclLink::~NcclLink() {
  if (comm_ != nullptr) api_->ncclCommDestroy(static_cast<ncclComm_t>(comm_));
  cudaEventDestroy(static_cast<cudaEvent_t>(before_));
  cudaEventDestroy(static_cast<cudaEvent_t>(after_));
  cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  dlclose(api_->library);
}

std::string NcclLink::library_version() {
  std::string why;
  const std::unique_ptr<Api> api = load(&why);
  if (api == nullptr) return "none found (" + why + ")";
  int version = 0;
  api->ncclGetVersion(&version);
  // NCCL_VERSION(X, Y, Z) is X * 10000 + Y * 100 + Z since 2.9.
  const std::string text = std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
                           std::to_string(version % 100) + " (" + api->path + ")";
  dlclose(api->library);
  return text;
}

namespace {

void check(const NcclLink::Api& api, ncclResult_t result, const char* what) {
  if (result != ncclSuccess) throw Error(std::string("NCCL: ") + what + ": " + api.ncclGetErrorString(result));
}

}  // namespace

NcclId NcclLink::unique_id() {
  static_assert(sizeof(NcclId) == sizeof(ncclUniqueId));
  ncclUniqueId id;
  check(*api_, api_->ncclGetUniqueId(&id), "ncclGetUniqueId");
  NcclId ours;
  std::memcpy(ours.bytes, id.internal, sizeof ours.bytes);
  return ours;
}

void NcclLink::connect(const NcclId& id, int size, int rank) {
  ncclUniqueId theirs;
  std::memcpy(theirs.internal, id.bytes, sizeof id.bytes);
  ncclComm_t comm = nullptr;
  check(*api_, api_->ncclCommInitRank(&comm, size, theirs, rank), "ncclCommInitRank");
  comm_ = comm;
}

void NcclLink::all_reduce(void* buffer, size_t count, bool is_double, Stream stream) {
  const auto caller = static_cast<cudaStream_t>(stream.handle);
  const auto own = static_cast<cudaStream_t>(stream_);
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(before_), caller));
  CUDA_CHECK(cudaStreamWaitEvent(own, static_cast<cudaEvent_t>(before_), 0));
  check(*api_,
        api_->ncclAllReduce(buffer, buffer, count, is_double ? ncclFloat64 : ncclFloat32, ncclSum,
                            static_cast<ncclComm_t>(comm_), own),
        "ncclAllReduce");
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(after_), own));
  CUDA_CHECK(cudaStreamWaitEvent(caller, static_cast<cudaEvent_t>(after_), 0));
}

bool NcclLink::finished(Stream stream) {
  const cudaError_t status = cudaStreamQuery(static_cast<cudaStream_t>(stream.handle));
  if (status == cudaSuccess) return true;
  if (status != cudaErrorNotReady) CUDA_CHECK(status);
  ncclResult_t async = ncclSuccess;
  check(*api_, api_->ncclCommGetAsyncError(static_cast<ncclComm_t>(comm_), &async), "ncclCommGetAsyncError");
  if (async != ncclSuccess && async != ncclInProgress) check(*api_, async, "an all-reduce");
  return false;
}

void NcclLink::abort() {
  if (comm_ == nullptr) return;
  api_->ncclCommAbort(static_cast<ncclComm_t>(comm_));
  comm_ = nullptr;
}

void select_local_gpu(int local_rank) {
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  if (local_rank >= count) {
    throw Error("rank " + std::to_string(local_rank) + " on this machine has no GPU of its own (" +
                std::to_string(count) + " found; NCCL needs one GPU per rank)");
  }
  CUDA_CHECK(cudaSetDevice(local_rank));
}

}  // namespace unet
