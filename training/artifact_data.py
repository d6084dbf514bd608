"""Example recipe shared by the detector's trainer and its evaluation.

One example is a 1 s crop of real speech with at least 20 % active 20 ms
frames (relative to its file's level), scaled to a random peak (-26 to -1
dBFS), then given one defect (or two, ``mixed``) by
:mod:`edge_dred.artifacts.generator` with a seed drawn from the caller's
stream.  Training draws from ``SeedSequence((TRAIN_STREAM, step))``; the
held-out evaluation from ``SeedSequence((EVAL_STREAM, i))``, so no generator
seed is shared.

Before its defect, an example is made an *ordinary recording*
(:func:`edge_dred.artifacts.generator.ordinary_recording`: colouration, band
limits, reverberation, level changes, a room floor, a faint mains line) with
probability :data:`RECORDING_P`, so that the clean class covers recordings
like the ones the detector will hear, and a defect is what stands out of one.

With the lossy recipe (``lossy``: an ffmpeg path from
:func:`lossy_coding.require_ffmpeg`; training and export ``--lossy``), the
recording is then MP3/Vorbis/AAC-coded through a resampling chain
(:mod:`lossy_coding`) before its defect: :data:`LOSSY_NONE_P` of the clean
examples and :data:`LOSSY_DEFECT_P` of the others (the same share, so that
coding is part of the clean class without meaning "clean").  The examples of one
:func:`make_examples` call share one chain (one ffmpeg round trip).

Training speech is split: :data:`VAL_SPEAKERS` (one female, one male
VCC2016 speaker) and the LJSpeech clips from :data:`VAL_LJ_FROM` on (a
contiguous block of the read audiobook, with its own recording floor) are
held out of training for model selection and for the detector's thresholds
(:func:`calibrate_thresholds`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_dred.artifacts.generator import DEFECTS, apply_defect, mix_defects, ordinary_recording
from edge_dred.artifacts.frontend import SEGMENT

TRAIN_STREAM = 1
EVAL_STREAM = 2
MIN_ACTIVE = 0.2
DEFECT_NAMES = DEFECTS[1:]
# Class mix: none, hum, hiss, distortion, clicks, mixed
CLASS_P = np.array([0.30, 0.14, 0.14, 0.14, 0.14, 0.14])
RECORDING_P = 0.7  # share of examples (every class) made an ordinary recording before the defect
VAL_SPEAKERS = ("SF3", "TM3")  # training speakers held out for model selection and thresholds
VAL_LJ_FROM = "LJ002-0101"  # LJSpeech clips from this one on are held out as well (100 clips)
# Lossy recipe: shares of clean and of defect examples coded (MP3 etc.) before the defect step.  Equal, so
# that coding says nothing about the class.
LOSSY_NONE_P = 0.4
LOSSY_DEFECT_P = 0.4


def _held_out(f: Path) -> bool:
    return f.parent.name in VAL_SPEAKERS or (f.parent.name == "ljspeech" and f.stem >= VAL_LJ_FROM)


def speaker_split(root: Path) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) under ``root``: validation = :data:`VAL_SPEAKERS` and late LJSpeech clips."""
    files = sorted(Path(root).rglob("*.flac"))
    val = [f for f in files if _held_out(f)]
    if not any(f.parent.name in VAL_SPEAKERS for f in val):
        raise FileNotFoundError(f"none of the validation speakers {VAL_SPEAKERS} under {root}")
    return [f for f in files if not _held_out(f)], val


def load_speech(root, max_files: int | None = None) -> list[np.ndarray]:
    """All FLAC files under ``root`` (a folder, or a list of files) as int16 arrays (at least 1 s each)."""
    import soundfile as sf

    files = sorted(Path(root).rglob("*.flac")) if isinstance(root, (str, Path)) else list(root)
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


