"""Adaptive jitter buffer: RTP packets in, one slot per 20 ms out.

The network thread calls :meth:`JitterBuffer.put` as datagrams arrive; the
audio thread calls :meth:`JitterBuffer.pop` once per 20 ms playback period and
hands the result (an Opus packet, or ``None`` for a hole) to the receiver's
decision machine.  The buffer is pull-driven by the playback clock, so the
same code serves a sound card, a paced file device and a simulation.

Slots are indexed by RTP timestamp (``(ts - ts0) / 960``), not by sequence
number, so a DTX gap (timestamp jumps, sequence does not) shows up as holes at
the right place.

Adaptation.  For every packet we record its *margin*: how long before its
scheduled playout it arrived (negative = too late).  Every ``adapt_every``
pops the low quantile of the last ``window`` margins decides:

* more than ``late_fraction`` of packets arrived with less than
  ``safety_ms`` to spare -> grow the delay by one slot (the next pop returns
  an *inserted* hole: the receiver conceals it);
* even the latest ``late_fraction`` arrived more than one slot plus safety
  and guard early -> shrink the delay by one slot (the next slot's packet is
  dropped).

The same mechanism absorbs clock drift between the sender's capture clock and
our playback clock: margins creep down (sender slower) or up (sender faster)
until a slot is inserted or dropped.  Both are counted.

Everything is bounded: at most ``capacity`` slots are held ahead of playout,
and statistics live in fixed-size numpy rings.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from .rtp import RTP_CLOCK_RATE, SequenceUnwrapper

__all__ = ["JitterConfig", "JitterBuffer", "SlotKind", "PutResult"]


class SlotKind(str, Enum):
    """What :meth:`JitterBuffer.pop` returned."""

    IDLE = "idle"          # playout has not started, or the stream ended (nothing to feed the receiver)
    PACKET = "packet"      # the slot's packet, on time
    MISSING = "missing"    # no packet for the slot (lost, or still to come late)
    INSERTED = "inserted"  # an extra hole that grows the delay


class PutResult(str, Enum):
    """What :meth:`JitterBuffer.put` did with a packet."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"            # its slot was already played
    TOO_EARLY = "too_early"  # beyond the buffer's capacity ahead of playout
    RESET = "reset"          # new stream (SSRC change or resync); accepted as its first packet
    ENDED = "ended"          # the stream has ended (:meth:`JitterBuffer.end_stream`); dropped


@dataclass
class JitterConfig:
    """Jitter buffer behaviour.

    Attributes
    ----------
    frame_ms : int
        Packet duration (one slot).
    start_delay_ms : float
        Playout starts this long after the first packet arrives.
    min_delay_ms, max_delay_ms : float
        Bounds of the median wait the adaptation may choose.
    late_fraction : float
        Share of packets allowed to arrive with less than ``safety_ms`` to
        spare before the delay grows.
    safety_ms : float
        Margin kept for the ``late_fraction`` quantile (0 when arrivals and
        pops share one clock, as in :class:`edge_dred.live.LiveSession`).
    guard_ms : float
        Extra margin required before the delay shrinks (hysteresis).
    window : int
        Packets in the statistics window.
    adapt_every : int
        Pops between adaptation decisions.
    capacity : int
        Most slots held ahead of playout.
    resync_after : int
        A sender restart: this many consecutive packets of consecutive
        slots, all far ahead of playout (beyond ``capacity``) or all later
        than ``max_delay_ms`` and paced in time (arriving over at least half
        their duration: a stream, not a burst released after a stall), make
        the buffer restart on them.  Smaller backward jumps are absorbed by
        the delay adaptation, as any late run within ``max_delay_ms`` is.
    """

    frame_ms: int = 20
    start_delay_ms: float = 10.0
    min_delay_ms: float = 0.0
    max_delay_ms: float = 300.0
    late_fraction: float = 0.02
    safety_ms: float = 2.0
    guard_ms: float = 5.0
    window: int = 100
    adapt_every: int = 10
    capacity: int = 64
    resync_after: int = 4
    clock_rate: int = RTP_CLOCK_RATE

    def validate(self) -> None:
        if self.frame_ms not in (10, 20, 40, 60):
            raise ValueError(f"frame_ms must be 10, 20, 40 or 60, got {self.frame_ms}")
        if not 0 <= self.min_delay_ms <= self.max_delay_ms <= 2000:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms <= 2000")
        if not 0 <= self.start_delay_ms <= self.max_delay_ms:
            raise ValueError("start_delay_ms must be in 0..max_delay_ms")
        if not 0.0 <= self.safety_ms <= 100.0 or not 0.0 <= self.guard_ms <= 100.0:
            raise ValueError("safety_ms and guard_ms must be in 0..100")
        if not 0.0 <= self.late_fraction < 0.5:
            raise ValueError("late_fraction must be in [0, 0.5)")
        if not 8 <= self.window <= 10000 or not 1 <= self.adapt_every <= 1000:
            raise ValueError("window must be 8..10000 and adapt_every 1..1000")
        if not 2 <= self.capacity <= 4096 or not 1 <= self.resync_after <= 1000:
            raise ValueError("capacity must be 2..4096 and resync_after 1..1000")


