"""The vocoder's postfilters in float64 numpy: the test oracle of :mod:`edge_dred.dsp.postfilter`.

Same design, parameters and streaming interface as the compiled classes
(see that module's docstring); the compiled ones run in float32 and agree with
these to rounding (``tests/test_postfilter.py`` states the tolerance).  Not for
the real-time path: the envelope stage costs a few numpy calls per frame.
"""
from __future__ import annotations

import numpy as np

from ..constants import FRAME_SIZE, NB_BANDS, PITCH_MAX, PITCH_MIN, PREEMPHASIS
from .features import band_energies_from_cepstrum, band_weights, deemphasis
from .postfilter import PostfilterInputError, analysis_windows, minimum_phase_cepstra

__all__ = ["EnvelopePostfilterReference", "PitchPostfilterReference", "VocoderPostfilterReference"]

NFFT = 2 * FRAME_SIZE


#: FFT size of the reference's minimum-phase step: long enough that the exponential's time
#: aliasing is below float64 rounding for gains within the bounds (2e-12 relative at 1024
#: against 8192), so the reference is the exact filter (the compiled code gets the same
#: first taps by the cepstral recursion instead).
EXACT_NFFT = 1024


def _minimum_phase(ceps: np.ndarray, taps: int) -> np.ndarray:
    """First ``taps`` samples of the minimum-phase filters with complex cepstra ``ceps`` (rows)."""
    return np.fft.irfft(np.exp(np.fft.rfft(ceps, EXACT_NFFT, axis=-1)), EXACT_NFFT, axis=-1)[:, :taps]


