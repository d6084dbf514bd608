"""Defect generator: clean speech in, the same speech with one (or two) defects out.

Every defect is drawn from documented parameter ranges by a seeded
:class:`numpy.random.Generator`, so a (signal, defect, seed) triple always gives
the same output.  Levels are relative to the input's *active speech level*
(:func:`active_level`), so the same defect sounds equally strong on a quiet and
a loud recording.

Defects and parameter ranges
----------------------------
``hum``
    Mains at 50 or 60 Hz (+/- 0.5 %) with 1 to 12 harmonics whose amplitudes
    fall as ``k ** -alpha``, ``alpha`` in [0, 3] (0: buzz-like, 3: nearly
    pure), optionally odd harmonics only; total level :data:`HUM_LEVEL_DB`
    (-40 to -10 dB re speech; an ordinary recording may carry a mains line
    up to :data:`MAINS_RESIDUE_DB`, -55 dB), level varying slowly (0.05-0.5 Hz, up to
    +/- 3 dB) in half of the draws.
``hiss``
    White, pink, blue or band-limited (preamp-like) Gaussian noise at an SNR
    of :data:`HISS_SNR_DB` (5 to 20 dB) and at least
    :data:`HISS_OVER_FLOOR_DB` above the input's own floor
    (:func:`floor_power`), stationary or slowly varying
    (+/- 2 dB at 0.05-0.3 Hz).  The issue asked for up to 35 dB, but real
    recordings that count as clean already carry a noise floor of the same
    kinds there (read-speech recordings measure 23-50 dB): a floor at 25 dB
    or more is an ordinary recording (:data:`ROOM_SNR_DB`), 5 dB clear of the
    loudest hiss.
``distortion``
    Hard clipping (0.5-15 % of samples at the rails), soft clipping (tanh,
    drive 3-12), asymmetric clipping (one polarity clipped at 0.5-15 %, the
    other at most a fifth of that), bit crushing (3-7 bits over the signal's
    peak) and overdriven saturation (``1 - exp(-g|x|)``, ``g`` 4-15, with a
    bias for even harmonics).
``clicks``
    :data:`CLICK_RATE` (1 to 20) events per second, at least one, placed in
    active speech where there is any: isolated impulses (1-3 samples, 0.1-1x
    peak), dropouts (1-40 ms zeroed, the length of a lost packet or two; half
    of them anywhere, pauses included, as holes filled with silence), sample discontinuities (a DC step of
    0.1-0.5x peak lasting 1-50 ms: a jump in and out) and crackle bursts
    (3-20 impulses of 0.05-0.5x peak within 5-40 ms).
``none``
    Clean speech (``clean``), clean speech through this project's Opus at
    12-64 kb/s (``opus``), through Opus with 5-30 % random loss concealed by
    libopus (``opus_plc``), and a room noise floor that brings the
    recording's floor to an SNR of :data:`ROOM_SNR_DB` (25 to 60 dB, white to
    brown, low-passed at 3-8 kHz; nothing where the floor is already there)
    (``room``), 5 dB clear of the loudest hiss; and an *ordinary recording*
    (``recording``, :func:`ordinary_recording`): microphone colouration,
    band limits, a little reverberation, slow level changes, a room noise
    floor at :data:`ROOM_SNR_DB` (shaped like a room or like the hiss kinds),
    sometimes low-frequency rumble and sometimes a faint mains line.  Training
    puts most examples of every class through :func:`ordinary_recording`
    first, so a defect is what stands out of an ordinary recording, not of a
    studio one.

:func:`mix_defects` applies two different defects (additive ones first, then
distortion, then clicks) for a multi-label check.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..constants import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["DEFECTS", "VARIANTS", "HUM_LEVEL_DB", "HISS_SNR_DB", "HISS_OVER_FLOOR_DB", "ROOM_SNR_DB",
           "MAINS_RESIDUE_DB", "RUMBLE_DB", "CLICK_RATE", "DROPOUT_MS", "OPUS_BITRATES", "Defected", "active_level",
           "floor_power", "apply_defect", "mix_defects", "ordinary_recording", "opus_roundtrip"]

#: Class names, in the detector's label order.
DEFECTS = ("none", "hum", "hiss", "distortion", "clicks")
#: Variants of each class (``variant=None`` draws one uniformly).
VARIANTS: dict[str, tuple[str, ...]] = {
    "none": ("clean", "opus", "opus_plc", "room", "recording"),
    "hum": ("mains",),
    "hiss": ("white", "pink", "blue", "band"),
    "distortion": ("hard", "soft", "asymmetric", "bitcrush", "saturation"),
    "clicks": ("impulse", "dropout", "discontinuity", "crackle", "mixed"),
}
HUM_LEVEL_DB = (-40.0, -10.0)
HISS_SNR_DB = (5.0, 20.0)
HISS_OVER_FLOOR_DB = 5.0  # drawn hiss stays at least this far above the input's own floor
ROOM_SNR_DB = (25.0, 60.0)
RUMBLE_DB = (-45.0, -25.0)  # low-frequency rumble (below 40-150 Hz) an ordinary recording may carry (not hum)
MAINS_RESIDUE_DB = (-75.0, -55.0)  # a faint mains line an ordinary recording may carry (not a defect)
CLICK_RATE = (1.0, 20.0)
DROPOUT_MS = (1.0, 40.0)
CLIP_FRACTION = (0.005, 0.15)
OPUS_BITRATES = (12000, 16000, 24000, 32000, 48000, 64000)
MIN_SAMPLES = FRAME_SAMPLES  # 20 ms: shorter input has no meaningful level
MAX_SAMPLES = SAMPLE_RATE * 3600
_ACTIVE_DB = 30.0  # frames within this many dB of the loud frames count as active speech


@dataclass
class Defected:
    """A generated example.

    Attributes
    ----------
    audio : np.ndarray
        float32 in [-1, 1], same length as the input.
    labels : tuple of str
        The defects present (``("none",)`` for a clean example).
    params : dict
        The drawn parameters (variant, level, event positions, ...).
    """

    audio: np.ndarray
    labels: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The single label (the first one of a mixed example)."""
        return self.labels[0]


