#!/usr/bin/env bash
# Installs what unet-cuda builds and tests with, from Debian's packages. Idempotent: installs only
# what is missing and says what it does. The CUDA toolkit is optional and not installed here.
set -euo pipefail

packages=(
  cmake ninja-build g++ ccache pkg-config  # build
  catch2                                    # tests (Debian's Catch2 v2)
  libbenchmark-dev                          # benchmarks
  libtiff-dev libstb-dev                    # image reading (TIFF; PNG/JPEG/BMP) and writing (PNG)
  nlohmann-json3-dev                        # JSON (safetensors headers, logs, splits)
  clang-format                              # the sources' format (.clang-format)
  libnifti2-dev                             # NIfTI volumes (niftilib, with zlib for .nii.gz)
  python3-nibabel                           # the NIfTI oracle of the tests
  python3-torch python3-numpy               # the PyTorch oracle for the tests, for /usr/bin/python3
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
