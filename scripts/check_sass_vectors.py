#!/usr/bin/env python3
"""The static proof that the bf16 memory-bound kernels' 16-byte paths move 16 bytes an access.

Reads the sm_90 SASS and resource usage of a CUDA kernel library or object (cuobjdump, found as
scripts/check_sass.py finds it) and fails unless every kernel whose name with its template
arguments (`relu_forward_kernel2<unet::bf16>`, demangled by c++filt) matches --pattern (default:
the bf16 vector versions, `<op>_<pass>_kernel2<unet::bf16>`; augment's kernels are templates on
their output, not on bf16, and are not gated: a 3-channel image is stored with three 2-byte
stores a pixel, since the padding channels are never written, and its rotation's sin/cos keep
the fp32 kernel's 32-byte stack frame)

  - loads global memory with LDG.E.128 and stores it with STG.E.128 (one uint4, eight bf16);
  - does not spill: no LDL/STL instructions, STACK 0 and LOCAL 0.

Usage: check_sass_vectors.py LIBRARY [--pattern REGEX]
Prints one line per kernel checked; exits 1 with `error: ...` lines if any check fails, 2 on a
usage error or a missing tool.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_sass  # noqa: E402  (the cuobjdump runner and name parsing the tensor-core gate uses)

REQUIRED = ("LDG.E.128", "STG.E.128")


def label(mangled):
    """The kernel's name and template arguments, without namespaces and parameters:
    `relu_forward_kernel2<unet::bf16>` (the family name alone where it is no template)."""
    match = re.search(r"(\w+_kernel\d*(?:<[^()]*>)?)\(", check_sass.readable(mangled))
    return match.group(1) if match else check_sass.family(mangled)


def instructions(library):
    """{mangled name: set of SASS opcodes with their modifiers (`LDG.E.128.CONSTANT`)} for sm_90."""
    result, name = {}, None
    for line in check_sass.run(check_sass.CUOBJDUMP, "-sass", "-arch", "sm_90", library).splitlines():
        match = re.match(r"\s*Function : (\S+)", line)
        if match:
            name = match.group(1)
            result.setdefault(name, set())
            continue
        match = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if name and match:
            result[name].add(match.group(1))
    return result


def check(kernel, ops, use):
    errors = []
    for required in REQUIRED:
        # LDG.E.128 also covers LDG.E.128.CONSTANT (the read-only path __restrict__ const allows).
        if not any(op == required or op.startswith(required + ".") for op in ops):
            errors.append(f"{kernel}: no {required} in its SASS")
    return errors + check_sass.spill_errors(kernel, lambda op: any(o == op or o.startswith(op + ".") for o in ops), use)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("--pattern", default=r"^\w+_kernel2<unet::bf16>$")
    args = parser.parse_args()
    all_ops, usage = instructions(args.library), check_sass.resource_usage(args.library)
    chosen = check_sass.select(all_ops, args.pattern, label, args.library)
    if chosen is None:
        return 1
    errors = []
    for name in chosen:
        kernel = label(name)
        found = check(kernel, all_ops[name], usage.get(name, {}))
        errors += found
        accesses = sorted(op for op in all_ops[name] if op.startswith(("LDG", "STG")))
        print(("FAIL " if found else "ok   ") + f"{kernel}: REG {usage.get(name, {}).get('REG', '?')}, "
              + " ".join(accesses))
    return check_sass.finish(errors)


if __name__ == "__main__":
    check_sass.run_gate(main)
