// unet synth: writes phantom data in the kaggle_3m layout (data/phantom.h).
#include <chrono>
#include <cstdio>
#include <string>

#include "data/phantom.h"
#include "tools/cli.h"
#include "tools/commands.h"

namespace unet {

int command_synth(const Args& args) {
  std::string out;
  int patients = 4, slices = 20, size = 256;
  int64_t seed = 1;
  Options options("synth",
                  "Writes a synthetic dataset in the kaggle_3m layout (uncompressed TIFFs): brain-like ellipses with "
                  "lesions brighter in FLAIR in about a third of the slices, and their masks.");
  options.add("out", &out, "DIR", "folder to write (must not exist, or be empty)").required();
  options.add("patients", &patients, "N", "number of patients").at_least(1);
  options.add("seed", &seed, "S", "random seed: the same seed writes the same files").at_least(0);
  options.add("slices", &slices, "K", "slices per patient").at_least(1);
  options.add("size", &size, "S", "slices are S x S pixels").at_least(16);
  if (!options.parse(args)) return 0;

  const auto start = std::chrono::steady_clock::now();
  const PhantomSummary summary = write_phantom(out, {patients, slices, size, static_cast<uint64_t>(seed)});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %d patients, %d slices (%d with a lesion) of %dx%d to %s in %.2f s\n", patients, summary.slices,
              summary.tumour_slices, size, size, out.c_str(), seconds);
  return 0;
}

}  // namespace unet
