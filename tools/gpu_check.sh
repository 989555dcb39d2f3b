#!/usr/bin/env bash
# GPU checks in two halves, because the GPU machine has no network and lacks libtiff, Catch2 and
# Google Benchmark (docs/gpu-check.md):
#
#   tools/gpu_check.sh pack [PACK_DIR]          on this machine: build the cuda tests, benchmarks
#                                               and `unet` for sm_90 (Release) and gather them with
#                                               the non-system libraries they need (default gpu-pack/)
#   tools/gpu_check.sh run PACK_DIR [OUT_DIR]   on the GPU machine: run them, no build; writes
#                                               gpu_check.log, each benchmark's JSON and summary.md
#                                               (the steps, then the benchmark tables of
#                                               scripts/bench_summary.py) into OUT_DIR (default
#                                               PACK_DIR/results) as it goes, prints the summary last
#   tools/gpu_check.sh kernels PACK_DIR OUT_DIR [FILTER]
#                                               on the GPU machine: bench_kernels alone, the rows
#                                               matching FILTER (default: the mma.sync peaks and
#                                               every bf16 row) with a 240 s budget, and their summary
set -uo pipefail

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# Libraries the GPU machine has itself: the C library, the loader and the CUDA libraries (driver,
# toolkit or PyTorch's wheels). It lacks the rest, Open MPI's included, so the pack carries them.
on_the_gpu_machine() {
  case $(basename "$1") in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*|libcudnn*|libcublas*|libnvidia*) ;;
    *) return 1 ;;
  esac
}

