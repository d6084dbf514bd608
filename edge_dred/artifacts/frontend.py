"""Detector front end: 1 s of 16 kHz audio -> a frame sequence and a global vector.

The same numpy code runs in training (``training/train_artifacts.py``) and at
run time, outside the TFLite graph (as the DRED encoder normalises its inputs
outside its graph).  Everything is relative to the segment's own level, plus
that level itself, so a quiet room and a loud talker look alike except where
the level matters.

Sequence ``(SEQ_FRAMES, SEQ_CHANNELS)`` per 10 ms frame
    * ``N_MELS`` log-mel bands (25 ms Hann window, 512-point FFT), dB re the
      segment's loud-frame level, / 20;
    * 4 click cues: loudest and quietest 1 ms sub-block against the frame's
      mean (impulses, dropouts), largest first and second difference against
      their local RMS (discontinuities, crackle), dB / 20.
Global ``(GLOBAL_DIM,)``
    * the 1 s Welch power spectrum at 3.9 Hz resolution from 31 to 500 Hz,
      dB re the segment's power, / 20 (mains lines are sharp and steady;
      speech harmonics move);
    * a 20-bin histogram of ``|x| / peak`` (log10 density; clipping piles
      samples up at the rails, saturation compresses the distribution);
    * fraction of samples within 0.1 % and 1 % of the peak, share of distinct
      16-bit values (bit crushing), crest factor, peak and loud-frame level;
    * a mains comb: for harmonics 1-10 of 50 and of 60 Hz, the strongest bin
      of a 1 s periodogram (0.98 Hz bins) where the harmonic may lie against
      the median of its neighbours, dB / 20 (a steady line stands out of
      speech far better at this resolution).
"""
from __future__ import annotations

import numpy as np

from ..constants import FRAME_SIZE, SAMPLE_RATE

__all__ = ["SEGMENT", "SEQ_FRAMES", "SEQ_CHANNELS", "GLOBAL_DIM", "N_MELS", "features", "features_batch",
           "mains_hum_db"]

SEGMENT = SAMPLE_RATE  # one detector input: 1 s
SEQ_FRAMES = SEGMENT // FRAME_SIZE  # 100
N_MELS = 40
_N_FFT = 512
_WIN = 400
_SUB = 16  # 1 ms sub-blocks of a 10 ms frame
_WELCH = 4096
_WELCH_HOP = 2048
_LOW_BINS = slice(8, 129)  # 31.25 .. 500 Hz at 3.906 Hz per bin
_HIST_BINS = 20
# Mains comb: harmonics 1..10 of 50 and 60 Hz in a 1 s periodogram (0.98 Hz bins).
_COMB_N = 16384
_COMB_DF = SAMPLE_RATE / _COMB_N
_COMB_K = 10
SEQ_CHANNELS = N_MELS + 4
GLOBAL_DIM = (_LOW_BINS.stop - _LOW_BINS.start) + _HIST_BINS + 6 + 2 * _COMB_K
_EPS = 1e-10


def _mel_matrix() -> np.ndarray:
    def hz2mel(f):
        return 2595.0 * np.log10(1 + f / 700.0)

    pts = 700.0 * (10 ** (np.linspace(hz2mel(20.0), hz2mel(SAMPLE_RATE / 2), N_MELS + 2) / 2595.0) - 1)
    bins = np.fft.rfftfreq(_N_FFT, 1 / SAMPLE_RATE)
    m = np.zeros((len(bins), N_MELS), np.float32)
    for i in range(N_MELS):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (bins - lo) / max(c - lo, 1e-6)
        down = (hi - bins) / max(hi - c, 1e-6)
        m[:, i] = np.maximum(0, np.minimum(up, down))
    # Narrow low bands may fall between FFT bins: give each at least its nearest bin.
    for i in range(N_MELS):
        if m[:, i].sum() == 0:
            m[np.argmin(np.abs(bins - pts[i + 1])), i] = 1.0
    return m / m.sum(axis=0, keepdims=True)


