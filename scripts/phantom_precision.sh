#!/usr/bin/env bash
# Phantom training in a reduced precision against fp32 (issue 10 item 7): the demo's CPU configuration
# and seed (scripts/demo.sh), trained once in fp32 and once in PRECISION (default bf16) on DEVICE
# (default cpu, which runs bf16 and tf32 through the references' rounding emulation), each scored on
# the same held-out test patients in its own precision. Passes when the held-out per-volume Dice
# means differ by at most 0.02.
#
#   scripts/phantom_precision.sh [PRECISION] [DEVICE]      (BUILD=build, OUT=phantom-precision)
set -euo pipefail
precision=${1:-bf16}
device=${2:-cpu}
build=${BUILD:-build}
out=${OUT:-phantom-precision}
unet="$build/tools/unet"

rm -rf "$out"
mkdir -p "$out"
"$unet" synth --out "$out/phantom" --patients 16 --slices 20 --size 64 --seed 7 > /dev/null
model=(--device "$device" --image-size 64 --base-width 8 --depth 3 --batch 8 --lr 2e-3 --oversample 3 --epochs 12)
dice() {  # the held-out per-volume Dice mean of one precision's run
  local p=$1 start end
  start=$(date +%s)
  "$unet" train --data "$out/phantom" "${model[@]}" --precision "$p" --loss bce+dice --val-patients 2 \
    --test-patients 3 --seed 1 --out "$out/run-$p" > "$out/train-$p.txt"
  "$unet" eval --weights "$out/run-$p/best.safetensors" --data "$out/phantom" --image-size 64 \
    --split "$out/run-$p/split.json" --subset test --device "$device" --precision "$p" > "$out/eval-$p.txt"
  end=$(date +%s)
  echo "$p: trained and scored in $((end - start)) s: $(grep '^per-volume Dice' "$out/eval-$p.txt")" >&2
  grep '^per-volume Dice' "$out/eval-$p.txt" | sed -E 's/^per-volume Dice +mean ([0-9.]+).*/\1/'
}
fp32=$(dice fp32)
reduced=$(dice "$precision")
python3 - "$fp32" "$reduced" "$precision" <<'PY'
import sys
fp32, reduced, precision = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
gap = abs(reduced - fp32)
print(f"held-out per-volume Dice: fp32 {fp32:.4f}, {precision} {reduced:.4f}, difference {gap:.4f} "
      f"(at most 0.02: {'ok' if gap <= 0.02 else 'FAILED'})")
sys.exit(0 if gap <= 0.02 else 1)
PY
