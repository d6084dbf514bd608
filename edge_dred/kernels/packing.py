"""Pack logical matrices into the kernels' layouts (numpy only).

* float:  rows padded to 8; per 8-row group, per column, the 8 weights.
* int8:   rows padded to 8, cols to 4; per 8-row group, per 4-column block,
          32 bytes (row-major inside the 8x4 block).
* sparse: the kept 8x4 blocks only, plus an int32 index: per row group the
          number of kept blocks followed by their first column.
"""
from __future__ import annotations

import numpy as np

from ._kernels import KernelInputError


def _mat(w: np.ndarray, dtype, what: str) -> np.ndarray:
    a = np.asarray(w)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise KernelInputError(f"{what}: expected a non-empty 2-D matrix, got shape {a.shape}")
    if dtype == np.int8 and a.dtype != np.int8:
        raise KernelInputError(f"{what}: expected int8, got {a.dtype}")
    return a.astype(dtype, copy=False)


def _pad(a: np.ndarray, rmul: int, cmul: int) -> np.ndarray:
    r, c = a.shape
    return np.pad(a, ((0, -r % rmul), (0, -c % cmul)))


def pack_float(w: np.ndarray) -> np.ndarray:
    """float32 (rows, cols) -> packed 1-D float32 of length ceil8(rows) * cols."""
    a = _pad(_mat(w, np.float32, "float weights"), 8, 1)
    g = a.shape[0] // 8
    return np.ascontiguousarray(a.reshape(g, 8, a.shape[1]).transpose(0, 2, 1)).ravel()


def unpack_float(p: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`pack_float`."""
    g = (rows + 7) // 8
    return np.asarray(p, np.float32).reshape(g, cols, 8).transpose(0, 2, 1).reshape(g * 8, cols)[:rows]


def pack_int8(q: np.ndarray) -> np.ndarray:
    """int8 (rows, cols) -> packed 1-D int8 of length ceil8(rows) * ceil4(cols)."""
    a = _pad(_mat(q, np.int8, "int8 weights"), 8, 4)
    g, b = a.shape[0] // 8, a.shape[1] // 4
    return np.ascontiguousarray(a.reshape(g, 8, b, 4).transpose(0, 2, 1, 3)).ravel()


def unpack_int8(p: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`pack_int8`."""
    g, b = (rows + 7) // 8, (cols + 3) // 4
    return np.asarray(p, np.int8).reshape(g, b, 8, 4).transpose(0, 2, 1, 3).reshape(g * 8, b * 4)[:rows, :cols]


def nonzero_block_mask(q: np.ndarray) -> np.ndarray:
    """bool (ceil8(rows)/8, ceil4(cols)/4): blocks holding any non-zero weight."""
    a = _pad(np.asarray(q), 8, 4)
    g, b = a.shape[0] // 8, a.shape[1] // 4
    return np.any(a.reshape(g, 8, b, 4) != 0, axis=(1, 3))


def pack_sparse_int8(q: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pack the blocks selected by ``mask`` (default: non-zero blocks).

    Returns ``(weights int8, idx int32)``; weights outside the mask are dropped.
    """
    a = _pad(_mat(q, np.int8, "int8 weights"), 8, 4)
    g, b = a.shape[0] // 8, a.shape[1] // 4
    blocks = a.reshape(g, 8, b, 4).transpose(0, 2, 1, 3)  # (g, b, 8, 4)
    m = nonzero_block_mask(q) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (g, b):
        raise KernelInputError(f"block mask shape {m.shape}, expected {(g, b)} for a {q.shape} matrix")
    idx = []
    for gi in range(g):
        cols = np.flatnonzero(m[gi])
        idx.append(len(cols))
        idx.extend((4 * cols).tolist())
    packed = np.ascontiguousarray(blocks[m]).ravel()
    return packed.astype(np.int8), np.asarray(idx, dtype=np.int32)


def unpack_sparse_int8(p: np.ndarray, idx: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`pack_sparse_int8` (dropped blocks come back as zeros)."""
    g, b = (rows + 7) // 8, (cols + 3) // 4
    out = np.zeros((g * 8, b * 4), np.int8)
    blocks = np.asarray(p, np.int8).reshape(-1, 8, 4)
    k = pos = 0
    for gi in range(g):
        n = int(idx[pos])
        pos += 1
        for _ in range(n):
            c = int(idx[pos])
            pos += 1
            out[gi * 8:gi * 8 + 8, c:c + 4] = blocks[k]
            k += 1
    return out[:rows, :cols]