def _check_signal(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"speech must be a 1-D mono signal, got shape {x.shape}")
    if not MIN_SAMPLES <= x.size <= MAX_SAMPLES:
        raise ValueError(f"speech must have {MIN_SAMPLES}..{MAX_SAMPLES} samples, got {x.size}")
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif x.dtype.kind == "f":
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError("speech contains NaN or infinite samples")
        if np.max(np.abs(x)) > 1.0:
            raise ValueError("float speech must lie in [-1, 1]")
    else:
        raise ValueError(f"speech must be int16 or float in [-1, 1], got dtype {x.dtype}")
    return x


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _frame_power(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME_SAMPLES
    if n == 0:
        return np.array([np.mean(x.astype(np.float64) ** 2)])
    return np.mean(x[:n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES) ** 2, axis=1)


def active_level(x: np.ndarray) -> tuple[float, np.ndarray]:
    """Active speech power and the mask of active 20 ms frames.

    A frame is active when its power is within 30 dB of the 95th percentile
    frame power (a simple stand-in for ITU-T P.56).

    Returns
    -------
    (power, active) : float, np.ndarray of bool (one per 20 ms frame)

    Raises
    ------
    ValueError
        Digital silence (no level to refer a defect to).
    """
    p = _frame_power(x)
    top = float(np.percentile(p, 95))
    if top <= 1e-12:
        raise ValueError("speech is digital silence: no level to refer a defect to")
    active = p >= top * 10 ** (-_ACTIVE_DB / 10)
    return float(np.mean(p[active])), active


def floor_power(x: np.ndarray) -> float:
    """The input's own noise floor: the 5th-percentile 20 ms frame power.

    Where a segment has no pause this is speech, so the floor is overestimated:
    the generator then draws only hiss clearly louder than it, and adds less
    room noise.
    """
    return float(np.percentile(_frame_power(x), 5))


def _shaped_noise(n: int, rng: np.random.Generator, slope_db_oct: float, lo: float = 0.0,
                  hi: float = SAMPLE_RATE / 2) -> np.ndarray:
    """Unit-power Gaussian noise with a spectral slope (dB/octave) and a pass band."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    g = np.where(f > 0, (np.maximum(f, 1.0) / 1000.0) ** (slope_db_oct / 6.0206), 0.0)
    g *= (f >= lo) & (f <= hi)
    y = np.fft.irfft(spec * g, n)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-20)


def _slow_gain(n: int, rng: np.random.Generator, max_db: float, f_lo: float, f_hi: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    depth = rng.uniform(0, max_db)
    return 10 ** (depth * np.sin(2 * np.pi * rng.uniform(f_lo, f_hi) * t + rng.uniform(0, 2 * np.pi)) / 20)


def _hum(x, rng, level_db, variant):
    power, _ = active_level(x)
    n = len(x)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.choice([50.0, 60.0]) * (1 + rng.uniform(-0.005, 0.005))
    k_max = int(min(12, (SAMPLE_RATE / 2 - 100) // f0))
    n_harm = int(rng.integers(1, k_max + 1))
    alpha = rng.uniform(0.0, 3.0)
    odd = bool(rng.random() < 0.3)
    ks = [k for k in range(1, n_harm + 1) if not odd or k % 2 == 1]
    y = np.zeros(n)
    for k in ks:
        y += k ** -alpha * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    y /= np.sqrt(np.mean(y ** 2)) + 1e-20
    varying = bool(rng.random() < 0.5)
    if varying:
        y *= _slow_gain(n, rng, 3.0, 0.05, 0.5)
    level = rng.uniform(*HUM_LEVEL_DB) if level_db is None else float(level_db)
    out = x + y * np.sqrt(power) * 10 ** (level / 20)
    return out, dict(variant=variant, f0=float(f0), harmonics=ks, alpha=float(alpha), level_db=float(level),
                     varying=varying)


_HISS_SLOPES = {"white": 0.0, "pink": -3.0, "blue": 3.0}


def _hiss(x, rng, snr_db, variant):
    power, _ = active_level(x)
    n = len(x)
    if variant == "band":
        lo, hi = rng.uniform(100, 2000), rng.uniform(3000, 8000)
        noise = _shaped_noise(n, rng, rng.uniform(-3, 3), lo, hi)
        extra = dict(band_hz=(float(lo), float(hi)))
    else:
        noise = _shaped_noise(n, rng, _HISS_SLOPES[variant])
        extra = {}
    varying = bool(rng.random() < 0.5)
    if varying:
        noise *= _slow_gain(n, rng, 2.0, 0.05, 0.3)
    if snr_db is None:
        # relative to the speech, and clear of the recording's own floor
        own = 10 * np.log10(power / max(floor_power(x), 1e-12))
        snr = rng.uniform(HISS_SNR_DB[0], max(HISS_SNR_DB[0], min(HISS_SNR_DB[1], own - HISS_OVER_FLOOR_DB)))
    else:
        snr = float(snr_db)
    out = x + noise * np.sqrt(power) * 10 ** (-snr / 20)
    return out, dict(variant=variant, snr_db=float(snr), varying=varying, **extra)


def _distortion(x, rng, variant):
    peak = float(np.max(np.abs(x)))
    a = np.abs(x)
    if variant in ("hard", "asymmetric"):
        frac = rng.uniform(*CLIP_FRACTION)
        if variant == "hard":
            c = float(np.quantile(a, 1 - frac))
            y = np.clip(x, -c, c)
            params = dict(clip_fraction=float(frac), clip_level=c / peak)
        else:
            sign = 1 if rng.random() < 0.5 else -1
            c1 = float(np.quantile(np.maximum(sign * x, 0), 1 - frac))
            c2 = float(np.quantile(np.maximum(-sign * x, 0), 1 - frac * rng.uniform(0, 0.2)))
            hi_, lo_ = (c1, c2) if sign > 0 else (c2, c1)
            y = np.clip(x, -lo_, hi_)
            params = dict(clip_fraction=float(frac), polarity=sign)
        # The rails land somewhere below full scale, as after an analogue stage.
        y = y / max(np.max(np.abs(y)), 1e-9) * rng.uniform(0.3, 0.99)
    elif variant == "soft":
        g = rng.uniform(3, 12)
        y = np.tanh(g * x / peak) / np.tanh(g) * peak
        params = dict(drive=float(g))
    elif variant == "saturation":
        g = rng.uniform(4, 15)
        b = rng.uniform(0, 0.3)
        u = x / peak + b
        y = np.sign(u) * (1 - np.exp(-g * np.abs(u))) - np.sign(b) * (1 - np.exp(-g * abs(b)))
        y = y / max(np.max(np.abs(y)), 1e-9) * peak
        params = dict(drive=float(g), bias=float(b))
    else:  # bitcrush
        bits = int(rng.integers(3, 8))
        step = peak / 2 ** (bits - 1)
        y = np.round(x / step) * step
        params = dict(bits=bits)
    return np.clip(y, -1, 1), dict(variant=variant, **params)


def _event_positions(x, rng, count, margin):
    """``count`` positions in active frames (anywhere if there are none), sorted."""
    _, active = active_level(x)
    starts = np.flatnonzero(active) * FRAME_SAMPLES
    n = len(x)
    pos = []
    for _ in range(count):
        if len(starts):
            p = int(starts[rng.integers(len(starts))] + rng.integers(FRAME_SAMPLES))
        else:
            p = int(rng.integers(n))
        pos.append(min(max(p, 0), max(n - margin, 0)))
    return sorted(pos)


def _clicks(x, rng, rate, variant):
    n = len(x)
    peak = float(np.max(np.abs(x)))
    r = rng.uniform(*CLICK_RATE) if rate is None else float(rate)
    count = max(1, int(round(r * n / SAMPLE_RATE)))
    pos = _event_positions(x, rng, count, margin=1)
    y = x.astype(np.float64).copy()
    kinds, placed = [], []
    for p in pos:
        kind = variant if variant != "mixed" else str(rng.choice(VARIANTS["clicks"][:4]))
        kinds.append(kind)
        if kind == "impulse":
            w = int(rng.integers(1, 4))
            y[p:p + w] += rng.choice([-1, 1]) * rng.uniform(0.1, 1.0) * peak * np.array([1, -0.5, 0.25][:w])[:len(y[p:p + w])]
        elif kind == "dropout":
            if rng.random() < 0.5:  # a hole anywhere, pauses included (a lost packet filled with silence)
                p = int(rng.integers(n))
            y[p:p + max(1, int(rng.uniform(*DROPOUT_MS) * SAMPLE_RATE / 1000))] = 0.0
        elif kind == "discontinuity":
            y[p:p + int(rng.uniform(0.001, 0.050) * SAMPLE_RATE)] += rng.choice([-1, 1]) * rng.uniform(0.1, 0.5) * peak
        else:  # crackle
            span = int(rng.uniform(0.005, 0.040) * SAMPLE_RATE)
            for q in p + rng.integers(0, span, int(rng.integers(3, 21))):
                if q < n:
                    y[q] += rng.choice([-1, 1]) * rng.uniform(0.05, 0.5) * peak
        placed.append(p)
    return np.clip(y, -1, 1), dict(variant=variant, rate=float(r), positions=placed, kinds=kinds)


def opus_roundtrip(x: np.ndarray, bitrate: int, loss: np.ndarray | None = None) -> np.ndarray:
    """``x`` through this project's Opus encoder/decoder, sample-aligned.

    Parameters
    ----------
    x : np.ndarray
        float in [-1, 1] or int16.
    bitrate : int
        b/s.
    loss : np.ndarray of bool, optional
        Per 20 ms packet, True = lost (libopus concealment fills it).
    """
    from ..codec.opus import OpusDecoder, OpusEncoder

    x = _check_signal(x)
    enc = OpusEncoder(bitrate=int(bitrate))
    dec = OpusDecoder()
    la = int(enc.lookahead)
    n_pk = -(-(len(x) + la) // FRAME_SAMPLES)
    pcm = np.zeros(n_pk * FRAME_SAMPLES, np.int16)
    pcm[:len(x)] = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    out = []
    for i in range(n_pk):
        pk = enc.encode(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
        lost = loss is not None and i < len(loss) and bool(loss[i])
        out.append(dec.decode(None if lost else pk, FRAME_SAMPLES))
    y = np.concatenate(out)[la:la + len(x)]
    return y.astype(np.float32) / 32768.0


def _fft_filter(x: np.ndarray, gain) -> np.ndarray:
    """``x`` through a zero-phase filter given as a gain per frequency (Hz -> linear), zero-padded."""
    n = len(x)
    m = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfftfreq(m, 1 / SAMPLE_RATE)
    return np.fft.irfft(np.fft.rfft(x, m) * gain(f), m)[:n]


def _room_power(x: np.ndarray, power: float, snr_db: float) -> float:
    """Noise power that brings the input's floor to ``snr_db`` below ``power`` (none if it is already there)."""
    return max(power * 10 ** (-snr_db / 10) - floor_power(x), 0.0)


def ordinary_recording(speech: np.ndarray, seed: int | np.random.Generator) -> np.ndarray:
    """Clean speech made to sound like an ordinary (defect-free) recording.

    Each part is drawn independently: microphone colouration (a smooth
    random EQ of up to +/- 6 dB over log frequency, always); a high-pass at
    50-250 Hz (half of the draws) and a low-pass at 3.4-7.5 kHz (half);
    reverberation (50 %: exponentially decaying noise, RT60
    0.1-0.8 s, 3-25 dB below the direct sound: a home room at arm's length); a slow level change (30 %,
    up to +/- 3 dB at 0.05-0.5 Hz); a noise floor (90 %) bringing the floor
    to an SNR of :data:`ROOM_SNR_DB` re the active speech level, half of
    them a room (spectral slope -9 to 0 dB/octave, low-passed at 2-8 kHz),
    half an electrical floor of the hiss kinds (slope -3 to +3 dB/octave,
    20-300 Hz to 4-8 kHz); rumble (30 %: noise below 40-150 Hz at
    :data:`RUMBLE_DB` re speech); and a faint mains line (25 %: 50/60 Hz and
    a few harmonics at :data:`MAINS_RESIDUE_DB` re speech).  Peaks are kept
    below full scale.

    Parameters
    ----------
    speech : np.ndarray
        1-D 16 kHz mono, int16 or float in [-1, 1]; not digital silence.
    seed : int or numpy.random.Generator

    Returns
    -------
    np.ndarray
        float32, same length.
    """
    x = _check_signal(speech).astype(np.float64)
    rng = _rng(seed)
    power, _ = active_level(x)
    n = len(x)
    # colouration: a few random cosines over log2 frequency, +/- 6 dB at most
    amp, per, ph = rng.uniform(0, 3, 3), rng.uniform(1.5, 6, 3), rng.uniform(0, 2 * np.pi, 3)
    hp = rng.uniform(50, 250) if rng.random() < 0.5 else None
    lp = rng.uniform(3400, 7500) if rng.random() < 0.5 else None
    lp_order = rng.uniform(4, 12)

    def eq(f):
        lf = np.log2(np.maximum(f, 20.0) / 1000.0)
        db = np.clip(sum(a * np.cos(2 * np.pi * lf / p + q) for a, p, q in zip(amp, per, ph)), -6, 6)
        g = 10 ** (db / 20)
        if hp is not None:
            g = g / np.sqrt(1 + (hp / np.maximum(f, 1e-3)) ** 4)
        if lp is not None:
            g = g / np.sqrt(1 + (f / lp) ** lp_order)
        return g

    y = _fft_filter(x, eq)
    params: dict[str, Any] = dict(hp_hz=hp, lp_hz=lp)
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.1, 0.8)
        m = int(rt60 * SAMPLE_RATE)
        ir = rng.standard_normal(m) * np.exp(-6.908 * np.arange(m) / m)
        ir *= 10 ** (-rng.uniform(3, 25) / 20) / np.sqrt(np.sum(ir ** 2))
        k = 1 << int(np.ceil(np.log2(n + m)))
        y = y + np.fft.irfft(np.fft.rfft(y, k) * np.fft.rfft(ir, k), k)[:n]
        params["rt60_s"] = float(rt60)
    if rng.random() < 0.3:
        y = y * _slow_gain(n, rng, 3.0, 0.05, 0.5)
    p_now, _ = active_level(y) if np.any(y) else (power, None)
    if rng.random() < 0.9:
        snr = rng.uniform(*ROOM_SNR_DB)
        if rng.random() < 0.5:  # a room: falling spectrum, low-passed
            floor = _shaped_noise(n, rng, rng.uniform(-9, 0), 20, rng.uniform(2000, 8000))
        else:  # an electrical floor of the hiss kinds, below the hiss range: still an ordinary recording
            floor = _shaped_noise(n, rng, rng.uniform(-3, 3), rng.uniform(20, 300), rng.uniform(4000, 8000))
        y = y + floor * np.sqrt(_room_power(y, p_now, snr))
        params["floor_snr_db"] = float(snr)
    if rng.random() < 0.3:  # rumble: broadband below 40-150 Hz (handling, traffic, ventilation), not a mains line
        rumble = _shaped_noise(n, rng, -6.0, 10, rng.uniform(40, 150))
        lvl = rng.uniform(*RUMBLE_DB)
        y = y + rumble * np.sqrt(p_now) * 10 ** (lvl / 20)
        params["rumble_db"] = float(lvl)
    if rng.random() < 0.25:
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.choice([50.0, 60.0])
        line = sum(k ** -rng.uniform(0.5, 2) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
                   for k in range(1, int(rng.integers(1, 5)) + 1))
        lvl = rng.uniform(*MAINS_RESIDUE_DB)
        y = y + line / (np.sqrt(np.mean(line ** 2)) + 1e-20) * np.sqrt(p_now) * 10 ** (lvl / 20)
        params["mains_db"] = float(lvl)
    peak = float(np.max(np.abs(y)))
    if peak > 0.98:
        y *= 0.98 / peak
    return y.astype(np.float32)


