"""The vocoder's postfilter per 10 ms: compiled vs the float64 numpy reference; prints a table.

    python benchmarks/postfilter_cost.py [--packets 100] [--no-callgrind]

Rows: the vocoder's postfilter chain (envelope + pitch, ``VocoderPostfilter``),
the envelope filter on PCM (the neural PLC's shaping of libopus's concealment,
``EnvelopePostfilter.process_pcm``) and the vocoder's de-emphasis to int16 (the
numpy reference: the per-frame loop it replaces).  Each is called once per
20 ms packet (two frames) on the demo's synthetic voiced signal with pauses, as the receiver does.

Columns: x86 instructions per 10 ms counted with valgrind's callgrind (the
difference between a run of ``10 + --packets`` packets and one of 10 after the
same set-up, so start-up, imports and set-up cancel) and wall time per 10 ms here (best of 5).  Needs
``valgrind`` for the instruction column; without it (or with
``--no-callgrind``) only times are printed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from callgrind_total import callgrind_total  # noqa: E402

CASES = ("chain", "envelope_pcm", "deemphasis")
IMPLS = ("numpy", "compiled")


def _workload(case: str, impl: str, packets: int):
    """A function of the packet index (< ``packets``) doing one packet's work, after all set-up.

    The set-up (signal, features) depends on ``packets`` only, so two workers
    given the same ``packets`` differ only in how many packets they run.
    """
    from edge_dred.constants import FRAME_SIZE, PREEMPHASIS
    from edge_dred.dsp import postfilter as pf
    from edge_dred.dsp import postfilter_reference as ref
    from edge_dred.dsp.features import compute_features, deemphasis
    from edge_dred.tools.demo_audio import _synthetic

    n = 2 * packets
    rng = np.random.default_rng(0)
    pcm = np.clip(_synthetic(n * FRAME_SIZE / 16000 + 0.1) + rng.normal(0, 30, int(n * FRAME_SIZE + 1600)),
                  -32768, 32767).astype(np.int16)[:n * FRAME_SIZE]
    feats = compute_features(pcm)
    x = pcm.astype(np.float64) / 32768.0
    pe = np.concatenate([x[:1], x[1:] - PREEMPHASIS * x[:-1]]).reshape(n, FRAME_SIZE)
    pe32 = pe.astype(np.float32)          # what the network hands over
    if case == "chain":
        f = (ref.VocoderPostfilterReference if impl == "numpy" else pf.VocoderPostfilter)()
        return lambda i: f.process(pe32[2 * i:2 * i + 2], feats[2 * i:2 * i + 2])
    if case == "envelope_pcm":
        f = (ref.EnvelopePostfilterReference if impl == "numpy" else pf.EnvelopePostfilter)(0.5)
        return lambda i: f.process_pcm(pcm[320 * i:320 * i + 320], feats[2 * i:2 * i + 2])
    state = {"mem": 0.0}
    if impl == "compiled":
        def deemph(i: int) -> np.ndarray:
            y, state["mem"] = pf.deemphasis_int16(pe32[2 * i:2 * i + 2], state["mem"])
            return y
        return deemph

    def deemph_numpy(i: int) -> np.ndarray:   # the vocoder's previous per-frame loop
        e = pe32[2 * i:2 * i + 2].astype(np.float64)
        y = np.empty(e.shape)
        for k in range(e.shape[0]):
            y[k] = deemphasis(e[k], state["mem"])
            state["mem"] = float(np.clip(y[k, -1], -1.0, 32767 / 32768))
        return np.clip(np.round(y.ravel() * 32768.0), -32768, 32767).astype(np.int16)
    return deemph_numpy


def _worker(case: str, impl: str, packets: int, run: int) -> None:
    fn = _workload(case, impl, packets)
    for i in range(run):
        fn(i)


def _instructions(case: str, impl: str, packets: int, run: int) -> int:
    return callgrind_total([sys.executable, __file__, "--worker", case, impl, str(packets), str(run)])


def _seconds(case: str, impl: str, packets: int) -> float:
    fn = _workload(case, impl, packets)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(packets):
            fn(i)
        best = min(best, time.perf_counter() - t0)
    return best / (2 * packets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=100)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker[0], a.worker[1], int(a.worker[2]), int(a.worker[3]))
        return
    count = not a.no_callgrind and shutil.which("valgrind") is not None
    print("| stage | implementation | x86 instructions / 10 ms | time / 10 ms (here) |")
    print("|---|---|--:|--:|")
    for case in CASES:
        for impl in IMPLS:
            ins = "-"
            if count:
                n = 10 + a.packets
                lo, hi = _instructions(case, impl, n, 10), _instructions(case, impl, n, n)
                ins = f"{(hi - lo) / (2 * a.packets) / 1000:.1f} k"
            print(f"| {case} | {impl} | {ins} | {_seconds(case, impl, a.packets) * 1e6:.1f} µs |", flush=True)
    if not count:
        print("\n(instructions not counted: valgrind not found or --no-callgrind)")


if __name__ == "__main__":
    main()
