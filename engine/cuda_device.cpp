// The cuda device: the CUDA runtime API behind the Device interface.
#include "engine/cuda_device.h"

#include <dlfcn.h>

#include "kernels/cuda_check.h"

namespace unet {
namespace {

class CudaGraphExec final : public Graph {
 public:
  explicit CudaGraphExec(cudaGraph_t graph) : graph_(graph) {
    CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  ~CudaGraphExec() override {
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }
  void replay(Stream stream) override { CUDA_CHECK(cudaGraphLaunch(exec_, static_cast<cudaStream_t>(stream.handle))); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

cudaStream_t native(Stream stream) { return static_cast<cudaStream_t>(stream.handle); }
cudaEvent_t native(Event event) { return static_cast<cudaEvent_t>(event.handle); }

class CudaDevice final : public Device {
 public:
  CudaDevice() : Device(DeviceKind::cuda) { CUDA_CHECK(cudaGetDevice(&ordinal_)); }

  DeviceInfo info() const override {
    cudaDeviceProp properties{};
    CUDA_CHECK(cudaGetDeviceProperties(&properties, ordinal_));
    return {properties.name, properties.totalGlobalMem, properties.major * 10 + properties.minor,
            properties.multiProcessorCount};
  }

  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
  void copy(void* dst, const void* src, size_t bytes, Stream stream) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, native(stream)));
  }
  void fill_bytes(void* dst, unsigned char value, size_t bytes, Stream stream) override {
    CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, native(stream)));
  }

  // Blocking streams: the synchronous copies (cudaMemcpy on the legacy default stream) then order
  // themselves after, and before, the work on every stream, as the host-side code assumes. (A
  // non-blocking stream would race a pageable host-to-device copy whose DMA is still running.)
  Stream create_stream() override {
    cudaStream_t stream = nullptr;
    CUDA_CHECK(cudaStreamCreate(&stream));
    return {stream};
  }
  void destroy_stream(Stream stream) override { CUDA_CHECK(cudaStreamDestroy(native(stream))); }
  // The default stream means the whole device.
  void synchronize(Stream stream) override {
    if (stream.handle == nullptr) {
      CUDA_CHECK(cudaDeviceSynchronize());
    } else {
      CUDA_CHECK(cudaStreamSynchronize(native(stream)));
    }
  }

  Event create_event() override {
    cudaEvent_t event = nullptr;
    CUDA_CHECK(cudaEventCreate(&event));
    return {event};
  }
  void destroy_event(Event event) override { CUDA_CHECK(cudaEventDestroy(native(event))); }
  void record(Event event, Stream stream) override { CUDA_CHECK(cudaEventRecord(native(event), native(stream))); }
  float elapsed_ms(Event start, Event end) override {
    CUDA_CHECK(cudaEventSynchronize(native(end)));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, native(start), native(end)));
    return ms;
  }

  void begin_capture(Stream stream) override {
    CUDA_CHECK(cudaStreamBeginCapture(native(stream), cudaStreamCaptureModeThreadLocal));
  }
  std::unique_ptr<Graph> end_capture(Stream stream) override {
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(native(stream), &graph));
    return std::make_unique<CudaGraphExec>(graph);
  }

 protected:
  void* raw_allocate(size_t bytes) override {
    void* pointer = nullptr;
    const cudaError_t status = cudaMalloc(&pointer, bytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it, so the next launch does not report it
      throw Error("out of GPU memory allocating " + std::to_string(bytes >> 20) +
                  " MiB; try a smaller --batch or --image-size");
    }
    CUDA_CHECK(status);
    return pointer;
  }
  void raw_release(void* pointer) override { CUDA_CHECK(cudaFree(pointer)); }

 private:
  int ordinal_ = 0;
};

}  // namespace

bool cuda_device_usable(std::string* why) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess && count > 0) return true;
  if (why != nullptr) {
    if (status == cudaErrorInsufficientDriver || status == cudaErrorNoDevice || status == cudaSuccess) {
      *why = "no NVIDIA GPU with a working driver was found";
    } else {
      *why = std::string("the CUDA runtime reports: ") + cudaGetErrorString(status);
    }
  }
  return false;
}

std::unique_ptr<Device> make_cuda_device() { return std::make_unique<CudaDevice>(); }

CudaVersions cuda_versions() {
  CudaVersions versions;
  cudaRuntimeGetVersion(&versions.runtime);
  cudaDriverGetVersion(&versions.driver);
  for (const char* library : {"libcudnn.so.9", "libcudnn.so"}) {
    if (void* handle = dlopen(library, RTLD_LAZY | RTLD_LOCAL)) {
      using GetVersion = size_t (*)();
      if (auto get = reinterpret_cast<GetVersion>(dlsym(handle, "cudnnGetVersion"))) versions.cudnn = get();
      dlclose(handle);
      break;
    }
  }
  return versions;
}

}  // namespace unet
