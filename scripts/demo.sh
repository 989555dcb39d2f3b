#!/usr/bin/env bash
# make demo: phantom data -> training -> evaluation on held-out patients -> report and overlays.
# The full model on a GPU; a small one (base width 8, 64x64 slices) on a CPU, sized to train and
# evaluate in about two minutes on two cores.
set -euo pipefail
build=${BUILD:-build}
out=${DEMO_DIR:-demo}
unet="$build/tools/unet"

rm -rf "$out"
mkdir -p "$out"
if "$unet" info | grep -q "^  cuda .*GiB"; then
  echo "demo: a GPU is available: the full model at 256x256"
  model=(--device cuda --image-size 256 --base-width 64 --depth 3 --batch 16 --lr 1e-4 --epochs 40)
  size=256
else
  echo "demo: no GPU: a small model (base width 8) at 64x64 on the CPU"
  model=(--device cpu --image-size 64 --base-width 8 --depth 3 --batch 8 --lr 2e-3 --oversample 3 --epochs 12)
  size=64
fi

"$unet" synth --out "$out/phantom" --patients 16 --slices 20 --size "$size" --seed 7
start=$(date +%s)
"$unet" train --data "$out/phantom" "${model[@]}" --loss bce+dice --val-patients 2 --test-patients 3 --seed 1 \
  --out "$out/run"
"$unet" eval --weights "$out/run/best.safetensors" --data "$out/phantom" --image-size "$size" \
  --split "$out/run/split.json" --subset test --csv "$out/test_patients.csv" "${model[@]:0:2}" | tee "$out/eval.txt"
end=$(date +%s)
"$unet" predict --weights "$out/run/best.safetensors" --input "$out/phantom" --out "$out/predictions" \
  --image-size "$size" "${model[@]:0:2}" > /dev/null
"$unet" report "$out/run" > /dev/null

echo
echo "demo: training and evaluation took $((end - start)) s"
grep -E "^per-volume Dice|^no-tumour baseline" "$out/eval.txt" | sed 's/^/demo: held-out patients: /'
echo "demo: report     $out/run/report.html"
echo "demo: overlays   $out/run/overlays/ and $out/predictions/"
echo "demo: weights    $out/run/best.safetensors (PyTorch: bench/pytorch_unet.py load_unet)"