_MEL = _mel_matrix()
# The filter bank as (bin, weight) runs per band: a dense float32 matmul would hand
# this small product to a multi-threaded BLAS, which costs more than it saves.
_MEL_BINS = np.concatenate([np.flatnonzero(_MEL[:, i]) for i in range(N_MELS)])
_MEL_W = np.concatenate([_MEL[np.flatnonzero(_MEL[:, i]), i] for i in range(N_MELS)]).astype(np.float32)
_MEL_START = np.cumsum([0] + [np.count_nonzero(_MEL[:, i]) for i in range(N_MELS - 1)])
_HANN = np.hanning(_WIN + 2)[1:-1].astype(np.float32)
_WELCH_WIN = np.hanning(_WELCH + 2)[1:-1].astype(np.float32)
_FRAME_IDX = np.arange(SEQ_FRAMES)[:, None] * FRAME_SIZE + np.arange(_WIN)[None, :]
_WELCH_IDX = np.arange((SEGMENT - _WELCH) // _WELCH_HOP + 1)[:, None] * _WELCH_HOP + np.arange(_WELCH)


def _comb_index() -> tuple[np.ndarray, np.ndarray]:
    """Per mains harmonic: the bins it may fall in (mains drifts by up to 0.5 %) and its neighbours."""
    lines, sides = [], []
    for f0 in (50.0, 60.0):
        for k in range(1, _COMB_K + 1):
            c = int(round(k * f0 / _COMB_DF))
            w = 1 + int(np.ceil(0.006 * k * f0 / _COMB_DF))
            lines.append(np.clip(np.arange(c - w, c + w + 1), 0, None)[:9].tolist() + [c] * (9 - min(9, 2 * w + 1)))
            sides.append(list(range(c - w - 18, c - w - 2)) + list(range(c + w + 3, c + w + 19)))
    return np.array(lines), np.array(sides)


_COMB_LINES, _COMB_SIDES = _comb_index()
_COMB_WIN = np.hanning(SEGMENT + 2)[1:-1].astype(np.float32)


def _db(p: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(p + _EPS)


def _smooth5(v: np.ndarray) -> np.ndarray:
    k = np.ones(5, np.float32) / 5
    return np.convolve(np.pad(v, 2, mode="edge"), k, mode="valid")


def features(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front end of one 1 s segment.

    Parameters
    ----------
    x : np.ndarray
        :data:`SEGMENT` samples, float in [-1, 1] (int16 is scaled).

    Returns
    -------
    (seq, glob) : float32 arrays of shape (SEQ_FRAMES, SEQ_CHANNELS) and (GLOBAL_DIM,)
    """
    x = np.asarray(x)
    if x.shape != (SEGMENT,):
        raise ValueError(f"the detector takes {SEGMENT} samples (1 s at {SAMPLE_RATE} Hz), got shape {x.shape}")
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    x = x.astype(np.float32)
    # log-mel, frames centred on each 10 ms hop
    pad = np.pad(x, ((_WIN - FRAME_SIZE) // 2, (_WIN - FRAME_SIZE) // 2 + _WIN), mode="reflect")
    frames = pad[_FRAME_IDX] * _HANN
    spec = np.abs(np.fft.rfft(frames, _N_FFT, axis=1)).astype(np.float32) ** 2
    mel = _db(np.add.reduceat(spec[:, _MEL_BINS] * _MEL_W, _MEL_START, axis=1))
    blocks = x.reshape(SEQ_FRAMES, FRAME_SIZE)
    fp = np.mean(blocks ** 2, axis=1)
    ref = float(np.percentile(fp, 90)) + _EPS
    ref_db = _db(np.array(ref))
    mel = np.clip(mel - ref_db, -90.0, 20.0) / 20.0
    # click cues
    sub = _db(np.mean(blocks.reshape(SEQ_FRAMES, FRAME_SIZE // _SUB, _SUB) ** 2, axis=2))
    fdb = _db(fp)
    floor = _db(np.array(ref)) - 70.0  # no cue in frames far below the segment's level
    fdb_c = np.maximum(fdb, floor)
    c_max = np.max(sub, axis=1) - fdb_c
    c_min = np.maximum(np.min(sub, axis=1), floor) - fdb_c
    d1 = np.abs(np.diff(x, prepend=x[0])).reshape(SEQ_FRAMES, FRAME_SIZE)
    d2 = np.abs(np.diff(x, 2, prepend=x[:2])).reshape(SEQ_FRAMES, FRAME_SIZE)
    cues = []
    for d in (d1, d2):
        loc = _smooth5(np.mean(d ** 2, axis=1))
        cues.append(_db(np.max(d, axis=1) ** 2) - np.maximum(_db(loc), floor))
    seq = np.concatenate([mel, np.stack([c_max, c_min, *cues], axis=1).clip(-60, 60) / 20.0], axis=1)
    # global: low-frequency Welch spectrum
    wf = x[_WELCH_IDX] * _WELCH_WIN
    wp = np.mean(np.abs(np.fft.rfft(wf, axis=1)) ** 2, axis=0)
    total = float(np.mean(x ** 2)) * _WELCH + _EPS
    low = np.clip(_db(wp[_LOW_BINS]) - _db(np.array(total)), -100.0, 20.0) / 20.0
    a = np.abs(x)
    peak = float(a.max())
    if peak > 0:
        hist = np.histogram(a / peak, bins=_HIST_BINS, range=(0.0, 1.0))[0] / SEGMENT
        near = [np.mean(a >= peak * 0.999), np.mean(a >= peak * 0.99)]
        q = np.round(x * 32768.0)
        distinct = len(np.unique(q)) / (2 * np.max(np.abs(q)) + 1)
    else:
        hist = np.zeros(_HIST_BINS)
        near = [0.0, 0.0]
        distinct = 1.0
    rms = float(np.sqrt(np.mean(x ** 2))) + _EPS
    stats = [np.log10(near[0] + 1e-5), np.log10(near[1] + 1e-5), np.log10(distinct + 1e-5),
             20 * np.log10(peak / rms + 1e-9) / 20.0, 20 * np.log10(peak + 1e-9) / 50.0, ref_db / 50.0]
    # mains comb: strongest bin where each harmonic may be against the median of its neighbours
    cp = np.abs(np.fft.rfft(x * _COMB_WIN, _COMB_N)) ** 2
    comb = np.clip(_db(cp[_COMB_LINES].max(axis=1)) - _db(np.median(cp[_COMB_SIDES], axis=1)), -10.0, 40.0) / 20.0
    glob = np.concatenate([low, np.log10(hist + 1e-5), np.asarray(stats), comb]).astype(np.float32)
    return seq.astype(np.float32), glob


def features_batch(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`features` of each row of ``segments`` (N, SEGMENT), stacked."""
    out = [features(s) for s in segments]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def mains_hum_db(x: np.ndarray) -> tuple[float, float]:
    """Estimated mains hum level of a segment: (dB re the segment's power, 50 or 60 Hz).

    Sums the Welch power within +/- 2 bins (+/- 8 Hz) of the first five
    harmonics of 50 and 60 Hz, minus the median level around them (what
    speech puts there), and keeps the larger family.
    """
    x = np.asarray(x)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    wp = np.mean(np.abs(np.fft.rfft(x[_WELCH_IDX] * _WELCH_WIN, axis=1)) ** 2, axis=0)
    total = float(np.sum(wp)) + _EPS
    df = SAMPLE_RATE / _WELCH
    best = (-120.0, 50.0)
    for f0 in (50.0, 60.0):
        e = 0.0
        for k in range(1, 6):
            c = int(round(k * f0 / df))
            line = float(np.sum(wp[c - 2:c + 3]))
            bg = float(np.median(wp[max(c - 12, 0):c + 13])) * 5
            e += max(line - bg, 0.0)
        lvl = float(_db(np.array(e / total)))
        best = max(best, (lvl, f0))
    return best
