"""Graceful degradation: a load governor for the receiver.

When a board cannot keep up, audio must not glitch: the receiver should do less
work instead.  :class:`LoadGovernor` watches the processing time of every 20 ms
slot and steps through three levels:

``FULL``          DRED decoded as far back as the board config allows, neural PLC on;
``SHORT_DRED``    DRED decode capped (default 200 ms) — most bursts are short, and the
                  decoder's cost grows with the length it reconstructs;
``CLASSIC_PLC``   no neural work at all: LBRR and libopus's own concealment only.

Decisions use an exponentially weighted moving average (EWMA) of the slot time
against the slot budget (``budget_fraction`` of the packet duration: the rest is
left to the audio thread, the OS and jitter):

* degrade one level when the EWMA stays above ``high`` × budget for
  ``degrade_slots`` consecutive slots, or at once when two slots within
  ``overrun_window`` each took longer than the whole budget (a glitch is
  imminent; waiting for the average would let it happen);
* recover one level only after the EWMA has stayed below ``low`` × budget for
  ``recover_slots`` slots.  If a recovered level is abandoned again within
  ``probe_slots`` slots, the wait before the next try at that level doubles (up to
  ``max_backoff`` ×), so a board whose heavy level genuinely does not fit settles
  instead of oscillating.  The back-off resets once a level has held for
  ``probe_slots``.

How the receiver uses it (the integration point; one governor per stream)::

    gov = LoadGovernor.from_board(board)          # edge_dred.boards.detect_board()[0]
    for slot in stream:                           # every 20 ms
        t0 = time.perf_counter()
        # recovery plug-ins consult the governor before doing neural work
        use_dred_ms = gov.dred_ms_cap()           # 0 = skip DRED decode
        use_neural = gov.allow_neural()           # False = classic PLC only
        ...process the slot...
        gov.observe(time.perf_counter() - t0)     # the whole slot, decode + concealment
    status_line += " " + gov.status()             # e.g. "load 0.41 full"

``observe`` is O(1) and allocation-free apart from the bounded transition log,
so it may run in the real-time path.  ``status()`` and the query methods read
only scalars, so another thread (the live status printer) may call them while
the audio thread observes.

``force_level`` pins the level (tests, ``edge-dred live --force-level``): the
load is still measured and reported, but no transition happens.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .boards import BoardConfig

__all__ = ["Level", "LoadGovernor", "GovernorError", "Transition", "parse_level"]

#: DRED is carried in 40 ms chunks; caps are multiples of it.
DRED_CHUNK_MS = 40
_MAX_LOG = 256


class GovernorError(ValueError):
    """Bad governor parameters or a bad measurement."""


class Level(IntEnum):
    """Work levels, cheapest last."""

    FULL = 0
    SHORT_DRED = 1
    CLASSIC_PLC = 2

    @property
    def label(self) -> str:
        return {0: "full", 1: "shorter DRED", 2: "classic PLC"}[int(self)]

    @property
    def key(self) -> str:
        """Short machine-readable name (``full``, ``short``, ``classic``), as ``--force-level`` takes it."""
        return {0: "full", 1: "short", 2: "classic"}[int(self)]


def parse_level(name: "str | Level") -> Level:
    """A :class:`Level` from its key (``full``/``short``/``classic``) or enum name (``SHORT_DRED``).

    Raises
    ------
    GovernorError
        For anything else.
    """
    if isinstance(name, Level):
        return name
    if isinstance(name, str) and len(name) <= 32:
        k = name.strip().lower().replace("-", "_")
        for lvl in Level:
            if k in (lvl.key, lvl.name.lower()):
                return lvl
    raise GovernorError(f"unknown level {name!r}: expected one of {', '.join(l.key for l in Level)}")


@dataclass(frozen=True)
class Transition:
    """One level change: when (slot index), from/to, and the load that caused it."""

    slot: int
    old: Level
    new: Level
    load: float
    reason: str


def _check(name: str, v: float, lo: float, hi: float) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise GovernorError(f"{name} must be a number, got {v!r}") from None
    if not (lo <= v <= hi):  # also rejects NaN
        raise GovernorError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


class LoadGovernor:
    """EWMA load governor with hysteresis and back-off (see the module docstring).

    Parameters
    ----------
    budget_s : float
        Processing time one slot may take, in seconds (e.g. 0.7 × 20 ms).
    dred_ms : int
        DRED decode length at ``FULL`` (the board's ``dred_ms``), 0..1040, multiple of 40.
    short_dred_ms : int
        Cap at ``SHORT_DRED`` (clipped to ``dred_ms``), multiple of 40.
    alpha : float
        EWMA weight of the newest slot (0.1 ≈ a 10-slot, 200 ms time constant).
    high, low : float
        Degrade above ``high`` × budget, recover below ``low`` × budget (``low < high``).
    degrade_slots, recover_slots, probe_slots : int
        Consecutive slots needed to degrade / to recover; how long a recovered level
        must hold before its back-off resets.
    overrun_window : int
        Two slots over the whole budget within this many slots degrade at once.
    max_backoff : int
        Largest multiplier of ``recover_slots``.
    force_level : Level or str, optional
        Pin the level (the load is still measured; no transitions).
    """

    def __init__(self, budget_s: float, dred_ms: int = 1040, short_dred_ms: int = 200, *, alpha: float = 0.1,
                 high: float = 0.85, low: float = 0.5, degrade_slots: int = 3, recover_slots: int = 150,
                 probe_slots: int = 500, overrun_window: int = 10, max_backoff: int = 16,
                 force_level: "Level | str | None" = None) -> None:
        self.budget_s = _check("budget_s", budget_s, 1e-6, 10.0)
        for name, v in (("dred_ms", dred_ms), ("short_dred_ms", short_dred_ms)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 1040 or v % DRED_CHUNK_MS:
                raise GovernorError(f"{name} must be a multiple of {DRED_CHUNK_MS} in 0..1040, got {v!r}")
        self.alpha = _check("alpha", alpha, 1e-4, 1.0)
        self.high = _check("high", high, 0.05, 10.0)
        self.low = _check("low", low, 0.0, 10.0)
        if self.low >= self.high:
            raise GovernorError(f"low ({low}) must be below high ({high}) for hysteresis")
        for name, v in (("degrade_slots", degrade_slots), ("recover_slots", recover_slots),
                        ("probe_slots", probe_slots), ("overrun_window", overrun_window), ("max_backoff", max_backoff)):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 1_000_000:
                raise GovernorError(f"{name} must be an integer in 1..1000000, got {v!r}")
        self.dred_ms = dred_ms
        self.short_dred_ms = min(short_dred_ms, dred_ms)
        self.degrade_slots, self.recover_slots, self.probe_slots = degrade_slots, recover_slots, probe_slots
        self.overrun_window, self.max_backoff = overrun_window, max_backoff
        self.forced: Level | None = None if force_level is None else parse_level(force_level)
        self.reset()

    @classmethod
    def from_board(cls, board: "BoardConfig", period_ms: int = 20, budget_fraction: float = 0.7,
                   **kw) -> "LoadGovernor":
        """A governor for a :class:`~edge_dred.boards.BoardConfig`: budget = fraction × packet duration,
        ``FULL`` decodes the board's ``dred_ms``."""
        return cls.for_dred_ms(board.dred_ms, period_ms, budget_fraction, **kw)

    @classmethod
    def for_dred_ms(cls, dred_ms: int, period_ms: int = 20, budget_fraction: float = 0.7,
                    **kw) -> "LoadGovernor":
        """Like :meth:`from_board` with the board's ``dred_ms`` given directly."""
        _check("budget_fraction", budget_fraction, 0.05, 1.0)
        if period_ms not in (10, 20, 40, 60):
            raise GovernorError(f"period_ms must be 10, 20, 40 or 60, got {period_ms!r}")
        if not isinstance(dred_ms, int) or isinstance(dred_ms, bool) or not 0 <= dred_ms <= 1040:
            raise GovernorError(f"dred_ms must be an integer in 0..1040, got {dred_ms!r}")
        # At most 200 ms, and at most half of the full length so the level really saves work.
        kw.setdefault("short_dred_ms", min(200, dred_ms // 2 // DRED_CHUNK_MS * DRED_CHUNK_MS))
        return cls(budget_fraction * period_ms / 1000.0, dred_ms=dred_ms, **kw)

    def reset(self) -> None:
        """Back to ``FULL`` (or the forced level) with no history."""
        self.level = Level.FULL if self.forced is None else self.forced
        self.ewma_s = 0.0
        self.slots = 0
        self._above = 0
        self._below = 0
        self._since_change = 0
        self._overruns: deque[int] = deque(maxlen=2)
        self._backoff = {lvl: 1 for lvl in Level}
        self._recovered_to: Level | None = None
        self.transitions: deque[Transition] = deque(maxlen=_MAX_LOG)
        # Counted, not derived from `transitions`: the status thread must not iterate a deque
        # the audio thread appends to (and the log is bounded; the counts are not).
        self.downgrades = 0
        self.upgrades = 0
        self.peak_s = 0.0

    # ------------------------------------------------------------------ queries
    @property
    def load(self) -> float:
        """EWMA slot time as a fraction of the budget."""
        return self.ewma_s / self.budget_s

    def allow_neural(self) -> bool:
        """Whether neural work (DRED decode, neural PLC, vocoder) is allowed for the next slot."""
        return self.level < Level.CLASSIC_PLC

    def allow_monitor(self) -> bool:
        """Whether the artifact monitor may analyse audio: only at ``FULL`` with the load under ``high``.

        The monitor is the first work given up: it stops as soon as the load
        average crosses ``high``, before the receiver itself degrades.
        """
        return self.level == Level.FULL and self.load < self.high

    def dred_ms_cap(self) -> int:
        """Longest DRED reconstruction (ms) to decode for the next slot; 0 = none."""
        return {Level.FULL: self.dred_ms, Level.SHORT_DRED: self.short_dred_ms, Level.CLASSIC_PLC: 0}[self.level]

    def status(self) -> str:
        """Short status for the live view, e.g. ``"load 0.93 shorter DRED (200 ms), 2 downgrades"``."""
        s = f"load {self.load:.2f} {self.level.label}"
        if self.level == Level.SHORT_DRED:
            s += f" ({self.short_dred_ms} ms)"
        if self.forced is not None:
            s += " (forced)"
        downs = self.downgrades
        if downs:
            s += f", {downs} downgrade{'s' if downs > 1 else ''}"
        return s

    def report(self, slot_ms: float = 20.0) -> dict:
        """JSON-ready summary: level, load, budget, transitions (slot index and time)."""
        return {
            "level": self.level.key, "label": self.level.label, "forced": self.forced is not None,
            "load": round(self.load, 4), "budget_ms": self.budget_s * 1000.0, "peak_ms": self.peak_s * 1000.0,
            "slots_observed": self.slots, "downgrades": self.downgrades, "upgrades": self.upgrades,
            "dred_ms": {"full": self.dred_ms, "short": self.short_dred_ms, "classic": 0},
            "transitions": [{"slot": t.slot, "t_s": round(t.slot * slot_ms / 1000.0, 3), "from": t.old.key,
                             "to": t.new.key, "load": round(t.load, 4), "reason": t.reason}
                            for t in list(self.transitions)],
        }

    # ------------------------------------------------------------------ update
    def observe(self, seconds: float) -> Level:
        """Record one slot's processing time (seconds); return the level for the next slot."""
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise GovernorError(f"slot time must be a number, got {type(seconds).__name__}")
        seconds = float(seconds)
        if math.isnan(seconds) or seconds < 0 or seconds > 3600:
            raise GovernorError(f"slot time must be in [0, 3600] s, got {seconds}")
        # The first slot seeds the average; afterwards the usual EWMA update.
        self.ewma_s = seconds if self.slots == 0 else self.ewma_s + self.alpha * (seconds - self.ewma_s)
        self.slots += 1
        self._since_change += 1
        self.peak_s = max(self.peak_s, seconds)
        load = self.load
        if seconds > self.budget_s:
            self._overruns.append(self.slots)
        self._above = self._above + 1 if load > self.high else 0
        self._below = self._below + 1 if load < self.low else 0

        if self.forced is not None:
            return self.level
        burst = len(self._overruns) == 2 and self._overruns[1] - self._overruns[0] < self.overrun_window
        if self.level < Level.CLASSIC_PLC and (self._above >= self.degrade_slots or burst):
            self._change(self.level + 1, load, "overruns" if burst and self._above < self.degrade_slots else "load")
        elif self.level > Level.FULL and self._below >= self.recover_slots * self._backoff[Level(self.level - 1)]:
            self._change(self.level - 1, load, "recovered")
        elif self._recovered_to is not None and self._since_change >= self.probe_slots:
            # The recovered level held: it fits after all, forget its back-off.
            self._backoff[self._recovered_to] = 1
            self._recovered_to = None
        return self.level

    def _change(self, new: int, load: float, reason: str) -> None:
        new = Level(new)
        if new > self.level and self._recovered_to == self.level and self._since_change < self.probe_slots:
            # We came back to this level and it failed again soon: wait longer next time.
            self._backoff[self.level] = min(self._backoff[self.level] * 2, self.max_backoff)
        self.transitions.append(Transition(self.slots, self.level, new, load, reason))
        if new > self.level:
            self.downgrades += 1
        else:
            self.upgrades += 1
        self._recovered_to = new if new < self.level else None
        self._above = self._below = self._since_change = 0
        self._overruns.clear()
        if new > self.level:
            # The average still holds the heavier level's cost; after a large spike it would take
            # many slots to decay and degrade a second level needlessly.  Start at the threshold:
            # the cheaper level's own slots decide from here.
            self.ewma_s = min(self.ewma_s, self.high * self.budget_s)
        self.level = new
