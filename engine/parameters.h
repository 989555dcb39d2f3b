// ParameterStore: every parameter of a model in one flat device buffer, with its gradients and
// Adam's two moments in three more of the same size.
//
// Flat buffers make the optimizer one launch over all parameters (kernels/adam.h) and a checkpoint
// four contiguous copies. Under Precision::bf16 a fifth buffer holds the values rounded to bf16:
// what the kernels read as weights. Adam writes it in the launch that updates the fp32 values (the
// master copy), and upload() whenever the values are set from the host; it is never saved.
// Each parameter is a view into them, in the kernels' layout: conv weights
// (Cout, k, k, Cin), up-conv weights (Cin, 2, 2, Cout), biases (Cout). Conversion to and from
// PyTorch's layouts happens here, at the file boundary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/precision.h"
#include "engine/safetensors.h"
#include "engine/tensor.h"

namespace unet {

enum class ParameterKind {
  conv_weight,     // ours (Cout, k, k, Cin)     PyTorch Conv2d.weight          [Cout, Cin, k, k]
  up_conv_weight,  // ours (Cin, 2, 2, Cout)     PyTorch ConvTranspose2d.weight [Cin, Cout, 2, 2]
  bias,            // ours (C)                   PyTorch [C]
};

struct ParameterEntry {
  std::string name;  // e.g. encoder.0.conv1.weight
  ParameterKind kind;
  Shape shape;       // ours; biases are Shape{1, 1, 1, C}
  int fan_in;        // as PyTorch computes it for this parameter's module, for initialisation
  int64_t offset;    // in the flat buffers, in floats
};

class ParameterStore {
 public:
  explicit ParameterStore(Device& device, Precision precision = Precision::fp32)
      : device_(device), precision_(precision) {}
  ~ParameterStore();
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  // Declares a parameter; returns its index. All declarations come before allocate().
  int declare(const std::string& name, ParameterKind kind, const Shape& shape, int fan_in);
  // Allocates the four buffers; values, gradients and moments start at zero.
  void allocate();

  Device& device() const { return device_; }
  int64_t count() const { return count_; }
  const std::vector<ParameterEntry>& entries() const { return entries_; }
  Tensor value(int index) const;
  Tensor grad(int index) const;
  // What the kernels read: the bf16 copy of value(index) under bf16, value(index) itself otherwise.
  Tensor kernel_value(int index) const;
  float* values() const { return values_; }
  bf16* bf16_values() const { return bf16_values_; }  // nullptr unless bf16
  // count() gradients, then one spare float that data-parallel training sums with them in the
  // same call: the ranks' stop requests (models/trainer.h).
  float* grads() const { return grads_; }
  float* first_moments() const { return m_; }
  float* second_moments() const { return v_; }

  // PyTorch's default initialisation: weights and biases uniform in +-1/sqrt(fan_in) (what
  // kaiming_uniform_ with a = sqrt(5) gives for the weights), from a counter-based generator keyed
  // by `seed`, so the same seed gives the same model on every machine.
  void initialize(uint64_t seed);

  // Host copies of the flat buffers (ours layouts); uploading values() refreshes the bf16 copy.
  std::vector<float> download(const float* buffer) const;
  void upload(float* buffer, const std::vector<float>& values) const;

  // The parameters (values, or one of the other buffers) as PyTorch-layout F32 tensors named
  // `prefix + name`; and back, checking that every expected tensor is there with the right shape.
  void export_tensors(const float* buffer, const std::string& prefix, SafeTensors& file) const;
  void import_tensors(const SafeTensors& file, const std::string& prefix, float* buffer) const;
  std::vector<int64_t> pytorch_shape(const ParameterEntry& entry) const;

 private:
  Device& device_;
  Precision precision_;
  std::vector<ParameterEntry> entries_;
  int64_t count_ = 0;
  float* values_ = nullptr;
  float* grads_ = nullptr;
  float* m_ = nullptr;
  float* v_ = nullptr;
  bf16* bf16_values_ = nullptr;
};

}  // namespace unet
