"""The artifact detector: int8 TFLite network on 1 s segments, plus a plain-words description.

``artifact_detector.tflite`` (``training/export_artifacts.py``) takes the
front end of :mod:`.frontend` and returns one sigmoid score per defect (hum,
hiss, distortion, clicks).  It runs on the same TFLite runtime as the DRED
encoder (:func:`edge_dred.dred.encoder.interpreter_class`) and is checked
against ``manifest.json`` (version and sha256) before it is loaded.

A segment is *flagged* when a defect's score reaches its threshold (the
manifest's ``thresholds``, chosen at export so that clean training speech is
rarely flagged; :data:`THRESHOLD` where none is given); its label is then the
flagged defect with the highest score (a high threshold does not make a sure
defect lose to a marginal one), otherwise ``none``.  The ``none``
score is one minus the highest defect score.  :func:`describe` adds a number a
person can act on, measured directly on the audio (not by the network): hum
level re the segment, hiss SNR, share of samples at the rails, clicks per
second.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..constants import FRAME_SIZE, SAMPLE_RATE
from ..models.loader import ModelFileError, verify_model_file
from .frontend import SEGMENT, features, mains_hum_db
from .generator import DEFECTS

__all__ = ["ArtifactDetector", "Verdict", "SegmentClassifier", "THRESHOLD", "MODEL_KEY", "MODEL_VERSION",
           "describe", "segments", "MIN_TAIL"]

MODEL_KEY = "artifact_detector"
MODEL_VERSION = "artifacts-2"
#: A defect score at or above this flags the segment.
THRESHOLD = 0.5
#: A trailing part of a file shorter than 1 s is analysed (as the last 1 s) when at least this long.
MIN_TAIL = SEGMENT // 2


@dataclass
class Verdict:
    """What the detector says about one segment.

    Attributes
    ----------
    label : str
        ``none`` or the highest-scoring defect at or above the threshold.
    scores : dict
        Score per class of :data:`~edge_dred.artifacts.generator.DEFECTS`.
    detail : str
        A measurement of the defect (e.g. ``"-22 dB"``), empty for ``none``.
    start_s : float
        Where the segment starts in its stream or file.
    """

    label: str
    scores: dict[str, float]
    detail: str = ""
    start_s: float = 0.0
    flagged: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        """``"hum -22 dB"``, ``"clicks 3/s"`` or ``"clean"``."""
        if self.label == "none":
            return "clean"
        return f"{self.label} {self.detail}".strip()

    def as_dict(self) -> dict:
        return {"start_s": round(self.start_s, 3), "label": self.label, "flagged": list(self.flagged),
                "detail": self.detail, "scores": {k: round(v, 4) for k, v in self.scores.items()}}


class SegmentClassifier(Protocol):
    """Anything that turns a 1 s segment into a :class:`Verdict` (the monitor takes any)."""

    def classify(self, segment: np.ndarray, start_s: float = 0.0) -> Verdict: ...


def _click_rate(x: np.ndarray) -> float:
    """Events per second: 10 ms frames whose largest sample step or 1 ms energy dip stands out."""
    blocks = x.reshape(-1, FRAME_SIZE)
    d = np.abs(np.diff(x, prepend=x[0])).reshape(-1, FRAME_SIZE)
    loc = np.convolve(np.sqrt(np.mean(d ** 2, axis=1)), np.ones(9) / 9, mode="same") + 1e-6
    jump = np.max(d, axis=1) > 8 * loc
    sub = np.mean(blocks.reshape(blocks.shape[0], -1, 16) ** 2, axis=2)
    fp = np.mean(blocks ** 2, axis=1)
    loud = fp > np.percentile(fp, 90) * 1e-2
    dip = loud & (np.min(sub, axis=1) < fp * 1e-3)
    ev = jump | dip
    starts = ev & ~np.concatenate([[False], ev[:-1]])  # count runs, not frames
    return float(np.sum(starts)) * SAMPLE_RATE / len(x)


def describe(label: str, x: np.ndarray) -> str:
    """A measured number for a flagged defect on segment ``x`` (float in [-1, 1])."""
    x = np.asarray(x, np.float32)
    if label == "hum":
        lvl, f0 = mains_hum_db(x)
        return f"{lvl:.0f} dB ({f0:.0f} Hz)"
    if label == "hiss":
        fp = np.mean(x.reshape(-1, FRAME_SIZE).astype(np.float64) ** 2, axis=1) + 1e-12
        return f"SNR {10 * np.log10(np.percentile(fp, 95) / np.percentile(fp, 10)):.0f} dB"
    if label == "distortion":
        a = np.abs(x)
        return f"{100 * np.mean(a >= a.max() * 0.99):.1f} % at peak"
    if label == "clicks":
        return f"{_click_rate(x):.0f}/s"
    return ""


def segments(pcm: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """1 s segments of a signal: back to back, plus the last 1 s when a tail of >= 0.5 s remains.

    Raises
    ------
    ValueError
        Shorter than 1 s.
    """
    n = len(pcm)
    if n < SEGMENT:
        raise ValueError(f"the detector needs at least 1 s of audio, got {n / SAMPLE_RATE:.2f} s")
    out = [(i / SAMPLE_RATE, pcm[i:i + SEGMENT]) for i in range(0, n - SEGMENT + 1, SEGMENT)]
    if n % SEGMENT >= MIN_TAIL:
        out.append(((n - SEGMENT) / SAMPLE_RATE, pcm[n - SEGMENT:]))
    return out


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    return np.clip(x.astype(np.float32), -1.0, 1.0)


class ArtifactDetector:
    """The shipped int8 detector.

    Parameters
    ----------
    model_path : path-like, optional
        A ``.tflite`` file to use instead of the shipped one (no manifest
        check; for freshly exported models and tests).
    num_threads : int
        Interpreter threads (1: the monitor must stay out of the audio's way).

    Raises
    ------
    ModelFileError
        Shipped model missing, truncated, corrupted or of another version.
    ImportError
        No TFLite runtime (the message says which package to install).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, num_threads: int = 1) -> None:
        from ..dred.encoder import interpreter_class

        entry: dict = {}
        if model_path is None:
            path, entry = verify_model_file(MODEL_KEY, MODEL_VERSION)
        else:
            path = Path(model_path)
            if not path.is_file():
                raise ModelFileError(f"artifact detector model not found: {path}")
        Interpreter = interpreter_class()
        try:
            self._it = Interpreter(model_path=str(path), num_threads=num_threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelFileError(f"{path}: not a loadable TFLite model ({e})") from None
        self._in = sorted(self._it.get_input_details(), key=lambda d: d["name"])
        self._out = self._it.get_output_details()
        if len(self._in) != 2 or len(self._out) != 1 or tuple(self._out[0]["shape"]) != (1, len(DEFECTS) - 1):
            raise ModelFileError(f"{path}: expected inputs (sequence, global) and one (1, 4) output")
        self.path = path
        # Per-defect thresholds from the manifest (chosen at export on clean training speech).
        thr = entry.get("thresholds", {}) if model_path is None else {}
        self.thresholds = np.array([float(thr.get(k, THRESHOLD)) for k in DEFECTS[1:]], np.float32)

    def _set(self, d: dict, v: np.ndarray) -> None:
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            v = np.clip(np.round(v / scale) + zp, info.min, info.max)
        self._it.set_tensor(d["index"], v[None].astype(d["dtype"]))

    def defect_scores(self, segment: np.ndarray) -> np.ndarray:
        """Scores (4,) of hum, hiss, distortion, clicks for one 1 s segment."""
        return self.network_scores(*features(_as_float(segment)))

    def network_scores(self, seq: np.ndarray, glob: np.ndarray) -> np.ndarray:
        """The network alone on a front end's output (:func:`~.frontend.features`)."""
        self._set(self._in[0], seq)
        self._set(self._in[1], glob)
        self._it.invoke()
        d = self._out[0]
        y = self._it.get_tensor(d["index"])[0]
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        return np.asarray(y, np.float32)

    def classify(self, segment: np.ndarray, start_s: float = 0.0) -> Verdict:
        """Label, scores and a measured detail of one 1 s segment."""
        x = _as_float(segment)
        s = self.defect_scores(x)
        scores = {"none": float(1.0 - s.max()), **{k: float(v) for k, v in zip(DEFECTS[1:], s)}}
        over = s - self.thresholds
        flagged = tuple(k for k, v in zip(DEFECTS[1:], over) if v >= 0)
        label = DEFECTS[1 + int(np.argmax(np.where(over >= 0, s, -1.0)))] if flagged else "none"
        return Verdict(label, scores, describe(label, x) if flagged else "", start_s, flagged)

    def analyze(self, pcm: np.ndarray) -> list[Verdict]:
        """Verdicts of every 1 s segment of a signal (see :func:`segments`)."""
        return [self.classify(seg, t) for t, seg in segments(pcm)]
