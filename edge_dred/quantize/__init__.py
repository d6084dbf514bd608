"""Offline quantization tools feeding the int8 kernels (numpy only).

* :mod:`edge_dred.quantize.int8` -- per-row int8 quantization, the NEON 16-bit pair
  rule (checker, enforcement, numpy simulation), input quantization model.
* :mod:`edge_dred.quantize.sparsity` -- 8x4 block masks by magnitude with dense
  recurrent diagonals; mask helpers for training.
* :mod:`edge_dred.quantize.weightfile` -- versioned, checksummed weight files.

Example
-------
>>> q, scale = quantize_int8(w)                   # w: float (rows, cols)
>>> check_int8_weights(q)                         # raises QuantizationError
>>> mask, diag, w_off = recurrent_block_mask(w_hh, density=0.25)
>>> write_weights("m.bin", {"gru.w_hh": q}, {"model": "plc", "version": "1"})
>>> arrays, meta = read_weights("m.bin", expect_model="plc", expect_version="1",
...                             expect_arrays={"gru.w_hh": (768, 256)})
"""
from .int8 import (ACC16_MAX, INT8_LIMIT, QuantizationError, check_int8_weights, dequantize_int8,
                   enforce_pair_limit, pair_limit, quantize_input, quantize_int8, simulate_pair_int16)
from .sparsity import (BLOCK_COLS, BLOCK_ROWS, apply_block_mask, block_energy, block_grid, block_mask,
                       expand_block_mask, mask_density, pad_to_blocks, recurrent_block_mask, split_diagonal)
from .weightfile import FORMAT_VERSION, MAGIC, WeightFileError, read_weights, write_weights

__all__ = [
    "ACC16_MAX", "INT8_LIMIT", "QuantizationError", "check_int8_weights", "dequantize_int8",
    "enforce_pair_limit", "pair_limit", "quantize_input", "quantize_int8", "simulate_pair_int16",
    "BLOCK_COLS", "BLOCK_ROWS", "apply_block_mask", "block_energy", "block_grid", "block_mask",
    "expand_block_mask", "mask_density", "pad_to_blocks", "recurrent_block_mask", "split_diagonal",
    "FORMAT_VERSION", "MAGIC", "WeightFileError", "read_weights", "write_weights",
]
