// Communicator: the ranks of a data-parallel job (docs/distributed.md), and the few collectives
// training needs: sums of device buffers (the flat gradient buffer, the loss's batch sums) and of
// host values (metrics, agreement), each waiting at most a timeout.
//
// A launcher (mpirun, srun) starts R processes; each is a rank. MPI is initialised only then
// (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the environment); otherwise the world is one
// rank, every collective is the identity, and MPI is never touched. How a device buffer is summed:
//
//   cpu    MPI_Iallreduce on the buffer (host memory), at once;
//   sim    the same, as a host node on the stream, so it is ordered with the kernels and captured
//          in a graph with them (sim graphs replay host work in order);
//   cuda   ncclAllReduce, NCCL loaded at run time (dlopen), on the communicator's own stream,
//          ordered after and before the caller's stream by events (capturable: NCCL allows its
//          calls inside a CUDA graph). wait() polls the stream and ncclCommGetAsyncError against
//          the clock and aborts the NCCL communicator on timeout.
//
// Sums, never averages: MPI_SUM and ncclSum. With R = 2 the sum a + b is the same bits on both
// ranks; for larger R this relies on MPI and NCCL giving every rank the same result, which their
// algorithms (ring, recursive doubling, tree with broadcast) do.
//
// Timeouts: a collective that has not finished after timeout() seconds throws unet::Error naming
// the collective and the step; the process must then exit without MPI_Finalize (which would wait
// for the lost rank), and the launcher ends the others. finalize() knows this.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/device.h"

namespace unet {

class NcclLink;

class Communicator {
 public:
  // The job this process is a rank of, initialised on first use.
  static Communicator& world();
  // A job of one rank, without a launcher or MPI, whose device collectives still run through the
  // device's library: on cuda a one-rank NCCL communicator (ncclGetUniqueId, ncclCommInitRank with
  // one rank), so that a machine with one GPU and no MPI exercises the NCCL path for real
  // (tools/gpu_check.sh). Host sums and cpu and sim collectives over one rank are the identity.
  static std::unique_ptr<Communicator> alone();
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  bool launched() const { return launched_; }  // started by a launcher (even with R = 1), or alone()
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // among the ranks on this machine: its GPU

  double timeout() const { return timeout_seconds_; }
  void set_timeout(double seconds) { timeout_seconds_ = seconds; }
  // The training step, named in timeout messages.
  void set_step(int64_t step) { step_ = step; }

  // Sums `count` values of `device` memory in place across the ranks, ordered on `stream`.
  void all_reduce(Device& device, float* buffer, int64_t count, Stream stream, const char* what);
  void all_reduce(Device& device, double* buffer, int64_t count, Stream stream, const char* what);
  // Waits for `stream` (Device::synchronize), but on cuda with NCCL at most timeout() seconds.
  void wait(Device& device, Stream stream, const char* what);
  // Sums host values across the ranks, now.
  void all_reduce_host(double* values, int count, const char* what);

  // Seconds this rank has spent inside MPI collectives (waiting for the others included): the share
  // of the step that data parallelism costs on cpu and sim, for the run's log. (On cuda the NCCL
  // calls overlap the step's stream; the host sees only the whole step.)
  double collective_seconds() const { return collective_seconds_; }

  // MPI_Finalize, unless a collective timed out; called once, at exit.
  void finalize();

  // "Open MPI v4.1.4" or "none (...)"; the NCCL library dlopen finds, or why none.
  static std::string mpi_version();
  static std::string nccl_version();

 private:
  explicit Communicator(bool started_alone);
  void reduce_device(Device& device, void* buffer, int64_t count, bool is_double, Stream stream, const char* what);
  void mpi_all_reduce(void* buffer, int64_t count, bool is_double, const char* what);
  NcclLink& nccl(Device& device);  // connected on first use (cuda builds with NCCL)
  [[noreturn]] void timed_out(const char* what);

  bool launched_ = false;
  bool mpi_ = false;  // MPI_Init was called (launched by a launcher, not alone())
  bool broken_ = false;  // a collective timed out: its request is still pending
  bool finalized_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  double timeout_seconds_ = 300;
  int64_t step_ = 0;
  double collective_seconds_ = 0;
  std::unique_ptr<NcclLink> nccl_;
};

}  // namespace unet
