"""DRED bitstream: quantizer, range coder, payload format and rate control.

``quantizer`` is pure numpy; ``payload`` and ``ratecontrol`` need the
compiled range coder ``_entropy``.  Their names are re-exported lazily so that
importing this package (e.g. for a sibling module) never requires the
compiled extension.
"""
from __future__ import annotations

from typing import Any

from .quantizer import (MAX_ABS_K, N_LEVELS, EntropyTables, QuantizerError, chunk_level, chunk_levels,
                        dequantize, ideal_bits, prob_to_q15, quantize)

_LAZY = {
    "DredPayload": "payload", "DredPayloadError": "payload", "encode_payload": "payload",
    "parse_payload": "payload", "DRED_VERSION": "payload", "MAX_CHUNKS": "payload",
    "MAX_PAYLOAD_BYTES": "payload",
    "RateDecision": "ratecontrol", "RateControlError": "ratecontrol", "encode_dred": "ratecontrol",
    "RangeEncoder": "_entropy", "RangeDecoder": "_entropy", "encode_vector": "_entropy",
    "decode_vector": "_entropy", "EntropyError": "_entropy", "EntropyDecodeError": "_entropy",
}

__all__ = ["MAX_ABS_K", "N_LEVELS", "EntropyTables", "QuantizerError", "chunk_level", "chunk_levels",
           "dequantize", "ideal_bits", "prob_to_q15", "quantize", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'edge_dred.dred' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{mod}", __name__), name)
