"""The fp vocoder's compiled runtime per 10 ms against the shipped vocoder; prints a table.

    python benchmarks/fp_vocoder_cost.py [--packets 100] [--no-callgrind] [--weights build/fp_vocoder.bin]

Rows (each called once per 20 ms packet, two frames, as the receiver does, on the demo's
synthetic voiced signal with pauses):

* ``shipped``: the shipped vocoder (``Vocoder``: int8 network + its postfilter + de-emphasis);
* ``shipped network``: the same without the postfilter;
* ``fp``: ``FPVocoder`` (int8 frame network, compiled signal stage, postfilter at
  ``fp_runtime.POSTFILTER``, de-emphasis);
* ``fp network``: its frame network alone (one ``Network`` run per packet);
* ``fp signal stage``: the compiled signal stage alone (network outputs precomputed);
* ``fp numpy reference``: ``FPVocoderStream`` (float64 numpy, Python per frame; no
  postfilter), for scale.

The fp rows use random weights of the trained model's shape unless ``--weights`` names an
exported file (dense int8: the cost does not depend on the values).  Columns: x86
instructions per 10 ms under valgrind's callgrind (the difference between a run of
``10 + --packets`` packets and one of 10 after the same set-up, so start-up, imports and set-up
cancel) and CPU time per 10 ms here (process time, best of 5).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from callgrind_total import callgrind_total  # noqa: E402

CASES = ("shipped", "shipped network", "fp", "fp network", "fp signal stage", "fp numpy reference")


def _fp_model(weights: str | None):
    from edge_dred.neural import fp_runtime as rt
    from edge_dred.neural.fp_vocoder import random_params

    if weights:
        return rt.FPVocoderModel.load(path=weights)
    path = os.path.join(tempfile.mkdtemp(), "fp.bin")
    rt.export_fp_vocoder(random_params(seed=0), {"conv": 128, "gru": 128}, path)
    return rt.FPVocoderModel.load(path=path)


def _workload(case: str, packets: int, weights: str | None):
    """A function of the packet index (< ``packets``) doing one packet's work, after all set-up."""
    from edge_dred.constants import FRAME_SIZE
    from edge_dred.dsp.features import compute_features
    from edge_dred.tools.demo_audio import _synthetic

    n = 2 * packets
    rng = np.random.default_rng(0)
    pcm = np.clip(_synthetic(n * FRAME_SIZE / 16000 + 0.1) + rng.normal(0, 30, int(n * FRAME_SIZE + 1600)),
                  -32768, 32767).astype(np.int16)[:n * FRAME_SIZE]
    feats = compute_features(pcm).astype(np.float32)
    if case.startswith("shipped"):
        from edge_dred.neural.vocoder import Vocoder

        v = Vocoder(postfilter=case == "shipped")
        return lambda i: v.synthesize(feats[2 * i:2 * i + 2])
    from edge_dred.neural import fp_runtime as rt

    model = _fp_model(weights)
    if case == "fp numpy reference":
        from edge_dred.neural.fp_vocoder import FPVocoderStream

        r = FPVocoderStream(model.float_params())
        return lambda i: r.synthesize_pe(feats[2 * i:2 * i + 2])
    v = rt.FPVocoder(model)
    if case == "fp":
        return lambda i: v.synthesize(feats[2 * i:2 * i + 2])
    if case == "fp network":
        return lambda i: v._network(feats[2 * i:2 * i + 2])
    raws = v._network(feats)
    syn = v._syn
    out = np.zeros((2, FRAME_SIZE), np.float32)
    return lambda i: syn.process(feats[2 * i:2 * i + 2], raws[2 * i:2 * i + 2], out)


def _worker(case: str, packets: int, run: int, weights: str | None) -> None:
    fn = _workload(case, packets, weights)
    for i in range(run):
        fn(i)


def _instructions(case: str, packets: int, run: int, weights: str | None) -> int:
    return callgrind_total([sys.executable, __file__, "--worker", case, str(packets), str(run)]
                           + (["--weights", weights] if weights else []))


def _seconds(case: str, packets: int, weights: str | None) -> float:
    fn = _workload(case, packets, weights)
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for i in range(packets):
            fn(i)
        best = min(best, time.process_time() - t0)
    return best / (2 * packets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=100)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--weights", default=None, help="exported fp weight file (default: random weights)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker[0], int(a.worker[1]), int(a.worker[2]), a.weights)
        return
    count = not a.no_callgrind and shutil.which("valgrind") is not None
    print("| vocoder | x86 instructions / 10 ms | CPU time / 10 ms (here) |")
    print("|---|--:|--:|")
    for case in a.cases:
        ins = "-"
        if count:
            n = 10 + a.packets
            lo, hi = _instructions(case, n, 10, a.weights), _instructions(case, n, n, a.weights)
            ins = f"{(hi - lo) / (2 * a.packets) / 1000:.0f} k"
        print(f"| {case} | {ins} | {_seconds(case, a.packets, a.weights) * 1e6:.0f} µs |", flush=True)
    if not count:
        print("\n(instructions not counted: valgrind not found or --no-callgrind)")


if __name__ == "__main__":
    main()
