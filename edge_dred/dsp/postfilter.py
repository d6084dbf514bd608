"""The vocoder's postfilters: towards the features' spectral envelope, then their pitch.

Two stages, chained by :class:`VocoderPostfilter` (the vocoder's default):
:class:`EnvelopePostfilter` corrects the band energies, then
:class:`PitchPostfilter` reinforces the harmonics.  Both run outside the
vocoder's feedback loop (the network keeps seeing its own unfiltered output)
and add no delay.

Envelope
--------
The vocoder follows its conditioning only loosely: its output band energies
miss the features' 18 band energies by a few dB per band.  This stage measures the band energies of each 10 ms
frame it is given, compares them with the frame's features and filters the
frame with a short minimum-phase FIR that closes part of the gap
(``strength``: that share of it, in dB).  It runs outside the vocoder's
feedback loop, so the network still sees its own unfiltered output.

No look-ahead and no added delay: each frame is filtered with a cross-fade
between two filters, one from the analysis window the features use (centred
on the frame's start, ending at the frame's end) and one from a window over
the frame alone (its end).  A filter from the previous frame's analysis
instead (one frame late) would correct the wrong frame at every onset.

Strengths were chosen on training speech (``docs/measurements.md``).

Pitch
-----
See :class:`PitchPostfilter`: a causal comb at the features' pitch period,
gain proportional to their pitch correlation, energy kept.

Signals are pre-emphasised (as the features and the vocoder's own output are)
and on the float scale (int16 / 32768).

Implementation
--------------
Compiled: ``src/postfilter.c`` (float32, KISS FFT) behind ``_postfilter.pyx``,
one call into C per packet that loops over its frames; each stream's state,
FFT plans and scratch are one block allocated when the stream is made.  The
float64 numpy implementation of the same design is the test oracle
(:mod:`edge_dred.dsp.postfilter_reference`); the two agree to float32
rounding (``docs/concealment.md``, "Postfilter implementation").
"""
from __future__ import annotations

import numpy as np

from ..constants import FRAME_SIZE, NB_BANDS, NB_FEATURES, PITCH_MAX, PITCH_MIN, PREEMPHASIS
from . import _postfilter as _c
from .features import C0_OFFSET, band_energies_from_cepstrum, band_weights

__all__ = ["EnvelopePostfilter", "PitchPostfilter", "VocoderPostfilter", "PostfilterInputError",
           "analysis_windows", "deemphasis_int16"]

NFFT = 2 * FRAME_SIZE
#: Bounds of the de-emphasis memory carried across frames (the int16 range, float scale).
_MEM_LO, _MEM_HI = -1.0, 32767 / 32768


class PostfilterInputError(ValueError):
    """Frames or features of the wrong shape, or non-finite values."""


def analysis_windows() -> np.ndarray:
    """The envelope stage's two analysis windows, (2, 320) float64.

    Row 0: the features' sine window (centred on the frame's start, ending at
    its end); row 1: a rising half-sine over the frame alone, scaled to the
    same noise power.
    """
    sine = np.sin(np.pi * (np.arange(NFFT) + 0.5) / NFFT)
    end = np.zeros(NFFT)
    end[FRAME_SIZE:] = np.sin(0.5 * np.pi * (np.arange(FRAME_SIZE) + 0.5) / FRAME_SIZE)
    end *= np.sqrt(np.sum(sine ** 2) / np.sum(end ** 2))
    return np.stack([sine, end])


