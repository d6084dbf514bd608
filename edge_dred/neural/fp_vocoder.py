"""Frame-parallel source-filter vocoder: the float64 numpy reference of its streaming inference.

The model is trained by ``training/train_fp_vocoder.py`` (``training/fp_vocoder_model.py``
has the design notes and the batched torch form); this module holds the fixed
DSP definitions both share and runs the same maths one 10 ms frame at a time,
so a stream cut into any chunks equals one call, and a synthesis can continue
from real audio (:meth:`FPVocoderStream.prime`).

Per frame ``i`` (features ``<= i`` only):

* the frame network (two causal convs over frames, a GRU, a dense layer) gives
  two knots, at ``160 i`` (the centre of the frame's analysis window) and
  ``160 i + 80``: log-magnitude corrections of
  a harmonic and a noise filter on :data:`NB_CORR` mel triangles, and a period
  correction;
* the harmonic excitation is a band-limited pulse train whose phase (cycles)
  accumulates ``f0`` interpolated per sample between knots; the noise
  excitation is white;
* each knot's filters are minimum phase (real cepstrum of the log magnitude);
  an output sample between two knots cross-fades the excitation filtered by
  either (exact filtering over the full excitation history), so filters change
  at every sample, not per block.  Samples ``160 i + 80 .. 160 i + 160`` lie
  between frame ``i``'s last knot and frame ``i + 1``'s first: they are output
  with the next frame (5 ms algorithmic delay);
* the noise filter of each knot also divides out the white noise's own
  realised spectrum over a 20 ms window centred on the knot, on the
  :data:`NB_CORR` triangles (:func:`noise_normalisation`), so the filtered
  noise has the band energies its filter asks for rather than a random
  spread around them.  The noise is the vocoder's own, so the window may
  reach :data:`NOISE_AHEAD` samples past the output without any delay: the
  stream draws it that far ahead.

State per stream: conv history (2 frames), GRU state, the last knot's filters
and period, the phase, the pulse kernel's tail, 432 samples of both
excitations and the noise drawn ahead.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..constants import FRAME_SIZE, NB_BANDS, NB_FEATURES, PITCH_CORR, PITCH_MAX, PITCH_MIN, PITCH_PERIOD, SAMPLE_RATE
from ..dsp.features import C0_OFFSET, band_weights
from .layers import gru_step

__all__ = [
    "KNOT_HOP", "NFFT", "NB_CORR", "IR_LEN", "PULSE_TAPS", "PULSE_DELAY", "PRIME_FRAMES",
    "envelope_basis", "correction_basis", "dct_matrix", "ir_taper", "knot_window", "pulse_kernel",
    "min_phase", "noise_normalisation", "NOISE_WIN", "NOISE_AHEAD", "FPVocoderStream", "random_params",
]

KNOT_HOP = 80                       # filters and pitch are defined every 5 ms
KNOTS_PER_FRAME = FRAME_SIZE // KNOT_HOP
NFFT = 512
NBIN = NFFT // 2 + 1
SEG_OUT = 2 * KNOT_HOP              # exact output samples per overlap-save segment
IR_LEN = NFFT - SEG_OUT             # 352 taps (22 ms)
IR_TAPER = 64
EXC_HIST = NFFT - KNOT_HOP          # excitation samples a frame's segments reach back
PULSE_TAPS = 32
PULSE_DELAY = PULSE_TAPS // 2       # 1 ms: the pulse kernel's centre
PULSE_CUTOFF_HZ = 7500.0
PULSE_BETA = 6.0
NB_CORR = 32
DLOGT_MAX = 0.15
CORR_MAX = 4.0
VOICING_FLOOR = 0.02
INT16_SCALE = 32768.0
PRIME_FRAMES = 4                    # frames of real audio a continuation re-synthesises to align its phase
PHASE_CANDIDATES = 32
NOISE_WIN = 4 * KNOT_HOP            # 20 ms window, centred on a knot, measuring the noise's realised spectrum
NOISE_AHEAD = NOISE_WIN // 2        # noise samples drawn past the last knot
NOISE_FLOOR = 1e-3                  # realised / expected band power below this counts as this (all-zero noise)


def envelope_basis() -> np.ndarray:
    """(18, 257): log band energy -> log power per bin of the 512-point grid (features' triangles, interpolated)."""
    w161 = band_weights()
    f161 = np.arange(w161.shape[1]) * (SAMPLE_RATE / 320)
    f257 = np.arange(NBIN) * (SAMPLE_RATE / NFFT)
    return np.stack([np.interp(f257, f161, w161[b]) for b in range(NB_BANDS)])


def correction_basis(n: int = NB_CORR) -> np.ndarray:
    """(n, 257): mel-spaced triangles whose columns sum to 1."""
    def mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    centres = 700.0 * (10 ** (np.linspace(0.0, float(mel(SAMPLE_RATE / 2)), n) / 2595.0) - 1.0)
    f = np.arange(NBIN) * (SAMPLE_RATE / NFFT)
    w = np.zeros((n, NBIN))
    for b in range(n):
        if b > 0:
            lo, mid = centres[b - 1], centres[b]
            m = (f >= lo) & (f <= mid)
            w[b, m] = (f[m] - lo) / (mid - lo)
        if b < n - 1:
            mid, hi = centres[b], centres[b + 1]
            m = (f >= mid) & (f < hi)
            w[b, m] = (hi - f[m]) / (hi - mid)
        else:
            w[b, f >= centres[b]] = 1.0
    return w / w.sum(0, keepdims=True)


def dct_matrix() -> np.ndarray:
    """Orthonormal DCT-II (18, 18) of :mod:`edge_dred.dsp.features`: log10 band energies = cepstrum @ D."""
    n = np.arange(NB_BANDS)
    d = np.cos(np.pi * (n[None, :] + 0.5) * n[:, None] / NB_BANDS) * np.sqrt(2.0 / NB_BANDS)
    d[0] /= np.sqrt(2.0)
    return d


def ir_taper() -> np.ndarray:
    """(512,) window applied to a minimum-phase impulse response: IR_LEN taps, raised-cosine tail."""
    t = np.ones(IR_LEN)
    t[-IR_TAPER:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(IR_TAPER) + 1) / IR_TAPER)
    return np.concatenate([t, np.zeros(NFFT - IR_LEN)])


