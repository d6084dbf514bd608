"""DRED rate control: how much redundancy, at which quantizer levels.

Given the encoder's latents (newest first), the initial state, a requested
redundancy duration and a byte budget, pick the finest (q0, dQ) schedule whose
payload fits, after dropping silent chunks at the old end.

Sizes are first estimated from the exact code lengths of the range coder's
integer model (a table lookup per symbol, vectorised over every level and
chunk at once), which matches the coded size to within a byte; the chosen
candidate is then really encoded and only accepted if its actual length fits.

Default budget: the product bar is an average of at most 80 bytes per 20 ms
packet for 1.04 s of redundancy, so 80 bytes per payload is the default cap;
the format allows up to 1000.  A stream's coder (`StreamCoder` as
`DredStreamEncoder` builds it) first searches only the schedules whose newest
chunk is at level `NEWEST_LEVEL_CAP` or finer: at 80 bytes the longest
payload would otherwise code its newest chunk, the one receivers use most,
at level 6-8.
"""
from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import numpy as np

from . import _entropy
from .payload import HEADER_BITS, MAX_CHUNKS, MAX_OFFSET, MAX_PAYLOAD_BYTES, encode_validated
from .quantizer import MAX_DQ, N_LEVELS, EntropyTables, chunk_levels

CHUNK_MS = 40
MAX_DURATION_MS = CHUNK_MS * MAX_CHUNKS  # 1040
DEFAULT_BUDGET_BYTES = 80
#: A stream's rate control keeps the newest chunk at this level or finer and carries fewer
#: chunks instead (at 80 bytes on training speech 0.7 s rather than 0.9 s): receivers rebuild
#: mostly the newest 40-200 ms, and a coarse newest chunk cost more there than the oldest chunks
#: gave (docs/training-log.md, "a finer newest chunk").
NEWEST_LEVEL_CAP = 4
_MAX_VERIFY_ENCODES = 8

_lut_cache: "weakref.WeakKeyDictionary[EntropyTables, tuple[np.ndarray, np.ndarray]]" = weakref.WeakKeyDictionary()


class RateControlError(ValueError):
    """Invalid rate-control input."""


class RateDecision(NamedTuple):
    """Outcome of `encode_dred` (a named tuple: made once per packet, cheaply).

    Attributes
    ----------
    payload : bytes
        Coded payload, or ``b""`` when nothing should be sent (see `reason`).
    q0, dq, qmax : int
        Chosen schedule (meaningless when `payload` is empty).
    n_chunks : int
        40 ms chunks carried (0 when empty).
    requested_chunks : int
        Chunks the duration asked for (before silence trimming and budget).
    est_bytes : int
        Model estimate for the chosen schedule.
    encodes : int
        Real encodes performed to verify the estimate.
    reason : str
        ``"ok"``, ``"shortened"`` (budget forced fewer chunks than the
        active ones), ``"silent"`` (no active chunk) or ``"budget"``
        (not even one chunk fits).
    """

    payload: bytes
    q0: int
    dq: int
    qmax: int
    n_chunks: int
    requested_chunks: int
    est_bytes: int
    encodes: int
    reason: str


def _cost_luts(tables: EntropyTables) -> tuple[np.ndarray, np.ndarray]:
    """(16, D, 17) latent and (S, 17) state code-length tables, cached per tables."""
    hit = _lut_cache.get(tables)
    if hit is None:
        lat = _entropy.symbol_cost_table(tables.p0_q15.reshape(-1), tables.decay_q15.reshape(-1))
        lat = lat.reshape(N_LEVELS, tables.latent_dim, 17)
        st = _entropy.symbol_cost_table(tables.state_p0_q15, tables.state_decay_q15)
        hit = (lat, st)
        _lut_cache[tables] = hit
    return hit


def estimate_bits(state_k: np.ndarray, chunk_k: np.ndarray, tables: EntropyTables) -> tuple[float, np.ndarray]:
    """Model code lengths for rate decisions.

    Parameters
    ----------
    state_k : int32 array (S,)
    chunk_k : int32 array (16, n, D)
        Every chunk quantized at every level.
    tables : EntropyTables

    Returns
    -------
    (float, numpy.ndarray)
        Header + state bits, and the (16, n) bits of chunk j at level q.
    """
    return _fixed_bits(state_k, tables), _entropy.vector_costs(chunk_k, _cost_luts(tables)[0])


