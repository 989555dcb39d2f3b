// tile_choice: the one definition of the pinned tile (tile_choice.h, PinnedMmaTile).
#include "kernels/tile_choice.h"

namespace unet {

std::optional<MmaTile>& PinnedMmaTile::pinned() {
  static std::optional<MmaTile> tile;
  return tile;
}

}  // namespace unet
