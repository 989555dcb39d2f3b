#!/usr/bin/env python3
"""End to end through the `unet` command: phantom data, training on cpu and sim, eval, predict,
report, interrupting and resuming, and every kind of bad input a user can give.

usage: test_cli.py UNET_BINARY   (CTest passes the build's binary)
"""
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


def unet(*args, check=True, env=None):
    result = subprocess.run([UNET, *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"unet {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def metrics_without_time(run):
    with open(os.path.join(run, "metrics.csv")) as f:
        return [",".join(line.strip().split(",")[:-1]) for line in f]


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

    def check_resume(self, device):
        args = ["--data", self.data, *TINY, "--epochs", "2", "--device", device]
        whole, parts = os.path.join(WORK, f"whole-{device}"), os.path.join(WORK, f"parts-{device}")
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
    def test_bench_train_and_infer_write_json_records(self):
        import json
        records = os.path.join(WORK, "bench.jsonl")
        tiny = ["--batch", "1", "--image-size", "16", "--base-width", "4", "--depth", "2", "--steps", "2",
                "--warmup", "2", "--json", records]
        train = unet("bench", "train", "--device", "sim", *tiny)
        self.assertIn("images/s", train.stdout)
        self.assertIn(", graph:", train.stdout)  # sim replays the step as a graph
        unet("bench", "infer", "--device", "cpu", *tiny)
        with open(records) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([r["name"] for r in lines], ["unet_train", "unet_infer"])
        for r in lines:
            for key in ["card", "commit", "date", "images_per_s", "ms_per_step", "peak_memory_bytes", "tflops"]:
                self.assertIn(key, r)
            self.assertGreater(r["images_per_s"], 0)
        self.assertTrue(lines[0]["graph"])


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
        data = os.path.join(WORK, "phantom-nan")
        unet("synth", "--out", data, "--patients", "4", "--slices", "4", "--size", "32")
        weights = os.path.join(WORK, "nan.safetensors")
        unet("init", "--base-width", "4", "--depth", "2", "--out", weights)
        with open(weights, "rb") as f:
            data_bytes = bytearray(f.read())
        data_bytes[-4:] = struct.pack("<f", float("nan"))  # the last parameter
        with open(weights, "wb") as f:
            f.write(data_bytes)
        run = os.path.join(WORK, "r3")
        self.expect(["train", "--data", data, "--image-size", "32", "--base-width", "4", "--depth", "2",
                     "--device", "cpu", "--init", weights, "--val-patients", "1", "--out", run], 1,
                    "the loss is not finite (nan) at step 1")
        self.assertFalse(os.path.exists(os.path.join(run, "last.safetensors")))


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
