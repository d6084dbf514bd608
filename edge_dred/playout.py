"""Adaptive playout: spend delay on DRED only when the loss pattern makes it pay.

DRED carries up to a second of the past in every packet, but a receiver can
rebuild only audio it has not played yet: a lost packet is recovered from the
first packet after its burst only if that packet arrives within the playout
delay.  :class:`PlayoutController` decides how much delay to hold;
:class:`Playout` plays the receiver's slots at that delay, growing and
shrinking it with time-scale modification (:mod:`edge_dred.dsp.tsm`), never
with gaps or jumps.

Policy (:class:`PlayoutController`)
-----------------------------------
For every candidate recovery window ``W`` (20 ms steps from the minimum to
the cap) the controller keeps an exponentially decayed count of the packets
that ``W`` would have left to concealment (``max(0, burst - W)`` per burst)
and of all packets seen.  While the minimum would conceal at most
:data:`CONCEALED_FRACTION` of the packets, the delay stays at the minimum
(a few long bursts on a good network are not worth a permanently longer
delay).  Beyond that, the target is the smallest ``W`` that would have
concealed at most :data:`RESIDUAL_FRACTION`: a high quantile of recent burst
lengths, so the bursts history says are likely are recovered whole (a burst
recovered only in part still has an audible concealment at its start) --
unless bursts longer than ``W`` start in fewer than :data:`STEP_FRACTION` of
the slots: then 20 ms more would rarely recover anything, and ``W`` is the
target (rare long bursts are not worth holding the delay for).
Old bursts fade with :data:`HALF_LIFE_S`, so a clean network brings the
delay back to the minimum; a stream starts as if it had seen
:data:`PRIOR_S` of clean network, so one early burst does not move it.  The
target is capped by the user's budget (``--max-delay-ms``) and by the DRED
depth the sender actually sends (waiting longer than the redundancy reaches
buys nothing).  Jitter (live) adds a floor: the minimum plus a decayed peak
of the measured jitter.

Mechanism (:class:`Playout`)
----------------------------
One call per 20 ms period: the packet of that period arrives (or not), then
20 ms are played.  Slots are decided just in time (when the output queue
runs short), so the look-ahead a lost slot gets is exactly the delay the
playout holds.  When the delay is below the target, the next decided slot
is stretched by a pitch period (or several, up to half a slot); above it,
compressed.  Where: concealed slots and silence (more than
:data:`SILENCE_DB` below the recent speech level) take up to half a slot
each; other speech only when periodic (voiced, correlation at the lag >=
:data:`VOICED_CORR`) and at most :data:`SPEECH_RATE` on average.

The output is therefore *not* sample-aligned with the input.  Every
insertion and removal is logged (``events``), and :attr:`Playout.media` keeps
the slots as decided, before time-scaling: that is the played audio with the
time-scaling undone exactly (what intrusive metrics compare with the input).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .dsp import tsm
from .plugins import Decision
from .receiver import DEFAULT_RECOVERY_MS, Receiver

__all__ = ["DEFAULT_MAX_DELAY_MS", "PlayoutController", "Playout", "CONCEALED_FRACTION", "RESIDUAL_FRACTION",
           "STEP_FRACTION", "HALF_LIFE_S",
           "PRIOR_S", "SPEECH_RATE", "delay_summary", "warp_like"]

#: Default delay budget (``--max-delay-ms``): covers bursts up to 200 ms.
DEFAULT_MAX_DELAY_MS = 200
#: Share of packets the controller accepts leaving to concealment before it adds delay.
CONCEALED_FRACTION = 0.04
#: Once it adds delay: the share of packets the target may still leave to concealment.
RESIDUAL_FRACTION = 0.005
#: Once it adds delay: 20 ms more are worth it only if they would recover at least this share of packets.
STEP_FRACTION = 0.005
#: Half-life of the loss-pattern memory, seconds.
HALF_LIFE_S = 5.0
#: A stream starts as if after this much clean network, seconds.
PRIOR_S = 1.0
#: Longest average rate change applied to ordinary (non-silent, unconcealed) speech.
SPEECH_RATE = 0.05
#: Normalised correlation at the chosen lag above which speech counts as voiced (periodic).
VOICED_CORR = 0.9
#: A slot this far below the recent speech level counts as silence, dB.
SILENCE_DB = 30.0

#: Periods of delay trace a live session keeps for its report (the last 5 minutes).
LIVE_TRACE_PERIODS = 15_000

_CONCEALED = {Decision.NEURAL_PLC, Decision.OPUS_PLC, Decision.ZEROS}
_SLOTS_PER_S = 1000 // FRAME_MS
_LEVEL_DECAY = 0.5 ** (1.0 / (2 * _SLOTS_PER_S))   # speech level: decaying peak, 2 s half-life
_MAX_LAG = FRAME_SAMPLES // 2                      # at most half a slot inserted or removed per slot
_SAMPLES_PER_MS = SAMPLE_RATE // 1000


def _ms_arg(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}] ms, got {v!r}")
    return int(v)


class PlayoutController:
    """The target playout delay, from the loss bursts (and jitter) seen so far.

    Parameters
    ----------
    min_ms : int
        The delay held on a clean network (default: the fixed recovery
        window, :data:`edge_dred.receiver.DEFAULT_RECOVERY_MS`).
    max_ms : int
        The user's budget: the target never exceeds it.

    Attributes
    ----------
    target_ms : int
        Current target (multiple of 20 ms, ``min_ms <= target_ms <= max_ms``).
    reason : str
        Why the target is what it is (for status lines and reports).
    """

    def __init__(self, min_ms: int = DEFAULT_RECOVERY_MS, max_ms: int = DEFAULT_MAX_DELAY_MS) -> None:
        self.min_ms = _ms_arg(min_ms, "min_ms", 0, 2000)
        self.max_ms = _ms_arg(max_ms, "max_ms", self.min_ms, 2000)
        self._min_k = -(-self.min_ms // FRAME_MS)
        self._max_k = max(self._min_k, self.max_ms // FRAME_MS)
        self._decay = 0.5 ** (1.0 / (HALF_LIFE_S * _SLOTS_PER_S))
        self._k = np.arange(self._max_k + 2)
        self._concealed = np.zeros(self._max_k + 2)   # decayed packets each window would have concealed
        self._seen = PRIOR_S * _SLOTS_PER_S           # decayed packets seen (prior: clean network)
        self._run = 0
        self._redundancy_k: int | None = None
        self._jitter_ms = 0.0
        self.target_ms = self.min_ms
        self.reason = "start: minimum delay"

    def set_redundancy_ms(self, ms: int) -> None:
        """The DRED depth the sender actually sends (0: none, only LBRR: no point waiting)."""
        ms = _ms_arg(ms, "redundancy", 0, 10_000)
        self._redundancy_k = ms // FRAME_MS
        self._update()

    def observe(self, lost: bool) -> None:
        """One slot, in sequence order: lost or arrived."""
        self._concealed *= self._decay
        self._seen = self._seen * self._decay + 1.0
        if lost:
            self._run += 1
        elif self._run:
            self._concealed += np.maximum(0, self._run - self._k)
            self._run = 0
        self._jitter_ms = self._jitter_ms * self._decay if self._jitter_ms >= 1.0 else 0.0  # < 1 ms: none left
        self._update()

    def observe_jitter(self, ms: float) -> None:
        """A measured arrival jitter (ms): the target keeps a decayed peak of it above the minimum."""
        if not np.isfinite(ms) or ms < 0:
            raise ValueError(f"jitter must be a finite number of ms >= 0, got {ms!r}")
        self._jitter_ms = max(self._jitter_ms, float(ms))
        self._update()

    @property
    def loss_run(self) -> int:
        """Consecutive lost slots up to now."""
        return self._run

    def _update(self) -> None:
        frac = self._concealed / self._seen
        lo = self._min_k
        bursty = frac[lo] > CONCEALED_FRACTION
        k = lo
        if bursty:
            # frac[k] - frac[k + 1] is the share of slots that start a burst longer than k: what
            # 20 ms more than k slots would recover.  Stop where little is left to conceal or
            # where the next 20 ms would recover too little.
            ok = np.nonzero((frac[lo:-1] <= RESIDUAL_FRACTION) | (frac[lo:-1] - frac[lo + 1:] < STEP_FRACTION))[0]
            k = lo + int(ok[0]) if ok.size else self._max_k + 1
        jitter_k = lo + int(np.ceil(self._jitter_ms / FRAME_MS - 1e-9))
        cap = self._max_k if self._redundancy_k is None else max(lo, min(self._max_k, self._redundancy_k))
        if jitter_k > k:
            target, why = jitter_k, f"jitter {self._jitter_ms:.0f} ms"
        elif not bursty:
            target, why = lo, "clean network: minimum delay"
        else:
            target, kk = k, min(k, self._max_k)
            why = f"bursts: {100 * frac[lo]:.1f} % of recent packets would be concealed at {self.min_ms} ms"
            if kk > lo:
                why += f", {100 * frac[kk]:.1f} % at {kk * FRAME_MS} ms"
            if kk < self._max_k and frac[kk] > RESIDUAL_FRACTION:
                why += (f"; bursts longer than {kk * FRAME_MS} ms start in < {100 * STEP_FRACTION:g} % of slots: "
                        "not worth the wait")
        if target > cap:
            target = cap
            why += f" (capped by the {'budget' if cap == self._max_k else 'DRED depth'}, {cap * FRAME_MS} ms)"
        self.target_ms = max(self.min_ms, target * FRAME_MS)
        self.reason = why


@dataclass
class _Event:
    t_ms: int
    slot: int
    samples: int   # > 0 inserted, < 0 removed
    where: str     # "concealed", "silence", "voiced"


class Playout:
    """Play a receiver's slots at the controller's delay, one 20 ms period per :meth:`tick`.

    Parameters
    ----------
    receiver : Receiver
        Slots are pushed with :meth:`Receiver.receive` and decided with
        :meth:`Receiver.decide_next` when the output needs them.
    controller : PlayoutController
        The target delay; ``None`` plays at a fixed ``min_ms`` (no time-scaling).
    min_ms : int
        Delay before the first slot is decided (and the fixed delay without a controller).
    keep_trace : bool
        Record the delay of every period in ``trace`` (reports).
    keep_media : bool
        Keep every decided slot in ``media`` (simulation; grows with the stream).
    trace_periods : int, optional
        Keep only the last this many periods of ``trace``, ``events`` and
        ``delays_ms`` (live sessions); default: all.

    Attributes
    ----------
    media : list of numpy.ndarray
        Every decided slot before time-scaling (the played audio, de-warped).
    events : list
        Every insertion and removal (time, slot, samples, where).
    trace : list of (t_ms, delay_ms, target_ms)
        Per played period, with ``keep_trace``.
    changes : list of (t_ms, target_ms, reason)
        Every change of the target.
    delays_ms : list of float
        Delay of every played period (for statistics).
    underruns : int
        Periods with nothing to play (a live network starved the receiver).
    """

    def __init__(self, receiver: Receiver, controller: PlayoutController | None = None,
                 min_ms: int = DEFAULT_RECOVERY_MS, keep_trace: bool = True, keep_media: bool = True,
                 trace_periods: int | None = None) -> None:
        self.receiver = receiver
        self.controller = controller
        self.min_ms = controller.min_ms if controller is not None else _ms_arg(min_ms, "min_ms", 0, 10_000)
        self._start_pending = -(-self.min_ms // FRAME_MS) + 1
        self._n = FRAME_SAMPLES
        self._queue = np.zeros(0, np.float64)
        self._tail = np.zeros(2 * self._n, np.float64)   # the last samples queued (stretch context)
        self._credit = 0.0
        self._level = 0.0
        self._slot = 0
        self._t = 0
        self.started = False
        self.keep_media = keep_media
        self.media: list[np.ndarray] = []
        self.events: deque[_Event] = deque(maxlen=trace_periods)
        self.trace: deque[tuple[int, float, int]] | None = deque(maxlen=trace_periods) if keep_trace else None
        self.changes: deque[tuple[int, int, str]] = deque(maxlen=trace_periods)
        self.delays_ms: deque[float] = deque(maxlen=trace_periods)
        self.underruns = 0
        self._last_target: int | None = None

    # ----------------------------------------------------------------- state
    @property
    def target_ms(self) -> int:
        return self.controller.target_ms if self.controller is not None else self.min_ms

    def delay_ms(self) -> float:
        """Delay held now: later packets known for the next undecided slot, plus queued audio."""
        return max(self.receiver.pending - 1, 0) * FRAME_MS + self._queue.shape[0] / _SAMPLES_PER_MS

    # ------------------------------------------------------------------ flow
    def tick(self, packet: bytes | None) -> np.ndarray | None:
        """The packet of the next 20 ms period arrives (``None``: lost); return 20 ms to play.

        Returns None while the playout has not started (the first ``min_ms``).
        """
        self.receiver.receive(packet)
        if self.controller is not None:
            self.controller.observe(packet is None)
        if not self.started:
            if self.receiver.pending < self._start_pending:
                self._t += FRAME_MS
                return None
            self.started = True
        out = self._play(adapt=True)
        self._t += FRAME_MS
        return out

    def drain(self) -> list[np.ndarray]:
        """End of stream: decide what is left and play it out (no time-scaling; whole periods, the last padded)."""
        self.started = True
        out = []
        while self.receiver.pending or self._queue.shape[0]:
            out.append(self._play(adapt=False, partial=True))
        return out

    def _play(self, adapt: bool, partial: bool = False) -> np.ndarray:
        n = self._n
        target = self.target_ms
        if target != self._last_target:
            self.changes.append((self._t, target, self.controller.reason if self.controller else "fixed"))
            self._last_target = target
        delay = self.delay_ms()
        if adapt:  # the drain at the end of a stream is no playout decision
            self.delays_ms.append(delay)
            if self.trace is not None:
                self.trace.append((self._t, round(delay, 2), target))
        while self._queue.shape[0] < n and self.receiver.pending:
            delay = self.delay_ms()
            x = self.receiver.decide_next().astype(np.float64)
            decision = self.receiver.decisions[-1]
            if self.keep_media:
                self.media.append(x.astype(np.int16))
            y = self._scale(x, decision, (target - delay) * _SAMPLES_PER_MS) if adapt and self.controller else x
            self._queue = np.concatenate([self._queue, y])
            self._tail = np.concatenate([self._tail, y])[-2 * n:]
            self._slot += 1
        if self._queue.shape[0] < n:   # the stream's end (padded to a whole period), else an underrun
            self.underruns += not partial
            self._queue = np.concatenate([self._queue, np.zeros(n - self._queue.shape[0])])
        out, self._queue = self._queue[:n], self._queue[n:]
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    def _scale(self, x: np.ndarray, decision: Decision, want: float) -> np.ndarray:
        """Stretch (``want > 0`` samples) or compress (``< 0``) one decided slot where it is least audible."""
        n = self._n
        rms = float(np.sqrt(np.mean(x * x)))
        self._level = max(rms, self._level * _LEVEL_DECAY)
        self._credit = min(self._credit + SPEECH_RATE * n, float(_MAX_LAG))
        if decision in _CONCEALED:
            where, allow = "concealed", _MAX_LAG
        elif rms <= self._level * 10 ** (-SILENCE_DB / 20):
            where, allow = "silence", _MAX_LAG
        else:
            where, allow = "voiced", int(self._credit)
        hi = int(min(abs(want), allow))
        if hi < tsm.MIN_LAG:
            return x
        if want > 0:
            z = np.concatenate([self._tail, x])
            lag, corr = tsm.best_lag(z, self._tail.shape[0], tsm.MIN_LAG, hi, forward=False)
        else:
            lag, corr = tsm.best_lag(x, 0, tsm.MIN_LAG, hi, forward=True)
        if lag == 0 or (where == "voiced" and corr < VOICED_CORR):
            return x
        if where == "voiced":
            self._credit -= lag
        self.events.append(_Event(self._t, self._slot, lag if want > 0 else -lag, where))
        return tsm.stretch(self._tail, x, lag) if want > 0 else tsm.compress(x, lag)

    # --------------------------------------------------------------- reports
    def status(self) -> str:
        """``delay 112/160ms (bursts: ...)``: the delay held now, the target and why."""
        why = self.controller.reason if self.controller is not None else "fixed"
        return f"delay {self.delay_ms():.0f}/{self.target_ms}ms ({why})"

    def report(self, trace: bool = True) -> dict[str, Any]:
        """Delay statistics, target changes and time-scaling events (JSON-ready)."""
        rep: dict[str, Any] = {
            "min_ms": self.min_ms,
            "max_ms": self.controller.max_ms if self.controller is not None else self.min_ms,
            **delay_summary(self.delays_ms, self.min_ms),
            "underruns": self.underruns,
            "stretched_ms": sum(e.samples for e in self.events if e.samples > 0) / _SAMPLES_PER_MS,
            "compressed_ms": -sum(e.samples for e in self.events if e.samples < 0) / _SAMPLES_PER_MS,
            "changes": [{"t_ms": t, "target_ms": v, "reason": r} for t, v, r in self.changes],
            "events": [{"t_ms": e.t_ms, "slot": e.slot, "samples": e.samples, "where": e.where}
                       for e in self.events],
        }
        if trace and self.trace is not None:
            rep["trace"] = [{"t_ms": t, "delay_ms": d, "target_ms": g} for t, d, g in self.trace]
        return rep


def delay_summary(delays_ms: Any, min_ms: int) -> dict[str, float]:
    """Mean / 95th percentile / largest delay and the mean delay added above ``min_ms``."""
    d = np.asarray(list(delays_ms), np.float64)
    if d.size == 0:
        return {"mean_delay_ms": float("nan"), "p95_delay_ms": float("nan"), "max_delay_ms": float("nan"),
                "mean_added_ms": float("nan")}
    return {"mean_delay_ms": float(d.mean()), "p95_delay_ms": float(np.percentile(d, 95)),
            "max_delay_ms": float(d.max()), "mean_added_ms": float(d.mean() - min_ms)}


def warp_like(media: np.ndarray, events: list[dict[str, Any]] | list[_Event], frame: int = FRAME_SAMPLES
              ) -> np.ndarray:
    """``media`` (on the decided slots' time line) warped as the playout warped its slots, by hard splices.

    For intrusive scoring of time-scaled output: PESQ cannot follow a
    drifting delay (a uniform 1 % rate change alone costs it more than 2
    points), so the reference is put on the played time line instead.  A slot
    stretched by ``P`` is preceded by a repeat of the ``P`` samples before it,
    a slot compressed by ``P`` loses its samples ``P..2P``: the same cuts the
    playout made, without its cross-fades, so what remains between the two
    signals is the cross-fades' own artefacts (and the codec's).
    """
    x = np.asarray(media)
    by_slot: dict[int, int] = {}
    for e in events:
        slot, n = (e["slot"], e["samples"]) if isinstance(e, dict) else (e.slot, e.samples)
        by_slot[int(slot)] = by_slot.get(int(slot), 0) + int(n)
    parts: list[np.ndarray] = []
    pos = 0
    for slot in sorted(by_slot):
        start = slot * frame
        if start > x.shape[0] or start < pos:
            continue
        d = by_slot[slot]
        parts.append(x[pos:start])
        if d > 0:
            parts.append(x[max(start - d, 0):start])
            pos = start
        else:
            parts.append(x[start:start - d])
            pos = start - 2 * d
    parts.append(x[pos:])
    return np.concatenate(parts)
