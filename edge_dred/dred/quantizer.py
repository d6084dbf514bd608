"""DRED latent quantizer and the entropy-model tables it is coded with.

The float tables come from the RDO-VAE trainer (names fixed by the project
contract, ``notes/dred_contract.md``); this module validates them, converts
the probabilities to the 15-bit integers the range coder uses, and applies
the dead-zone quantizer.  Everything here is vectorised numpy: no per-symbol
Python loops.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

N_LEVELS = 16           # quantizer levels q = 0 (finest) .. 15 (coarsest)
MAX_ABS_K = 1023        # largest |k| the symbol coder carries
MAX_LATENT_DIM = 32
MAX_STATE_DIM = 64
MAX_DQ = 7
PROB_MIN_Q15 = 1        # every symbol keeps a non-zero probability
PROB_MAX_Q15 = 32767

LATENT_TABLE_NAMES = ("quant_scale", "dead_zone", "p0", "decay")
STATE_TABLE_NAMES = ("state_quant_scale", "state_dead_zone", "state_p0", "state_decay")


class QuantizerError(ValueError):
    """Invalid quantizer input or entropy tables."""


def _finite(name: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        raise QuantizerError(f"{name} contains NaN or infinite values")


def deadzone_round(x: np.ndarray, dead_zone: np.ndarray | float) -> np.ndarray:
    """Round with thresholds pushed outwards by ``dead_zone``.

    ``sign(x) * floor(max(|x| - dz, 0) + 0.5)``, as float64.

    Parameters
    ----------
    x : array_like
        Values in quantized units.
    dead_zone : array_like
        Non-negative dead zone, broadcastable to ``x``.

    Returns
    -------
    numpy.ndarray
        Rounded values (float64).
    """
    x = np.asarray(x, dtype=np.float64)
    dz = np.asarray(dead_zone, dtype=np.float64)
    return np.sign(x) * np.floor(np.maximum(np.abs(x) - dz, 0.0) + 0.5)


def quantize(z: np.ndarray, scale: np.ndarray, dead_zone: np.ndarray) -> np.ndarray:
    """Quantize latents: ``k = deadzone_round(z * scale, dead_zone)``, |k| <= 1023.

    Parameters
    ----------
    z : array_like, (..., D)
        Latent values (finite).
    scale : array_like, (D,) or broadcastable
        ``quant_scale`` row(s), > 0.
    dead_zone : array_like, (D,) or broadcastable
        ``dead_zone`` row(s), >= 0.

    Returns
    -------
    numpy.ndarray
        int32 array of the broadcast shape; values are clamped to +-1023
        because the symbol coder cannot carry more.

    Raises
    ------
    QuantizerError
        On non-finite input, non-positive scale, negative dead zone or
        shapes that do not broadcast.
    """
    z = np.asarray(z, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    dead_zone = np.asarray(dead_zone, dtype=np.float64)
    _finite("z", z)
    _finite("scale", scale)
    _finite("dead_zone", dead_zone)
    if np.any(scale <= 0):
        raise QuantizerError("scale must be > 0")
    if np.any(dead_zone < 0):
        raise QuantizerError("dead_zone must be >= 0")
    try:
        k = deadzone_round(z * scale, dead_zone)
    except ValueError as e:
        raise QuantizerError(f"shapes do not broadcast: {e}") from None
    return np.clip(k, -MAX_ABS_K, MAX_ABS_K).astype(np.int32)


def dequantize(k: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Reconstruct latents ``z_hat = k / scale`` (float32).

    Parameters
    ----------
    k : array_like of int, (..., D)
    scale : array_like, broadcastable to ``k``, > 0

    Returns
    -------
    numpy.ndarray
        float32 array.
    """
    k = np.asarray(k)
    if not np.issubdtype(k.dtype, np.integer):
        raise QuantizerError(f"k must be an integer array, got {k.dtype}")
    scale = np.asarray(scale, dtype=np.float64)
    _finite("scale", scale)
    if np.any(scale <= 0):
        raise QuantizerError("scale must be > 0")
    try:
        return (k / scale).astype(np.float32)
    except ValueError as e:
        raise QuantizerError(f"shapes do not broadcast: {e}") from None


