#!/usr/bin/env python3
"""The PyTorch twin of unet-cuda's U-Net: the same module names, layouts, initialisation bounds, loss
and optimizer, so that weights move both ways and a training step can be compared number for number.

    python3 bench/pytorch_unet.py step --weights W.safetensors --batch B.safetensors --steps K \\
        --lr LR --loss bce --out OUT.safetensors --trace T.safetensors [--precision fp32|tf32|bf16]
        K Adam steps on one fixed batch: what `unet step` does (the parity test compares the two);
        tf32 and bf16 emulate the kernels' rounding by hand in each convolution (RoundedConvolution).
    python3 bench/pytorch_unet.py batch --out B.safetensors --n N --height H --width W [--seed S]
        a random batch (images in [0, 1], masks of random discs) in the layout `unet step` reads.
    python3 bench/pytorch_unet.py bench --batch 16 --image-size 256 --steps 20 [--configs ...] [--json F]
        images/s of the same training step (BCE, Adam) on synthetic data already on the device, in
        the configurations a PyTorch user would pick: eager-fp32 (TF32 off), eager-tf32,
        channels-last-bf16 (channels_last + bf16 autocast + cudnn.benchmark) and compile (torch.compile
        of the last). One JSON line per configuration with --json (docs/performance.md).

In a program:  model, config = load_unet("run/best.safetensors")   # a torch.nn.Module, eval mode

Runs on PyTorch 1.13 (Debian, CPU) and 2.x. Weights files are safetensors with PyTorch's layouts
(Conv2d [Cout, Cin, k, k], ConvTranspose2d [Cin, Cout, 2, 2]) and "unet.config" in the metadata.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


class Level(nn.Module):
    """Two 3x3 convolutions, each followed by ReLU."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class Stage(Level):
    """Up-convolution, concatenation [upsampled, skip], then a Level."""

    def __init__(self, c_in, c_out):
        super().__init__(2 * c_out, c_out)
        self.up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)

    def forward(self, x, skip):
        return super().forward(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels=3, base_width=64, depth=3):
        super().__init__()
        widths = [base_width << level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            Level(in_channels if level == 0 else widths[level - 1], widths[level]) for level in range(depth))
        self.bottleneck = Level(widths[depth - 1], widths[depth])
        self.decoder = nn.ModuleList(Stage(widths[depth - i], widths[depth - 1 - i]) for i in range(depth))
        self.head = nn.Conv2d(base_width, 1, 1)
        self.config = {"in_channels": in_channels, "base_width": base_width, "depth": depth}

    def forward(self, x):
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage(x, skip)
        return self.head(x)


def load_unet(path, device="cpu"):
    tensors, metadata = safetensors_io.load(path)
    config = json.loads(metadata["unet.config"])
    model = UNet(**config)
    weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval(), config


def save_unet(path, model):
    safetensors_io.save(path, dict(model.state_dict()), {"unet.config": json.dumps(model.config), "format": "pt"})


def segmentation_loss(logits, mask, kind, smooth=1.0):
    """(total, bce, dice) as kernels/loss.h defines them, Dice over the whole batch."""
    bce = F.binary_cross_entropy_with_logits(logits, mask)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * mask).sum() + smooth) / (p.sum() + mask.sum() + smooth)
    weights = {"bce": (1.0, 0.0), "dice": (0.0, 1.0), "bce+dice": (1.0, 1.0)}[kind]
    return weights[0] * bce + weights[1] * dice, bce, dice


def nhwc_to_nchw(x):
    return x.permute(0, 3, 1, 2).contiguous()


def nchw_to_nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


def round_tf32(t):
    """t rounded to tf32 as cvt.rna does (kernels/rounding.h): nearest, ties away from zero."""
    bits = t.detach().float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & -0x2000).view(torch.float32)


