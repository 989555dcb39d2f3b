#!/usr/bin/env python3
"""Markdown summary of a run's benchmark results (docs/performance.md, tools/gpu_check.sh, scripts/measure_cpu.sh).

usage: bench_summary.py PATH... [--out FILE]

Each PATH is a results folder (every *.json and *.jsonl in it is read) or a file. It understands:
  - Google Benchmark JSON from bench_kernels (a {"context", "benchmarks"} object), with names
    op/layer/pass/implementation (bench/bench_kernels.cpp);
  - end-to-end records, {"name", "images_per_s", "ms_per_step", ...}, from `unet bench` and the
    PyTorch twin (a file whose name contains "pytorch" or "torch"): a JSON list of records, an
    object holding such a list, one record, or JSON lines. Missing files or fields leave their
    rows out; nothing here requires any of them.
and writes the card's measured mma.sync peaks (mma_sync/... rows), per layer and pass our kernels
(each version) against the libraries with ratios, the bf16 passes (`<pass>_bf16`: our version 3
against cuDNN in bf16, and against the bf16 dense and the measured mma.sync peaks), memory-bound
kernels against a copy of the same bytes, the cpu rows (implementation cpu_*) against the measured
FMA peak, and the end-to-end rates side by side.
Ratios are our time over the library's: above 1 we are slower. Standard library only.
"""

import argparse
import json
import pathlib
import sys

COMPUTE_OPS = ("conv3x3", "conv1x1", "up_conv")
PEAK_OPS = ("mma_sync",)
BF16 = "_bf16"
PASS_ORDER = {"forward": 0, "backward_data": 1, "backward_weight": 2, "backward": 1, "forward_backward": 0, "step": 0}
UNIT_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


# ---------------------------------------------------------------------------------------------
# Reading


class Entry:
    """One benchmark of bench_kernels: op/layer/pass/impl, its median time or why it was skipped."""

    def __init__(self, record):
        self.op, self.layer, self.pass_, self.impl = record["name"].split("/")[:4]
        self.error = record.get("error_message") if record.get("error_occurred") else None
        self.ms = None
        if self.error is None:
            self.ms = record.get("ms", record["real_time"] * UNIT_TO_MS[record.get("time_unit", "ns")])
        self.flop = record.get("flop", 0.0)
        self.bytes = record.get("bytes", 0.0)
        self.finite = record.get("finite", 1) == 1
        self.label = record.get("label", "")
        self.pct_mma_peak = record.get("pct_mma_peak")  # ours on tensor cores: share of the measured peak

    @property
    def version(self):
        return int(self.impl[len("ours_v"):]) if self.impl.startswith("ours_v") else None

    @property
    def precision(self):
        return "tf32" if self.impl.endswith("_tf32") else "fp32"

    @property
    def library(self):
        return self.impl.startswith(("cudnn_", "cublas_"))

    @property
    def cpu(self):
        return self.impl.startswith("cpu_")

    def gbs(self):
        return self.bytes / (self.ms * 1e-3) * 1e-9 if self.ms else None

    def gflops(self):
        return self.flop / (self.ms * 1e-3) * 1e-9 if self.ms else None


def is_kernel_benchmark(document):
    return isinstance(document, dict) and "benchmarks" in document and "context" in document


def kernel_entries(document):
    """The document's entries keyed by (op, layer, pass, impl): a median aggregate wins over single runs."""
    entries = {}
    for record in document["benchmarks"]:
        if record["name"].count("/") < 3:
            continue
        if record.get("run_type") == "aggregate" and record.get("aggregate_name") != "median":
            continue
        entry = Entry(record)
        key = (entry.op, entry.layer, entry.pass_, entry.impl)
        if key in entries and record.get("run_type") != "aggregate":
            continue
        entries[key] = entry
    return entries


def end_to_end_records(document):
    """Records with images_per_s, from whichever container the file uses."""
    if isinstance(document, dict):
        for key in ("records", "results", "runs", "benchmarks"):
            if isinstance(document.get(key), list):
                return end_to_end_records(document[key])
        document = [document]
    if not isinstance(document, list):
        return []
    return [r for r in document if isinstance(r, dict) and "images_per_s" in r]


def load(path):
    """A JSON document, or a list of JSON lines; None if neither."""
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            return None
    return records


