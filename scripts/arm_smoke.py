"""Check a cross-built ARM wheel and smoke-test it under qemu-user (used by build_wheels.sh).

    python scripts/arm_smoke.py check-wheel WHEEL --arch aarch64
    python scripts/arm_smoke.py smoke WHEEL --arch aarch64 --sysroot DIR --qemu qemu-aarch64-static \
        --tests tests --work DIR [--quick] [--cpus cortex-a53,cortex-a76]

``smoke`` installs the wheel with pip (``--target``, the wheel's own platform tag, so pip
checks that the tags fit the board's interpreter), then for each CPU model runs, with the
sysroot's python3 under ``qemu-<arch>-static`` (``QEMU_LD_PREFIX`` = sysroot,
``QEMU_CPU`` = the core):

1. an import check that prints the kernel variant dispatch picked and compares it with what
   that core must get (dot-product kernels only on the Cortex-A76);
2. the fast part of the test suite against the *installed* package: :data:`CPU_TESTS` on every
   core, :data:`ONCE_TESTS` on the first (``--quick`` also leaves out :data:`QUICK_DESELECT`);
3. ``python -m edge_dred simulate`` on a 3 s synthetic clip with bursty loss, whose
   per-packet decisions must equal a run of the host build, and whose audio is compared
   with the host's (correlation; libopus's float encoder is not bit-exact across ISAs).

4. with ``--tflite-qemu``, ``simulate --dred`` with the target's TFLite runtime installed
   (:data:`TFLITE`) under that qemu (bookworm's 7.2 crashes in ai-edge-litert); DRED must
   recover packets.

It prints one table row per CPU and exits non-zero when anything failed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: Per target: GNU triplet, ELF e_machine, qemu-user binary name, CPU models (board cores) and the
#: kernel variant each must pick.
ARCHES = {
    "aarch64": dict(triplet="aarch64-linux-gnu", e_machine=183, qemu="qemu-aarch64",
                    cpus={"cortex-a53": "neon", "cortex-a72": "neon", "cortex-a76": "neon_dotprod"}),
    "armv7l": dict(triplet="arm-linux-gnueabihf", e_machine=40, qemu="qemu-arm",
                   cpus={"cortex-a7": "armv7_neon", "cortex-a15": "armv7_neon"}),
}

#: Extension modules every wheel must carry.
EXTENSIONS = ["edge_dred/codec/_opus", "edge_dred/dsp/_features", "edge_dred/dsp/_postfilter", "edge_dred/dsp/_fp_synthesis",
              "edge_dred/dred/_entropy", "edge_dred/kernels/_kernels"]

#: The "fast part" of the suite: pure-package tests (no torch, ffmpeg, ALSA or ../shared) that
#: exercise the compiled code. CPU_TESTS depend on the core (kernel variants vs their scalar twin,
#: the compiled feature path and postfilter) and run on every CPU model; ONCE_TESTS (libopus, receiver, int8
#: vocoder/PLC, weight files, boards, loss models) run on the first one. Hypothesis-heavy fuzz
#: files stay on the host.
CPU_TESTS = ["test_kernels.py", "test_kernels_gru.py", "test_kernels_network.py", "test_features.py",
             "test_postfilter.py"]
ONCE_TESTS = ["test_opus.py", "test_receiver.py", "test_vocoder.py", "test_plc.py", "test_quantize.py",
              "test_boards.py", "test_loss.py"]
#: Tests that spawn ``sys.executable``: without binfmt_misc the kernel cannot exec an ARM binary.
DESELECT = ["test_kernels.py::test_env_var_forces_variant"]
#: With --quick (CI) only these of ONCE_TESTS run: the ones through compiled code (libopus binding,
#: int8 vocoder/PLC on the kernels); receiver, quantize and loss are numpy/Python logic that the host
#: run already covers on a 64-bit target (the full run keeps them: they caught a 32-bit bug).
QUICK_ONCE = ["test_opus.py", "test_vocoder.py", "test_plc.py", "test_boards.py"]
#: Left out by --quick (CI): the slowest under emulation (> 3 s each), all codec/receiver
#: behaviour that the same tests check on the host; what they touch stays covered by the rest.
QUICK_DESELECT = [
    "test_opus.py::test_decoding_arbitrary_bytes_is_safe", "test_opus.py::test_lbrr_flag_matches_decoder_behaviour",
    "test_opus.py::test_fec_beats_plc", "test_opus.py::test_multi_frame_packets_reframed",
    "test_opus.py::test_bitrate_changes_packet_size",
    "test_receiver.py::test_lbrr_recovers_single_losses_better_than_plc",
    "test_receiver.py::test_conditions_bitrates_are_measured",
    "test_receiver.py::test_burst_losses_fall_back_to_concealment_and_every_slot_is_explained",
    "test_plc.py::test_shipped_models_edges_have_no_click", "test_plc.py::test_fade_to_silence_after_100ms",
    "test_vocoder.py::test_shipped_model_continues_real_audio_without_a_click",
]


class SmokeError(RuntimeError):
    """A wheel or smoke-test check failed."""


# ----------------------------------------------------------------------------- wheel check

def _elf_machine(data: bytes) -> int:
    if data[:4] != b"\x7fELF":
        raise SmokeError("not an ELF file")
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


def check_wheel(path: str, arch: str) -> list[str]:
    """Verify a repaired wheel's contents; return a short summary (raises :class:`SmokeError`)."""
    facts = ARCHES[arch]
    name = os.path.basename(path)
    if not re.search(rf"-cp311-cp311-manylinux_\d+_\d+_{arch}\.whl$", name):
        raise SmokeError(f"{name}: expected a cp311 manylinux_*_{arch} wheel")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        stray = sorted({n.split("/", 1)[0] for n in names} - {"edge_dred", "edge_dred.libs"}
                       - {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")})
        if stray:
            raise SmokeError(f"{name}: top-level entries outside edge_dred/: {stray}")
        sos = sorted(n for n in names if re.search(r"\.so(\.\d+)*$", n))
        for n in sos:
            m = _elf_machine(z.read(n)[:64])
            if m != facts["e_machine"]:
                raise SmokeError(f"{name}: {n} is ELF machine {m}, expected {facts['e_machine']} ({arch})")
        suffix = f".cpython-311-{facts['triplet']}.so"
        missing = [e for e in EXTENSIONS if e + suffix not in names]
        if missing:
            raise SmokeError(f"{name}: extension modules missing: {missing}")
        vendored = [n for n in sos if n.startswith("edge_dred.libs/")]
        if not any("libopus" in n for n in vendored):
            raise SmokeError(f"{name}: libopus is not vendored under edge_dred.libs/")
        if not any(n.startswith("edge_dred/board_configs/") and n.endswith(".toml") for n in names):
            raise SmokeError(f"{name}: board configs missing")
        manifest = "edge_dred/models/manifest.json"
        if manifest not in names:
            raise SmokeError(f"{name}: {manifest} missing")
        models = json.loads(z.read(manifest)).get("models", {})
        absent = sorted(m["file"] for m in models.values()
                        if isinstance(m, dict) and "file" in m and f"edge_dred/models/{m['file']}" not in names)
        if absent:
            raise SmokeError(f"{name}: model files listed in manifest.json but not in the wheel: {absent}")
        size = os.path.getsize(path)
    return [f"{name}: {size / 1e6:.1f} MB, {len(sos)} ELF objects ({arch}), "
            f"{len(models)} models, vendored {', '.join(os.path.basename(v) for v in vendored)}"]


# ----------------------------------------------------------------------------- smoke test

def speech_clip(seconds: float = 3.0, sr: int = 16000, seed: int = 1) -> np.ndarray:
    """Voiced, syllable-modulated harmonics with pauses: enough for Opus/LBRR/PLC decisions."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 30))
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    x = x * env / np.max(np.abs(x)) * 0.5 + rng.normal(0, 0.002, t.size)
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray, sr: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def install(wheel: str, site: Path) -> None:
    """pip-install the wheel for the target interpreter (cp311, the wheel's platform) into ``site``."""
    plat = re.search(r"-(manylinux_[^-]+)\.whl$", os.path.basename(wheel))
    if not plat:
        raise SmokeError(f"{wheel}: no manylinux platform tag")
    shutil.rmtree(site, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
           "--platform", plat.group(1), "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           "--only-binary=:all:", wheel]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SmokeError(f"pip install of {wheel} failed:\n{r.stderr[-2000:]}")
    # Host-compiled bytecode (same CPython 3.11 format) spares the emulated interpreter the work.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site)], capture_output=True)


#: TFLite runtimes on PyPI for the target (see README): ai-edge-litert has no armv7l wheels, the
#: older tflite-runtime does (built against NumPy 1.x: keep the sysroot's, --no-deps).
TFLITE = {"aarch64": (["ai-edge-litert"], []), "armv7l": (["tflite-runtime"], ["--no-deps"])}


def install_tflite(arch: str, site: Path) -> str:
    """Install the target's TFLite runtime into ``site`` (cached); return what was installed."""
    pkgs, extra = TFLITE[arch]
    stamp = site / ".edge-dred-tflite"
    if stamp.exists():
        return stamp.read_text()
    shutil.rmtree(site, ignore_errors=True)
    plats = [f"--platform=manylinux{v}_{arch}" for v in ("2014", "_2_17", "_2_27", "_2_28", "_2_31", "_2_34", "_2_36")]
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(site), *plats,
                        "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:",
                        *extra, *pkgs], capture_output=True, text=True)
    if r.returncode:
        raise SmokeError(f"pip install of {pkgs} for {arch} failed:\n{r.stderr[-2000:]}")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site)], capture_output=True)
    got = ", ".join(sorted(d.name.split(".dist-info")[0] for d in site.glob("*.dist-info")))
    stamp.write_text(got)
    return got


