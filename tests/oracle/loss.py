"""The PyTorch oracle for the segmentation losses: binary_cross_entropy_with_logits (with and
without pos_weight) and soft Dice written in torch and differentiated by autograd (over the batch
and per sample), alone and as a weighted sum; values and gradients, in torch's (N, 1, H, W)."""
import argparse

import torch
import torch.nn.functional as F

import safetensors_io

# name: (bce_weight, dice_weight, pos_weight, dice_smooth, dice_per_sample)
CASES = {
    "bce": (1.0, 0.0, 1.0, 1.0, 0),
    "bce_pos_weight": (1.0, 0.0, 3.0, 1.0, 0),
    "dice_batch": (0.0, 1.0, 1.0, 1.0, 0),
    "dice_per_sample": (0.0, 1.0, 1.0, 1.0, 1),
    "combined": (0.5, 1.5, 2.0, 0.5, 1),
    "combined_batch": (1.0, 1.0, 1.0, 1.0, 0),
}


def soft_dice(logits, target, smooth, per_sample):
    p = torch.sigmoid(logits)
    dims = (1, 2, 3) if per_sample else (0, 1, 2, 3)
    intersection = (p * target).sum(dims)
    dice = 1 - (2 * intersection + smooth) / (p.sum(dims) + target.sum(dims) + smooth)
    return dice.mean()


def loss_case(tensors, name, config, logits, target):
    bce_weight, dice_weight, pos_weight, smooth, per_sample = config
    x = logits.clone().requires_grad_(True)
    bce = F.binary_cross_entropy_with_logits(x, target, pos_weight=torch.tensor([pos_weight]))
    dice = soft_dice(x, target, smooth, bool(per_sample))
    total = bce_weight * bce + dice_weight * dice
    total.backward()
    tensors[f"{name}.config"] = torch.tensor(config, dtype=torch.float32)
    tensors[f"{name}.loss"] = torch.stack([total, bce, dice]).detach()
    tensors[f"{name}.dlogits"] = x.grad


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 5, 7) * 3
    target = (torch.rand(3, 1, 5, 7) < 0.3).float()
    tensors = {"logits": logits, "target": target}
    for name, config in CASES.items():
        loss_case(tensors, name, config, logits, target)
    # Saturated logits, right and wrong: BCE must stay finite and exact.
    extreme = torch.tensor([1e4, -1e4, 100.0, -100.0, 1e4, -1e4, 100.0, -100.0]).reshape(2, 1, 2, 2)
    extreme_target = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]).reshape(2, 1, 2, 2)
    tensors["extreme.logits"] = extreme
    tensors["extreme.target"] = extreme_target
    loss_case(tensors, "extreme", (1.0, 1.0, 2.0, 1.0, 1), extreme, extreme_target)
    safetensors_io.save(args.out, tensors, {"torch": torch.__version__})


if __name__ == "__main__":
    main()
