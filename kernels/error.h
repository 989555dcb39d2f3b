// unet::Error: every error the project reports to a user derives from it, with one line of text;
// the tools print what() after "error: ".
#pragma once

#include <stdexcept>

namespace unet {

// Its destructor is defined out of line (kernels/error.cpp, in unet_base), so its vtable exists
// once: a launcher in kernels/*.cu may throw it without the sim and cuda libraries both defining it.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~Error() override;
};

}  // namespace unet
