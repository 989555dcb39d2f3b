#!/usr/bin/env python3
"""End to end through the `unet` command: phantom data, training on cpu and sim, eval, predict,
report, interrupting and resuming, and every kind of bad input a user can give.

usage: test_cli.py UNET_BINARY   (CTest passes the build's binary)
"""
import csv
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

UNET = None
WORK = None
# A small model that learns the phantom in half a minute on two cores (tumour slices shown three
# times an epoch), and a tiny one for the tests that only need training to run.
SMALL = ["--image-size", "64", "--base-width", "8", "--depth", "3", "--batch", "8", "--lr", "2e-3",
         "--oversample", "3", "--loss", "bce+dice", "--val-patients", "3", "--seed", "1"]
TINY = ["--image-size", "32", "--base-width", "4", "--depth", "2", "--batch", "8", "--lr", "3e-3",
        "--val-patients", "2", "--seed", "1"]


def unet(*args, check=True, env=None, cwd=None, timeout=None):
    result = subprocess.run([UNET, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"unet {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def metrics_without_time(run):
    with open(os.path.join(run, "metrics.csv")) as f:
        return [",".join(line.strip().split(",")[:-1]) for line in f]


def rounding(text):
    """The most a number written as `text` (fixed decimals) can differ from the value it was."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10 ** -decimals * (1 + 1e-9)


def tensors_bytes(path):
    """The data section of a safetensors file (the header holds the run's metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    return data[8 + length:]


def listing(folder):
    return sorted((os.path.relpath(os.path.join(d, f), folder), os.path.getsize(os.path.join(d, f)),
                   os.path.getmtime(os.path.join(d, f))) for d, _, files in os.walk(folder) for f in files)


class Phantom(unittest.TestCase):
    """One trained run shared by the tests that read it."""

    @classmethod
    def setUpClass(cls):
        cls.data = os.path.join(WORK, "phantom")
        unet("synth", "--out", cls.data, "--patients", "10", "--slices", "16", "--size", "64", "--seed", "3")
        cls.data_listing = listing(cls.data)
        cls.run_dir = os.path.join(WORK, "run")
        cls.train = unet("train", "--data", cls.data, *SMALL, "--epochs", "6", "--device", "cpu", "--out", cls.run_dir)

    def test_training_beats_the_no_tumour_baseline(self):
        # Every phantom patient has a lesion, so predicting no tumour anywhere scores 0 per volume.
        with open(os.path.join(self.run_dir, "metrics.csv")) as f:
            rows = [line.strip().split(",") for line in f]
        header, epochs = rows[0], rows[1:]
        best = max(float(row[header.index("val_dice_mean")]) for row in epochs)
        self.assertGreater(best, 0.4, self.train.stdout)
        self.assertLess(float(epochs[-1][header.index("train_loss")]), float(epochs[0][header.index("train_loss")]))

    def test_run_folder_holds_everything(self):
        for name in ["log.jsonl", "metrics.csv", "split.json", "best.safetensors", "last.safetensors",
                     "val_patients.csv"]:
            self.assertTrue(os.path.isfile(os.path.join(self.run_dir, name)), name)
        overlays = os.listdir(os.path.join(self.run_dir, "overlays"))
        self.assertEqual(len(overlays), 3)
        with open(os.path.join(self.run_dir, "log.jsonl")) as f:
            first = f.readline()
        for key in ['"commit"', '"device":"cpu"', '"flags"', '"base-width":8']:
            self.assertIn(key, first)

    def test_log_holds_everything_metrics_csv_and_val_patients_csv_hold(self):
        with open(os.path.join(self.run_dir, "log.jsonl")) as f:
            records = [json.loads(line) for line in f]
        epochs = [r for r in records if r["event"] == "epoch"]
        with open(os.path.join(self.run_dir, "metrics.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(epochs), len(rows))
        for record, row in zip(epochs, rows):
            for column, text in row.items():
                self.assertIn(column, record)
                self.assertAlmostEqual(float(record[column]), float(text), delta=rounding(text), msg=column)
        [patients] = [r for r in records if r["event"] == "val_patients"]
        with open(os.path.join(self.run_dir, "val_patients.csv")) as f:
            table = list(csv.DictReader(f))
        self.assertEqual([p["patient"] for p in patients["patients"]], [row["patient"] for row in table])
        for patient, row in zip(patients["patients"], table):
            for column, text in row.items():
                if column != "patient":
                    self.assertAlmostEqual(float(patient[column]), float(text), delta=rounding(text), msg=column)

    def test_nothing_is_written_into_the_dataset(self):
        self.assertEqual(listing(self.data), self.data_listing)

    def test_eval_on_the_held_out_split(self):
        csv = os.path.join(WORK, "eval.csv")
        result = unet("eval", "--weights", os.path.join(self.run_dir, "best.safetensors"), "--data", self.data,
                      "--image-size", "64", "--split", os.path.join(self.run_dir, "split.json"), "--csv", csv,
                      "--device", "cpu")
        self.assertIn("per-volume Dice  mean", result.stdout)
        self.assertIn("the val patients", result.stdout)
        with open(csv) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "patient,slices,dice,iou,true_voxels,predicted_voxels")
        self.assertEqual(len(lines), 1 + 3 + 1)  # header, three patients, the summary row
        largest = unet("eval", "--weights", os.path.join(self.run_dir, "best.safetensors"), "--data", self.data,
                       "--image-size", "64", "--largest-component", "--device", "cpu")
        self.assertIn("largest 3-D component only", largest.stdout)

    def test_predict_with_and_without_masks(self):
        out = os.path.join(WORK, "predicted")
        patient = os.path.join(self.data, sorted(os.listdir(self.data))[0])
        result = unet("predict", "--weights", os.path.join(self.run_dir, "best.safetensors"), "--input", patient,
                      "--out", out, "--image-size", "64", "--device", "cpu")
        self.assertIn("with ground truth", result.stdout)
        pictures = sorted(os.listdir(out))
        self.assertEqual(len(pictures), 2 * 16)
        with open(os.path.join(out, pictures[0]), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # A folder of images without masks: predictions only.
        loose = os.path.join(WORK, "loose")
        os.makedirs(loose)
        for name in sorted(os.listdir(patient))[:4]:
            if not name.endswith("_mask.tif"):
                shutil.copy(os.path.join(patient, name), loose)
        result = unet("predict", "--weights", os.path.join(self.run_dir, "best.safetensors"), "--input", loose,
                      "--out", os.path.join(WORK, "loose-out"), "--image-size", "64", "--device", "cpu")
        self.assertNotIn("ground truth", result.stdout)

    def test_report_is_one_offline_page_with_the_charts(self):
        unet("report", self.run_dir)
        with open(os.path.join(self.run_dir, "report.html")) as f:
            html = f.read()
        self.assertIn("<svg", html)
        self.assertIn("Per-volume Dice by patient", html)
        self.assertIn("Validation Dice", html)
        self.assertGreaterEqual(html.count("data:image/png;base64,"), 3)
        self.assertNotIn("http://", html.replace("http://www.w3.org/2000/svg", ""))  # nothing to fetch

    def test_a_second_run_into_the_same_folder_is_refused(self):
        result = unet("train", "--data", self.data, *SMALL, "--epochs", "1", "--device", "cpu", "--out", self.run_dir,
                      check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(), [f"error: {self.run_dir} already holds a run (use --resume to continue it, or another --out)"])

    def test_weights_of_another_configuration_are_refused(self):
        wider = [a if a != "8" else "16" for a in SMALL]  # --base-width 16 (and --batch 16)
        result = unet("train", "--data", self.data, *wider, "--epochs", "1",
                      "--device", "cpu", "--init", os.path.join(self.run_dir, "best.safetensors"),
                      "--out", os.path.join(WORK, "other"), check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("weights of another configuration", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1)


class Resume(unittest.TestCase):
    def setUp(self):
        self.data = os.path.join(WORK, "phantom-resume")
        if not os.path.isdir(self.data):
            unet("synth", "--out", self.data, "--patients", "6", "--slices", "12", "--size", "32", "--seed", "5")

    def check_resume(self, device, precision="fp32"):
        args = ["--data", self.data, *TINY, "--epochs", "2", "--device", device, "--precision", precision]
        whole = os.path.join(WORK, f"whole-{device}-{precision}")
        parts = os.path.join(WORK, f"parts-{device}-{precision}")
        unet("train", *args, "--out", whole)
        stopped = unet("train", *args, "--out", parts, "--stop-after-steps", "4", check=False)
        self.assertEqual(stopped.returncode, 130, stopped.stdout + stopped.stderr)
        self.assertIn("continue with: unet train --out", stopped.stdout)
        unet("train", "--out", parts, "--resume")
        self.assertEqual(metrics_without_time(whole), metrics_without_time(parts))
        for name in ["last.safetensors", "best.safetensors"]:
            self.assertEqual(tensors_bytes(os.path.join(whole, name)), tensors_bytes(os.path.join(parts, name)), name)

    def test_interrupted_mid_epoch_then_resumed_is_bit_identical_on_cpu(self):
        self.check_resume("cpu")

    def test_interrupted_mid_epoch_then_resumed_is_bit_identical_on_sim(self):
        self.check_resume("sim")

    def test_a_bf16_run_interrupted_then_resumed_is_bit_identical_on_cpu(self):
        self.check_resume("cpu", "bf16")

    def test_resume_refuses_another_precision_and_keeps_the_runs(self):
        run = os.path.join(WORK, "refuse-precision")
        args = ["--data", self.data, *TINY, "--epochs", "2", "--device", "cpu", "--out", run]
        self.assertEqual(unet("train", *args, "--stop-after-steps", "2", check=False).returncode, 130)
        with open(os.path.join(run, "log.jsonl")) as f:
            start = json.loads(f.readline())
        self.assertEqual((start["precision"], start["flags"]["precision"]), ("fp32", "fp32"))  # cpu's default
        refused = unet("train", "--out", run, "--resume", "--precision", "bf16", check=False)
        self.assertEqual(refused.returncode, 1)
        self.assertEqual(refused.stderr.strip().splitlines(),
                         ['error: --precision "bf16" differs from the run being resumed ("fp32")'])
        # Resumed on another device, the run keeps its precision.
        resumed = unet("train", "--out", run, "--resume", "--device", "sim", "--stop-after-steps", "1", check=False)
        self.assertEqual(resumed.returncode, 130, resumed.stdout + resumed.stderr)
        self.assertIn("in fp32:", resumed.stdout)

    def test_resume_refuses_a_flag_that_makes_another_run(self):
        run = os.path.join(WORK, "refuse-flags")
        args = ["--data", self.data, *TINY, "--epochs", "2", "--device", "cpu", "--out", run]
        self.assertEqual(unet("train", *args, "--stop-after-steps", "2", check=False).returncode, 130)
        for flag, value, saved in [("--lr", "0.5", "0.003"), ("--zoom", "0.2", "0.1"), ("--image-size", "64", "32")]:
            result = unet("train", "--out", run, "--resume", flag, value, check=False)
            self.assertEqual(result.returncode, 1)
            self.assertEqual(result.stderr.strip().splitlines(),
                             [f"error: {flag} {value} differs from the run being resumed ({saved})"])
        same = unet("train", "--out", run, "--resume", "--lr", "3e-3", "--epochs", "3", "--stop-after-steps", "1",
                    check=False)
        self.assertEqual(same.returncode, 130, same.stdout + same.stderr)
        self.assertIn("3 epochs", same.stdout)  # --epochs may change on resume

    def test_ctrl_c_saves_a_resumable_checkpoint(self):
        run = os.path.join(WORK, "ctrl-c")
        process = subprocess.Popen([UNET, "train", "--data", self.data, *TINY, "--epochs", "200", "--device", "cpu",
                                    "--out", run], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(run, "last.safetensors")) and time.time() < deadline:
            time.sleep(0.2)  # wait until the first epoch is done, so the run is well under way
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 130, stdout + stderr)
        self.assertIn("stopped after step", stdout)
        resumed = unet("train", "--out", run, "--resume", "--epochs", "3")
        self.assertIn("resuming at step", resumed.stdout)


class Preprocessing(unittest.TestCase):
    """Weights record their image size and --zscore: eval and predict use them without being told."""

    @classmethod
    def setUpClass(cls):
        cls.data = os.path.join(WORK, "phantom-preprocessing")
        unet("synth", "--out", cls.data, "--patients", "4", "--slices", "8", "--size", "64", "--seed", "3")
        cls.runs = {}
        for name, zscore in [("zscore", ["--zscore"]), ("plain", [])]:
            cls.runs[name] = os.path.join(WORK, f"preprocessing-{name}")
            unet("train", "--data", cls.data, *TINY, *zscore, "--epochs", "1", "--device", "cpu",
                 "--out", cls.runs[name])
        cls.weights = os.path.join(cls.runs["zscore"], "best.safetensors")

    def test_weights_files_record_the_preprocessing(self):
        import json
        for name in ["best.safetensors", "last.safetensors"]:
            with open(os.path.join(self.runs["zscore"], name), "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                metadata = json.loads(f.read(length))["__metadata__"]
            self.assertEqual(json.loads(metadata["unet.preprocessing"]), {"image_size": 32, "zscore": True}, name)

    def test_eval_without_the_flags_scores_as_with_them(self):
        csv = [os.path.join(WORK, f"preprocessing-{k}.csv") for k in range(2)]
        split = ["--split", os.path.join(self.runs["zscore"], "split.json"), "--subset", "all", "--device", "cpu"]
        told = unet("eval", "--weights", self.weights, "--data", self.data, *split, "--image-size", "32", "--zscore",
                    "--csv", csv[0])
        untold = unet("eval", "--weights", self.weights, "--data", self.data, *split, "--csv", csv[1])
        self.assertEqual(untold.stdout.replace(csv[1], ""), told.stdout.replace(csv[0], ""))
        self.assertEqual(untold.stderr, "")
        with open(csv[0]) as a, open(csv[1]) as b:
            self.assertEqual(a.read(), b.read())

    def test_predict_without_the_flags_draws_as_with_them(self):
        patient = os.path.join(self.data, sorted(os.listdir(self.data))[0])
        outs = [os.path.join(WORK, f"preprocessing-predict-{k}") for k in range(2)]
        told = unet("predict", "--weights", self.weights, "--input", patient, "--out", outs[0], "--image-size", "32",
                    "--zscore", "--device", "cpu")
        untold = unet("predict", "--weights", self.weights, "--input", patient, "--out", outs[1], "--device", "cpu")
        self.assertEqual(untold.stdout.replace(outs[1], ""), told.stdout.replace(outs[0], ""))
        pictures = sorted(os.listdir(outs[0]))
        self.assertEqual(pictures, sorted(os.listdir(outs[1])))
        for name in pictures:
            with open(os.path.join(outs[0], name), "rb") as a, open(os.path.join(outs[1], name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)
        with open(os.path.join(outs[1], pictures[0]), "rb") as f:
            self.assertEqual(struct.unpack(">II", f.read(24)[16:24]), (32, 32))  # the PNG's width and height

    def test_a_contradicting_zscore_is_refused(self):
        plain = os.path.join(self.runs["plain"], "best.safetensors")
        for command in [["eval", "--data", self.data], ["predict", "--input", self.data,
                                                        "--out", os.path.join(WORK, "preprocessing-refused")]]:
            result = unet(*command, "--weights", plain, "--zscore", "--device", "cpu", check=False)
            self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
            self.assertEqual(result.stderr.strip().splitlines(),
                             [f"error: --zscore contradicts {plain}, whose model takes slices without it; "
                              "leave --zscore out"])
        self.assertFalse(os.path.exists(os.path.join(WORK, "preprocessing-refused")))

    def test_another_image_size_is_used_with_a_warning(self):
        result = unet("eval", "--weights", self.weights, "--data", self.data, "--image-size", "64", "--device", "cpu")
        self.assertEqual(result.stderr.strip().splitlines(),
                         [f"warning: {self.weights} was trained on 32x32 slices; using 64x64 as --image-size asks "
                          "(figures at another size than training's)"])

    def test_weights_from_before_fall_back_to_the_defaults_with_a_notice(self):
        import json
        with open(self.weights, "rb") as f:
            data = f.read()
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        del header["__metadata__"]["unet.preprocessing"]  # as unet wrote weights before recording it
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        older = os.path.join(WORK, "preprocessing-older.safetensors")
        with open(older, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + data[8 + length:])
        result = unet("eval", "--weights", older, "--data", self.data, "--image-size", "32", "--device", "cpu")
        self.assertEqual(result.stderr.strip().splitlines(),
                         [f"note: {older} records no preprocessing (written before unet recorded it); "
                          "using --image-size 32 without --zscore"])
        self.assertIn("per-volume Dice  mean", result.stdout)

    def test_a_model_of_other_input_channels_is_refused(self):
        weights = os.path.join(WORK, "preprocessing-4-channels.safetensors")
        unet("init", "--in-channels", "4", "--base-width", "4", "--depth", "2", "--image-size", "32", "--out", weights)
        result = unet("eval", "--weights", weights, "--data", self.data, "--device", "cpu", check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(),
                         ["error: the model takes 4 input channels; the slices have 3 (pre-contrast, FLAIR, "
                          "post-contrast)"])


class Bench(unittest.TestCase):
    def test_threads_sets_the_cpu_devices_thread_count(self):
        env = dict(os.environ, OMP_NUM_THREADS="2")
        one = subprocess.run([UNET, "info", "--threads", "1"], env=env, capture_output=True, text=True, check=True)
        self.assertIn(" 1 OpenMP threads", one.stdout)
        two = subprocess.run([UNET, "info"], env=env, capture_output=True, text=True, check=True)
        self.assertIn(" 2 OpenMP threads", two.stdout)
        unet("bench", "train", "--device", "cpu", "--threads", "1", "--batch", "1", "--image-size", "16",
             "--base-width", "4", "--depth", "2", "--steps", "1", "--warmup", "1")
        refused = subprocess.run([UNET, "info", "--threads", "0"], capture_output=True, text=True)
        self.assertEqual(refused.returncode, 2)
        self.assertEqual(refused.stderr, "error: --threads: 0 is below the minimum, 1\n")

    def test_bench_train_and_infer_write_json_records(self):
        import json
        records = os.path.join(WORK, "bench.jsonl")
        tiny = ["--batch", "1", "--image-size", "16", "--base-width", "4", "--depth", "2", "--steps", "2",
                "--warmup", "2", "--json", records]
        train = unet("bench", "train", "--device", "sim", *tiny)
        self.assertIn("images/s", train.stdout)
        self.assertIn(", graph:", train.stdout)  # sim replays the step as a graph
        unet("bench", "infer", "--device", "cpu", *tiny)
        unet("bench", "infer", "--device", "cpu", "--precision", "bf16", *tiny)
        with open(records) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([r["name"] for r in lines], ["unet_train", "unet_infer", "unet_infer"])
        self.assertEqual([r["precision"] for r in lines], ["fp32", "fp32", "bf16"])  # sim's and cpu's default: fp32
        for r in lines:
            for key in ["card", "commit", "date", "images_per_s", "ms_per_step", "peak_memory_bytes", "tflops"]:
                self.assertIn(key, r)
            self.assertGreater(r["images_per_s"], 0)
        self.assertTrue(lines[0]["graph"])


def safetensors_header(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


class Precision(unittest.TestCase):
    def test_a_bf16_step_writes_only_f32_tensors_and_records_its_precision(self):
        weights = os.path.join(WORK, "precision-init.safetensors")
        batch = os.path.join(WORK, "precision-batch.safetensors")
        unet("init", "--base-width", "4", "--depth", "2", "--seed", "2", "--out", weights)
        image = [((i * 37) % 100) / 100 for i in range(16 * 16 * 3)]
        mask = [float(i % 7 == 0) for i in range(16 * 16)]
        header = {"image": {"dtype": "F32", "shape": [1, 16, 16, 3], "data_offsets": [0, 4 * len(image)]},
                  "mask": {"dtype": "F32", "shape": [1, 16, 16, 1],
                           "data_offsets": [4 * len(image), 4 * (len(image) + len(mask))]}}
        text = json.dumps(header).encode()
        with open(batch, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + struct.pack(f"<{len(image) + len(mask)}f", *image, *mask))
        out, trace = os.path.join(WORK, "precision-out.safetensors"), os.path.join(WORK, "precision-trace.safetensors")
        for device in ["cpu", "sim"]:
            unet("step", "--weights", weights, "--batch", batch, "--steps", "2", "--device", device,
                 "--precision", "bf16", "--out", out, "--trace", trace)
            written, traced = safetensors_header(out), safetensors_header(trace)
            self.assertEqual(written["__metadata__"]["unet.precision"], "bf16")
            for file in [written, traced]:
                self.assertEqual({v["dtype"] for k, v in file.items() if k != "__metadata__"}, {"F32"})
            self.assertEqual(traced["logits"]["shape"], [1, 16, 16, 1])
        refused = unet("step", "--weights", weights, "--batch", batch, "--precision", "fp16", "--out", out, check=False)
        self.assertEqual(refused.returncode, 2)
        self.assertEqual(refused.stderr, "error: --precision: 'fp16' is not one of auto, fp32, tf32, bf16\n")


class BadInput(unittest.TestCase):
    """Each mistake is one `error:` line and a non-zero exit; no traceback, no core dump."""

    def expect(self, args, status, message):
        result = unet(*args, check=False)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(result.returncode, status, result.stdout + result.stderr)
        self.assertTrue(lines and lines[-1].startswith("error: "), result.stderr)
        self.assertIn(message, lines[-1])
        self.assertNotIn("terminate called", result.stderr)
        return result

    def test_usage_errors_exit_2(self):
        self.expect(["frobnicate"], 2, "unknown command 'frobnicate'")
        self.expect(["train", "--data", WORK, "--out", "x", "--epoch", "3"], 2, "unknown option '--epoch'")
        self.expect(["train", "--data", WORK, "--out", "x", "--epochs", "three"], 2, "'three' is not an integer")
        self.expect(["train", "--data", WORK, "--out", "x", "--lr", "-1"], 2, "below the minimum")
        self.expect(["train", "--data", WORK, "--out", "x", "--loss", "mse"], 2, "not one of bce, dice, bce+dice")
        self.expect(["train", "--out", "x"], 2, "--data is required")
        self.expect(["eval", "--data", WORK], 2, "--weights is required")
        self.expect(["train", "--data", WORK, "--out", "x", "--val-frac", "0.2", "--val-patients", "2"], 2, "not both")

    def test_missing_and_unreadable_paths(self):
        self.expect(["train", "--data", os.path.join(WORK, "nowhere"), "--out", os.path.join(WORK, "r1"),
                     "--device", "cpu"], 1, "nowhere")
        self.expect(["eval", "--weights", os.path.join(WORK, "none.safetensors"), "--data", WORK], 1, "no such file")
        self.expect(["predict", "--weights", os.path.join(WORK, "none.safetensors"), "--input", WORK,
                     "--out", os.path.join(WORK, "p")], 1, "no such file")
        self.expect(["report", os.path.join(WORK, "nowhere")], 1, "no such run folder")
        self.expect(["train", "--out", os.path.join(WORK, "nothing-here"), "--resume"], 1, "nothing to resume")

    def test_asking_for_cuda_where_there_is_none(self):
        info = unet("info")
        if "cuda              not available" not in info.stdout:
            self.skipTest("this machine has a usable GPU")
        self.expect(["bench", "train", "--device", "cuda", "--batch", "1", "--image-size", "32", "--steps", "1"], 1,
                    "the cuda device is not available")

    def test_a_file_that_is_not_weights(self):
        bogus = os.path.join(WORK, "bogus.safetensors")
        with open(bogus, "wb") as f:
            f.write(b"this is not a model file at all")
        self.expect(["eval", "--weights", bogus, "--data", WORK], 1, "bogus.safetensors")
        truncated = os.path.join(WORK, "truncated.safetensors")
        unet("init", "--base-width", "4", "--depth", "2", "--out", truncated)
        with open(truncated, "rb") as f:
            data = f.read()
        with open(truncated, "wb") as f:
            f.write(data[:-100])
        self.expect(["eval", "--weights", truncated, "--data", WORK], 1, "run past the end")

    def test_an_image_size_the_model_cannot_take(self):
        data = os.path.join(WORK, "phantom-size")
        unet("synth", "--out", data, "--patients", "3", "--slices", "4", "--size", "32")
        self.expect(["train", "--data", data, "--image-size", "36", "--depth", "3", "--base-width", "4",
                     "--device", "cpu", "--out", os.path.join(WORK, "r2")], 1, "not a multiple of 8")

    def test_a_non_finite_loss_stops_training_without_a_checkpoint(self):
        # Weights holding a NaN are refused when loaded (Safety), so the loss is made non-finite by a
        # learning rate beyond float's range: step 1 leaves every parameter infinite, step 2's loss is NaN.
        data = os.path.join(WORK, "phantom-nan")
        unet("synth", "--out", data, "--patients", "4", "--slices", "4", "--size", "32")
        run = os.path.join(WORK, "r3")
        self.expect(["train", "--data", data, "--image-size", "32", "--base-width", "4", "--depth", "2",
                     "--device", "cpu", "--lr", "1e39", "--batch", "4", "--val-patients", "1", "--out", run], 1,
                    "the loss is not finite (nan) at step 2")
        self.assertFalse(os.path.exists(os.path.join(run, "last.safetensors")))


def write_bmp(path, rgb):
    """A 24-bit BMP of an (h, w, 3) uint8 array: rows bottom-up, BGR (what stb_image reads)."""
    h, w, _ = rgb.shape
    pad = b"\0" * ((-w * 3) % 4)
    data = b"".join(rgb[y, :, ::-1].tobytes() + pad for y in range(h - 1, -1, -1))
    with open(path, "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54))
        f.write(struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0) + data)


def read_grey_png(path):
    """An 8-bit grey PNG (as stb_image_write writes `unet predict`'s masks) as a list of rows."""
    import zlib
    with open(path, "rb") as f:
        data = f.read()
    at, idat, width, height = 8, b"", 0, 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 0), (depth, colour)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw, rows, previous = zlib.decompress(idat), [], [0] * width
    for y in range(height):
        kind, line = raw[y * (width + 1)], list(raw[y * (width + 1) + 1:(y + 1) * (width + 1)])
        for x in range(width):
            left = line[x - 1] if x else 0
            up, corner = previous[x], previous[x - 1] if x else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(line)
        previous = line
    return rows


def set_head_bias(weights, value):
    """Rewrites the head's bias in a weights file (safetensors, F32): -100 predicts no tumour anywhere."""
    import json
    with open(weights, "rb") as f:
        data = bytearray(f.read())
    (length,) = struct.unpack("<Q", data[:8])
    begin, end = json.loads(data[8:8 + length])["head.bias"]["data_offsets"]
    data[8 + length + begin:8 + length + end] = struct.pack("<f", value) * ((end - begin) // 4)
    with open(weights, "wb") as f:
        f.write(data)


class Volumes(unittest.TestCase):
    """NIfTI in and out (checked with nibabel), ensembles and mirroring, nnU-Net's summary.json,
    HD95, and K-fold runs with their cross-validation page. Tiny untrained models: seconds each."""

    @classmethod
    def setUpClass(cls):
        import nibabel  # noqa: F401 (python3-nibabel: these tests run with /usr/bin/python3)
        import numpy as np
        cls.np = np
        cls.dir = os.path.join(WORK, "volumes")
        cls.out = os.path.join(WORK, "volumes-out")  # outputs never go into the folder of an input
        os.makedirs(cls.dir)
        cls.weights = [os.path.join(cls.dir, f"w{seed}.safetensors") for seed in (1, 2)]
        for seed, path in zip((1, 2), cls.weights):
            unet("init", "--base-width", "4", "--depth", "2", "--image-size", "32", "--seed", str(seed),
                 "--out", path)
        # (x, y, slice, channel): x is the slice's rows, y its columns. Not symmetric in x and y.
        rng = np.random.default_rng(14)
        i, j = np.indices((32, 32))
        base = (4 * i + j * j // 8) % 256
        cls.volume = np.stack([np.stack([(base + 40 * k + 70 * c + rng.integers(0, 30, (32, 32))) % 256
                                         for c in range(3)], axis=-1) for k in range(4)], axis=2).astype(np.uint8)
        cls.affine = np.array([[0, -0.9, 0, 10], [1.1, 0, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]])

    def save(self, array, path):
        import nibabel as nib
        image = nib.Nifti1Image(array, self.affine)
        image.header.set_xyzt_units("mm")
        nib.save(image, path)

    def predict(self, *args, check=True):
        return unet("predict", "--image-size", "32", "--device", "cpu", *args, check=check)

    def probabilities(self, case, out, *args):
        import nibabel as nib
        self.predict("--input", case, "--out", out, "--probabilities", *args)
        name = os.path.basename(case).split(".")[0].removesuffix("_0000")
        return nib.load(os.path.join(out, name + "_probabilities.nii.gz")).get_fdata()

    def test_nifti_masks_equal_the_slice_path_voxel_for_voxel(self):
        import nibabel as nib
        np = self.np
        case = os.path.join(self.dir, "case.nii.gz")
        self.save(self.volume, case)
        slices = os.path.join(self.dir, "slices")
        os.makedirs(slices)
        for k in range(4):
            write_bmp(os.path.join(slices, f"s{k}.bmp"), self.volume[:, :, k, :])
        # A threshold in a wide gap of the probabilities, near their median: about half the voxels
        # are tumour, and no voxel is within a rounding of the threshold.
        p = np.sort(self.probabilities(case, os.path.join(self.out, "p"), "--weights", self.weights[0]).ravel())
        middle = len(p) // 2
        gaps = [(p[m + 1] - p[m], m) for m in range(middle - len(p) // 8, middle + len(p) // 8)]
        gap, m = max(gaps)
        self.assertGreater(gap, 1e-6)
        threshold = f"{(p[m] + p[m + 1]) / 2:.9f}"
        out = os.path.join(self.out, "nifti")
        self.predict("--weights", self.weights[0], "--input", case, "--out", out, "--threshold", threshold)
        written = nib.load(os.path.join(out, "case.nii.gz"))
        self.assertEqual(written.shape, (32, 32, 4))
        self.assertEqual(written.get_data_dtype(), np.uint8)
        self.assertTrue(np.allclose(written.affine, self.affine, atol=1e-5), written.affine)
        mask = np.asanyarray(written.dataobj)
        self.assertEqual(set(np.unique(mask)), {0, 1})
        self.assertTrue(np.any(mask != mask.transpose(1, 0, 2)), "a transposition would not show")
        pictures = os.path.join(self.out, "pictures")
        self.predict("--weights", self.weights[0], "--input", slices, "--out", pictures, "--threshold", threshold)
        for k in range(4):
            png = np.array(read_grey_png(os.path.join(pictures, f"s{k}_pred.png"))) // 255
            self.assertTrue(np.array_equal(png, mask[:, :, k]), f"slice {k}: NIfTI and slice masks differ")

    def test_channel_files_and_resizing(self):
        import nibabel as nib
        np = self.np
        four_d, per_channel = os.path.join(self.dir, "four"), os.path.join(self.dir, "channels")
        os.makedirs(four_d)
        os.makedirs(per_channel)
        self.save(self.volume, os.path.join(four_d, "BRATS_1.nii.gz"))
        for c in range(3):
            self.save(self.volume[..., c], os.path.join(per_channel, f"BRATS_1_{c:04d}.nii.gz"))
        a = self.probabilities(os.path.join(four_d, "BRATS_1.nii.gz"), os.path.join(self.out, "pa"), "--weights", self.weights[0])
        b = self.probabilities(os.path.join(per_channel, "BRATS_1_0000.nii.gz"), os.path.join(self.out, "pb"),
                               "--weights", self.weights[0])
        self.assertTrue(np.array_equal(a, b))
        # A folder of per-channel files is one case; a volume of another size comes back on its grid.
        out = os.path.join(self.out, "folder")
        self.predict("--weights", self.weights[0], "--input", per_channel, "--out", out)
        self.assertEqual(os.listdir(out), ["BRATS_1.nii.gz"])
        self.save(self.volume[:20, :28], os.path.join(self.dir, "small.nii"))
        self.predict("--weights", self.weights[0], "--input", os.path.join(self.dir, "small.nii"), "--out", out)
        self.assertEqual(nib.load(os.path.join(out, "small.nii.gz")).shape, (20, 28, 4))

    def test_mirroring_and_ensembles_average_probabilities(self):
        np = self.np
        case = os.path.join(self.dir, "tta.nii.gz")
        self.save(self.volume, case)
        one = self.probabilities(case, os.path.join(self.out, "t1"), "--weights", self.weights[0])
        other = self.probabilities(case, os.path.join(self.out, "t2"), "--weights", self.weights[1])
        twice = self.probabilities(case, os.path.join(self.out, "t3"), "--weights", self.weights[0], "--weights", self.weights[0])
        both = self.probabilities(case, os.path.join(self.out, "t4"), "--weights", self.weights[0], "--weights", self.weights[1])
        mirrored = self.probabilities(case, os.path.join(self.out, "t5"), "--weights", self.weights[0], "--tta")
        self.assertLess(np.abs(twice - one).max(), 1e-6)
        self.assertLess(np.abs(both - (one + other) / 2).max(), 1e-6)
        self.assertGreater(np.abs(mirrored - one).max(), 1e-4)
        help_text = unet("predict", "--help").stdout
        for flag in ["--tta", "--probabilities", "(repeatable)"]:
            self.assertIn(flag, help_text)

    def test_eval_of_imagests_labelsts_with_summary_json_and_hd95(self):
        import json
        np = self.np
        root = os.path.join(self.dir, "nnunet")
        os.makedirs(os.path.join(root, "imagesTs"))
        os.makedirs(os.path.join(root, "labelsTs"))
        label = np.zeros((32, 32, 4), np.uint8)
        label[5:20, 8:14, 1:3] = 1
        self.save(self.volume, os.path.join(root, "imagesTs", "case_a_0000.nii.gz"))
        self.save(label, os.path.join(root, "labelsTs", "case_a.nii.gz"))
        self.save(self.volume[::-1].copy(), os.path.join(root, "imagesTs", "case_b_0000.nii.gz"))
        self.save(np.zeros_like(label), os.path.join(root, "labelsTs", "case_b.nii.gz"))
        summary = os.path.join(self.dir, "summary.json")
        result = unet("eval", "--weights", self.weights[0], "--data", root, "--image-size", "32", "--device", "cpu",
                      "--summary-json", summary, "--hd95")
        cases = json.load(open(summary))["metric_per_case"]
        self.assertEqual([c["prediction_file"] for c in cases], ["case_a", "case_b"])
        # The counts agree with predict's mask of the same case and the label, counted here.
        out = os.path.join(self.out, "eval_pred")
        self.predict("--weights", self.weights[0], "--input", os.path.join(root, "imagesTs", "case_a_0000.nii.gz"), "--out", out)
        import nibabel as nib
        mask = np.asanyarray(nib.load(os.path.join(out, "case_a.nii.gz")).dataobj).astype(bool)
        a = cases[0]["metrics"]["1"]
        self.assertEqual((a["TP"], a["FP"], a["FN"]), (int((mask & (label == 1)).sum()), int((mask & (label == 0)).sum()),
                                                       int((~mask & (label == 1)).sum())))
        self.assertEqual(a["TP"] + a["FP"] + a["FN"] + a["TN"], 32 * 32 * 4)
        self.assertAlmostEqual(a["Dice"], 2 * a["TP"] / (2 * a["TP"] + a["FP"] + a["FN"]))
        self.assertIn("HD95 (voxels, mm)", result.stdout)
        # A model that predicts nothing: case_b has neither tumour nor prediction. The table scores
        # it 1; summary.json, as nnU-Net v2, null and outside the mean. HD95 of case_a is undefined.
        silent = os.path.join(self.dir, "silent.safetensors")
        shutil.copy(self.weights[0], silent)
        set_head_bias(silent, -100.0)
        result = unet("eval", "--weights", silent, "--data", root, "--image-size", "32", "--device", "cpu",
                      "--summary-json", summary, "--hd95")
        self.assertIn("(1 without tumour or prediction, scored 1)", result.stdout)
        self.assertIn("per-volume Dice  mean 0.5000", result.stdout)  # (0 + 1) / 2
        self.assertIn("(1 left out: tumour in only one of prediction and truth)", result.stdout)
        loaded = json.load(open(summary))
        self.assertIsNone(loaded["metric_per_case"][1]["metrics"]["1"]["Dice"])
        self.assertEqual(loaded["metric_per_case"][1]["metrics"]["1"]["HD95"], 0)
        self.assertIsNone(loaded["metric_per_case"][0]["metrics"]["1"]["HD95"])
        self.assertEqual(loaded["mean"]["1"]["Dice"], 0.0)  # case_a's 0 alone
        self.assertEqual(loaded["foreground_mean"]["Dice"], 0.0)

    def test_bad_volumes_and_weights_that_disagree(self):
        corrupt = os.path.join(self.dir, "corrupt.nii.gz")
        with open(corrupt, "wb") as f:
            f.write(os.urandom(400))
        out = os.path.join(self.out, "never")
        for args in (["--weights", self.weights[0], "--input", corrupt],
                     ["--weights", self.weights[0], "--input", os.path.join(self.dir, "missing.nii.gz")]):
            result = self.predict(*args, "--out", out, check=False)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
            self.assertTrue(result.stderr.startswith("error: "), result.stderr)
        self.assertFalse(os.path.exists(out))
        grey = os.path.join(self.dir, "grey.safetensors")
        unet("init", "--base-width", "4", "--depth", "2", "--in-channels", "1", "--out", grey)
        self.save(self.volume, os.path.join(self.dir, "fine.nii.gz"))
        result = self.predict("--weights", self.weights[0], "--weights", grey, "--input",
                              os.path.join(self.dir, "fine.nii.gz"), "--out", out, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(),
                         [f"error: {grey}: its model takes 1 input channels but {self.weights[0]}'s takes 3 "
                          "(an ensemble's weights must agree on their preprocessing)"])
        self.assertFalse(os.path.exists(out))
        wide = os.path.join(self.dir, "wide.safetensors")
        unet("init", "--base-width", "4", "--depth", "2", "--image-size", "64", "--out", wide)
        result = self.predict("--weights", self.weights[0], "--weights", wide, "--input",
                              os.path.join(self.dir, "fine.nii.gz"), "--out", out, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(),
                         [f"error: {wide}: trained on 64x64 slices but {self.weights[0]} on 32x32 "
                          "(an ensemble's weights must agree on their preprocessing)"])
        self.assertFalse(os.path.exists(out))
        # A label of another shape; an output folder that is the input's own.
        root = os.path.join(self.dir, "mismatch")
        os.makedirs(os.path.join(root, "imagesTs"))
        os.makedirs(os.path.join(root, "labelsTs"))
        self.save(self.volume, os.path.join(root, "imagesTs", "x.nii.gz"))
        self.save(self.np.zeros((32, 32, 5), self.np.uint8), os.path.join(root, "labelsTs", "x.nii.gz"))
        result = unet("eval", "--weights", self.weights[0], "--data", root, "--image-size", "32", "--device", "cpu",
                      check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("its grid is 32x32x5 but", result.stderr)
        before = listing(os.path.join(root, "imagesTs"))
        result = self.predict("--weights", self.weights[0], "--input", os.path.join(root, "imagesTs"),
                              "--out", os.path.join(root, "imagesTs"), check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("nothing is written into the data a command reads", result.stderr)
        self.assertEqual(listing(os.path.join(root, "imagesTs")), before)

    def test_folds_cover_the_patients_and_make_one_report(self):
        import json
        data = os.path.join(self.dir, "phantom")
        unet("synth", "--out", data, "--patients", "7", "--slices", "2", "--size", "32", "--seed", "4")
        runs, validated = [], []
        for fold in range(3):
            run = os.path.join(self.dir, f"fold_{fold}")
            unet("train", "--data", data, *TINY[:-4], "--folds", "3", "--fold", str(fold), "--test-patients", "1",
                 "--seed", "1", "--epochs", "1", "--device", "cpu", "--out", run)
            split = json.load(open(os.path.join(run, "split.json")))
            self.assertEqual((split["folds"], split["fold"]), (3, fold))
            self.assertFalse(set(split["val"]) & set(split["train"]))
            self.assertFalse(set(split["test"]) & (set(split["val"]) | set(split["train"])))
            validated += split["val"]
            runs.append(run)
        self.assertEqual(len(validated), 6)
        self.assertEqual(len(set(validated)), 6)  # disjoint, covering the 6 patients outside the test set
        page = os.path.join(self.dir, "cv.html")
        result = unet("report", *runs, "--out", page)
        self.assertIn("3 folds, 6 validation patients", result.stdout)
        self.assertIn("3 of 3 folds", open(page).read())
        result = unet("eval", "--weights", os.path.join(runs[1], "best.safetensors"), "--data", data, "--image-size", "32",
                      "--split", os.path.join(runs[1], "split.json"), "--subset", "val", "--device", "cpu")
        self.assertIn("(fold 1 of 3)", result.stdout)
        for args, message in ((["--folds", "3", "--fold", "3"], "--fold: 3 is not in 0..2 (--folds 3)"),
                              (["--folds", "3", "--fold", "0", "--val-patients", "2"], "--folds chooses the validation")):
            bad = os.path.join(self.dir, "bad_fold")
            result = unet("train", "--data", data, "--device", "cpu", "--out", bad, *args, check=False)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1)
            self.assertIn(message, result.stderr)
            self.assertFalse(os.path.exists(bad))
        result = unet("report", runs[0], runs[0], check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("fold 0 again", result.stderr)
        self.assertIn("--folds K", unet("train", "--help").stdout)
def poisoned_weights(path):
    """A tiny model's weights with one NaN (the last parameter in the file)."""
    unet("init", "--base-width", "4", "--depth", "2", "--out", path)
    with open(path, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(struct.pack("<f", float("nan")))


def replaced(args, flag, value):
    at = args.index(flag) + 1
    return args[:at] + [value] + args[at + 1:]


def dead_pid():
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class Safety(unittest.TestCase):
    """What no command may do: mix two runs in one folder, take in non-finite weights, write into a
    dataset, hang on a FIFO, replace a file of another kind, or leave a folder that cannot be retried,
    resumed or reported (docs/training.md, docs/data.md)."""

    @classmethod
    def setUpClass(cls):
        cls.data = os.path.join(WORK, "safety-data")
        unet("synth", "--out", cls.data, "--patients", "6", "--slices", "8", "--size", "32", "--seed", "7")
        cls.args = ["--data", cls.data, *TINY, "--device", "cpu"]  # 4 training patients: 4 steps an epoch
        cls.one_step_args = replaced(cls.args, "--batch", "32")  # the whole epoch in one step

    def folder(self, name):
        path = os.path.join(WORK, "safety-" + name)
        shutil.rmtree(path, ignore_errors=True)
        return path

    def stopped_run(self, name):
        """A run stopped in its second epoch: last.safetensors at step 5, best.safetensors of epoch 1."""
        run = self.folder(name)
        stopped = unet("train", *self.args, "--epochs", "2", "--out", run, "--stop-after-steps", "5", check=False)
        self.assertEqual(stopped.returncode, 130, stopped.stdout + stopped.stderr)
        return run

    def one_error(self, result, status=1):
        lines = result.stderr.strip().splitlines()
        self.assertEqual(result.returncode, status, result.stdout + result.stderr)
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("error: "), result.stderr)
        return lines[0]

    def test_a_second_writer_of_a_run_folder_is_refused_with_the_holders_pid(self):
        run = self.folder("two-writers")
        first = subprocess.Popen([UNET, "train", *self.args, "--epochs", "500", "--out", run],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while not os.path.exists(os.path.join(run, "log.jsonl")) and time.time() < deadline:
                time.sleep(0.1)
            self.assertTrue(os.path.exists(os.path.join(run, "log.jsonl")), "the first run did not start")
            first.send_signal(signal.SIGSTOP)  # holds the lock, writes nothing while the others try
            before = listing(run)
            for args in (["train", *self.args, "--epochs", "1", "--out", run], ["train", "--out", run, "--resume"]):
                line = self.one_error(unet(*args, check=False))
                self.assertEqual(line, f"error: {run} is in use by another unet process (PID {first.pid}); "
                                       "a run folder has one writer at a time")
            self.assertEqual(listing(run), before)
        finally:
            first.send_signal(signal.SIGCONT)
            first.send_signal(signal.SIGINT)
            first.wait(timeout=60)

    def test_weights_holding_a_nan_are_refused_by_train_eval_and_predict(self):
        weights = os.path.join(WORK, "safety-nan.safetensors")
        poisoned_weights(weights)
        run = self.folder("nan-init")
        patient = os.path.join(self.data, sorted(os.listdir(self.data))[0])
        for args in (["train", *self.args, "--init", weights, "--out", run],
                     ["eval", "--weights", weights, "--data", self.data, "--image-size", "32", "--device", "cpu"],
                     ["predict", "--weights", weights, "--input", patient, "--out", self.folder("nan-predict"),
                      "--image-size", "32", "--device", "cpu"]):
            line = self.one_error(unet(*args, check=False))
            self.assertRegex(line, r"tensor '[a-z0-9_.]+' holds 1 non-finite value \(NaN or infinity\)", args[0])
        self.assertFalse(os.path.exists(run))  # refused before the run folder was made

    def test_parameters_that_stop_being_finite_stop_training_before_a_checkpoint(self):
        # One step an epoch (--batch 32), a learning rate beyond float's range: step 1's loss is
        # finite but leaves every parameter infinite or NaN; only Adam's flag can tell.
        run = self.folder("nan-parameters")
        line = self.one_error(unet("train", *replaced(self.one_step_args, "--lr", "1e39"), "--epochs", "2",
                                   "--out", run, check=False))
        self.assertEqual(line, "error: a parameter is not finite (nan or inf) after step 1; stopped, no checkpoint "
                               "was written (check --init, or lower --lr)")
        self.assertFalse(os.path.exists(os.path.join(run, "last.safetensors")))
        self.assertFalse(os.path.exists(os.path.join(run, "best.safetensors")))

    def test_a_start_that_failed_before_its_first_checkpoint_can_be_started_again(self):
        run = self.folder("failed-start")
        unet("train", *replaced(self.one_step_args, "--lr", "1e39"), "--epochs", "2", "--out", run, check=False)
        self.assertTrue(os.path.exists(os.path.join(run, "log.jsonl")))
        line = self.one_error(unet("train", "--out", run, "--resume", check=False))
        self.assertIn("the run stopped before its first checkpoint: start it again without --resume", line)
        again = unet("train", *self.one_step_args, "--epochs", "1", "--out", run)
        self.assertIn(f"note: {run} held a start that stopped before its first checkpoint; starting it again",
                      again.stdout)
        import json
        with open(os.path.join(run, "log.jsonl")) as f:
            events = [json.loads(line)["event"] for line in f]
        self.assertEqual(events, ["start", "epoch", "val_patients", "end"])  # the failed start's records are gone

    def test_no_command_writes_into_the_data_it_reads(self):
        data = self.folder("own-data")  # its own: where writing into the data is not refused, it breaks it
        unet("synth", "--out", data, "--patients", "3", "--slices", "4", "--size", "32")
        before = listing(data)
        patient = os.path.join(data, sorted(os.listdir(data))[0])
        weights = os.path.join(WORK, "safety-weights.safetensors")
        unet("init", "--base-width", "4", "--depth", "2", "--out", weights)
        args = ["--data", data, *replaced(self.args, "--val-patients", "1")[2:], "--epochs", "1"]
        cases = [
            (["train", *args, "--out", os.path.join(data, "run")], "is inside --data"),
            (["train", *args, "--out", data + "/"], "is --data"),
            (["train", *args, "--out", os.path.join(patient, "..", "PHANTOM_P002")], "is inside --data"),
            (["predict", "--weights", weights, "--input", patient, "--out", patient, "--image-size", "32",
              "--device", "cpu"], "is --input"),
            (["predict", "--weights", weights, "--input", os.path.join(patient, os.listdir(patient)[0]),
              "--out", os.path.join(patient, "pictures"), "--image-size", "32", "--device", "cpu"],
             "is inside the folder of --input"),
            (["eval", "--weights", weights, "--data", data, "--image-size", "32", "--device", "cpu",
              "--csv", os.path.join(patient, "scores.csv")], "is inside --data"),
        ]
        for command, message in cases:
            self.assertIn(message, self.one_error(unet(*command, check=False)), command)
        self.assertEqual(listing(data), before)

    def test_a_fifo_in_the_data_is_refused_or_skipped_without_hanging(self):
        data = self.folder("fifo-data")
        unet("synth", "--out", data, "--patients", "2", "--slices", "4", "--size", "32")
        patient = os.path.join(data, sorted(os.listdir(data))[0])
        fifo = os.path.join(patient, os.path.basename(patient) + "_9.tif")
        os.mkfifo(fifo)  # a slice whose image nothing will ever write: opening it would wait forever
        shutil.copy(os.path.join(patient, os.path.basename(patient) + "_1_mask.tif"), fifo[:-4] + "_mask.tif")
        line = self.one_error(unet("dataset", "--data", data, check=False, timeout=60))
        self.assertEqual(line, f"error: {fifo}: not a regular file (a FIFO, socket or device)")
        skipped = unet("dataset", "--data", data, "--skip-bad", timeout=60)
        self.assertIn("skipped       2 (--skip-bad)", skipped.stdout)  # the FIFO, and its mask left alone
        weights = os.path.join(WORK, "safety-fifo.safetensors")
        unet("init", "--base-width", "4", "--depth", "2", "--image-size", "32", "--out", weights)
        line = self.one_error(unet("predict", "--weights", weights, "--input", fifo, "--out", self.folder("fifo-out"),
                                   "--image-size", "32", "--device", "cpu", check=False, timeout=60))
        self.assertIn("not a regular file", line)
        line = self.one_error(unet("eval", "--weights", fifo, "--data", data, check=False, timeout=60))
        self.assertIn("not a regular file", line)

    def test_resume_checks_best_weights_before_the_first_step_and_says_how_to_recover(self):
        run = self.stopped_run("corrupt-best")
        best = os.path.join(run, "best.safetensors")
        with open(best, "r+b") as f:
            f.truncate(os.path.getsize(best) - 100)
        before = listing(run)
        line = self.one_error(unet("train", "--out", run, "--resume", check=False))
        self.assertIn(f"{best}: tensor '", line)
        self.assertIn("run past the end of the data", line)
        self.assertIn(f"; to resume, remove {best} (the best weights are then chosen among the epochs still to come)",
                      line)
        self.assertEqual([entry for entry in listing(run) if entry[0] != ".lock"],
                         [entry for entry in before if entry[0] != ".lock"])  # no step was taken
        os.remove(best)
        resumed = unet("train", "--out", run, "--resume")
        self.assertIn("is gone; the best weights are chosen among the epochs still to come", resumed.stdout)
        self.assertTrue(os.path.isfile(best))

    def test_resume_works_from_another_folder_and_with_the_data_as_an_absolute_path(self):
        run = self.folder("elsewhere")
        relative = ["--data", os.path.basename(self.data), *self.args[2:]]
        stopped = unet("train", *relative, "--epochs", "2", "--out", os.path.basename(run), "--stop-after-steps", "2",
                       cwd=WORK, check=False)
        self.assertEqual(stopped.returncode, 130, stopped.stdout + stopped.stderr)
        self.assertIn(f"continue with: unet train --out {run} --resume", stopped.stdout)
        again = unet("train", "--out", run, "--resume", "--data", self.data, "--stop-after-steps", "2", cwd="/",
                     check=False)
        self.assertEqual(again.returncode, 130, again.stdout + again.stderr)
        unet("train", "--out", run, "--resume", cwd="/")

    def test_stale_checkpoint_temporaries_are_removed_when_the_folder_is_taken(self):
        run = self.stopped_run("temporaries")
        stale = os.path.join(run, f"last.safetensors.tmp-{dead_pid()}")
        live = os.path.join(run, f"best.safetensors.tmp-{os.getpid()}")  # a writer that is still running
        for path in (stale, live):
            with open(path, "wb") as f:
                f.write(b"\0" * 4096)
        resumed = unet("train", "--out", run, "--resume", "--stop-after-steps", "1", check=False)
        self.assertEqual(resumed.returncode, 130, resumed.stdout + resumed.stderr)
        self.assertIn(f"note: removed 1 stale temporary file left by interrupted writes ({os.path.basename(stale)})",
                      resumed.stdout)
        self.assertFalse(os.path.exists(stale))
        self.assertTrue(os.path.exists(live))

    def test_a_partial_last_log_line_is_flagged_by_report_and_repaired_by_resume(self):
        import json
        run = self.stopped_run("partial-log")
        log = os.path.join(run, "log.jsonl")
        with open(log) as f:
            lines = len(f.readlines())
        with open(log, "a") as f:
            f.write('{"event":"epo')  # a kill in the middle of an append
        report = unet("report", run)
        self.assertIn(f"warning: {run}: log.jsonl line {lines + 1} is not valid JSON (an interrupted write?)",
                      report.stderr)
        resumed = unet("train", "--out", run, "--resume", "--stop-after-steps", "1", check=False)
        self.assertEqual(resumed.returncode, 130, resumed.stdout + resumed.stderr)
        self.assertIn("note: log.jsonl: removed a partial last line (13 bytes) left by an interrupted write",
                      resumed.stdout)
        with open(log) as f:
            for line in f:
                json.loads(line)
        self.assertEqual(unet("report", run).stderr, "")

    def test_output_flags_replace_only_a_file_of_their_own_kind(self):
        patient = os.path.join(self.data, sorted(os.listdir(self.data))[0])
        image = os.path.join(WORK, "safety-image.tif")
        shutil.copy(os.path.join(patient, sorted(os.listdir(patient))[0]), image)
        with open(image, "rb") as f:
            image_bytes = f.read()
        init = ["init", "--base-width", "4", "--depth", "2", "--out", image]
        self.assertIn(f"{image}: exists and is not a unet weights file; refusing to replace it (--force replaces it "
                      "anyway)", self.one_error(unet(*init, check=False)))
        with open(image, "rb") as f:
            self.assertEqual(f.read(), image_bytes)
        unet(*init, "--force")
        unet(*init)  # now a weights file: replaced without --force
        notes = os.path.join(WORK, "safety-notes.txt")
        for command, kind in ((["eval", "--weights", image, "--data", self.data, "--image-size", "32",
                                "--device", "cpu", "--csv", notes], "a table unet eval wrote"),
                              (["report", self.stopped_run("report-out"), "--out", notes], "a page unet report wrote")):
            with open(notes, "w") as f:
                f.write("my notes\n")
            self.assertIn(f"{notes}: exists and is not {kind}", self.one_error(unet(*command, check=False)))
            with open(notes) as f:
                self.assertEqual(f.read(), "my notes\n")
            unet(*command, "--force")
            unet(*command)  # its own kind now

    def test_a_safetensors_header_beyond_the_limit_is_refused_before_it_is_read(self):
        huge = os.path.join(WORK, "safety-huge.safetensors")
        with open(huge, "wb") as f:
            f.write(struct.pack("<Q", 150 << 20))
            f.truncate(300 << 20)  # sparse: 300 MiB that cost no disk
        errors = os.path.join(WORK, "safety-huge.err")
        try:
            with open(errors, "w") as stderr:
                process = subprocess.Popen([UNET, "eval", "--weights", huge, "--data", self.data, "--device", "cpu"],
                                           stdout=subprocess.DEVNULL, stderr=stderr)
                _, status, usage = os.wait4(process.pid, 0)  # its own peak memory, as the kernel counted it
                process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            os.remove(huge)
        with open(errors) as f:
            message = f.read()
        self.assertEqual(process.returncode, 1, message)
        self.assertIn(f"error: {huge}: not a safetensors file (header length 157286400 exceeds 100 MiB)", message)
        self.assertLess(usage.ru_maxrss * 1024, 100 << 20)  # the 300 MiB file was not read


def main():
    global UNET, WORK
    UNET = os.path.abspath(sys.argv.pop(1))
    WORK = tempfile.mkdtemp(prefix="unet-cli-")
    try:
        unittest.main(verbosity=2)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
