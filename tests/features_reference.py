"""Numpy reference of the feature analysis, for tests only.

The same definitions as :mod:`edge_dred.dsp.features` (its module docstring),
written for clarity over whole blocks of frames.  Every correlation and energy
of the pitch search is a sequential sum (``np.cumsum(...)[..., -1]``), the order
in which the compiled analysis (``edge_dred/dsp/src/feature_analysis.c``) and the models'
training features summed them, so the pitch features agree bit for bit; the
spectrum uses numpy's float64 FFT where the compiled one uses a float32 FFT.
"""
from __future__ import annotations

import numpy as np

from edge_dred.dsp import features as fm
from edge_dred.constants import FRAME_SIZE, NB_BANDS, NB_FEATURES, PITCH_MAX, PITCH_MIN, PREEMPHASIS

_SEG8, _LAG8_MIN, _LAG8_MAX = fm._SEG8, fm._LAG8_MIN, fm._LAG8_MAX
_N_LAG8 = _LAG8_MAX - _LAG8_MIN + 1
_BUF16, _SEG16, _FINE_HALF = fm._BUF16, fm.WINDOW_SIZE, fm._FINE_HALF
_LAG16_LO, _LAG16_HI = PITCH_MIN - _FINE_HALF - 1, PITCH_MAX + _FINE_HALF + 1