# Every library a packed program loads comes from the pack's lib/ or from the GPU machine.
check_pack_libraries() {
  local pack_dir binary library missing=0
  pack_dir=$(cd "$1" && pwd)
  for binary in "$pack_dir"/bin/*; do
    [[ -x $binary && $(head -c 4 "$binary") == $'\x7fELF' ]] || continue
    while read -r library; do
      if ! on_the_gpu_machine "$library" && [[ $library != "$pack_dir"/lib/* ]]; then
        echo "error: $(basename "$binary") needs $library, which is neither in the pack nor on the GPU machine" >&2
        missing=1
      fi
    done < <(LD_LIBRARY_PATH="$pack_dir/lib" ldd "$binary" | awk '/=> not found/ { print $1 " (not found)"; next }
                                                                 /=> \// { print $3 }')
  done
  return $missing
}

# ------------------------------------------------------------------------------------------------
pack() {
  local pack_dir=${1:-gpu-pack}
  local build=build-gpu
  set -e
  command -v nvcc >/dev/null || { echo "error: pack needs nvcc (the CUDA toolkit)" >&2; exit 1; }
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DUNET_TESTS=ON -DUNET_BENCHMARKS=ON >/dev/null
  grep -q 'UNET_WITH_CUDA=ON' "$build/unet-build.env" || { echo "error: the build has no cuda device" >&2; exit 1; }
  cmake --build "$build" -j "$(nproc)"

  rm -rf "$pack_dir"
  mkdir -p "$pack_dir/bin" "$pack_dir/lib"
  local binaries=("$build/tools/unet")
  mapfile -t -O ${#binaries[@]} binaries < <(find "$build/tests" "$build/bench" -maxdepth 1 -type f -executable \
                                              \( -name 'test_cuda_*' -o -name 'test_*_cuda' -o -name 'bench_*' \) \
                                              2>/dev/null | sort)
  cp "${binaries[@]}" "$pack_dir/bin/"
  [[ -d bench ]] && cp bench/*.py "$pack_dir/bin/" 2>/dev/null || true
  cp scripts/bench_summary.py "$pack_dir/bin/"

  # Libraries the GPU machine lacks: libmpi and its own (the binaries link Open MPI, though they
  # call MPI_Init only under a launcher), libtiff, libstdc++, ...
  local library
  for binary in "${binaries[@]}"; do
    ldd "$binary" | awk '/=> \// { print $3 }'
  done | sort -u | while read -r library; do
    on_the_gpu_machine "$library" || cp -L "$library" "$pack_dir/lib/"
  done
  check_pack_libraries "$pack_dir"

  {
    echo "commit: $(git describe --always --dirty --abbrev=12)"
    echo "packed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "built with: $(nvcc --version | tail -1), $(g++ --version | head -1), sm_90"
  } > "$pack_dir/manifest.txt"
  echo "pack: $(du -sh "$pack_dir" | cut -f1) in $pack_dir ($(ls "$pack_dir/bin" | wc -l) programs, $(ls "$pack_dir/lib" | wc -l) libraries)"
  cat "$pack_dir/manifest.txt"
}

# ------------------------------------------------------------------------------------------------
# The LD_LIBRARY_PATH our packed programs run with.
library_path() {
  local pack_dir=$1
  # cuDNN and cuBLAS for the baselines, and NCCL for test_cuda_nccl (dlopened): those in PyTorch's
  # wheels (nvidia/<name>/lib, e.g. nvidia/nccl/lib, or nvidia/cu13/lib, beside torch wherever it
  # is installed: a venv, the user's site), else the toolkit's.
  local extra
  extra=$(python3 - 2>/dev/null <<'PY'
import glob, os, site
sites = list(site.getsitepackages())
dirs = []
try:
    import torch
    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
    sites.insert(0, os.path.dirname(os.path.dirname(torch.__file__)))
except Exception:
    pass
for folder in sites:
    dirs += sorted(glob.glob(os.path.join(folder, "nvidia", "*", "lib")))
print(":".join(dict.fromkeys(d for d in dirs if os.path.isdir(d))))
PY
  )
  # Only our programs get the packed libraries (libstdc++, libz, ...): Python and PyTorch keep the
  # machine's own, which the packed copies could shadow with older versions.
  echo "$pack_dir/lib:${extra:+$extra:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

# ------------------------------------------------------------------------------------------------
run() {
  local pack_dir=${1:?usage: tools/gpu_check.sh run PACK_DIR [OUT_DIR]}
  pack_dir=$(cd "$pack_dir" && pwd)
  local out=${2:-$pack_dir/results}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local log=$out/gpu_check.log summary=$out/summary.md
  : > "$log"

  local ours=(env "LD_LIBRARY_PATH=$(library_path "$pack_dir")")
  export UNET_GPU_CHECK_OUT=$out

  local card driver
  card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  {
    echo "# GPU check"
    echo
    echo "- card: ${card:-none found}"
    echo "- driver: ${driver:-none}"
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    sed 's/^/- /' "$pack_dir/manifest.txt"
    echo
    echo "| step | result | seconds |"
    echo "| --- | --- | --- |"
  } > "$summary"

  local failures=0
  step() {  # step NAME TIMEOUT_SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*" >> "$log"
    local start=$SECONDS status result
    timeout "$limit" "$@" >> "$log" 2>&1
    status=$?
    case $status in
      0) result=passed ;;
      77) result=skipped ;;
      124) result="FAILED (over ${limit} s)"; failures=$((failures + 1)) ;;
      *) result="FAILED (exit $status)"; failures=$((failures + 1)) ;;
    esac
    echo "| $name | $result | $((SECONDS - start)) |" >> "$summary"
    echo "=== $name: $result" >> "$log"
  }

  step "unet info" 60 "${ours[@]}" "$pack_dir/bin/unet" info
  local binary
  for binary in "$pack_dir"/bin/test_cuda_* "$pack_dir"/bin/test_*_cuda; do
    [[ -x $binary ]] && step "$(basename "$binary")" 240 "${ours[@]}" "$binary"
  done
  local sanitizer
  sanitizer=$(command -v compute-sanitizer || command -v /usr/local/cuda/bin/compute-sanitizer)
  if [[ -n $sanitizer ]]; then
    # Without the [errors] tests: they make launches fail on purpose, and memcheck counts a failed
    # API call as an error (so --error-exitcode would fail the step); they touch no memory anyway.
    step "compute-sanitizer memcheck: test_cuda_features" 120 \
      "${ours[@]}" "$sanitizer" --tool memcheck --error-exitcode 1 "$pack_dir/bin/test_cuda_features" "~[errors]"
  else
    echo "| compute-sanitizer memcheck | skipped (not installed) | 0 |" >> "$summary"
  fi
  # bench_kernels stops starting benchmarks after --budget_s (skipping the rest visibly), so its
  # JSON is complete and the whole run stays within 5 minutes on an H100. It runs the mma.sync
  # peaks first, then the memory-bound ops, then the bf16, TF32 and fp32 convolutions, so what the
  # budget cuts is fp32 (bench/bench_kernels.h). Its GPU rows only: the cpu rows belong to the CPU
  # machine (scripts/measure_cpu.sh).
  step "bench_kernels" 130 "${ours[@]}" "$pack_dir/bin/bench_kernels" --device=cuda --budget_s=90 \
    --benchmark_out="$out/bench_kernels.json" --benchmark_out_format=json

  # End to end: our training step (graph and eager) and inference, then the PyTorch twin of the
  # same model in the configurations a PyTorch user would pick (JSON lines for bench_summary).
  local shape=(--device cuda --batch 16 --image-size 256 --steps 20)
  # cuda's default precision is bf16; fp32 and tf32 beside it, so that a bf16 failure on the card
  # still leaves the other two step rates (each JSON record names its precision).
  step "unet bench train (graph, bf16)" 90 "${ours[@]}" "$pack_dir/bin/unet" bench train "${shape[@]}" --graph on \
    --precision bf16 --json "$out/unet_bench.jsonl"
  step "unet bench train (graph, tf32)" 90 "${ours[@]}" "$pack_dir/bin/unet" bench train "${shape[@]}" --graph on \
    --precision tf32 --json "$out/unet_bench.jsonl"
  step "unet bench train (graph, fp32)" 90 "${ours[@]}" "$pack_dir/bin/unet" bench train "${shape[@]}" --graph on \
    --precision fp32 --json "$out/unet_bench.jsonl"
  step "unet bench train (eager)" 90 "${ours[@]}" "$pack_dir/bin/unet" bench train "${shape[@]}" --graph off \
    --json "$out/unet_bench.jsonl"
  step "unet bench infer" 60 "${ours[@]}" "$pack_dir/bin/unet" bench infer "${shape[@]}" --json "$out/unet_bench.jsonl"
  [[ -x $pack_dir/bin/test_cuda_augment ]] && step "augmentation kernel (batch 64, 256x256)" 60 \
    "${ours[@]}" "$pack_dir/bin/test_cuda_augment" "[.benchmark]" -s
  step "PyTorch twin" 150 python3 "$pack_dir/bin/pytorch_unet.py" bench --batch 16 --image-size 256 --steps 10 \
    --warmup 3 --json "$out/pytorch_bench.jsonl"

  # The tables: every JSON the steps above left in $out (kernels, and end-to-end where present).
  step "bench_summary" 60 python3 "$pack_dir/bin/bench_summary.py" "$out" --out "$out/bench_summary.md"

  { echo; echo "failures: $failures; full log: gpu_check.log"; } >> "$summary"
  [[ -s $out/bench_summary.md ]] && { echo; cat "$out/bench_summary.md"; } >> "$summary"
  cat "$summary"
  [[ $failures -eq 0 ]]
}

# ------------------------------------------------------------------------------------------------
kernels() {
  local pack_dir=${1:?usage: tools/gpu_check.sh kernels PACK_DIR OUT_DIR [FILTER]}
  local out=${2:?usage: tools/gpu_check.sh kernels PACK_DIR OUT_DIR [FILTER]}
  local filter=${3:-'^mma_sync/|_bf16/'}
  pack_dir=$(cd "$pack_dir" && pwd)
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local ours=(env "LD_LIBRARY_PATH=$(library_path "$pack_dir")")
  "${ours[@]}" "$pack_dir/bin/bench_kernels" --device=cuda --budget_s=240 --benchmark_filter="$filter" \
    --benchmark_out="$out/bench_kernels.json" --benchmark_out_format=json > "$out/bench_kernels.log" 2>&1
  local status=$?
  python3 "$pack_dir/bin/bench_summary.py" "$out" --out "$out/bench_summary.md" && cat "$out/bench_summary.md"
  return $status
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  kernels) shift; kernels "$@" ;;
  *) usage ;;
esac