def _fixed_bits(state_k: np.ndarray, tables: EntropyTables) -> float:
    """Header + state model bits of one payload."""
    st_lut = _cost_luts(tables)[1]
    return HEADER_BITS + float(_entropy.vector_costs(state_k.reshape(1, 1, -1), st_lut[None])[0, 0])


def quantize_chunks(latents: np.ndarray, tables: EntropyTables) -> tuple[np.ndarray, np.ndarray]:
    """Every latent at every quantizer level, with its model bits.

    A stream sends each latent in up to 26 packets: quantizing it once, when
    it is made, and handing the cached result to `encode_dred` (``quantized=``)
    keeps the per-packet cost independent of the redundancy depth.

    Parameters
    ----------
    latents : float array (N, D)
        Finite latent vectors.
    tables : EntropyTables

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        int32 symbols (16, N, D) and float64 model bits (16, N).
    """
    z = np.ascontiguousarray(latents, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != tables.latent_dim:
        raise RateControlError(f"latents must be (N, {tables.latent_dim}), got {z.shape}")
    k = _entropy.quantize_levels(z, tables.quant_scale, tables.dead_zone)
    return k, _entropy.vector_costs(k, _cost_luts(tables)[0])


def _check_settings(duration_ms: float, budget_bytes: int, offset: int, qmax: int, prefer: str,
                    q0cap: int) -> None:
    """Validate the rate-control settings shared by :func:`encode_dred` and :class:`StreamCoder`."""
    if not (isinstance(duration_ms, (int, float, np.number)) and 0 < duration_ms <= MAX_DURATION_MS):
        raise RateControlError(f"duration_ms must be in (0, {MAX_DURATION_MS}], got {duration_ms!r}")
    if not isinstance(budget_bytes, (int, np.integer)) or not 1 <= budget_bytes <= MAX_PAYLOAD_BYTES:
        raise RateControlError(f"budget_bytes must be an integer in [1, {MAX_PAYLOAD_BYTES}], got {budget_bytes!r}")
    if not isinstance(offset, (int, np.integer)) or not 0 <= offset <= MAX_OFFSET:
        raise RateControlError(f"offset must be in [0, {MAX_OFFSET}], got {offset!r}")
    if not isinstance(qmax, (int, np.integer)) or not 0 <= qmax < N_LEVELS:
        raise RateControlError(f"qmax must be in [0, {N_LEVELS - 1}], got {qmax!r}")
    if prefer not in ("mean", "newest"):
        raise RateControlError(f"prefer must be 'mean' or 'newest', got {prefer!r}")
    if not isinstance(q0cap, (int, np.integer)) or not 0 <= q0cap < N_LEVELS:
        raise RateControlError(f"q0cap must be an integer in [0, {N_LEVELS - 1}], got {q0cap!r}")


def encode_dred(latents: np.ndarray, state: np.ndarray, tables: EntropyTables, *,
                duration_ms: float = MAX_DURATION_MS, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                active: np.ndarray | None = None, offset: int = 0, qmax: int = N_LEVELS - 1,
                dq_grid: tuple[int, ...] = tuple(range(MAX_DQ + 1)),
                quantized: tuple[np.ndarray, np.ndarray] | None = None, prefer: str = "newest",
                q0cap: int = N_LEVELS - 1) -> RateDecision:
    """Choose the quantizer schedule and build one DRED payload.

    Parameters
    ----------
    latents : float array (N, D)
        Latent vectors, newest first (chunk j covers the 40 ms ending
        ``40*j`` ms + offset before the packet end).
    state : float array (S,)
        Initial decoder state for the newest chunk.
    tables : EntropyTables
    duration_ms : float
        Requested redundancy, 0 < duration_ms <= 1040; rounds up to 40 ms chunks.
    budget_bytes : int
        Largest payload allowed, 1..1000.
    active : bool array (N,), optional
        Per-chunk voice activity; inactive chunks at the old end are dropped.
    offset : int
        Header offset field, 0..3.
    qmax : int
        Coarsest level allowed, 0..15.
    dq_grid : tuple of int
        dQ values searched (each 0..7).
    prefer : {"newest", "mean"}
        Among the schedules that carry the most chunks: the lowest q0, i.e.
        the finest newest chunk (then the lowest mean level), or the lowest
        mean level (then the lowest q0).  Short bursts are the common case
        and use only the newest chunks, hence "newest" by default.
    quantized : (numpy.ndarray, numpy.ndarray), optional
        `quantize_chunks` of (at least the first N of) these latents, cached
        by the caller; computed here when absent.
    q0cap : int
        Only schedules whose newest chunk is at most this level are searched
        (the rules above among them); all of them when none of those fits.

    Returns
    -------
    RateDecision
        The payload and the decisions that produced it.

    Raises
    ------
    RateControlError
        On invalid arguments.
    """
    z = np.asarray(latents, dtype=np.float64)
    s = np.asarray(state, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != tables.latent_dim or z.shape[0] < 1:
        raise RateControlError(f"latents must be (N >= 1, {tables.latent_dim}), got {z.shape}")
    if s.shape != (tables.state_dim,):
        raise RateControlError(f"state must be ({tables.state_dim},), got {s.shape}")
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(s))):
        raise RateControlError("latents and state must be finite")
    _check_settings(duration_ms, budget_bytes, offset, qmax, prefer, q0cap)
    grid = tuple(dq_grid)
    if not grid or any(not isinstance(d, (int, np.integer)) or not 0 <= d <= MAX_DQ for d in grid):
        raise RateControlError(f"dq_grid must be a non-empty tuple of integers in [0, {MAX_DQ}]")

    requested = min(math.ceil(duration_ms / CHUNK_MS), z.shape[0], MAX_CHUNKS)
    n = requested
    if active is not None:
        act = np.asarray(active)
        if act.ndim != 1 or act.shape[0] < n:
            raise RateControlError(f"active must be a 1-D array of at least {n} flags, got shape {act.shape}")
        on = np.flatnonzero(act[:n].astype(bool))
        n = int(on[-1]) + 1 if on.size else 0

    def empty(reason: str) -> RateDecision:
        return RateDecision(b"", 0, 0, qmax, 0, requested, 0, 0, reason)

    if n == 0:
        return empty("silent")

    # (The same arithmetic as quantizer.quantize, without re-validating the loaded tables.)
    state_k = _entropy.quantize_levels(s[None], tables.state_quant_scale[None], tables.state_dead_zone[None])[0, 0]
    if quantized is None:
        chunk_k, per_chunk = quantize_chunks(z[:n], tables)
    else:
        chunk_k, per_chunk = quantized
        if chunk_k.shape[:2] != (N_LEVELS, z.shape[0]) or per_chunk.shape != (N_LEVELS, z.shape[0]):
            raise RateControlError(f"quantized must be ({N_LEVELS}, {z.shape[0]}, D) symbols and "
                                   f"({N_LEVELS}, {z.shape[0]}) bits")
    fixed = _fixed_bits(state_k, tables)

    # Every (q0, dq) candidate's size for every prefix length (compiled search; a size is
    # ceil((bits + 1) / 8) bytes: the coder's tell() is the information rounded up plus at most
    # one flush bit): the longest prefix any candidate fits first (duration is what the caller
    # asked for), then the finest schedule; an estimate that the real encode overshoots falls
    # back to the next.
    grid_a = np.asarray(grid, dtype=np.int64)
    ng = len(grid)
    encodes = 0
    cap = min(int(q0cap), N_LEVELS - 1)
    limit = n
    while limit > 0:
        m, cand, lsum, est = _entropy.rank_schedules(np.ascontiguousarray(per_chunk[:, :limit]), fixed, int(qmax),
                                                      grid_a, int(budget_bytes), cap)
        if m == 0:
            if cap < N_LEVELS - 1:   # nothing fits under the cap: every schedule
                cap, limit = N_LEVELS - 1, n
                continue
            break
        keys = (grid_a[cand % ng], cand // ng, lsum) if prefer == "mean" else (grid_a[cand % ng], lsum, cand // ng)
        order = np.lexsort(keys)
        for i in order[:_MAX_VERIFY_ENCODES]:
            c = int(cand[i])
            q0, dq = c // ng, int(grid_a[c % ng])
            encodes += 1
            # Values come from the quantizer and are valid by construction: code directly.
            data = encode_validated(tables, q0, dq, int(qmax), int(offset), state_k,
                                    chunk_k[chunk_levels(m, q0, dq, qmax), np.arange(m)])
            if data is None:   # over the 1000-byte format limit
                continue
            if len(data) <= budget_bytes:
                return RateDecision(data, q0, dq, int(qmax), m, requested, int(est[i]), encodes,
                                    "ok" if m == n else "shortened")
        limit = m - 1
        if limit == 0 and cap < N_LEVELS - 1:
            cap, limit = N_LEVELS - 1, n
    return empty("budget")


_REASONS = {_entropy.CODED_OK: "ok", _entropy.CODED_SHORTENED: "shortened", _entropy.CODED_SILENT: "silent",
            _entropy.CODED_BUDGET: "budget"}


class StreamCoder:
    """A stream's DRED coding in one compiled call per packet (`_entropy.PacketCoder`).

    Each latent is quantized at every level (with its model bits) once, when
    it is pushed; `push` then does what `encode_dred` does with the cached
    ``quantized=`` history of ``z_t, z_{t-2}, ...`` (silence trimming, the
    schedule search, range coding) and returns the same decision and the
    same bytes.

    Parameters
    ----------
    tables : EntropyTables
    duration_ms, budget_bytes, offset, qmax, dq_grid, prefer, q0cap
        As for `encode_dred`, fixed for the stream.
    """

    def __init__(self, tables: EntropyTables, *, duration_ms: float = MAX_DURATION_MS,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES, offset: int = 0, qmax: int = N_LEVELS - 1,
                 dq_grid: tuple[int, ...] = tuple(range(MAX_DQ + 1)), prefer: str = "newest",
                 q0cap: int = N_LEVELS - 1) -> None:
        _check_settings(duration_ms, budget_bytes, offset, qmax, prefer, q0cap)
        grid = tuple(dq_grid)
        if (not grid or len(grid) > MAX_DQ + 1
                or any(not isinstance(d, (int, np.integer)) or not 0 <= d <= MAX_DQ for d in grid)):
            raise RateControlError(f"dq_grid must be a non-empty tuple of at most {MAX_DQ + 1} integers "
                                   f"in [0, {MAX_DQ}]")
        lat_lut, st_lut = _cost_luts(tables)
        self.tables = tables
        self._coder = _entropy.PacketCoder(tables.p0_q15, tables.decay_q15, tables.state_p0_q15,
                                           tables.state_decay_q15, tables.quant_scale, tables.dead_zone,
                                           tables.state_quant_scale, tables.state_dead_zone, lat_lut, st_lut,
                                           HEADER_BITS, 2 * MAX_CHUNKS - 1)
        self._coder.configure(min(math.ceil(duration_ms / CHUNK_MS), MAX_CHUNKS), int(budget_bytes), int(qmax),
                              int(offset), grid, prefer == "mean", int(q0cap))
        self._qmax = int(qmax)

    def push(self, z: np.ndarray, state: np.ndarray, active: bool) -> RateDecision:
        """Add the newest latent ``z`` (D,) with its activity; code a payload for ``state`` (S,).

        Raises
        ------
        RateControlError
            If ``z`` or ``state`` is not finite (nothing is added then).
        """
        r = self._coder.push(z, state, active)
        if r is None:
            raise RateControlError("latents and state must be finite")
        res, data, q0, dq, m, requested, est, encodes = r
        if res == _entropy.CODED_OK or res == _entropy.CODED_SHORTENED:
            return RateDecision(data, q0, dq, self._qmax, m, requested, est, encodes, _REASONS[res])
        return RateDecision(b"", 0, 0, self._qmax, 0, requested, 0, 0, _REASONS[res])

    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """Latents ``z_t, z_{t-2}, ...`` (float32, newest first, at most 26) and their activity flags."""
        return self._coder.history()

    def reset(self) -> None:
        """Forget the latent history."""
        self._coder.reset()
