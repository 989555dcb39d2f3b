#!/usr/bin/env python3
"""scripts/bench_summary.py on hand-written fixtures in the recorded formats (fixtures/README.md)."""

import importlib.util
import json
import pathlib
import tempfile
import unittest

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
SCRIPT = HERE.parent.parent / "scripts" / "bench_summary.py"

spec = importlib.util.spec_from_file_location("bench_summary", SCRIPT)
bench_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_summary)


def table(text, first_column):
    """The Markdown table whose header starts with `first_column`, as a list of dicts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))))
    return rows


def row(rows, **match):
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


class FullRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = bench_summary.summary([FIXTURES / "full"])
        cls.convolutions = table(cls.text, "layer")
        cls.memory = table(cls.text, "op")
        cls.end_to_end = table(cls.text, "source")

    def test_fixture_is_labelled_as_one(self):
        context = json.loads((FIXTURES / "full" / "bench_kernels.json").read_text())["context"]
        self.assertIn("made-up values", context["fixture"])

    def test_card_date_and_commit_at_the_top(self):
        self.assertIn("- card: NVIDIA H100 80GB HBM3 (peaks: FP32 67, TF32 495 TFLOP/s, memory 3350 GB/s)", self.text)
        self.assertIn("- date: 2000-01-01T00:00:00+00:00", self.text)
        self.assertIn("- commit: fixture00000", self.text)

    def test_one_row_per_layer_and_pass_in_model_order(self):
        keys = [(r["layer"], r["pass"]) for r in self.convolutions]
        self.assertEqual(keys, [("encoder.0.conv2", "forward"), ("encoder.0.conv2", "backward_data"),
                                ("encoder.0.conv2", "backward_weight"), ("head", "forward"),
                                ("decoder.0.up", "forward")])

    def test_each_version_against_the_best_of_the_libraries(self):
        r = row(self.convolutions, layer="encoder.0.conv2", **{"pass": "forward"})
        self.assertEqual(r["GFLOP"], "77.31")
        self.assertEqual(r["ours v1 ms"], "40.000")
        self.assertEqual(r["ours v2 ms"], "4.000")
        self.assertEqual(r["library fp32 ms (which)"], "2.000 (cudnn_nhwc_fp32)")
        self.assertEqual(r["library any ms (which)"], "0.500 (cudnn_nhwc_tf32)")
        self.assertEqual(r["v1 / fp32 lib"], "20.00×")
        self.assertEqual(r["v2 / fp32 lib"], "2.00×")
        self.assertEqual(r["best ours / any lib"], "8.00×")
        self.assertEqual(r["best ours TFLOP/s"], "19.3")
        self.assertEqual(r["% FP32 peak"], "29%")

    def test_cublas_counts_as_a_library(self):
        r = row(self.convolutions, layer="head")
        self.assertEqual(r["library fp32 ms (which)"], "0.250 (cublas_fp32)")
        self.assertEqual(r["library any ms (which)"], "0.200 (cublas_tf32)")
        self.assertEqual(r["v2 / fp32 lib"], "2.00×")

    def test_a_version_skipped_by_the_budget_has_no_ratio(self):
        r = row(self.convolutions, layer="encoder.0.conv2", **{"pass": "backward_weight"})
        self.assertEqual(r["ours v1 ms"], "skipped")
        self.assertEqual(r["v1 / fp32 lib"], "—")
        self.assertEqual(r["v2 / fp32 lib"], "2.00×")
        self.assertIn("skipped, 1 entry (e.g. `conv3x3/encoder.0.conv2/backward_weight/ours_v1`): "
                      "skipped: the run's time budget (--budget_s=100) was spent", self.text)

    def test_a_non_finite_output_is_flagged(self):
        self.assertEqual(row(self.convolutions, layer="decoder.0.up")["ours v2 ms"], "1.600 ⚠")
        self.assertIn("⚠ `up_conv/decoder.0.up/forward/ours_v2` wrote NaN or Inf", self.text)

    def test_the_whole_model_total(self):
        self.assertIn("ours (each pass's fastest version) 18.10 ms, fastest fp32 library 9.05 ms (2.00×), "
                      "fastest library at any precision 2.40 ms (7.54×)", self.text)

    def test_memory_bound_ops_against_a_copy(self):
        r = row(self.memory, op="relu")
        self.assertEqual(r["MB"], "536.9")
        self.assertEqual(r["ours v2 GB/s"], "2684")
        self.assertEqual(r["copy GB/s"], "2983")
        self.assertEqual(r["best ours / copy"], "90%")
        self.assertEqual(r["% of HBM peak"], "80%")
        self.assertEqual(row(self.memory, op="adam")["best ours / copy"], "88%")

    def test_end_to_end_against_pytorch_of_the_same_kind(self):
        self.assertEqual(row(self.end_to_end, name="train")["time vs fastest PyTorch"], "1.25×")
        self.assertEqual(row(self.end_to_end, name="infer")["time vs fastest PyTorch"], "—")  # no PyTorch inference
        self.assertEqual(row(self.end_to_end, name="eager_fp32")["images/s"], "300.0")
        self.assertIn("Fastest PyTorch configuration (training): compile_channels_last_bf16, 1500.0 images/s", self.text)

    def test_an_unreadable_file_is_noted_not_fatal(self):
        self.assertIn("- broken.json: not JSON, skipped", self.text)


class NoLibraries(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = bench_summary.summary([FIXTURES / "no_libraries"])
        cls.convolutions = table(cls.text, "layer")

    def test_skipped_baselines_show_as_skipped_without_ratios(self):
        r = row(self.convolutions, layer="encoder.0.conv2")
        self.assertEqual(r["ours v2 ms"], "5.000")
        self.assertEqual(r["library fp32 ms (which)"], "skipped")
        self.assertEqual(r["library any ms (which)"], "skipped")
        self.assertEqual(r["v2 / fp32 lib"], "—")
        self.assertEqual(r["best ours / any lib"], "—")

    def test_the_reasons_are_listed_once_each(self):
        self.assertIn("- skipped, 8 entries (e.g. `conv3x3/encoder.0.conv2/forward/cudnn_nhwc_fp32`): cuDNN not found: "
                      "libcudnn.so.9", self.text)
        self.assertIn("- skipped, 2 entries (e.g. `conv1x1/head/forward/cublas_fp32`): cuBLAS not found", self.text)

    def test_no_percent_of_peak_for_an_unknown_card(self):
        self.assertNotIn("% FP32 peak", self.text)
        self.assertNotIn("% of HBM peak", self.text)
        self.assertIn("- peaks: not known for this card", self.text)

    def test_no_totals_when_a_baseline_is_missing(self):
        self.assertNotIn("All passes together", self.text)

    def test_end_to_end_results_may_be_absent(self):
        self.assertIn("No `unet bench` or PyTorch results in this run.", self.text)


class Tolerance(unittest.TestCase):
    def test_an_empty_folder(self):
        with tempfile.TemporaryDirectory() as folder:
            text = bench_summary.summary([folder])
        self.assertIn("No kernel benchmark results", text)
        self.assertIn("No `unet bench` or PyTorch results", text)

    def test_the_record_containers_the_reader_accepts(self):
        record = {"name": "train", "images_per_s": 10.0}
        for document in ([record], {"results": [record]}, record):
            self.assertEqual(bench_summary.end_to_end_records(document), [record])
        self.assertEqual(bench_summary.end_to_end_records({"name": "no rate"}), [])

    def test_missing_fields_print_dashes(self):
        with tempfile.TemporaryDirectory() as folder:
            (pathlib.Path(folder) / "unet_bench.json").write_text('[{"images_per_s": 5}]')
            text = bench_summary.summary([folder])
        self.assertEqual(table(text, "source")[0]["ms per step"], "—")

    def test_the_command_writes_the_file_it_is_given(self):
        with tempfile.TemporaryDirectory() as folder:
            out = pathlib.Path(folder) / "summary.md"
            self.assertEqual(bench_summary.main([str(FIXTURES / "full"), "--out", str(out)]), 0)
            self.assertTrue(out.read_text().startswith("# Benchmark summary"))



class Bf16Rows(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = bench_summary.summary([FIXTURES / "bf16"])
        cls.peaks = table(cls.text, "instruction")
        cls.convolutions = table(cls.text, "layer")  # the first table with a `layer` column: fp32 and TF32
        cls.bf16 = table(cls.text[cls.text.index("### Convolutions in bf16"):], "layer")
        cls.memory = table(cls.text, "op")

    def test_the_measured_mma_peaks_against_the_datasheet(self):
        r = row(self.peaks, instruction="bf16_m16n8k16")
        self.assertEqual((r["precision"], r["ms"], r["TFLOP/s"], r["% of dense peak (datasheet)"]),
                         ("bf16", "2.000", "500.0", "51%"))
        self.assertEqual(row(self.peaks, instruction="tf32_m16n8k8")["TFLOP/s"], "250.0")

    def test_bf16_passes_against_cudnn_bf16_and_both_peaks(self):
        r = row(self.bf16, **{"pass": "forward"})
        self.assertEqual(r["ours v3 ms"], "0.250")
        self.assertEqual(r["cuDNN bf16 ms (which)"], "0.200 (cudnn_nhwc_bf16)")
        self.assertEqual(r["v3 / cuDNN bf16"], "1.25×")
        self.assertEqual(r["v3 TFLOP/s"], "309.2")
        self.assertEqual(r["% BF16 peak"], "31%")
        self.assertEqual(r["% mma.sync peak"], "62%")
        self.assertEqual(row(self.bf16, **{"pass": "backward_data"})["v3 / cuDNN bf16"], "2.00×")
        self.assertIn("All bf16 passes together: ours 0.75 ms, fastest cuDNN bf16 0.45 ms (1.67×).", self.text)

    def test_bf16_passes_stay_out_of_the_fp32_table(self):
        self.assertEqual([(r["layer"], r["pass"]) for r in self.convolutions], [("encoder.0.conv2", "forward")])
        self.assertEqual(self.convolutions[0]["v3 % mma.sync peak"], "62%")
        self.assertIn("All passes together: ours (each pass's fastest version) 0.50 ms", self.text)

    def test_peak_rows_are_not_memory_bound(self):
        self.assertEqual([r["op"] for r in self.memory], ["relu"])
        self.assertEqual(row(self.memory, op="relu")["best ours / copy"], "90%")

    def test_no_mma_column_without_the_peak_rows(self):
        self.assertNotIn("mma.sync", bench_summary.summary([FIXTURES / "full"]))


class CpuRows(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = bench_summary.summary([FIXTURES / "cpu"])
        cls.rows = table(cls.text, "layer")

    def test_the_machine_and_its_measured_peak_at_the_top(self):
        self.assertIn("- card: none (cpu rows only)", self.text)
        self.assertIn("- cpu_name: Fixture CPU", self.text)
        self.assertIn("- cpu_fma_peak_1_thread_gflops: 60.000000", self.text)
        self.assertIn("- cpu_fma_peak_gflops: 100.000000", self.text)

    def test_each_pass_against_the_fma_peak(self):
        r = row(self.rows, layer="encoder.0.conv1", **{"pass": "backward_data"})
        self.assertEqual((r["GFLOP"], r["ms"], r["GFLOP/s"], r["% FMA peak"]), ("2.000", "50.00", "40.0", "40%"))
        self.assertEqual(row(self.rows, layer="head")["ms"], "10.00 ⚠")

    def test_all_passes_together(self):
        r = row(self.rows, layer="**all**")
        self.assertEqual((r["ms"], r["GFLOP/s"], r["% FMA peak"]), ("**200.00**", "**30.5**", "**31%**"))

    def test_not_in_the_gpu_tables(self):
        self.assertNotIn("ours against cuDNN", self.text)
        self.assertNotIn("against a copy", self.text)


if __name__ == "__main__":
    unittest.main()
