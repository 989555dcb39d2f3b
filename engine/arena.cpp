#include "engine/arena.h"

#include <cstdlib>
#include <string>

namespace unet {

namespace {
constexpr size_t alignment = 256;
size_t round_up(size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }
}  // namespace

Arena::Arena(Device& device, Stream stream, size_t initial_bytes) : device_(device), stream_(stream) {
  const char* poison = std::getenv("UNET_POISON_ARENA");
  poison_ = poison != nullptr && std::string(poison) == "1";
  if (initial_bytes > 0) {
    capacity_ = round_up(initial_bytes);
    block_ = static_cast<char*>(device_.allocate(capacity_));
  }
}

Arena::~Arena() {
  for (void* pointer : overflow_) device_.release(pointer);
  device_.release(block_);
}

void* Arena::allocate(size_t bytes) {
  bytes = round_up(bytes == 0 ? 1 : bytes);
  void* pointer;
  if (used_ + bytes <= capacity_) {
    pointer = block_ + used_;
  } else {
    pointer = device_.allocate(bytes);
    overflow_.push_back(pointer);
  }
  if (poison_) device_.fill_bytes(pointer, 0xff, bytes, stream_);
  used_ += bytes;
  if (used_ > high_water_) high_water_ = used_;
  return pointer;
}

void Arena::reset() {
  if (!overflow_.empty()) {
    // Some of the last step came from extra allocations: replace everything with one block big
    // enough for the whole step. Nothing may still be using the memory (the caller synchronised).
    device_.synchronize();
    for (void* pointer : overflow_) device_.release(pointer);
    overflow_.clear();
    device_.release(block_);
    capacity_ = high_water_;
    block_ = static_cast<char*>(device_.allocate(capacity_));
  }
  used_ = 0;
}

}  // namespace unet