_SEEN_RING = 4096
_EPS_S = 1e-4  # margins within 0.1 ms of zero count as on time (clock arithmetic noise)  # slots remembered for duplicate/late classification


def _quantile_and_median(m: np.ndarray, q: float) -> tuple[float, float]:
    """``np.quantile(m, q)`` and ``np.median(m)``, bit for bit, from one sort.

    Every pop needs both; numpy's general routines cost ~25 times more than
    the sort of the (at most ``window``) margins.  The interpolation is
    numpy's (linear, computed from the nearer end).
    """
    s = np.sort(m)
    n = len(s)
    pos = q * (n - 1)
    lo = int(pos)
    t = pos - lo
    a, b = float(s[lo]), float(s[min(lo + 1, n - 1)])
    low = b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t
    k = n // 2
    median = float(s[k]) if n % 2 else (float(s[k - 1]) + float(s[k])) / 2.0
    return low, median


class JitterBuffer:
    """Reorder, de-duplicate and time packets for playout.

    Parameters
    ----------
    config : JitterConfig, optional

    Notes
    -----
    Not thread-safe: callers that put and pop from different threads hold a
    lock around each call (both are short and never block).
    """

    def __init__(self, config: JitterConfig | None = None) -> None:
        self.config = config or JitterConfig()
        self.config.validate()
        c = self.config
        self.frame_s = c.frame_ms / 1000.0
        self.frame_ts = c.clock_rate * c.frame_ms // 1000
        self._margins = np.zeros(c.window)
        self._seen = np.full(_SEEN_RING, np.iinfo(np.int64).min, np.int64)
        self.stats: dict[str, int] = {k: 0 for k in (
            "received", "accepted", "duplicates", "late", "too_early", "resets", "misaligned",
            "played", "missing", "inserted", "dropped_drift", "dropped_empty", "dropped_reset", "pops_idle",
            "late_resyncs", "after_end", "after_end_packets")}
        self.ended = False
        #: Bumped whenever the missing slots at the tail stop being a tail (a newer packet came).
        self.tail_gen = 0
        self.tail_missing = 0
        self.last_pop_tail = False
        #: Slot of the stream's last packet when the sender said so (RTCP SR with its BYE).
        self.end_slot: int | None = None
        self._reset_stream(None)

    # -- state -------------------------------------------------------------
    def _reset_stream(self, ssrc: int | None) -> None:
        self.ssrc = ssrc
        self._ts = SequenceUnwrapper(32)
        self._ts0: int | None = None
        self._buf: dict[int, tuple[bytes, float]] = {}
        self.started = False
        self.next_slot = 0
        self._first_arrival: float | None = None
        self._next_pop_est = 0.0
        self._n_margins = 0
        self._m_pos = 0
        self._pops_since_adapt = 0
        self._pending = 0  # +1: insert a hole next pop, -1: drop the next slot
        self._run = 0            # length of the current restart candidate run (far ahead or late)
        self._run_kind = ""      # "far" or "late"
        self._run_slot = 0       # slot of the run's last packet
        self._run_t0 = 0.0       # arrival of the run's first packet
        self._newest: int | None = None
        self._end_tail()
        self._seen[:] = np.iinfo(np.int64).min

    def _end_tail(self) -> None:
        """Missing slots after the newest packet turn out to be holes, not the stream's end."""
        if self.tail_missing:
            self.tail_gen += 1
        self.tail_missing = 0

    def _restart_run(self, kind: str, slot: int, arrival_s: float) -> bool:
        """Count a far-ahead or late packet; True when the run says the sender restarted."""
        if self._run and self._run_kind == kind and slot == self._run_slot + 1:
            self._run += 1
        else:
            self._run, self._run_kind, self._run_t0 = 1, kind, arrival_s
        self._run_slot = slot
        if self._run < self.config.resync_after:
            return False
        if kind == "late" and arrival_s - self._run_t0 < (self._run - 1) * self.frame_s / 2:
            return False  # a burst released after a stall: the delay adaptation's business
        return True

    @property
    def buffered(self) -> int:
        """Packets waiting for playout."""
        return len(self._buf)

    @property
    def delay_ms(self) -> float:
        """Median time packets wait before playout over the recent window (ms)."""
        if self._n_margins == 0:
            return float(self.config.start_delay_ms)
        return float(np.median(self._margins[: self._n_margins]) * 1000.0)

    def _record_margin(self, margin: float) -> None:
        lo = -self.config.max_delay_ms / 1000.0
        self._margins[self._m_pos] = max(margin, lo)
        self._m_pos = (self._m_pos + 1) % len(self._margins)
        self._n_margins = min(self._n_margins + 1, len(self._margins))

    def _slot_of(self, timestamp: int) -> int:
        ext = self._ts.unwrap(timestamp)
        if self._ts0 is None:
            self._ts0 = ext
        q, r = divmod(ext - self._ts0, self.frame_ts)
        if r:
            self.stats["misaligned"] += 1
            if r * 2 >= self.frame_ts:
                q += 1
        return q

    # -- input -------------------------------------------------------------
    def put(self, timestamp: int, payload: bytes, arrival_s: float, ssrc: int | None = None) -> PutResult:
        """Offer one packet.

        Parameters
        ----------
        timestamp : int
            RTP timestamp (32-bit, 48 kHz for Opus).
        payload : bytes
            The Opus packet.
        arrival_s : float
            Arrival time in seconds on the clock passed to :meth:`pop`.
        ssrc : int, optional
            A different SSRC than the current stream's restarts the buffer.
        """
        if not isinstance(payload, (bytes, bytearray)) or not payload:
            raise ValueError("payload must be non-empty bytes")
        if not isinstance(timestamp, int) or not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp must be a 32-bit unsigned int, got {timestamp!r}")
        self.stats["received"] += 1
        if self.ended:
            self.stats["after_end_packets"] += 1
            return PutResult.ENDED
        result = PutResult.ACCEPTED
        if ssrc is not None and self.ssrc is not None and ssrc != self.ssrc:
            self._restart(ssrc, arrival_s)
            result = PutResult.RESET
        elif self.ssrc is None:
            self.ssrc = ssrc
        slot = self._slot_of(timestamp)
        c = self.config
        seen = self._seen[slot % _SEEN_RING] == slot
        if seen and not (self.started and slot < self.next_slot):
            self.stats["duplicates"] += 1
            return PutResult.DUPLICATE
        if self.started:
            margin = self._next_pop_est + (slot - self.next_slot) * self.frame_s - arrival_s
            if slot < self.next_slot:
                # A restart with the same SSRC may repeat played slots exactly: those count
                # towards the run too, and are duplicates only while no run forms.  Lateness the
                # delay adaptation could absorb (a stall, a slow network thread) is no restart.
                beyond = -margin * 1000.0 > c.max_delay_ms
                if not (beyond and self._restart_run("late", slot, arrival_s)):
                    if not beyond:
                        self._run = 0
                    if seen:
                        self.stats["duplicates"] += 1
                        return PutResult.DUPLICATE
                    self._seen[slot % _SEEN_RING] = slot
                    self._record_margin(margin)
                    self.stats["late"] += 1
                    self._note_newest(slot)
                    return PutResult.LATE
                # The sender restarted behind us (same SSRC, lower timestamp): start over on this packet.
                self.stats["late_resyncs"] += 1
                self._restart(ssrc, arrival_s)
                slot = self._slot_of(timestamp)
                result = PutResult.RESET
            elif slot >= self.next_slot + c.capacity:
                if not self._restart_run("far", slot, arrival_s):
                    self.stats["too_early"] += 1
                    return PutResult.TOO_EARLY
                # The sender jumped ahead (restart, long outage): start over on this packet.
                self._restart(ssrc, arrival_s)
                slot = self._slot_of(timestamp)
                result = PutResult.RESET
            else:
                self._run = 0
                self._record_margin(margin)
        else:
            if self._first_arrival is None:
                self._first_arrival = arrival_s
            # Bound the spread (not the distance to the current minimum, which can walk away).
            if self._buf and max(max(self._buf), slot) - min(min(self._buf), slot) >= c.capacity:
                self.stats["too_early"] += 1
                return PutResult.TOO_EARLY
        self._note_newest(slot)
        self._seen[slot % _SEEN_RING] = slot
        self._buf[slot] = (payload if isinstance(payload, bytes) else bytes(payload), arrival_s)  # keeps RED copies
        self.stats["accepted"] += 1
        return result

    def _restart(self, ssrc: int | None, arrival_s: float) -> None:
        self.stats["dropped_reset"] += len(self._buf)
        self._reset_stream(ssrc)
        self.stats["resets"] += 1
        self._first_arrival = arrival_s

    def _note_newest(self, slot: int) -> None:
        if self._newest is None or slot > self._newest:
            self._newest = slot
            self._end_tail()

    def end_stream(self, last_timestamp: int | None = None) -> int:
        """The sender is gone (RTCP BYE, or silence past a timeout).

        Missing slots played after the newest packet were the stream's end,
        not losses: they move from ``missing`` to ``after_end`` -- except up
        to ``last_timestamp`` (the sender's last packet, from the RTCP sender
        report sent with its BYE): those packets were sent and lost, and
        slots up to it are still played (concealed) if their packets never
        come.  Later pops return IDLE once that is done, later packets are
        dropped (``after_end_packets``).  Returns the number of slots moved.
        """
        real = 0
        if last_timestamp is not None and self._ts0 is not None and self._newest is not None:
            self.end_slot = self._peek_slot(last_timestamp)
            real = max(0, min(self.tail_missing, self.end_slot - self._newest))
        n = self.tail_missing - real
        self.stats["missing"] -= n
        self.stats["after_end"] += n
        self.tail_missing = 0
        self.ended = True
        return n

    def _peek_slot(self, timestamp: int) -> int:
        """The slot of ``timestamp`` in the current stream, without moving the unwrapper."""
        u = self._ts
        ext = timestamp
        if u._last is not None:
            delta = (timestamp - u._last) % u.modulus
            ext = u._last + (delta - u.modulus if delta >= u.modulus >> 1 else delta)
        q, r = divmod(ext - (self._ts0 or 0), self.frame_ts)
        return q + (1 if r * 2 >= self.frame_ts else 0)

    @property
    def finished(self) -> bool:
        """Ended, and every slot up to the stream's last packet has been played."""
        return self.ended and not self._buf and (self.end_slot is None or self.next_slot > self.end_slot
                                                 or not self.started)

    # -- output ------------------------------------------------------------
    def pop(self, now_s: float) -> tuple[bytes | None, SlotKind]:
        """Return the next slot's packet (or None) and what it is.

        Call once per ``frame_ms`` of playback.  Before playout has started
        this returns ``(None, SlotKind.IDLE)``: play silence, do not feed the
        receiver.
        """
        c = self.config
        self.last_pop_tail = False
        if self.finished:
            self.stats["pops_idle"] += 1
            return None, SlotKind.IDLE
        if not self.started:
            # Pops come on a frame grid: start at the grid point nearest the target.
            if self._first_arrival is None or \
                    now_s + self.frame_s / 2 < self._first_arrival + c.start_delay_ms / 1000.0:
                self.stats["pops_idle"] += 1
                return None, SlotKind.IDLE
            self.started = True
            self.next_slot = min(self._buf)
            for s, (_, a) in self._buf.items():  # margins of what waited for the start
                self._record_margin(now_s + (s - self.next_slot) * self.frame_s - a)
        self._next_pop_est = now_s + self.frame_s
        if self._pending > 0:
            self._pending = 0
            self.stats["inserted"] += 1
            self._after_pop()
            return None, SlotKind.INSERTED
        if self._pending < 0:
            self._pending = 0
            if self._buf.pop(self.next_slot, None) is not None:
                self.stats["dropped_drift"] += 1
            else:
                self.stats["dropped_empty"] += 1
            self.next_slot += 1
        item = self._buf.pop(self.next_slot, None)
        self.next_slot += 1
        self._after_pop()
        if item is None:
            self.stats["missing"] += 1
            if self._newest is not None and self.next_slot - 1 > self._newest and (
                    self.end_slot is None or self.next_slot - 1 > self.end_slot):
                self.tail_missing += 1
                self.last_pop_tail = True
            return None, SlotKind.MISSING
        self.stats["played"] += 1
        return item[0], SlotKind.PACKET

    def _after_pop(self) -> None:
        c = self.config
        self._pops_since_adapt += 1
        if self._pending or self._n_margins < min(20, c.window):
            return
        m = self._margins[: self._n_margins]
        low, median = _quantile_and_median(m, c.late_fraction)
        # Growing is checked every pop (late packets cost audio); shrinking only
        # every adapt_every pops, so the delay does not oscillate.
        if low < c.safety_ms / 1000.0 - _EPS_S and (median + self.frame_s) * 1000.0 <= c.max_delay_ms:
            self._pending = 1
            m += self.frame_s  # every recorded packet now has one slot more margin
            self._pops_since_adapt = 0
        elif self._pops_since_adapt >= c.adapt_every:
            self._pops_since_adapt = 0
            if (low > self.frame_s + (c.safety_ms + c.guard_ms) / 1000.0 or median * 1000.0 > c.max_delay_ms) \
                    and (median - self.frame_s) * 1000.0 >= c.min_delay_ms:
                self._pending = -1
                m -= self.frame_s

    def drain(self) -> list[bytes | None]:
        """End of stream: every slot from playout up to the newest buffered one."""
        out: list[bytes | None] = []
        if not self._buf:
            return out
        if not self.started:
            self.started = True
            self.next_slot = min(self._buf)
        last = max(self._buf)
        while self.next_slot <= last:
            item = self._buf.pop(self.next_slot, None)
            out.append(None if item is None else item[0])
            self.stats["played" if item is not None else "missing"] += 1
            self.next_slot += 1
        return out
