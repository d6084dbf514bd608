"""LPCNet-style acoustic features and a causal pitch estimator.

Every 10 ms frame of 16 kHz mono speech is described by 20 numbers: 18 Bark-like
cepstral coefficients, a pitch period and a pitch correlation.  The batch
function :func:`compute_features` and the streaming :class:`FeatureExtractor`
run the same per-frame arithmetic on the same buffers, so a stream cut into
any chunks gives the same features as one batch call.

Definitions (the vocoder, the DRED encoder and the receiver rely on these)
--------------------------------------------------------------------------
Input
    1-D array of 16 kHz mono samples on the **int16 scale** (``int16``, or
    ``float32``/``float64`` holding values in about [-32768, 32767]; a float
    signal in [-1, 1] must be multiplied by 32768 first).  Finite values with
    ``|x| <= 65536`` are accepted; anything else raises
    :class:`FeatureInputError` (a ``ValueError``).
Alignment
    ``n_frames = len(pcm) // 160``; a trailing partial frame is ignored.
    Frame ``i`` describes samples ``[160 i, 160 i + 160)``.  All of its
    analysis windows *end* at sample ``160 i + 160`` (causal, no look-ahead);
    samples before the start of the signal are zeros.
Pre-emphasis
    ``y[n] = x[n] - 0.85 x[n-1]`` (``x[-1] = 0``).  The cepstrum describes the
    spectrum of ``y`` (so plain white noise shows a rising tilt; noise that is
    white *after* pre-emphasis gives a flat cepstrum).
Spectrum
    ``y[160 i - 160 : 160 i + 160]`` times the sine window
    ``w[n] = sin(pi (n + 0.5) / 320)`` (power complementary at a 160 hop:
    ``w[n]^2 + w[n+160]^2 = 1``), 320-point real FFT (161 bins, 50 Hz apart),
    power ``P_k = |X_k|^2 / 160`` so that noise of variance ``s^2`` has
    ``P_k ~ s^2`` times the pre-emphasis gain ``|1 - 0.85 e^{-jw}|^2``.
Bands
    18 triangular bands whose peaks sit on the edges 0, 200, 400, 600, 800,
    1000, 1200, 1400, 1600, 2000, 2400, 2800, 3200, 4000, 4800, 5600, 6800,
    8000 Hz; the triangles of neighbouring edges overlap so that the weights of
    every bin sum to 1 (:func:`band_weights`, shape (18, 161)).  The band
    energy ``E_b`` is the weighted *mean* of ``P_k`` (weights normalised per
    band), so a flat spectrum gives equal ``E_b``.
Log energies (floor and bounded dynamic range)
    ``L_b = log10(E_b + 1.0)`` (the +1, about one int16 LSB squared, keeps
    silence at 0 instead of -inf); then, going up in frequency,
    ``L_b = max(L_b, max_b' L_b' - 8, F_{b-1} - 2.5)`` with
    ``F_b = max(F_{b-1} - 2.5, L_b)`` (``F_{-1} = -inf``; ``F_b`` equals the
    floored ``L_b``, so this is ``L_b >= L_{b-1} - 2.5``): no band lies more
    than 8 decades below the loudest one, and a spectral valley falls at most
    2.5 decades per band.  So ``0 <= L_b <= ~11`` for int16 input.
Cepstrum
    ``features[0:18] = DCT-II_orthonormal(L)``, then ``features[0] -= 18.0``
    (:data:`C0_OFFSET`).  With the orthonormal DCT ``c0 = sqrt(18) * mean(L)``;
    the offset puts speech near 0 (LibriSpeech at about -28 dBFS: c0 averages
    -1 to -3 over all frames and about +2 over the louder half).
Pitch
    ``features[18]``: pitch period in samples at 16 kHz, a float in
    [32, 267] (500 Hz .. 60 Hz).  ``features[19]``: normalised
    cross-correlation of the (low-passed) signal with itself one period back,
    at the reported period, clipped to [0, 1]: about 0 for noise and silence,
    near 1 for strongly voiced speech.  Unvoiced frames keep the last voiced
    period (100 samples = 160 Hz before the first voiced frame) and report the
    correlation measured at that period.

Pitch estimator
---------------
The hot loops have compiled versions in ``edge_dred.dsp._features`` (built by
``setup.py``); without it the same arithmetic runs in numpy.  The two agree to
rounding; batch and streaming with one implementation agree exactly.

1. ``y`` is low-passed (31-tap windowed sinc, cutoff 3 kHz, 15 samples delay)
   to ``u``; ``u`` at even-offset samples gives an 8 kHz signal ``d``.
2. Coarse search at 8 kHz: for the 160-sample (20 ms) segment of ``d`` ending
   at the frame end, the normalised cross-correlation
   ``<s, s_L> / sqrt((|s|^2 + 160)(|s_L|^2 + 160))`` for every lag
   L = 15..135 (FFT based; the +160 terms, one LSB^2 per sample, push
   LSB-level signals toward 0).
3. Only interior local maxima of that lag curve count (a maximum at the
   edge of the range is the tail of a short-lag formant correlation), with
   parabola-interpolated heights (short periods between integer lags would
   otherwise look weaker than their multiples).  A peak at a lag ``L`` whose
   double is in range scores at most ``max ncc(2L +- 1) + 0.2``: a periodic
   signal repeats after two periods, a decaying formant resonance does not.
   Octave guard: the best peak is replaced by its smallest sub-multiple
   ``L/k`` (k = 2..8) whose peak score is at least 0.9 of the best.
4. Causal continuity: if a frame at most 2 frames back was voiced and the
   best peak within +-12 % of its lag is within 0.15 of the independent
   choice, that nearby lag wins; a far candidate below 0.7 does not break
   the track (the frame counts as unvoiced instead).  Starting a new track
   needs 0.6.
5. The frame is voiced when its coarse correlation is >= 0.4 (and step 4
   allowed it).
6. Fine stage at 16 kHz on ``u``: a 320-sample segment, lags within +-3 of
   twice the coarse lag, parabolic interpolation around the best integer
   lag gives the fractional period and the interpolated peak correlation.
"""
from __future__ import annotations

