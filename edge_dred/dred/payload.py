"""DRED payload: header, initial state and latents in one range-coded stream.

Layout (all range-coded, in this order): version (4 bits), q0 (4 bits),
dQ (3 bits), qmax (4 bits), offset (2 bits), number of chunks - 1 (uniform
over 26), the S state integers under the state tables, then the latent
vectors newest first, chunk j under level ``min(qmax, q0 + (dQ*j + 4)//8)``.

The payload carries integers only; (de)quantization happens in
`edge_dred.dred.quantizer`.  The parser treats its input as hostile: the
length is bounded, the chunk count is bounded, every value is bounded by the
symbol coder, and the buffer length must be exactly what the encoder would
have produced for the decoded symbols (this rejects truncated, padded and
nearly all corrupted payloads; see `RangeDecoder.ends_exactly`).  It is one
compiled call (`_entropy.parse_payload_into`); a receiver that needs only the
newest chunks asks for those (``chunks=``) and gets the same accept/reject
decision, since the whole stream is still decoded to be checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _entropy
from .quantizer import MAX_ABS_K, MAX_DQ, N_LEVELS, EntropyTables, chunk_levels

DRED_VERSION = 1
MAX_CHUNKS = 26
MAX_OFFSET = 3
MAX_PAYLOAD_BYTES = 1000
# Enough for the worst case (26 x 32 + 64 symbols of ~26 bits each) so that
# oversize payloads are reported by size rather than by a buffer overflow.
_ENCODER_CAPACITY = 8192
# Model cost of the header (for rate estimates).
HEADER_BITS = 4 + 4 + 3 + 4 + 2 + float(np.log2(MAX_CHUNKS))


class DredPayloadError(ValueError):
    """A payload that cannot be encoded or parsed."""


@dataclass(kw_only=True, eq=False)
class DredPayload:
    """Integer content of one DRED payload.

    Attributes
    ----------
    version : int
        Bitstream version (only `DRED_VERSION` is supported).
    q0, dq, qmax : int
        Quantizer-level schedule (0..15, 0..7, 0..15).
    offset : int
        Newest chunk's position relative to the packet end, in 10 ms frames (0..3).
    state_k : numpy.ndarray
        int32 (S,) quantized initial state.
    latents_k : numpy.ndarray or list of numpy.ndarray
        int32 (n, D) quantized latents (or n (D,) rows), newest first: all
        1..26 of them, or the newest ones of a partial parse.
    coded_chunks : int, optional
        Chunks the payload carries, when `latents_k` may hold fewer
        (set by `parse_payload`); None: all of them are in `latents_k`.
    """

    version: int = DRED_VERSION
    q0: int
    dq: int
    qmax: int = N_LEVELS - 1
    offset: int = 0
    state_k: np.ndarray
    latents_k: np.ndarray | list[np.ndarray] = field(default_factory=list)
    coded_chunks: int | None = None

    @property
    def n_chunks(self) -> int:
        """Number of 40 ms latent chunks the payload carries."""
        return len(self.latents_k) if self.coded_chunks is None else self.coded_chunks

    @property
    def partial(self) -> bool:
        """True when `latents_k` holds only the newest of the chunks."""
        return len(self.latents_k) < self.n_chunks

    def levels(self) -> np.ndarray:
        """Quantizer level of each chunk, newest first."""
        return chunk_levels(self.n_chunks, self.q0, self.dq, self.qmax)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DredPayload):
            return NotImplemented
        return ((self.version, self.q0, self.dq, self.qmax, self.offset, self.n_chunks)
                == (other.version, other.q0, other.dq, other.qmax, other.offset, other.n_chunks)
                and np.array_equal(self.state_k, other.state_k)
                and len(self.latents_k) == len(other.latents_k)
                and all(np.array_equal(a, b) for a, b in zip(self.latents_k, other.latents_k)))


def _int_array(name: str, v: object, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(v)
    if a.shape != shape:
        raise DredPayloadError(f"{name} has shape {a.shape}, expected {shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise DredPayloadError(f"{name} must be integers, got {a.dtype}")
    if a.size and (int(a.max()) > MAX_ABS_K or int(a.min()) < -MAX_ABS_K):
        raise DredPayloadError(f"{name} has |k| > {MAX_ABS_K}")
    return np.ascontiguousarray(a, dtype=np.int32)


def _check_header(p: DredPayload) -> None:
    if p.version != DRED_VERSION:
        raise DredPayloadError(f"unsupported version {p.version!r}, expected {DRED_VERSION}")
    for name, hi in (("q0", N_LEVELS - 1), ("dq", MAX_DQ), ("qmax", N_LEVELS - 1), ("offset", MAX_OFFSET)):
        v = getattr(p, name)
        if not isinstance(v, (int, np.integer)) or not 0 <= v <= hi:
            raise DredPayloadError(f"{name} must be an integer in [0, {hi}], got {v!r}")
    if not 1 <= len(p.latents_k) <= MAX_CHUNKS:
        raise DredPayloadError(f"need 1..{MAX_CHUNKS} latent chunks, got {len(p.latents_k)}")


def encode_payload(payload: DredPayload, tables: EntropyTables) -> bytes:
    """Range-code a payload.

    Parameters
    ----------
    payload : DredPayload
        Integers to send; state length S and latent length D must match
        ``tables``, every |k| <= 1023.
    tables : EntropyTables

    Returns
    -------
    bytes
        The coded payload, at most `MAX_PAYLOAD_BYTES` long.

    Raises
    ------
    DredPayloadError
        On invalid fields or if the coded size exceeds `MAX_PAYLOAD_BYTES`.
    """
    _check_header(payload)
    if payload.partial:
        raise DredPayloadError(f"cannot encode a partial payload ({len(payload.latents_k)} of "
                               f"{payload.n_chunks} chunks)")
    state = _int_array("state_k", payload.state_k, (tables.state_dim,))
    try:
        latents = np.asarray(payload.latents_k)
    except ValueError:
        raise DredPayloadError(f"latents_k must be {tables.latent_dim}-element vectors") from None
    latents = _int_array("latents_k", latents, (len(payload.latents_k), tables.latent_dim))
    data = encode_validated(tables, payload.q0, payload.dq, payload.qmax, payload.offset, state, latents,
                            version=payload.version)
    if data is None:
        raise DredPayloadError(f"payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    return data


def encode_validated(tables: EntropyTables, q0: int, dq: int, qmax: int, offset: int,
                     state: np.ndarray, latents: np.ndarray, version: int = DRED_VERSION) -> bytes | None:
    """Code already-validated fields (int32 state (S,), latents (n, D)); None if over 1000 bytes.

    For callers that built the integers themselves (rate control); others
    should use `encode_payload`, which checks everything first.
    """
    enc = _entropy.RangeEncoder(_ENCODER_CAPACITY)
    _encode_header(enc, version, q0, dq, qmax, offset, latents.shape[0])
    _entropy.encode_vector(enc, state, tables.state_p0_q15, tables.state_decay_q15)
    _entropy.encode_chunks(enc, latents, tables.p0_q15, tables.decay_q15,
                           chunk_levels(latents.shape[0], q0, dq, qmax))
    data = enc.finish()
    return data if len(data) <= MAX_PAYLOAD_BYTES else None


def _encode_header(enc: _entropy.RangeEncoder, version: int, q0: int, dq: int, qmax: int,
                   offset: int, n_chunks: int) -> None:
    enc.encode_bits(version, 4)
    enc.encode_bits(q0, 4)
    enc.encode_bits(dq, 3)
    enc.encode_bits(qmax, 4)
    enc.encode_bits(offset, 2)
    enc.encode_uint(n_chunks - 1, MAX_CHUNKS)



_parse_cache: tuple = (None, None)   # (tables, their ParseTables), replaced as one object


def parse_tables(tables: EntropyTables) -> _entropy.ParseTables:
    """The compiled parser's symbol models of ``tables`` (built once, reused while the tables are)."""
    global _parse_cache
    cache = _parse_cache
    if cache[0] is not tables:
        cache = (tables, _entropy.ParseTables(tables.p0_q15, tables.decay_q15, tables.state_p0_q15,
                                              tables.state_decay_q15))
        _parse_cache = cache
    return cache[1]


