#include "engine/comm.h"

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "kernels/sim/runtime.h"

#if UNET_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only, so nothing needs the C++ bindings' library
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif
#if UNET_WITH_NCCL
#include "engine/nccl_link.h"
#else
namespace unet {
class NcclLink {};  // no NCCL in this build (no cuda device, or no nccl.h), so never made
}  // namespace unet
#endif

namespace unet {

namespace {

bool started_by_launcher() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(variable) != nullptr) return true;
  }
  return false;
}

#if UNET_WITH_MPI
void check_mpi(int code, const std::string& what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error("MPI: " + what + ": " + std::string(text, length));
}
#endif

}  // namespace

Communicator& Communicator::world() {
  static Communicator world(false);
  return world;
}

std::unique_ptr<Communicator> Communicator::alone() { return std::unique_ptr<Communicator>(new Communicator(true)); }

Communicator::Communicator(bool started_alone) {
  if (started_alone) {
    launched_ = true;
    return;
  }
  if (!started_by_launcher()) return;
#if UNET_WITH_MPI
  int provided = 0;
  // Funneled: only the main thread calls MPI (the OpenMP threads of the cpu kernels never do).
  check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  launched_ = true;
  mpi_ = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  MPI_Comm node;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  check_mpi(MPI_Comm_rank(node, &local_rank_), "MPI_Comm_rank");
  MPI_Comm_free(&node);
#else
  throw Error("started by an MPI launcher, but this build of unet has no MPI (install libopenmpi-dev and rebuild)");
#endif
}

Communicator::~Communicator() { finalize(); }

void Communicator::finalize() {
  if (!launched_ || finalized_) return;
  finalized_ = true;
  nccl_.reset();
#if UNET_WITH_MPI
  // After a timeout a request is still pending on a lost rank: MPI_Finalize would wait for it.
  if (mpi_ && !broken_) MPI_Finalize();
#endif
}

void Communicator::timed_out(const char* what) {
  broken_ = true;
  throw Error(std::string(what) + " at step " + std::to_string(step_) + ": no answer from every rank within " +
              std::to_string(static_cast<int>(timeout_seconds_)) +
              " s (--collective-timeout; a rank stopped, hung or was lost)");
}

void Communicator::mpi_all_reduce(void* buffer, int64_t count, bool is_double, const char* what) {
#if UNET_WITH_MPI
  if (!mpi_) return;  // alone(): the sum over one rank
  if (count > INT32_MAX) {
    throw Error(std::string(what) + ": " + std::to_string(count) + " values are more than one MPI call takes");
  }
  MPI_Request request;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, buffer, static_cast<int>(count), is_double ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM,
                           MPI_COMM_WORLD, &request),
            what);
  // Polled against the clock: MPI has no timed wait. Spin for the first milliseconds (a step's
  // collectives usually finish there), then sleep between tests so that a waiting rank leaves
  // its core to the others.
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (done) {
      collective_seconds_ += waited;
      return;
    }
    if (waited > timeout_seconds_) timed_out(what);
    if (waited > 2e-3) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
#else
  (void)buffer, (void)count, (void)is_double, (void)what;
#endif
}

#if UNET_WITH_NCCL
NcclLink& Communicator::nccl(Device& device) {
  if (nccl_ == nullptr) {
    nccl_ = std::make_unique<NcclLink>(device);
    NcclId id{};
    if (rank_ == 0) id = nccl_->unique_id();
#if UNET_WITH_MPI
    if (size_ > 1) check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "broadcast of the NCCL id");
#endif
    nccl_->connect(id, size_, rank_);
  }
  return *nccl_;
}
#endif

void Communicator::reduce_device(Device& device, void* buffer, int64_t count, bool is_double, Stream stream,
                                 const char* what) {
  if (!launched_) return;
  switch (device.kind()) {
    case DeviceKind::cpu: mpi_all_reduce(buffer, count, is_double, what); return;
    case DeviceKind::sim:
      sim::enqueue(stream, [=, this] { mpi_all_reduce(buffer, count, is_double, what); });
      return;
    case DeviceKind::cuda:
#if UNET_WITH_NCCL
      nccl(device).all_reduce(buffer, static_cast<size_t>(count), is_double, stream);
      return;
#else
      throw Error("NCCL: this build has none (no cuda device, or no nccl.h at configure time)");
#endif
  }
}

void Communicator::all_reduce(Device& device, float* buffer, int64_t count, Stream stream, const char* what) {
  reduce_device(device, buffer, count, false, stream, what);
}

void Communicator::all_reduce(Device& device, double* buffer, int64_t count, Stream stream, const char* what) {
  reduce_device(device, buffer, count, true, stream, what);
}

void Communicator::wait(Device& device, Stream stream, const char* what) {
#if UNET_WITH_NCCL
  if (nccl_ != nullptr && device.kind() == DeviceKind::cuda) {
    const auto start = std::chrono::steady_clock::now();
    while (!nccl_->finished(stream)) {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_seconds_) {
        nccl_->abort();
        timed_out(what);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return;
  }
#endif
  (void)what;
  device.synchronize(stream);
}

void Communicator::all_reduce_host(double* values, int count, const char* what) {
  if (launched_) mpi_all_reduce(values, count, true, what);
}

std::string Communicator::mpi_version() {
#if UNET_WITH_MPI
  // One of the few MPI calls allowed before MPI_Init.
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, length);
  const size_t end = version.find_first_of(",\n");
  return version.substr(0, end);
#else
  return "none (this build has no MPI)";
#endif
}

std::string Communicator::nccl_version() {
#if UNET_WITH_NCCL
  return NcclLink::library_version();
#else
  return "none (not built: no cuda device, or no nccl.h at configure time)";
#endif
}

}  // namespace unet
