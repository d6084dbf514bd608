"""Per-row int8 weight quantization and the 16-bit pair-overflow rule.

The kernels compute ``y[r] = scale[r] * xs * sum_c q[r, c] * xq[c]`` with the
input quantized to ``xq`` in [-127, 127]. Two constraints on ``q`` follow from
the SIMD paths:

* ``q`` in [-127, 127]: the x86 path moves x's sign onto w with
  ``sign_epi8``, which cannot negate -128.
* pair rule: NEON without dotprod multiplies int8 pairs with ``vmull_s8``
  and adds two products of a row in a 16-bit lane before widening (the
  block-sparse product: columns (2m, 2m+1), ``vpaddq_s16``; the dense one:
  columns c and c + 4, ``vmlal_s8``), so ``(|a| + |b|) * x_max <= 32767``
  must hold for those pairs; with x_max = 127 that is ``|a| + |b| <= 258``,
  which weights in [-127, 127] always meet (the check guards other bounds).

With both, no variant can overflow or saturate, so all of them return the
same integer sums (tests check this on adversarial weights).
"""
from __future__ import annotations

import numpy as np

INT8_LIMIT = 127
ACC16_MAX = 32767


class QuantizationError(ValueError):
    """Weights that would overflow a kernel, or malformed quantization input."""


def pair_limit(x_max: int = INT8_LIMIT, acc_max: int = ACC16_MAX) -> int:
    """Largest allowed ``|a| + |b|`` for an adjacent weight pair.

    Parameters
    ----------
    x_max : int
        Largest magnitude of a quantized input.
    acc_max : int
        Largest magnitude the 16-bit pair accumulator holds.

    Returns
    -------
    int
        ``acc_max // x_max`` (258 for the defaults).
    """
    if x_max < 1 or acc_max < 1:
        raise QuantizationError(f"x_max and acc_max must be >= 1, got {x_max}, {acc_max}")
    return acc_max // x_max


