// The cpu device's kernels allocate nothing in steady state: a second identical call of each
// launcher, with each instruction set, makes no call of operator new (this binary replaces it with
// a counting one). The first call may grow the kernels' per-thread scratch (kernels/gemm_cpu.h).
// What it cannot see: allocations by malloc directly (the OpenMP runtime's own, made once per
// thread team).
#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <functional>
#include <new>
#include <vector>

#include "kernels/adam.h"
#include "kernels/conv2d.h"
#include "kernels/conv_transpose2d.h"
#include "kernels/cpu_kernels.h"
#include "kernels/loss.h"
#include "kernels/max_pool2d.h"
#include "tests/test_util.h"

namespace {

std::atomic<int64_t> allocations{0};

void* counted(std::size_t bytes, std::size_t alignment = alignof(std::max_align_t)) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  bytes = bytes == 0 ? 1 : bytes;
  if (alignment > alignof(std::max_align_t)) bytes = (bytes + alignment - 1) / alignment * alignment;
  return alignment > alignof(std::max_align_t) ? std::aligned_alloc(alignment, bytes) : std::malloc(bytes);
}

void* counted_or_throw(std::size_t bytes, std::size_t alignment = alignof(std::max_align_t)) {
  if (void* p = counted(bytes, alignment)) return p;
  throw std::bad_alloc();
}

}  // namespace

