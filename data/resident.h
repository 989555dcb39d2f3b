// The dataset resident on a device: the uint8 slices and masks (and the z-score table) uploaded
// once, and batches built there by the augmentation kernel (kernels/augment.h), or by its CPU
// reference on the cpu device. No image crosses from the host after the upload: a training step
// moves nothing but what the kernel reads from device memory (the clock and the epoch's order).
#pragma once

#include <cstdint>
#include <vector>

#include "data/dataset.h"
#include "engine/device.h"
#include "kernels/augment.h"

namespace unet {

class ResidentDataset {
 public:
  // `zscore`: normalise each channel by its volume's mean and deviation (volume_zscore).
  ResidentDataset(Device& device, const Dataset& data, bool zscore);
  ~ResidentDataset();
  ResidentDataset(const ResidentDataset&) = delete;
  ResidentDataset& operator=(const ResidentDataset&) = delete;

  Device& device() const { return device_; }
  const SliceData& slices() const { return view_; }
  size_t device_bytes() const;

  // Copies an epoch's order (EpochSampler::order) into the device buffer that training batches
  // read, once the work queued on `stream` (the last step's batch) is done. A host copy: call it
  // at each epoch boundary, between steps, never inside a captured graph. Every epoch's order has
  // the same length (the buffer, and a graph's pointer to it, stay).
  void set_order(const std::vector<int32_t>& order, Stream stream = {});

  // Data parallel: each training batch of `batch` samples is samples [first_sample, first_sample +
  // batch) of a global batch of global_batch (kernels/augment.h). Default: the whole batch.
  void set_share(int first_sample, int global_batch);

  // The training batch for the step the clock holds (device memory, 1-based), graph-safe. The
  // BatchTargetBf16 forms write a bf16 image (--precision bf16; the mask stays fp32).
  void train_batch(const int64_t* step, int steps_per_epoch, int batch, const AugmentRanges& ranges, uint64_t seed,
                   const BatchTarget& target, Stream stream = {}, int version = 0) const;
  void train_batch(const int64_t* step, int steps_per_epoch, int batch, const AugmentRanges& ranges, uint64_t seed,
                   const BatchTargetBf16& target, Stream stream = {}, int version = 0) const;
  // An evaluation batch of the given slices, unaugmented (uploads the ids: not for capture).
  void eval_batch(const std::vector<int32_t>& slices, const BatchTarget& target, Stream stream = {}, int version = 0);
  void eval_batch(const std::vector<int32_t>& slices, const BatchTargetBf16& target, Stream stream = {},
                  int version = 0);

 private:
  BatchSource training_source(const int64_t* step, int steps_per_epoch, int batch, const AugmentRanges& ranges,
                              uint64_t seed) const;
  BatchSource evaluation_source(const std::vector<int32_t>& slices);
  template <class Target>
  void build(const BatchSource& source, int batch, const Target& target, Stream stream, int version) const;
  template <class T>
  T* upload(const std::vector<T>& host);

  Device& device_;
  SliceData view_{};
  std::vector<void*> owned_;
  int32_t* order_ = nullptr;
  size_t order_length_ = 0;
  int32_t* eval_ids_ = nullptr;
  int first_sample_ = 0, global_batch_ = 0;
  size_t eval_capacity_ = 0;
};

}  // namespace unet
