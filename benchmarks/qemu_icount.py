"""Count ARM instructions executed per kernel call under qemu-user; prints a table.

    python benchmarks/qemu_icount.py [--quick]

Builds tests/c/kernel_test.c statically for aarch64 (-march=armv8-a; dotprod
via its per-file pragma) and armv7 (-march=armv7-a -mfpu=vfpv3-d16; NEON via
pragma), then runs ``kernel_test --count VARIANT KERNEL ROWS COLS`` under
``qemu-<arch>-static -cpu cortex-a76|cortex-a15 -singlestep -d exec,nochain``
(one guest instruction per translation block, every executed block logged)
with ``-dfilter`` restricted to the kernel objects, the two marker functions
and libc's mem* routines. Instructions between ck_marker_begin and
ck_marker_end (one call, after a warm-up call) are counted. This is an
instruction count, not a cycle count: it shows how much work each variant
issues, not how the in-order A53 or out-of-order A76 pipelines overlap it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "edge_dred", "kernels", "src")
DRIVER = os.path.join(ROOT, "tests", "c", "kernel_test.c")
sys.path.insert(0, ROOT)
from edge_dred.kernels.variants import family_variants  # noqa: E402

TARGETS = {
    "aarch64": dict(cc="aarch64-linux-gnu-gcc", nm="aarch64-linux-gnu-nm", qemu="qemu-aarch64-static",
                    cpu="cortex-a76", flags=["-march=armv8-a"], variants=list(family_variants("aarch64"))),
    "armv7": dict(cc="arm-linux-gnueabihf-gcc", nm="arm-linux-gnueabihf-nm", qemu="qemu-arm-static",
                  cpu="cortex-a15", flags=["-march=armv7-a", "-mfpu=vfpv3-d16", "-mfloat-abi=hard"],
                  variants=list(family_variants("armv7"))),
}

# (label, kernel, rows, cols, multiply-accumulates per call)
CASES = [
    ("int8 dense 128x320", "i8gemv", 128, 320, 128 * 320),
    ("int8 dense 320x1024", "i8gemv", 320, 1024, 320 * 1024),
    ("int8 sparse 384x1152 @10%", "i8spmv10", 384, 1152, None),
    ("float dense 128x320", "sgemv", 128, 320, 128 * 320),
    ("GRU step 256->256 int8", "gru", 256, 256, 3 * 256 * 512),
    ("tanh x256", "tanh", 256, 1, None),
]
QUICK = {"int8 dense 128x320", "int8 sparse 384x1152 @10%", "GRU step 256->256 int8", "tanh x256"}

_TRACE = re.compile(r"^Trace [^\[]*\[[0-9a-f]+/([0-9a-f]+)/")


def _sources(family: str) -> list[str]:
    spec = importlib.util.spec_from_file_location("_ck_bc", os.path.join(ROOT, "edge_dred", "kernels", "build_config.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [os.path.join(ROOT, "edge_dred", "kernels", s) for s in mod.c_sources(family)]


def build(family: str, tmp: str) -> tuple[str, list[tuple[int, int]], dict[str, tuple[int, int]]]:
    """Static binary, text ranges of the kernel objects + mem*, marker addresses."""
    t = TARGETS[family]
    exe = os.path.join(tmp, f"kt_{family}")
    subprocess.run([t["cc"], "-static", "-O2", "-ffp-contract=off", *t["flags"], f"-I{SRC}", DRIVER,
                    *_sources(family), "-lm", "-o", exe], check=True)
    # All kernel code (static helpers included) is named ck_*; sizes come from nm.
    nm = subprocess.run([t["nm"], "-S", "--defined-only", exe], capture_output=True, text=True, check=True).stdout
    ranges, marks = [], {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        addr, size, name = int(parts[0], 16), int(parts[1], 16), parts[3]
        if name in ("ck_marker_begin", "ck_marker_end"):
            marks[name] = (addr, size)
            ranges.append((addr, size))
        elif size and (name.startswith("ck_") or re.match(r"^_*(mem(cpy|set|move)|__memcpy|__memset)", name)):
            ranges.append((addr, size))
    return exe, ranges, marks


def count(family: str, exe: str, ranges: list[tuple[int, int]], marks: dict[str, tuple[int, int]], variant: str, kernel: str,
          rows: int, cols: int, tmp: str) -> int:
    t = TARGETS[family]
    log = os.path.join(tmp, "exec.log")
    single = "-one-insn-per-tb" if "one-insn-per-tb" in subprocess.run([t["qemu"], "-h"], capture_output=True,
                                                                       text=True).stdout else "-singlestep"
    dfilter = ",".join(f"0x{a:x}+0x{s:x}" for a, s in ranges)
    subprocess.run([t["qemu"], "-cpu", t["cpu"], single, "-d", "exec,nochain", "-dfilter", dfilter, "-D", log, exe,
                    "--count", variant, kernel, str(rows), str(cols)], check=True, capture_output=True)
    (b0, bs), (e0, es) = marks["ck_marker_begin"], marks["ck_marker_end"]
    n, inside = 0, False
    with open(log) as f:
        for line in f:
            m = _TRACE.match(line)
            if not m:
                continue
            pc = int(m.group(1), 16)
            if b0 <= pc < b0 + bs:
                inside = True
            elif e0 <= pc < e0 + es:
                if inside:
                    break
            elif inside:
                n += 1
    os.remove(log)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cases")
    a = ap.parse_args(argv)
    missing = [t[k] for t in TARGETS.values() for k in ("cc", "qemu") if shutil.which(t[k]) is None]
    if missing:
        print(f"missing tools: {', '.join(missing)} (./quickstart.sh test installs them)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        for family, t in TARGETS.items():
            exe, ranges, marks = build(family, tmp)
            print(f"# {family} on qemu -cpu {t['cpu']}: instructions per call (MACs per instruction)")
            head = ["kernel"] + t["variants"]
            rows = []
            for label, kernel, r, c, macs in CASES:
                if a.quick and label not in QUICK:
                    continue
                cells = []
                for v in t["variants"]:
                    n = count(family, exe, ranges, marks, v, kernel, r, c, tmp)
                    cells.append(f"{n}" + (f" ({macs / n:.2f})" if macs else ""))
                rows.append([label] + cells)
                print("  " + label + ": " + ", ".join(f"{v} {cv}" for v, cv in zip(t["variants"], cells)),
                      file=sys.stderr, flush=True)
            widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
            for x in [head] + rows:
                print("  ".join(str(v).ljust(widths[i]) if i == 0 else str(v).rjust(widths[i])
                                for i, v in enumerate(x)))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