def knot_window() -> np.ndarray:
    """(160,) triangle: weight of a knot's filtering at offsets -80..79 around it."""
    k = np.arange(SEG_OUT)
    return 1.0 - np.abs(k - KNOT_HOP) / KNOT_HOP


def pulse_kernel(frac: np.ndarray) -> np.ndarray:
    """(P, 32) causal band-limited pulse taps for pulses crossing at ``n - 1 + frac`` (tap d -> sample n + d)."""
    s = np.arange(PULSE_TAPS)[None, :] + 1.0 - np.asarray(frac, np.float64)[:, None] - PULSE_DELAY
    fc = PULSE_CUTOFF_HZ / SAMPLE_RATE
    r = np.clip(s / PULSE_DELAY, -1.0, 1.0)
    return 2 * fc * np.sinc(2 * fc * s) * np.i0(PULSE_BETA * np.sqrt(np.maximum(1.0 - r * r, 1e-6))) / np.i0(PULSE_BETA)


def noise_window() -> np.ndarray:
    """(NOISE_WIN,) sine-squared window over ``[p - NOISE_AHEAD, p + NOISE_AHEAD)`` for a knot at ``p``."""
    return np.sin(np.pi * (np.arange(NOISE_WIN) + 0.5) / NOISE_WIN) ** 2


