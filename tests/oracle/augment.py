"""PyTorch oracle for the data pipeline's geometry: the augmentation's affine sampling
(kernels/augment.h) through F.affine_grid + F.grid_sample, and the load-time resize (data/image.h)
through F.interpolate. The map is built here from the documented formula,

    q = c + F R(-a) (p - c - t) / s,   p, q in pixels, centres at i + 0.5, c = (W/2, H/2),

in double, and handed to torch as a normalised theta (align_corners=False); torch does the
sampling (bilinear with zero padding for images, nearest for masks). Inputs are stored in torch's
NCHW layout; the test converts them.

usage: augment.py --out FILE.safetensors
"""
import argparse
import math

import torch
import torch.nn.functional as F

import safetensors_io

# (height, width, transforms): flip_h, flip_v, angle (degrees), scale, shift_x, shift_y (pixels)
CASES = [
    (16, 16, [(0, 0, 0.0, 1.0, 0.0, 0.0), (1, 0, 0.0, 1.0, 0.0, 0.0), (0, 0, 90.0, 1.0, 0.0, 0.0),
              (0, 1, 13.0, 1.07, 1.3, -0.7)]),
    (15, 21, [(0, 0, -14.2, 0.93, -1.9, 1.1), (1, 1, 7.5, 1.1, 0.4, 0.2), (0, 0, 33.0, 0.5, 0.0, 0.0)]),
    (32, 24, [(1, 0, -8.0, 1.02, 2.5, -3.1), (0, 0, 171.0, 1.3, -0.3, 0.9)]),
]
RESIZES = [((20, 30), (13, 17)), ((7, 9), (16, 16)), ((16, 16), (16, 16)), ((33, 12), (8, 40))]


def pixel_map(height, width, flip_h, flip_v, angle, scale, shift_x, shift_y):
    """A (2x2) and b (2) with q = A p + b, in double."""
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    fx, fy = (-1.0 if flip_h else 1.0), (-1.0 if flip_v else 1.0)
    A = torch.tensor([[fx * cos, fx * sin], [-fy * sin, fy * cos]], dtype=torch.float64) / scale
    c = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    t = torch.tensor([shift_x, shift_y], dtype=torch.float64)
    return A, c - A @ (c + t)


def theta(height, width, A, b):
    """The same map between normalised coordinates (x_n = 2 x / W - 1), as affine_grid takes it."""
    sx, sy = width / 2, height / 2
    to_pixels = torch.tensor([[sx, 0, sx], [0, sy, sy], [0, 0, 1]], dtype=torch.float64)
    M = torch.eye(3, dtype=torch.float64)
    M[:2, :2] = A
    M[:2, 2] = b
    return (torch.linalg.inv(to_pixels) @ M @ to_pixels)[:2].unsqueeze(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    generator = torch.Generator().manual_seed(5)
    tensors = {}
    for i, (height, width, transforms) in enumerate(CASES):
        image = torch.randint(0, 256, (1, 3, height, width), generator=generator, dtype=torch.uint8)
        mask = (torch.rand(1, 1, height, width, generator=generator) < 0.3).to(torch.uint8)
        tensors[f"warp{i}.image"] = image
        tensors[f"warp{i}.mask"] = mask
        tensors[f"warp{i}.transforms"] = torch.tensor(transforms, dtype=torch.float32)
        for j, transform in enumerate(transforms):
            grid = F.affine_grid(theta(height, width, *pixel_map(height, width, *transform)), [1, 3, height, width],
                                 align_corners=False)
            warped = F.grid_sample(image.double() / 255, grid, mode="bilinear", padding_mode="zeros",
                                   align_corners=False)
            warped_mask = F.grid_sample(mask.double(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
            tensors[f"warp{i}.{j}.image"] = warped.float()
            tensors[f"warp{i}.{j}.mask"] = warped_mask.float()
    for i, ((height, width), (out_height, out_width)) in enumerate(RESIZES):
        image = torch.randint(0, 256, (1, 3, height, width), generator=generator, dtype=torch.uint8)
        mask = (torch.rand(1, 1, height, width, generator=generator) < 0.3).to(torch.uint8)
        tensors[f"resize{i}.image"] = image
        tensors[f"resize{i}.mask"] = mask
        tensors[f"resize{i}.bilinear"] = F.interpolate(image.double(), size=(out_height, out_width), mode="bilinear",
                                                       align_corners=False).float()
        tensors[f"resize{i}.nearest"] = F.interpolate(mask.double(), size=(out_height, out_width),
                                                      mode="nearest-exact").to(torch.uint8)
    safetensors_io.save(out, tensors, {"source": "tests/oracle/augment.py", "torch": torch.__version__})


if __name__ == "__main__":
    main()
