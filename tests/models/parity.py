#!/usr/bin/env python3
"""The whole training step against PyTorch: the same initial weights and batch, K Adam steps with
`unet step` on each device and with bench/pytorch_unet.py; the first step's logits, the losses and
the final weights must agree norm-wise to 1e-4 relative.

With --precision tf32 or bf16 both sides round at the kernels' rounding points (PyTorch by hand, in
pytorch_unet.py's RoundedConvolution: tf32 the convolutions' operands; bf16 the operands and every
stored activation and activation gradient) and the bound is u, the format's unit roundoff (2^-11
tf32, 2^-8 bf16): an operand whose
fp32 value differs in the last bit between the two (summation order) may round to the neighbouring
tf32 value, which turns an fp32 difference d into one of about sqrt(d u). That also means the
comparison cannot tell rounding points apart that move the result by less than the tf32 effect
itself (the kernel tests check the rounding points exactly). So the reduced precision is also
required to show: ours in tf32 differs from PyTorch in fp32 by at least 10x ours in fp32 does.

usage: parity.py --unet BUILD/tools/unet --work DIR --device cpu --loss bce+dice [--precision tf32|bf16]
"""
import argparse
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "..", "bench")
sys.path.insert(0, BENCH)
import safetensors_io  # noqa: E402

TOLERANCE = 1e-4
UNIT_ROUNDOFF = {"tf32": 2.0 ** -11, "bf16": 2.0 ** -8}


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(command)}\n{result.stdout}{result.stderr}")
    return result.stdout


def relative(ours, theirs):
    ours, theirs = ours.double(), theirs.double()
    return ((ours - theirs).norm() / theirs.norm()).item()


def visibly_reduced(args, common, stem, twin):
    """(ours in the reduced precision, ours in fp32): each first-step logits' distance from PyTorch's in fp32."""
    run([args.unet, "step", *common, "--device", args.device, "--out", stem + "-ours-fp32.safetensors",
         "--trace", stem + "-ours-fp32-trace.safetensors"])
    run(twin + ["step", *common, "--out", stem + "-torch-fp32.safetensors",
                "--trace", stem + "-torch-fp32-trace.safetensors"])
    logits = lambda name: safetensors_io.load(stem + name)[0]["logits"]  # noqa: E731
    fp32 = logits("-torch-fp32-trace.safetensors")
    return relative(logits("-ours-trace.safetensors"), fp32), relative(logits("-ours-fp32-trace.safetensors"), fp32)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unet", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--loss", default="bce+dice")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    stem = os.path.join(args.work, f"{args.device}-{args.loss.replace('+', '_')}-{args.precision}")
    weights, batch = stem + "-init.safetensors", stem + "-batch.safetensors"
    twin = [sys.executable, os.path.join(BENCH, "pytorch_unet.py")]

    run([args.unet, "init", "--base-width", "8", "--depth", "3", "--seed", "7", "--out", weights])
    run(twin + ["batch", "--out", batch, "--n", "2", "--height", "32", "--width", "48", "--seed", "3"])
    common = ["--weights", weights, "--batch", batch, "--steps", str(args.steps), "--lr", str(args.lr),
              "--loss", args.loss]
    precision = ["--precision", args.precision]
    run([args.unet, "step", *common, *precision, "--device", args.device, "--out", stem + "-ours.safetensors",
         "--trace", stem + "-ours-trace.safetensors"])
    run(twin + ["step", *common, *precision, "--out", stem + "-torch.safetensors",
                "--trace", stem + "-torch-trace.safetensors"])
    if args.precision != "fp32":
        visible = visibly_reduced(args, common, stem, twin)

    ours_trace, _ = safetensors_io.load(stem + "-ours-trace.safetensors")
    torch_trace, _ = safetensors_io.load(stem + "-torch-trace.safetensors")
    ours_weights, _ = safetensors_io.load(stem + "-ours.safetensors")
    torch_weights, _ = safetensors_io.load(stem + "-torch.safetensors")
    initial, _ = safetensors_io.load(weights)

    errors = {
        "first-step logits": relative(ours_trace["logits"], torch_trace["logits"]),
        "losses": relative(ours_trace["losses"], torch_trace["losses"]),
    }
    assert sorted(ours_weights) == sorted(torch_weights), "the two weight files name different tensors"
    flat = lambda ws: torch.cat([ws[k].flatten() for k in sorted(ws)])  # noqa: E731
    errors["final weights"] = relative(flat(ours_weights), flat(torch_weights))
    # The weights moved: the comparison is not of two untouched copies.
    errors["update (weights - initial)"] = relative(flat(ours_weights) - flat(initial), flat(torch_weights) - flat(initial))
    print(f"device {args.device}, loss {args.loss}, precision {args.precision}, {args.steps} Adam steps, lr {args.lr}")
    print("losses ours ", [f"{v:.6f}" for v in ours_trace["losses"].tolist()])
    print("losses torch", [f"{v:.6f}" for v in torch_trace["losses"].tolist()])
    failed = False
    for name, error in errors.items():
        limit = 1e-2 if name.startswith("update") else UNIT_ROUNDOFF.get(args.precision, TOLERANCE)
        status = "ok" if error < limit else "FAILED"
        failed |= error >= limit
        print(f"  {name:28s} relative error {error:.2e} (limit {limit:.0e}) {status}")
    if args.precision != "fp32":
        reduced, order = visible
        status = "ok" if reduced > 10 * order else "FAILED"
        failed |= reduced <= 10 * order
        print(f"  logits vs PyTorch fp32: ours {args.precision} {reduced:.2e}, ours fp32 {order:.2e} "
              f"(at least 10x apart) {status}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
