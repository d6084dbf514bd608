"""aarch64 instructions of the DRED encoder's TFLite step, from qemu 10's execution log.

    python benchmarks/tflite_step_aarch64.py [--cpu cortex-a72] [--steps 20] [--wheel WHEEL]

The estimate's counting plugin needs a qemu-user built with TCG plugins (bookworm's 7.2),
and ai-edge-litert crashes under that one; bookworm-backports' qemu 10 runs it but has no
plugin support. This counts with qemu 10's own execution log instead (as `bench --estimate`
does for that row when bookworm-backports' qemu is cached; ``estimate.count_tflite_step``): with one guest
instruction per translation block (``-one-insn-per-tb -d exec,nochain``) every executed
instruction inside the runtime's libraries (the ``ai_edge_litert`` shared objects, filtered
by address with ``-dfilter``) is one ``Trace`` line. Two runs of ``DredEncoder.step`` on the
same features, ``--steps`` apart, cancel loading and start-up; the difference per step is
printed. Host address randomisation is turned off (``setarch -R``) and a probe run with the
same options finds the libraries' addresses. Not counted: the Python around ``invoke()`` and libc
(about 55 k x86 instructions, ``benchmarks/dred_coding.py --stages net,invoke``).

Needs what ``scripts/build_wheels.sh aarch64 --dred`` leaves in the cache (the sysroot,
bookworm-backports' qemu, ai-edge-litert for aarch64) and the aarch64 wheel; each counting
run writes about 1 GB of log into a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_dred.tools import estimate as est  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", default="cortex-a72", help="qemu CPU model (default cortex-a72)")
    ap.add_argument("--steps", type=int, default=20, help="steps between the two counting runs (default 20)")
    ap.add_argument("--wheel", default=None, help="edge-dred aarch64 wheel (default: the newest in dist/arm)")
    a = ap.parse_args(argv)
    if a.steps < 1:
        ap.error("--steps must be >= 1")
    sysroot, site, work = est.prepare_guest("aarch64", a.wheel)
    rt = est.plan_runtime("aarch64", a.cpu, sysroot, site, work)
    if rt.apart is None:
        print("needs bookworm-backports' qemu without plugin support and the TFLite runtime installed "
              "(scripts/build_wheels.sh aarch64 --dred), or the counting qemu runs the step itself")
        return 1
    qemu, version, tsite, _ = rt.apart
    try:
        per = est.count_tflite_step(qemu, a.cpu, sysroot, site, tsite, a.steps)
    except est.EstimateError as e:
        print(e)
        return 1
    print(f"qemu {version} -cpu {a.cpu}: DRED encoder TFLite step, inside the runtime's "
          f"libraries: {per / 1e3:.1f} k instructions per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
