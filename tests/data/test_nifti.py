#!/usr/bin/env python3
"""data/nifti.h against nibabel: volumes made with nibabel are read by tests/data/nifti_tool as the
documented orientation and intensity rules say (voxel (i, j, k) is pixel (row i, column j) of slice
k), and what it writes reads back in nibabel with the input's shape, affine and the expected values.
Bad files give one `error:` line. Usage: test_nifti.py NIFTI_TOOL"""
import json
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

TOOL = sys.argv[1]
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True)


def affine(seed):
    """A non-trivial voxel-to-world matrix: rotation, anisotropic spacing, offset."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    a = np.eye(4)
    a[:3, :3] = q @ np.diag([0.9, 1.3, 2.5])
    a[:3, 3] = rng.normal(size=3) * 20
    return a


def save(array, path, seed=0):
    image = nib.Nifti1Image(array, affine(seed))
    image.header.set_xyzt_units("mm")
    nib.save(image, path)
    return image


def read(path, work):
    out = os.path.join(work, "read")
    result = run("read", path, out)
    check(result.returncode == 0, f"read {path}: {result.stderr.strip()}")
    if result.returncode != 0:
        return None, None
    meta = json.load(open(out + ".json"))
    slices = np.fromfile(out + ".u8", dtype=np.uint8).reshape(meta["depth"], meta["height"], meta["width"], 3)
    return meta, slices


def as_slices(volume):
    """(x, y, slice[, channel]) -> (slice, rows = x, columns = y, channel): the documented orientation."""
    if volume.ndim == 3:
        volume = volume[..., None]
    return np.transpose(volume, (2, 0, 1, 3))


def expect_one_error(result, what):
    lines = result.stderr.strip().splitlines()
    check(result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and result.stdout == "",
          f"{what}: one error line and status 1 (got {result.returncode}: {result.stderr!r} {result.stdout!r})")
    return lines[0] if lines else ""


def main():
    rng = np.random.default_rng(14)
    with tempfile.TemporaryDirectory() as work:
        # uint8, 3-D, not symmetric in any axis: as stored, repeated in the three channels.
        grey = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
        save(grey, os.path.join(work, "grey.nii.gz"), seed=1)
        meta, slices = read(os.path.join(work, "grey.nii.gz"), work)
        check(meta == {"name": "grey", "files": 1, "height": 5, "width": 7, "depth": 3, "channels": 1,
                       "spacing": [0.9, 1.3, 2.5]}, f"grey metadata {meta}")
        expected = as_slices(grey)
        for c in range(3):
            check(np.array_equal(slices[..., c], expected[..., 0]), f"grey channel {c}: voxel (i, j, k) -> slice k row i column j")

        # uint16, 4-D (x, y, slice, channel), uncompressed: the 16-bit TIFF rule, channels in order.
        deep = rng.integers(0, 65536, size=(6, 4, 2, 3), dtype=np.uint16)
        deep[0, 0, 0, :] = [0, 65535, 128]
        save(deep, os.path.join(work, "deep.nii"), seed=2)
        meta, slices = read(os.path.join(work, "deep.nii"), work)
        check((meta["height"], meta["width"], meta["depth"], meta["channels"]) == (6, 4, 2, 3), f"deep shape {meta}")
        scaled = ((255 * as_slices(deep).astype(np.uint64) + 32767) // 65535).astype(np.uint8)
        check(np.array_equal(slices, scaled), "uint16 scaled as a 16-bit TIFF slice")
        check(list(slices[0, 0, 0]) == [0, 255, 0], f"uint16 extremes {slices[0, 0, 0]}")

        # int16 and float32: each channel of the volume from [min, max] to [0, 255], rounded.
        for dtype in (np.int16, np.float32):
            signed = rng.integers(-900, 3000, size=(4, 6, 3)).astype(dtype)
            save(signed, os.path.join(work, "signed.nii.gz"), seed=3)
            meta, slices = read(os.path.join(work, "signed.nii.gz"), work)
            v = as_slices(signed).astype(np.float64)[..., 0]
            want = np.floor(255 * (v - v.min()) / (v.max() - v.min()) + 0.5).astype(np.uint8)
            check(np.array_equal(slices[..., 1], want), f"{np.dtype(dtype).name}: per-volume min-max to 0..255")

        # nnU-Net's one file per channel, found from _0000; a folder lists each case once.
        cases = os.path.join(work, "cases")
        os.mkdir(cases)
        channels = [rng.integers(0, 256, size=(3, 5, 2), dtype=np.uint8) for _ in range(3)]
        for c, channel in enumerate(channels):
            save(channel, os.path.join(cases, f"BRATS_007_{c:04d}.nii.gz"), seed=4)
        save(grey, os.path.join(cases, "single.nii"), seed=1)
        open(os.path.join(cases, "notes.txt"), "w").write("not a volume")
        meta, slices = read(os.path.join(cases, "BRATS_007_0000.nii.gz"), work)
        check(meta["name"] == "BRATS_007" and meta["files"] == 3 and meta["channels"] == 3, f"per-channel files {meta}")
        for c in range(3):
            check(np.array_equal(slices[..., c], as_slices(channels[c])[..., 0]), f"per-channel file {c}")
        listed = run("cases", cases).stdout.split()
        check([os.path.basename(p) for p in listed] == ["BRATS_007_0000.nii.gz", "single.nii"], f"cases {listed}")

        # A label: any non-zero voxel is tumour, on the image's grid.
        label = rng.integers(0, 3, size=(5, 7, 3)).astype(np.int16)
        save(label, os.path.join(work, "grey_label.nii.gz"), seed=1)
        out = os.path.join(work, "label")
        result = run("label", os.path.join(work, "grey.nii.gz"), os.path.join(work, "grey_label.nii.gz"), out)
        check(result.returncode == 0, f"label: {result.stderr}")
        mask = np.fromfile(out + ".u8", dtype=np.uint8).reshape(3, 5, 7)
        check(np.array_equal(mask, (as_slices(label)[..., 0] != 0).astype(np.uint8)), "label: non-zero is tumour")

        # Written masks and probabilities: the input's spatial shape, header and affine; our values.
        for source, shape, seed in (("grey.nii.gz", (5, 7, 3), 1), ("deep.nii", (6, 4, 2), 2)):
            target = os.path.join(work, "out_" + source.replace(".nii", "_mask.nii"))
            result = run("mask", os.path.join(work, source), target)
            check(result.returncode == 0, f"mask {source}: {result.stderr}")
            written = nib.load(target)
            i, j, k = np.indices(shape)
            check(written.shape == shape, f"mask {source} shape {written.shape}")
            check(written.get_data_dtype() == np.uint8, f"mask {source} dtype {written.get_data_dtype()}")
            check(np.allclose(written.affine, affine(seed), atol=1e-5), f"mask {source} affine\n{written.affine}")
            check(int(written.header["sform_code"]) == int(nib.load(os.path.join(work, source)).header["sform_code"]),
                  f"mask {source} sform code")
            data = np.asanyarray(written.dataobj)
            check(np.array_equal(data, ((3 * i + 5 * j + 7 * k) % 4 == 0).astype(np.uint8)), f"mask {source} values")
            check(not [f for f in os.listdir(work) if ".tmp-" in f], "no temporary file left")
        target = os.path.join(work, "probabilities.nii.gz")
        result = run("probabilities", os.path.join(work, "deep.nii"), target)
        written = nib.load(target)
        i, j, k = np.indices((6, 4, 2))
        check(written.get_data_dtype() == np.float32 and written.shape == (6, 4, 2), "probabilities: float32 on the grid")
        check(np.allclose(written.get_fdata(), (i + 10 * j + 100 * k) / 1000.0, atol=1e-7), "probabilities values")

        # Bad input: one line each, nothing written.
        corrupt = os.path.join(work, "corrupt.nii.gz")
        open(corrupt, "wb").write(os.urandom(600))
        expect_one_error(run("read", corrupt, os.path.join(work, "x")), "corrupt file")
        raw = open(os.path.join(work, "deep.nii"), "rb").read()
        open(os.path.join(work, "truncated.nii"), "wb").write(raw[: len(raw) - 50])
        line = expect_one_error(run("read", os.path.join(work, "truncated.nii"), os.path.join(work, "x")), "truncated")
        check("truncated or corrupt NIfTI" in line, f"truncated: {line}")
        save(rng.integers(0, 9, size=(3, 5, 3), dtype=np.uint8), os.path.join(cases, "BRATS_007_0001.nii.gz"), seed=4)
        line = expect_one_error(run("read", os.path.join(cases, "BRATS_007_0000.nii.gz"), os.path.join(work, "x")),
                                "mismatched channel file")
        check("BRATS_007_0001.nii.gz: its grid is 3x5x3 but" in line, f"mismatched channel: {line}")
        save(channels[1], os.path.join(cases, "BRATS_007_0001.nii.gz"), seed=5)
        line = expect_one_error(run("read", os.path.join(cases, "BRATS_007_0000.nii.gz"), os.path.join(work, "x")),
                                "channel file with another affine")
        check("affine differs" in line, f"affine: {line}")
        line = expect_one_error(run("read", os.path.join(cases, "BRATS_007_0002.nii.gz"), os.path.join(work, "x")),
                                "a channel file other than _0000")
        save(rng.integers(0, 2, size=(5, 7, 4), dtype=np.uint8), os.path.join(work, "bad_label.nii.gz"), seed=1)
        line = expect_one_error(run("label", os.path.join(work, "grey.nii.gz"), os.path.join(work, "bad_label.nii.gz"),
                                    os.path.join(work, "x")), "label of another shape")
        check("its grid is 5x7x4 but" in line, f"label shape: {line}")
        save(deep[..., :2], os.path.join(work, "two.nii.gz"))
        line = expect_one_error(run("read", os.path.join(work, "two.nii.gz"), os.path.join(work, "x")), "two channels")
        check("has 2 channels" in line, f"two channels: {line}")
        existing = os.path.join(work, "keep.nii.gz")
        open(existing, "wb").write(b"precious")
        expect_one_error(run("mask", corrupt, existing), "mask of a corrupt input")
        check(open(existing, "rb").read() == b"precious", "a failed write leaves the existing file alone")
        expect_one_error(run("read", os.path.join(work, "missing.nii"), os.path.join(work, "x")), "missing file")
    if failures:
        print(f"{len(failures)} checks failed")
        return 1
    print("all NIfTI checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
