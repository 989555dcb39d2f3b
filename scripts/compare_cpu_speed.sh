#!/usr/bin/env bash
# `make demo` and `make test`'s tests before and after a change, on the same machine in one run
# (issue 11: "measurably faster than today (say by how much)"). Earlier CI logs carry only whole-suite
# times, over different test sets, so they cannot say it; this can.
#
#   scripts/compare_cpu_speed.sh [BEFORE [AFTER]]
#     BEFORE  default 30b1aa1, main just before the fast cpu kernels were merged (48c8042)
#     AFTER   default HEAD
#   WORK=build-compare JOBS=$(nproc) TESTS=REGEX scripts/compare_cpu_speed.sh
#
# Both commits are checked out as detached worktrees under WORK (../shared linked beside them, where
# the tests look for the data), built the same way (Release, -DUNET_CUDA=OFF, as a machine without
# nvcc builds them), then, alternating before/after: scripts/demo.sh (what `make demo` runs after
# its setup and build), and ctest -j JOBS under OMP_WAIT_POLICY=PASSIVE (`make test`'s unit-tests
# step; its sanitizer step is left out), every test or those matching TESTS. It prints a Markdown
# table: the demo's wall time, the whole test run's wall time (over each side's own tests), and the
# summed time of the tests that exist and pass on both sides, with the ten slowest of them.
# On the 2-core build machine, quiet, about 7 minutes (measured 2026-12-01); a run while other
# work shares the machine is noise.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
before=$(git rev-parse --short "${1:-30b1aa1}")
after=$(git rev-parse --short "${2:-HEAD}")
work=$(realpath -m "${WORK:-$root/build-compare}")
jobs=${JOBS:-$(nproc)}
export OMP_WAIT_POLICY=PASSIVE

mkdir -p "$work"
[[ -e $work/shared ]] || ln -s "$(realpath "$root/../shared")" "$work/shared"
for side in before after; do
  commit=${!side}
  if [[ ! -d $work/$side ]]; then
    git -C "$root" worktree add --detach "$work/$side" "$commit" >/dev/null
  fi
  git -C "$work/$side" checkout -q --detach "$commit"
  cmake -S "$work/$side" -B "$work/$side/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DUNET_CUDA=OFF >/dev/null
  echo "compare_cpu_speed: building $side ($commit)" >&2
  cmake --build "$work/$side/build" -j "$jobs" >/dev/null
done

for side in before after; do
  echo "compare_cpu_speed: make demo, $side" >&2
  start=$SECONDS
  (cd "$work/$side" && BUILD=build DEMO_DIR="$work/demo-$side" scripts/demo.sh > "$work/demo-$side.log" 2>&1)
  echo $((SECONDS - start)) > "$work/demo-$side.seconds"
done
for side in before after; do
  echo "compare_cpu_speed: ctest, $side" >&2
  start=$SECONDS
  (cd "$work/$side/build" && ctest -j "$jobs" ${TESTS:+-R "$TESTS"} > "$work/ctest-$side.log" 2>&1) || true
  echo $((SECONDS - start)) > "$work/ctest-$side.seconds"
done

python3 - "$work" "$before" "$after" "$jobs" <<'EOF'
import pathlib, re, sys, time
work, before, after, jobs = sys.argv[1:]
work = pathlib.Path(work)
LINE = re.compile(r"Test +#\d+: (.+?) \.+ *(\S.*?) +([\d.]+) sec")
def tests(side):
    """name -> seconds for the tests that passed, and how many ran."""
    runs = [LINE.search(line) for line in (work / f"ctest-{side}.log").read_text().splitlines()]
    runs = [m for m in runs if m]
    return {m.group(1): float(m.group(3)) for m in runs if m.group(2) == "Passed"}, len(runs)
def seconds(name):
    return int((work / name).read_text())
def demo_training(side):
    m = re.search(r"training and evaluation took (\d+) s", (work / f"demo-{side}.log").read_text())
    return m.group(1) if m else "?"
(old, old_count), (new, new_count) = tests("before"), tests("after")
common = sorted(set(old) & set(new), key=lambda name: -old[name])
info = dict(line.split(":", 1) for line in open("/proc/cpuinfo").read().split("\n\n")[0].splitlines() if ":" in line)
info = {k.strip(): v.strip() for k, v in info.items()}
cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, ctest -j {jobs}, OMP_WAIT_POLICY=PASSIVE, "
      f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} at the end\n")
print(f"| | before ({before}) | after ({after}) | after / before |")
print("| --- | ---: | ---: | ---: |")
def row(label, b, a):
    print(f"| {label} | {b:.0f} | {a:.0f} | {a / b:.2f} |" if b else f"| {label} | {b} | {a} | |")
row("make demo (scripts/demo.sh), wall s", seconds("demo-before.seconds"), seconds("demo-after.seconds"))
print(f"| the demo's training and evaluation, s | {demo_training('before')} | {demo_training('after')} | |")
row(f"ctest, wall s (each side's own tests: {old_count} and {new_count})", seconds("ctest-before.seconds"),
    seconds("ctest-after.seconds"))
row(f"the {len(common)} tests passing on both sides, summed s", sum(old[n] for n in common),
    sum(new[n] for n in common))
print("\nThe ten slowest of them before:\n\n| test | before s | after s |\n| --- | ---: | ---: |")
for name in common[:10]:
    cell = name.replace("|", "\\|")  # the label's bar would end the cell
    print(f"| {cell} | {old[name]:.1f} | {new[name]:.1f} |")
EOF