import numpy as np

from ..constants import FRAME_SIZE, NB_BANDS, NB_FEATURES, PITCH_MAX, PITCH_MIN, PREEMPHASIS, SAMPLE_RATE

try:  # compiled hot loops; the numpy versions below are the fallback
    from edge_dred.dsp import _features as _ck
except ImportError:  # pragma: no cover - depends on the build
    _ck = None

__all__ = [
    "NB_BANDS",
    "NB_FEATURES",
    "FRAME_SIZE",
    "WINDOW_SIZE",
    "PITCH_MIN",
    "PITCH_MAX",
    "SAMPLE_RATE",
    "PREEMPHASIS",
    "C0_OFFSET",
    "BAND_EDGES_HZ",
    "FeatureInputError",
    "compute_features",
    "FeatureExtractor",
    "band_weights",
    "band_energies_from_cepstrum",
    "cepstrum_from_band_energies",
    "deemphasis",
]

WINDOW_SIZE = 2 * FRAME_SIZE
C0_OFFSET = 18.0
# De-emphasis x[n] = e[n] + a x[n-1] over a frame without a Python loop:
# x[n] = a^n (a x[-1] + sum_{k<=n} a^-k e[k]).  a^-160 ~ 2e11 is harmless in
# float64: each partial sum is dominated by its newest term, so the relative
# error stays at float64 rounding (and no BLAS call: BLAS threads stall on
# busy boards).
_DEEMPH_POW = PREEMPHASIS ** np.arange(FRAME_SIZE, dtype=np.float64)
_DEEMPH_INV_POW = 1.0 / _DEEMPH_POW
BAND_EDGES_HZ = (0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 2000, 2400,
                 2800, 3200, 4000, 4800, 5600, 6800, 8000)

