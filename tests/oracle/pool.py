"""The PyTorch oracle for max_pool2d: forward with return_indices and the gradient, in torch's
NCHW layout and flat per-plane indices (the reference test converts both to NHWC and window
positions). Cases: random values on an odd H and W, small integers (many ties; odd H and W), and
NaNs (two in one window: PyTorch's CPU kernel keeps the last)."""
import argparse

import torch
import torch.nn.functional as F

import safetensors_io


def pool_case(tensors, name, x):
    x = x.clone().requires_grad_(True)
    y, indices = F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)
    dy = torch.empty_like(y).uniform_(-1, 1)
    y.backward(dy)
    tensors[f"{name}.x"] = x.detach()
    tensors[f"{name}.y"] = y.detach()
    tensors[f"{name}.indices"] = indices
    tensors[f"{name}.dy"] = dy
    tensors[f"{name}.dx"] = x.grad


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    tensors = {}
    pool_case(tensors, "random", torch.empty(2, 3, 7, 5).uniform_(-1, 1))
    pool_case(tensors, "integers", torch.randint(-2, 3, (2, 5, 7, 9)).float())
    nan = torch.randint(-2, 3, (1, 2, 4, 6)).float()
    nan[0, 0, 0, 1] = nan[0, 0, 1, 0] = float("nan")  # two NaNs in window (0, 0)
    nan[0, 1, 2, 2] = float("nan")                    # the first of window (1, 1)
    nan[0, 1, 1, 5] = float("nan")                    # the last of window (0, 2)
    pool_case(tensors, "nan", nan)
    safetensors_io.save(args.out, tensors, {"torch": torch.__version__})


if __name__ == "__main__":
    main()