def minimum_phase_cepstra(interp: np.ndarray) -> np.ndarray:
    """Folded real cepstra (18, NFFT) of each band's interpolation shape (band log-gain -> bins).

    ``g @ minimum_phase_cepstra(interp)`` is the complex cepstrum of the
    minimum-phase filter whose log magnitude is ``g @ interp``.
    """
    c = np.fft.irfft(interp, NFFT, axis=-1)
    fold = np.zeros_like(c)
    fold[:, 0], fold[:, 1:NFFT // 2], fold[:, NFFT // 2] = c[:, 0], 2.0 * c[:, 1:NFFT // 2], c[:, NFFT // 2]
    return fold


def _set_tables() -> None:
    """Hand the compiled code the tables every stream shares (definitions stay in Python)."""
    if _c.FRAME != FRAME_SIZE or _c.BANDS != NB_BANDS:
        raise ImportError("edge_dred.dsp._postfilter was built for other frame or band sizes; rebuild it")
    w = band_weights()
    interp = w / w.sum(axis=0, keepdims=True)                                    # 18 band gains -> 161 bins
    # The minimum-phase filter's complex cepstrum is the folded real cepstrum of the interpolated
    # log magnitude, linear in the band log-gains: one (18, taps) table; the C code turns it
    # into the impulse response by the cepstral recursion.
    ceps = minimum_phase_cepstra(interp)[:, :FRAME_SIZE]
    zero = band_energies_from_cepstrum(np.zeros((1, NB_BANDS)), log10=True)
    dct = band_energies_from_cepstrum(np.eye(NB_BANDS), log10=True) - zero    # logs = c @ dct
    _c.set_tables(analysis_windows(), (np.arange(FRAME_SIZE) + 0.5) / FRAME_SIZE,
                  np.ascontiguousarray(ceps),
                  # |X|^2 of the float-scale signal -> mean band power on the int16 scale, as the features
                  np.ascontiguousarray(w / w.sum(axis=1, keepdims=True) * (32768.0 ** 2 / FRAME_SIZE)),
                  np.ascontiguousarray(dct), float(C0_OFFSET), float(PITCH_MIN), float(PITCH_MAX),
                  float(PREEMPHASIS))


_set_tables()


def _frames_features(frames: np.ndarray, features: np.ndarray, n_feat: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(frames, np.float32)
    f = np.ascontiguousarray(features, np.float32)
    if x.ndim != 2 or x.shape[1] != FRAME_SIZE:
        raise PostfilterInputError(f"frames must have shape (T, {FRAME_SIZE}), got {x.shape}")
    if f.ndim != 2 or f.shape[0] != x.shape[0] or f.shape[1] not in n_feat:
        raise PostfilterInputError(f"features must have shape ({x.shape[0]}, {NB_FEATURES}), got {f.shape}")
    return x, f


def _check(rc: int, what: str = "frames and features") -> None:
    if rc != 0:
        raise PostfilterInputError(f"{what} must be finite")


def _history(history: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(history).ravel(), np.float32)


def deemphasis_int16(frames: np.ndarray, mem: float) -> tuple[np.ndarray, float]:
    """Undo the pre-emphasis of whole frames and round to int16 PCM.

    Parameters
    ----------
    frames : numpy.ndarray
        (T, 160) pre-emphasised signal, float scale.
    mem : float
        The last output sample before them (float scale).

    Returns
    -------
    tuple of numpy.ndarray and float
        int16 PCM (T * 160,) and the memory for the next call (the last
        sample, clamped to the int16 range at every frame end).
    """
    e = np.ascontiguousarray(frames, np.float32)
    if e.ndim != 2 or e.shape[1] != FRAME_SIZE:
        raise PostfilterInputError(f"frames must have shape (T, {FRAME_SIZE}), got {e.shape}")
    out = np.empty(e.shape[0] * FRAME_SIZE, np.int16)
    rc, mem = _c.deemphasis_int16(e, float(mem), _MEM_LO, _MEM_HI, out)
    _check(rc, "frames and the de-emphasis memory")
    return out, mem


class EnvelopePostfilter:
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
    State: the last ``FRAME_SIZE + taps - 1`` input samples (float32), FFT
    plans and scratch, in one block made here.  Not thread-safe; one instance
    per stream.  ``process`` of a signal cut into any frame-aligned chunks
    equals one call on the whole signal, bit for bit.
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
        self._c = _c.Envelope(self.taps, self.strength, float(max_boost_db), float(max_cut_db))

    def reset(self) -> None:
        """Zero the history (as at the start of a stream)."""
        self._c.reset()

    def prime(self, history: np.ndarray) -> None:
        """Set the history from real signal (pre-emphasised, float scale), newest last."""
        _check(self._c.prime(_history(history)), "history")

    def prime_pcm(self, history: np.ndarray) -> None:
        """Set the history from real PCM (int16 scale, newest last), for :meth:`process_pcm`."""
        _check(self._c.prime_pcm(_history(history)), "history")

    def process_pcm(self, pcm: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Filter plain PCM (int16 scale, whole 10 ms frames) towards ``features``.

        Pre-emphasis, :meth:`process` and de-emphasis, each continuing from
        the previous call (or :meth:`prime_pcm`).  Returns int16.
        """
        x = _history(pcm)
        if x.shape[0] % FRAME_SIZE:
            raise PostfilterInputError(f"pcm length {x.shape[0]} is not a multiple of {FRAME_SIZE}")
        _, f = _frames_features(x.reshape(-1, FRAME_SIZE), features, (NB_BANDS, NB_FEATURES))
        out = np.empty(x.shape[0], np.int16)
        _check(self._c.process_pcm(x, f, out), "pcm and features")
        return out

    @property
    def state_bytes(self) -> int:
        """Per-stream memory in bytes (history, FFT plans, scratch)."""
        return int(self._c.nbytes)

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
            (T, 160) float32, filtered.
        """
        x, f = _frames_features(frames, features, (NB_BANDS, NB_FEATURES))
        out = np.empty_like(x)
        _check(self._c.process(x, f, out))
        return out


class PitchPostfilter:
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
    equals one call on the whole signal, bit for bit.
    """

    def __init__(self, strength: float = 0.5) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.strength = float(strength)
        self._c = _c.Pitch(self.strength)

    def reset(self) -> None:
        """Zero the history (as at the start of a stream)."""
        self._c.reset()

    def prime(self, history: np.ndarray) -> None:
        """Set the history from real signal (pre-emphasised, float scale), newest last.

        The comb then starts from gain 0: the real signal was not filtered.
        """
        _check(self._c.prime(_history(history)), "history")

    @property
    def state_bytes(self) -> int:
        """Per-stream memory in bytes."""
        return int(self._c.nbytes)

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
            (T, 160) float32, filtered.
        """
        x, f = _frames_features(frames, features, (NB_FEATURES,))
        out = np.empty_like(x)
        _check(self._c.process(x, f, out))
        return out


class VocoderPostfilter:
    """The vocoder's postfilter chain: :class:`EnvelopePostfilter`, then :class:`PitchPostfilter`.

    Same streaming interface as its stages (``reset``, ``prime``,
    ``process``, ``state_bytes``).  The comb goes after the envelope
    correction, so the envelope it reinforces is already corrected.  One
    call into C runs both stages over all the frames given.

    Parameters
    ----------
    envelope : float
        :class:`EnvelopePostfilter` strength (0 turns the stage off).
    pitch : float
        :class:`PitchPostfilter` strength (0 turns the stage off).
    """

    def __init__(self, envelope: float = 0.7, pitch: float = 0.5) -> None:
        if not (0.0 <= envelope <= 1.0 and 0.0 <= pitch <= 1.0):
            raise ValueError(f"strengths must be in [0, 1], got envelope={envelope}, pitch={pitch}")
        self.envelope = EnvelopePostfilter(strength=envelope) if envelope > 0 else None
        self.pitch = PitchPostfilter(strength=pitch) if pitch > 0 else None
        self._stages = [s for s in (self.envelope, self.pitch) if s is not None]

    def reset(self) -> None:
        """Zero every stage's history."""
        for s in self._stages:
            s.reset()

    def prime(self, history: np.ndarray) -> None:
        """Set every stage's history from real signal (pre-emphasised, float scale)."""
        h = _history(history)
        for s in self._stages:
            s.prime(h)

    @property
    def state_bytes(self) -> int:
        """Per-stream memory in bytes."""
        return int(sum(s.state_bytes for s in self._stages))

    def process(self, frames: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Filter ``T`` frames (T, 160) with their ``T`` feature vectors (T, 20); float32 out."""
        x, f = _frames_features(frames, features, (NB_FEATURES,))
        out = np.empty_like(x)
        _check(_c.chain(self.envelope._c if self.envelope else None, self.pitch._c if self.pitch else None,
                        x, f, out))
        return out
