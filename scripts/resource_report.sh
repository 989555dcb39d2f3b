#!/usr/bin/env bash
# The compiler's resource report for every kernel, for sm_90: registers per thread, static shared
# memory per block, stack frame and spills (ptxas -v). Needs nvcc, no GPU; prints a Markdown table.
#
# usage: scripts/resource_report.sh [ARCH]     (default sm_90)
set -euo pipefail
arch=${1:-sm_90}
cd "$(dirname "$0")/.."
echo "| kernel | registers | shared memory (bytes) | stack (bytes) | spills (bytes, stores/loads) |"
echo "| --- | --- | --- | --- | --- |"
for source in kernels/*.cu; do
  nvcc -std=c++20 -arch="$arch" -O3 --expt-relaxed-constexpr -I. -Xptxas -v -c "$source" -o /dev/null 2>&1 |
    awk -v file="$(basename "$source")" '
      /Compiling entry function/ { match($0, /_Z[A-Za-z0-9_]+/); name = substr($0, RSTART, RLENGTH) }
      /bytes stack frame/ { split($0, f, " "); stack = f[1]; spill_st = f[5]; spill_ld = f[9] }
      /Used [0-9]+ registers/ {
        match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15)
        smem = 0; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
        print regs "\t" smem "\t" stack "\t" spill_st "/" spill_ld "\t" name
      }' | c++filt | sed -E 's/\(.*$//; s/(void )?unet::cuda:://' |
    awk -F'\t' '{ printf "| `%s` | %s | %s | %s | %s |\n", $5, $1, $2, $3, $4 }'
done
