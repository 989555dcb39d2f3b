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


def unet(*args, check=True, env=None):
    result = subprocess.run([UNET, *args], capture_output=True, text=True, env=env)
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
        os.makedirs(cls.dir)
        cls.weights = [os.path.join(cls.dir, f"w{seed}.safetensors") for seed in (1, 2)]
        for seed, path in zip((1, 2), cls.weights):
            unet("init", "--base-width", "4", "--depth", "2", "--seed", str(seed), "--out", path)
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
        p = np.sort(self.probabilities(case, os.path.join(self.dir, "p"), "--weights", self.weights[0]).ravel())
        middle = len(p) // 2
        gaps = [(p[m + 1] - p[m], m) for m in range(middle - len(p) // 8, middle + len(p) // 8)]
        gap, m = max(gaps)
        self.assertGreater(gap, 1e-6)
        threshold = f"{(p[m] + p[m + 1]) / 2:.9f}"
        out = os.path.join(self.dir, "nifti")
        self.predict("--weights", self.weights[0], "--input", case, "--out", out, "--threshold", threshold)
        written = nib.load(os.path.join(out, "case.nii.gz"))
        self.assertEqual(written.shape, (32, 32, 4))
        self.assertEqual(written.get_data_dtype(), np.uint8)
        self.assertTrue(np.allclose(written.affine, self.affine, atol=1e-5), written.affine)
        mask = np.asanyarray(written.dataobj)
        self.assertEqual(set(np.unique(mask)), {0, 1})
        self.assertTrue(np.any(mask != mask.transpose(1, 0, 2)), "a transposition would not show")
        pictures = os.path.join(self.dir, "pictures")
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
        a = self.probabilities(os.path.join(four_d, "BRATS_1.nii.gz"), os.path.join(self.dir, "pa"), "--weights", self.weights[0])
        b = self.probabilities(os.path.join(per_channel, "BRATS_1_0000.nii.gz"), os.path.join(self.dir, "pb"),
                               "--weights", self.weights[0])
        self.assertTrue(np.array_equal(a, b))
        # A folder of per-channel files is one case; a volume of another size comes back on its grid.
        out = os.path.join(self.dir, "folder")
        self.predict("--weights", self.weights[0], "--input", per_channel, "--out", out)
        self.assertEqual(os.listdir(out), ["BRATS_1.nii.gz"])
        self.save(self.volume[:20, :28], os.path.join(self.dir, "small.nii"))
        self.predict("--weights", self.weights[0], "--input", os.path.join(self.dir, "small.nii"), "--out", out)
        self.assertEqual(nib.load(os.path.join(out, "small.nii.gz")).shape, (20, 28, 4))

    def test_mirroring_and_ensembles_average_probabilities(self):
        np = self.np
        case = os.path.join(self.dir, "tta.nii.gz")
        self.save(self.volume, case)
        one = self.probabilities(case, os.path.join(self.dir, "t1"), "--weights", self.weights[0])
        other = self.probabilities(case, os.path.join(self.dir, "t2"), "--weights", self.weights[1])
        twice = self.probabilities(case, os.path.join(self.dir, "t3"), "--weights", self.weights[0], "--weights", self.weights[0])
        both = self.probabilities(case, os.path.join(self.dir, "t4"), "--weights", self.weights[0], "--weights", self.weights[1])
        mirrored = self.probabilities(case, os.path.join(self.dir, "t5"), "--weights", self.weights[0], "--tta")
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
        out = os.path.join(self.dir, "eval_pred")
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
        out = os.path.join(self.dir, "never")
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
        self.assertIn("would overwrite an input", result.stderr)
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
