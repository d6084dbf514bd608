"""8x4 block sparsity helpers (numpy only, usable from training code).

Blocks are 8 output rows x 4 input columns, matching the kernels' packed
layout; matrices are zero-padded to multiples of (8, 4). Training code applies
masks with ``w * torch.from_numpy(expand_block_mask(mask, w.shape))``.
Recurrent matrices keep their diagonals dense: :func:`split_diagonal` moves
them out before pruning (the GRU kernel adds them back as a float vector).
"""
from __future__ import annotations

import math

import numpy as np

from .int8 import QuantizationError

BLOCK_ROWS = 8
BLOCK_COLS = 4


def _matrix(w: np.ndarray) -> np.ndarray:
    a = np.asarray(w)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise QuantizationError(f"expected a non-empty 2-D matrix, got shape {a.shape}")
    return a


def block_grid(shape: tuple[int, int]) -> tuple[int, int]:
    """Number of (row groups, column blocks) covering a (rows, cols) matrix."""
    rows, cols = shape
    return (rows + BLOCK_ROWS - 1) // BLOCK_ROWS, (cols + BLOCK_COLS - 1) // BLOCK_COLS


def pad_to_blocks(w: np.ndarray) -> np.ndarray:
    """Zero-pad a matrix to multiples of (8, 4)."""
    w = _matrix(w)
    g, b = block_grid(w.shape)
    return np.pad(w, ((0, g * BLOCK_ROWS - w.shape[0]), (0, b * BLOCK_COLS - w.shape[1])))


def block_energy(w: np.ndarray) -> np.ndarray:
    """Sum of squares of each 8x4 block, shape block_grid(w.shape)."""
    p = pad_to_blocks(np.asarray(w, dtype=np.float64))
    g, b = block_grid(np.shape(w))
    return (p.reshape(g, BLOCK_ROWS, b, BLOCK_COLS) ** 2).sum(axis=(1, 3))


def block_mask(w: np.ndarray, density: float) -> np.ndarray:
    """Keep the ``ceil(density * n_blocks)`` highest-energy 8x4 blocks.

    Parameters
    ----------
    w : np.ndarray
        Matrix (rows, cols), e.g. a recurrent matrix with its diagonal removed.
    density : float
        Fraction of blocks kept, in (0, 1].

    Returns
    -------
    np.ndarray
        bool mask of shape block_grid(w.shape). Ties keep the lower index.
    """
    if not (0.0 < float(density) <= 1.0):
        raise QuantizationError(f"density must be in (0, 1], got {density}")
    e = block_energy(w)
    n = e.size
    keep = min(n, max(1, math.ceil(float(density) * n)))
    order = np.argsort(-e.ravel(), kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(e.shape)


def expand_block_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Element-wise float32 0/1 mask of ``shape`` from a block mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != block_grid(shape):
        raise QuantizationError(f"block mask shape {mask.shape} does not cover a {shape} matrix "
                                f"(expected {block_grid(shape)})")
    full = np.repeat(np.repeat(mask, BLOCK_ROWS, axis=0), BLOCK_COLS, axis=1)
    return full[: shape[0], : shape[1]].astype(np.float32)


def apply_block_mask(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the pruned blocks of ``w`` (returns a new array of w's dtype)."""
    w = _matrix(w)
    return (w * expand_block_mask(mask, w.shape)).astype(w.dtype)


def mask_density(mask: np.ndarray) -> float:
    """Fraction of blocks kept."""
    mask = np.asarray(mask, dtype=bool)
    return float(mask.mean()) if mask.size else 0.0


def split_diagonal(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the diagonals of each stacked square block out of a recurrent matrix.

    For ``w`` of shape (k*H, H) (e.g. torch's weight_hh, k = 3 gates),
    returns ``(w_off, diag)`` with ``diag[g*H + i] = w[g*H + i, i]`` and
    ``w_off`` equal to ``w`` with those entries zeroed.
    """
    w = _matrix(w)
    rows, H = w.shape
    if rows % H:
        raise QuantizationError(f"recurrent matrix rows ({rows}) must be a multiple of cols ({H})")
    r = np.arange(rows)
    c = r % H
    diag = np.asarray(w[r, c]).copy()
    off = np.array(w, copy=True)
    off[r, c] = 0
    return off, diag


def recurrent_block_mask(w: np.ndarray, density: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal-preserving pruning of a recurrent matrix.

    Returns ``(mask, diag, w_off_pruned)``: the block mask chosen on the
    off-diagonal part, the dense diagonal, and the pruned off-diagonal matrix.
    """
    off, diag = split_diagonal(w)
    mask = block_mask(off, density)
    return mask, diag, apply_block_mask(off, mask)