def _seqsum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis, strictly left to right."""
    return np.cumsum(a, axis=-1)[..., -1]


def _cepstrum_ref(power: np.ndarray) -> np.ndarray:
    logs = np.log10(power @ fm._BAND_WN_T + fm._ENERGY_FLOOR)
    lo = logs.max(axis=1) - fm._MAX_RANGE
    prev = lo
    for b in range(NB_BANDS):
        v = np.maximum(logs[:, b], lo)
        if b > 0:
            v = np.maximum(v, prev - fm._FOLLOW_DECAY)
        logs[:, b] = v
        prev = v
    cep = logs @ fm._DCT.T
    cep[:, 0] -= fm.C0_OFFSET
    return cep


def _ncc_coarse(buf16: np.ndarray) -> np.ndarray:
    """(n, 600) low-passed buffers -> (n, 121) ncc at 8 kHz, column j = lag 15 + j."""
    d = buf16[:, 1::2]
    nd = d.shape[1]
    seg = d[:, nd - _SEG8:]
    lags = np.arange(_LAG8_MIN, _LAG8_MAX + 1)
    idx = (nd - _SEG8 - lags)[:, None] + np.arange(_SEG8)[None, :]
    past = d[:, idx]                                          # (n, lags, 160)
    xc = _seqsum(seg[:, None, :] * past)
    ep = _seqsum(past * past)
    es = _seqsum(seg * seg)
    reg = fm._REG * _SEG8
    return xc / np.sqrt((es[:, None] + reg) * (ep + reg))


def _ncc_fine(buf16: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """ncc at 16 kHz on the last 320 samples for integer lags (n, m)."""
    seg = buf16[:, -_SEG16:]
    start = _BUF16 - _SEG16 - lags
    idx = start[:, :, None] + np.arange(_SEG16)[None, None, :]
    past = np.take_along_axis(buf16[:, None, :], idx, axis=2)
    xc = _seqsum(past * seg[:, None, :])
    ep = _seqsum(past * past)
    es = _seqsum(seg * seg)
    reg = fm._REG * _SEG16
    return xc / np.sqrt((es[:, None] + reg) * (ep + reg))


def _peaks(ncc: np.ndarray) -> np.ndarray:
    """Interior maxima with parabola heights, capped by the double lag (+0.2); -1 elsewhere."""
    out = np.full_like(ncc, -1.0)
    a, b, c = ncc[:, :-2], ncc[:, 1:-1], ncc[:, 2:]
    peak = (b >= a) & (b >= c)
    den = a - 2.0 * b + c
    curved = den < 0
    height = b - np.where(curved, (a - c) * (a - c) / (8.0 * np.where(curved, den, -1.0)), 0.0)
    out[:, 1:-1] = np.where(peak, np.minimum(height, 1.0), -1.0)
    half = (_LAG8_MAX - 1) // 2
    lags = np.arange(_LAG8_MIN, half + 1)
    j2 = 2 * lags - _LAG8_MIN
    c2 = np.maximum(np.maximum(ncc[:, j2 - 1], ncc[:, j2]), ncc[:, j2 + 1])
    cols = lags - _LAG8_MIN
    out[:, cols] = np.where(out[:, cols] > -1.0, np.minimum(out[:, cols], c2 + fm._DOUBLE_MARGIN), -1.0)
    return out


def _octave_guard(cp: np.ndarray) -> np.ndarray:
    rows = np.arange(cp.shape[0])
    best = np.argmax(cp, axis=1)
    cbest = cp[rows, best]
    choice = best.copy()
    for k in range(2, fm._OCTAVE_KMAX + 1):   # larger k last: the smallest sub-multiple wins
        centre = np.rint((best + _LAG8_MIN) / k).astype(np.int64) - _LAG8_MIN
        c = np.clip(centre, 1, _N_LAG8 - 2)
        win = np.stack([cp[rows, c - 1], cp[rows, c], cp[rows, c + 1]], axis=1)
        j = np.argmax(win, axis=1)
        take = (centre >= 1) & (win[rows, j] >= fm._OCTAVE_RATIO * cbest) & (cbest > 0)
        choice = np.where(take, c - 1 + j, choice)
    return choice


class ReferenceExtractor:
    """Streaming reference with the interface of :class:`edge_dred.dsp.features.FeatureExtractor`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._last_x = 0.0
        self._y_hist = np.zeros(FRAME_SIZE)
        self._lp_hist = np.zeros(fm._LP_TAPS - 1)
        self._u_hist = np.zeros(_BUF16 - FRAME_SIZE)
        self._prev, self._gap = -1, 1 << 30
        self._last_period = fm._DEFAULT_PERIOD

    def process_block(self, pcm: np.ndarray) -> np.ndarray:
        x = np.asarray(pcm, dtype=np.float64)
        assert x.ndim == 1 and x.size % FRAME_SIZE == 0
        n = x.size // FRAME_SIZE
        if n == 0:
            return np.zeros((0, NB_FEATURES), np.float32)
        y = np.empty_like(x)
        y[0] = x[0] - PREEMPHASIS * self._last_x
        y[1:] = x[1:] - PREEMPHASIS * x[:-1]
        self._last_x = float(x[-1])

        y_ext = np.concatenate([self._y_hist, y])
        frames = np.lib.stride_tricks.sliding_window_view(y_ext, fm.WINDOW_SIZE)[::FRAME_SIZE]
        spec = np.fft.rfft(frames * fm._WINDOW, axis=1)
        cep = _cepstrum_ref((spec.real ** 2 + spec.imag ** 2) / fm._WIN_POWER)
        self._y_hist = y_ext[-FRAME_SIZE:].copy()

        lp_in = np.concatenate([self._lp_hist, y])
        u = np.zeros_like(y)
        for k in range(fm._LP_TAPS):   # sequential in k, as the compiled filter
            u += fm._LOWPASS[k] * lp_in[fm._LP_TAPS - 1 - k:fm._LP_TAPS - 1 - k + y.size]
        self._lp_hist = lp_in[-(fm._LP_TAPS - 1):].copy()
        u_ext = np.concatenate([self._u_hist, u])
        buf16 = np.lib.stride_tricks.sliding_window_view(u_ext, _BUF16)[::FRAME_SIZE]
        self._u_hist = u_ext[-(_BUF16 - FRAME_SIZE):].copy()

        cp = _peaks(_ncc_coarse(buf16))
        lag8, voiced = self._track(cp, _octave_guard(cp))

        out = np.empty((n, NB_FEATURES), np.float32)
        out[:, :NB_BANDS] = cep
        offs = np.arange(-_FINE_HALF - 1, _FINE_HALF + 2)
        for i in range(n):   # fine stage, frame by frame (the held period runs across frames)
            if voiced[i]:
                lags = np.clip(2 * (lag8[i] + _LAG8_MIN) + offs, _LAG16_LO, _LAG16_HI)
                f = _ncc_fine(buf16[i:i + 1], lags[None])[0]
                j = int(np.argmax(f[1:-1])) + 1
                a, b, c = f[j - 1], f[j], f[j + 1]
                den = a - 2.0 * b + c
                delta = 0.5 * (a - c) / den if den < 0 else 0.0
                delta = min(max(delta, -0.5), 0.5)
                period = min(max(lags[j] + delta, PITCH_MIN), PITCH_MAX)
                corr = b - 0.25 * (a - c) * delta
                self._last_period = period
            else:
                period = self._last_period
                corr = _ncc_fine(buf16[i:i + 1], np.array([[int(np.rint(period))]]))[0, 0]
            out[i, NB_BANDS] = period
            out[i, NB_BANDS + 1] = min(max(corr, 0.0), 1.0)
        return out

    def _track(self, cp: np.ndarray, indep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = cp.shape[0]
        lag8 = np.empty(n, np.int64)
        voiced = np.zeros(n, bool)
        prev, gap = self._prev, self._gap
        for i in range(n):
            li, ci, ok = int(indep[i]), float(cp[i, indep[i]]), True
            if prev >= 0 and gap <= fm._CONT_MAX_GAP:
                p = prev + _LAG8_MIN
                lo = max(int(p * (1.0 - fm._CONT_WINDOW)) - _LAG8_MIN, 0)
                hi = min(int(p * (1.0 + fm._CONT_WINDOW)) - _LAG8_MIN + 1, _N_LAG8)
                if not lo <= li < hi:
                    j = int(np.argmax(cp[i, lo:hi]))
                    cn = float(cp[i, lo + j])
                    if cn >= ci - fm._CONT_MARGIN:
                        li, ci = lo + j, cn
                    elif ci < fm._JUMP_MIN:
                        ok = False
            elif ci < fm._ONSET_MIN:
                ok = False
            lag8[i] = li
            if ok and ci >= fm._VOICED_THRESHOLD:
                voiced[i] = True
                prev, gap = li, 0
            else:
                gap = min(gap + 1, 1 << 30)
        self._prev, self._gap = prev, gap
        return lag8, voiced


def reference_features(pcm: np.ndarray) -> np.ndarray:
    """Features of a whole signal (trailing partial frame dropped)."""
    x = np.asarray(pcm, dtype=np.float64)
    return ReferenceExtractor().process_block(x[: x.size // FRAME_SIZE * FRAME_SIZE])
