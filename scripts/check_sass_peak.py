#!/usr/bin/env python3
"""The static proof that the mma.sync throughput kernels (bench/mma_peak.h) measure the tensor cores alone.

Reads the sm_90 SASS and resource usage of a CUDA library or object (cuobjdump, found as
scripts/check_sass.py finds it) and fails unless every kernel whose own name matches --pattern
(default: `mma_peak_bf16_kernel` and `mma_peak_tf32_kernel`)

  - contains at least --min-hmma HMMA instructions (default 8, the kernels' kChains: the chain
    loop is unrolled, so every independent accumulator chain has its own mma in the loop);
  - reads no memory at all: no LDG, LDS, LDSM, LDGSTS or generic LD (its operands are made in
    registers, so the loop measures mma.sync and nothing else; its one output is a store);
  - does not spill: no LDL/STL instructions, STACK 0 and LOCAL 0.

Usage: check_sass_peak.py LIBRARY [--pattern REGEX] [--min-hmma N]
Prints one line per kernel checked; exits 1 with `error: ...` lines if any check fails, 2 on a
usage error or a missing tool.
"""
import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_sass  # noqa: E402  (the cuobjdump runner and name parsing the tensor-core gate uses)

MEMORY_READS = ("LDG", "LDS", "LDSM", "LDGSTS", "LD")


def opcode_counts(library):
    """{mangled name: Counter of SASS opcodes (without modifiers)} for sm_90."""
    result, name = {}, None
    for line in check_sass.run(check_sass.CUOBJDUMP, "-sass", "-arch", "sm_90", library).splitlines():
        match = re.match(r"\s*Function : (\S+)", line)
        if match:
            name = match.group(1)
            result.setdefault(name, collections.Counter())
            continue
        match = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if name and match:
            result[name][match.group(1)] += 1
    return result


def check(kernel, counts, use, min_hmma):
    errors = []
    if counts["HMMA"] < min_hmma:
        errors.append(f"{kernel}: {counts['HMMA']} HMMA in its SASS, fewer than {min_hmma}" if counts["HMMA"]
                      else f"{kernel}: no HMMA in its SASS")
    for op in MEMORY_READS:
        if counts[op]:
            errors.append(f"{kernel}: {op} in its SASS (the peak kernel must not read memory)")
    return errors + check_sass.spill_errors(kernel, lambda op: counts[op] > 0, use)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("--pattern", default=r"^mma_peak_(bf16|tf32)_kernel$")
    parser.add_argument("--min-hmma", type=int, default=8)
    args = parser.parse_args()
    all_counts, usage = opcode_counts(args.library), check_sass.resource_usage(args.library)
    chosen = check_sass.select(all_counts, args.pattern, check_sass.family, args.library)
    if chosen is None:
        return 1
    errors = []
    for name in chosen:
        kernel = check_sass.family(name)
        found = check(kernel, all_counts[name], usage.get(name, {}), args.min_hmma)
        errors += found
        print(("FAIL " if found else "ok   ") + f"{kernel}: REG {usage.get(name, {}).get('REG', '?')}, "
              f"{all_counts[name]['HMMA']} HMMA, {sum(all_counts[name].values())} instructions")
    return check_sass.finish(errors)


if __name__ == "__main__":
    check_sass.run_gate(main)
