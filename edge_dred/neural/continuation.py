"""Vocoder continuation: synthesis that starts from the real output and ends back in it.

The receiver has two sources of features for audio it never received: the
neural PLC's prediction and DRED's decode.  Both hand their features to one
:class:`Continuation`, which owns the edges, so they are written once:

* **start** (:meth:`Continuation.start`): the vocoder is primed from the
  receiver's last output samples and the features analysed from them, so
  its pitch-lag history, de-emphasis memory and recurrent states continue
  the real signal;
* **into the loss** (:func:`fade_from`): the first synthesised samples
  cross-fade from libopus's concealment of the same samples, which continues
  the decoder's own state exactly;
* **fading** (:meth:`Continuation.synthesize` with ``gain``): a per-sample
  gain mixes the synthesis with libopus's concealment (which decays to
  silence); at gain 0 the vocoder is not run at all;
* **hand-back** (:meth:`Continuation.handback`): the synthesis runs on
  through the first real slot and the real samples cross-fade from it over
  the whole slot: the decoder's first output after a gap continues its own
  concealment (often decayed to near silence), so a short fade lets that
  transition through.

What runs when (the policy) stays with the feature source; this module
only does the signal work.

Two vocoders can sit behind it, chosen by the model passed in: the shipped
sample-recurrent one (:mod:`edge_dred.neural.vocoder`) and the frame-parallel
one (:mod:`edge_dred.neural.fp_runtime`, an experiment: ``training/`` passes
its model).  The frame-parallel vocoder's output runs 5 ms behind its
features, so the sources hand every call one frame of look-ahead (``ahead``:
the next frame's features, as far as they know them): a slot is synthesised
through the first half of the next frame and the last 80 samples wait for
the next call; at the hand-back they are the cross-fade.  The shipped
vocoder ignores ``ahead``.
"""
from __future__ import annotations

import functools

from typing import Any

import numpy as np

from ..constants import FRAME_SAMPLES, FRAME_SIZE
from . import fp_vocoder as _fp_ref
from .fp_runtime import DELAY as _FP_DELAY
from .fp_runtime import FPVocoder, FPVocoderModel
from .vocoder import PRIME_FRAMES, Vocoder, VocoderReference, prime_samples

__all__ = ["Continuation", "ContinuationError", "raised_cosine", "fade_from", "to_int16"]


class ContinuationError(ValueError):
    """The receiver's history is too short to start a continuation."""


@functools.lru_cache(maxsize=32)
def raised_cosine(n: int) -> np.ndarray:
    """Weights falling smoothly from ~1 to ~0 over ``n`` samples (amplitude complementary); read-only."""
    w = 0.5 + 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    w.flags.writeable = False
    return w


def fade_from(y: np.ndarray, before: np.ndarray, k: int) -> np.ndarray:
    """Cross-fade the first ``k`` samples of ``y`` (float64, in place) from ``before``."""
    w = raised_cosine(k)
    y[:k] = w * np.asarray(before[:k], np.float64) + (1.0 - w) * y[:k]
    return y


def to_int16(y: np.ndarray) -> np.ndarray:
    """Round (half to even) and saturate float samples to int16."""
    r = np.rint(y)
    return np.minimum(np.maximum(r, -32768.0, out=r), 32767.0, out=r).astype(np.int16)


_ALIGN_LEN = FRAME_SIZE       # fp: samples of libopus's concealment the start shift is fitted on


def _best_shift(y: np.ndarray, ref: np.ndarray | None) -> int:
    """Shift ``s`` in [-80, 80] maximising the normalised correlation of ``y[80 - s:]`` with ``ref``
    over its first samples (0 without a reference)."""
    if ref is None or len(ref) < _ALIGN_LEN:
        return 0
    r = np.asarray(ref[:_ALIGN_LEN], np.float64)
    seg = y[:2 * _FP_DELAY + _ALIGN_LEN]
    num = np.correlate(seg, r, mode="valid")[::-1]                   # index 80 - s -> reversed to s + 80
    energy = np.convolve(seg ** 2, np.ones(_ALIGN_LEN), mode="valid")[::-1]
    score = num / np.sqrt(energy * np.dot(r, r) + 1e-9)
    return int(np.argmax(score)) - _FP_DELAY


