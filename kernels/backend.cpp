#include "kernels/backend.h"

namespace unet {

Error::~Error() = default;

}  // namespace unet
