#!/usr/bin/env python3
"""Static checks of the cpu device's compiled FMA loops (x86-64, objdump), as the SASS gates are for
the GPU kernels: what the speed of those loops rests on, checked where no timing can be trusted.

  check_cpu_fma.py peak BENCH_KERNELS [--objdump OBJDUMP]
      The FMA peak every cpu row's pct_peak divides by (bench/cpu_rows.cpp, fma_chains) issues 10
      FMAs into 10 different registers per iteration of its loop, as it counts. Chains that start
      equal compute equal values and the compiler merges them: GCC 12 once made one FMA an
      iteration of the ten, a "peak" 25% above what the pipes do.
  check_cpu_fma.py spills OBJECT... [--objdump OBJDUMP]
      No innermost loop with 8 or more FMAs (the micro-kernels of kernels/gemm_cpu.h) moves a ymm
      register to or from the stack: its accumulators stay in registers. GCC kept them on the stack
      when the tile function was inlined into its caller, at a third of the speed.
  check_cpu_fma.py self-test
      Both checks refuse the loops GCC once made, and pass a clean one.
"""

import argparse
import re
import subprocess
import sys

CHAINS = 10
MICRO_KERNEL_FMAS = 8

FOLDED_PEAK = """\
000000000000e880 <unet::bench::(anonymous namespace)::fma_chains(long, float) [clone .constprop.0]>:
    e880:	vbroadcastss 0x541db(%rip),%ymm2
    e889:	vbroadcastss %xmm0,%ymm0
    e88e:	mov    $0x2faf080,%eax
    e8a0:	vfmadd132ps %ymm2,%ymm1,%ymm0
    e8a5:	sub    $0x1,%rax
    e8a9:	jne    e8a0 <unet::bench::(anonymous namespace)::fma_chains(long, float) [clone .constprop.0]+0x20>
    e8be:	ret
"""

# The shape of the spilling loop GCC made of reduce_tile<4> inlined into reduce_rows.
SPILLING = """\
0000000000059300 <void unet::cpu::fast::avx2::reduce_rows<...>(...)>:
   59340:	vmovups (%rdx),%ymm1
   59344:	vmovups 0x20(%rdx),%ymm0
   59348:	vbroadcastss -0x18(%rcx),%ymm14
   5934d:	vfmadd231ps %ymm1,%ymm14,%ymm2
   59353:	vfmadd231ps %ymm0,%ymm14,%ymm3
   59358:	vmovaps %ymm2,-0x1b0(%rbp)
   5935d:	vbroadcastss -0x14(%rcx),%ymm14
   59362:	vfmadd231ps %ymm1,%ymm14,%ymm4
   59367:	vfmadd231ps %ymm0,%ymm14,%ymm5
   5936c:	vbroadcastss -0x10(%rcx),%ymm14
   59371:	vfmadd231ps %ymm1,%ymm14,%ymm6
   59376:	vfmadd231ps %ymm0,%ymm14,%ymm7
   5937b:	vbroadcastss -0xc(%rcx),%ymm14
   59380:	vfmadd231ps %ymm1,%ymm14,%ymm8
   59385:	vfmadd231ps %ymm0,%ymm14,%ymm9
   5938a:	vmovaps %ymm9,-0xd0(%rbp)
   5938e:	add    $0x18,%rcx
   59392:	cmp    %r8,%r9
   59395:	jne    59340 <void unet::cpu::fast::avx2::reduce_rows<...>(...)+0x40>
"""

CLEAN = SPILLING.replace("   59358:\tvmovaps %ymm2,-0x1b0(%rbp)\n", "").replace(
    "   5938a:\tvmovaps %ymm9,-0xd0(%rbp)\n", "")

FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
BRANCH_TARGET = re.compile(r"^([0-9a-f]+)\s")


def functions(listing):
    """{name: [(address, mnemonic, operands)]} of an objdump -d listing."""
    result, name = {}, None
    for line in listing.splitlines():
        header = FUNCTION.match(line)
        if header:
            name = header.group(1)
            result.setdefault(name, [])
            continue
        instruction = INSTRUCTION.match(line)
        if name is not None and instruction:
            result[name].append((int(instruction.group(1), 16), instruction.group(2), instruction.group(3)))
    return result


