"""Example recipe shared by the detector's trainer and its evaluation.

One example is a 1 s crop of real speech with at least 20 % active 20 ms
frames (relative to its file's level), scaled to a random peak (-26 to -1
dBFS), then given one defect (or two, ``mixed``) by
:mod:`edge_dred.artifacts.generator` with a seed drawn from the caller's
stream.  Training draws from ``SeedSequence((TRAIN_STREAM, step))``; the
held-out evaluation from ``SeedSequence((EVAL_STREAM, i))``, so no generator
seed is shared.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_dred.artifacts.generator import DEFECTS, apply_defect, mix_defects
from edge_dred.artifacts.frontend import SEGMENT

TRAIN_STREAM = 1
EVAL_STREAM = 2
MIN_ACTIVE = 0.2
DEFECT_NAMES = DEFECTS[1:]
# Class mix: none, hum, hiss, distortion, clicks, mixed
CLASS_P = np.array([0.30, 0.14, 0.14, 0.14, 0.14, 0.14])


def load_speech(root: Path, max_files: int | None = None) -> list[np.ndarray]:
    """All FLAC files under ``root`` as int16 arrays (at least 1 s each)."""
    import soundfile as sf

    files = sorted(Path(root).rglob("*.flac"))
    if max_files:
        files = files[:max_files]
    out = []
    for p in files:
        x, fs = sf.read(str(p), dtype="int16", always_2d=True)
        if fs == 16000 and len(x) >= SEGMENT:
            out.append(np.ascontiguousarray(x[:, 0]))
    if not out:
        raise FileNotFoundError(f"no 16 kHz FLAC files of 1 s or more under {root}")
    return out


def file_activity(x: np.ndarray) -> np.ndarray:
    """Per 20 ms frame: active (within 30 dB of the file's 95th percentile frame power)."""
    n = len(x) // 320
    p = np.mean((x[:n * 320].astype(np.float64) / 32768.0).reshape(n, 320) ** 2, axis=1)
    return p >= np.percentile(p, 95) * 1e-3


def random_crop(speech: list[np.ndarray], act: list[np.ndarray], rng: np.random.Generator,
                min_active: float = MIN_ACTIVE) -> np.ndarray:
    """A 1 s crop with >= ``min_active`` active frames, scaled to a random peak; float32."""
    for _ in range(100):
        i = int(rng.integers(len(speech)))
        x = speech[i]
        off = int(rng.integers(0, len(x) - SEGMENT + 1))
        a = act[i][off // 320:(off + SEGMENT) // 320]
        if a.size and a.mean() >= min_active:
            break
    seg = x[off:off + SEGMENT].astype(np.float32) / 32768.0
    peak = float(np.max(np.abs(seg))) + 1e-9
    return seg * (10 ** (rng.uniform(-26, -1) / 20) / peak)


def make_example(seg: np.ndarray, rng: np.random.Generator, cls: int | None = None):
    """(audio, target multi-hot (4,), class index 0..5 with 5 = mixed, params)."""
    if cls is None:
        cls = int(rng.choice(len(CLASS_P), p=CLASS_P))
    y = np.zeros(4, np.float32)
    if cls == 5:
        pair = tuple(rng.choice(DEFECT_NAMES, 2, replace=False))
        d = mix_defects(seg, pair, rng)
    else:
        d = apply_defect(seg, DEFECTS[cls], rng)
    for lab in d.labels:
        if lab != "none":
            y[DEFECT_NAMES.index(lab)] = 1
    return d.audio, y, cls, d.params
