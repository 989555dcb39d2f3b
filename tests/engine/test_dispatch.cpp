// dispatch() (engine/dispatch.h): the launcher runs for the device asked for, and a cuda request
// in a build without CUDA is the same error that unet::device() gives.
#include <catch2/catch.hpp>

#include <string>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace unet {
namespace {

TEST_CASE("dispatch runs the launcher for the device asked for") {
  for (const DeviceKind kind : {DeviceKind::cpu, DeviceKind::sim}) {
    DeviceKind ran = kind == DeviceKind::cpu ? DeviceKind::sim : DeviceKind::cpu;
    dispatch(kind, [&]<DeviceKind D>() { ran = D; });
    CHECK(ran == kind);
  }
}

TEST_CASE("in a build without CUDA, a cuda request is one error, the same as device() gives") {
  if (built_with_cuda()) return;  // there, device() refuses a missing GPU before anything dispatches
  std::string from_device, from_dispatch;
  try {
    device(DeviceKind::cuda);
  } catch (const Error& e) {
    from_device = e.what();
  }
  bool ran = false;
  try {
    dispatch(DeviceKind::cuda, [&]<DeviceKind>() { ran = true; });
  } catch (const Error& e) {
    from_dispatch = e.what();
  }
  CHECK_FALSE(ran);
  CHECK(from_dispatch.rfind("the cuda device is not available: ", 0) == 0);
  CHECK(from_dispatch == from_device);
}

}  // namespace
}  // namespace unet
