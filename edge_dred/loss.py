"""Packet-loss models for simulation: trace replay, Gilbert-Elliott, uniform.

Every model answers ``mask(n_packets)`` with one bool per 20 ms packet
(True = lost).  Random models are seeded and *prefix-consistent*:
``m.mask(100)`` equals ``m.mask(1000)[:100]``, so a shorter run of the same
experiment sees exactly the same losses at the start.

Trace files hold one ``0``/``1`` per line (1 = lost), as in the Interspeech
2022 PLC Challenge ``*_is_lost.txt`` files.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

__all__ = [
    "TraceFormatError",
    "LossModel",
    "TraceLoss",
    "GilbertElliott",
    "UniformLoss",
    "NoLoss",
    "load_trace",
    "loss_stats",
    "MAX_TRACE_LINES",
    "MAX_PACKETS",
]

MAX_TRACE_LINES = 10_000_000
# "0\r\n" is 3 bytes; allow generous surrounding whitespace but refuse anything huge
# before reading it into memory.
MAX_TRACE_BYTES = 16 * MAX_TRACE_LINES
# 10^8 packets of 20 ms is 23 days: far beyond any simulation, small enough to allocate.
MAX_PACKETS = 100_000_000
# Runs drawn per batch by the Markov model; fixed so masks are prefix-consistent.
_RUN_BATCH = 4096


class TraceFormatError(ValueError):
    """A loss trace file is missing, empty, too large or malformed."""


def load_trace(path: str | os.PathLike) -> np.ndarray:
    """Read a packet-loss trace file.

    Parameters
    ----------
    path : str or os.PathLike
        Text file with one ``0`` or ``1`` per line (1 = packet lost).  Surrounding
        whitespace on a line, CRLF line ends and blank lines at the end are
        accepted; anything else is an error.

    Returns
    -------
    np.ndarray
        Bool array, one entry per 20 ms packet, True = lost.

    Raises
    ------
    TraceFormatError
        If the file cannot be read, is empty, exceeds ``MAX_TRACE_LINES`` lines
        or contains a line other than ``0``/``1`` (the message names the file
        and the 1-based line number).
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_TRACE_BYTES + 1)
    except OSError as e:
        raise TraceFormatError(f"{p}: cannot read trace: {e.strerror or e}") from e
    if len(raw) > MAX_TRACE_BYTES:
        raise TraceFormatError(f"{p}: trace file larger than {MAX_TRACE_BYTES} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise TraceFormatError(f"{p}:{line}: non-ASCII byte in trace") from e
    lines = text.split("\n")
    # Blank lines are tolerated only at the end of the file.
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TraceFormatError(f"{p}: trace is empty")
    if len(lines) > MAX_TRACE_LINES:
        raise TraceFormatError(f"{p}: trace has more than {MAX_TRACE_LINES} lines")
    tokens = [ln.strip() for ln in lines]
    ok = np.fromiter((t == "0" or t == "1" for t in tokens), dtype=bool, count=len(tokens))
    if not ok.all():
        i = int(np.argmin(ok))
        shown = tokens[i] if len(tokens[i]) <= 20 else tokens[i][:20] + "..."
        what = "blank line" if not tokens[i] else f"expected 0 or 1, got {shown!r}"
        raise TraceFormatError(f"{p}:{i + 1}: {what}")
    return np.fromiter((t == "1" for t in tokens), dtype=bool, count=len(tokens))


def _check_n(n_packets: int) -> int:
    if isinstance(n_packets, bool) or not isinstance(n_packets, (int, np.integer)):
        raise ValueError(f"n_packets must be an int, got {type(n_packets).__name__}")
    n = int(n_packets)
    if n < 0 or n > MAX_PACKETS:
        raise ValueError(f"n_packets must be in [0, {MAX_PACKETS}], got {n}")
    return n


def _check_pct(loss_pct: float) -> float:
    try:
        v = float(loss_pct)
    except (TypeError, ValueError):
        raise ValueError(f"loss_pct must be a number, got {loss_pct!r}") from None
    if not (0.0 <= v < 100.0):
        raise ValueError(f"loss_pct must be in [0, 100), got {loss_pct!r}")
    return v


def _check_seed(seed: int | None) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


class LossModel(ABC):
    """Common interface of the loss models."""

    @abstractmethod
    def mask(self, n_packets: int) -> np.ndarray:
        """Return ``n_packets`` bools, True = packet lost."""

    @abstractmethod
    def describe(self) -> str:
        """One-line human description (for reports and logs)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


class NoLoss(LossModel):
    """Every packet arrives."""

    def mask(self, n_packets: int) -> np.ndarray:
        """Return ``n_packets`` False values."""
        return np.zeros(_check_n(n_packets), dtype=bool)

    def describe(self) -> str:
        """Describe the model."""
        return "no loss"


class TraceLoss(LossModel):
    """Replay a recorded loss trace, wrapping around when the stream is longer.

    Parameters
    ----------
    trace : array-like of bool, or path
        The trace itself (1/True = lost) or a trace file for :func:`load_trace`.
    offset : int
        Packet index in the trace where the stream starts (taken modulo the
        trace length), so different files can see different parts of one trace.
    """

    def __init__(self, trace: np.ndarray | str | os.PathLike, offset: int = 0) -> None:
        if isinstance(trace, (str, os.PathLike)):
            self.name = Path(trace).stem
            arr = load_trace(trace)
        else:
            self.name = "trace"
            arr = np.asarray(trace)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError("trace must be a non-empty 1-D array")
            if arr.size > MAX_TRACE_LINES:
                raise ValueError(f"trace longer than {MAX_TRACE_LINES} packets")
            if arr.dtype != bool:
                if not np.isin(arr, (0, 1)).all():
                    raise ValueError("trace values must be 0/1 or bool")
                arr = arr.astype(bool)
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
            raise ValueError(f"offset must be an int, got {offset!r}")
        self.trace = arr.copy()
        self.trace.setflags(write=False)
        self.offset = int(offset) % arr.size

    def mask(self, n_packets: int) -> np.ndarray:
        """Return the trace from ``offset``, repeated cyclically to ``n_packets``."""
        n = _check_n(n_packets)
        idx = (self.offset + np.arange(n, dtype=np.int64)) % self.trace.size
        return self.trace[idx]

    def describe(self) -> str:
        """Describe the trace: name, length, loss rate, offset."""
        pct = 100.0 * self.trace.mean()
        return f"trace {self.name} ({self.trace.size} packets, {pct:.1f}% lost, offset {self.offset})"


class UniformLoss(LossModel):
    """Independent losses, each packet lost with probability ``loss_pct``/100.

    Parameters
    ----------
    loss_pct : float
        Loss probability in percent, in [0, 100).
    seed : int or None
        Seed of the random generator; None draws fresh entropy once, at construction.
    """

    def __init__(self, loss_pct: float, seed: int | None = 0) -> None:
        self.loss_pct = _check_pct(loss_pct)
        seed = _check_seed(seed)
        self.seed = int(np.random.SeedSequence().entropy % (2**63)) if seed is None else seed

    def mask(self, n_packets: int) -> np.ndarray:
        """Draw the loss mask (same seed -> same mask; prefixes agree)."""
        n = _check_n(n_packets)
        rng = np.random.default_rng(self.seed)
        return rng.random(n) < self.loss_pct / 100.0

    def describe(self) -> str:
        """Describe the model."""
        return f"uniform {self.loss_pct:g}% (seed {self.seed})"


class GilbertElliott(LossModel):
    """Two-state Markov loss model (good state delivers, bad state loses).

    Parameterised by what one wants to control: the stationary loss rate
    ``pi`` and the mean burst length ``B`` (packets).  Then the bad->good
    probability is ``r = 1/B`` and the good->bad probability is
    ``p = r * pi / (1 - pi)``; bursts and gaps are geometric with means ``B``
    and ``1/p``.  The pair is feasible when ``p <= 1``, i.e. the mean gap
    between bursts is at least one packet.

    Parameters
    ----------
    loss_pct : float
        Stationary loss rate in percent, in [0, 100).
    mean_burst : float
        Mean number of consecutive lost packets, >= 1.
    seed : int or None
        Seed of the random generator; None draws fresh entropy once, at construction.
    """

    def __init__(self, loss_pct: float, mean_burst: float, seed: int | None = 0) -> None:
        self.loss_pct = _check_pct(loss_pct)
        try:
            mb = float(mean_burst)
        except (TypeError, ValueError):
            raise ValueError(f"mean_burst must be a number, got {mean_burst!r}") from None
        if not (mb >= 1.0) or not np.isfinite(mb):
            raise ValueError(f"mean_burst must be a finite number >= 1, got {mean_burst!r}")
        self.mean_burst = mb
        pi = self.loss_pct / 100.0
        self.r = 1.0 / mb
        self.p = self.r * pi / (1.0 - pi)
        if self.p > 1.0 + 1e-12:
            max_pct = 100.0 * mb / (mb + 1.0)
            raise ValueError(
                f"infeasible Gilbert-Elliott parameters: {self.loss_pct:g}% loss with mean burst {mb:g} "
                f"needs gaps shorter than one packet; with this burst length the loss must be <= {max_pct:.1f}%"
            )
        self.p = min(self.p, 1.0)
        seed = _check_seed(seed)
        self.seed = int(np.random.SeedSequence().entropy % (2**63)) if seed is None else seed

    def mask(self, n_packets: int) -> np.ndarray:
        """Draw the loss mask (same seed -> same mask; prefixes agree).

        The chain is built from alternating geometric run lengths (vectorised);
        the first state comes from the stationary distribution, and by the
        memorylessness of the geometric law the first run needs no special case.
        """
        n = _check_n(n_packets)
        if n == 0 or self.p == 0.0:
            return np.zeros(n, dtype=bool)
        rng = np.random.default_rng(self.seed)
        bad = bool(rng.random() < self.loss_pct / 100.0)
        # Runs alternate; with an even batch size every batch starts in the same state.
        chunks: list[np.ndarray] = []
        total = 0
        while total < n:
            gaps = rng.geometric(self.p, _RUN_BATCH // 2)
            bursts = rng.geometric(self.r, _RUN_BATCH // 2)
            runs = np.empty(_RUN_BATCH, dtype=np.int64)
            runs[0::2], runs[1::2] = (bursts, gaps) if bad else (gaps, bursts)
            chunks.append(runs)
            total += int(runs.sum())
        runs = np.concatenate(chunks)
        states = np.zeros(runs.size, dtype=bool)
        states[(0 if bad else 1)::2] = True
        # np.repeat wants intp counts: int64 does not cast 'safely' on 32-bit ARM.
        return np.repeat(states, runs.astype(np.intp))[:n]

    def describe(self) -> str:
        """Describe the model."""
        return f"Gilbert-Elliott {self.loss_pct:g}% loss, mean burst {self.mean_burst:g} (seed {self.seed})"


def loss_stats(mask: np.ndarray) -> dict[str, float | int]:
    """Summarise a loss mask.

    Parameters
    ----------
    mask : array-like of bool
        One entry per packet, True = lost.

    Returns
    -------
    dict
        ``loss_rate`` (fraction in [0, 1]), ``mean_burst`` (mean run of
        consecutive losses, 0.0 when nothing is lost), ``max_burst`` and
        ``n_bursts``.
    """
    m = np.asarray(mask)
    if m.ndim != 1:
        raise ValueError("mask must be 1-D")
    m = m.astype(bool)
    if m.size == 0:
        return {"loss_rate": 0.0, "mean_burst": 0.0, "max_burst": 0, "n_bursts": 0}
    edges = np.diff(np.concatenate(([0], m.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    n_bursts = int(lengths.size)
    return {
        "loss_rate": float(m.mean()),
        "mean_burst": float(lengths.mean()) if n_bursts else 0.0,
        "max_burst": int(lengths.max()) if n_bursts else 0,
        "n_bursts": n_bursts,
    }
