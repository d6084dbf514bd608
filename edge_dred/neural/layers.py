"""Weight-file layout of dense/GRU layers, and the numpy float reference math.

The vocoder and the neural PLC (and anything else running on
:mod:`edge_dred.kernels`) store their layers in :mod:`edge_dred.quantize.weightfile` files
with one naming convention, so that the int8 runtime and the float reference
are built from the *same* file:

``<layer>.q`` int8 (rows, cols), ``<layer>.scale`` float32 (rows,)
    per-row int8 weights, ``w ~= scale[:, None] * q``;
``<layer>.w`` float32 (rows, cols)
    a layer kept in float (tiny layers whose output is exponentiated);
``<layer>.bias`` float32 (rows,)
``<layer>.mask`` uint8 (row blocks, col blocks)
    present for block-sparse (8x4) layers; ``q`` is already zero outside it;
``<layer>.diag`` float32 (rows,)
    dense diagonal kept out of a pruned recurrent matrix (added back as
    ``diag[r] * x[r % cols]``).

A GRU ``g`` is two layers, ``g.ih`` (3H, I) and ``g.hh`` (3H, H), gates
stacked r, z, n as in ``torch.nn.GRUCell``.

The reference functions (:func:`dense`, :func:`gru_step`, :func:`glu`) are
plain float64 numpy versions of the kernels' maths; tests compare the int8
runtime against them.
"""
from __future__ import annotations

from typing import Mapping, MutableMapping

import numpy as np

from ..constants import NB_FEATURES
from ..models.loader import ModelFileError, load_weight_file

__all__ = [
    "LayerFileError", "export_linear", "export_gru", "linear_shape", "load_linear", "load_gru",
    "float_linear", "float_gru", "dense", "glu", "gru_step", "sigmoid",
]


class LayerFileError(ValueError):
    """A layer missing from, or inconsistent in, a weight file's arrays."""


# ----------------------------------------------------------------- export

