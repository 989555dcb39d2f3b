// Adam over a whole ParameterStore in one launch, and the training clock it reads.
#pragma once

#include <cstdint>

#include "engine/parameters.h"
#include "kernels/adam.h"

namespace unet {

// The step counter in device memory (kernels/clock.h): advanced once per training step, read by
// every kernel whose behaviour depends on the step.
class TrainingClock {
 public:
  explicit TrainingClock(Device& device);
  ~TrainingClock();
  TrainingClock(const TrainingClock&) = delete;
  TrainingClock& operator=(const TrainingClock&) = delete;

  const int64_t* step() const { return step_; }
  void advance(Stream stream);  // one launch; capturable
  int64_t read() const;         // synchronises
  void set(int64_t step);       // for resuming

 private:
  Device& device_;
  int64_t* step_ = nullptr;
};

// One Adam (or AdamW) step over every parameter of `parameters`, at the clock's step; sets
// *non_finite (device memory) to 1 if a parameter is left NaN or infinite (kernels/adam.h). Under
// bf16 the same launch writes the store's bf16 copy of the updated weights.
void adam_update(ParameterStore& parameters, const AdamConfig& config, const TrainingClock& clock, Stream stream,
                 int32_t* non_finite = nullptr);

}  // namespace unet
