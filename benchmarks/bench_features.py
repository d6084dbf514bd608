"""Speed of the feature extractor: batch real-time factor and streaming latency.

Usage::

    python benchmarks/bench_features.py [--seconds 60] [--frames 2000] [files ...]

With audio files (16 kHz mono, read with ``soundfile``) those are used;
otherwise a synthetic mix of harmonic tones and noise.  Prints a table for the
compiled path (``edge_dred.dsp._features``) and the numpy fallback.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from edge_dred.dsp import features as fm


def synthetic(seconds: float, seed: int = 0) -> np.ndarray:
    """Alternating 0.5 s harmonic tones (varying f0) and noise, int16 scale."""
    rng = np.random.default_rng(seed)
    sr = fm.SAMPLE_RATE
    parts = []
    t = np.arange(sr // 2) / sr
    for i in range(int(seconds * 2)):
        if i % 3 == 2:
            parts.append(rng.normal(0, 800, t.size))
        else:
            f0 = rng.uniform(70, 400)
            parts.append(sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 6)) * 3000)
    return np.concatenate(parts)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--seconds", type=float, default=60.0, help="synthetic signal length")
    ap.add_argument("--frames", type=int, default=2000, help="frames for the streaming test")
    args = ap.parse_args()
    x = load(args.files) if args.files else synthetic(args.seconds)
    compiled = fm._ck
    print(f"audio: {x.size / fm.SAMPLE_RATE:.1f} s  (CPU time; shared machines inflate it)")
    print(f"{'path':<10} {'batch x realtime':>17} {'stream median us':>17} {'stream p99 us':>14}")
    for name, mod in (("compiled", compiled), ("numpy", None)):
        if name == "compiled" and mod is None:
            print(f"{name:<10} {'not built':>17}")
            continue
        fm._ck = mod
        try:
            rt, med, p99 = bench(x, args.frames)
        finally:
            fm._ck = compiled
        print(f"{name:<10} {rt:>17.0f} {med:>17.0f} {p99:>14.0f}")


if __name__ == "__main__":
    main()
