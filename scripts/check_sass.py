#!/usr/bin/env python3
"""The static proof that the version-3 kernels use the tensor cores, without a GPU.

Reads the sm_90 SASS and the resource usage of a CUDA kernel library (cuobjdump, from the PyPI
wheel nvidia-cuda-cuobjdump that scripts/setup.sh installs) and fails unless every kernel whose name
matches --pattern (default: the version-3 kernels, `<op>_<pass>_kernel3`)

  - contains HMMA (mma.sync) and LDGSTS (cp.async), and LDSM (ldmatrix) if its name says bf16;
    the bf16 kernels whose tiles are gathered through registers (the `<unet::bf16, BlockTile<M, N>,
    false, ...>` instantiations, for channel counts, strides or offsets that rule out 16-byte
    copies: see kernels/conv_mma.h) need HMMA and LDSM but not LDGSTS (REGISTER_GATHERS below);
  - does not spill: no LDL/STL instructions, STACK 0 and LOCAL 0;
  - fits, at the blocks per SM it is designed for (BUDGETS below, the same numbers as its launcher
    and docs/kernels/convolution.md), in an H100/H200 multiprocessor: 64K registers, allocated per
    warp in units of 256, and 228 KiB of shared memory (each block's SHARED count includes the
    1 KiB the system reserves per block), at most 227 KiB + 1 KiB per block.

Usage: check_sass.py LIBRARY [--pattern REGEX] [--budget NAME_REGEX=THREADS,BLOCKS,DYNAMIC_BYTES ...]
Prints one line per kernel checked; exits 1 with `error: ...` lines if any check fails, 2 on a
usage error or a missing tool.
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys

# The design point of every version-3 kernel, by a regular expression on its demangled name
# `<op>_<pass>_kernel3<Element, BlockTile<M, N>, kVector[, kMasked]>`: threads per block
# (kernels/conv_mma.h's kThreads), blocks per SM (its kMaxBlocksPerSm, or fewer where a ReLU mask's
# third slice makes the stage too big), and the dynamic shared memory its launcher requests
# (mma::shared_bytes: stages x the Tiles' kStageElements; mma::blocks_per_sm derives the same
# blocks per SM). Per stage, at the 128 x 64 tile (LARGE):
# TF32 (float, 3 stages; K-contiguous rows of 16 + 4 floats, K-major rows of width + 8):
#   conv2d forward          A 128 x 20 + B 64 x 20: 46,080 bytes, 4 blocks per SM
#   conv2d backward_data    A 128 x 20 + B 16 x 72: 44,544 bytes, 4 blocks per SM; with the ReLU
#                           mask (+ 128 x 20) 75,264 bytes, 3 blocks per SM
#   conv2d backward_weight  A 16 x 136 + B 16 x 72: 39,936 bytes (53,760 with the mask + 16 x 72),
#                           4 blocks per SM
#   conv_transpose2d        forward A 128 x 20 + B 16 x 72: 44,544 bytes; backward_data
#                           A 128 x 20 + B 64 x 20: 46,080; backward_weight A 16 x 136 + B 16 x 72:
#                           39,936; 4 blocks per SM
# bf16 (4 stages, 3 with the mask; K = 32 bf16 of each slice, swizzled, unpadded):
#   every pass of both ops  A 128 x 32 + B 64 x 32 (either layout): 49,152 bytes, 4 blocks per SM
#   conv2d backward_data    with the mask (+ 128 x 32), 3 stages: 61,440 bytes, 3 blocks per SM
#   conv2d backward_weight  with the mask (+ 32 x 64), 3 stages: 49,152 bytes, 4 blocks per SM
# and at the 64 x 64 tile (SMALL: forward and backward_data only), all at 4 blocks per SM:
#   TF32 forward (both ops' A and B K-contiguous: conv2d forward, conv_transpose2d backward_data)
#                           A 64 x 20 + B 64 x 20: 30,720 bytes
#   TF32 A 64 x 20 + B 16 x 72 (conv2d backward_data, conv_transpose2d forward): 29,184 bytes;
#                           conv2d backward_data with the mask (+ 64 x 20): 44,544 bytes
#   bf16                    A 64 x 32 + B 64 x 32: 32,768 bytes; conv2d backward_data with the
#                           mask (+ 64 x 32), 3 stages: 36,864 bytes
LARGE = r"unet::cuda::mma::BlockTile<128, 64>"
SMALL = r"unet::cuda::mma::BlockTile<64, 64>"
ANY = "(true|false)"
BUDGETS = [
    (rf"conv2d_forward_kernel3<float, {LARGE}, {ANY}>", (128, 4, 46080)),
    (rf"conv2d_backward_data_kernel3<float, {LARGE}, {ANY}, false>", (128, 4, 44544)),
    (rf"conv2d_backward_data_kernel3<float, {LARGE}, {ANY}, true>", (128, 3, 75264)),
    (rf"conv2d_backward_weight_kernel3<float, {LARGE}, {ANY}, false>", (128, 4, 39936)),
    (rf"conv2d_backward_weight_kernel3<float, {LARGE}, {ANY}, true>", (128, 4, 53760)),
    (rf"conv_transpose2d_forward_kernel3<float, {LARGE}, {ANY}>", (128, 4, 44544)),
    (rf"conv_transpose2d_backward_data_kernel3<float, {LARGE}, {ANY}>", (128, 4, 46080)),
    (rf"conv_transpose2d_backward_weight_kernel3<float, {LARGE}, {ANY}>", (128, 4, 39936)),
    (rf"conv2d_forward_kernel3<unet::bf16, {LARGE}, {ANY}>", (128, 4, 49152)),
    (rf"conv2d_backward_data_kernel3<unet::bf16, {LARGE}, {ANY}, false>", (128, 4, 49152)),
    (rf"conv2d_backward_data_kernel3<unet::bf16, {LARGE}, {ANY}, true>", (128, 3, 61440)),
    (rf"conv2d_backward_weight_kernel3<unet::bf16, {LARGE}, {ANY}, {ANY}>", (128, 4, 49152)),
    (rf"conv_transpose2d_(forward|backward_data|backward_weight)_kernel3<unet::bf16, {LARGE}, {ANY}>",
     (128, 4, 49152)),
    (rf"conv2d_forward_kernel3<float, {SMALL}, {ANY}>", (128, 4, 30720)),
    (rf"conv2d_backward_data_kernel3<float, {SMALL}, {ANY}, false>", (128, 4, 29184)),
    (rf"conv2d_backward_data_kernel3<float, {SMALL}, {ANY}, true>", (128, 4, 44544)),
    (rf"conv_transpose2d_forward_kernel3<float, {SMALL}, {ANY}>", (128, 4, 29184)),
    (rf"conv_transpose2d_backward_data_kernel3<float, {SMALL}, {ANY}>", (128, 4, 30720)),
    (rf"conv2d_forward_kernel3<unet::bf16, {SMALL}, {ANY}>", (128, 4, 32768)),
    (rf"conv2d_backward_data_kernel3<unet::bf16, {SMALL}, {ANY}, false>", (128, 4, 32768)),
    (rf"conv2d_backward_data_kernel3<unet::bf16, {SMALL}, {ANY}, true>", (128, 4, 36864)),
    (rf"conv_transpose2d_(forward|backward_data)_kernel3<unet::bf16, {SMALL}, {ANY}>", (128, 4, 32768)),
]
# Demangled names of the version-3 kernels that gather their tiles with plain loads (no cp.async):
# bf16 with kVector false.
REGISTER_GATHERS = r"_kernel3<unet::bf16, unet::cuda::mma::BlockTile<\d+, \d+>, false"
REGISTERS_PER_SM = 65536
REGISTER_UNIT_PER_WARP = 256
SHARED_PER_SM = 228 * 1024
SHARED_PER_BLOCK = 227 * 1024 + 1024


def find_cuobjdump():
    found = shutil.which("cuobjdump")
    if found:
        return found
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations if spec else []) or []:
        for sub in ("cu13", "cuda_cuobjdump", "cu12"):
            candidate = os.path.join(root, sub, "bin", "cuobjdump")
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def run(tool, *args):
    done = subprocess.run([tool, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {os.path.basename(tool)} {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def family(mangled):
    """The kernel's own identifier in an Itanium-mangled name: the last source name before the
    template arguments or the parameters (`_ZN4unet4cuda22conv2d_forward_kernel3ILi64EEEv...`)."""
    names, i = [], 0
    while i < len(mangled):
        match = re.match(r"\d+", mangled[i:])
        if match and (i == 0 or not mangled[i - 1].isdigit()):
            length = int(match.group())
            start = i + len(match.group())
            word = mangled[start:start + length]
            if len(word) == length and re.fullmatch(r"[A-Za-z_]\w*", word):
                names.append(word)
                i = start + length
                continue
        i += 1
    kernels = [n for n in names if re.search(r"_kernel\d*$", n)]
    return kernels[0] if kernels else mangled


def resource_usage(library):
    """{mangled name: {REG, STACK, SHARED, LOCAL}} for sm_90."""
    usage, name = {}, None
    for line in run(CUOBJDUMP, "-res-usage", "-arch", "sm_90", library).splitlines():
        match = re.match(r"\s*Function (\S+):", line)
        if match:
            name = match.group(1)
            continue
        if name and "REG:" in line:
            usage[name] = {key: int(value) for key, value in re.findall(r"(\w+):(\d+)", line)}
            name = None
    return usage


def opcodes(library):
    """{mangled name: set of SASS opcodes (without modifiers)} for sm_90."""
    result, name = {}, None
    for line in run(CUOBJDUMP, "-sass", "-arch", "sm_90", library).splitlines():
        match = re.match(r"\s*Function : (\S+)", line)
        if match:
            name = match.group(1)
            result.setdefault(name, set())
            continue
        match = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if name and match:
            result[name].add(match.group(1))
    return result


def readable(mangled):
    """The demangled name where c++filt is at hand (binutils), else the mangled one."""
    tool = shutil.which("c++filt")
    if not tool:
        return mangled
    return subprocess.run([tool, mangled], capture_output=True, text=True).stdout.strip() or mangled


def spill_errors(kernel, has_op, use):
    """What every SASS gate requires of a kernel: no LDL or STL (has_op(op) says whether its SASS
    has one) and STACK 0 and LOCAL 0 in its resource usage."""
    errors = [f"{kernel}: {op} in its SASS (register spills)" for op in ("LDL", "STL") if has_op(op)]
    return errors + [f"{kernel}: {key} {use[key]} (must be 0)" for key in ("STACK", "LOCAL") if use.get(key, 0) != 0]


def check(name, ops, use, budget):
    errors = []
    kernel = family(name)
    gathers_in_registers = re.search(REGISTER_GATHERS, readable(name)) is not None
    required = ["HMMA"] + ([] if gathers_in_registers else ["LDGSTS"]) + (["LDSM"] if "bf16" in name else [])
    for op in required:
        if op not in ops:
            errors.append(f"{kernel}: no {op} in its SASS")
    errors += spill_errors(kernel, lambda op: op in ops, use)
    if budget is None:
        errors.append(f"{readable(name)}: no design point (threads, blocks per SM, dynamic shared) in BUDGETS")
        return errors, ""
    threads, blocks, dynamic = budget
    warps = -(-threads // 32)
    per_warp = -(-use["REG"] * 32 // REGISTER_UNIT_PER_WARP) * REGISTER_UNIT_PER_WARP
    registers = per_warp * warps * blocks
    shared_block = use["SHARED"] + dynamic
    if registers > REGISTERS_PER_SM:
        errors.append(f"{kernel}: {use['REG']} registers x {threads} threads x {blocks} blocks = {registers} "
                      f"> {REGISTERS_PER_SM}")
    if shared_block > SHARED_PER_BLOCK or shared_block * blocks > SHARED_PER_SM:
        errors.append(f"{kernel}: {shared_block} bytes of shared memory x {blocks} blocks > {SHARED_PER_SM}")
    summary = (f"{readable(name)}: REG {use['REG']}, shared {shared_block} B/block, {blocks} blocks/SM of {threads} "
               f"threads: {registers}/{REGISTERS_PER_SM} registers, {shared_block * blocks}/{SHARED_PER_SM} B")
    return errors, summary


def select(names, pattern, label, library):
    """The kernels whose label matches the gate's pattern, sorted; None, with the error printed,
    where none does (a gate that checks nothing must not pass)."""
    chosen = sorted(n for n in names if re.search(pattern, label(n)))
    if not chosen:
        print(f"error: no kernel in {library} matches {pattern}", file=sys.stderr)
        return None
    return chosen


def finish(errors):
    """A gate's exit status, its errors printed."""
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def run_gate(main):
    """Exits with main()'s status, or 2 where there is no cuobjdump to read the SASS with."""
    if CUOBJDUMP is None:
        print("error: cuobjdump not found (scripts/setup.sh installs the nvidia-cuda-cuobjdump wheel)", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("--pattern", default=r"_kernel3$")
    parser.add_argument("--budget", action="append", default=[], help="NAME_REGEX=THREADS,BLOCKS,DYNAMIC_BYTES")
    args = parser.parse_args()
    budgets = list(BUDGETS)
    for text in args.budget:
        name, _, numbers = text.partition("=")
        budgets.append((name, tuple(int(n) for n in numbers.split(","))))
    all_ops, usage = opcodes(args.library), resource_usage(args.library)
    chosen = select(all_ops, args.pattern, family, args.library)
    if chosen is None:
        return 1
    errors, used = [], set()
    for name in chosen:
        matching = [(key, budget) for key, budget in budgets if re.search(key, readable(name))]
        used.update(key for key, _ in matching)
        found, summary = check(name, all_ops[name], usage.get(name, {}), matching[0][1] if matching else None)
        errors += found
        print(("FAIL " if found else "ok   ") + (summary or readable(name)))
    # A design point nothing matched: its kernel vanished (or was renamed) without the gate noticing.
    errors += [f"{key}: in BUDGETS but no kernel of the library matches it" for key, _ in BUDGETS
               if key not in used and re.search(args.pattern, re.sub(r"<.*", "", key.replace("\\", "")))]
    return finish(errors)


CUOBJDUMP = find_cuobjdump()
if __name__ == "__main__":
    run_gate(main)