def _as_matrix(w: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(w)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise QuantizationError(f"{what}: expected a non-empty 2-D matrix, got shape {a.shape}")
    return a


def check_int8_weights(q: np.ndarray, *, x_max: int = INT8_LIMIT, acc_max: int = ACC16_MAX,
                       name: str = "weights") -> None:
    """Raise QuantizationError if ``q`` could overflow any kernel variant.

    Parameters
    ----------
    q : np.ndarray
        int8 matrix (rows, cols), logical (unpacked) layout.
    x_max, acc_max : int
        Input magnitude bound and 16-bit accumulator bound (see module doc).
    name : str
        Used in error messages.
    """
    q = _as_matrix(q, name)
    if q.dtype != np.int8:
        raise QuantizationError(f"{name}: expected int8, got {q.dtype}")
    bad = np.argwhere(q < -INT8_LIMIT)
    if bad.size:
        r, c = bad[0]
        raise QuantizationError(f"{name}: value {int(q[r, c])} at row {r}, col {c} outside [-127, 127] "
                                f"({len(bad)} such entries)")
    lim = pair_limit(x_max, acc_max)
    a = np.abs(q.astype(np.int32))
    if a.shape[1] % 2:
        a = np.pad(a, ((0, 0), (0, 1)))
    pairs = a[:, 0::2] + a[:, 1::2]
    over = np.argwhere(pairs > lim)
    if over.size:
        r, m = over[0]
        raise QuantizationError(f"{name}: pair (row {r}, cols {2 * m},{2 * m + 1}) has |a|+|b| = "
                                f"{int(pairs[r, m])} > {lim} (16-bit overflow with |x| <= {x_max})")


def enforce_pair_limit(q: np.ndarray, *, x_max: int = INT8_LIMIT, acc_max: int = ACC16_MAX) -> np.ndarray:
    """Return a copy of ``q`` whose adjacent pairs obey the pair rule.

    Violating pairs have both magnitudes scaled down proportionally (rounded
    toward zero), which changes the fewest, smallest weights.
    """
    q = _as_matrix(q, "weights")
    lim = pair_limit(x_max, acc_max)
    out = np.clip(q.astype(np.int32), -INT8_LIMIT, INT8_LIMIT)
    cols = out.shape[1] - out.shape[1] % 2
    a, b = out[:, 0:cols:2], out[:, 1:cols:2]
    s = np.abs(a) + np.abs(b)
    over = s > lim
    if np.any(over):
        f = np.where(over, lim / np.maximum(s, 1), 1.0)
        out[:, 0:cols:2] = np.trunc(a * f).astype(np.int32)
        out[:, 1:cols:2] = np.trunc(b * f).astype(np.int32)
    return out.astype(np.int8)


def quantize_int8(w: np.ndarray, *, x_max: int = INT8_LIMIT,
                  acc_max: int = ACC16_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a float matrix to int8 with one scale per output row.

    Parameters
    ----------
    w : np.ndarray
        Float matrix (rows, cols); must be finite.
    x_max, acc_max : int
        Pair-rule parameters (see :func:`check_int8_weights`).

    Returns
    -------
    q : np.ndarray
        int8 (rows, cols) in [-127, 127], pair rule satisfied.
    scale : np.ndarray
        float32 (rows,): ``w ~= scale[:, None] * q``. The per-element error is
        at most ``scale/2`` = ``max|w_row| / 254`` (rows touched by the pair
        rule excepted).
    """
    w = _as_matrix(w, "weights").astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise QuantizationError("weights contain NaN or infinity")
    amax = np.max(np.abs(w), axis=1)
    scale = np.where(amax > 0, amax / INT8_LIMIT, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.astype(np.float64)[:, None]), -INT8_LIMIT, INT8_LIMIT).astype(np.int8)
    q = enforce_pair_limit(q, x_max=x_max, acc_max=acc_max)
    return q, scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``scale[:, None] * q`` as float32."""
    q = _as_matrix(q, "weights")
    scale = np.asarray(scale, dtype=np.float32).ravel()
    if scale.shape[0] != q.shape[0]:
        raise QuantizationError(f"scale has {scale.shape[0]} entries for {q.shape[0]} rows")
    return (scale[:, None] * q.astype(np.float32)).astype(np.float32)


def quantize_input(x: np.ndarray, input_scale: float = 0.0) -> tuple[np.ndarray, float]:
    """Numpy model of the kernels' input quantization.

    ``input_scale > 0`` fixes the step; 0 uses ``max|x| / 127``. Values
    saturate at +-127; rounding is to nearest, ties to even (as in C).
    Returns ``(xq int8, step)``.
    """
    x = np.asarray(x, dtype=np.float32).ravel()
    if input_scale > 0:
        step, inv = np.float32(input_scale), np.float32(1.0) / np.float32(input_scale)
    else:
        a = np.abs(x)
        m = np.float32(np.max(np.where(np.isnan(a), 0, a))) if x.size else np.float32(0)  # NaN ignored
        if m > 0:
            step, inv = m * np.float32(1.0 / 127.0), np.float32(127.0) / m
        else:
            step, inv = np.float32(0), np.float32(0)
    with np.errstate(invalid="ignore"):
        v = x * inv
    v = np.clip(np.where(np.isnan(v), -127, v), -127, 127)  # NaN saturates to -127 as in C
    return np.rint(v).astype(np.int8), float(step)


def simulate_pair_int16(q: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Integer matvec as the non-dotprod NEON path computes it.

    Products of columns (2m, 2m+1) are summed and wrapped to int16 (as
    ``vpaddq_s16`` does) before widening to int32. Equals the exact result
    ``q @ xq`` iff no pair overflows; used to demonstrate the pair rule.
    """
    q = _as_matrix(q, "weights").astype(np.int32)
    xq = np.asarray(xq).astype(np.int32).ravel()
    if xq.shape[0] != q.shape[1]:
        raise QuantizationError(f"x has {xq.shape[0]} entries for {q.shape[1]} columns")
    p = q * xq[None, :]
    if p.shape[1] % 2:
        p = np.pad(p, ((0, 0), (0, 1)))
    pair = p[:, 0::2] + p[:, 1::2]
    wrapped = ((pair + 32768) % 65536) - 32768
    return wrapped.sum(axis=1).astype(np.int32)
