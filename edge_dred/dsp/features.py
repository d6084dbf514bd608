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
The analysis runs compiled (``edge_dred/dsp/src/feature_analysis.c`` through
``edge_dred.dsp._features``), one C call per block of frames, with the tables and
thresholds defined below.  The pitch path sums in float64 in a fixed order, so
any chunking of a stream gives the same features as one batch call, bit for bit;
the spectrum uses a float32 FFT (KISS FFT).  A numpy reference of the same
definitions lives in ``tests/features_reference.py``.

1. ``y`` is low-passed (31-tap windowed sinc, cutoff 3 kHz, 15 samples delay)
   to ``u``; ``u`` at even-offset samples gives an 8 kHz signal ``d``.
2. Coarse search at 8 kHz: for the 160-sample (20 ms) segment of ``d`` ending
   at the frame end, the normalised cross-correlation
   ``<s, s_L> / sqrt((|s|^2 + 160)(|s_L|^2 + 160))`` for every lag
   L = 15..135 (direct float64 sums, each in sample order; the +160 terms,
   one LSB^2 per sample, push LSB-level signals toward 0).
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
from . import _features as _ck

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
_FINE_HALF = 3            # +- lags searched at 16 kHz
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
    """Contiguous int16, or float64 checked to be finite and on the int16 scale."""
    if not isinstance(pcm, np.ndarray):
        raise FeatureInputError(f"{name} must be a numpy array, got {type(pcm).__name__}")
    if pcm.ndim != 1:
        raise FeatureInputError(f"{name} must be 1-D mono audio, got shape {pcm.shape}")
    if pcm.dtype not in (np.int16, np.float32, np.float64):
        raise FeatureInputError(f"{name} must be int16, float32 or float64 (int16 scale), got {pcm.dtype}")
    if pcm.dtype == np.int16:
        return np.ascontiguousarray(pcm)
    x = np.ascontiguousarray(pcm, dtype=np.float64)
    i = _ck.bad_sample(x, _INPUT_LIMIT)
    if i >= 0:
        if not np.isfinite(x[i]):
            raise FeatureInputError(f"{name} contains NaN or infinite samples")
        raise FeatureInputError(f"{name} exceeds the int16 scale (|x| > {_INPUT_LIMIT:g})")
    return x


# The compiled analysis has fixed sizes (feature_analysis.h); they must be these.
if (_ck.FRAME, _ck.NB_FEATURES, _ck.LP_TAPS, _ck.BUF16, _ck.SEG8, _ck.LAG8_MIN, _ck.LAG8_MAX, _ck.FINE_HALF,
        _ck.PITCH_MIN, _ck.PITCH_MAX) != (FRAME_SIZE, NB_FEATURES, _LP_TAPS, _BUF16, _SEG8, _LAG8_MIN, _LAG8_MAX,
                                         _FINE_HALF, PITCH_MIN, PITCH_MAX):  # pragma: no cover - build mismatch
    raise ImportError("edge_dred.dsp._features was built for other sizes than edge_dred.dsp.features; rebuild")

_PARAMS = {
    "preemphasis": PREEMPHASIS, "win_power": _WIN_POWER, "energy_floor": _ENERGY_FLOOR,
    "max_range": _MAX_RANGE, "follow_decay": _FOLLOW_DECAY, "c0_offset": C0_OFFSET, "reg": _REG,
    "double_margin": _DOUBLE_MARGIN, "octave_ratio": _OCTAVE_RATIO, "cont_window": _CONT_WINDOW,
    "cont_margin": _CONT_MARGIN, "jump_min": _JUMP_MIN, "onset_min": _ONSET_MIN,
    "voiced_threshold": _VOICED_THRESHOLD, "default_period": _DEFAULT_PERIOD,
    "octave_kmax": _OCTAVE_KMAX, "cont_max_gap": _CONT_MAX_GAP,
}
_ck.set_params(_WINDOW, np.ascontiguousarray(_BAND_WN_T.T), _DCT, _LOWPASS, _PARAMS)


class FeatureExtractor(_ck.Analyzer):
    """Streaming feature extractor; gives the same results as :func:`compute_features`.

    ``process(frame)`` analyses one 160-sample frame (returns float32 (20,)),
    ``process_block(pcm)`` a block of whole frames in one C call (float32
    (n, 20)), ``skip_block(pcm)`` keeps whole frames as history without
    analysing them, ``reset()`` forgets all history, ``state_bytes`` is the
    memory per stream.  Contiguous int16 input goes straight to C; other input is checked
    (:class:`FeatureInputError`) and converted first.  The state (in C) is the
    last input sample, 160 pre-emphasised samples (first half of the next
    window), 30 samples of low-pass filter history, 440 samples of low-passed
    history for the pitch search, the pitch tracker state and one FFT plan;
    analysing a frame allocates only its output array.
    """

    def skip_block(self, pcm: np.ndarray) -> None:
        """Take whole frames whose features are not needed: they only become history.

        The frames after them are analysed as if these had been (the same
        cepstra; the pitch search sees the same signal), except that the pitch
        tracker's continuity state stays where the last analysed frame left
        it.  Costs the low-pass filter of the pitch buffer, about a tenth of
        an analysis.

        Raises
        ------
        FeatureInputError
            Not 1-D int16-scale audio of whole 160-sample frames.
        """
        x = _validate_pcm(pcm)
        if x.shape[0] % FRAME_SIZE:
            raise FeatureInputError(f"block length must be a multiple of {FRAME_SIZE}, got {x.shape[0]}")
        self._skip_f64(np.asarray(x, np.float64))   # exact for int16; a skip is rare, the copy cheap

    def _checked(self, pcm: np.ndarray, name: str, one: bool) -> np.ndarray:
        """The path for anything but contiguous int16 of whole frames: validate, convert, analyse."""
        x = _validate_pcm(pcm, name)
        if one and x.shape[0] != FRAME_SIZE:
            raise FeatureInputError(f"frame must have {FRAME_SIZE} samples, got {x.shape[0]}")
        if x.shape[0] % FRAME_SIZE:
            raise FeatureInputError(f"block length must be a multiple of {FRAME_SIZE}, got {x.shape[0]}")
        return self._run_i16(x) if x.dtype == np.int16 else self._run_f64(x)


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
