"""Rational-ratio resampling (windowed-sinc polyphase), numpy only.

Used for input files at other rates (a one-off conversion with a note) and by
boards whose sound card only runs at its native rate.  Only the output samples
that are needed are computed: each one is a dot product of ``2 * half_taps``
input samples with one polyphase branch of a Kaiser-windowed sinc.
"""
from __future__ import annotations

from math import gcd

import numpy as np

__all__ = ["resample", "resample_ratio"]

_MAX_RATIO_TERM = 4096  # bound the polyphase table (L) for odd rate pairs


def resample_ratio(rate_in: int, rate_out: int) -> tuple[int, int]:
    """Return the reduced (up, down) factors for ``rate_in -> rate_out``.

    Raises
    ------
    ValueError
        If a rate is not a positive integer or the reduced ratio is too large.
    """
    if int(rate_in) != rate_in or int(rate_out) != rate_out or rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive integers, got {rate_in} -> {rate_out}")
    g = gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    if up > _MAX_RATIO_TERM or down > _MAX_RATIO_TERM:
        raise ValueError(f"unsupported resampling ratio {rate_in} -> {rate_out} (reduced {up}/{down})")
    return up, down


def _design(up: int, down: int, half_taps: int, beta: float) -> np.ndarray:
    """Polyphase filter bank, shape (up, 2*half_taps), phase-major."""
    # Cut-off below the lower of the two Nyquist frequencies, in input-sample units.
    cutoff = min(1.0, up / down) * 0.94
    ntaps = 2 * half_taps
    # Tap k of phase p multiplies the input sample (k - half_taps + 1) + p/up
    # input periods before the output instant.
    k = np.arange(ntaps)[None, :] - half_taps + 1
    p = np.arange(up)[:, None] / up
    t = k + p
    # Kaiser window evaluated at the exact fractional position of every tap.
    w = np.i0(beta * np.sqrt(np.clip(1.0 - (t / (half_taps + 0.5)) ** 2, 0.0, 1.0))) / np.i0(beta)
    h = cutoff * np.sinc(cutoff * t) * w
    return h.astype(np.float64)


def resample(x: np.ndarray, rate_in: int, rate_out: int, half_taps: int = 24, beta: float = 8.0) -> np.ndarray:
    """Resample a 1-D signal from ``rate_in`` to ``rate_out``.

    Parameters
    ----------
    x : np.ndarray
        1-D float or integer signal.
    rate_in, rate_out : int
        Sample rates in Hz.
    half_taps : int
        Filter half length in input samples (quality vs. cost).
    beta : float
        Kaiser window shape (stop-band attenuation ~ 80 dB at 8).

    Returns
    -------
    np.ndarray
        float64 signal of length ``ceil(len(x) * rate_out / rate_in)``, time-aligned
        with the input (zero-phase filter).
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {x.shape}")
    up, down = resample_ratio(rate_in, rate_out)
    xf = x.astype(np.float64)
    if up == down:
        return xf.copy()
    n_out = -(-len(xf) * up // down)
    bank = _design(up, down, half_taps, beta)
    ntaps = bank.shape[1]
    pad = np.concatenate([np.zeros(ntaps), xf, np.zeros(ntaps)])
    y = np.empty(n_out)
    chunk = 1 << 14
    taps = np.arange(ntaps)
    for start in range(0, n_out, chunk):
        j = np.arange(start, min(n_out, start + chunk))
        pos = j * down  # position on the up-sampled grid
        base, phase = pos // up, pos % up
        # Tap k multiplies x[base - (k - half_taps + 1)]; + ntaps skips the zero pad.
        idx = base[:, None] - (taps[None, :] - half_taps + 1) + ntaps
        y[j] = np.einsum("ij,ij->i", pad[idx], bank[phase])
    return y