def collect(paths):
    """(kernel documents, end-to-end records by source, notes about unreadable files)."""
    files = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
        elif path.exists():
            files.append(path)
    kernels, end_to_end, notes = [], {}, []
    for path in files:
        document = load(path)
        if document is None:
            notes.append(f"{path.name}: not JSON, skipped")
        elif is_kernel_benchmark(document):
            kernels.append((path.name, document))
        else:
            records = end_to_end_records(document)
            if records:
                end_to_end.setdefault(path.stem, []).extend(records)
    return kernels, end_to_end, notes


# ---------------------------------------------------------------------------------------------
# Formatting


def ms_cell(entry):
    if entry is None:
        return "—"
    if entry.error is not None:
        return "skipped"
    return f"{entry.ms:.3f}" + ("" if entry.finite else " ⚠")


def ratio(ours, library):
    if ours is None or library is None or ours.ms is None or library.ms is None:
        return "—"
    return f"{ours.ms / library.ms:.2f}×"


def fastest(entries):
    measured = [e for e in entries if e.ms is not None]
    return min(measured, key=lambda e: e.ms) if measured else None


def with_impl(entry, fallback):
    """The fastest entry's time and which one it was; if none was measured, why."""
    if entry is None:
        return fallback
    return f"{entry.ms:.3f} ({entry.impl})"


def library_cell(candidates):
    best = fastest(candidates)
    if best is not None:
        return with_impl(best, "—"), best
    return ("skipped" if candidates else "—"), None


def peak(context, key):
    try:
        return float(context[key])
    except (KeyError, ValueError):
        return None


def group(entries, ops, bf16_passes=None):
    """The GPU entries of these ops by (op, layer, pass); the cpu rows have their own table. With
    bf16_passes True or False, only the passes that are (or are not) `<pass>_bf16`."""
    rows = {}
    for (op, layer, pass_, impl), entry in entries.items():
        if bf16_passes is not None and pass_.endswith(BF16) != bf16_passes:
            continue
        if op in ops and not entry.cpu:
            rows.setdefault((op, layer, pass_), {})[impl] = entry
    return rows


def in_model_order(rows):
    """Row keys by each layer's first appearance (bench_kernels registers layers in model order)."""
    layers = list(dict.fromkeys(key[1] for key in rows))

    def pass_rank(pass_):
        plain = pass_[:-len(BF16)] if pass_.endswith(BF16) else pass_
        return PASS_ORDER.get(plain, 9) + (0.5 if plain != pass_ else 0)

    return sorted(rows, key=lambda key: (layers.index(key[1]), pass_rank(key[2]), key[0]))


def percent(value):
    return f"{value:.0f}%" if isinstance(value, (int, float)) else "—"