class Continuation:
    """One stream's vocoder, continuing the receiver's output through a hole.

    Parameters
    ----------
    model
        Shared :class:`~edge_dred.neural.vocoder.VocoderModel`, or an
        :class:`~edge_dred.neural.fp_runtime.FPVocoderModel` (frame-parallel
        vocoder, with its own postfilter).
    postfilter : bool or a postfilter from :mod:`edge_dred.dsp.postfilter`
        The vocoder's postfilter (default: the shipped chain).
    reference : bool
        Float64 numpy vocoder instead of the int8 kernels (tests; shipped vocoder only).
    """

    #: Features (10 ms frames) of the real output that :meth:`start` needs.
    history_frames = max(PRIME_FRAMES + 2, _fp_ref.PRIME_FRAMES)
    #: Output samples :meth:`start` needs.
    history_samples = max(prime_samples(PRIME_FRAMES), _fp_ref.PRIME_FRAMES * FRAME_SIZE + 1)
    #: Longest hand-back cross-fade: the first real slot.
    max_end_xfade = FRAME_SAMPLES
    #: Longest start cross-fade: one slot of libopus's concealment.
    max_start_xfade = FRAME_SAMPLES

    def __init__(self, model: Any, *, postfilter: Any = True, reference: bool = False) -> None:
        self._fp = isinstance(model, FPVocoderModel)
        if self._fp:
            if reference:
                raise ValueError("the frame-parallel vocoder has no float reference stream here")
            self._voc: Any = FPVocoder(model, postfilter=bool(postfilter))
        else:
            self._voc = (VocoderReference if reference else Vocoder)(model, postfilter=postfilter)
        self._tail = np.zeros(0)   # fp: synthesised samples past the last slot (the next slot's start)
        self._fresh = False        # fp: no synthesis since start(): drop the 80 samples before it

    @property
    def state_bytes(self) -> int:
        return int(getattr(self._voc, "state_bytes", 0)) + int(self._tail.nbytes)

    @property
    def conditioning_frames(self) -> int:
        """Feature rows :meth:`start` uses without teacher forcing (the last of ``features``)."""
        return _fp_ref.PRIME_FRAMES if self._fp else 2

    @property
    def wants_ahead(self) -> bool:
        """Whether :meth:`synthesize` uses the next frame's features (``ahead``)."""
        return self._fp

    def start(self, history: np.ndarray, features: np.ndarray, teacher_frames: int = PRIME_FRAMES) -> None:
        """Prime from the last output samples and their features (oldest first).

        ``features`` holds at least :attr:`history_frames` rows ending with the
        history's last frame; the shipped vocoder conditions on the last
        ``teacher_frames + 2`` of them and runs ``teacher_frames`` teacher-forced.

        Raises
        ------
        ContinuationError
            ``history`` holds fewer than :attr:`history_samples` samples.
        """
        hist = np.asarray(history)
        if hist.shape[0] < self.history_samples:
            raise ContinuationError(f"receiver history has {hist.shape[0]} samples, need {self.history_samples}")
        feats = np.asarray(features)
        if self._fp:
            self._voc.reset()
            self._voc.prime(hist, feats[-_fp_ref.PRIME_FRAMES:])
            self._tail = np.zeros(0)
            self._fresh = True
        else:
            self._voc.prime(hist[-self.history_samples:], feats[-(teacher_frames + 2):])

    def _run(self, feats: np.ndarray, ahead: np.ndarray | None, align: np.ndarray | None = None) -> np.ndarray:
        """The vocoder's output for exactly the samples of ``feats`` (float64)."""
        if not self._fp:
            return self._voc.synthesize(feats).astype(np.float64)
        n = feats.shape[0] * FRAME_SIZE
        nxt = feats[-1:] if ahead is None else np.asarray(ahead, np.float32).reshape(1, -1)
        # The first frame of a later call was the previous call's look-ahead: already run.
        run = np.concatenate([feats if self._fresh else feats[1:], nxt])
        y = self._voc.synthesize(run).astype(np.float64)
        if self._fresh:
            # The synthesis starts 5 ms before the hole (real audio, already played).  Where a
            # waveform that continues the real one is given (libopus's concealment), the hole
            # starts at the shift that lines the synthesis up with it (at most +-5 ms, i.e.
            # a pitch period above 100 Hz); the shift then holds for the whole hole.
            y = y[_FP_DELAY - _best_shift(y, align):]
            self._fresh = False
        y = np.concatenate([self._tail, y])
        self._tail = y[n:]
        return y[:n]

    def synthesize(self, features: np.ndarray, gain: np.ndarray | None = None,
                   under: np.ndarray | None = None, ahead: np.ndarray | None = None,
                   align: np.ndarray | None = None) -> np.ndarray:
        """Synthesise ``len(features)`` frames (float64 samples).

        ``gain`` (per sample) scales the synthesis and ``under`` (libopus's
        concealment of the same samples) fills the rest, ``(1 - gain) *
        under``.  Where the whole gain is 0 the vocoder is not run (its state
        does not advance).  ``ahead`` (1, 20): the next frame's features as the
        source knows them now (frame-parallel vocoder; default: the last
        frame held).
        """
        feats = np.asarray(features)
        if gain is None:
            y = self._run(feats, ahead, align)
        elif np.any(gain > 0):
            y = self._run(feats, ahead, align) * gain
        else:
            y = np.zeros(feats.shape[0] * FRAME_SIZE)
            self._tail = np.zeros(0)
        if under is not None and gain is not None:
            y += (1.0 - gain) * np.asarray(under, np.float64)
        return y

    def handback(self, pcm: np.ndarray, features: np.ndarray | None, k: int,
                 gain: np.ndarray | None = None) -> np.ndarray:
        """The first real samples ``pcm``, cross-faded over ``k`` samples from the synthesis run on.

        ``features`` holds the features of the frames after the hole as the
        source knows them (the last row is held for any frame beyond them;
        None: no run-on, the fade is what is already synthesised).  ``gain``
        (per sample of the fade) is the synthesis's share at the end of the
        hole; the rest was libopus's concealment, which the real decode
        continues by itself.  (Frame-parallel vocoder: its first 80 samples
        past the hole are already synthesised.)
        """
        out = np.asarray(pcm, np.int16).copy()
        k = min(int(k), len(out), self.max_end_xfade)
        if k <= 0:
            return out
        if gain is not None and not np.any(gain[:k] > 0):
            return out
        done = self._tail.shape[0] if self._fp else 0
        if features is None or len(features) == 0:
            k = min(k, done)
            if k == 0:
                return out
        cont = self._tail[:k]
        if k > done:
            feats = np.asarray(features, np.float32)
            # fp: the first row (the hole's look-ahead frame) has run already
            rows = feats[1:] if self._fp else feats
            n = -(-(k - done) // FRAME_SIZE)
            rows = np.concatenate([rows, np.repeat(feats[-1:], max(0, n - rows.shape[0]), axis=0)])[:n]
            more = self._voc.synthesize(rows).astype(np.float64)
            cont = np.concatenate([cont, more])[:k]
        if gain is None:
            w = raised_cosine(k)
        else:
            cont = cont * gain[:k]
            w = raised_cosine(k) * gain[:k]
        out[:k] = to_int16(w * cont + (1.0 - w) * out[:k].astype(np.float64))
        return out