def export_linear(out: MutableMapping[str, np.ndarray], name: str, weight: np.ndarray,
                  bias: np.ndarray | None = None, *, mode: str = "int8", density: float | None = None,
                  split_diag: bool = False) -> dict[str, float]:
    """Quantize one (rows, cols) layer into ``out`` under ``name``.

    Parameters
    ----------
    out : mutable mapping
        Array dict later passed to :func:`edge_dred.quantize.write_weights`.
    name : str
        Layer name.
    weight, bias : np.ndarray
        Float weights (rows = outputs, like ``torch.nn.Linear``) and bias.
    mode : {"int8", "sparse", "float"}
    density : float, optional
        "sparse": fraction of 8x4 blocks kept (by energy).
    split_diag : bool
        Keep the diagonal(s) of a stacked square recurrent matrix in float
        (implied by "sparse" for matrices whose rows are a multiple of cols).

    Returns
    -------
    dict
        ``{"params": kept weights, "rel_err": ||w - w_q|| / ||w||}``.
    """
    from edge_dred.quantize import apply_block_mask, block_mask, quantize_int8, split_diagonal

    w = np.asarray(weight, np.float32)
    if w.ndim != 2:
        raise LayerFileError(f"{name}: weight must be 2-D, got {w.shape}")
    rows, cols = w.shape
    b = np.zeros(rows, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(rows)
    out[f"{name}.bias"] = b
    if mode == "float":
        out[f"{name}.w"] = w
        return {"params": float(w.size), "rel_err": 0.0}
    if mode not in ("int8", "sparse"):
        raise LayerFileError(f"{name}: mode must be int8, sparse or float, got {mode!r}")
    diag = None
    work = w
    if (split_diag or mode == "sparse") and rows % cols == 0:
        work, diag = split_diagonal(w)
        out[f"{name}.diag"] = diag.astype(np.float32)
    if mode == "sparse":
        if density is None:
            raise LayerFileError(f"{name}: sparse mode needs a density")
        mask = block_mask(work, density)
        work = apply_block_mask(work, mask)
        out[f"{name}.mask"] = mask.astype(np.uint8)
    q, scale = quantize_int8(work)
    out[f"{name}.q"] = q
    out[f"{name}.scale"] = scale.astype(np.float32)
    approx = scale[:, None] * q.astype(np.float32)
    kept = int(np.count_nonzero(q)) + (0 if diag is None else rows)
    if diag is not None:
        r = np.arange(rows)
        approx[r, r % cols] += diag
    err = float(np.linalg.norm(w - approx) / max(np.linalg.norm(w), 1e-30))
    return {"params": float(kept), "rel_err": err}


def export_gru(out: MutableMapping[str, np.ndarray], name: str, weight_ih: np.ndarray, weight_hh: np.ndarray,
               bias_ih: np.ndarray, bias_hh: np.ndarray, *, rec_mode: str = "int8",
               density: float | None = None) -> dict[str, float]:
    """Quantize a torch ``GRUCell``'s weights into ``out`` as ``name.ih`` / ``name.hh``."""
    a = export_linear(out, f"{name}.ih", weight_ih, bias_ih, mode="int8")
    b = export_linear(out, f"{name}.hh", weight_hh, bias_hh, mode=rec_mode, density=density)
    return {"params": a["params"] + b["params"], "rel_err": max(a["rel_err"], b["rel_err"])}


# ------------------------------------------------------------------- load

def _get(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return arrays[key]
    except KeyError:
        raise LayerFileError(f"weight file lacks array {key!r}") from None


def linear_shape(arrays: Mapping[str, np.ndarray], name: str) -> tuple[int, int]:
    """(rows, cols) of layer ``name``."""
    w = arrays.get(f"{name}.q")
    if w is None:
        w = _get(arrays, f"{name}.w")
    if w.ndim != 2:
        raise LayerFileError(f"{name}: weights must be 2-D, got {w.shape}")
    return int(w.shape[0]), int(w.shape[1])


def _checked(arrays: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                  np.ndarray, np.ndarray | None, np.ndarray | None]:
    rows, cols = linear_shape(arrays, name)
    bias = np.asarray(_get(arrays, f"{name}.bias"), np.float32)
    if bias.shape != (rows,):
        raise LayerFileError(f"{name}.bias has shape {bias.shape}, expected ({rows},)")
    q = arrays.get(f"{name}.q")
    w = arrays.get(f"{name}.w")
    scale = diag = mask = None
    if q is not None:
        if q.dtype != np.int8:
            raise LayerFileError(f"{name}.q must be int8, got {q.dtype}")
        scale = np.asarray(_get(arrays, f"{name}.scale"), np.float32)
        if scale.shape != (rows,) or not np.all(np.isfinite(scale)):
            raise LayerFileError(f"{name}.scale must be {rows} finite floats")
    elif w.dtype != np.float32 or not np.all(np.isfinite(w)):
        raise LayerFileError(f"{name}.w must be finite float32")
    if f"{name}.diag" in arrays:
        diag = np.asarray(arrays[f"{name}.diag"], np.float32)
        if diag.shape != (rows,) or rows % cols:
            raise LayerFileError(f"{name}.diag has shape {diag.shape} for a {rows}x{cols} layer")
    if f"{name}.mask" in arrays:
        from edge_dred.quantize import block_grid

        mask = np.asarray(arrays[f"{name}.mask"]).astype(bool)
        if mask.shape != block_grid((rows, cols)):
            raise LayerFileError(f"{name}.mask has shape {mask.shape}, expected {block_grid((rows, cols))}")
    if not np.all(np.isfinite(bias)):
        raise LayerFileError(f"{name}.bias is not finite")
    return (q if q is None else np.ascontiguousarray(q)), scale, bias, diag, mask


def load_linear(arrays: Mapping[str, np.ndarray], name: str):
    """Kernel layer (:class:`edge_dred.kernels.Linear`) for ``name``."""
    from edge_dred.kernels import KernelInputError, linear_from_int8, make_linear

    q, scale, bias, diag, mask = _checked(arrays, name)
    try:
        if q is None:
            return make_linear(np.asarray(arrays[f"{name}.w"]), bias, mode="float", diag=diag)
        return linear_from_int8(q, scale, bias, mask=mask, diag=diag)
    except KernelInputError as e:
        raise LayerFileError(f"{name}: {e}") from None


def load_gru(arrays: Mapping[str, np.ndarray], name: str):
    """Kernel GRU cell (:class:`edge_dred.kernels.GRUCell`) for ``name``."""
    from edge_dred.kernels import GRUCell

    ih, hh = load_linear(arrays, f"{name}.ih"), load_linear(arrays, f"{name}.hh")
    if hh.rows != 3 * hh.cols or ih.rows != hh.rows:
        raise LayerFileError(f"{name}: GRU shapes ih {ih.rows}x{ih.cols}, hh {hh.rows}x{hh.cols}")
    return GRUCell(ih, hh)


def float_linear(arrays: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Dequantized float64 (weight, bias) of ``name`` (diagonal added back)."""
    q, scale, bias, diag, _ = _checked(arrays, name)
    if q is None:
        w = np.asarray(arrays[f"{name}.w"], np.float64)
    else:
        w = scale.astype(np.float64)[:, None] * q.astype(np.float64)
    if diag is not None:
        w = w.copy()
        r = np.arange(w.shape[0])
        w[r, r % w.shape[1]] += diag
    return w, bias.astype(np.float64)


def float_gru(arrays: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dequantized (w_ih, w_hh, b_ih, b_hh) of GRU ``name``."""
    wi, bi = float_linear(arrays, f"{name}.ih")
    wh, bh = float_linear(arrays, f"{name}.hh")
    return wi, wh, bi, bh


# ------------------------------------------------------------ float math

def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float64."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def dense(layer: tuple[np.ndarray, np.ndarray], x: np.ndarray, activation: str = "none") -> np.ndarray:
    """``act(W x + b)`` for x (in,) or (T, in)."""
    w, b = layer
    y = np.asarray(x, np.float64) @ w.T + b
    if activation == "tanh":
        return np.tanh(y)
    if activation == "sigmoid":
        return sigmoid(y)
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation != "none":
        raise ValueError(f"unknown activation {activation!r}")
    return y


def glu(layer: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(W x + b)``."""
    return np.asarray(x, np.float64) * dense(layer, x, "sigmoid")


def gru_step(cell: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], x: np.ndarray,
             h: np.ndarray) -> np.ndarray:
    """One ``torch.nn.GRUCell`` step (reset-after form), float64."""
    wi, wh, bi, bh = cell
    H = wh.shape[1]
    gi = wi @ np.asarray(x, np.float64) + bi
    gh = wh @ np.asarray(h, np.float64) + bh
    r = sigmoid(gi[:H] + gh[:H])
    z = sigmoid(gi[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1.0 - z) * n + z * h


# ------------------------------------------------------------ model container

class LayerModel:
    """One network's weights, checked against its config; shared read-only by any number of streams.

    Subclasses name the weight file (``MODEL_NAME``, ``MODEL_VERSION``), a
    ``LABEL`` for error messages and a ``SHAPE`` class (``from_dict``,
    ``linear_shapes``), and check anything else in :meth:`_check`.  Every
    model carries the feature normalisation ``feat_mean``/``feat_std``.

    Raises
    ------
    edge_dred.models.loader.ModelFileError
        Missing or mis-shaped arrays, bad config.
    """

    MODEL_NAME = ""
    MODEL_VERSION = ""
    LABEL = ""
    SHAPE: type = type(None)

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, object]) -> None:
        if not isinstance(meta.get("config"), dict):
            raise ModelFileError(f"{self.LABEL} weight file has no 'config' in its metadata")
        self.shape = self.SHAPE.from_dict(meta["config"])
        self.meta = dict(meta)
        self.arrays = dict(arrays)
        self._float: dict | None = None
        try:
            for name, want in self.shape.linear_shapes().items():
                got = linear_shape(self.arrays, name)
                if got != want:
                    raise ModelFileError(f"{self.LABEL} layer {name} has shape {got}, config says {want}")
            self.feat_mean = self._vec("feat_mean", (NB_FEATURES,))
            self.feat_std = self._vec("feat_std", (NB_FEATURES,))
            if np.any(self.feat_std <= 0):
                raise ModelFileError(f"{self.LABEL} feat_std must be positive")
            self._check()
        except LayerFileError as e:
            raise ModelFileError(f"{self.LABEL} weights: {e}") from None

    def _check(self) -> None:
        """Further checks and set-up of a subclass (may raise LayerFileError or ModelFileError)."""

    def _vec(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = self.arrays.get(name)
        if a is None:
            raise ModelFileError(f"{self.LABEL} weight file lacks {name!r}")
        if a.shape != shape or not np.all(np.isfinite(a)):
            raise ModelFileError(f"{self.LABEL} {name} must be finite with shape {shape}, got {a.shape}")
        return np.asarray(a, np.float32)

    @classmethod
    def load(cls, path=None, models_dir=None):
        """Load the shipped model (manifest-checked), or the weight file at ``path``."""
        arrays, meta = load_weight_file(cls.MODEL_NAME, cls.MODEL_VERSION, models_dir=models_dir, path=path)
        return cls(arrays, meta)

    @property
    def weight_bytes(self) -> int:
        """Bytes of all arrays (what the weight file holds)."""
        return int(sum(a.nbytes for a in self.arrays.values()))
