"""Neural PLC: analyse every received slot (eager) or the kept history when a loss starts (lazy).

Usage::

    python benchmarks/bench_plc_analysis.py [--history-ms 1000] [--seconds 30] [files ...]
    python benchmarks/bench_plc_analysis.py --instructions [--history-ms 1000] [--packets 200]

The shipped models and policy, and the same policy with ``history_ms`` (lazy), are
driven slot by slot as the receiver drives them (``observe`` every slot, ``conceal``
for lost ones, ``handback`` after), on 16 kHz mono files (read with ``soundfile``) or
a synthetic speech-like signal, with a one-slot loss every 50 slots.  The first form
prints CPU time (this thread's, so that other processes on a shared machine
do not count) per received packet and of the first lost slot (the spike at
a loss start; the lazy analysis runs there).  The second counts x86 instructions
under callgrind: per received packet as ``(Ir(n packets) - Ir(0)) / n``, and the
first lost slot as ``Ir(n packets + 1 loss) - Ir(n packets)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from edge_dred.constants import FRAME_SAMPLES, SAMPLE_RATE
from edge_dred.plc import POLICY, NeuralPLC
from edge_dred.receiver import Decision, SlotContext

LOSS_EVERY = 50


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonics on a drifting pitch with a syllable envelope and a little noise, int16."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = 140 * (1 + 0.15 * np.sin(2 * np.pi * 0.4 * t))
    ph = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    x = sum(np.sin(k * ph) * 0.8 ** k for k in range(1, 25))
    env = 0.3 + 0.7 * np.sin(2 * np.pi * 2.5 * t) ** 2
    x = x / np.max(np.abs(x)) * env * 0.4 + rng.normal(0, 0.003, n)
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def load(paths: list[str]) -> np.ndarray:
    import soundfile as sf

    out = []
    for p in paths:
        x, sr = sf.read(p, dtype="int16")
        if sr != SAMPLE_RATE or x.ndim != 1:
            raise ValueError(f"{p}: need 16 kHz mono, got {sr} Hz, shape {x.shape}")
        out.append(x)
    return np.concatenate(out)


def make_plc(history_ms: int | None) -> NeuralPLC:
    return NeuralPLC(_policy=dataclasses.replace(POLICY, history_ms=history_ms))


def drive(plc: NeuralPLC, pcm: np.ndarray, lost: np.ndarray, t_recv: list, t_first: list) -> None:
    """The receiver's calls for each slot; appends the time of each received slot / first lost slot."""
    hist = np.zeros(4096, np.int16)
    prev_lost = False
    for s in range(lost.size):
        x = pcm[s * FRAME_SAMPLES:(s + 1) * FRAME_SAMPLES]
        t0 = time.thread_time()
        if lost[s]:
            y = plc.conceal(SlotContext(s, [], hist, 1, hist[-FRAME_SAMPLES:].copy()))
            dec = Decision.NEURAL_PLC
        else:
            y = plc.handback(x) if prev_lost else x
            dec = Decision.REGULAR
        plc.observe(y, dec)
        dt = time.thread_time() - t0
        if lost[s] and not prev_lost:
            t_first.append(dt)
        elif not lost[s] and not prev_lost:
            t_recv.append(dt)
        prev_lost = bool(lost[s])
        hist = np.concatenate([hist[FRAME_SAMPLES:], y])


def loss_mask(n: int) -> np.ndarray:
    lost = np.zeros(n, bool)
    lost[LOSS_EVERY::LOSS_EVERY] = True
    return lost


def timing(pcm: np.ndarray, history_ms: int) -> None:
    n = len(pcm) // FRAME_SAMPLES
    lost = loss_mask(n)
    print(f"{n} slots ({n * 0.02:.1f} s), a one-slot loss every {LOSS_EVERY} slots "
          f"({int(lost.sum())} losses); CPU time of this thread")
    print(f"{'analysis':<34} {'per received packet us (median)':>31} {'first lost slot ms (median / max)':>34}")
    for name, h in (("eager (every slot)", None), (f"lazy (last {history_ms} ms at a loss)", history_ms)):
        plc = make_plc(h)
        t_recv: list[float] = []
        t_first: list[float] = []
        drive(plc, pcm, lost, t_recv, t_first)
        print(f"{name:<34} {np.median(t_recv) * 1e6:>31.0f} "
              f"{np.median(t_first) * 1e3:>22.2f} / {np.max(t_first) * 1e3:.2f}")


# -- instructions under callgrind ------------------------------------------------------------

def _worker(history_ms: int | None, packets: int, total: int, with_loss: bool) -> None:
    pcm = speech_like(0.02 * (total + 2))   # the same signal in every run: its cost cancels
    plc = make_plc(history_ms)
    lost = np.zeros(packets + (1 if with_loss else 0), bool)
    if with_loss:
        lost[-1] = True
    drive(plc, pcm, lost, [], [])


def _callgrind(history_ms: int | None, packets: int, total: int, with_loss: bool) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               os.path.abspath(__file__), "--_worker", str(history_ms or 0), str(packets), str(total),
               str(int(with_loss))]
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        text = open(out).read()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if not m:
        raise RuntimeError("no instruction total in the callgrind output")
    return int(m.group(1))


def instructions(history_ms: int, packets: int) -> None:
    if shutil.which("valgrind") is None:
        print("valgrind not found: install it (apt-get install valgrind) to count instructions")
        return
    print(f"x86 instructions (callgrind), {packets} received packets of synthetic speech, then one lost slot")
    print(f"{'analysis':<34} {'M instr / received packet':>26} {'M instr, first lost slot':>25}")
    for name, h in (("eager (every slot)", None), (f"lazy (last {history_ms} ms at a loss)", history_ms)):
        base = _callgrind(h, 0, packets, False)
        recv = _callgrind(h, packets, packets, False)
        loss = _callgrind(h, packets, packets, True)
        print(f"{name:<34} {(recv - base) / packets / 1e6:>26.3f} {(loss - recv) / 1e6:>25.2f}")


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--_worker":
        h = int(sys.argv[2]) or None
        _worker(h, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1")
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--history-ms", type=int, default=1000, help="lazy analysis window")
    ap.add_argument("--seconds", type=float, default=30.0, help="synthetic signal length")
    ap.add_argument("--instructions", action="store_true", help="count instructions under callgrind")
    ap.add_argument("--packets", type=int, default=200, help="received packets per callgrind run")
    args = ap.parse_args()
    if args.instructions:
        instructions(args.history_ms, args.packets)
        return
    timing(load(args.files) if args.files else speech_like(args.seconds), args.history_ms)


if __name__ == "__main__":
    main()
