#!/usr/bin/env bash
# The cpu training step with one rank and with two (`mpirun -np 2`), one OpenMP thread each, and
# the share of rank 0's training time spent inside MPI collectives (docs/distributed.md, "Measured
# here"). Prints a markdown table headed by the date, the commit and the CPU. Under 3 minutes on a
# 2-core machine; run it on a quiet one, or say that the figures are noise.
#
# usage: scripts/measure_distributed.sh [UNET_BINARY]   (default build/tools/unet)
#
# Phantom data (8 patients of 16 slices, 64x64), base width 8, global batch 8 (16 steps an epoch),
# 3 epochs, no validation patients (so an epoch's `seconds` in metrics.csv is its training steps
# and the checkpoint). The step time is the mean of epochs 2 and 3 (epoch 1 sizes the arena);
# the collective share is rank 0's `collective_seconds` (the `end` record of log.jsonl: its time
# inside MPI_Iallreduce, waiting for the other rank included) over all three epochs' seconds.
set -euo pipefail

unet=${1:-build/tools/unet}
[[ -x $unet ]] || { echo "error: $unet is not an executable (build it, or pass the binary)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "error: mpirun not found (scripts/setup.sh installs openmpi-bin)" >&2; exit 1; }

cores=$(nproc)  # before OMP_NUM_THREADS=1, which nproc obeys
work=$(mktemp -d /tmp/unet-measure-distributed-XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
# mpirun as root in a container (docs/distributed.md, Launching).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none

"$unet" synth --out "$work/data" --patients 8 --slices 16 --size 64 --seed 3 >/dev/null
flags=(train --device cpu --threads 1 --data "$work/data" --image-size 64 --base-width 8 --batch 8 --epochs 3
       --val-patients 0 --seed 1)
"$unet" "${flags[@]}" --out "$work/r1" >/dev/null
mpirun -np 2 --oversubscribe "$unet" "${flags[@]}" --out "$work/r2" >/dev/null

# One table row from a run folder: steps an epoch, seconds a step, collective share.
row() {
  python3 - "$1" "$2" <<'PY'
import csv, json, sys
ranks, run = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(f"{run}/metrics.csv")))
steps = int(rows[0]["step"])  # steps of epoch 1
seconds = [float(r["seconds"]) for r in rows]
per_step = sum(seconds[1:]) / (steps * (len(rows) - 1))
end = [json.loads(line) for line in open(f"{run}/log.jsonl") if '"event":"end"' in line][-1]
collectives = end.get("collective_seconds")
total = sum(seconds)
share = "none (one process)" if collectives is None else \
    f"{collectives:.2f} s of {total:.2f} s: {100 * collectives / total:.0f}%"
epochs = " ".join(f"{s:.2f}" for s in seconds)
print(f"| {ranks} | {steps} | {epochs} | {per_step * 1000:.0f} ms | {share} |")
PY
}

echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- commit: $("$unet" info | sed -n 's/^ *commit  *//p') (the binary's build)"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "- CPU: $cpu, $cores cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- MPI: $("$unet" info | sed -n 's/^ *mpi  *//p')"
echo
echo "| ranks | steps an epoch | epoch seconds (1, 2, 3) | per step (epochs 2-3) | rank 0 in MPI collectives |"
echo "| --- | --- | --- | --- | --- |"
row "1" "$work/r1"
row "2 (\`mpirun -np 2\`)" "$work/r2"