def bpo_qemu(cache: Path, arch: str) -> Path | None:
    """bookworm-backports' qemu-user for ``arch`` where ``build_wheels.sh --dred`` unpacked it, or None.

    ``cache`` is the build cache (``$EDGE_DRED_CACHE``, default ``~/.cache/edge-dred``); the
    binaries live under ``qemu-bpo/usr/bin`` there (also used by ``edge-dred bench --estimate``).
    """
    p = Path(cache) / "qemu-bpo" / "usr" / "bin" / ARCHES[arch]["qemu"]
    return p if p.is_file() and os.access(p, os.X_OK) else None


def tflite_site(work: Path) -> Path:
    """Where :func:`install_tflite` keeps the target's TFLite runtime for a smoke-test work dir."""
    return Path(work) / "site-tflite"


@dataclass
class Guest:
    """Runs the sysroot's python3 under qemu-user with one CPU model."""

    qemu: str
    sysroot: Path
    site: Path
    work: Path
    timeout: float = 600.0
    env: dict[str, str] = field(default_factory=dict)

    def run(self, cpu: str, args: list[str], timeout: float | None = None, qemu: str | None = None,
            extra_path: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
        path = f"{extra_path}:{self.site}" if extra_path else str(self.site)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.work), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONPATH": path, "QEMU_LD_PREFIX": str(self.sysroot), "QEMU_CPU": cpu, **self.env}
        t0 = time.monotonic()
        r = subprocess.run([qemu or self.qemu, str(self.sysroot / "usr/bin/python3.11"), *args], cwd=self.work,
                           env=env, capture_output=True, text=True, timeout=timeout or self.timeout)
        return r, time.monotonic() - t0


