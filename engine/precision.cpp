#include "engine/precision.h"

namespace unet {

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
  }
  return "?";
}

Precision parse_precision(const std::string& name) {
  for (Precision precision : {Precision::fp32, Precision::tf32, Precision::bf16}) {
    if (name == precision_name(precision)) return precision;
  }
  throw Error("precision: '" + name + "' is not one of fp32, tf32, bf16");
}

Precision default_precision(DeviceKind kind) { return kind == DeviceKind::cuda ? Precision::bf16 : Precision::fp32; }

}  // namespace unet
