#!/usr/bin/env bash
# Installs what unet-cuda builds and tests with, from Debian's packages, and the two NVIDIA wheels
# the SASS gate needs. Idempotent: installs only what is missing and says what it does. The CUDA
# toolkit is optional and not installed here.
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
  openmpi-bin libopenmpi-dev                # data-parallel training: mpirun, and MPI to build against
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages are installed"
else
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The SASS gate (scripts/check_sass.py, CTest label sass) reads the cuda kernel library with
# cuobjdump, which this toolkit lacks: NVIDIA's wheels provide it, for the python3 first on PATH
# (the one CTest runs the gate with). 13.2.51 is the oldest release on PyPI; it reads nvcc 13.0's
# sm_90 code.
wheels=(nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51)
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  wanted=()
  for wheel in "${wheels[@]}"; do
    [[ $(python3 -m pip show "${wheel%%==*}" 2>/dev/null | sed -n 's/^Version: //p') == "${wheel##*==}" ]] ||
      wanted+=("$wheel")
  done
  if [[ ${#wanted[@]} -eq 0 ]]; then
    echo "setup: the SASS tools are installed"
  else
    echo "setup: installing ${wanted[*]} for $(command -v python3)"
    python3 -m pip install -q "${wanted[@]}"
  fi
else
  echo "setup: no python3 with pip on PATH: the SASS gate (label sass) will fail until the wheels are installed"
fi
echo "setup: done"
