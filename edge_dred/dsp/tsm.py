"""Time-scale modification of 20 ms blocks: insert or remove whole pitch periods.

The playout (:mod:`edge_dred.playout`) changes its delay by playing a block a
little longer or shorter than it is.  Waveform-similarity overlap-add (WSOLA)
does this without changing pitch or level: the signal is cut at a lag ``P``
where it repeats itself (highest normalised cross-correlation of the two
``P``-apart stretches; a pitch period or a multiple of it in voiced speech)
and the two stretches are cross-faded over ``P`` samples, so the join is as
smooth as the signal is periodic.

* ``stretch``: ``P`` samples are *inserted* at the start of the block; the
  inserted stretch fades from the block's own start into the ``P`` samples
  that preceded it (``context``, already played), so it begins where the
  context ended and ends where the block begins.
* ``compress``: ``P`` samples are *removed* at the start of the block; its
  first ``P`` samples fade into the next ``P``, followed by the rest.

Whether a block may be scaled, and by how much, is the caller's policy
(:class:`edge_dred.playout.Playout`); :func:`best_lag` also reports the
correlation so the caller can tell voiced (periodic) from other audio.
Everything is vectorised per block: one matrix product finds the lag.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..constants import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["MIN_LAG", "MATCH", "best_lag", "stretch", "compress", "time_scale"]

MIN_LAG = SAMPLE_RATE // 400     # 2.5 ms: the shortest pitch period (400 Hz)
MATCH = SAMPLE_RATE // 100       # 10 ms compared at each candidate lag


def best_lag(z: np.ndarray, at: int, lo: int, hi: int, forward: bool) -> tuple[int, float]:
    """The lag in ``[lo, hi]`` at which ``z`` repeats itself best around ``at``.

    Compares ``z[at:at + MATCH]`` with ``z[at - P:...]`` (``forward=False``,
    the past) or ``z[at + P:...]`` (``forward=True``, the future).

    Returns
    -------
    (lag, corr)
        The best lag and its normalised cross-correlation (-1..1; 0 when
        either stretch is silent).  ``(0, 0.0)`` when the range is empty.
    """
    z = np.asarray(z, np.float64)
    if forward:
        hi = min(hi, z.shape[0] - at - MATCH)
    else:
        hi = min(hi, at)
    lo = max(lo, 1)
    if hi < lo or at + MATCH > z.shape[0]:
        return 0, 0.0
    ref = z[at:at + MATCH]
    if forward:
        cand = sliding_window_view(z[at + lo:at + hi + MATCH], MATCH)          # lag lo .. hi
    else:
        cand = sliding_window_view(z[at - hi:at - lo + MATCH], MATCH)[::-1]    # lag lo .. hi
    num = cand @ ref
    den = np.sqrt(np.einsum("ij,ij->i", cand, cand) * float(ref @ ref)) + 1e-9
    corr = num / den
    i = int(np.argmax(corr))
    return lo + i, float(corr[i])


def _fade(n: int) -> np.ndarray:
    # Raised-cosine from 0 to 1 over n samples (both ends excluded: no sample is taken whole twice).
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def stretch(context: np.ndarray, x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` with ``lag`` samples inserted at its start (``len(context) >= lag``)."""
    x = np.asarray(x, np.float64)
    c = np.asarray(context, np.float64)
    if not 0 < lag <= min(c.shape[0], x.shape[0]):
        raise ValueError(f"lag must be in 1..{min(c.shape[0], x.shape[0])}, got {lag}")
    w = _fade(lag)
    seg = x[:lag] * (1.0 - w) + c[c.shape[0] - lag:] * w
    return np.concatenate([seg, x])


def compress(x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` with ``lag`` samples removed at its start (``2 * lag <= len(x)``)."""
    x = np.asarray(x, np.float64)
    if not 0 < lag <= x.shape[0] // 2:
        raise ValueError(f"lag must be in 1..{x.shape[0] // 2}, got {lag}")
    w = _fade(lag)
    seg = x[:lag] * (1.0 - w) + x[lag:2 * lag] * w
    return np.concatenate([seg, x[2 * lag:]])


def time_scale(x: np.ndarray, rate: float, block: int = FRAME_SAMPLES, max_lag: int = FRAME_SAMPLES // 2
               ) -> np.ndarray:
    """Play ``x`` at ``rate`` (output length ``~ len(x) * rate``), block by block.

    Each block is stretched or compressed by the best lag up to ``max_lag``
    (never more than the length still owed), so the output length stays
    within one lag of ``len(x) * rate``.  For tests and measurements; the
    playout applies :func:`stretch`/:func:`compress` under its own policy.
    """
    x = np.asarray(x, np.float64)
    if not 0.5 <= rate <= 2.0:
        raise ValueError(f"rate must be in [0.5, 2.0], got {rate}")
    out: list[np.ndarray] = []
    made = 0
    for start in range(0, x.shape[0], block):
        blk = x[start:start + block]
        owed = int(round((start + blk.shape[0]) * rate)) - made - blk.shape[0]
        if owed >= MIN_LAG and start >= max_lag:
            lag, _ = best_lag(x, start, MIN_LAG, min(max_lag, owed), forward=False)
            if lag:
                blk = stretch(x[:start], blk, lag)
        elif owed <= -MIN_LAG and blk.shape[0] == block:
            lag, _ = best_lag(x, start, MIN_LAG, min(max_lag, -owed, block // 2), forward=True)
            if lag:
                blk = compress(blk, lag)
        out.append(blk)
        made += blk.shape[0]
    return np.concatenate(out) if out else x[:0]
