"""The PyTorch oracle for conv2d and conv_transpose2d (kernels/conv2d.h, kernels/conv_transpose2d.h).

Computes, with torch.nn.functional in float64 from float32 inputs, the forward pass and every
gradient (by autograd, given a random upstream gradient dy) of:
  conv2d_k1, conv2d_k3            conv2d with bias, padding k // 2
  conv2d_relu_k1, conv2d_relu_k3  the same followed by relu: the ReLU-masked gradients
  conv_transpose2d                the 2x2, stride-2 transposed convolution with bias
and writes inputs and results in torch's own layouts (NCHW activations, weights [Cout][Cin][k][k]
for conv2d and [Cin][Cout][2][2] for conv_transpose2d), so the C++ test's conversion is checked too.

usage: conv.py --out FILE.safetensors   (PYTHONPATH must hold bench/, for safetensors_io)
"""
import argparse

import torch
import torch.nn.functional as F

import safetensors_io


def uniform(generator, *shape):
    return torch.rand(*shape, generator=generator, dtype=torch.float32) * 2 - 1


def gradients(prefix, function, generator, inputs):
    """Runs function(**inputs) in float64, backpropagates a random dy; returns the tensors to save."""
    leaves = {name: value.double().requires_grad_() for name, value in inputs.items()}
    y = function(**leaves)
    dy = uniform(generator, *y.shape)
    y.backward(dy.double())
    out = {f"{prefix}.{name}": value for name, value in inputs.items()}
    out[f"{prefix}.dy"] = dy
    out[f"{prefix}.y"] = y.detach().float()
    for name, leaf in leaves.items():
        out[f"{prefix}.d{name}"] = leaf.grad.float()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(2024)
    tensors = {}

    n, c_in, c_out, h, w = 2, 5, 3, 6, 7
    for k in (1, 3):
        inputs = {"x": uniform(generator, n, c_in, h, w), "weight": uniform(generator, c_out, c_in, k, k),
                  "bias": uniform(generator, c_out)}
        conv = lambda x, weight, bias, k=k: F.conv2d(x, weight, bias, padding=k // 2)
        tensors.update(gradients(f"conv2d_k{k}", conv, generator, inputs))
        relu_conv = lambda x, weight, bias, k=k: F.relu(F.conv2d(x, weight, bias, padding=k // 2))
        tensors.update(gradients(f"conv2d_relu_k{k}", relu_conv, generator, inputs))

    n, c_in, c_out, h, w = 2, 4, 3, 3, 5
    inputs = {"x": uniform(generator, n, c_in, h, w), "weight": uniform(generator, c_in, c_out, 2, 2),
              "bias": uniform(generator, c_out)}
    up = lambda x, weight, bias: F.conv_transpose2d(x, weight, bias, stride=2)
    tensors.update(gradients("conv_transpose2d", up, generator, inputs))

    safetensors_io.save(args.out, tensors, {"torch": torch.__version__, "script": "tests/oracle/conv.py"})


if __name__ == "__main__":
    main()
