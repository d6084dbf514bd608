"""Offline simulation: sender -> packets -> loss -> receiver, sample-aligned.

This is the pipeline behind ``edge-dred simulate`` and ``edge-dred eval``.  A
*condition* names a sender/receiver configuration (bit rate, LBRR, concealment);
:func:`run_condition` plays one signal through it under a given loss mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .codec.opus import OpusEncoder
from .receiver import Receiver, ReceiverConfig

__all__ = ["Condition", "CONDITIONS", "SimResult", "Sender", "run_condition", "simulate", "n_packets_for"]


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
    copy_synthesis : bool
        No packets at all: the clean input's own features through the
        shipped vocoder (:func:`edge_dred.vocoder.copy_synthesis`), the
        ceiling of neural concealment (the ``vocoder`` condition; lossless,
        0 b/s).
    dred_ms : int
        DRED redundancy depth the sender puts in every packet (0: none); the
        receiver then recovers with :class:`edge_dred.dred.recovery.DredRecoverer`
        from packets that arrive within the jitter-buffer depth
        (``run_condition(jitter_ms=...)``).  The payload rides on top of
        ``bitrate``.
    """

    name: str
    bitrate: int = 24000
    lbrr: bool = False
    concealment: str = "opus_plc"
    lossless: bool = False
    neural_plc: bool = False
    dred_ms: int = 0
    copy_synthesis: bool = False


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
        Condition("vocoder", bitrate=0, lossless=True, copy_synthesis=True),
    )
}

#: Jitter-buffer depth assumed when DRED recovers in simulation.  A slot is
#: played ``jitter_ms`` after its packet was due, so only packets at most
#: ``jitter_ms / 20`` slots later can help it: DRED fills the *end* of a longer
#: burst (and all of a burst up to that length).  60 ms is a typical adaptive
#: jitter-buffer depth on a good network.  libopus's own DRED evaluation
#: instead assumes the first packet after the burst always arrives in time;
#: ``jitter_ms = 1040`` reproduces that assumption.
DEFAULT_JITTER_MS = 60

DEFAULT_EXPECTED_LOSS_PCT = 20  # tells libopus how strong to make LBRR


@dataclass
class SimResult:
    """Outcome of one simulated stream.

    Attributes
    ----------
    audio : np.ndarray
        int16, same length as the input, sample-aligned with it.
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


def _lookahead_of(enc: OpusEncoder) -> int:
    return int(enc.lookahead)


def n_packets_for(n_samples: int, lookahead: int = 104) -> int:
    """Packets needed so the decoded stream covers ``n_samples`` after the codec delay."""
    return -(-(n_samples + lookahead) // FRAME_SAMPLES)


class Sender:
    """Encode 20 ms frames into Opus packets, with a DRED payload when asked.

    Parameters
    ----------
    bitrate : int
        Opus bit rate in b/s (DRED comes on top).
    lbrr : bool
        Enable in-band FEC with ``expected_loss_pct``.
    complexity : int
        libopus complexity 0..10.
    dred_ms : int
        DRED redundancy depth per packet in ms (0 = no DRED, max 1040).
    dred_budget : int
        Largest DRED payload per packet in bytes.
    dred_encoder, dred_tables : optional
        Shared :class:`~edge_dred.dred.encoder.DredEncoder` / entropy tables
        (default: the shipped models).

    Attributes
    ----------
    dred_bytes : list of int
        DRED payload bytes of every packet of the last ``encode_stream``.
    """

    def __init__(self, bitrate: int = 24000, lbrr: bool = False, complexity: int = 9,
                 expected_loss_pct: int = DEFAULT_EXPECTED_LOSS_PCT, dtx: bool = False, *,
                 dred_ms: int = 0, dred_budget: int | None = None, dred_encoder=None, dred_tables=None) -> None:
        self.encoder = OpusEncoder(
            SAMPLE_RATE, 1, bitrate=bitrate, complexity=complexity, vbr=True, dtx=dtx,
            fec=lbrr, packet_loss_perc=expected_loss_pct if lbrr else 0, application="voip",
        )
        self.lookahead = _lookahead_of(self.encoder)
        self.dred = None
        self.dred_bytes: list[int] = []
        if not isinstance(dred_ms, int) or not 0 <= dred_ms <= 1040:
            raise ValueError(f"dred_ms must be an integer in [0, 1040], got {dred_ms!r}")
        if dred_ms:
            from .dred.encoder import DredStreamEncoder
            from .dred.ratecontrol import DEFAULT_BUDGET_BYTES

            self.dred = DredStreamEncoder(dred_ms, dred_budget or DEFAULT_BUDGET_BYTES, encoder=dred_encoder,
                                          tables=dred_tables)

    def encode_stream(self, pcm: np.ndarray) -> list[bytes]:
        """Encode a whole signal, padded at the end so the codec delay is flushed.

        Starts from a fresh encoder state, so the packets depend on ``pcm``
        alone (a Sender reused across runs gives every run the same packets).
        """
        self.encoder.reset()
        n = n_packets_for(len(pcm), self.lookahead)
        padded = np.zeros(n * FRAME_SAMPLES, np.int16)
        padded[: len(pcm)] = pcm
        frames = [padded[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES] for i in range(n)]
        packets = [self.encoder.encode(f) for f in frames]
        self.dred_bytes = [0] * n
        if self.dred is not None:
            from .codec.framing import attach_dred

            self.dred.reset()
            for i, f in enumerate(frames):
                payload = self.dred.push_pcm(f)
                if payload:
                    packets[i] = attach_dred(packets[i], payload)
                    self.dred_bytes[i] = len(payload)
        return packets


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
             condition: str = "") -> SimResult:
    """Play ``pcm`` (int16 mono 16 kHz) through ``sender``, the loss mask and ``receiver``."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 1 or pcm.dtype != np.int16:
        raise ValueError(f"expected 1-D int16 PCM, got {pcm.dtype} {pcm.shape}")
    if len(pcm) == 0:
        raise ValueError("empty signal")
    packets = sender.encode_stream(pcm)
    mask = _fit_mask(lost, len(packets))
    chunks: list[np.ndarray] = []
    for pkt, is_lost in zip(packets, mask):
        chunks.extend(receiver.push(None if is_lost else pkt))
    chunks.extend(receiver.flush())
    out = np.concatenate(chunks)
    audio = out[sender.lookahead: sender.lookahead + len(pcm)]
    sizes = np.array([len(p) for p in packets], np.int32)
    duration = len(packets) * FRAME_MS / 1000.0
    return SimResult(
        audio=audio.astype(np.int16), lost=mask, decisions=[d.value for d in receiver.decisions],
        total_bitrate_bps=float(sizes.sum() * 8 / duration), packet_bytes=sizes, condition=condition,
        extra={"dred_bytes": np.asarray(sender.dred_bytes, np.int32)} if sender.dred is not None else {},
    )


