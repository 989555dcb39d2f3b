#!/usr/bin/env python3
"""The cpu FMA peak (bench/cpu_rows.cpp, fma_chains) is what it claims: its compiled loop issues 10
FMAs into 10 different registers per iteration. The peak counts 10 FMAs an iteration, so a loop the
compiler has folded (chains that start equal compute equal values, and GCC merged all ten into one:
one FMA an iteration, a "peak" 25% above what the pipes do) inflates every row's pct_peak.

usage: check_fma_peak_loop.py BENCH_KERNELS [OBJDUMP]   (disassembles it, with objdump by default)
       check_fma_peak_loop.py --self-test      (the folded loop GCC once made is refused)
"""

import re
import subprocess
import sys

CHAINS = 10

# The loop GCC 12 made of the first fma_chains, whose ten chains all started from the seed.
FOLDED = """\
000000000000e880 <_ZN4unet5bench12_GLOBAL__N_110fma_chainsElf.constprop.0>:
    e880:	vbroadcastss 0x541db(%rip),%ymm2
    e889:	vbroadcastss %xmm0,%ymm0
    e88e:	mov    $0x2faf080,%eax
    e893:	vbroadcastss 0x541cc(%rip),%ymm1
    e89c:	nopl   0x0(%rax)
    e8a0:	vfmadd132ps %ymm2,%ymm1,%ymm0
    e8a5:	sub    $0x1,%rax
    e8a9:	jne    e8a0 <_ZN4unet5bench12_GLOBAL__N_110fma_chainsElf.constprop.0+0x20>
    e8ab:	vaddps %ymm0,%ymm0,%ymm0
    e8be:	ret
"""

INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")


def function_body(listing, name_part):
    """The instructions (address, mnemonic, operands) of the first function whose symbol has name_part."""
    body, inside = [], False
    for line in listing.splitlines():
        if line.endswith(">:"):
            if inside:
                break
            inside = name_part in line
            continue
        match = INSTRUCTION.match(line)
        if inside and match:
            body.append((int(match.group(1), 16), match.group(2), match.group(3)))
    return body


def loop_fmas(body):
    """The FMAs' destination registers in the function's innermost loop (a backward branch)."""
    loops = []
    for address, mnemonic, operands in body:
        target = re.match(r"([0-9a-f]+)\s", operands + " ")
        if mnemonic.startswith("j") and target and int(target.group(1), 16) <= address:
            start = int(target.group(1), 16)
            loops.append([ops for at, m, ops in body if start <= at <= address and m.startswith("vfmadd")])
    if not loops:
        return None
    fmas = min(loops, key=len)
    return [ops.split(",")[-1].strip() for ops in fmas]


def check(listing):
    body = function_body(listing, "fma_chains")
    if not body:
        return "no fma_chains function in the disassembly"
    destinations = loop_fmas(body)
    if destinations is None:
        return "fma_chains has no loop"
    if len(destinations) < CHAINS or len(set(destinations)) < CHAINS:
        return (f"fma_chains' loop issues {len(destinations)} FMAs into {len(set(destinations))} registers an "
                f"iteration, not {CHAINS} chains: the peak would count {CHAINS}")
    return None


def main():
    if sys.argv[1:] == ["--self-test"]:
        error = check(FOLDED)
        assert error and "1 FMAs into 1 registers" in error, error
        print(f"the folded loop is refused: {error}")
        return 0
    objdump = sys.argv[2] if len(sys.argv) > 2 else "objdump"
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", sys.argv[1]], check=True, capture_output=True,
                             text=True).stdout
    error = check(listing)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"fma_chains: {CHAINS} independent FMAs an iteration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