_FOLD = np.concatenate([[1.0], np.full(NFFT // 2 - 1, 2.0), [1.0], np.zeros(NFFT // 2 - 1)])
_TAPER = ir_taper()
_TRI = knot_window()


def min_phase(logmag: np.ndarray) -> np.ndarray:
    """ln|H| (..., 257) -> spectrum (..., 257) of the tapered minimum-phase impulse response."""
    cep = np.fft.irfft(logmag, NFFT)
    ir = np.fft.irfft(np.exp(np.fft.rfft(cep * _FOLD)), NFFT) * _TAPER
    return np.fft.rfft(ir)


_NOISE_WIN = noise_window()
_BANDS = correction_basis()
_BAND_AVG = _BANDS / _BANDS.sum(1, keepdims=True)


def noise_normalisation(segments: np.ndarray) -> np.ndarray:
    """ln-magnitude (..., 257) that divides out the realised spectrum of white noise segments.

    ``segments`` (..., NOISE_WIN): the unit-variance noise excitation around knots.  Their
    windowed power on each of the :data:`NB_CORR` triangles, relative to its expectation,
    is spread back over the bins with the triangles (as the network's corrections are).
    """
    p = np.abs(np.fft.rfft(segments * _NOISE_WIN, NFFT)) ** 2
    ratio = (p @ _BAND_AVG.T) / float(np.sum(_NOISE_WIN**2))
    return -0.5 * np.log(np.maximum(ratio, NOISE_FLOOR)) @ _BANDS


def random_params(conv: int = 128, gru: int = 128, seed: int = 0, out_scale: float = 0.1) -> dict[str, np.ndarray]:
    """Randomly initialised parameters with the trained model's names and shapes (tests, benchmarks)."""
    rng = np.random.default_rng(seed)

    def u(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        k = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-k, k, shape)

    n_out = KNOTS_PER_FRAME * (2 * NB_CORR + 1)
    return {
        "feat_mean": np.zeros(NB_FEATURES), "feat_std": np.ones(NB_FEATURES),
        "conv1.weight": u((conv, NB_FEATURES, 3), 3 * NB_FEATURES), "conv1.bias": u((conv,), 3 * NB_FEATURES),
        "conv2.weight": u((conv, conv, 3), 3 * conv), "conv2.bias": u((conv,), 3 * conv),
        "gru.weight_ih_l0": u((3 * gru, conv), gru), "gru.weight_hh_l0": u((3 * gru, gru), gru),
        "gru.bias_ih_l0": u((3 * gru,), gru), "gru.bias_hh_l0": u((3 * gru,), gru),
        "out.weight": out_scale * u((n_out, gru + conv), gru + conv), "out.bias": np.zeros(n_out),
    }


class FPVocoderStream:
    """One stream of the fp vocoder in float64 numpy.

    Parameters
    ----------
    params : mapping
        The torch ``state_dict`` of ``training/fp_vocoder_model.FPVocoder`` as
        numpy arrays (``conv1.weight`` (C, 20, 3), ``gru.weight_ih_l0``, ...).
    seed : int
        Seed of the noise excitation.
    """

    def __init__(self, params: Mapping[str, np.ndarray], seed: int = 0) -> None:
        p = {k: np.asarray(v, np.float64) for k, v in params.items()}
        self.feat_mean, self.feat_std = p["feat_mean"], p["feat_std"]
        self.w1, self.b1 = p["conv1.weight"], p["conv1.bias"]
        self.w2, self.b2 = p["conv2.weight"], p["conv2.bias"]
        self.gru = (p["gru.weight_ih_l0"], p["gru.weight_hh_l0"], p["gru.bias_ih_l0"], p["gru.bias_hh_l0"])
        self.wo, self.bo = p["out.weight"], p["out.bias"]
        if self.wo.shape[0] != KNOTS_PER_FRAME * (2 * NB_CORR + 1):
            raise ValueError(f"out.weight has {self.wo.shape[0]} rows, expected {KNOTS_PER_FRAME * (2 * NB_CORR + 1)}")
        self.env_basis = envelope_basis()
        self.corr_basis = correction_basis()
        self.dct = dct_matrix()
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Silence before the stream: zero history, phase 0."""
        c, g = self.w1.shape[0], self.gru[1].shape[1]
        self.h1 = np.zeros((2, NB_FEATURES))
        self.h2 = np.zeros((2, c))
        self.hg = np.zeros(g)
        self.knot: tuple[np.ndarray, np.ndarray, float] | None = None  # (H_h, H_n, f0) of the last knot
        self.cycles = 0.0
        self.pulse_tail = np.zeros(PULSE_TAPS)
        self.exc_h = np.zeros(EXC_HIST)
        self.exc_n = np.zeros(EXC_HIST)
        self.rng = np.random.default_rng(self.seed)
        # noise from the first sample the next frame outputs on; the 80 samples before the stream are silent
        self.noise_q = np.zeros(KNOT_HOP)

    def _noise(self, n: int) -> np.ndarray:
        """The next ``n`` queued noise samples (not consumed), drawing from the RNG as needed."""
        if len(self.noise_q) < n:
            self.noise_q = np.concatenate([self.noise_q, self.rng.standard_normal(n - len(self.noise_q))])
        return self.noise_q[:n]

    # -- per frame -------------------------------------------------------------
    def _net(self, feat: np.ndarray) -> np.ndarray:
        x = (feat - self.feat_mean) / self.feat_std
        x1 = np.vstack([self.h1, x])
        y1 = np.tanh(np.einsum("cik,ki->c", self.w1, x1) + self.b1)
        x2 = np.vstack([self.h2, y1])
        y2 = np.tanh(np.einsum("cik,ki->c", self.w2, x2) + self.b2)
        self.h1, self.h2 = x1[1:], x2[1:]
        self.hg = gru_step(self.gru, y2, self.hg)
        return np.concatenate([self.hg, y2]) @ self.wo.T + self.bo

    def _knots(self, feat: np.ndarray, raw: np.ndarray, noise_seg: np.ndarray | None = None
               ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """The frame's two knots (harmonic filter, noise filter, f0); ``noise_seg`` (2, NOISE_WIN) is the
        noise around each knot (None: the harmonic part only is wanted, the noise filter is left unnormalised)."""
        raw = raw.reshape(KNOTS_PER_FRAME, 2 * NB_CORR + 1)
        corr = CORR_MAX * np.tanh(raw[:, : 2 * NB_CORR] / CORR_MAX)
        dlogt = DLOGT_MAX * np.tanh(raw[:, -1])
        c = np.asarray(feat[:NB_BANDS], np.float64).copy()
        c[0] += C0_OFFSET
        log10e = np.minimum(c @ self.dct, 12.0)
        ln_env = (log10e * math.log(10.0) - 2 * math.log(INT16_SCALE)) @ self.env_basis
        v = min(max(float(feat[PITCH_CORR]), VOICING_FLOOR), 1.0 - VOICING_FLOOR)
        lm_h = 0.5 * ln_env + 0.5 * math.log(v) + corr[:, :NB_CORR] @ self.corr_basis
        lm_n = 0.5 * ln_env + 0.5 * math.log(1.0 - v) + corr[:, NB_CORR:] @ self.corr_basis
        if noise_seg is not None:
            lm_n = lm_n + noise_normalisation(noise_seg)
        hh, hn = min_phase(lm_h), min_phase(lm_n)
        period = min(max(float(feat[PITCH_PERIOD]), PITCH_MIN), PITCH_MAX) * np.exp(dlogt)
        return [(hh[k], hn[k], 1.0 / period[k]) for k in range(KNOTS_PER_FRAME)]

    def _excitation(self, f0k: np.ndarray, cycles: float, tail: np.ndarray, start: int = 0
                    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Pulse train over 160 samples for knot f0s (3,) at offsets 0, 80, 160; samples before
        ``start`` stay silent and do not advance the phase.  Returns (samples, end phase, new tail)."""
        a = (np.arange(FRAME_SIZE) % KNOT_HOP) / KNOT_HOP
        j = np.arange(FRAME_SIZE) // KNOT_HOP
        f0 = f0k[j] * (1 - a) + f0k[j + 1] * a
        f0[:start] = 0.0
        cyc = cycles + np.cumsum(f0)
        prev = np.concatenate([[cycles], cyc[:-1]])
        n = np.flatnonzero(np.floor(cyc) > np.floor(prev))
        buf = np.zeros(FRAME_SIZE + PULSE_TAPS)
        buf[:PULSE_TAPS] = tail
        if n.size:
            tau = (np.floor(cyc[n]) - prev[n]) / (cyc[n] - prev[n])
            taps = pulse_kernel(tau) * np.sqrt(1.0 / f0[n])[:, None]
            for k, m in enumerate(n):  # at most 5 pulses per frame
                buf[m : m + PULSE_TAPS] += taps[k]
        return buf[:FRAME_SIZE], float(cyc[-1]), buf[FRAME_SIZE:]

    @staticmethod
    def _filter(exc: np.ndarray, h0: np.ndarray, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """One frame of output from ``exc`` (432 history + 160 frame samples) and the frame's 3 knot filters."""
        e = np.concatenate([exc, np.zeros(KNOT_HOP)])  # the last knot's future: its first half does not need it
        segs = np.stack([e[k * KNOT_HOP: k * KNOT_HOP + NFFT] for k in range(3)])
        y = np.fft.irfft(np.fft.rfft(segs) * np.stack([h0, h1, h2]), NFFT)[:, NFFT - SEG_OUT:] * _TRI
        return np.concatenate([y[0, KNOT_HOP:] + y[1, :KNOT_HOP], y[1, KNOT_HOP:] + y[2, :KNOT_HOP]])

    def _frame(self, feat: np.ndarray) -> np.ndarray:
        """Frame i's features -> output samples [160 i - 80, 160 i + 80) (its knots sit at 160 i, 160 i + 80)."""
        ahead = self._noise(FRAME_SIZE + NOISE_AHEAD)  # noise over [160 i - 80, 160 i + 240)
        span = np.concatenate([self.exc_n[-KNOT_HOP:], ahead])  # from 160 i - 160
        segs = np.stack([span[:NOISE_WIN], span[KNOT_HOP:KNOT_HOP + NOISE_WIN]])
        k1, k2 = self._knots(feat, self._net(feat), segs)
        first = self.knot is None  # nothing before the stream: the first 80 samples stay silent
        k0 = k1 if first else self.knot
        frame_h, self.cycles, self.pulse_tail = self._excitation(
            np.array([k0[2], k1[2], k2[2]]), self.cycles, self.pulse_tail, KNOT_HOP if first else 0)
        frame_n = ahead[:FRAME_SIZE].copy()
        self.noise_q = self.noise_q[FRAME_SIZE:]
        eh = np.concatenate([self.exc_h, frame_h])
        en = np.concatenate([self.exc_n, frame_n])
        y = self._filter(eh, k0[0], k1[0], k2[0]) + self._filter(en, k0[1], k1[1], k2[1])
        self.exc_h, self.exc_n = eh[-EXC_HIST:], en[-EXC_HIST:]
        self.knot = k2
        return y

    # -- public ------------------------------------------------------------------
    def synthesize_pe(self, feats: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """(T, 20) features -> (T * 160,) pre-emphasised float output, 5 ms late.

        Frame ``i``'s call returns samples ``[160 i - 80, 160 i + 80)``: the last 80 samples of a
        frame wait for the next frame's features (the filters and the pitch interpolate between
        frame ``i``'s knot at ``160 i + 80`` and frame ``i + 1``'s at ``160 i + 160``).  After a
        reset the first 80 samples are silence before the stream.  ``noise`` (any length): white
        noise to use before drawing from the RNG, queued after what is already drawn; the noise
        excitation of output sample ``k`` after a reset is queue sample ``k`` (the first 80 are the
        silence), and a frame draws :data:`NOISE_AHEAD` samples past its output.
        """
        f = np.asarray(feats, np.float64)
        if f.ndim != 2 or f.shape[1] != NB_FEATURES:
            raise ValueError(f"features must be (frames, {NB_FEATURES}), got {f.shape}")
        if noise is not None:
            self.noise_q = np.concatenate([self.noise_q, np.asarray(noise, np.float64).ravel()])
        out = np.empty(f.shape[0] * FRAME_SIZE)
        for i in range(f.shape[0]):
            out[i * FRAME_SIZE:(i + 1) * FRAME_SIZE] = self._frame(f[i])
        return out

    def prime(self, pcm_pe: np.ndarray, feats: np.ndarray) -> None:
        """Continue from real audio: align the pulse phase with it and fill the excitation history.

        Parameters
        ----------
        pcm_pe : numpy.ndarray
            The last ``PRIME_FRAMES * 160`` (or more) real samples, pre-emphasised, float scale
            (``pcm / 32768``), newest last; the last sample ends the last feature frame.  The
            next :meth:`synthesize_pe` call returns samples from 80 before that end on (the
            5 ms look-ahead): the first 80 overlap the real signal, room for a cross-fade.
        feats : numpy.ndarray
            (n >= PRIME_FRAMES, 20) features of the last ``n`` real frames.  The network state is
            carried on from wherever the stream stands (run it over earlier frames, or reset).

        The last ``PRIME_FRAMES`` frames are re-synthesised (harmonic part only) for
        ``PHASE_CANDIDATES`` starting phases; the phase whose output correlates best with
        the real signal over the last 20 ms they reach is kept, with its excitation as history.
        """
        f = np.asarray(feats, np.float64)
        x = np.asarray(pcm_pe, np.float64)
        if f.ndim != 2 or f.shape[1] != NB_FEATURES or f.shape[0] < PRIME_FRAMES:
            raise ValueError(f"prime needs ({PRIME_FRAMES}+, {NB_FEATURES}) features, got {f.shape}")
        if x.ndim != 1 or x.shape[0] < PRIME_FRAMES * FRAME_SIZE:
            raise ValueError(f"prime needs at least {PRIME_FRAMES * FRAME_SIZE} samples, got {x.shape}")
        for i in range(f.shape[0] - PRIME_FRAMES):  # older frames: network state only
            self.knot = self._knots(f[i], self._net(f[i]))[-1]
        knots = []
        for i in range(f.shape[0] - PRIME_FRAMES, f.shape[0]):
            raw = self._net(f[i])
            k1, k2 = self._knots(f[i], raw)
            k0 = self.knot if self.knot is not None else k1
            knots.append((k0, k1, k2))
            self.knot = k2
        target = x[len(x) - 2 * FRAME_SIZE - KNOT_HOP: len(x) - KNOT_HOP]  # what the priming frames synthesise
        cands = np.arange(PHASE_CANDIDATES) / PHASE_CANDIDATES
        tries = [self._try_phase(float(c), knots, target) for c in cands]
        scores = np.array([t[0] for t in tries])
        b = int(np.argmax(scores))
        lo, hi = scores[b - 1], scores[(b + 1) % PHASE_CANDIDATES]
        den = lo - 2 * scores[b] + hi
        best = tries[b]
        if den < 0:  # parabola through the neighbours: sub-candidate phase
            fine = self._try_phase(float((b + 0.5 * (lo - hi) / den) / PHASE_CANDIDATES), knots, target)
            if fine[0] > best[0]:
                best = fine
        self.cycles, self.pulse_tail, self.exc_h = best[1], best[2], best[3]
        self.exc_n = self.rng.standard_normal(EXC_HIST)
        self.noise_q = self.noise_q[:0]
        # the last knot (at the first output sample + 80) filters new noise: normalise it for that noise
        span = np.concatenate([self.exc_n[-2 * KNOT_HOP:], self._noise(NOISE_WIN - 2 * KNOT_HOP)])
        segs = np.stack([span, span])  # _knots makes both of the frame's knots; only the last is kept
        self.knot = self._knots(f[-1], raw, segs)[-1]
        self.prime_score = best[0]

    def _try_phase(self, c: float, knots: list, target: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Harmonic re-synthesis of the priming frames from phase ``c``: (correlation with ``target``
        over the last two frames, end phase, pulse tail, excitation history)."""
        cyc, tail, hist = c, np.zeros(PULSE_TAPS), np.zeros(EXC_HIST)
        out = []
        for k0, k1, k2 in knots:
            fr, cyc, tail = self._excitation(np.array([k0[2], k1[2], k2[2]]), cyc, tail)
            eh = np.concatenate([hist, fr])
            out.append(self._filter(eh, k0[0], k1[0], k2[0]))
            hist = eh[-EXC_HIST:]
        y = np.concatenate(out)[-2 * FRAME_SIZE:]
        score = float(y @ target) / (np.linalg.norm(y) * np.linalg.norm(target) + 1e-12)
        return score, cyc, tail, hist
