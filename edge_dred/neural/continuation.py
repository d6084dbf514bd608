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
* **hand-back** (:meth:`Continuation.handback`): one more frame is
  synthesised and the first real samples cross-fade from it.

What runs when (the policy) stays with the feature source; this module
only does the signal work.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..constants import FRAME_SAMPLES, FRAME_SIZE
from .vocoder import PRIME_FRAMES, Vocoder, VocoderReference, prime_samples

__all__ = ["Continuation", "ContinuationError", "raised_cosine", "fade_from", "to_int16"]


class ContinuationError(ValueError):
    """The receiver's history is too short to start a continuation."""


def raised_cosine(n: int) -> np.ndarray:
    """Weights falling smoothly from ~1 to ~0 over ``n`` samples (amplitude complementary)."""
    return 0.5 + 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def fade_from(y: np.ndarray, before: np.ndarray, k: int) -> np.ndarray:
    """Cross-fade the first ``k`` samples of ``y`` (float64, in place) from ``before``."""
    w = raised_cosine(k)
    y[:k] = w * np.asarray(before[:k], np.float64) + (1.0 - w) * y[:k]
    return y


def to_int16(y: np.ndarray) -> np.ndarray:
    """Round and saturate float samples to int16."""
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


class Continuation:
    """One stream's vocoder, continuing the receiver's output through a hole.

    Parameters
    ----------
    model
        Shared :class:`~edge_dred.neural.vocoder.VocoderModel`.
    postfilter : bool or a postfilter from :mod:`edge_dred.dsp.postfilter`
        The vocoder's postfilter (default: the shipped chain).
    reference : bool
        Float64 numpy vocoder instead of the int8 kernels (tests).
    """

    #: Features (10 ms frames) of the real output that :meth:`start` needs.
    history_frames = PRIME_FRAMES + 2
    #: Output samples :meth:`start` needs.
    history_samples = prime_samples(PRIME_FRAMES)
    #: Longest hand-back cross-fade: one synthesised frame.
    max_end_xfade = FRAME_SIZE
    #: Longest start cross-fade: one slot of libopus's concealment.
    max_start_xfade = FRAME_SAMPLES

    def __init__(self, model: Any, *, postfilter: Any = True, reference: bool = False) -> None:
        self._voc = (VocoderReference if reference else Vocoder)(model, postfilter=postfilter)

    @property
    def state_bytes(self) -> int:
        return int(getattr(self._voc, "state_bytes", 0))

    def start(self, history: np.ndarray, features: np.ndarray) -> None:
        """Prime from the last output samples and their features (oldest first).

        Raises
        ------
        ContinuationError
            ``history`` holds fewer than :attr:`history_samples` samples.
        """
        hist = np.asarray(history)
        if hist.shape[0] < self.history_samples:
            raise ContinuationError(f"receiver history has {hist.shape[0]} samples, need {self.history_samples}")
        self._voc.prime(hist[-self.history_samples:], features)

    def synthesize(self, features: np.ndarray, gain: np.ndarray | None = None,
                   under: np.ndarray | None = None) -> np.ndarray:
        """Synthesise ``len(features)`` frames (float64 samples).

        ``gain`` (per sample) scales the synthesis and ``under`` (libopus's
        concealment of the same samples) fills the rest, ``(1 - gain) *
        under``.  Where the whole gain is 0 the vocoder is not run (its state
        does not advance).
        """
        feats = np.asarray(features)
        if gain is None:
            y = self._voc.synthesize(feats).astype(np.float64)
        elif np.any(gain > 0):
            y = self._voc.synthesize(feats).astype(np.float64) * gain
        else:
            y = np.zeros(feats.shape[0] * FRAME_SIZE)
        if under is not None and gain is not None:
            y += (1.0 - gain) * np.asarray(under, np.float64)
        return y

    def handback(self, pcm: np.ndarray, features: np.ndarray, k: int, gain: np.ndarray | None = None) -> np.ndarray:
        """The first real samples ``pcm``, cross-faded over ``k`` samples from one more synthesised frame.

        ``gain`` (per sample of the fade) is the synthesis's share at the end
        of the hole; the rest was libopus's concealment, which the real
        decode continues by itself.
        """
        out = np.asarray(pcm, np.int16).copy()
        k = min(int(k), len(out), self.max_end_xfade)
        if k <= 0:
            return out
        feats = np.asarray(features)[:1]
        if gain is None:
            cont = self._voc.synthesize(feats)[:k].astype(np.float64)
            w = raised_cosine(k)
        else:
            cont = (self._voc.synthesize(feats)[:k].astype(np.float64) * gain if np.any(gain > 0)
                    else np.zeros(k))
            w = raised_cosine(k) * gain
        out[:k] = to_int16(w * cont + (1.0 - w) * out[:k].astype(np.float64))
        return out