def parse_payload(data: bytes, tables: EntropyTables, max_chunks: int = MAX_CHUNKS, *,
                  chunks: int | None = None) -> DredPayload:
    """Decode a payload received from the network.

    Parameters
    ----------
    data : bytes-like
        The payload exactly as framed (1..1000 bytes).
    tables : EntropyTables
        Tables the sender used (their D and S define the layout).
    max_chunks : int
        Reject payloads announcing more chunks than this (1..26).
    chunks : int, optional
        Keep only the newest ``chunks`` latents (1..26), what a hole needs;
        the rest are decoded and checked but not kept, so exactly the same
        payloads are rejected.  Default: all.

    Returns
    -------
    DredPayload
        Bounded integers: |k| <= 1023, 1 <= n_chunks <= max_chunks; its
        `latents_k` is an int32 (min(chunks, n_chunks), D) array.

    Raises
    ------
    DredPayloadError
        For any malformed, truncated, padded or oversize input.
    """
    if not isinstance(max_chunks, (int, np.integer)) or not 1 <= max_chunks <= MAX_CHUNKS:
        raise DredPayloadError(f"max_chunks must be in [1, {MAX_CHUNKS}], got {max_chunks!r}")
    if chunks is None:
        chunks = MAX_CHUNKS
    elif isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or not 1 <= chunks <= MAX_CHUNKS:
        raise DredPayloadError(f"chunks must be in [1, {MAX_CHUNKS}], got {chunks!r}")
    if not isinstance(tables, EntropyTables):
        raise DredPayloadError("tables must be an EntropyTables")
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DredPayloadError(f"payload must be bytes-like, got {type(data).__name__}")
        data = bytes(memoryview(data))
    n = len(data)
    if not 1 <= n <= MAX_PAYLOAD_BYTES:
        raise DredPayloadError(f"payload length {n} outside [1, {MAX_PAYLOAD_BYTES}]")
    status, (version, q0, dq, qmax, offset, n_chunks, expected), state, latents = _entropy.parse_payload_into(
        data, parse_tables(tables), int(max_chunks), int(chunks))
    if status:
        raise DredPayloadError(_PARSE_ERRORS[status].format(version=version, n_chunks=n_chunks, max_chunks=max_chunks,
                                                            n=n, expected=expected))
    return DredPayload(version=version, q0=q0, dq=dq, qmax=qmax, offset=offset, state_k=state, latents_k=latents,
                       coded_chunks=n_chunks)


_PARSE_ERRORS = {
    _entropy.PARSE_VERSION: "unsupported payload version {version}",
    _entropy.PARSE_TOO_MANY_CHUNKS: "payload announces {n_chunks} chunks, at most {max_chunks} accepted",
    _entropy.PARSE_MALFORMED: "malformed payload: malformed escape code (|k| > 1023)",
    _entropy.PARSE_TRUNCATED: "truncated payload: needs more than its {n} bytes",
    _entropy.PARSE_LENGTH: "payload length {n} does not match the coded content ({expected} bytes)",
}
