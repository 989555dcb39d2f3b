#!/usr/bin/env bash
# The cpu device's figures of issue 11 and docs/performance.md ("The cpu device"), for a quiet machine:
#   (a) a training step, `unet bench train --device cpu` against the PyTorch twin (bench/pytorch_unet.py,
#       eager fp32, /usr/bin/python3, torch.set_num_threads = the threads), alternating in one run, at
#       batch 16, 128x128, base width 16 and at batch 2, 256x256, base width 32 (depth 3), ROUNDS rounds,
#       medians;
#   (b) bench_kernels' cpu rows at batch 16, 128x128, base width 16 with the FMA peak at 1 and N threads;
#   (c) `make demo`'s wall time (scripts/demo.sh on the same build: make demo's setup and build left out).
# Everything runs under OMP_WAIT_POLICY=PASSIVE (as make test sets it) on THREADS threads. It prints a
# Markdown table with the date, commit, CPU model and load averages, and leaves the raw JSON in OUT.
#
#   scripts/measure_cpu.sh [OUT]            OUT default: cpu-figures/
#   BUILD=build THREADS=2 ROUNDS=3 scripts/measure_cpu.sh
#
# About 4 minutes on the 2-core build machine when it is quiet. A figure taken while other work runs
# is noise: the load averages in the table say which it was.
set -euo pipefail
build=${BUILD:-build}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
out=${1:-cpu-figures}
python=/usr/bin/python3  # has torch; the python3 first on PATH may not
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$threads

cmake --build "$build" --target unet bench_kernels >/dev/null
rm -rf "$out"
mkdir -p "$out"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS

# (a) Alternating, so that a change in the machine's load hits both sides alike.
shapes=("--batch 16 --image-size 128 --base-width 16 --depth 3" "--batch 2 --image-size 256 --base-width 32 --depth 3")
for round in $(seq "$rounds"); do
  for i in "${!shapes[@]}"; do
    read -ra shape <<< "${shapes[$i]}"
    "$build/tools/unet" bench train --device cpu "${shape[@]}" --steps 3 --warmup 1 --threads "$threads" \
      --json "$out/unet_$i.jsonl" >/dev/null
    "$python" bench/pytorch_unet.py bench --device cpu --configs eager-fp32 "${shape[@]}" --steps 3 --warmup 1 \
      --threads "$threads" --json "$out/pytorch_$i.jsonl" >/dev/null
  done
  echo "measure_cpu: round $round of $rounds done ($((SECONDS - started)) s)" >&2
done

# (b) The cpu rows and the FMA peak.
"$build/bench/bench_kernels" --device=cpu --batch=16 --image_size=128 --base_width=16 --depth=3 \
  --benchmark_out="$out/bench_kernels_cpu.json" --benchmark_out_format=json >/dev/null 2>&1
python3 scripts/bench_summary.py "$out/bench_kernels_cpu.json" --out "$out/bench_kernels_cpu.md" >/dev/null

# (c) The demo.
demo_start=$SECONDS
BUILD=$build DEMO_DIR="$out/demo" scripts/demo.sh > "$out/demo.log" 2>&1
demo_seconds=$((SECONDS - demo_start))

python3 - "$out" "$rounds" "$threads" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$demo_seconds" \
  "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo -dirty)" <<'EOF'
import json, pathlib, re, statistics, sys, time
out, rounds, threads, load_before, load_after, demo_seconds, commit = sys.argv[1:]
out = pathlib.Path(out)
def ms(name):
    return [json.loads(line)["ms_per_step"] for line in (out / name).read_text().splitlines() if line.strip()]
info = dict(line.split(":", 1) for line in open("/proc/cpuinfo").read().split("\n\n")[0].splitlines() if ":" in line)
info = {k.strip(): v.strip() for k, v in info.items()}
cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
context = json.loads((out / "bench_kernels_cpu.json").read_text())["context"]
demo = re.search(r"training and evaluation took (\d+) s", (out / "demo.log").read_text())
print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {cpu}, {threads} threads, "
      f"OMP_WAIT_POLICY=PASSIVE; load average {load_before} before, {load_after} after\n")
print(f"| figure | ours | PyTorch eager fp32 | PyTorch / ours |")
print(f"| --- | ---: | ---: | ---: |")
for i, shape in enumerate(["batch 16, 128x128, width 16", "batch 2, 256x256, width 32"]):
    ours, torch = statistics.median(ms(f"unet_{i}.jsonl")), statistics.median(ms(f"pytorch_{i}.jsonl"))
    print(f"| training step, {shape} (median ms per step, {rounds} round(s) of 3 steps) | {ours:.0f} | {torch:.0f} "
          f"| {torch / ours:.2f}x |")
print(f"| FMA peak, GFLOP/s at 1 / {threads} threads | {float(context['cpu_fma_peak_1_thread_gflops']):.1f} / "
      f"{float(context['cpu_fma_peak_gflops']):.1f} | | |")
print(f"| `make demo` (scripts/demo.sh), wall s; its training and evaluation, s | {demo_seconds}; "
      f"{demo.group(1) if demo else '?'} | | |")
print()
print((out / "bench_kernels_cpu.md").read_text().split("### The cpu device's convolutions", 1)[1].split("\n", 1)[1]
      .split("\n## ", 1)[0].split("\n### ", 1)[0].strip())
EOF
