#include "data/resident.h"

#include <string>

#include "engine/dispatch.h"

namespace unet {

template <class T>
T* ResidentDataset::upload(const std::vector<T>& host) {
  if (host.empty()) return nullptr;
  T* pointer = static_cast<T*>(device_.allocate(host.size() * sizeof(T)));
  owned_.push_back(pointer);
  device_.copy_to_device(pointer, host.data(), host.size() * sizeof(T));
  return pointer;
}

ResidentDataset::ResidentDataset(Device& device, const Dataset& data, bool zscore) : device_(device) {
  try {
    view_.images = upload(data.images);
    view_.masks = upload(data.masks);
    view_.volume = upload(data.volume);
    if (zscore) {
      const ZScoreTable table = volume_zscore(data);
      view_.mean = upload(table.mean);
      view_.stddev = upload(table.stddev);
    }
  } catch (...) {
    for (void* pointer : owned_) device_.release(pointer);
    throw;
  }
  view_.slices = static_cast<int>(data.slices());
  view_.height = data.height;
  view_.width = data.width;
}

ResidentDataset::~ResidentDataset() {
  for (void* pointer : owned_) device_.release(pointer);
  device_.release(order_);
  device_.release(eval_ids_);
}

size_t ResidentDataset::device_bytes() const {
  const size_t pixels = static_cast<size_t>(view_.slices) * view_.height * view_.width;
  return pixels * 4 + static_cast<size_t>(view_.slices) * sizeof(int32_t) + order_length_ * sizeof(int32_t);
}

void ResidentDataset::set_order(const std::vector<int32_t>& order, Stream stream) {
  if (order.empty()) throw Error("epoch order: empty");
  for (const int32_t s : order) {
    if (s < 0 || s >= view_.slices) throw Error("epoch order: slice id " + std::to_string(s) + " out of range");
  }
  if (order_ == nullptr) {
    order_ = static_cast<int32_t*>(device_.allocate(order.size() * sizeof(int32_t)));
    order_length_ = order.size();
  } else if (order.size() != order_length_) {
    throw Error("epoch order: " + std::to_string(order.size()) + " samples, but earlier epochs had " +
                std::to_string(order_length_));
  }
  device_.synchronize(stream);  // the last step may still be reading the previous epoch's order
  device_.copy_to_device(order_, order.data(), order.size() * sizeof(int32_t));
}

void ResidentDataset::set_share(int first_sample, int global_batch) {
  if (first_sample < 0 || global_batch < 1 || first_sample >= global_batch) {
    throw Error("training batch: share from sample " + std::to_string(first_sample) + " of a global batch of " +
                std::to_string(global_batch));
  }
  first_sample_ = first_sample;
  global_batch_ = global_batch;
}

BatchSource ResidentDataset::training_source(const int64_t* step, int steps_per_epoch, int batch,
                                             const AugmentRanges& ranges, uint64_t seed) const {
  if (order_ == nullptr) throw Error("training batch: no epoch order (set_order) yet");
  const int global_batch = global_batch_ > 0 ? global_batch_ : batch;
  if (first_sample_ + batch > global_batch) {
    throw Error("training batch: samples " + std::to_string(first_sample_) + " to " +
                std::to_string(first_sample_ + batch) + " are not in a global batch of " +
                std::to_string(global_batch));
  }
  if (static_cast<size_t>(steps_per_epoch) * global_batch != order_length_) {
    throw Error("training batch: " + std::to_string(steps_per_epoch) + " steps of " + std::to_string(global_batch) +
                " do not match the epoch order's " + std::to_string(order_length_) + " samples");
  }
  return {step, order_, steps_per_epoch, seed, ranges, first_sample_, global_batch};
}

void ResidentDataset::train_batch(const int64_t* step, int steps_per_epoch, int batch, const AugmentRanges& ranges,
                                  uint64_t seed, const BatchTarget& target, Stream stream, int version) const {
  build(training_source(step, steps_per_epoch, batch, ranges, seed), batch, target, stream, version);
}

void ResidentDataset::train_batch(const int64_t* step, int steps_per_epoch, int batch, const AugmentRanges& ranges,
                                  uint64_t seed, const BatchTargetBf16& target, Stream stream, int version) const {
  build(training_source(step, steps_per_epoch, batch, ranges, seed), batch, target, stream, version);
}

BatchSource ResidentDataset::evaluation_source(const std::vector<int32_t>& slices) {
  for (const int32_t s : slices) {
    if (s < 0 || s >= view_.slices) throw Error("evaluation batch: slice id " + std::to_string(s) + " out of range");
  }
  if (slices.size() > eval_capacity_) {
    device_.release(eval_ids_);
    eval_ids_ = static_cast<int32_t*>(device_.allocate(slices.size() * sizeof(int32_t)));
    eval_capacity_ = slices.size();
  }
  device_.copy_to_device(eval_ids_, slices.data(), slices.size() * sizeof(int32_t));
  return {nullptr, eval_ids_, 0, 0, no_augmentation};
}

void ResidentDataset::eval_batch(const std::vector<int32_t>& slices, const BatchTarget& target, Stream stream,
                                 int version) {
  if (slices.empty()) return;
  device_.synchronize(stream);  // an earlier batch may still be reading the old ids
  build(evaluation_source(slices), static_cast<int>(slices.size()), target, stream, version);
}

void ResidentDataset::eval_batch(const std::vector<int32_t>& slices, const BatchTargetBf16& target, Stream stream,
                                 int version) {
  if (slices.empty()) return;
  device_.synchronize(stream);  // an earlier batch may still be reading the old ids
  build(evaluation_source(slices), static_cast<int>(slices.size()), target, stream, version);
}

template <class Target>
void ResidentDataset::build(const BatchSource& source, int batch, const Target& target, Stream stream,
                            int version) const {
  dispatch(device_.kind(),
           [&]<DeviceKind D>() { Augment<D>::build_batch(view_, source, batch, target, stream, version); });
}

}  // namespace unet