// Every form, so that no allocation escapes to another operator new whose memory free() would not
// own (AddressSanitizer's, in the sanitizer build).
void* operator new(std::size_t bytes) { return counted_or_throw(bytes); }
void* operator new[](std::size_t bytes) { return counted_or_throw(bytes); }
void* operator new(std::size_t bytes, const std::nothrow_t&) noexcept { return counted(bytes); }
void* operator new[](std::size_t bytes, const std::nothrow_t&) noexcept { return counted(bytes); }
void* operator new(std::size_t bytes, std::align_val_t a) { return counted_or_throw(bytes, std::size_t(a)); }
void* operator new[](std::size_t bytes, std::align_val_t a) { return counted_or_throw(bytes, std::size_t(a)); }
void* operator new(std::size_t bytes, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(bytes, std::size_t(a));
}
void* operator new[](std::size_t bytes, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(bytes, std::size_t(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

using namespace unet;
using cpu::fast::CpuKernels;

namespace {

constexpr DeviceKind kCpu = DeviceKind::cpu;

// Operator new calls during the second of two calls of `call`.
int64_t steady_state_allocations(const std::function<void()>& call) {
  call();
  const int64_t before = allocations.load();
  call();
  return allocations.load() - before;
}

void check_no_allocation(const char* what, const std::function<void()>& call) {
  INFO(what);
  CHECK(steady_state_allocations(call) == 0);
}

// Buffers for one conv layer's passes, all inputs random.
struct ConvBuffers {
  explicit ConvBuffers(const Conv2dShape& s)
      : x(test::random_uniform(int64_t{s.n} * s.h * s.w * s.c_in, 1)),
        weight(test::random_uniform(int64_t{s.c_out} * s.k * s.k * s.c_in, 2)),
        bias(test::random_uniform(s.c_out, 3)),
        y(int64_t{s.n} * s.h * s.w * s.c_out),
        dy(test::random_uniform(y.size(), 4)),
        dx(x.size()),
        dweight(weight.size()),
        dbias(bias.size()) {}
  std::vector<float> x, weight, bias, y, dy, dx, dweight, dbias;
};

void check_conv(const Conv2dShape& s, bool relu) {
  INFO("conv2d " << s.c_in << " -> " << s.c_out << ", k " << s.k);
  ConvBuffers b(s);
  const float* mask = relu ? b.y.data() : nullptr;
  check_no_allocation("forward", [&] {
    Conv2d<kCpu>::forward(s, b.x.data(), s.c_in, b.weight.data(), b.bias.data(), relu, b.y.data(), s.c_out, {});
  });
  check_no_allocation("backward_data", [&] {
    Conv2d<kCpu>::backward_data(s, b.dy.data(), s.c_out, mask, s.c_out, b.weight.data(), 0.0f, b.dx.data(), s.c_in, {});
  });
  check_no_allocation("backward_weight", [&] {
    Conv2d<kCpu>::backward_weight(s, b.x.data(), s.c_in, b.dy.data(), s.c_out, mask, s.c_out, 0.0f, b.dweight.data(),
                                  nullptr, {});
  });
  check_no_allocation("backward_bias", [&] {
    Conv2d<kCpu>::backward_bias(s, b.dy.data(), s.c_out, mask, s.c_out, 0.0f, b.dbias.data(), nullptr, {});
  });
}

void check_up(const ConvTranspose2dShape& s) {
  INFO("conv_transpose2d " << s.c_in << " -> " << s.c_out);
  const int64_t p = int64_t{s.n} * s.h * s.w;
  const auto x = test::random_uniform(p * s.c_in, 5), weight = test::random_uniform(int64_t{s.c_in} * 4 * s.c_out, 6);
  const auto bias = test::random_uniform(s.c_out, 7), dy = test::random_uniform(4 * p * s.c_out, 8);
  std::vector<float> y(dy.size()), dx(x.size()), dweight(weight.size()), dbias(bias.size());
  check_no_allocation("forward", [&] {
    ConvTranspose2d<kCpu>::forward(s, x.data(), s.c_in, weight.data(), bias.data(), y.data(), s.c_out, {});
  });
  check_no_allocation("backward_data", [&] {
    ConvTranspose2d<kCpu>::backward_data(s, dy.data(), s.c_out, weight.data(), 0.0f, dx.data(), s.c_in, {});
  });
  check_no_allocation("backward_weight", [&] {
    ConvTranspose2d<kCpu>::backward_weight(s, x.data(), s.c_in, dy.data(), s.c_out, 0.0f, dweight.data(), nullptr, {});
  });
  check_no_allocation("backward_bias", [&] {
    ConvTranspose2d<kCpu>::backward_bias(s, dy.data(), s.c_out, 0.0f, dbias.data(), nullptr, {});
  });
}

}  // namespace

TEST_CASE("cpu kernels: a second identical call of each launcher allocates nothing", "[cpu]") {
  const CpuKernels chosen = cpu::fast::cpu_kernels();
  for (CpuKernels kernels : {CpuKernels::generic, CpuKernels::avx2}) {
    if (!cpu::fast::supported(kernels)) continue;
    INFO("kernels " << cpu::fast::name(kernels));
    cpu::fast::use_cpu_kernels(kernels);
    check_conv(test::conv_shape(2, 20, 18, 3, 16, 3), true);   // the first layer: few input channels
    check_conv(test::conv_shape(2, 20, 18, 32, 40, 3), true);  // a 3x3 layer
    check_conv(test::conv_shape(2, 20, 18, 16, 1, 1), false);  // the head
    check_conv(test::conv_shape(2, 10, 9, 24, 12, 1), false);  // a 1x1 layer of several outputs
    check_up(test::up_shape(2, 10, 9, 32, 16));
  }
  cpu::fast::use_cpu_kernels(chosen);

  const PoolShape pool{2, 20, 18, 16};
  const int64_t pixels = int64_t{pool.n} * pool.h * pool.w, pooled = int64_t{pool.n} * (pool.h / 2) * (pool.w / 2);
  const auto x = test::random_uniform(pixels * pool.c, 9), dy = test::random_uniform(pooled * pool.c, 10);
  std::vector<float> y(dy.size()), dx(x.size());
  std::vector<uint8_t> argmax(dy.size());
  check_no_allocation("max_pool2d forward",
                      [&] { MaxPool2d<kCpu>::forward(pool, x.data(), pool.c, y.data(), pool.c, argmax.data(), {}); });
  check_no_allocation("max_pool2d backward", [&] {
    MaxPool2d<kCpu>::backward(pool, dy.data(), pool.c, argmax.data(), 0.0f, dx.data(), pool.c, {});
  });

  const int n = 3;
  const int64_t per_sample = 5000;
  const auto logits = test::random_uniform(n * per_sample, 11);
  std::vector<float> target(logits.size(), 0.0f), dlogits(logits.size()), loss(loss_values);
  for (size_t i = 0; i < target.size(); i += 7) target[i] = 1.0f;
  std::vector<double> workspace(SegmentationLoss<kCpu>::workspace(n, per_sample) / sizeof(double) + 1);
  LossConfig config;
  config.dice_weight = 1.0f;
  check_no_allocation("loss forward_backward", [&] {
    SegmentationLoss<kCpu>::forward_backward(n, per_sample, logits.data(), target.data(), config, loss.data(),
                                             dlogits.data(), workspace.data(), {});
  });
  check_no_allocation("loss sums and finish", [&] {
    SegmentationLoss<kCpu>::sums(n, per_sample, n, logits.data(), target.data(), config, dlogits.data(),
                                 workspace.data(), {});
    SegmentationLoss<kCpu>::finish(n, per_sample, n, logits.data(), target.data(), config, loss.data(), dlogits.data(),
                                   workspace.data(), {});
  });

  const int64_t parameters = 100003;
  auto param = test::random_uniform(parameters, 12);
  const auto grad = test::random_uniform(parameters, 13);
  std::vector<float> m(parameters, 0.0f), v(parameters, 0.0f);
  const int64_t step = 1;
  int32_t non_finite = 0;
  check_no_allocation("adam", [&] {
    Adam<kCpu>::step(parameters, param.data(), grad.data(), m.data(), v.data(), AdamConfig{}, &step, {}, 0,
                     &non_finite);
  });
}

TEST_CASE("cpu kernels: the allocation count sees an allocation", "[cpu]") {
  // The counting operator new is this binary's: a kernel's std::vector would be counted.
  CHECK(steady_state_allocations([] { std::vector<float> scratch(1000); }) == 1);
}
