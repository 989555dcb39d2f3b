#!/usr/bin/env python3
"""bench_kernels' cpu rows at a tiny model: every convolution layer and pass is timed, its JSON has
the fields docs/performance.md and scripts/bench_summary.py read, and its share of the measured FMA
peak is finite and plausible (0 < pct_peak < 150), with the peak measured at 1 and N threads.

usage: check_cpu_rows.py BENCH_KERNELS
"""

import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

# The tiny model's convolutions (models/unet_shapes.h at depth 2): every one must have all three passes.
LAYERS = {
    "conv3x3": ["encoder.0.conv1", "encoder.0.conv2", "encoder.1.conv1", "encoder.1.conv2", "bottleneck.conv1",
                "bottleneck.conv2", "decoder.1.conv1", "decoder.1.conv2", "decoder.0.conv1", "decoder.0.conv2"],
    "up_conv": ["decoder.1.up", "decoder.0.up"],
    "conv1x1": ["head"],
}
PASSES = ["forward", "backward_data", "backward_weight"]


def has_avx2_fma():
    if platform.machine() != "x86_64":
        return False
    flags = pathlib.Path("/proc/cpuinfo").read_text().split()
    return "avx2" in flags and "fma" in flags


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as folder:
        out = pathlib.Path(folder) / "cpu.json"
        subprocess.run([binary, "--device=cpu", "--batch=1", "--image_size=16", "--base_width=4", "--depth=2",
                        f"--benchmark_out={out}", "--benchmark_out_format=json"],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS="2"), stdout=subprocess.DEVNULL)
        document = json.loads(out.read_text())

    context = document["context"]
    for key in ("cpu_name", "cpu_kernels", "cpu_threads", "cpu_model", "cpu_timing", "commit"):
        assert context.get(key), f"context has no {key}"
    assert context["cpu_threads"] == "2", context["cpu_threads"]
    assert context["cpu_model"].endswith("batch 1, 16x16"), context["cpu_model"]
    measured_peak = has_avx2_fma()
    if measured_peak:
        one, peak = float(context["cpu_fma_peak_1_thread_gflops"]), float(context["cpu_fma_peak_gflops"])
        assert one > 0 and peak > 0, (one, peak)  # not one <= peak: a loaded machine can take a core away

    # Names end in Google Benchmark's /iterations:1/manual_time.
    rows = {"/".join(record["name"].split("/")[:4]): record for record in document["benchmarks"]}
    impl = "cpu_" + context["cpu_kernels"]
    expected = [f"{op}/{layer}/{pass_}/{impl}" for op, layers in LAYERS.items() for layer in layers for pass_ in PASSES]
    missing = [name for name in expected if name not in rows]
    assert not missing, f"missing rows: {missing}"
    assert len(rows) == len(expected), sorted(set(rows) - set(expected))
    for name in expected:
        row = rows[name]
        assert not row.get("error_occurred"), (name, row.get("error_message"))
        assert row["finite"] == 1, f"{name} wrote non-finite values"
        assert row["reps"] >= 3 and row["ms_min"] <= row["ms"] <= row["ms_max"], (name, row)
        assert row["flop"] > 0 and row["gflops"] > 0 and math.isfinite(row["gflops"]), (name, row)
        if measured_peak:
            assert math.isfinite(row["pct_peak"]) and 0 < row["pct_peak"] < 150, (name, row["pct_peak"])
    print(f"{len(expected)} cpu rows, {impl}, peak {'measured' if measured_peak else 'not measured'}: ok")


if __name__ == "__main__":
    main()