_N_BINS = WINDOW_SIZE // 2 + 1
_ENERGY_FLOOR = 1.0
_MAX_RANGE = 8.0          # decades below the loudest band
_FOLLOW_DECAY = 2.5       # decades per band
_INPUT_LIMIT = 65536.0    # twice the int16 range: catches [-1, 1] vs int16 mix-ups only one way, but bounds the maths
_DEFAULT_PERIOD = 100.0

# Pitch search constants.
_LP_TAPS = 31
_LP_CUTOFF_HZ = 3000.0
_SEG8 = 160               # 20 ms at 8 kHz
_LAG8_MIN = PITCH_MIN // 2 - 1        # 15: one spare lag each side so that the
                                      # range ends can be interior peaks
_LAG8_MAX = (PITCH_MAX + 1) // 2 + 1  # 135
_N_LAG8 = _LAG8_MAX - _LAG8_MIN + 1
_FFT8 = 512
_SEG16 = WINDOW_SIZE
_FINE_HALF = 3            # +- lags searched at 16 kHz
_LAG16_LO = PITCH_MIN - _FINE_HALF - 1
_LAG16_HI = PITCH_MAX + _FINE_HALF + 1
_BUF16 = 600              # low-passed history each frame sees (>= 320 + 271 and 2*(160+134))
_REG = 1.0                # LSB^2 per sample added to both energies of the ncc
_OCTAVE_RATIO = 0.9
_OCTAVE_KMAX = 8
_CONT_WINDOW = 0.12
_CONT_MARGIN = 0.15
_CONT_MAX_GAP = 2
_VOICED_THRESHOLD = 0.4
_DOUBLE_MARGIN = 0.2
_JUMP_MIN = 0.7
_ONSET_MIN = 0.6
_BATCH_FRAMES = 2048


class FeatureInputError(ValueError):
    """Raised when audio given to the feature extractor is malformed."""


def _make_band_weights() -> np.ndarray:
    edges = np.asarray(BAND_EDGES_HZ, dtype=np.float64) / (SAMPLE_RATE / WINDOW_SIZE)
    k = np.arange(_N_BINS, dtype=np.float64)
    w = np.zeros((NB_BANDS, _N_BINS))
    for b in range(NB_BANDS):
        if b > 0:
            lo, mid = edges[b - 1], edges[b]
            m = (k >= lo) & (k <= mid)
            w[b, m] = (k[m] - lo) / (mid - lo)
        if b < NB_BANDS - 1:
            mid, hi = edges[b], edges[b + 1]
            m = (k >= mid) & (k < hi)
            w[b, m] = (hi - k[m]) / (hi - mid)
        else:
            w[b, k == edges[b]] = 1.0
    return w


def _make_dct() -> np.ndarray:
    n = np.arange(NB_BANDS)
    d = np.cos(np.pi * (n[None, :] + 0.5) * n[:, None] / NB_BANDS) * np.sqrt(2.0 / NB_BANDS)
    d[0] /= np.sqrt(2.0)
    return d


def _make_lowpass() -> np.ndarray:
    n = np.arange(_LP_TAPS) - (_LP_TAPS - 1) / 2
    fc = _LP_CUTOFF_HZ / SAMPLE_RATE
    h = 2 * fc * np.sinc(2 * fc * n) * np.hamming(_LP_TAPS)
    return h / h.sum()


_BAND_W = _make_band_weights()
_BAND_W.setflags(write=False)
_BAND_WN_T = np.ascontiguousarray((_BAND_W / _BAND_W.sum(axis=1, keepdims=True)).T)
_DCT = _make_dct()
_WINDOW = np.sin(np.pi * (np.arange(WINDOW_SIZE) + 0.5) / WINDOW_SIZE)
_WIN_POWER = float(np.sum(_WINDOW ** 2))
_LOWPASS = _make_lowpass()