def jitter_lookahead(jitter_ms: int, lbrr: bool = False) -> int:
    """Receiver look-ahead in 20 ms slots for a jitter-buffer depth (LBRR needs >= 1)."""
    if not isinstance(jitter_ms, (int, np.integer)) or not 0 <= jitter_ms <= 10_000:
        raise ValueError(f"jitter_ms must be an integer in [0, 10000], got {jitter_ms!r}")
    return max(int(jitter_ms) // FRAME_MS, 1 if lbrr else 0)


def dred_recoverer():
    """A :class:`~edge_dred.dred.recovery.DredRecoverer` on the shipped models (loaded once per process)."""
    from .dred.recovery import DredRecoverer

    return DredRecoverer()


def run_condition(pcm: np.ndarray, lost: np.ndarray | None, condition: str | Condition,
                  bitrate: int | None = None, jitter_ms: int = DEFAULT_JITTER_MS) -> SimResult:
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
    jitter_ms : int
        Jitter-buffer depth for DRED conditions (see :data:`DEFAULT_JITTER_MS`).
    """
    if isinstance(condition, str):
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; valid: {', '.join(CONDITIONS)}")
        condition = CONDITIONS[condition]
    if condition.copy_synthesis:
        from .vocoder import copy_synthesis

        audio = copy_synthesis(np.asarray(pcm))
        n = n_packets_for(len(audio))
        return SimResult(audio=audio, lost=np.zeros(n, bool), decisions=["vocoder"] * n, total_bitrate_bps=0.0,
                         packet_bytes=np.zeros(n, np.int32), condition=condition.name)
    sender = Sender(bitrate or condition.bitrate, lbrr=condition.lbrr, dred_ms=condition.dred_ms)
    concealer = None
    if condition.neural_plc:
        from .plc import NeuralPLC

        concealer = NeuralPLC()
    recoverers = [dred_recoverer()] if condition.dred_ms else []
    lookahead = jitter_lookahead(jitter_ms, condition.lbrr) if condition.dred_ms else None
    receiver = Receiver(ReceiverConfig(lbrr=condition.lbrr, concealment=condition.concealment, lookahead=lookahead),
                        recoverers=recoverers, concealer=concealer)
    return simulate(pcm, None if condition.lossless else lost, sender, receiver, condition.name)
