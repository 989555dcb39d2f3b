#!/usr/bin/env bash
# Where the cpu device's training step spends its time: `perf record` of `unet bench train` (batch
# 16, 128x128, base width 16, depth 3 unless told otherwise), then the samples' shares summed by
# kind of work: the convolutions' GEMMs, their padded copies and masked gradients, their bias sums,
# and the memory-bound ops (pooling, the loss, Adam, memset). Needs perf (linux-perf) and a Release
# build in build/; the shares include the bench's set-up and warm-up step.
#
# usage: scripts/cpu_step_profile.sh [UNET_BINARY] [bench train options...]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-build/tools/unet}
shift || true
options=("$@")
[ ${#options[@]} -gt 0 ] || options=(--batch 16 --image-size 128 --base-width 16 --depth 3 --steps 10 --warmup 1)
data=$(mktemp /tmp/cpu_step_profile.XXXXXX)
trap 'rm -f "$data"' EXIT
OMP_WAIT_POLICY=PASSIVE perf record -q -o "$data" "$binary" bench train --device cpu "${options[@]}" 2>&1 | tail -1
perf report -i "$data" --no-children --sort symbol -g none 2>/dev/null | grep '%' | grep -v '^#' |
  awk '
    { share = $1; sub(/%/, "", share); $1 = ""; $2 = ""; name = $0; kind = "other" }
    name ~ /tap_gemm|reduce_gemm|forward_one_output/       { kind = "convolution GEMMs" }
    name ~ /tap_input|output_gradient|windows/             { kind = "convolutions: padded copies, masked gradients" }
    name ~ /column_sums/                                   { kind = "convolutions: bias sums" }
    name ~ /max_pool2d/                                    { kind = "memory-bound: max_pool2d" }
    name ~ /loss_sums|loss_finish|block_sums|segmentation_loss|log1pf|expf|logf/ { kind = "memory-bound: loss" }
    name ~ /adam_step|::update</                           { kind = "memory-bound: Adam" }
    name ~ /memset|memmove|memcpy/                         { kind = "memory-bound: memset/memcpy" }
    { total[kind] += share }
    END { for (k in total) printf "%6.2f%%  %s\n", total[k], k }' | sort -rn
