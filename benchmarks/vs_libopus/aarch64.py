"""The aarch64 side of benchmarks/vs_libopus: both sides under qemu-aarch64, counted by the project's plugin.

No callgrind for a foreign architecture: libopus is cross-built (Debian's
``aarch64-linux-gnu-gcc`` against the bookworm sysroot of
``scripts/build_wheels.sh``, the same CMake options and weights as the x86 run,
NEON as libopus's CMake sets it up for aarch64), the driver with ``-DEDGE_MARKS``
(its stages, and libopus's internal ones through ``--wrap``, between the plugin's
markers), and edge-dred runs from the project's aarch64 wheel in the sysroot's
python3.11, as ``edge-dred bench --estimate`` does (its ``prepare_guest`` and
``build_plugin`` are reused).  Both run under ``qemu-aarch64 -cpu CPU`` with
``scripts/qemu_insn_plugin.c``; counts are guest instructions.

TFLite (ai-edge-litert) crashes under the plugin-capable qemu 7.2, so the DRED
encoder network runs on the host: its outputs for the same speech are recorded
there (``edge_side.py --record``) and replayed to the guest's senders, which run
everything else (features, quantization, rate control, range coding, packet
framing); the rows that need the network say so.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from marks import FIRST, corrected, read_marks

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRIPLET = "aarch64-linux-gnu"
QEMU = "qemu-aarch64"
# libopus's internal functions the driver brackets (called across its source files).
WRAPPED = ["lpcnet_compute_single_frame_features_float", "fargan_synthesize_int", "dred_encode_silk_frame",
           "dred_ec_decode", "dred_rdovae_encode_dframe"]
NET_NOTE = ("ai-edge-litert crashes under the plugin-capable qemu, so the encoder network ran on the host "
            "and its outputs were replayed in the guest")


class Guest:
    """Where and how the guest runs: qemu, the counting plugin, the sysroot and the installed wheel."""

    def __init__(self, qemu: str, plugin: str, sysroot: str, site: str, cpu: str, version: str) -> None:
        self.qemu, self.plugin, self.sysroot, self.site, self.cpu, self.version = (
            qemu, plugin, sysroot, site, cpu, version)

    def run(self, argv: list[str], marks: str, what: str, env: dict | None = None,
            timeout: float = 7200.0) -> subprocess.CompletedProcess:
        cmd = [self.qemu, "-L", self.sysroot, "-cpu", self.cpu, "-plugin", f"{self.plugin},out={marks}", *argv]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{what} under {self.qemu} took longer than {timeout:.0f} s") from None
        if r.returncode:
            raise SystemExit(f"{what} under {self.qemu} -cpu {self.cpu} failed (exit {r.returncode}):\n"
                             f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        return r


def prepare(a: argparse.Namespace, skip: type[Exception]) -> Guest:
    """Check the tools, build the plugin and install the wheel for the guest; ``skip`` names what is missing."""
    from edge_dred.tools.estimate import EstimateError, build_plugin, prepare_guest, qemu_version, supports_plugins

    for tool, why in ((f"{TRIPLET}-gcc", "cross-builds libopus (Debian gcc-aarch64-linux-gnu)"),
                      (QEMU, "runs the guest (Debian qemu-user, with TCG plugin support)")):
        if shutil.which(tool) is None:
            raise skip(f"{tool} not found ({why})")
    qemu = shutil.which(QEMU)
    if not supports_plugins(qemu):
        raise skip(f"{qemu} cannot load TCG plugins (a dynamically linked qemu-user is needed)")
    try:
        sysroot, site, work = prepare_guest("aarch64", a.wheel)
        plugin = build_plugin(qemu, work, ["-L", str(sysroot), str(sysroot / "bin" / "true")])
    except EstimateError as e:
        raise skip(str(e)) from None
    return Guest(qemu, str(plugin), str(sysroot), str(site), a.cpu, qemu_version(qemu))


def build_libopus(a: argparse.Namespace, opus: str, guest: Guest, run, need) -> str:
    """libopus (DRED, deep PLC) and the marker driver for aarch64; returns the driver's path."""
    from edge_dred.tools.estimate import MAGIC

    cmake = need("cmake", "to build libopus")
    cc = shutil.which(f"{TRIPLET}-gcc")
    bdir = os.path.join(a.work, "opus-build-aarch64")
    lib = os.path.join(bdir, "libopus.a")
    if not os.path.exists(lib):
        print("cross-building libopus for aarch64 (DRED, deep PLC) ...", file=sys.stderr)
        run([cmake, "-S", opus, "-B", bdir, "-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
             f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_SYSROOT={guest.sysroot}",
             "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_FLAGS_RELEASE=-O2 -g -DNDEBUG",
             "-DOPUS_DRED=ON", "-DOPUS_DEEP_PLC=ON", "-DOPUS_BUILD_SHARED_LIBRARY=OFF", "-DOPUS_BUILD_TESTING=OFF",
             "-DOPUS_BUILD_PROGRAMS=OFF"], "cmake configure (aarch64)")
        run([cmake, "--build", bdir, "-j", str(os.cpu_count() or 1)], "libopus build (aarch64)")
    driver = os.path.join(a.work, "driver-aarch64")
    wraps = [f"-Wl,--wrap={f}" for f in WRAPPED]
    run([cc, f"--sysroot={guest.sysroot}", "-O2", "-g", "-DEDGE_MARKS", f"-DEDGE_MAGIC={MAGIC:#x}u",
         f"-DEDGE_MARK_FIRST={FIRST}", "-I", os.path.join(opus, "include"), os.path.join(HERE, "driver.c"), lib,
         *wraps, "-lm", "-o", driver], "driver build (aarch64)")
    return driver