def round_bf16(t):
    """t rounded to bf16 (nearest, ties to even: kernels/rounding.h) and widened back."""
    bits = t.detach().float().contiguous().view(torch.int32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & -0x10000
    return rounded.view(torch.float32)


class RoundedConvolution(torch.autograd.Function):
    """A convolution at the reduced-precision kernels' rounding points. tf32: forward rounds x and W,
    backward_data g and W, backward_weight x and g, all to tf32; the outputs stay fp32. bf16: the
    operands (x, g, the weights' bf16 copy) rounded to bf16 and the activation outputs y and dx too,
    as the engine stores them; the weight and bias gradients stay fp32. Sums in fp32 either way."""

    @staticmethod
    def forward(ctx, x, weight, bias, transposed, precision):
        ctx.save_for_backward(x, weight)
        ctx.transposed, ctx.precision = transposed, precision
        operand = round_tf32 if precision == "tf32" else round_bf16
        y = RoundedConvolution.run(operand(x), operand(weight), transposed) + bias.view(1, -1, 1, 1)
        return y if precision == "tf32" else round_bf16(y)

    @staticmethod
    def run(x, weight, transposed):
        if transposed:
            return F.conv_transpose2d(x, weight, stride=2)
        return F.conv2d(x, weight, padding=weight.shape[-1] // 2)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        operand = round_tf32 if ctx.precision == "tf32" else round_bf16
        with torch.enable_grad():
            rounded_x = operand(x).requires_grad_()
            rounded_weight = operand(weight).requires_grad_()
            y = RoundedConvolution.run(rounded_x, rounded_weight, ctx.transposed)
            dx, dweight = torch.autograd.grad(y, (rounded_x, rounded_weight), operand(g))
        if ctx.precision == "bf16":
            dx = round_bf16(dx)
        return dx, dweight, g.sum(dim=(0, 2, 3)), None, None


def use_precision(precision):
    """fp32: PyTorch's own convolutions. tf32, bf16: every convolution through RoundedConvolution (the
    rounding emulated by hand, on any device; not allow_tf32 or autocast, whose rounding points are
    cuDNN's and autocast's)."""
    if precision != "fp32":
        nn.Conv2d.forward = lambda self, x: RoundedConvolution.apply(x, self.weight, self.bias, False, precision)
        nn.ConvTranspose2d.forward = lambda self, x: RoundedConvolution.apply(x, self.weight, self.bias, True,
                                                                             precision)


def command_step(args):
    use_precision(args.precision)
    model, _ = load_unet(args.weights)
    model.train()
    batch, _ = safetensors_io.load(args.batch)
    image, mask = nhwc_to_nchw(batch["image"]), nhwc_to_nchw(batch["mask"])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses, first_logits = [], None
    for k in range(args.steps):
        optimizer.zero_grad()
        logits = model(image)
        total, bce, dice = segmentation_loss(logits, mask, args.loss)
        total.backward()
        optimizer.step()
        if first_logits is None:
            first_logits = nchw_to_nhwc(logits.detach())
        losses.append(total.item())
        print(f"step {k + 1}: loss {total.item():.6f} (bce {bce.item():.6f}, dice {dice.item():.6f})")
    save_unet(args.out, model)
    if args.trace:
        safetensors_io.save(args.trace, {"losses": torch.tensor(losses, dtype=torch.float32), "logits": first_logits})


def command_batch(args):
    generator = torch.Generator().manual_seed(args.seed)
    image = torch.rand(args.n, args.height, args.width, 3, generator=generator)
    ys = torch.arange(args.height).view(1, -1, 1).float()
    xs = torch.arange(args.width).view(1, 1, -1).float()
    centre = torch.rand(args.n, 2, generator=generator)
    radius = 0.15 + 0.2 * torch.rand(args.n, generator=generator)
    cy = (centre[:, 0] * args.height).view(-1, 1, 1)
    cx = (centre[:, 1] * args.width).view(-1, 1, 1)
    r = (radius * min(args.height, args.width)).view(-1, 1, 1)
    mask = (((ys - cy) ** 2 + (xs - cx) ** 2) < r ** 2).float().unsqueeze(-1)
    image[..., 1:2] += 0.5 * mask  # the lesion is brighter in the second (FLAIR) channel
    safetensors_io.save(args.out, {"image": image.clamp(0, 1), "mask": mask})


BENCH_CONFIGS = ["eager-fp32", "eager-tf32", "channels-last-bf16", "compile"]


def bench_one(config, args, device):
    """Median seconds per training step of one configuration, or the reason it cannot run."""
    if config == "compile" and not hasattr(torch, "compile"):
        return None, f"torch {torch.__version__} has no torch.compile"
    if config == "eager-tf32" and device.type != "cuda":
        return None, "TF32 exists only on CUDA devices"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = config == "eager-tf32"
        torch.backends.cudnn.allow_tf32 = config == "eager-tf32"
        torch.backends.cudnn.benchmark = config in ("channels-last-bf16", "compile")
    torch.manual_seed(0)
    model = UNet(base_width=args.base_width, depth=args.depth).to(device)
    image = torch.rand(args.batch, 3, args.image_size, args.image_size, device=device)
    mask = (torch.rand(args.batch, 1, args.image_size, args.image_size, device=device) < 0.01).float()
    mixed = config in ("channels-last-bf16", "compile")
    if mixed:
        model = model.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=mixed):
            logits = model(image)
        loss = F.binary_cross_entropy_with_logits(logits.float(), mask)
        loss.backward()
        optimizer.step()

    run = torch.compile(step) if config == "compile" else step
    import time
    times = []
    for k in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= args.warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], None


