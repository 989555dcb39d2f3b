#include "engine/optimizer.h"

#include "engine/dispatch.h"
#include "kernels/clock.h"

namespace unet {

TrainingClock::TrainingClock(Device& device) : device_(device) {
  step_ = static_cast<int64_t*>(device_.allocate(sizeof(int64_t)));
  set(0);
}

TrainingClock::~TrainingClock() { device_.release(step_); }

void TrainingClock::advance(Stream stream) {
  dispatch(device_.kind(), [&]<DeviceKind D>() { Clock<D>::advance(step_, stream); });
}

int64_t TrainingClock::read() const {
  device_.synchronize();
  int64_t value = 0;
  device_.copy_to_host(&value, step_, sizeof value);
  return value;
}

void TrainingClock::set(int64_t step) {
  device_.synchronize();
  device_.copy_to_device(step_, &step, sizeof step);
}

void adam_update(ParameterStore& parameters, const AdamConfig& config, const TrainingClock& clock, Stream stream,
                 int32_t* non_finite) {
  const int64_t n = parameters.count();
  float* const param = parameters.values();
  const float* const grad = parameters.grads();
  float* const m = parameters.first_moments();
  float* const v = parameters.second_moments();
  bf16* const copy = parameters.bf16_values();  // the bf16 kernels' weights, written in the same launch
  dispatch(parameters.device().kind(), [&]<DeviceKind D>() {
    if (copy == nullptr) {
      Adam<D>::step(n, param, grad, m, v, config, clock.step(), stream, 0, non_finite);
    } else {
      Adam<D>::step(n, param, grad, m, v, copy, config, clock.step(), stream, 0, non_finite);
    }
  });
}

}  // namespace unet
