"""Offline simulation: sender -> packets -> loss -> receiver, sample-aligned.

This is the pipeline behind ``edge-dred simulate`` and ``edge-dred eval``.  A
*condition* names a sender/receiver configuration (bit rate, LBRR, concealment);
:func:`run_condition` plays one signal through it under a given loss mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .constants import FRAME_MS
from .plugins import Decision
from .receiver import DEFAULT_RECOVERY_MS, Receiver, build_receiver
from .sender import Sender, n_packets_for

__all__ = ["Condition", "CONDITIONS", "SimResult", "run_condition", "simulate", "loss_outcomes"]


@dataclass(frozen=True)
class Condition:
    """A named sender/receiver configuration.

    Attributes
    ----------
    bitrate : int
        Total Opus bit rate in b/s.  libopus takes LBRR's bits out of this
        total, so LBRR conditions run at 40 kb/s to keep the primary near 24.
    lbrr : bool
        Sender emits in-band FEC (LBRR) and the receiver uses it.
    concealment : str
        What fills a hole nothing recovers: ``opus_plc`` or ``zeros``.
    lossless : bool
        Ignore the loss mask (the ``clean`` reference).
    neural_plc : bool
        Conceal with :class:`edge_dred.plc.NeuralPLC` (feature prediction +
        vocoder) instead of ``concealment``.
    playout : str
        ``fixed`` (the recovery window stays ``recovery_ms``) or ``adaptive``
        (:mod:`edge_dred.playout`: the delay follows the loss pattern up to
        ``max_delay_ms``, grown and shrunk by time-scaling).
    copy_synthesis : bool
        No packets at all: the clean input's own features through the
        shipped vocoder (:func:`edge_dred.neural.vocoder.copy_synthesis`), the
        ceiling of neural concealment (the ``vocoder`` condition; lossless,
        0 b/s).
    dred_ms : int
        DRED redundancy depth the sender puts in every packet (0: none); the
        receiver then recovers with :class:`edge_dred.dred.recovery.DredRecoverer`
        from packets that arrive within the recovery window
        (``run_condition(recovery_ms=...)``).  The payload rides on top of
        ``bitrate``.
    red : int
        RFC 2198 redundancy: every packet also carries copies of the ``red``
        frames before it (WebRTC's RED sends 1 or 2), on top of ``bitrate``;
        the receiver decodes a lost frame's copy from a later packet within
        the recovery window, as with DRED.
    """

    name: str
    bitrate: int = 24000
    lbrr: bool = False
    concealment: str = "opus_plc"
    lossless: bool = False
    neural_plc: bool = False
    dred_ms: int = 0
    copy_synthesis: bool = False
    playout: str = "fixed"
    red: int = 0


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("clean", lossless=True),
        Condition("zeros", concealment="zeros"),
        Condition("opus_plc"),
        Condition("lbrr", bitrate=40000, lbrr=True),
        Condition("neural_plc", neural_plc=True),
        Condition("lbrr+neural_plc", bitrate=40000, lbrr=True, neural_plc=True),
        Condition("dred", dred_ms=1040),
        Condition("lbrr+dred", bitrate=40000, lbrr=True, dred_ms=1040),
        Condition("dred_adaptive", dred_ms=1040, playout="adaptive"),
        Condition("lbrr+dred_adaptive", bitrate=40000, lbrr=True, dred_ms=1040, playout="adaptive"),
        Condition("red1", red=1),
        Condition("red2", red=2),
        Condition("red2+dred", red=2, dred_ms=1040),
        Condition("vocoder", bitrate=0, lossless=True, copy_synthesis=True),
    )
}



@dataclass
class SimResult:
    """Outcome of one simulated stream.

    Attributes
    ----------
    audio : np.ndarray
        int16, same length as the input, sample-aligned with it.  With an
        adaptive playout this is the played audio with its time-scaling
        undone (the slots as decided); what a listener hears is
        ``extra["played"]``, which is *not* sample-aligned with the input.
    lost : np.ndarray
        bool per 20 ms packet (True = lost).
    decisions : list[str]
        What produced each packet's 20 ms of output.
    total_bitrate_bps : float
        Bit rate of everything sent (all packets, including lost ones).
    packet_bytes : np.ndarray
        Size of each packet in bytes.
    """

    audio: np.ndarray
    lost: np.ndarray
    decisions: list[str]
    total_bitrate_bps: float
    packet_bytes: np.ndarray
    condition: str = ""
    extra: dict = field(default_factory=dict)

    def decision_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.decisions:
            out[d] = out.get(d, 0) + 1
        return out


def _fit_mask(lost: np.ndarray | None, n: int) -> np.ndarray:
    if lost is None:
        return np.zeros(n, bool)
    lost = np.asarray(lost, bool).ravel()
    if len(lost) == 0:
        raise ValueError("empty loss mask")
    if len(lost) < n:  # loss traces repeat cyclically over longer signals
        lost = np.resize(lost, n)
    return lost[:n].copy()


def simulate(pcm: np.ndarray, lost: np.ndarray | None, sender: Sender, receiver: Receiver,
             condition: str = "", playout: "PlayoutController | None" = None) -> SimResult:
    """Play ``pcm`` (int16 mono 16 kHz) through ``sender``, the loss mask and ``receiver``.

    With ``playout`` (a :class:`edge_dred.playout.PlayoutController`) time is
    modelled: one packet arrives per 20 ms, the receiver decides a slot only
    when the output needs it, and the delay follows the controller
    (``extra["playout"]``: delay trace and time-scaling events;
    ``extra["played"]``: the warped output).  Deterministic for a given mask.
    """
    pcm = np.asarray(pcm)
    if pcm.ndim != 1 or pcm.dtype != np.int16:
        raise ValueError(f"expected 1-D int16 PCM, got {pcm.dtype} {pcm.shape}")
    if len(pcm) == 0:
        raise ValueError("empty signal")
    packets = sender.encode_stream(pcm)
    mask = _fit_mask(lost, len(packets))
    chunks: list[np.ndarray] = []
    extra: dict = {}
    if playout is None:
        for pkt, is_lost in zip(packets, mask):
            chunks.extend(receiver.push(None if is_lost else sender.receive(pkt)))
        chunks.extend(receiver.flush())
    else:
        from .playout import Playout

        playout.set_redundancy_ms(sender.dred_ms)
        player = Playout(receiver, playout)
        played = [player.tick(None if is_lost else sender.receive(pkt)) for pkt, is_lost in zip(packets, mask)]
        played = [p for p in played if p is not None] + player.drain()
        chunks = player.media
        heard = np.concatenate(played)[sender.lookahead:]
        net = sum(e.samples for e in player.events)
        extra["played"] = heard[: max(len(pcm) + net, 0)].astype(np.int16)
        extra["playout"] = player.report()
    out = np.concatenate(chunks)
    audio = out[sender.lookahead: sender.lookahead + len(pcm)]
    sizes = np.array([len(p) for p in packets], np.int32)
    duration = len(packets) * FRAME_MS / 1000.0
    decisions = [d.value for d in receiver.decisions]
    if sender.dred is not None:
        extra["dred_bytes"] = np.asarray(sender.dred_bytes, np.int32)
    if sender.red is not None:
        extra["red_bytes"] = np.asarray(sender.red_bytes, np.int32)
    extra["loss_outcomes"] = loss_outcomes(mask, receiver.decisions, [sender.receive(p) for p in packets], receiver)
    return SimResult(
        audio=audio.astype(np.int16), lost=mask, decisions=decisions,
        total_bitrate_bps=float(sizes.sum() * 8 / duration), packet_bytes=sizes, condition=condition, extra=extra,
    )


def loss_outcomes(mask: np.ndarray, decisions: list, packets: list[bytes], receiver: Receiver) -> list[str]:
    """Per lost packet, in order: ``in_time``, ``too_late`` or ``concealed``.

    ``in_time``: rebuilt from redundancy (RED, LBRR or DRED) before it was played.
    ``too_late``: concealed, though the first packet after its burst carried
    DRED reaching back over it (it arrived after the slot was played).
    ``concealed``: no redundancy that arrived ever covered it.
    """
    dred = next((r for r in receiver.recoverers if hasattr(r, "reaches")), None)
    out: list[str] = []
    nxt = len(mask)
    first_after = np.empty(len(mask), np.int64)
    for i in range(len(mask) - 1, -1, -1):   # the first arrived packet after each slot
        first_after[i] = nxt
        if not mask[i]:
            nxt = i
    for i in np.nonzero(mask)[0]:
        d = Decision(decisions[i])
        if d in (Decision.RED, Decision.LBRR, Decision.DRED):
            out.append("in_time")
            continue
        r = int(first_after[i])
        late = dred is not None and r < len(packets) and dred.reaches(int(i), r, packets[r])
        out.append("too_late" if late else "concealed")
    return out


def run_condition(pcm: np.ndarray, lost: np.ndarray | None, condition: str | Condition,
                  bitrate: int | None = None, recovery_ms: int = DEFAULT_RECOVERY_MS,
                  max_delay_ms: int | None = None) -> SimResult:
    """Simulate one named condition.

    Parameters
    ----------
    pcm : np.ndarray
        int16 mono 16 kHz signal.
    lost : np.ndarray or None
        bool per 20 ms packet; repeated cyclically if shorter than the stream.
    condition : str or Condition
        One of :data:`CONDITIONS` (or a Condition object).
    bitrate : int, optional
        Override the condition's total bit rate.
    recovery_ms : int
        How long a slot waits for DRED or RED in later packets, for DRED and RED conditions
        (see :data:`edge_dred.receiver.DEFAULT_RECOVERY_MS`); the minimum
        delay of an adaptive playout.
    max_delay_ms : int, optional
        Delay budget of an adaptive playout (default
        :data:`edge_dred.playout.DEFAULT_MAX_DELAY_MS`).
    """
    if isinstance(condition, str):
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; valid: {', '.join(CONDITIONS)}")
        condition = CONDITIONS[condition]
    if condition.copy_synthesis:
        from .neural.vocoder import copy_synthesis

        audio = copy_synthesis(np.asarray(pcm))
        n = n_packets_for(len(audio))
        return SimResult(audio=audio, lost=np.zeros(n, bool), decisions=["vocoder"] * n, total_bitrate_bps=0.0,
                         packet_bytes=np.zeros(n, np.int32), condition=condition.name)
    sender = Sender(bitrate or condition.bitrate, lbrr=condition.lbrr, dred_ms=condition.dred_ms, red=condition.red)
    dred = bool(condition.dred_ms)
    # Redundancy in later packets (DRED, RED) is usable within the recovery window.
    receiver = build_receiver(lbrr=condition.lbrr, concealment=condition.concealment, dred=dred,
                              neural_plc=condition.neural_plc,
                              recovery_ms=recovery_ms if dred or condition.red else None)
    controller = None
    if condition.playout == "adaptive":
        from .playout import DEFAULT_MAX_DELAY_MS, PlayoutController

        controller = PlayoutController(recovery_ms, DEFAULT_MAX_DELAY_MS if max_delay_ms is None else max_delay_ms)
    elif condition.playout != "fixed":
        raise ValueError(f"{condition.name}: unknown playout {condition.playout!r} (fixed, adaptive)")
    return simulate(pcm, None if condition.lossless else lost, sender, receiver, condition.name, controller)
