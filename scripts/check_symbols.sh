#!/usr/bin/env bash
# Checks that the sim and cuda copies of every kernel library share no symbol of the project's:
# each kernel, device helper and launcher must exist once per device, kept apart by namespace
# (unet::sim / unet::cuda) or by the DeviceKind the launchers are instantiated for. A symbol in
# both would be one definition compiled two ways, and the linker would keep only one of them.
#
# usage: scripts/check_symbols.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: scripts/check_symbols.sh BUILD_DIR}

global_project_symbols() {  # defined, externally visible, in namespace unet
  nm --defined-only "$1" 2>/dev/null | awk '$2 ~ /^[TWVDBRu]$/ && $3 ~ /4unet/ { print $3 }' | sort -u
}

pairs=0
failures=0
while IFS= read -r sim_lib; do
  cuda_lib=${sim_lib%_sim.a}_cuda.a
  [[ -f $cuda_lib ]] || continue
  pairs=$((pairs + 1))
  shared=$(comm -12 <(global_project_symbols "$sim_lib") <(global_project_symbols "$cuda_lib"))
  sim_kernels=$(nm -C --defined-only "$sim_lib" | grep -c 'unet::sim::' || true)
  cuda_kernels=$(nm -C --defined-only "$cuda_lib" | grep -c 'unet::cuda::' || true)
  if [[ -n $shared ]]; then
    failures=$((failures + 1))
    echo "FAIL $(basename "$sim_lib") and $(basename "$cuda_lib") both define:"
    echo "$shared" | c++filt | sed 's/^/    /'
  else
    echo "ok   $(basename "${sim_lib%_sim.a}"): $sim_kernels symbols in unet::sim, $cuda_kernels in unet::cuda, none shared"
  fi
done < <(find "$build" -name 'lib*_sim.a' | sort)

if [[ $pairs -eq 0 ]]; then
  echo "no sim/cuda library pairs under $build (is the cuda device built?)" >&2
  exit 1
fi
[[ $failures -eq 0 ]]
