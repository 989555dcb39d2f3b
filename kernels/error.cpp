#include "kernels/error.h"

namespace unet {

Error::~Error() = default;

}  // namespace unet