def make_examples(segs: list[np.ndarray], rng: np.random.Generator, classes: list[int | None],
                  lossy: str | None = None, shares: tuple[float, float] | None = None) -> list[tuple]:
    """:func:`make_example` for several crops; with ``lossy`` (ffmpeg's path) some are coded before the defect.

    All coded examples of one call go through one chain drawn from ``rng``
    (:func:`lossy_coding.draw_chain`); ``params["lossy"]`` names it.  ``shares``
    (clean, defect) overrides :data:`LOSSY_NONE_P`, :data:`LOSSY_DEFECT_P`.  For one
    crop without ``lossy`` the draws are those of the plain recipe (the
    evaluation's generated sets do not change).
    """
    p_none, p_defect = shares or (LOSSY_NONE_P, LOSSY_DEFECT_P)
    prepared = []
    for seg, cls in zip(segs, classes):
        if cls is None:
            cls = int(rng.choice(len(CLASS_P), p=CLASS_P))
        if rng.random() < RECORDING_P:
            seg = ordinary_recording(seg, rng)
        code = lossy is not None and rng.random() < (p_none if cls == 0 else p_defect)
        prepared.append([seg, cls, code])
    chain = None
    if any(p[2] for p in prepared):
        from lossy_coding import code_batch, draw_chain

        chain = draw_chain(rng)
        todo = [p for p in prepared if p[2]]
        for p, y in zip(todo, code_batch([p[0] for p in todo], chain, lossy)):
            p[0] = y
    out = []
    for seg, cls, code in prepared:
        y = np.zeros(4, np.float32)
        if cls == 5:
            pair = tuple(rng.choice(DEFECT_NAMES, 2, replace=False))
            d = mix_defects(seg, pair, rng)
        else:
            d = apply_defect(seg, DEFECTS[cls], rng)
        for lab in d.labels:
            if lab != "none":
                y[DEFECT_NAMES.index(lab)] = 1
        params = dict(d.params, lossy=chain.describe()) if code else d.params
        out.append((d.audio, y, cls, params))
    return out


def make_example(seg: np.ndarray, rng: np.random.Generator, cls: int | None = None, lossy: str | None = None):
    """(audio, target multi-hot (4,), class index 0..5 with 5 = mixed, params)."""
    return make_examples([seg], rng, [cls], lossy)[0]


def calibrate_thresholds(clean_scores: np.ndarray, false_alarm: float, floor: float = 0.5,
                         groups: np.ndarray | None = None) -> np.ndarray:
    """Per-defect thresholds under which at most ``false_alarm`` of the clean examples are flagged (any defect).

    ``clean_scores`` (N, 4) are the scores of clean (``none``) examples of the
    validation speakers.  Every defect gets the same per-defect false-alarm
    rate ``r`` (its threshold: the ``1 - r`` quantile of its clean scores,
    never below ``floor``); ``r`` is the largest for which the union stays
    within ``false_alarm``, so a defect that never fires on clean audio
    leaves its share to the others.  With ``groups`` (N,) the bound holds in
    every group (plain seconds, the same after Opus, ...), not only overall.
    """
    groups = np.zeros(len(clean_scores), int) if groups is None else np.asarray(groups)

    def at(r: float) -> np.ndarray:
        return np.maximum(np.quantile(clean_scores, 1 - r, axis=0) + 1e-4, floor).astype(np.float32)

    def worst(thr: np.ndarray) -> float:
        on = (clean_scores >= thr).any(axis=1)
        return max(float(np.mean(on[groups == g])) for g in np.unique(groups))

    lo, hi = 0.0, false_alarm
    for _ in range(30):
        mid = (lo + hi) / 2
        if worst(at(mid)) <= false_alarm:
            lo = mid
        else:
            hi = mid
    return at(lo)


def clean_set(speech: list[np.ndarray], act: list[np.ndarray], seed: int, n: int,
              lossy: str | None = None, shares: tuple[float, float] | None = None) -> list[np.ndarray]:
    """``n`` clean examples as the trainer draws them (any activity in a third, ordinary recordings included).

    With ``lossy`` (ffmpeg's path) the lossy recipe's share is coded, one
    chain per 16 examples; without, the examples are those of the plain recipe.
    """
    rng = np.random.default_rng(seed)
    chunk = 16 if lossy else 1
    out: list[np.ndarray] = []
    for i0 in range(0, n, chunk):
        segs = [random_crop(speech, act, rng, 0.0 if i % 3 == 0 else MIN_ACTIVE) for i in range(i0, min(n, i0 + chunk))]
        out += [e[0] for e in make_examples(segs, rng, [0] * len(segs), lossy, shares)]
    return out