def band_weights() -> np.ndarray:
    """Triangular band weights.

    Returns
    -------
    numpy.ndarray
        Read-only float64 array of shape (18, 161): weight of FFT bin ``k``
        (``k * 50`` Hz) in band ``b``.  Columns sum to 1, so a per-bin envelope
        is ``band_energies @ band_weights()``.
    """
    return _BAND_W


def _check_cepstrum(cep: np.ndarray) -> np.ndarray:
    c = np.asarray(cep, dtype=np.float64)
    if c.ndim == 0 or c.shape[-1] not in (NB_BANDS, NB_FEATURES):
        raise FeatureInputError(f"expected a last dimension of {NB_BANDS} or {NB_FEATURES}, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise FeatureInputError("cepstrum contains NaN or infinite values")
    return c[..., :NB_BANDS]


def band_energies_from_cepstrum(cep: np.ndarray, log10: bool = False) -> np.ndarray:
    """Invert the cepstral transform.

    Parameters
    ----------
    cep : numpy.ndarray
        Array whose last dimension is 18 (cepstrum) or 20 (full feature
        vectors; the pitch entries are ignored).
    log10 : bool
        If True return the floored log energies ``L_b``; otherwise linear band
        energies ``max(10**L_b - 1, 0)`` (int16^2 units, mean power per bin).

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``cep.shape[:-1] + (18,)``.
    """
    c = _check_cepstrum(cep).copy()
    c[..., 0] += C0_OFFSET
    logs = c @ _DCT  # orthonormal: inverse is the transpose
    if log10:
        return logs
    return np.maximum(10.0 ** np.minimum(logs, 30.0) - _ENERGY_FLOOR, 0.0)


def deemphasis(e: np.ndarray, x_prev: float) -> np.ndarray:
    """Undo the pre-emphasis over one frame (160 samples), continuing from the last output ``x_prev``."""
    return _DEEMPH_POW * (PREEMPHASIS * x_prev + np.cumsum(e * _DEEMPH_INV_POW))


def cepstrum_from_band_energies(energies: np.ndarray) -> np.ndarray:
    """Forward transform: linear band energies (..., 18) -> cepstrum (..., 18).

    Applies the same floor and dynamic-range rule as :func:`compute_features`.
    """
    e = np.asarray(energies, dtype=np.float64)
    if e.ndim == 0 or e.shape[-1] != NB_BANDS:
        raise FeatureInputError(f"expected a last dimension of {NB_BANDS}, got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e < 0):
        raise FeatureInputError("band energies must be finite and non-negative")
    shape = e.shape
    cep = _cepstrum(e.reshape(-1, NB_BANDS))
    return cep.reshape(shape)


def _cepstrum(e: np.ndarray) -> np.ndarray:
    """(n, 18) band energies -> (n, 18) cepstrum with floor rules."""
    logs = np.log10(e + _ENERGY_FLOOR)
    if _ck is not None:
        _ck.floor_logs(logs, _MAX_RANGE, _FOLLOW_DECAY)
    else:
        # F_b = max(F_{b-1} - decay, L_b) always equals the floored L_b, so
        # the rule is L_b = max(L_b, max - range, L_{b-1} - decay).
        lo = logs.max(axis=1) - _MAX_RANGE
        prev = lo
        for b in range(NB_BANDS):
            v = np.maximum(logs[:, b], lo)
            if b > 0:
                v = np.maximum(v, prev - _FOLLOW_DECAY)
            logs[:, b] = v
            prev = v
    cep = logs @ _DCT.T
    cep[:, 0] -= C0_OFFSET
    return cep


def _validate_pcm(pcm: np.ndarray, name: str = "pcm") -> np.ndarray:
    if not isinstance(pcm, np.ndarray):
        raise FeatureInputError(f"{name} must be a numpy array, got {type(pcm).__name__}")
    if pcm.ndim != 1:
        raise FeatureInputError(f"{name} must be 1-D mono audio, got shape {pcm.shape}")
    if pcm.dtype not in (np.int16, np.float32, np.float64):
        raise FeatureInputError(f"{name} must be int16, float32 or float64 (int16 scale), got {pcm.dtype}")
    x = pcm.astype(np.float64)
    if pcm.dtype != np.int16:
        if not np.all(np.isfinite(x)):
            raise FeatureInputError(f"{name} contains NaN or infinite samples")
        if x.size and np.max(np.abs(x)) > _INPUT_LIMIT:
            raise FeatureInputError(f"{name} exceeds the int16 scale (|x| > {_INPUT_LIMIT:g})")
    return x


def _ncc_coarse(buf16: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation at 8 kHz for lags 15..135.

    buf16: (n, _BUF16) low-passed 16 kHz history ending at each frame end.
    Returns (n, _N_LAG8), column j is lag _LAG8_MIN + j.
    """
    d = buf16[:, 1::2]  # 8 kHz, last sample = last 16 kHz sample
    span = _SEG8 + _LAG8_MAX
    buf = d[:, -span:]
    seg = d[:, -_SEG8:]
    r = np.fft.irfft(np.conj(np.fft.rfft(seg, _FFT8)) * np.fft.rfft(buf, _FFT8), _FFT8)
    r = r[:, :_N_LAG8]  # offset m <-> lag 134 - m
    sq = buf * buf
    cs = np.zeros((buf.shape[0], span + 1))
    np.cumsum(sq, axis=1, out=cs[:, 1:])
    e_lag = cs[:, _SEG8:_SEG8 + _N_LAG8] - cs[:, :_N_LAG8]
    e_seg = cs[:, -1] - cs[:, -1 - _SEG8]
    reg = _REG * _SEG8
    ncc = r / np.sqrt((e_seg[:, None] + reg) * (np.maximum(e_lag, 0.0) + reg))
    return ncc[:, ::-1]


def _ncc_fine(buf16: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """ncc at 16 kHz for integer lags (n, m) on 320-sample segments."""
    n_rows = buf16.shape[0]
    seg = buf16[:, -_SEG16:]
    start = _BUF16 - _SEG16 - lags  # (n, m)
    idx = start[:, :, None] + np.arange(_SEG16)[None, None, :]
    past = np.take_along_axis(buf16[:, None, :], idx, axis=2) if n_rows else np.zeros(idx.shape)
    r = (past * seg[:, None, :]).sum(axis=2)
    e_lag = (past * past).sum(axis=2)
    e_seg = (seg * seg).sum(axis=1)
    reg = _REG * _SEG16
    return r / np.sqrt((e_seg[:, None] + reg) * (e_lag + reg))


def _peaks_only(ncc: np.ndarray) -> np.ndarray:
    """Parabola-interpolated heights of interior local maxima, -1 elsewhere.

    A maximum at the edge of the lag range is the tail of a short-lag
    (formant) correlation, not a period.  Interpolating the height keeps short
    periods that fall between integer lags from looking weaker than their
    multiples.
    """
    out = np.full_like(ncc, -1.0)
    a, b, c = ncc[:, :-2], ncc[:, 1:-1], ncc[:, 2:]
    peak = (b >= a) & (b >= c)
    den = a - 2.0 * b + c
    curved = den < 0
    height = b - np.where(curved, (a - c) ** 2 / (8.0 * np.where(curved, den, -1.0)), 0.0)
    out[:, 1:-1] = np.where(peak, np.minimum(height, 1.0), -1.0)
    return out


def _double_check(cp: np.ndarray, ncc: np.ndarray) -> np.ndarray:
    """Cap a short lag's score by the correlation at twice that lag.

    A periodic signal also repeats after two periods; a formant resonance
    (decaying oscillation) does not, and would otherwise pass for a high pitch.
    """
    half = (_LAG8_MAX - 1) // 2  # largest lag whose double (+1) is in range
    lags = np.arange(_LAG8_MIN, half + 1)
    j2 = 2 * lags - _LAG8_MIN
    c2 = np.maximum(np.maximum(ncc[:, j2 - 1], ncc[:, j2]), ncc[:, j2 + 1])
    out = cp.copy()
    cols = lags - _LAG8_MIN
    out[:, cols] = np.where(cp[:, cols] > -1.0, np.minimum(cp[:, cols], c2 + _DOUBLE_MARGIN), -1.0)
    return out


def _octave_guard(cp: np.ndarray) -> np.ndarray:
    """Independent per-frame lag index (into the 8 kHz lag axis).

    cp holds the peaks of the ncc curve (see :func:`_peaks_only`).
    """
    n = cp.shape[0]
    if _ck is not None:
        out = np.empty(n, dtype=np.intp)
        _ck.octave_guard(np.ascontiguousarray(cp), _LAG8_MIN, _OCTAVE_RATIO, _OCTAVE_KMAX, out)
        return out
    rows = np.arange(n)
    best = np.argmax(cp, axis=1)
    cbest = cp[rows, best]
    lag_best = best + _LAG8_MIN
    choice = best.copy()
    # Larger k last, so the smallest qualifying sub-multiple wins.
    for k in range(2, _OCTAVE_KMAX + 1):
        centre = np.rint(lag_best / k).astype(np.int64) - _LAG8_MIN
        ok_range = centre >= 1
        c = np.clip(centre, 1, _N_LAG8 - 2)
        win = np.stack([cp[rows, c - 1], cp[rows, c], cp[rows, c + 1]], axis=1)
        j = np.argmax(win, axis=1)
        val = win[rows, j]
        take = ok_range & (val >= _OCTAVE_RATIO * cbest) & (cbest > 0)
        choice = np.where(take, c - 1 + j, choice)
    return choice


class FeatureExtractor:
    """Streaming feature extractor; gives the same results as :func:`compute_features`.

    The state is the last input sample, 160 pre-emphasised samples (first half
    of the next window), 30 samples of low-pass filter history, 440 samples of
    low-passed history for the pitch search, and the pitch tracker state.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all history (as if the stream restarted after zeros)."""
        self._last_x = 0.0
        self._y_hist = np.zeros(FRAME_SIZE)
        self._lp_hist = np.zeros(_LP_TAPS - 1)
        self._u_hist = np.zeros(_BUF16 - FRAME_SIZE)
        self._prev_lag8 = -1          # coarse lag index of the last voiced frame, -1 if none
        self._gap = 1 << 30           # frames since that voiced frame
        self._last_period = _DEFAULT_PERIOD

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Analyse one 160-sample frame.

        Parameters
        ----------
        frame : numpy.ndarray
            1-D, exactly 160 samples on the int16 scale.

        Returns
        -------
        numpy.ndarray
            float32 array of shape (20,).
        """
        x = _validate_pcm(frame, "frame")
        if x.shape[0] != FRAME_SIZE:
            raise FeatureInputError(f"frame must have {FRAME_SIZE} samples, got {x.shape[0]}")
        return self._run(x)[0]

    def process_block(self, pcm: np.ndarray) -> np.ndarray:
        """Analyse a block whose length is a multiple of 160 samples.

        Returns
        -------
        numpy.ndarray
            float32 array of shape (len(pcm) // 160, 20).
        """
        x = _validate_pcm(pcm)
        if x.shape[0] % FRAME_SIZE:
            raise FeatureInputError(f"block length must be a multiple of {FRAME_SIZE}, got {x.shape[0]}")
        if x.shape[0] == 0:
            return np.zeros((0, NB_FEATURES), dtype=np.float32)
        step = _BATCH_FRAMES * FRAME_SIZE
        return np.concatenate([self._run(x[i:i + step]) for i in range(0, x.shape[0], step)])

    # -- internals ---------------------------------------------------------
    def _run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0] // FRAME_SIZE
        y = np.empty_like(x)
        y[0] = x[0] - PREEMPHASIS * self._last_x
        y[1:] = x[1:] - PREEMPHASIS * x[:-1]
        self._last_x = float(x[-1])

        # Spectrum: windows end at each frame end.
        y_ext = np.concatenate([self._y_hist, y])
        frames = np.lib.stride_tricks.sliding_window_view(y_ext, WINDOW_SIZE)[::FRAME_SIZE]
        spec = np.fft.rfft(frames * _WINDOW, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2) / _WIN_POWER
        cep = _cepstrum(power @ _BAND_WN_T)
        self._y_hist = y_ext[-FRAME_SIZE:].copy()

        # Low-pass, as a fixed-order sum of shifted copies so any chunking
        # gives bit-identical output.
        lp_in = np.concatenate([self._lp_hist, y])
        u = np.zeros_like(y)
        m = y.shape[0]
        if _ck is not None:
            _ck.lowpass(lp_in, _LOWPASS, u)
        else:
            for k in range(_LP_TAPS):
                u += _LOWPASS[k] * lp_in[_LP_TAPS - 1 - k:_LP_TAPS - 1 - k + m]
        self._lp_hist = lp_in[-(_LP_TAPS - 1):].copy()
        u_ext = np.concatenate([self._u_hist, u])
        # Per-frame views only for the numpy fallback; the compiled kernels index u_ext.
        buf16 = np.lib.stride_tricks.sliding_window_view(u_ext, _BUF16)[::FRAME_SIZE] if _ck is None else None
        self._u_hist = u_ext[-(_BUF16 - FRAME_SIZE):].copy()

        def fine(rows: np.ndarray, lags: np.ndarray) -> np.ndarray:
            if _ck is None:
                return _ncc_fine(buf16[rows], lags)
            res = np.empty(lags.shape)
            _ck.ncc_fine(u_ext, (rows * FRAME_SIZE).astype(np.intp), np.ascontiguousarray(lags, dtype=np.intp),
                         _BUF16, _SEG16, _REG * _SEG16, res)
            return res

        if _ck is None:
            raw_ncc = _ncc_coarse(buf16)
            ncc = _double_check(_peaks_only(raw_ncc), raw_ncc)
        else:
            raw_ncc, ncc = np.empty((n, _N_LAG8)), np.empty((n, _N_LAG8))
            _ck.coarse_peaks(u_ext, np.arange(0, n * FRAME_SIZE, FRAME_SIZE, dtype=np.intp), _BUF16, _SEG8,
                             _LAG8_MIN, _LAG8_MAX, _REG * _SEG8, _DOUBLE_MARGIN, raw_ncc, ncc)
        indep = _octave_guard(ncc)
        lag8, voiced = self._track(ncc, indep)

        # Fine stage for voiced frames.
        period = np.empty(n)
        corr = np.empty(n)
        vi = np.flatnonzero(voiced)
        if vi.size:
            centre = 2 * (lag8[vi] + _LAG8_MIN)
            offs = np.arange(-_FINE_HALF - 1, _FINE_HALF + 2)
            lags = np.clip(centre[:, None] + offs[None, :], _LAG16_LO, _LAG16_HI)
            f = fine(vi, lags)
            inner = f[:, 1:-1]
            j = np.argmax(inner, axis=1) + 1
            rows = np.arange(vi.size)
            a, b, c = f[rows, j - 1], f[rows, j], f[rows, j + 1]
            den = a - 2.0 * b + c
            safe = den < 0
            delta = np.where(safe, 0.5 * (a - c) / np.where(safe, den, -1.0), 0.0)
            delta = np.clip(delta, -0.5, 0.5)
            period[vi] = np.clip(lags[rows, j] + delta, PITCH_MIN, PITCH_MAX)
            corr[vi] = b - 0.25 * (a - c) * delta
        # Unvoiced frames hold the last voiced period (carried across calls).
        held = np.full(n, self._last_period)
        if vi.size:
            last = np.maximum.accumulate(np.where(voiced, np.arange(n), -1))
            has = last >= 0
            held[has] = period[last[has]]
            self._last_period = float(period[vi[-1]])
        ui = np.flatnonzero(~voiced)
        if ui.size:
            lag_u = np.rint(held[ui]).astype(np.int64)[:, None]
            corr[ui] = fine(ui, lag_u)[:, 0]
            period[ui] = held[ui]

        out = np.empty((n, NB_FEATURES), dtype=np.float32)
        out[:, :NB_BANDS] = cep
        out[:, NB_BANDS] = period
        out[:, NB_BANDS + 1] = np.clip(corr, 0.0, 1.0)
        return out

    def _track(self, ncc: np.ndarray, indep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Causal continuity tracking; sequential over frames by nature."""
        n = ncc.shape[0]
        lag8 = np.empty(n, dtype=np.int64)
        voiced = np.zeros(n, dtype=bool)
        prev, gap = self._prev_lag8, self._gap
        if _ck is not None:
            lag_c = np.empty(n, dtype=np.intp)
            voiced_c = np.empty(n, dtype=np.uint8)
            self._prev_lag8, self._gap = _ck.track(
                np.ascontiguousarray(ncc), indep.astype(np.intp), prev, gap, _LAG8_MIN,
                _CONT_WINDOW, _CONT_MARGIN, _CONT_MAX_GAP, _JUMP_MIN, _ONSET_MIN,
                _VOICED_THRESHOLD, lag_c, voiced_c)
            return lag_c.astype(np.int64), voiced_c.astype(bool)
        ind_l = indep.tolist()
        ind_c = ncc[np.arange(n), indep].tolist()
        for i in range(n):
            li, ci = ind_l[i], ind_c[i]
            ok = True
            if prev >= 0 and gap <= _CONT_MAX_GAP:
                p = prev + _LAG8_MIN
                lo = max(int(p * (1.0 - _CONT_WINDOW)) - _LAG8_MIN, 0)
                hi = min(int(p * (1.0 + _CONT_WINDOW)) - _LAG8_MIN + 1, _N_LAG8)
                if not lo <= li < hi:
                    row = ncc[i, lo:hi]
                    j = int(np.argmax(row))
                    cn = float(row[j])
                    if cn >= ci - _CONT_MARGIN:
                        li, ci = lo + j, cn
                    elif ci < _JUMP_MIN:
                        # A weak far candidate breaks a track only when strong.
                        ok = False
            elif ci < _ONSET_MIN:
                ok = False
            lag8[i] = li
            if ok and ci >= _VOICED_THRESHOLD:
                voiced[i] = True
                prev, gap = li, 0
            else:
                gap += 1
        self._prev_lag8, self._gap = prev, min(gap, 1 << 30)
        return lag8, voiced


def compute_features(pcm: np.ndarray) -> np.ndarray:
    """Compute LPCNet-style features for a whole signal.

    Parameters
    ----------
    pcm : numpy.ndarray
        1-D 16 kHz mono audio on the int16 scale (int16, float32 or float64).

    Returns
    -------
    numpy.ndarray
        float32 array of shape (len(pcm) // 160, 20): 18 cepstral
        coefficients, pitch period (samples, [32, 267]) and pitch correlation
        ([0, 1]).  Frame ``i`` covers samples ``[160 i, 160 i + 160)``; see
        the module docstring for the exact definitions.
    """
    x = _validate_pcm(pcm)
    n = x.shape[0] // FRAME_SIZE
    return FeatureExtractor().process_block(x[:n * FRAME_SIZE])
