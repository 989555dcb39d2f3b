// Tensor's scalar types (engine/tensor.h), the arena's bf16 layout (engine/autograd.h scratch) and
// the precision names (engine/precision.h).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "engine/autograd.h"
#include "engine/precision.h"

namespace unet {
namespace {

TEST_CASE("precisions parse, name themselves, and default to bf16 on cuda only") {
  for (Precision p : {Precision::fp32, Precision::tf32, Precision::bf16}) {
    CHECK(parse_precision(precision_name(p)) == p);
  }
  CHECK_THROWS_WITH(parse_precision("fp16"), "precision: 'fp16' is not one of fp32, tf32, bf16");
  CHECK(default_precision(DeviceKind::cpu) == Precision::fp32);
  CHECK(default_precision(DeviceKind::sim) == Precision::fp32);
  CHECK(default_precision(DeviceKind::cuda) == Precision::bf16);
}

TEST_CASE("a tensor's data is only handed out as its own type") {
  Device& cpu = device(DeviceKind::cpu);
  Context ctx(cpu, {}, Precision::bf16);
  const Tensor half = ctx.scratch({1, 2, 2, 3}, ScalarType::bf16);
  CHECK(half.scalar_type() == ScalarType::bf16);
  CHECK_NOTHROW(half.data<bf16>());
  CHECK_THROWS_WITH(half.data(), "tensor: f32 data asked of a bf16 tensor (1, 2, 2, 3)");
  const Tensor single = ctx.scratch({1, 2, 2, 3});
  CHECK_THROWS_WITH(single.data<bf16>(), "tensor: bf16 data asked of a f32 tensor (1, 2, 2, 3)");
}

TEST_CASE("bf16 arena tensors have a 16-byte base and a pixel stride of a multiple of 8, or are one dense channel") {
  Device& cpu = device(DeviceKind::cpu);
  Context ctx(cpu, {}, Precision::bf16);
  CHECK(ctx.scratch({2, 3, 5, 1}, ScalarType::bf16).pixel_stride() == 1);
  for (int channels : {2, 3, 8, 9, 64}) {
    const Tensor t = ctx.scratch({2, 3, 5, channels}, ScalarType::bf16);
    CHECK(t.pixel_stride() % 8 == 0);
    CHECK(t.pixel_stride() >= channels);
    CHECK(t.pixel_stride() < channels + 8);
    CHECK(reinterpret_cast<uintptr_t>(t.bytes()) % 16 == 0);
  }
  CHECK(ctx.activation({1, 4, 4, 3}).value().scalar_type() == ScalarType::bf16);
  Context fp32(cpu, {});
  const Tensor f = fp32.activation({1, 4, 4, 3}).value();
  CHECK(f.scalar_type() == ScalarType::f32);
  CHECK(f.pixel_stride() == 3);
}

TEST_CASE("bf16 host copies round to nearest even on the way in and widen on the way out") {
  Device& cpu = device(DeviceKind::cpu);
  Context ctx(cpu, {}, Precision::bf16);
  const Tensor t = ctx.scratch({1, 1, 2, 3}, ScalarType::bf16);
  // 1 + 2^-8 is halfway between the bf16 neighbours 1 and 1 + 2^-7: ties to even give 1.
  t.from_host({1.0f, 1.0f + 0x1p-8f, 1.0f + 0x1p-7f, -2.5f, 1.0f + 0x1p-9f, NAN});
  const std::vector<float> out = t.to_host();
  REQUIRE(out.size() == 6);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == 1.0f);
  CHECK(out[2] == 1.0f + 0x1p-7f);
  CHECK(out[3] == -2.5f);
  CHECK(out[4] == 1.0f);
  CHECK(std::isnan(out[5]));
  // A channel slice is a view at the element offset, counted in the type's bytes.
  const Tensor slice = t.channels(1, 2);
  CHECK(static_cast<char*>(slice.bytes()) - static_cast<char*>(t.bytes()) == 2);
  const std::vector<float> sliced = slice.to_host();
  REQUIRE(sliced.size() == 4);
  CHECK(sliced[0] == out[1]);
  CHECK(sliced[1] == out[2]);
  CHECK(sliced[2] == out[4]);
  CHECK(std::isnan(sliced[3]));
  slice.from_host({7.0f, 8.0f, 9.0f, 10.0f});  // the other channel keeps its value
  CHECK(t.to_host() == std::vector<float>{1.0f, 7.0f, 8.0f, -2.5f, 9.0f, 10.0f});
}

}  // namespace
}  // namespace unet
