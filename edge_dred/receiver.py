"""The per-packet decision machine of the receiver.

One slot per 20 ms packet.  Packets are pushed in sequence order (``None`` for a
lost one); a slot is decided once ``lookahead`` later slots are known, so that
recovery that needs the future (LBRR in the next packet, DRED in a later one)
can use it.  For every slot exactly one :class:`Decision` is recorded, so every
hole can be explained afterwards.

Order of preference for a lost slot:

1. ``red``     a later packet in view carries an RFC 2198 copy of this very frame
               (:class:`edge_dred.transport.red.RedOpusPacket`), decoded as if it had arrived;
2. ``lbrr``    the next packet carries an LBRR copy of this frame (libopus FEC decode);
3. recoverers  plug-ins consulted in order (DRED: :mod:`edge_dred.dred.recovery`);
4. concealment ``opus_plc`` (libopus PLC), ``zeros``, or a concealer plug-in
   (the neural PLC: :mod:`edge_dred.plc`).

The receiver only orchestrates: decoding is libopus, recovery and concealment
are objects behind the small :class:`Recoverer` / :class:`Concealer` protocols.

Plug-in hooks (all optional methods, looked up once):

* ``observe(pcm, decision)``  every plug-in sees every output slot, in order, so
  it can keep running state (feature history, vocoder priming) warm;
* ``handback(pcm) -> pcm``    called on the plug-in that produced the previous
  slot when real audio (regular or LBRR) resumes, to cross-fade into it.

While a plug-in fills a slot, libopus still runs its own PLC for that slot
(``SlotContext.opus_plc``), so the decoder's internal state keeps moving and
the first real packet afterwards decodes as libopus expects.  ``handback`` is
also called when a plug-in's slot is followed by one no plug-in produced
(libopus PLC or zeros, e.g. the load governor stopped neural work mid-burst):
libopus's concealment is not continuous with the plug-in's audio either.

Load governor (optional, :class:`edge_dred.degrade.LoadGovernor`): consulted
once per slot before any plug-in runs.

* ``allow_neural()`` False: no plug-in is called at all -- no recoverer, no
  concealer, no ``observe`` -- and holes get LBRR or the classic concealment;
  the decision records what actually ran (``opus_plc``/``zeros``).
* ``dred_ms_cap()``: passed to recoverers as ``SlotContext.dred_cap_ms``
  (:class:`~edge_dred.dred.recovery.DredRecoverer` decodes no further back).
* When neural work is allowed again the plug-ins first ``observe``
  ``rewarm_slots`` slots (their feature history and vocoder priming went stale
  while they were skipped) before they fill holes.

The governor is *observed* by whoever times the slots (the live loop), not here.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .constants import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .codec.opus import OpusDecoder, packet_has_lbrr
from .plugins import Concealer, Decision, Recoverer, SlotContext
from .transport.red import MAX_RED_BACK

if TYPE_CHECKING:  # pragma: no cover
    from .degrade import LoadGovernor

__all__ = ["Decision", "ReceiverConfig", "Receiver", "Recoverer", "Concealer", "SlotContext", "build_receiver",
           "recovery_lookahead", "DEFAULT_RECOVERY_MS"]

#: How long the receiver holds a slot for redundancy in later packets (DRED), in ms.  DRED
#: can only rebuild audio not yet played: a lost packet is recovered only from a packet
#: arriving at most ``recovery_ms / 20`` packets later, so with 60 ms (a typical adaptive
#: jitter-buffer depth on a good network) DRED fills bursts up to 3 packets and the last
#: 60 ms of longer ones.  libopus's own DRED evaluation assumes the first packet after a
#: burst always arrives in time; 1040 ms reproduces that (best case, not a live figure).
DEFAULT_RECOVERY_MS = 60


def recovery_lookahead(recovery_ms: int, lbrr: bool = False) -> int:
    """Receiver look-ahead in 20 ms slots for a recovery window in ms (LBRR needs >= 1)."""
    if isinstance(recovery_ms, bool) or not isinstance(recovery_ms, (int, np.integer)) \
            or not 0 <= recovery_ms <= 10_000:
        raise ValueError(f"recovery_ms must be an integer in [0, 10000], got {recovery_ms!r}")
    return max(int(recovery_ms) // FRAME_MS, 1 if lbrr else 0)


@dataclass
class ReceiverConfig:
    """Receiver behaviour.

    Attributes
    ----------
    lbrr : bool
        Use the LBRR (in-band FEC) copy in the next packet for a single lost frame.
    concealment : str
        ``"opus_plc"`` or ``"zeros"`` when no concealer plug-in is given.
    lookahead : int | None
        Slots of look-ahead before a slot is decided; default 1 with LBRR, else 0.
        Recoverers may need more (a jitter buffer bounds it in live use).
    history_samples : int
        Output history kept for plug-ins (vocoder priming).
    """

    lbrr: bool = False
    concealment: str = "opus_plc"
    lookahead: int | None = None
    history_samples: int = 4096
    frame_size: int = FRAME_SAMPLES
    sample_rate: int = SAMPLE_RATE

    def effective_lookahead(self) -> int:
        if self.lookahead is not None:
            if self.lookahead < 0:
                raise ValueError("lookahead must be >= 0")
            return self.lookahead
        return 1 if self.lbrr else 0


class Receiver:
    """Decide and decode one slot per packet, in order.

    Parameters
    ----------
    config : ReceiverConfig
    recoverers : sequence of Recoverer
        Tried in order for a lost slot after LBRR.
    concealer : Concealer, optional
        Replaces the classic concealment named in ``config.concealment``.
    governor : LoadGovernor, optional
        Decides per slot whether plug-ins may run and how much DRED they may
        decode (see the module docstring).
    rewarm_slots : int
        Slots the plug-ins observe, after the governor allowed neural work
        again, before they fill holes.

    Attributes
    ----------
    level_decisions : dict[str, dict[str, int]]
        With a governor: per level key (``full``/``short``/``classic``), how
        many slots were decided at that level, by decision.
    governor_skips : int
        Holes the governor kept from the plug-ins (including re-warm slots).

    Notes
    -----
    ``push`` returns the decided slots' audio in order (possibly none while the
    look-ahead fills); ``flush`` decides the remaining slots at the end of a stream.
    """

    def __init__(
        self,
        config: ReceiverConfig | None = None,
        recoverers: Sequence[Recoverer] = (),
        concealer: Concealer | None = None,
        governor: "LoadGovernor | None" = None,
        rewarm_slots: int = 10,
    ) -> None:
        self.config = config or ReceiverConfig()
        if self.config.concealment not in ("opus_plc", "zeros"):
            raise ValueError(f"unknown concealment {self.config.concealment!r} (opus_plc, zeros)")
        if isinstance(rewarm_slots, bool) or not isinstance(rewarm_slots, int) or not 1 <= rewarm_slots <= 1000:
            raise ValueError(f"rewarm_slots must be an integer in 1..1000, got {rewarm_slots!r}")
        if governor is not None and not all(hasattr(governor, a) for a in ("allow_neural", "dred_ms_cap", "level")):
            raise TypeError(f"governor must be a LoadGovernor, got {type(governor).__name__}")
        self.lookahead = self.config.effective_lookahead()
        self.decoder = OpusDecoder(self.config.sample_rate, 1)
        self.recoverers = list(recoverers)
        self.concealer = concealer
        self.decisions: list[Decision] = []
        self._pending: deque[bytes | None] = deque()
        self._next_slot = 0
        self._loss_run = 0
        self._history = np.zeros(self.config.history_samples, np.int16)
        plugins = [*self.recoverers, *([concealer] if concealer is not None else [])]
        self._has_plugins = bool(plugins)
        self._observers = [p for p in plugins if hasattr(p, "observe")]
        self._last_plugin = None  # plug-in that produced the previous slot, if any
        self.governor = governor
        self.rewarm_slots = rewarm_slots
        self._warm = rewarm_slots  # slots observed since plug-ins were last skipped (start: warm)
        self.level_decisions: dict[str, dict[str, int]] = {}
        if governor is not None:
            from .degrade import Level

            # Every key exists up front: a status thread may read this while slots are decided.
            self.level_decisions = {lvl.key: {d.value: 0 for d in Decision} for lvl in Level}
        self.governor_skips = 0

    @property
    def history(self) -> np.ndarray:
        """Most recent output samples, newest last."""
        return self._history

    def push(self, packet: bytes | None) -> list[np.ndarray]:
        """Add the next slot's packet (``None`` if lost); return newly decided audio."""
        self.receive(packet)
        out = []
        while len(self._pending) > self.lookahead:
            out.append(self._decide_one())
        return out

    def receive(self, packet: bytes | None) -> None:
        """Add the next slot's packet without deciding anything (a playout decides when)."""
        if packet is not None and not isinstance(packet, (bytes, bytearray, memoryview)):
            raise TypeError(f"packet must be bytes or None, got {type(packet).__name__}")
        # bytes (a RedOpusPacket included, with its copies) are kept as they are.
        self._pending.append(packet if packet is None or isinstance(packet, bytes) else bytes(packet))

    @property
    def pending(self) -> int:
        """Slots received but not decided yet (the next one to decide and what is known after it)."""
        return len(self._pending)

    def decide_next(self) -> np.ndarray:
        """Decide the oldest pending slot now, with whatever later packets are known.

        The playout (:mod:`edge_dred.playout`) calls this when it needs the
        audio, so the look-ahead is however far its delay lets packets run ahead.
        """
        if not self._pending:
            raise RuntimeError("no pending slot to decide")
        return self._decide_one()

    def flush(self) -> list[np.ndarray]:
        """Decide every pending slot (end of stream)."""
        out = []
        while self._pending:
            out.append(self._decide_one())
        return out

    def _decide_one(self) -> np.ndarray:
        packet = self._pending.popleft()
        future = list(self._pending)
        n = self.config.frame_size
        gov = self.governor
        level = gov.level if gov is not None else None
        allowed = gov is None or gov.allow_neural()
        # Plug-ins fill holes only once their running state is fresh again (see rewarm_slots).
        use_plugins = self._has_plugins and allowed and self._warm >= self.rewarm_slots
        plugin = None
        if packet is not None:
            pcm, decision = self.decoder.decode(packet, n), Decision.REGULAR
            self._loss_run = 0
        else:
            self._loss_run += 1
            pcm, decision, plugin = self._fill_lost(future, use_plugins)
        pcm = np.asarray(pcm, np.int16)
        if pcm.shape != (n,):
            raise RuntimeError(f"slot {self._next_slot}: {decision.value} produced {pcm.shape}, expected ({n},)")
        if self._last_plugin is not None and plugin is not self._last_plugin:
            # Real audio resumes, libopus PLC takes over mid-burst (governor), or another plug-in
            # does (neural PLC -> DRED once a packet that covers the hole arrives): none is
            # continuous with the previous plug-in's synthesis, so it cross-fades out of it.
            handback = getattr(self._last_plugin, "handback", None)
            if handback is not None:
                pcm = np.asarray(handback(pcm), np.int16)
                if pcm.shape != (n,):
                    raise RuntimeError(f"slot {self._next_slot}: handback produced {pcm.shape}, expected ({n},)")
        self._last_plugin = plugin
        self.decisions.append(decision)
        self._next_slot += 1
        self._history = np.concatenate([self._history[n:], pcm])
        if allowed:
            for obs in self._observers:
                obs.observe(pcm, decision)
            self._warm = min(self._warm + 1, self.rewarm_slots)
        else:
            self._warm = 0  # the plug-ins miss this slot: their state is stale from here
        if level is not None:
            per = self.level_decisions[level.key]
            per[decision.value] += 1
        if (allowed and self._has_plugins and self._warm >= self.rewarm_slots
                and self._pending and self._pending[0] is None):
            self._prepare_next()
        return pcm

    def _prepare_next(self) -> None:
        """The next slot is lost as things stand: let the plug-in that would fill it start now.

        A hole's first slot would otherwise carry the plug-in's whole start
        (parsing, vocoder priming, perhaps an analysis) on top of its own synthesis;
        this puts it in the slot just decided, which was cheap when it was
        real audio.  Redundancy that needs no plug-in (RED copies, LBRR)
        is left alone, as in :meth:`_fill_lost`.  Outputs do not change.
        """
        future = list(self._pending)[1:]
        if self._redundancy(future) is not None or (self.config.lbrr and not future):
            return     # RED or LBRR fills it, or LBRR may: the packet after it is not in view yet
        ctx = self._context(future, self._loss_run + 1, None)
        for plugin in (*self.recoverers, self.concealer):
            prepare = getattr(plugin, "prepare", None)
            if prepare is not None and prepare(ctx):
                return

    def _redundancy(self, future: list[bytes | None]) -> tuple[bytes, bool] | None:
        """What fills the oldest pending slot without a plug-in: (data, fec) to decode, or None.

        RED: the earliest packet in view with a copy of this frame (every copy
        is the same frame); else, with LBRR on, the next packet's LBRR (fec).
        """
        # A copy can be at most MAX_RED_BACK frames back (RED's timestamp offset field).
        for back, later in enumerate(future[:MAX_RED_BACK], 1):
            copy = getattr(later, "redundant", {}).get(back) if later is not None else None
            if copy is not None:
                return copy, False
        nxt = future[0] if future else None
        if self.config.lbrr and nxt is not None and packet_has_lbrr(nxt):
            return nxt, True
        return None

    def _context(self, future: list[bytes | None], loss_run: int, opus_plc: np.ndarray | None) -> SlotContext:
        """What the plug-ins see of the oldest pending slot."""
        cap = self.governor.dred_ms_cap() if self.governor is not None else None
        return SlotContext(self._next_slot, future, self._history, loss_run, opus_plc, cap)

    def _fill_lost(self, future: list[bytes | None], use_plugins: bool = True
                   ) -> tuple[np.ndarray, Decision, object]:
        n = self.config.frame_size
        red = self._redundancy(future)
        if red is not None:
            data, fec = red
            return self.decoder.decode(data, n, fec=fec), (Decision.LBRR if fec else Decision.RED), None
        if not use_plugins and self._has_plugins:
            self.governor_skips += 1
        if self.config.concealment == "zeros" and not self._has_plugins:
            return np.zeros(n, np.int16), Decision.ZEROS, None
        # With plug-ins libopus conceals every hole, used or not, so its state does not depend
        # on which slots the governor kept from them.
        opus_plc = self.decoder.decode(None, n)
        if not (use_plugins and self._has_plugins):
            if self.config.concealment == "zeros":
                return np.zeros(n, np.int16), Decision.ZEROS, None
            return opus_plc, Decision.OPUS_PLC, None
        ctx = self._context(future, self._loss_run, opus_plc)
        for rec in self.recoverers:
            pcm = rec.recover(ctx)
            if pcm is not None:
                return pcm, rec.decision, rec
        if self.concealer is not None:
            return self.concealer.conceal(ctx), self.concealer.decision, self.concealer
        if self.config.concealment == "zeros":
            return np.zeros(n, np.int16), Decision.ZEROS, None
        return opus_plc, Decision.OPUS_PLC, None