def prob_to_q15(p: np.ndarray) -> np.ndarray:
    """Convert probabilities/ratios in (0, 1) to q15, clamped to 1..32767.

    Parameters
    ----------
    p : array_like
        Finite values; out-of-range values are clamped, so every coded
        symbol keeps a non-zero probability.

    Returns
    -------
    numpy.ndarray
        uint16 array of the same shape.
    """
    p = np.asarray(p, dtype=np.float64)
    _finite("probability table", p)
    return np.clip(np.round(p * 32768.0), PROB_MIN_Q15, PROB_MAX_Q15).astype(np.uint16)


def _check_level_args(q0: int, dq: int, qmax: int) -> None:
    for name, v, hi in (("q0", q0, N_LEVELS - 1), ("dq", dq, MAX_DQ), ("qmax", qmax, N_LEVELS - 1)):
        if not isinstance(v, (int, np.integer)) or not 0 <= v <= hi:
            raise QuantizerError(f"{name} must be an integer in [0, {hi}], got {v!r}")


def chunk_level(j: int, q0: int, dq: int, qmax: int = N_LEVELS - 1) -> int:
    """Quantizer level of chunk ``j`` (0 = newest): ``min(qmax, q0 + (dq*j + 4)//8)``.

    Parameters
    ----------
    j : int
        Chunk index, >= 0.
    q0, dq, qmax : int
        Header fields (0..15, 0..7, 0..15).

    Returns
    -------
    int
    """
    _check_level_args(q0, dq, qmax)
    if not isinstance(j, (int, np.integer)) or j < 0:
        raise QuantizerError(f"chunk index must be a non-negative integer, got {j!r}")
    return int(min(qmax, q0 + (dq * j + 4) // 8))


def chunk_levels(n: int, q0: int, dq: int, qmax: int = N_LEVELS - 1) -> np.ndarray:
    """Levels of chunks 0..n-1 (see `chunk_level`), as an int64 array."""
    _check_level_args(q0, dq, qmax)
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise QuantizerError(f"n must be a non-negative integer, got {n!r}")
    j = np.arange(n, dtype=np.int64)
    return np.minimum(qmax, q0 + (dq * j + 4) // 8)


def ideal_bits(k: np.ndarray, p0: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """Ideal code length -log2 P(k) under the float (p0, decay) Laplace model.

    P(0) = p0; P(k) = (1 - p0) / 2 * (1 - decay) * decay^(|k| - 1) otherwise.

    Parameters
    ----------
    k : array_like of int
    p0, decay : array_like, broadcastable to ``k``, in (0, 1)

    Returns
    -------
    numpy.ndarray
        float64 bits per element.
    """
    a = np.abs(np.asarray(k, dtype=np.float64))
    p0 = np.asarray(p0, dtype=np.float64)
    decay = np.asarray(decay, dtype=np.float64)
    nz = -np.log2((1.0 - p0) * 0.5 * (1.0 - decay)) - np.maximum(a - 1.0, 0.0) * np.log2(decay)
    return np.where(a == 0, -np.log2(p0), nz)


def _as_table(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    a = np.array(value, dtype=np.float32)
    if a.shape != shape:
        raise QuantizerError(f"{name} has shape {a.shape}, expected {shape}")
    _finite(name, a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class EntropyTables:
    """Quantizer and entropy-model tables of the DRED contract.

    Parameters
    ----------
    quant_scale, dead_zone, p0, decay : array_like, (16, D)
        Per-level latent tables (float32), D <= 32.
    state_quant_scale, state_dead_zone, state_p0, state_decay : array_like, (S,)
        Initial-state tables (float32), S <= 64.

    Attributes
    ----------
    p0_q15, decay_q15 : numpy.ndarray, (16, D) uint16
    state_p0_q15, state_decay_q15 : numpy.ndarray, (S,) uint16
        The 15-bit versions the range coder uses (clamped to 1..32767).
    """

    quant_scale: np.ndarray
    dead_zone: np.ndarray
    p0: np.ndarray
    decay: np.ndarray
    state_quant_scale: np.ndarray
    state_dead_zone: np.ndarray
    state_p0: np.ndarray
    state_decay: np.ndarray
    p0_q15: np.ndarray = field(init=False, repr=False)
    decay_q15: np.ndarray = field(init=False, repr=False)
    state_p0_q15: np.ndarray = field(init=False, repr=False)
    state_decay_q15: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        qs = np.asarray(self.quant_scale)
        if qs.ndim != 2 or qs.shape[0] != N_LEVELS or not 1 <= qs.shape[1] <= MAX_LATENT_DIM:
            raise QuantizerError(f"quant_scale must be ({N_LEVELS}, D) with 1 <= D <= {MAX_LATENT_DIM}, got {qs.shape}")
        ss = np.asarray(self.state_quant_scale)
        if ss.ndim != 1 or not 1 <= ss.shape[0] <= MAX_STATE_DIM:
            raise QuantizerError(f"state_quant_scale must be (S,) with 1 <= S <= {MAX_STATE_DIM}, got {ss.shape}")
        lat_shape, st_shape = qs.shape, ss.shape
        for name in LATENT_TABLE_NAMES:
            object.__setattr__(self, name, _as_table(name, getattr(self, name), lat_shape))
        for name in STATE_TABLE_NAMES:
            object.__setattr__(self, name, _as_table(name, getattr(self, name), st_shape))
        for name in ("quant_scale", "state_quant_scale"):
            if np.any(getattr(self, name) <= 0):
                raise QuantizerError(f"{name} must be > 0")
        for name in ("dead_zone", "state_dead_zone"):
            if np.any(getattr(self, name) < 0):
                raise QuantizerError(f"{name} must be >= 0")
        for name in ("p0", "decay", "state_p0", "state_decay"):
            t = getattr(self, name)
            if np.any(t <= 0) or np.any(t >= 1):
                raise QuantizerError(f"{name} must lie in (0, 1)")
            q = prob_to_q15(t)
            q.setflags(write=False)
            object.__setattr__(self, name + "_q15", q)

    @property
    def latent_dim(self) -> int:
        """D, the latent dimension."""
        return int(self.quant_scale.shape[1])

    @property
    def state_dim(self) -> int:
        """S, the initial-state dimension."""
        return int(self.state_quant_scale.shape[0])

    @classmethod
    def from_mapping(cls, tables: Mapping[str, object]) -> "EntropyTables":
        """Build from a mapping holding the eight contract names (e.g. an npz file).

        Parameters
        ----------
        tables : Mapping
            Must contain ``quant_scale``, ``dead_zone``, ``p0``, ``decay``,
            ``state_quant_scale``, ``state_dead_zone``, ``state_p0``,
            ``state_decay``; other keys are ignored.
        """
        missing = [n for n in LATENT_TABLE_NAMES + STATE_TABLE_NAMES if n not in tables]
        if missing:
            raise QuantizerError(f"missing entropy tables: {', '.join(missing)}")
        return cls(**{n: tables[n] for n in LATENT_TABLE_NAMES + STATE_TABLE_NAMES})

    @classmethod
    def synthetic(cls, latent_dim: int = 32, state_dim: int = 48, seed: int = 0) -> "EntropyTables":
        """Self-consistent tables for unit-scale Laplace latents (tests, benchmarks).

        Each dimension i is modelled as Laplace with scale b_i in [0.5, 1.5];
        level q multiplies by ``8 * 2**(-q/2.5)`` (the state by 2), and p0/decay are the exact
        probabilities of the dead-zone quantizer's output for that Laplace.
        Not trained: use the trainer's tables for real audio.
        """
        if not 1 <= latent_dim <= MAX_LATENT_DIM or not 1 <= state_dim <= MAX_STATE_DIM:
            raise QuantizerError("latent_dim or state_dim out of range")
        rng = np.random.default_rng(seed)
        b = rng.uniform(0.5, 1.5, latent_dim)
        step = 8.0 * 2.0 ** (-np.arange(N_LEVELS) / 2.5)
        scale = step[:, None] * np.ones((1, latent_dim))
        dz = np.full((N_LEVELS, latent_dim), 0.15)
        bs = b[None, :] * scale
        p0 = 1.0 - np.exp(-(0.5 + dz) / bs)
        decay = np.exp(-1.0 / bs)
        sb = rng.uniform(0.5, 1.5, state_dim)
        s_scale = np.full(state_dim, 2.0)
        s_dz = np.full(state_dim, 0.1)
        s_p0 = 1.0 - np.exp(-(0.5 + s_dz) / (sb * s_scale))
        s_decay = np.exp(-1.0 / (sb * s_scale))
        return cls(quant_scale=scale, dead_zone=dz, p0=p0, decay=decay,
                   state_quant_scale=s_scale, state_dead_zone=s_dz, state_p0=s_p0, state_decay=s_decay)