def innermost_loops(body):
    """The instructions of each loop (a backward branch) that contains no other loop."""
    index = {address: i for i, (address, _, _) in enumerate(body)}
    loops = []
    for i, (address, mnemonic, operands) in enumerate(body):
        target = BRANCH_TARGET.match(operands + " ")
        if mnemonic.startswith("j") and target and int(target.group(1), 16) in index:
            start = index[int(target.group(1), 16)]
            if start <= i:
                loops.append((start, i))
    innermost = [(s, e) for s, e in loops if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops)]
    return [body[s:e + 1] for s, e in innermost]


def fmas(loop):
    return [operands for _, mnemonic, operands in loop if mnemonic.startswith("vfmadd")]


def check_peak(listing):
    bodies = [body for name, body in functions(listing).items() if "fma_chains" in name]
    if not bodies:
        return ["no fma_chains function in the disassembly"]
    loops = innermost_loops(bodies[0])
    if not loops:
        return ["fma_chains has no loop"]
    destinations = [operands.split(",")[-1].strip() for operands in fmas(min(loops, key=lambda l: len(fmas(l))))]
    if len(destinations) < CHAINS or len(set(destinations)) < CHAINS:
        return [f"fma_chains' loop issues {len(destinations)} FMAs into {len(set(destinations))} registers an "
                f"iteration, not {CHAINS} chains: the peak would count {CHAINS}"]
    return []


def check_spills(listing):
    """One line per micro-kernel loop that moves ymm registers to or from the stack; [] if none does,
    None if there is no micro-kernel loop at all (the wrong objects)."""
    errors, kernels = [], 0
    for name, body in functions(listing).items():
        for loop in innermost_loops(body):
            if len(fmas(loop)) < MICRO_KERNEL_FMAS:
                continue
            kernels += 1
            stack = [f"{m} {ops}" for _, m, ops in loop if "ymm" in ops and re.search(r"\(%r[sb]p\)", ops)]
            if stack:
                errors.append(f"{name}: a loop of {len(fmas(loop))} FMAs moves ymm registers through the stack "
                              f"{len(stack)} times an iteration ({stack[0]})")
    return errors if kernels else None


def disassemble(objdump, paths):
    """The listings of `paths`; None, with one line printed, where objdump cannot read one."""
    listings = []
    for path in paths:
        try:
            run = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", path], capture_output=True, text=True)
        except OSError as error:
            print(f"error: cannot run {objdump}: {error.strerror}", file=sys.stderr)
            return None
        if run.returncode != 0:
            reason = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
            print(f"error: {objdump} cannot read {path}: {reason}", file=sys.stderr)
            return None
        listings.append(run.stdout)
    return "\n".join(listings)


def self_test():
    assert check_peak(FOLDED_PEAK) == [
        "fma_chains' loop issues 1 FMAs into 1 registers an iteration, not 10 chains: the peak would count 10"]
    spilling = check_spills(SPILLING)
    assert spilling and "2 times an iteration" in spilling[0], spilling
    assert check_spills(CLEAN) == [], check_spills(CLEAN)
    assert check_spills(FOLDED_PEAK) is None
    print("check_cpu_fma: the folded peak loop and the spilling micro-kernel are refused, the clean one passes")
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["peak", "spills", "self-test"])
    parser.add_argument("files", nargs="*", help="peak: BENCH_KERNELS; spills: objects (a ;-separated list too)")
    parser.add_argument("--objdump", default="objdump")
    args = parser.parse_args(argv)
    if args.check == "self-test":
        return self_test()
    paths = [path for arg in args.files for path in arg.split(";") if path]
    if not paths:
        parser.error(f"{args.check} needs files to disassemble")
    listing = disassemble(args.objdump, paths)
    if listing is None:
        return 1
    if args.check == "peak":
        errors, ok = check_peak(listing), f"fma_chains: {CHAINS} independent FMAs an iteration"
    else:
        errors = check_spills(listing)
        if errors is None:
            errors = [f"no loop of {MICRO_KERNEL_FMAS} or more FMAs in {len(paths)} objects"]
        ok = f"{len(paths)} objects: no micro-kernel loop spills its accumulators"
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not errors:
        print(ok)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