def peak_table(entries, context):
    """The mma.sync throughput rows: the most our version-3 kernels can reach on the card."""
    rows = [e for (op, *_), e in entries.items() if op in PEAK_OPS]
    if not rows:
        return []
    header = ["instruction", "precision", "ms", "TFLOP/s", "% of dense peak (datasheet)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for e in rows:
        precision = "bf16" if e.pass_.startswith("bf16") else "tf32"
        datasheet = peak(context, f"peak_{precision}_tflops")
        tflops = e.gflops() * 1e-3 if e.gflops() else None
        cells = [e.pass_, precision, ms_cell(e), f"{tflops:.1f}" if tflops else "—",
                 percent(100 * tflops / datasheet) if tflops and datasheet else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def bf16_table(entries, context):
    """The `<pass>_bf16` convolutions: our version 3 against cuDNN in bf16 and the peaks."""
    rows = group(entries, COMPUTE_OPS, bf16_passes=True)
    if not rows:
        return []
    bf16_peak = peak(context, "peak_bf16_tflops")
    header = (["layer", "pass", "GFLOP", "ours v3 ms", "cuDNN bf16 ms (which)", "v3 / cuDNN bf16", "v3 TFLOP/s"] +
              (["% BF16 peak"] if bf16_peak else []) + ["% mma.sync peak"])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    totals = {"ours": 0.0, "library": 0.0}
    complete = True
    for key in in_model_order(rows):
        row = rows[key]
        ours = row.get("ours_v3")
        library_text, library = library_cell([e for e in row.values() if e.library])
        flop = next((e.flop for e in row.values() if e.flop), 0.0)
        tflops = ours.gflops() * 1e-3 if ours and ours.gflops() else None
        cells = [key[1], key[2][:-len(BF16)], f"{flop * 1e-9:.2f}", ms_cell(ours), library_text, ratio(ours, library),
                 f"{tflops:.1f}" if tflops else "—"]
        if bf16_peak:
            cells.append(percent(100 * tflops / bf16_peak) if tflops else "—")
        cells.append(percent(ours.pct_mma_peak) if ours and ours.ms else "—")
        lines.append("| " + " | ".join(cells) + " |")
        if ours and ours.ms and library:
            totals["ours"] += ours.ms
            totals["library"] += library.ms
        else:
            complete = False
    if complete:
        lines += ["", f"All bf16 passes together: ours {totals['ours']:.2f} ms, fastest cuDNN bf16 "
                      f"{totals['library']:.2f} ms ({totals['ours'] / totals['library']:.2f}×)."]
    return lines


def compute_table(entries, context):
    rows = group(entries, COMPUTE_OPS, bf16_passes=False)
    if not rows:
        return []
    versions = sorted({e.version for r in rows.values() for e in r.values() if e.version is not None})
    fp32_peak = peak(context, "peak_fp32_tflops")
    # Our tensor-core versions' share of the measured mma.sync peak (TF32 here), where recorded.
    on_tensor_cores = sorted({e.version for r in rows.values() for e in r.values() if e.pct_mma_peak is not None})
    header = (["layer", "pass", "GFLOP"] + [f"ours v{v} ms" for v in versions] +
              ["library fp32 ms (which)", "library any ms (which)"] + [f"v{v} / fp32 lib" for v in versions] +
              ["best ours / any lib", "best ours TFLOP/s"] + (["% FP32 peak"] if fp32_peak else []) +
              [f"v{v} % mma.sync peak" for v in on_tensor_cores])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    totals = {"ours": 0.0, "fp32": 0.0, "any": 0.0}
    complete = True
    for key in in_model_order(rows):
        row = rows[key]
        ours = {e.version: e for e in row.values() if e.version is not None}
        libraries = [e for e in row.values() if e.library]
        fp32_cell, fp32_best = library_cell([e for e in libraries if e.precision == "fp32"])
        any_cell, any_best = library_cell(libraries)
        best_ours = fastest(ours.values())
        flop = next((e.flop for e in row.values() if e.flop), 0.0)
        cells = [key[1], key[2], f"{flop * 1e-9:.2f}"]
        cells += [ms_cell(ours.get(v)) for v in versions]
        cells += [fp32_cell, any_cell]
        cells += [ratio(ours.get(v), fp32_best) for v in versions]
        cells += [ratio(best_ours, any_best)]
        tflops = best_ours.gflops() * 1e-3 if best_ours else None
        cells += [f"{tflops:.1f}" if tflops else "—"]
        if fp32_peak:
            cells += [f"{100 * tflops / fp32_peak:.0f}%" if tflops else "—"]
        cells += [percent(ours[v].pct_mma_peak) if v in ours and ours[v].ms else "—" for v in on_tensor_cores]
        lines.append("| " + " | ".join(cells) + " |")
        if best_ours and fp32_best and any_best:
            totals["ours"] += best_ours.ms
            totals["fp32"] += fp32_best.ms
            totals["any"] += any_best.ms
        else:
            complete = False
    if complete:
        lines.append("")
        lines.append(f"All passes together: ours (each pass's fastest version) {totals['ours']:.2f} ms, "
                     f"fastest fp32 library {totals['fp32']:.2f} ms ({totals['ours'] / totals['fp32']:.2f}×), "
                     f"fastest library at any precision {totals['any']:.2f} ms "
                     f"({totals['ours'] / totals['any']:.2f}×).")
    return lines


def memory_table(entries, context):
    rows = group(entries, {k[0] for k in entries if k[0] not in COMPUTE_OPS + PEAK_OPS})
    if not rows:
        return []
    versions = sorted({e.version for r in rows.values() for e in r.values() if e.version is not None})
    bandwidth = peak(context, "peak_memory_gbs")
    header = (["op", "layer", "pass", "MB"] + [f"ours v{v} GB/s" for v in versions] +
              ["copy GB/s", "best ours / copy"] + (["% of HBM peak"] if bandwidth else []))
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for key in in_model_order(rows):
        row = rows[key]
        ours = {e.version: e for e in row.values() if e.version is not None}
        copy = row.get("copy")
        best = fastest(ours.values())
        size = next((e.bytes for e in row.values() if e.bytes), 0.0)
        cells = [key[0], key[1], key[2], f"{size * 1e-6:.1f}"]
        for v in versions:
            e = ours.get(v)
            cells.append("—" if e is None else "skipped" if e.ms is None else
                         f"{e.gbs():.0f}" + ("" if e.finite else " ⚠"))
        cells.append("—" if copy is None else "skipped" if copy.ms is None else f"{copy.gbs():.0f}")
        cells.append(f"{100 * best.gbs() / copy.gbs():.0f}%" if best and copy and copy.ms else "—")
        if bandwidth:
            cells.append(f"{100 * best.gbs() / bandwidth:.0f}%" if best else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cpu_table(entries, context):
    """The cpu rows in model order: ms, GFLOP/s and % of the FMA peak per pass, then all passes."""
    rows = {key[:3]: e for key, e in entries.items() if e.cpu}
    if not rows:
        return []
    fma_peak = peak(context, "cpu_fma_peak_gflops")
    header = ["layer", "pass", "GFLOP", "ms", "GFLOP/s"] + (["% FMA peak"] if fma_peak else [])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]

    def cells(layer, pass_, flop, ms, finite=True):
        if ms is None:
            return [layer, pass_, f"{flop * 1e-9:.3f}", "skipped", "—"] + (["—"] if fma_peak else [])
        gflops = flop / (ms * 1e-3) * 1e-9
        out = [layer, pass_, f"{flop * 1e-9:.3f}", f"{ms:.2f}" + ("" if finite else " ⚠"), f"{gflops:.1f}"]
        return out + ([f"{100 * gflops / fma_peak:.0f}%"] if fma_peak else [])

    for key in in_model_order(rows):
        e = rows[key]
        lines.append("| " + " | ".join(cells(key[1], key[2], e.flop, e.ms, e.finite)) + " |")
    measured = [e for e in rows.values() if e.ms is not None]
    if len(measured) == len(rows):
        total = cells("all", "", sum(e.flop for e in measured), sum(e.ms for e in measured))
        lines.append("| " + " | ".join(f"**{c}**" if c else c for c in total) + " |")
    return lines


def problems(entries):
    """Skip reasons (one line each, with how many entries) and entries whose output was not finite."""
    reasons = {}
    for entry in entries.values():
        if entry.error is not None:
            reasons.setdefault(entry.error, []).append("/".join((entry.op, entry.layer, entry.pass_, entry.impl)))
    lines = []
    for reason, names in sorted(reasons.items(), key=lambda item: -len(item[1])):
        count = f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}"
        lines.append(f"- skipped, {count} (e.g. `{names[0]}`): {reason}")
    for key, entry in entries.items():
        if entry.ms is not None and not entry.finite:
            lines.append(f"- ⚠ `{'/'.join(key)}` wrote NaN or Inf ({entry.label})")
    return lines


def kernel_section(name, document):
    context = document["context"]
    entries = kernel_entries(document)
    peaks = ""
    if peak(context, "peak_fp32_tflops"):
        peaks = (f" (peaks: FP32 {peak(context, 'peak_fp32_tflops'):g}, TF32 {peak(context, 'peak_tf32_tflops'):g} "
                 f"TFLOP/s, memory {peak(context, 'peak_memory_gbs'):g} GB/s)")
    lines = [f"## Kernels ({name})", ""]
    card = context.get("card", "none (cpu rows only)" if any(e.cpu for e in entries.values()) else "unknown")
    lines.append(f"- card: {card}{peaks}")
    lines.append(f"- date: {context.get('date', 'unknown')}")
    lines.append(f"- commit: {context.get('commit', 'unknown')}")
    for key in ("peaks", "model", "cudnn", "cublas", "timing"):
        if key in context:
            lines.append(f"- {key}: {context[key]}")
    peaks_measured = peak_table(entries, context)
    if peaks_measured:
        lines += ["", "### mma.sync throughput (bench/mma_peak.h)", "",
                  "Independent mma.sync chains on registers alone, every multiprocessor busy: the most a "
                  "version-3 kernel can reach. `% mma.sync peak` below is a share of it.", ""]
        lines += peaks_measured
    compute = compute_table(entries, context)
    if compute:
        lines += ["", "### Convolutions: ours against cuDNN and cuBLAS", "",
                  "Median ms per pass. `library fp32` is the fastest true-fp32 entry (cuDNN with FMA kernels "
                  "only, NHWC or NCHW; cuBLAS SGEMM), `library any` the fastest at any precision (TF32 "
                  "included). Ratios are our time over the library's: above 1 we are slower.", ""]
        lines += compute
    bf16 = bf16_table(entries, context)
    if bf16:
        lines += ["", "### Convolutions in bf16: ours (version 3) against cuDNN in bf16", "",
                  "Median ms per pass, bf16 activations and weights, fp32 accumulation. cuDNN: the fastest "
                  "of NHWC and NCHW with the algorithm its search finds fastest. Ratios are our time over "
                  "cuDNN's (the issue's target: at most 1.25× on the 64- and 128-channel 3x3 layers, 2× "
                  "elsewhere).", ""]
        lines += bf16
    cpu = cpu_table(entries, context)
    if cpu:
        lines += ["", "### The cpu device's convolutions against the measured FMA peak", ""]
        for key in ("cpu_name", "cpu_kernels", "cpu_threads", "cpu_fma_peak_1_thread_gflops",
                    "cpu_fma_peak_gflops", "cpu_fma_peak", "cpu_model", "cpu_timing"):
            if key in context:
                lines.append(f"- {key}: {context[key]}")
        lines += ["", "Median ms per pass (the weight gradient with the bias gradient); % of the FMA peak at "
                  "cpu_threads threads.", ""]
        lines += cpu
    memory = memory_table(entries, context)
    if memory:
        lines += ["", "### Memory-bound kernels against a copy of the same bytes", "",
                  "GB/s over each op's minimum traffic; `copy` is cudaMemcpyAsync moving as many bytes.", ""]
        lines += memory
    trouble = problems(entries)
    if trouble:
        lines += ["", "### Skipped or suspect", ""] + trouble
    return lines


def mode(record):
    """Training or inference: the two are compared only with their own kind."""
    return "infer" if "infer" in f"{record.get('mode', '')} {record.get('name', '')}".lower() else "train"


def end_to_end_section(end_to_end):
    lines = ["## End to end", ""]
    if not end_to_end:
        return lines + ["No `unet bench` or PyTorch results in this run."]
    torch_best = {}
    for source, records in end_to_end.items():
        for record in records:
            if "torch" in source.lower() and number(record.get("images_per_s")):
                best = torch_best.get(mode(record))
                if best is None or record["images_per_s"] > best["images_per_s"]:
                    torch_best[mode(record)] = record
    header = ["source", "name", "images/s", "ms per step", "time vs fastest PyTorch", "other"]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for source in sorted(end_to_end, key=lambda s: ("torch" in s.lower(), s)):
        for record in end_to_end[source]:
            rate = record.get("images_per_s")
            best = None if "torch" in source.lower() else torch_best.get(mode(record))
            versus = f"{best['images_per_s'] / rate:.2f}×" if best and number(rate) else "—"
            other = ", ".join(f"{k}={v}" for k, v in record.items()
                              if k not in ("name", "images_per_s", "ms_per_step") and isinstance(v, (int, float, str)))
            lines.append("| " + " | ".join([source, str(record.get("name", "?")), fmt(rate, 1),
                                             fmt(record.get("ms_per_step"), 2), versus, other]) + " |")
    for kind, best in sorted(torch_best.items()):
        lines += ["", f"Fastest PyTorch configuration ({'inference' if kind == 'infer' else 'training'}): "
                      f"{best.get('name', '?')}, {best['images_per_s']:.1f} images/s. Ratios are its images/s "
                      "over ours: above 1 we are slower."]
    return lines


def number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def fmt(value, decimals):
    return f"{value:.{decimals}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def summary(paths):
    kernels, end_to_end, notes = collect(paths)
    lines = ["# Benchmark summary", ""]
    if not kernels:
        lines += ["No kernel benchmark results (bench_kernels JSON) in this run.", ""]
    for name, document in kernels:
        lines += kernel_section(name, document) + [""]
    lines += end_to_end_section(end_to_end)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="results folders or files")
    parser.add_argument("--out", help="write the Markdown here instead of standard output")
    args = parser.parse_args(argv)
    text = summary(args.paths)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