def _check_frames(frames: np.ndarray, features: np.ndarray, n_feat: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(frames, np.float64)
    f = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[1] != FRAME_SIZE:
        raise PostfilterInputError(f"frames must have shape (T, {FRAME_SIZE}), got {x.shape}")
    if f.ndim != 2 or f.shape[0] != x.shape[0] or f.shape[1] not in n_feat:
        raise PostfilterInputError(f"features must have shape ({x.shape[0]}, 20), got {f.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(f))):
        raise PostfilterInputError("frames and features must be finite")
    return x, f


def _last_samples(history: np.ndarray, n: int) -> np.ndarray:
    """The newest ``n`` (or fewer) samples of a finite 1-D history, float64."""
    h = np.asarray(history, np.float64).ravel()
    if not np.all(np.isfinite(h)):
        raise PostfilterInputError("history must be finite")
    return h[max(h.shape[0] - n, 0):]


class EnvelopePostfilterReference:
    """Streaming envelope postfilter, one 10 ms frame at a time.

    Parameters
    ----------
    strength : float
        Share of the band-energy gap (in dB) that is closed, in [0, 1].
    taps : int
        Length of the minimum-phase FIRs (16..160).
    max_boost_db, max_cut_db : float
        Bounds on the per-band gain, so a wild output or a wild feature frame
        cannot be amplified into a burst.

    Notes
    -----
    State: the last ``FRAME_SIZE + taps - 1`` input samples (float64).  Not
    thread-safe; one instance per stream.  ``process`` of a signal cut into
    any frame-aligned chunks equals one call on the whole signal.
    """

    def __init__(self, strength: float = 0.5, taps: int = 64, max_boost_db: float = 6.0,
                 max_cut_db: float = 12.0) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if not 16 <= taps <= FRAME_SIZE:
            raise ValueError(f"taps must be in [16, {FRAME_SIZE}], got {taps}")
        if not (0.0 <= max_boost_db <= 24.0 and 0.0 <= max_cut_db <= 40.0):
            raise ValueError("max_boost_db must be in [0, 24] and max_cut_db in [0, 40]")
        self.strength = float(strength)
        self.taps = int(taps)
        self._hi = max_boost_db * np.log(10.0) / 20.0   # natural-log amplitude bounds
        self._lo = -max_cut_db * np.log(10.0) / 20.0
        w = band_weights()
        self._interp = w / w.sum(axis=0, keepdims=True)   # 18 band gains -> 161 bins
        self._windows = analysis_windows()
        self._ramp = (np.arange(FRAME_SIZE) + 0.5) / FRAME_SIZE
        self._fold = minimum_phase_cepstra(self._interp)
        # |X|^2 of the float-scale signal -> mean band power on the int16 scale, as the features
        self._w_scaled = (w / w.sum(axis=1, keepdims=True)).T * (32768.0 ** 2 / FRAME_SIZE)
        self._half_strength = 0.5 * self.strength
        self.reset()

    def reset(self) -> None:
        """Zero the history (as at the start of a stream)."""
        self._hist = np.zeros(FRAME_SIZE + self.taps - 1)
        self._x_last = self._y_last = 0.0   # process_pcm's pre-/de-emphasis memories

    def prime(self, history: np.ndarray) -> None:
        """Set the history from real signal (pre-emphasised, float scale), newest last."""
        h = _last_samples(history, self._hist.shape[0])
        self.reset()
        self._hist[self._hist.shape[0] - h.shape[0]:] = h

    def prime_pcm(self, history: np.ndarray) -> None:
        """Set the history from real PCM (int16 scale, newest last), for :meth:`process_pcm`."""
        h = _last_samples(history, FRAME_SIZE + self.taps) / 32768.0
        self.prime(h[1:] - PREEMPHASIS * h[:-1])
        self._x_last = self._y_last = float(h[-1]) if h.size else 0.0

    def process_pcm(self, pcm: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Filter plain PCM (int16 scale, whole 10 ms frames) towards ``features``.

        Pre-emphasis, :meth:`process` and de-emphasis, each continuing from
        the previous call (or :meth:`prime_pcm`).  Returns int16.
        """
        x = np.asarray(pcm, np.float64).ravel() / 32768.0
        if x.shape[0] % FRAME_SIZE:
            raise PostfilterInputError(f"pcm length {x.shape[0]} is not a multiple of {FRAME_SIZE}")
        pe = x - PREEMPHASIS * np.concatenate([[self._x_last], x[:-1]])
        e = self.process(pe.reshape(-1, FRAME_SIZE), features)
        y = np.empty_like(e)
        m = self._y_last
        for t in range(e.shape[0]):
            y[t] = deemphasis(e[t], m)
            m = float(y[t, -1])
        if x.shape[0]:
            self._x_last, self._y_last = float(x[-1]), m
        return np.clip(np.round(y.ravel() * 32768.0), -32768, 32767).astype(np.int16)

    @property
    def state_bytes(self) -> int:
        """Per-stream memory in bytes."""
        return int(self._hist.nbytes)

    def process(self, frames: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Filter ``T`` frames towards the envelopes of their ``T`` feature vectors.

        Parameters
        ----------
        frames : numpy.ndarray
            (T, 160) pre-emphasised output, float scale.
        features : numpy.ndarray
            (T, 20) or (T, 18): the features (or cepstra) the frames were made from.

        Returns
        -------
        numpy.ndarray
            (T, 160) float64, filtered.
        """
        return self._filter(*_check_frames(frames, features, (NB_BANDS, 20)))

    def _filter(self, x: np.ndarray, f: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], FRAME_SIZE))
        n_hist = self._hist.shape[0]
        for t in range(x.shape[0]):
            buf = np.concatenate([self._hist, x[t]])
            power = np.abs(np.fft.rfft(buf[-NFFT:] * self._windows, axis=-1)) ** 2   # (2, 161), float scale
            bands = (power @ self._w_scaled) + 1.0                                     # (2, 18), int16^2 + 1
            target = band_energies_from_cepstrum(f[t, :NB_BANDS]) + 1.0
            log_gain = np.clip(self._half_strength * np.log(target / bands), self._lo, self._hi)
            h = _minimum_phase(log_gain @ self._fold, self.taps)                         # (2, taps)
            src = buf[FRAME_SIZE:]                                                           # taps - 1 + 160 samples
            a = np.convolve(src, h[0], "valid")
            out[t] = a + self._ramp * (np.convolve(src, h[1], "valid") - a)
            self._hist = buf[-n_hist:]
        return out


class PitchPostfilterReference:
    """Streaming pitch (comb) postfilter, one 10 ms frame at a time.

    The vocoder's voiced output is less periodic than the speech its features
    describe (noise between the harmonics).  Each frame is mixed with itself
    one pitch period earlier, ``y[n] = x[n] + g * (h * x)[n - T]``, where
    ``T`` is the frame's (fractional) pitch period from the features, ``h`` a
    3-tap low-pass ``[1/4, 1/2, 1/4]`` (the comb weakens towards high
    frequencies, whose harmonics are less regular) and ``g = strength *
    pitch correlation``.  Then the frame is scaled back to its input energy,
    so the envelope stage before it keeps its job.  Both the gain and the
    energy scale move linearly across each frame from the previous frame's
    value: no steps at frame edges.  No look-ahead, no added delay (the
    filter is a causal FIR on its own input).

    Parameters
    ----------
    strength : float
        Comb gain at pitch correlation 1, in [0, 1].

    Notes
    -----
    State: the last ``PITCH_MAX + 3`` input samples, the previous gain and
    energy scale.  ``process`` of a signal cut into any frame-aligned chunks
    equals one call on the whole signal.
    """

    def __init__(self, strength: float = 0.5) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.strength = float(strength)
        self._n_hist = int(PITCH_MAX) + 3
        self._ramp = (np.arange(FRAME_SIZE) + 0.5) / FRAME_SIZE
        self.reset()

    def reset(self) -> None:
        """Zero the history (as at the start of a stream)."""
        self._hist = np.zeros(self._n_hist)
        self._g = 0.0
        self._scale = 1.0

    def prime(self, history: np.ndarray) -> None:
        """Set the history from real signal (pre-emphasised, float scale), newest last.

        The comb then starts from gain 0: the real signal was not filtered.
        """
        h = _last_samples(history, self._n_hist)
        self.reset()
        self._hist[self._n_hist - h.shape[0]:] = h

    @property
    def state_bytes(self) -> int:
        """Per-stream memory in bytes."""
        return int(self._hist.nbytes + 16)

    def process(self, frames: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Filter ``T`` frames with the pitch of their ``T`` feature vectors.

        Parameters
        ----------
        frames : numpy.ndarray
            (T, 160) pre-emphasised output, float scale.
        features : numpy.ndarray
            (T, 20): the features the frames were made from (pitch period,
            pitch correlation).

        Returns
        -------
        numpy.ndarray
            (T, 160) float64, filtered.
        """
        return self._filter(*_check_frames(frames, features, (20,)))

    def _filter(self, x: np.ndarray, f: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n == 0:
            return np.empty((0, FRAME_SIZE))
        # All frames at once (the comb reads its input only, never its output): a handful of
        # numpy calls per call rather than per frame.  Row-wise sums, no BLAS, so any
        # frame-aligned chunking gives the same bits.
        h = self._n_hist
        buf = np.concatenate([self._hist, x.ravel()])
        period = np.clip(f[:, 18], PITCH_MIN, PITCH_MAX)
        lag = period.astype(np.int64)
        frac = (period - lag)[:, None]
        # x delayed by lag + frac (linear interpolation) at frame samples -1..160, then the low-pass
        idx = (h + FRAME_SIZE * np.arange(n) - lag - 1)[:, None] + np.arange(FRAME_SIZE + 2)
        s = (1.0 - frac) * buf[idx] + frac * buf[idx - 1]
        d = 0.25 * s[:, :-2] + 0.5 * s[:, 1:-1] + 0.25 * s[:, 2:]
        g = self.strength * np.clip(f[:, 19], 0.0, 1.0)
        g0 = np.concatenate([[self._g], g[:-1]])
        y = x + (g0[:, None] + (g - g0)[:, None] * self._ramp) * d
        scale = np.sqrt((np.sum(x * x, axis=1) + 1e-12) / (np.sum(y * y, axis=1) + 1e-12))
        s0 = np.concatenate([[self._scale], scale[:-1]])
        out = y * (s0[:, None] + (scale - s0)[:, None] * self._ramp)
        self._g, self._scale = float(g[-1]), float(scale[-1])
        self._hist = buf[-h:]
        return out


class VocoderPostfilterReference:
    """The vocoder's postfilter chain: :class:`EnvelopePostfilterReference`, then :class:`PitchPostfilterReference`.

    Same streaming interface as its stages (``reset``, ``prime``,
    ``process``, ``state_bytes``).  The comb goes after the envelope
    correction, so the envelope it reinforces is already corrected.

    Parameters
    ----------
    envelope : float
        :class:`EnvelopePostfilterReference` strength (0 turns the stage off).
    pitch : float
        :class:`PitchPostfilterReference` strength (0 turns the stage off).
    """

    def __init__(self, envelope: float = 0.7, pitch: float = 0.5) -> None:
        if not (0.0 <= envelope <= 1.0 and 0.0 <= pitch <= 1.0):
            raise ValueError(f"strengths must be in [0, 1], got envelope={envelope}, pitch={pitch}")
        self.envelope = EnvelopePostfilterReference(strength=envelope) if envelope > 0 else None
        self.pitch = PitchPostfilterReference(strength=pitch) if pitch > 0 else None
        self._stages = [s for s in (self.envelope, self.pitch) if s is not None]

    def reset(self) -> None:
        """Zero every stage's history."""
        for s in self._stages:
            s.reset()

    def prime(self, history: np.ndarray) -> None:
        """Set every stage's history from real signal (pre-emphasised, float scale)."""
        for s in self._stages:
            s.prime(history)

    @property
    def state_bytes(self) -> int:
        """Per-stream memory in bytes."""
        return int(sum(s.state_bytes for s in self._stages))

    def process(self, frames: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Filter ``T`` frames (T, 160) with their ``T`` feature vectors (T, 20); float64 out."""
        x, f = _check_frames(frames, features, (20,))
        for s in self._stages:   # checked once for the chain
            x = s._filter(x, f)
        return x