def build_receiver(*, lbrr: bool = False, concealment: str = "opus_plc", dred: bool = False,
                   neural_plc: bool = False, recovery_ms: int | None = None,
                   governor: "LoadGovernor | None" = None) -> Receiver:
    """The receiver every command assembles: the plug-ins asked for, on the shipped models.

    Parameters
    ----------
    lbrr : bool
        Use LBRR copies in the next packet.
    concealment : {"opus_plc", "zeros"}
        What fills a hole no plug-in fills.
    dred : bool
        Recover lost slots from DRED in later packets
        (:class:`~edge_dred.dred.recovery.DredRecoverer`).
    neural_plc : bool
        Conceal the rest with :class:`~edge_dred.plc.NeuralPLC`.
    recovery_ms : int, optional
        How long a slot waits for DRED or RED copies in later packets
        (default :data:`DEFAULT_RECOVERY_MS` with DRED; without it the
        look-ahead is LBRR's).
    governor : LoadGovernor, optional
        Load governor consulted per slot.

    Raises
    ------
    edge_dred.models.loader.ModelFileError, ImportError
        A missing or corrupt model, or no TFLite runtime.
    """
    recoverers: list[Recoverer] = []
    concealer = None
    if dred:
        from .dred.recovery import DredRecoverer

        recoverers.append(DredRecoverer())
    if neural_plc:
        from .plc import NeuralPLC

        concealer = NeuralPLC()
    if recovery_ms is None and dred:
        recovery_ms = DEFAULT_RECOVERY_MS
    lookahead = None if recovery_ms is None else recovery_lookahead(recovery_ms, lbrr)
    return Receiver(ReceiverConfig(lbrr=lbrr, concealment=concealment, lookahead=lookahead),
                    recoverers, concealer, governor)