def _none(x, rng, variant):
    if variant == "clean":
        return x, dict(variant=variant)
    if variant == "recording":
        return ordinary_recording(x, rng), dict(variant=variant)
    if variant == "room":
        power, _ = active_level(x)
        snr = rng.uniform(*ROOM_SNR_DB)
        noise = _shaped_noise(len(x), rng, rng.uniform(-6, 0), 20, rng.uniform(3000, 8000))
        return x + noise * np.sqrt(_room_power(x, power, snr)), dict(variant=variant, snr_db=float(snr))
    bitrate = int(rng.choice(OPUS_BITRATES))
    if variant == "opus":
        return opus_roundtrip(x, bitrate), dict(variant=variant, bitrate=bitrate)
    pct = rng.uniform(0.05, 0.30)
    loss = rng.random(-(-len(x) // FRAME_SAMPLES) + 2) < pct
    return opus_roundtrip(x, bitrate, loss), dict(variant=variant, bitrate=bitrate, loss=float(pct))


def apply_defect(speech: np.ndarray, defect: str, seed: int | np.random.Generator, *, variant: str | None = None,
                 level_db: float | None = None, rate: float | None = None) -> Defected:
    """Add one defect to clean speech.

    Parameters
    ----------
    speech : np.ndarray
        1-D 16 kHz mono, int16 or float in [-1, 1]; not digital silence.
    defect : str
        One of :data:`DEFECTS`.
    seed : int or numpy.random.Generator
        Same seed, same output.
    variant : str, optional
        One of ``VARIANTS[defect]``; drawn when omitted.
    level_db : float, optional
        Fix the hum level (dB re speech) or the hiss SNR (dB) instead of
        drawing it.
    rate : float, optional
        Fix the click rate (events per second).

    Returns
    -------
    Defected

    Raises
    ------
    ValueError
        Unknown defect or variant, bad signal (shape, dtype, range, length,
        digital silence), bad seed.
    """
    x = _check_signal(speech)
    if defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; valid: {', '.join(DEFECTS)}")
    rng = _rng(seed)
    if variant is None:
        variant = str(rng.choice(VARIANTS[defect]))
    elif variant not in VARIANTS[defect]:
        raise ValueError(f"unknown {defect} variant {variant!r}; valid: {', '.join(VARIANTS[defect])}")
    active_level(x)  # rejects digital silence for every defect alike
    if defect == "hum":
        y, p = _hum(x, rng, level_db, variant)
    elif defect == "hiss":
        y, p = _hiss(x, rng, level_db, variant)
    elif defect == "distortion":
        y, p = _distortion(x, rng, variant)
    elif defect == "clicks":
        y, p = _clicks(x, rng, rate, variant)
    else:
        y, p = _none(x, rng, variant)
    return Defected(np.clip(np.asarray(y, np.float32), -1.0, 1.0), (defect,), p)


_ORDER = ("hum", "hiss", "distortion", "clicks")  # additive noise, then the non-linearity, then clicks


def mix_defects(speech: np.ndarray, defects: tuple[str, str], seed: int | np.random.Generator) -> Defected:
    """Two different defects at once (the ``mixed`` mode of the multi-label check).

    Raises
    ------
    ValueError
        Not two different defects among ``hum``, ``hiss``, ``distortion``,
        ``clicks``, or a bad signal or seed.
    """
    if len(defects) != 2 or len(set(defects)) != 2 or not set(defects) <= set(_ORDER):
        raise ValueError(f"mixed mode takes two different defects out of {', '.join(_ORDER)}, got {defects!r}")
    rng = _rng(seed)
    a, b = sorted(defects, key=_ORDER.index)
    first = apply_defect(speech, a, rng)
    second = apply_defect(first.audio, b, rng)
    return Defected(second.audio, (a, b), {a: first.params, b: second.params})