def libopus_side(a: argparse.Namespace, guest: Guest, driver: str, raw: str, trace: str,
                 args: list[str]) -> tuple[dict, dict, dict]:
    """The driver in the guest; returns (info, {function: (instructions, calls)}, marker calibration)."""
    print(f"libopus under qemu-aarch64 -cpu {guest.cpu} ...", file=sys.stderr)
    marks = os.path.join(a.work, f"marks.libopus.{guest.cpu}.txt")
    r = guest.run([driver, raw, trace, *args], marks, "libopus driver")
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if len(lines) != 2 or "stages" not in lines[1]:
        raise SystemExit(f"libopus driver: unexpected output {r.stdout[-500:]!r}")
    info, names = lines[0], lines[1]["stages"]
    counts, total = read_marks(open(marks).read(), names)
    prof, own, nested = corrected(counts)
    return info, prof, {"marker_own": own, "marker_nested": nested, "total": total}


def record_latents(a: argparse.Namespace, raw: str, run) -> str:
    """The DRED encoder network's outputs for the speech, on the host (TFLite runs here)."""
    out = os.path.join(a.work, "latents.npz")
    print("DRED encoder network on the host (its outputs are replayed in the guest) ...", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run([sys.executable, os.path.join(HERE, "edge_side.py"), "--record", raw, out], "recording the encoder outputs",
        env=env)
    return out


def edge_side(a: argparse.Namespace, guest: Guest, raw: str, trace: str, latents: str) -> tuple[dict, dict, int]:
    """edge-dred from the aarch64 wheel in the guest; returns (info, {edstage_<n>: (instructions, calls)}, total)."""
    from edge_side import stage_names

    print(f"edge-dred under qemu-aarch64 -cpu {guest.cpu} (the interpreter is emulated: slow) ...", file=sys.stderr)
    out = os.path.join(a.work, f"edge_side.{guest.cpu}.json")
    marks = os.path.join(a.work, f"marks.edge.{guest.cpu}.txt")
    env = {"PATH": "/usr/bin:/bin", "HOME": a.work, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "PYTHONPATH": guest.site, "OPENBLAS_NUM_THREADS": "1"}
    guest.run([os.path.join(guest.sysroot, "usr", "bin", "python3.11"), os.path.join(HERE, "edge_side.py"),
               raw, trace, "marks", out, latents], marks, "edge-dred", env=env)
    counts, total = read_marks(open(marks).read(), stage_names())
    return json.load(open(out)), {f"edstage_{k}": (v[0], v[1]) for k, v in counts.items()}, total
