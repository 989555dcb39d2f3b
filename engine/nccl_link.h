// NcclLink: one NCCL communicator over the job's ranks, for the cuda device (engine/comm.h).
// Built only with the cuda device. NCCL is loaded at run time (dlopen of libnccl.so.2), as the
// benchmarks load cuDNN: the toolkit's libnccl is over 200 MB, and the GPU machine has one beside
// PyTorch (the nvidia-nccl wheel). The functions are typed from the toolkit's nccl.h.
//
// Each all-reduce runs on the link's own stream, after the caller's stream's earlier work (an
// event) and before its later work (another event): the fork and join that a CUDA graph capture
// records as dependencies, so the step's graph holds the NCCL call too.
#pragma once

#include <memory>
#include <string>

#include "engine/device.h"

namespace unet {

struct NcclId {
  char bytes[128];  // NCCL_UNIQUE_ID_BYTES
};

class NcclLink {
 public:
  explicit NcclLink(Device& device);  // loads NCCL; throws with the reason where it cannot
  ~NcclLink();
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  // "2.21.5 (/path/libnccl.so.2)", or "none found (...)".
  static std::string library_version();

  NcclId unique_id();  // rank 0 makes it; every rank passes it to connect()
  void connect(const NcclId& id, int size, int rank);

  // Sums `count` floats (or doubles) of device memory in place across the ranks, ordered on `stream`.
  void all_reduce(void* buffer, size_t count, bool is_double, Stream stream);
  // Whether `stream`'s work is done; throws if NCCL reports an asynchronous error.
  bool finished(Stream stream);
  // Ends the communicator without waiting for the other ranks (after a timeout).
  void abort();

  struct Api;  // NCCL's functions, found by dlsym (comm_nccl.cpp)

 private:
  std::unique_ptr<Api> api_;
  void* comm_ = nullptr;    // ncclComm_t
  void* stream_ = nullptr;  // cudaStream_t, the link's own
  void* before_ = nullptr;  // cudaEvent_t: the caller's work before the all-reduce
  void* after_ = nullptr;   // cudaEvent_t: the all-reduce itself
};

// Makes GPU `local_rank` of this machine the current one, before the cuda device is first used:
// one GPU per rank (NCCL refuses two ranks on one GPU).
void select_local_gpu(int local_rank);

}  // namespace unet
