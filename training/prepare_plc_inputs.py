"""Features of Opus-decoded training speech: the PLC predictor's run-time inputs.

At run time the predictor is fed the features of what the receiver *played*
(decoded Opus), not of the clean speech it is trained to predict.  At 24 kb/s
the two differ by about 0.2 standard deviations per feature on average
(pitch period +0.16 std biased, pitch correlation -0.14 std), which is a
large share of the prediction error itself.  This script plays every file of
``training/data/vocoder_{k}.npz`` through the project's own Opus sender and
receiver (no loss) at a bit rate and complexity drawn per file, and writes the
features of the decoded signal, frame-aligned with the clean ``feats``:

``training/data/plc_inputs_{k}.npz``: ``feats`` float32 (n_frames, 20),
``bitrate`` int32 per file, ``complexity`` int32 per file.

``train_plc.py --inputs decoded`` trains on (decoded inputs -> clean targets).

Usage::

    .venv/bin/python training/prepare_plc_inputs.py --workers 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
BITRATES = (16000, 20000, 24000, 32000, 40000, 64000)
COMPLEXITIES = (5, 9, 10)

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from edge_dred.dsp.features import compute_features  # noqa: E402
from edge_dred.receiver import Receiver  # noqa: E402
from edge_dred.sender import Sender  # noqa: E402
from edge_dred.simulate import simulate  # noqa: E402

_pcm: np.ndarray | None = None


def decoded_features(pcm: np.ndarray, bitrate: int, complexity: int) -> np.ndarray:
    """Features of ``pcm`` after a lossless trip through the Opus sender and receiver."""
    out = simulate(pcm, None, Sender(bitrate, complexity=complexity), Receiver()).audio
    return np.asarray(compute_features(out[: len(pcm) // 160 * 160]), np.float32)


def _init(path: str) -> None:
    global _pcm
    _pcm = np.load(path)["pcm"]


def _job(args: tuple[int, int, int, int, int]) -> tuple[int, np.ndarray]:
    i, a, b, bitrate, complexity = args
    assert _pcm is not None
    f = decoded_features(_pcm[a * 160: b * 160], bitrate, complexity)
    if f.shape != (b - a, 20):
        raise ValueError(f"file {i}: decoded features {f.shape}, expected {(b - a, 20)}")
    return i, f


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--force", action="store_true", help="recompute copies that already exist")
    a = ap.parse_args(argv)
    sources = sorted(p for p in a.data.glob("vocoder_*.npz") if ".tmp" not in p.name)
    if not sources:
        raise SystemExit(f"no vocoder_*.npz in {a.data} (run prepare_data.py first)")
    for src in sources:
        k = src.stem.split("_")[1]
        dst = a.data / f"plc_inputs_{k}.npz"
        if dst.exists() and not a.force:
            print(f"{dst.name} exists, kept", flush=True)
            continue
        offs = np.load(src)["offsets"]
        rng = np.random.default_rng(a.seed + 7919 * int(k))
        rates = rng.choice(BITRATES, len(offs) - 1).astype(np.int32)
        cplx = rng.choice(COMPLEXITIES, len(offs) - 1).astype(np.int32)
        feats = np.zeros((int(offs[-1]), 20), np.float32)
        jobs = [(i, int(offs[i]), int(offs[i + 1]), int(rates[i]), int(cplx[i])) for i in range(len(offs) - 1)]
        t0 = time.time()
        with Pool(a.workers, initializer=_init, initargs=(str(src),)) as pool:
            for n, (i, f) in enumerate(pool.imap_unordered(_job, jobs, chunksize=8)):
                feats[offs[i]: offs[i + 1]] = f
                if (n + 1) % 500 == 0 or n + 1 == len(jobs):
                    print(f"{src.name}: {n + 1}/{len(jobs)} files in {time.time() - t0:.0f} s", flush=True)
        tmp = a.data / f"plc_inputs_{k}.tmp.npz"
        np.savez(tmp, feats=feats, bitrate=rates, complexity=cplx)
        os.replace(tmp, dst)


if __name__ == "__main__":
    main()
