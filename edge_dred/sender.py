"""The sending side: 20 ms PCM frames -> Opus packets, with DRED in their padding (and RED around them).

Used by every command that sends (``simulate``, ``eval``, ``send``, ``live``).
"""
from __future__ import annotations

import numpy as np

from .codec.opus import OpusEncoder
from .constants import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["Sender", "n_packets_for", "DEFAULT_EXPECTED_LOSS_PCT"]

DEFAULT_EXPECTED_LOSS_PCT = 20  # tells libopus how strong to make LBRR


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
    red : int
        Wrap every packet as RFC 2198 RED with copies of the ``red`` frames
        before it (0 = plain Opus); the copies leave out the DRED padding.

    Attributes
    ----------
    dred_bytes : list of int
        DRED payload bytes of every packet of the last ``encode_stream``.
    red_bytes : list of int
        RED headers and copies in every packet of the last ``encode_stream``.
    """

    def __init__(self, bitrate: int = 24000, lbrr: bool = False, complexity: int = 9,
                 expected_loss_pct: int = DEFAULT_EXPECTED_LOSS_PCT, dtx: bool = False, *,
                 dred_ms: int = 0, dred_budget: int | None = None, dred_encoder=None, dred_tables=None,
                 red: int = 0) -> None:
        self.encoder = OpusEncoder(
            SAMPLE_RATE, 1, bitrate=bitrate, complexity=complexity, vbr=True, dtx=dtx,
            fec=lbrr, packet_loss_perc=expected_loss_pct if lbrr else 0, application="voip",
        )
        self.lookahead = _lookahead_of(self.encoder)
        self.dred = None
        self.dred_ms = dred_ms
        self.dred_bytes: list[int] = []
        if not isinstance(dred_ms, int) or not 0 <= dred_ms <= 1040:
            raise ValueError(f"dred_ms must be an integer in [0, 1040], got {dred_ms!r}")
        if dred_ms:
            from .dred.encoder import DredStreamEncoder
            from .dred.ratecontrol import DEFAULT_BUDGET_BYTES

            self.dred = DredStreamEncoder(dred_ms, dred_budget or DEFAULT_BUDGET_BYTES, encoder=dred_encoder,
                                          tables=dred_tables)
        self.red = None
        self.red_bytes: list[int] = []
        if red:
            from .transport.red import RedEncoder
            from .transport.rtp import DEFAULT_PAYLOAD_TYPE

            self.red = RedEncoder(red, DEFAULT_PAYLOAD_TYPE)

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
        plain_packets = list(packets)
        self.dred_bytes = [0] * n
        if self.dred is not None:
            from .codec.framing import attach_dred

            self.dred.reset()
            for i, f in enumerate(frames):
                payload = self.dred.push_pcm(f)
                if payload:
                    packets[i] = attach_dred(packets[i], payload)
                    self.dred_bytes[i] = len(payload)
        self.red_bytes = [0] * n
        if self.red is not None:
            self.red.reset()
            for i, (plain, sent) in enumerate(zip(plain_packets, list(packets))):
                packets[i] = self.red.push(sent, plain)
                self.red_bytes[i] = len(packets[i]) - len(sent)
        return packets

    def receive(self, packet: bytes) -> bytes:
        """What the receiver makes of an arriving packet: RED unpacked into its primary and copies."""
        if self.red is None:
            return packet
        from .transport.red import unpack_red

        return unpack_red(packet, self.red.payload_type)
