"""aarch64 instructions of the DRED encoder's TFLite step, which `bench --estimate` cannot count.

    python benchmarks/tflite_step_aarch64.py [--cpu cortex-a72] [--steps 20] [--wheel WHEEL]

The estimate's counting plugin needs a qemu-user built with TCG plugins (bookworm's 7.2),
and ai-edge-litert crashes under that one; bookworm-backports' qemu 10 runs it but has no
plugin support. This counts with qemu 10's own execution log instead: with one guest
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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_dred.tools import estimate as est  # noqa: E402

GUEST = """
import sys, numpy as np
from edge_dred.dred.encoder import DredEncoder
from edge_dred.dsp.features import compute_features
from edge_dred.tools.demo_audio import _synthetic
enc = DredEncoder()
f = compute_features(np.clip(_synthetic(2.0), -32768, 32767).astype(np.int16)).astype(np.float32)
for i in range(int(sys.argv[1])):
    j = (2 * i) % (len(f) - 2)
    enc.step(f[j:j + 2])
for line in open('/proc/self/maps'):
    p = line.split()
    if len(p) >= 6 and 'x' in p[1] and 'ai_edge_litert' in p[5]:
        print('MAP', p[0])
"""


def _run(qemu: Path, cpu: str, sysroot: Path, pypath: str, script: Path, steps: int,
         log: Path | None = None, ranges: str = "") -> list[str]:
    cmd = ["setarch", "x86_64", "-R", str(qemu), "-L", str(sysroot), "-cpu", cpu]
    if log is not None:
        cmd += ["-one-insn-per-tb", "-d", "exec,nochain", "-dfilter", ranges, "-D", str(log)]
    cmd += [str(sysroot / "usr/bin/python3.11"), str(script), str(steps)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(script.parent), "LANG": "C.UTF-8", "PYTHONPATH": pypath}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise SystemExit(f"guest failed ({r.returncode}):\n{r.stderr[-1500:]}")
    return [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("MAP ")]


def _count(log: Path) -> int:
    n = 0
    with open(log, "rb") as f:
        for line in f:
            n += line.startswith(b"Trace")
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", default="cortex-a72", help="qemu CPU model (default cortex-a72)")
    ap.add_argument("--steps", type=int, default=20, help="steps between the two counting runs (default 20)")
    ap.add_argument("--wheel", default=None, help="edge-dred aarch64 wheel (default: the newest in dist/arm)")
    a = ap.parse_args(argv)
    if a.steps < 1:
        ap.error("--steps must be >= 1")
    sm = est._smoke()
    qemu = sm.bpo_qemu(est.cache_dir(), "aarch64")
    if qemu is None or shutil.which("setarch") is None:
        print("needs bookworm-backports' qemu (scripts/build_wheels.sh aarch64 --dred) and setarch")
        return 1
    sysroot, site, _ = est.prepare_guest("aarch64", a.wheel)
    tsite = sm.tflite_site(est.cache_dir() / "smoke-arm64")
    sm.install_tflite("aarch64", tsite)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "guest.py"
        script.write_text(GUEST)
        pypath = f"{tsite}:{site}"
        # The probe runs with the same logging options (an empty address filter): they move
        # where qemu maps the guest's libraries.
        maps = _run(qemu, a.cpu, sysroot, pypath, script, 1, Path(tmp) / "probe.log", "0x0..0x1")
        if not maps:
            print("the guest loaded no ai_edge_litert library")
            return 1
        ranges = ",".join("0x" + m.replace("-", "..0x") for m in maps)
        counts = []
        for steps in (2, 2 + a.steps):
            log = Path(tmp) / f"exec{steps}.log"
            again = _run(qemu, a.cpu, sysroot, pypath, script, steps, log, ranges)
            if again != maps:
                print(f"library addresses moved between runs ({maps} -> {again}); no count")
                return 1
            counts.append(_count(log))
            log.unlink()
    per = (counts[1] - counts[0]) / a.steps
    print(f"qemu {est.qemu_version(qemu)} -cpu {a.cpu}: {len(maps)} executable ai_edge_litert mappings; "
          f"{counts[0]} / {counts[1]} instructions in them for 2 / {2 + a.steps} steps")
    print(f"DRED encoder TFLite step, inside the runtime's libraries: {per / 1e3:.1f} k instructions per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
