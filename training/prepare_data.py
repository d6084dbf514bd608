"""Build the vocoder/PLC training set: augmented speech + aligned features.

Writes ``training/data/vocoder_{i}.npz`` for ``i = 0..K`` (0 = clean original,
1..K = seeded augmented copies), each holding

* ``pcm``     int16, all files concatenated, each trimmed to whole 10 ms frames;
* ``feats``   float32 (n_frames, 20), ``edge_dred.dsp.features.compute_features``
  of exactly that int16 signal (what the receiver computes at run time);
* ``offsets`` int64 frame offset of each file (plus the total at the end).

Augmentation per (file, copy), drawn from a seeded RNG: speed+pitch change by
resampling (ratio 0.9..1.1), a random biquad (spectral tilt shelf, low-pass or
high-pass, or none), white or pink noise at 30..50 dB SNR, gain -20..+6 dB
limited so the peak does not clip.

Usage::

    .venv/bin/python training/prepare_data.py --copies 2 --workers 2
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.signal import lfilter, resample_poly

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_TRAIN = REPO.parent / "shared" / "data" / "speech" / "train"
DEFAULT_OUT = HERE / "data"
FS = 16000

_compute = None


def _init_worker(placeholder: bool) -> None:
    global _compute
    if placeholder:
        sys.path.insert(0, str(HERE))
        from _placeholder_features import compute_features
    else:
        sys.path.insert(0, str(REPO))
        from edge_dred.dsp.features import compute_features
    _compute = compute_features


def _biquad(kind: str, f0: float, q: float = 0.707, gain_db: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook biquad coefficients (b, a) at 16 kHz."""
    w0 = 2 * math.pi * f0 / FS
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2 * q)
    a_lin = 10 ** (gain_db / 40)
    if kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "highshelf":
        s = 2 * math.sqrt(a_lin) * alpha
        b = [a_lin * ((a_lin + 1) + (a_lin - 1) * cw + s), -2 * a_lin * ((a_lin - 1) + (a_lin + 1) * cw),
             a_lin * ((a_lin + 1) + (a_lin - 1) * cw - s)]
        a = [(a_lin + 1) - (a_lin - 1) * cw + s, 2 * ((a_lin - 1) - (a_lin + 1) * cw), (a_lin + 1) - (a_lin - 1) * cw - s]
    else:
        raise ValueError(f"unknown biquad kind {kind!r}")
    b_arr, a_arr = np.array(b), np.array(a)
    return b_arr / a_arr[0], a_arr / a_arr[0]


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f) noise by spectral shaping of white noise."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return an augmented copy of ``x`` (float64, int16 scale)."""
    # Speed and pitch together: resample then play at 16 kHz.
    up = int(rng.integers(90, 111))
    if up != 100:
        x = resample_poly(x, 100, up)  # ratio up/100 faster/higher
    choice = rng.integers(0, 4)
    if choice == 1:
        b, a = _biquad("highshelf", float(rng.uniform(1000, 3000)), 0.707, float(rng.uniform(-8, 8)))
        x = lfilter(b, a, x)
    elif choice == 2:
        b, a = _biquad("lowpass", float(rng.uniform(3500, 7500)), float(rng.uniform(0.6, 1.0)))
        x = lfilter(b, a, x)
    elif choice == 3:
        b, a = _biquad("highpass", float(rng.uniform(50, 300)), float(rng.uniform(0.6, 1.0)))
        x = lfilter(b, a, x)
    # Noise relative to active-speech power (frames above -40 dB of the max).
    fr = x[: len(x) // 160 * 160].reshape(-1, 160)
    p = (fr**2).mean(1)
    act = p[p > p.max() * 1e-4] if p.size and p.max() > 0 else np.array([1.0])
    sp = float(act.mean()) if act.size else 1.0
    noise = rng.standard_normal(len(x)) if rng.random() < 0.5 else _pink(len(x), rng)
    snr = rng.uniform(30, 50)
    noise *= math.sqrt(sp / 10 ** (snr / 10) / max(float((noise**2).mean()), 1e-12))
    x = x + noise
    g = 10 ** (rng.uniform(-20, 6) / 20)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak * g > 32000:
        g = 32000 / peak
    return x * g


def _job(args: tuple[str, int, int]) -> tuple[int, int, np.ndarray, np.ndarray]:
    path, copy, seed = args
    import soundfile as sf

    x, fs = sf.read(path, dtype="int16", always_2d=True)
    if fs != FS:
        raise ValueError(f"{path}: sample rate {fs}, expected {FS}")
    x = x[:, 0].astype(np.float64)
    if copy > 0:
        x = augment(x, np.random.default_rng(seed))
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    n = len(pcm) // 160
    pcm = pcm[: n * 160]
    assert _compute is not None
    feats = np.asarray(_compute(pcm.astype(np.float32)), dtype=np.float32)
    if feats.shape != (n, 20):
        raise ValueError(f"features shape {feats.shape} for {n} frames")
    return copy, seed, pcm, feats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-dir", type=Path, default=DEFAULT_TRAIN)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--copies", type=int, default=2, help="augmented copies K (plus the clean one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-files", type=int, default=0, help="debug: limit number of files")
    ap.add_argument("--force", action="store_true", help="recompute copies that already exist")
    ap.add_argument("--placeholder", action="store_true", help="use the crude placeholder features (testing only)")
    a = ap.parse_args(argv)
    files = sorted(str(p) for p in a.train_dir.rglob("*.flac"))
    if a.max_files:
        files = files[: a.max_files]
    if not files:
        raise SystemExit(f"no .flac files under {a.train_dir}")
    a.out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in range(a.copies + 1) if a.force or not (a.out / f"vocoder_{c}.npz").exists()]
    jobs = [(f, c, a.seed + 1_000_003 * c + i) for c in todo for i, f in enumerate(files)]
    per_copy: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {c: [] for c in todo}
    t0 = time.time()
    done_samples = 0
    with Pool(a.workers, initializer=_init_worker, initargs=(a.placeholder,)) as pool:
        for k, (copy, seed, pcm, feats) in enumerate(pool.imap_unordered(_job, jobs, chunksize=4)):
            per_copy[copy].append((seed, pcm, feats))
            done_samples += len(pcm)
            if (k + 1) % 200 == 0 or k + 1 == len(jobs):
                el = time.time() - t0
                print(f"[{k + 1}/{len(jobs)}] {done_samples / FS / 3600:.2f} h audio in {el:.0f} s "
                      f"({done_samples / FS / max(el, 1e-9):.0f}x real time)", flush=True)
            if len(per_copy[copy]) == len(files):  # copy complete: write it now (restartable)
                _write_copy(a.out, copy, per_copy.pop(copy))


def _write_copy(out: Path, c: int, items: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
    items.sort(key=lambda t: t[0])  # deterministic file order
    offs = np.cumsum([0] + [len(f) for _, _, f in items]).astype(np.int64)
    pcm = np.concatenate([p for _, p, _ in items])
    feats = np.concatenate([f for _, _, f in items])
    tmp = out / f"vocoder_{c}.tmp.npz"
    np.savez(tmp, pcm=pcm, feats=feats, offsets=offs)
    os.replace(tmp, out / f"vocoder_{c}.npz")
    print(f"copy {c}: {len(items)} files, {len(pcm) / FS / 3600:.2f} h, {feats.shape[0]} frames", flush=True)


if __name__ == "__main__":
    main()