def host_reference(clip: Path, out: Path, report: Path, sim_args: list[str]) -> dict | None:
    """The same simulate on the host build, or None when edge_dred is not importable here."""
    r = subprocess.run([sys.executable, "-m", "edge_dred", "simulate", str(clip), *sim_args, "-o", str(out),
                        "--report", str(report)], capture_output=True, text=True, cwd=str(ROOT))
    if r.returncode:
        return None
    return json.loads(report.read_text())


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    n = min(len(ref), len(x))
    err = np.sum((ref[:n] - x[:n]) ** 2)
    return float("inf") if err == 0 else 10 * np.log10(np.sum(ref[:n] ** 2) / err)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    if n == 0 or not np.any(a[:n]) or not np.any(b[:n]):
        return 0.0
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def _pytest_summary(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if re.search(r"\d+ (passed|failed|error)", line):
            return line.strip("= ").strip()
    return "no summary"


def smoke(a: argparse.Namespace) -> int:
    facts = ARCHES[a.arch]
    cpus = a.cpus.split(",") if a.cpus else list(facts["cpus"])
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    install(a.wheel, site)
    tests = work / "tests"
    shutil.rmtree(tests, ignore_errors=True)
    tests.mkdir()
    src = Path(a.tests)
    for f in ["conftest.py", "features_reference.py", *CPU_TESTS, *ONCE_TESTS]:   # + the tests' numpy oracle
        if (src / f).exists():
            shutil.copy2(src / f, tests / f)
    deselect = DESELECT + (QUICK_DESELECT if a.quick else [])
    clip = work / "clip.wav"
    write_wav(clip, speech_clip())
    sim_args = ["--loss", "20", "--burst", "3", "--seed", "1", "--lbrr"]
    with tempfile.TemporaryDirectory() as td:
        ref = host_reference(clip, Path(td) / "host.wav", Path(td) / "host.json", sim_args)
        ref_audio = read_wav(Path(td) / "host.wav") if ref else None

    dred_args = ["--loss", "20", "--burst", "3", "--seed", "1", "--dred"]
    dref = dref_audio = tfl_site = None
    if a.tflite_qemu:
        tfl_site = tflite_site(work)
        print(f"  {a.arch}: TFLite runtime for the DRED step: {install_tflite(a.arch, tfl_site)}", file=sys.stderr)
        with tempfile.TemporaryDirectory() as td:
            dref = host_reference(clip, Path(td) / "host.wav", Path(td) / "host.json", dred_args)
            dref_audio = read_wav(Path(td) / "host.wav") if dref else None

    guest = Guest(a.qemu, Path(a.sysroot), site, work)
    rows, failures = [], []
    tested_variants: set[str | None] = set()
    for i, cpu in enumerate(cpus):
        row = {"cpu": cpu}
        # 1. import + dispatch
        r, dt = guest.run(cpu, ["-c", "import edge_dred, numpy; from edge_dred.kernels import _kernels as k; "
                                      "print(k.best_variant(), numpy.__version__)"], timeout=120)
        got = r.stdout.split()[0] if r.returncode == 0 and r.stdout.split() else f"error: {r.stderr.strip()[-300:]}"
        want = facts["cpus"].get(cpu)
        row["variant"] = got
        if r.returncode or (want and got != want):
            failures.append(f"{cpu}: kernel dispatch picked {got!r}, expected {want!r}")
        # 2. fast tests: the core-dependent ones on every core (with --quick, once per kernel variant
        #    the cores pick: the A72 runs the same NEON code as the A53), the rest once
        repeat_variant = a.quick and want in tested_variants
        tested_variants.add(want)
        once = (QUICK_ONCE if a.quick else ONCE_TESTS) if i == 0 else []
        files = [f for f in (CPU_TESTS if not repeat_variant else []) + once if (tests / f).exists()]
        if files:
            # node ids are relative to --rootdir (work/), where the copies live under tests/
            args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(work), "-o", "addopts=",
                    *[f"tests/{f}" for f in files], *[f"--deselect=tests/{d}" for d in deselect]]
            r, dt = guest.run(cpu, args)
            row["pytest"] = f"{_pytest_summary(r.stdout)} ({dt:.0f} s)"
            if r.returncode:
                failures.append(f"{cpu}: pytest failed:\n{r.stdout[-3000:]}\n{r.stderr[-1000:]}")
        else:
            row["pytest"] = "-"
        # 3. simulate
        out, rep = work / f"sim_{cpu}.wav", work / f"sim_{cpu}.json"
        for p in (out, rep):
            p.unlink(missing_ok=True)
        r, dt = guest.run(cpu, ["-m", "edge_dred", "simulate", str(clip), *sim_args, "-o", str(out),
                                "--report", str(rep)], timeout=300)
        if r.returncode or not rep.exists():
            failures.append(f"{cpu}: simulate failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
            row["simulate"] = "FAILED"
        else:
            report = json.loads(rep.read_text())
            counts = report["decision_counts"]
            row["simulate"] = f"{dt:.0f} s, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            if sum(counts.values()) != len(report["packets"]):
                failures.append(f"{cpu}: decisions do not cover every packet")
            if ref is not None:
                mine = [p["decision"] for p in report["packets"]]
                theirs = [p["decision"] for p in ref["packets"]]
                if mine != theirs:
                    failures.append(f"{cpu}: per-packet decisions differ from the host build")
                # libopus's float encoder is not bit-exact across ISAs, so the packets (and audio) differ
                # slightly from x86; a broken decode or misaligned output would not correlate at all.
                mine_audio = read_wav(out)
                s = snr_db(ref_audio, mine_audio)
                c = corr(ref_audio, mine_audio)
                row["vs host"] = "bit-exact" if s == float("inf") else f"SNR {s:.1f} dB, corr {c:.3f}"
                if len(mine_audio) != len(ref_audio) or c < 0.9:
                    failures.append(f"{cpu}: output does not match the host build (length {len(mine_audio)} vs "
                                    f"{len(ref_audio)}, correlation {c:.3f})")
        # 4. DRED sender + receiver (TFLite encoder) under the qemu that runs the TFLite runtime
        if a.tflite_qemu:
            out, rep = work / f"dred_{cpu}.wav", work / f"dred_{cpu}.json"
            rep.unlink(missing_ok=True)
            r, dt = guest.run(cpu, ["-m", "edge_dred", "simulate", str(clip), *dred_args, "-o", str(out),
                                    "--report", str(rep)], timeout=600, qemu=a.tflite_qemu, extra_path=tfl_site)
            if r.returncode or not rep.exists():
                failures.append(f"{cpu}: simulate --dred failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
                row["dred"] = "FAILED"
            else:
                counts = json.loads(rep.read_text())["decision_counts"]
                row["dred"] = f"{dt:.0f} s, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                if not counts.get("dred"):
                    failures.append(f"{cpu}: simulate --dred recovered no packet from DRED: {counts}")
                if dref is not None:
                    c = corr(dref_audio, read_wav(out))
                    row["dred"] += f" (host: dred {dref['decision_counts'].get('dred', 0)}; corr {c:.3f})"
        rows.append(row)
        print(f"  {a.arch} {cpu}: " + "; ".join(f"{k} {v}" for k, v in row.items() if k != "cpu"),
              file=sys.stderr, flush=True)

    cols = ["cpu", "variant", "pytest", "simulate", "vs host"] + (["dred"] if a.tflite_qemu else [])
    print(f"\n{a.arch} wheel {os.path.basename(a.wheel)} under {a.qemu} (sysroot python3.11):\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "-")) for c in cols) + " |")
    if failures:
        print("\nFAILED:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    print(f"\n{a.arch}: smoke test passed on {', '.join(cpus)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check-wheel")
    c.add_argument("wheel")
    c.add_argument("--arch", choices=sorted(ARCHES), required=True)
    s = sub.add_parser("smoke")
    s.add_argument("wheel")
    s.add_argument("--arch", choices=sorted(ARCHES), required=True)
    s.add_argument("--sysroot", required=True)
    s.add_argument("--qemu", required=True)
    s.add_argument("--tests", default=str(ROOT / "tests"))
    s.add_argument("--work", required=True)
    s.add_argument("--cpus", help="comma-separated CPU models (default: the arch's board cores)")
    s.add_argument("--quick", action="store_true", help="CI mode: leave out the slowest emulated tests")
    s.add_argument("--tflite-qemu", help="also run `simulate --dred` (TFLite encoder) with this qemu binary "
                                         "(qemu 7.2 crashes ai-edge-litert; bookworm-backports' qemu 10 works)")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "check-wheel":
            print("\n".join(check_wheel(a.wheel, a.arch)))
            return 0
        return smoke(a)
    except SmokeError as e:
        print(f"arm_smoke: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