def command_bench(args):
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    # Debian's torch starts with one thread: compare with the engine on the same cores.
    torch.set_num_threads(args.threads)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "host CPU"
    for config in args.configs.split(","):
        if config not in BENCH_CONFIGS:
            sys.exit(f"error: unknown configuration {config} (known: {', '.join(BENCH_CONFIGS)})")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, why = bench_one(config, args, device)
        record = {"name": f"pytorch_train_{config}", "framework": f"torch {torch.__version__}", "card": card,
                  "device": device.type, "batch": args.batch, "image_size": args.image_size,
                  "model": f"base width {args.base_width}, depth {args.depth}", "threads": args.threads}
        if seconds is None:
            record["skipped"] = why
            print(f"{config:20s} skipped: {why}")
        else:
            record.update({"images_per_s": args.batch / seconds, "ms_per_step": 1e3 * seconds})
            if device.type == "cuda":
                record["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
            print(f"{config:20s} {args.batch / seconds:9.1f} images/s  {1e3 * seconds:8.2f} ms per step")
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(record) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    step = commands.add_parser("step", help="K Adam steps on one fixed batch (as unet step)")
    step.add_argument("--weights", required=True)
    step.add_argument("--batch", required=True)
    step.add_argument("--steps", type=int, default=1)
    step.add_argument("--lr", type=float, default=1e-4)
    step.add_argument("--loss", choices=["bce", "dice", "bce+dice"], default="bce")
    step.add_argument("--out", required=True)
    step.add_argument("--trace")
    step.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                      help="the convolutions at those kernels' rounding points (`unet step --precision`)")
    step.set_defaults(run=command_step)
    batch = commands.add_parser("batch", help="a random batch file for unet step")
    batch.add_argument("--out", required=True)
    batch.add_argument("--n", type=int, default=2)
    batch.add_argument("--height", type=int, default=32)
    batch.add_argument("--width", type=int, default=48)
    batch.add_argument("--seed", type=int, default=0)
    batch.set_defaults(run=command_batch)
    bench = commands.add_parser("bench", help="images/s of the training step in several configurations")
    bench.add_argument("--batch", type=int, default=16)
    bench.add_argument("--image-size", type=int, default=256)
    bench.add_argument("--steps", type=int, default=20)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--base-width", type=int, default=64)
    bench.add_argument("--depth", type=int, default=3)
    bench.add_argument("--configs", default=",".join(BENCH_CONFIGS))
    bench.add_argument("--device", choices=["auto", "cpu"], default="auto")
    bench.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
                       help="torch.set_num_threads (default: OMP_NUM_THREADS, else every core)")
    bench.add_argument("--json")
    bench.set_defaults(run=command_bench)
    args = parser.parse_args()
    torch.manual_seed(0)
    args.run(args)


if __name__ == "__main__":
    main()
