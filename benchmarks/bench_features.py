"""Cost of the feature extractor: time, and x86 instructions per 10 ms frame under callgrind.

Usage::

    python benchmarks/bench_features.py [--seconds 60] [--frames 2000] [files ...]
    python benchmarks/bench_features.py --instructions [--packets 300]
    python benchmarks/bench_features.py --arm cortex-a72 [--packets 300]

With audio files (16 kHz mono, read with ``soundfile``) those are used;
otherwise a synthetic mix of harmonic tones and noise.  The first form prints
the batch real-time factor and the streaming latency per frame.  The second
runs this script under ``valgrind --tool=callgrind`` and prints instructions
per 10 ms frame: streamed per 20 ms packet (``process_block`` of 320 samples,
as the receiver calls it; the Python call included), in one batch call, and
the compiled analysis alone (``edf_process_*``, when the build has it).  Each
row is ``(Ir(n) - Ir(0)) / frames``, so interpreter start-up and imports cancel.
Run it with another checkout's interpreter (``cd OTHER && .venv/bin/python
PATH/TO/bench_features.py --instructions``) to compare implementations;
libopus's analysis, its pitch DNN included, costs about 139 k per 10 ms.
The third counts aarch64 instructions of the C analysis alone (streamed per
packet): ``tests/c/feature_analysis_count.c`` built statically with
``aarch64-linux-gnu-gcc`` and run under ``qemu-aarch64 -cpu CPU`` with the
project's counting plugin (``scripts/qemu_insn_plugin.c``).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from edge_dred.dsp import features as fm

LIBOPUS_K = 139  # libopus 1.5 feature analysis + pitch DNN, k instructions per 10 ms (x86, issue 21)


def synthetic(seconds: float, seed: int = 0) -> np.ndarray:
    """Alternating 0.5 s harmonic tones (varying f0) and noise, int16 scale, ``round(seconds * 16000)`` samples."""
    rng = np.random.default_rng(seed)
    sr = fm.SAMPLE_RATE
    parts = []
    t = np.arange(sr // 2) / sr
    for i in range(int(np.ceil(seconds * 2))):
        if i % 3 == 2:
            parts.append(rng.normal(0, 800, t.size))
        else:
            f0 = rng.uniform(70, 400)
            parts.append(sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 6)) * 3000)
    return np.concatenate(parts)[: int(round(seconds * sr))]


def load(paths: list[str]) -> np.ndarray:
    """Concatenate 16 kHz mono files (int16 scale)."""
    import soundfile as sf

    out = []
    for p in paths:
        x, sr = sf.read(p, dtype="int16")
        if sr != fm.SAMPLE_RATE or x.ndim != 1:
            raise ValueError(f"{p}: need 16 kHz mono, got {sr} Hz, shape {x.shape}")
        out.append(x)
    return np.concatenate(out)


def bench(x: np.ndarray, frames: int) -> tuple[float, float, float]:
    """Return (batch x real time, streaming median us, streaming p99 us)."""
    seconds = x.size / fm.SAMPLE_RATE
    t0 = time.process_time()
    fm.compute_features(x)
    rt = seconds / (time.process_time() - t0)
    ex = fm.FeatureExtractor()
    n = min(frames, x.size // fm.FRAME_SIZE)
    lat = np.empty(n)
    for i in range(n):
        fr = x[i * fm.FRAME_SIZE:(i + 1) * fm.FRAME_SIZE]
        t0 = time.perf_counter()
        ex.process(fr)
        lat[i] = time.perf_counter() - t0
    return rt, float(np.median(lat) * 1e6), float(np.percentile(lat, 99) * 1e6)


# -- instructions under callgrind ------------------------------------------------------------

def _worker(mode: str, packets: int, total: int) -> None:
    """The measured work: the first ``packets`` of ``total`` 20 ms packets of synthetic speech, int16."""
    x = np.clip(synthetic((total + 1) * 320 / fm.SAMPLE_RATE), -32768, 32767).astype(np.int16)
    ex = fm.FeatureExtractor()
    ex.process_block(x[:320])  # first call outside the difference (lazy set-up)
    if mode == "stream":
        for i in range(packets):
            ex.process_block(x[320 * (i + 1):320 * (i + 2)])
    else:
        ex.process_block(x[320:320 * (packets + 1)])


def _callgrind(mode: str, packets: int, total: int, toggle: str | None) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        if toggle:
            cmd.append(f"--toggle-collect={toggle}")
        cmd += [sys.executable, os.path.abspath(__file__), "--_worker", mode, str(packets), str(total)]
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        text = open(out).read()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if not m:
        raise RuntimeError("no instruction total in the callgrind output")
    return int(m.group(1))


def instructions(packets: int) -> None:
    if shutil.which("valgrind") is None:
        print("valgrind not found: install it (apt-get install valgrind) to count instructions")
        return
    frames = 2 * packets
    compiled = getattr(fm._ck, "Analyzer", None) is not None
    rows = [("streamed per 20 ms packet (process_block, Python call included)", "stream", None),
            ("one batch call (process_block of the whole signal)", "batch", None)]
    if compiled:
        rows.append(("compiled analysis alone (edf_process_*)", "stream", "edf_process_*"))
    print(f"x86 instructions per 10 ms frame ({packets} packets of synthetic speech, callgrind); "
          f"implementation: {os.path.dirname(os.path.dirname(os.path.abspath(fm.__file__)))}")
    print(f"{'what':<66} {'k instr / 10 ms':>16} {'x libopus':>10}")
    for name, mode, toggle in rows:
        if toggle:  # only the C calls are counted, the first (set-up) call's two frames included
            k = _callgrind(mode, packets, packets, toggle) / (frames + 2) / 1e3
        else:
            k = (_callgrind(mode, packets, packets, None) - _callgrind(mode, 0, packets, None)) / frames / 1e3
        print(f"{name:<66} {k:>16.1f} {k / LIBOPUS_K:>10.2f}")
    print(f"{'libopus 1.5 analysis incl. pitch DNN (reference)':<66} {LIBOPUS_K:>16.1f} {1.0:>10.2f}")


def _params_bytes() -> bytes:
    """The tables and thresholds as the C struct ``edf_params`` (LP64 layout)."""
    p = fm._PARAMS
    dt = np.dtype([(k, "<f8") for k in list(p)[:15]] + [("octave_kmax", "<i4"), ("cont_max_gap", "<i4"),
                  ("window", "<f8", (320,)), ("band_w", "<f8", (18, 161)), ("dct", "<f8", (18, 18)),
                  ("lowpass", "<f8", (31,))], align=True)
    rec = np.zeros((), dt)
    for k in list(p):
        rec[k] = p[k]
    rec["window"], rec["band_w"], rec["dct"], rec["lowpass"] = fm._WINDOW, fm._BAND_WN_T.T, fm._DCT, fm._LOWPASS
    return rec.tobytes()


def arm_instructions(cpu: str, packets: int) -> None:
    from pathlib import Path

    from edge_dred.tools.estimate import build_plugin

    root = Path(__file__).resolve().parents[1]
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if not cc or not qemu:
        print("needs aarch64-linux-gnu-gcc and the dynamically linked qemu-aarch64 (Debian gcc-aarch64-linux-gnu, "
              "qemu-user)")
        return
    if list(fm._PARAMS)[:15] != ["preemphasis", "win_power", "energy_floor", "max_range", "follow_decay",
                                  "c0_offset", "reg", "double_margin", "octave_ratio", "cont_window",
                                  "cont_margin", "jump_min", "onset_min", "voiced_threshold", "default_period"]:
        raise RuntimeError("edf_params layout changed: update _params_bytes")
    n = 2 * packets
    with tempfile.TemporaryDirectory() as d:
        w = Path(d)
        exe = w / "fa_count"
        src = root / "edge_dred" / "dsp" / "src"
        kiss = root / "edge_dred" / "third_party" / "kissfft"
        subprocess.run([cc, "-O3", "-static", "-march=armv8-a", "-ffp-contract=off", "-fno-predictive-commoning",
                        f"-I{src}", f"-I{kiss}", "-o", str(exe), str(root / "tests" / "c" / "feature_analysis_count.c"),
                        str(src / "feature_analysis.c"), str(kiss / "kiss_fft.c"), str(kiss / "kiss_fftr.c"), "-lm"],
                       check=True)
        (w / "params.bin").write_bytes(_params_bytes())
        x = np.clip(synthetic((n + 1) * fm.FRAME_SIZE / fm.SAMPLE_RATE), -32768, 32767).astype(np.int16)
        (w / "pcm.raw").write_bytes(x.tobytes())
        plugin = build_plugin(qemu, w / "plugin", [str(exe), str(w / "params.bin"), str(w / "pcm.raw"), "2"])
        marks = w / "marks.txt"
        r = subprocess.run([qemu, "-cpu", cpu, "-plugin", f"{plugin},out={marks}", str(exe), str(w / "params.bin"),
                            str(w / "pcm.raw"), str(n)], check=True, capture_output=True, text=True)
        counts = dict(line.split() for line in marks.read_text().splitlines())
    got = float(r.stdout.split()[-1])
    ex = fm.FeatureExtractor()
    want = float(np.sum(np.concatenate([ex.process_block(x[:fm.FRAME_SIZE])] + [
        ex.process_block(x[fm.FRAME_SIZE * (i + 1):fm.FRAME_SIZE * (i + 3)]) for i in range(0, n, 2)]),
        dtype=np.float64))
    if abs(got - want) > 1e-3 * max(1.0, abs(want)):
        raise RuntimeError(f"the ARM build's features differ from this build's (checksum {got} vs {want})")
    k = (int(counts["2"]) - int(counts["1"])) / n / 1e3
    print(f"aarch64 instructions per 10 ms frame, C analysis alone, streamed per packet "
          f"(qemu -cpu {cpu}, {packets} packets of synthetic speech): {k:.1f} k  "
          f"({k / LIBOPUS_K:.2f} x libopus's x86 count)")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--_worker":
        _worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--seconds", type=float, default=60.0, help="synthetic signal length")
    ap.add_argument("--frames", type=int, default=2000, help="frames for the streaming test")
    ap.add_argument("--instructions", action="store_true", help="count instructions under callgrind")
    ap.add_argument("--packets", type=int, default=300, help="packets per callgrind run")
    ap.add_argument("--arm", metavar="CPU", help="count aarch64 instructions under qemu-aarch64 -cpu CPU")
    args = ap.parse_args()
    if args.arm:
        arm_instructions(args.arm, args.packets)
        return
    if args.instructions:
        instructions(args.packets)
        return
    x = load(args.files) if args.files else synthetic(args.seconds)
    print(f"audio: {x.size / fm.SAMPLE_RATE:.1f} s  (CPU time; shared machines inflate it)")
    print(f"{'batch x realtime':>17} {'stream median us':>17} {'stream p99 us':>14}")
    rt, med, p99 = bench(x, args.frames)
    print(f"{rt:>17.0f} {med:>17.0f} {p99:>14.0f}")


if __name__ == "__main__":
    main()
