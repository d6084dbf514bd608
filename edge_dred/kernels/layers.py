"""Build kernel layers from float or already-quantized weights."""
from __future__ import annotations

import numpy as np

from edge_dred.quantize.int8 import QuantizationError, check_int8_weights, quantize_int8
from edge_dred.quantize.sparsity import apply_block_mask, block_mask, split_diagonal

from ._kernels import GRUCell, KernelInputError, Linear
from .packing import pack_float, pack_int8, pack_sparse_int8

MODES = ("float", "int8", "sparse")


def linear_from_int8(q: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None, *,
                     mask: np.ndarray | None = None, sparse: bool = False, diag: np.ndarray | None = None,
                     input_scale: float = 0.0) -> Linear:
    """Layer from quantized weights ``w ~= scale[:, None] * q``.

    Parameters
    ----------
    q : np.ndarray
        int8 (rows, cols); checked with edge_dred.quantize.check_int8_weights.
    scale : np.ndarray
        float (rows,).
    bias, diag : np.ndarray, optional
        float (rows,).
    mask : np.ndarray, optional
        8x4 block mask; implies ``sparse``. Without it a sparse layer keeps
        the non-zero blocks.
    sparse : bool
        Use the block-sparse kernel.
    input_scale : float
        Input quantization step (0 = dynamic per call, 1/127 = libopus style
        for inputs in [-1, 1]).
    """
    q = np.asarray(q)
    try:
        check_int8_weights(q)
    except QuantizationError as e:
        raise KernelInputError(str(e)) from None
    rows, cols = q.shape
    scale = np.asarray(scale, np.float32).ravel()
    if scale.shape[0] != rows:
        raise KernelInputError(f"scale has {scale.shape[0]} entries for {rows} rows")
    if mask is not None or sparse:
        w, idx = pack_sparse_int8(q, mask)
        return Linear("sparse", rows, cols, w, scale=scale, idx=idx, bias=bias, diag=diag,
                      input_scale=input_scale)
    return Linear("int8", rows, cols, pack_int8(q), scale=scale, bias=bias, diag=diag, input_scale=input_scale)


def make_linear(weight: np.ndarray, bias: np.ndarray | None = None, *, mode: str = "int8",
                density: float | None = None, mask: np.ndarray | None = None, diag: np.ndarray | None = None,
                input_scale: float = 0.0) -> Linear:
    """Layer from a float matrix (rows = outputs, cols = inputs, as torch.nn.Linear).

    Parameters
    ----------
    weight : np.ndarray
        float (rows, cols).
    bias : np.ndarray, optional
    mode : {"float", "int8", "sparse"}
    density : float, optional
        "sparse": fraction of 8x4 blocks kept (by energy) when no mask is given.
    mask : np.ndarray, optional
        "sparse": explicit block mask.
    diag : np.ndarray, optional
        Dense diagonal added as ``diag[r] * x[r % cols]``.
    input_scale : float
        int8 modes: input quantization step (0 = dynamic).
    """
    if mode not in MODES:
        raise KernelInputError(f"mode must be one of {MODES}, got {mode!r}")
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise KernelInputError(f"weight: expected a non-empty 2-D matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise KernelInputError("weight contains NaN or infinity")
    if mode == "float":
        return Linear("float", w.shape[0], w.shape[1], pack_float(w), bias=bias, diag=diag)
    if mode == "sparse":
        if mask is None:
            if density is None:
                raise KernelInputError("sparse mode needs density or mask")
            mask = block_mask(w, density)
        w = apply_block_mask(w, mask)
    q, scale = quantize_int8(w)
    return linear_from_int8(q, scale, bias, mask=mask if mode == "sparse" else None, diag=diag,
                            input_scale=input_scale)


def make_gru(weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray | None = None,
             bias_hh: np.ndarray | None = None, *, mode: str = "int8", rec_mode: str | None = None,
             density: float | None = None, split_diag: bool = False, input_scale: float = 0.0,
             rec_input_scale: float = 0.0) -> GRUCell:
    """GRU cell from torch.nn.GRU-layout weights (gates stacked r, z, n).

    Parameters
    ----------
    weight_ih : (3H, I), weight_hh : (3H, H), bias_ih, bias_hh : (3H,)
    mode : str
        Input matrix storage ("float" or "int8").
    rec_mode : str, optional
        Recurrent storage ("float", "int8", "sparse"); defaults to ``mode``.
    density : float, optional
        Block density of the recurrent matrix for "sparse".
    split_diag : bool
        Keep the recurrent diagonals as a dense float vector (libopus style);
        implied by "sparse" so pruning never removes them.
    input_scale, rec_input_scale : float
        Input quantization steps (0 = dynamic; 1/127 suits h in [-1, 1]).
    """
    rec_mode = rec_mode or mode
    whh = np.asarray(weight_hh, dtype=np.float32)
    if whh.ndim != 2 or whh.shape[0] != 3 * whh.shape[1]:
        raise KernelInputError(f"weight_hh must be (3H, H), got {whh.shape}")
    diag = None
    if split_diag or rec_mode == "sparse":
        whh, diag = split_diagonal(whh)
    inp = make_linear(weight_ih, bias_ih, mode="int8" if mode == "sparse" else mode, input_scale=input_scale)
    rec = make_linear(whh, bias_hh, mode=rec_mode, density=density, diag=diag, input_scale=rec_input_scale)
    return GRUCell(inp, rec)


def conv1d_matrix(weight: np.ndarray) -> np.ndarray:
    """torch Conv1d weight (C_out, C_in, K) -> (C_out, K*C_in) for the conv1d op.

    Column ``k*C_in + c`` multiplies channel c of the frame (K-1-k)*dilation
    steps back (oldest tap first), matching a causal (left-padded) torch conv.
    """
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 3:
        raise KernelInputError(f"conv weight must be (C_out, C_in, K), got {w.shape}")
    return np.ascontiguousarray(w.transpose(0, 2, 1)).reshape(w.shape[0], -1)
