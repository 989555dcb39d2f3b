#include "engine/optimizer.h"

#include "kernels/clock.h"

namespace unet {

TrainingClock::TrainingClock(Device& device) : device_(device) {
  step_ = static_cast<int64_t*>(device_.allocate(sizeof(int64_t)));
  set(0);
}

TrainingClock::~TrainingClock() { device_.release(step_); }

void TrainingClock::advance(Stream stream) {
  switch (device_.kind()) {
    case DeviceKind::cpu: ++*step_; return;
    case DeviceKind::sim: Clock<DeviceKind::sim>::advance(step_, stream); return;
    case DeviceKind::cuda:
#if UNET_WITH_CUDA
      Clock<DeviceKind::cuda>::advance(step_, stream);
#endif
      return;
  }
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
  switch (parameters.device().kind()) {
    case DeviceKind::cpu: cpu::adam_step<float>(n, param, grad, m, v, config, *clock.step(), non_finite); return;
    case DeviceKind::sim:
      Adam<DeviceKind::sim>::step(n, param, grad, m, v, config, clock.step(), stream, 0, non_finite);
      return;
    case DeviceKind::cuda:
#if UNET_WITH_CUDA
      Adam<DeviceKind::cuda>::step(n, param, grad, m, v, config, clock.step(), stream, 0, non_finite);
#endif
      return;
  }
}

}  // namespace unet
