"""The PyTorch oracle for Adam and AdamW (torch.optim, single-tensor path): five steps on random
parameters and gradients with a constant learning rate, with and without weight decay. Writes the
initial parameters, each step's gradients, and the parameters and both moments after step 5.

The hyper-parameters are Python floats (doubles) on both sides, as unet's AdamConfig holds them, so
scalars such as 1 - beta2 are rounded to float32 the same way on both sides."""
import argparse

import torch

import safetensors_io

STEPS = 5
# name: (optimizer, lr, beta1, beta2, eps, weight_decay)
CASES = {
    "adam": (torch.optim.Adam, 0.05, 0.9, 0.999, 1e-8, 0.0),
    "adam_weight_decay": (torch.optim.Adam, 0.05, 0.8, 0.99, 1e-6, 0.1),
    "adamw": (torch.optim.AdamW, 0.05, 0.9, 0.999, 1e-8, 0.0),
    "adamw_weight_decay": (torch.optim.AdamW, 0.05, 0.9, 0.999, 1e-8, 0.1),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    n = 37
    param0 = torch.empty(n).uniform_(-1, 1)
    grads = torch.empty(STEPS, n).uniform_(-1, 1)
    tensors = {"param0": param0, "grads": grads}
    for name, (optimizer, *hyper) in CASES.items():
        lr, beta1, beta2, eps, weight_decay = hyper
        param = torch.nn.Parameter(param0.clone())
        opt = optimizer([param], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, foreach=False)
        for step in range(STEPS):
            param.grad = grads[step].clone()
            opt.step()
        state = opt.state[param]
        decoupled = 1.0 if optimizer is torch.optim.AdamW else 0.0
        tensors[f"{name}.config"] = torch.tensor([lr, beta1, beta2, eps, weight_decay, decoupled], dtype=torch.float64)
        tensors[f"{name}.param"] = param.detach()
        tensors[f"{name}.m"] = state["exp_avg"]
        tensors[f"{name}.v"] = state["exp_avg_sq"]
    safetensors_io.save(args.out, tensors, {"torch": torch.__version__, "steps": STEPS})


if __name__ == "__main__":
    main()
