"""Live voice: capture -> Opus (+DRED) -> RTP/UDP -> jitter buffer -> recovery -> playback.

Three sessions, one per command:

* :class:`SendSession`  (``edge-dred send``): capture, encode, packetize,
  impair (netem-like, optional), send over UDP;
* :class:`RecvSession`  (``edge-dred recv``): a network thread parses RTP into
  the jitter buffer; the audio thread pops one slot per 20 ms, lets the
  receiver decide (regular / LBRR / DRED / PLC) and plays the result;
* :class:`LiveSession`  (``edge-dred live``): both ends on one board in one
  audio thread, with the impairment in between: the first demo to run.

The audio thread follows the real-time contract of
:mod:`edge_dred.audio.device`; recordings go through
:class:`~edge_dred.transport.ogg.OggRecorder`.  Every packet is accounted for:
:meth:`report` returns counters whose balance is checked in ``accounting``.

Neural recovery.  With ``LiveConfig.dred_ms`` the sender runs a
:class:`~edge_dred.dred.encoder.DredStreamEncoder` on the captured frames and
attaches its payload to every packet.  With ``LiveConfig.dred`` /
``neural_plc`` the receiver gets a
:class:`~edge_dred.dred.recovery.DredRecoverer` / :class:`~edge_dred.plc.NeuralPLC`
plug-in and, unless ``governor=False``, a
:class:`~edge_dred.degrade.LoadGovernor` fed with every slot's busy time (the
session's :class:`~edge_dred.audio.device.LoadMeter`).  DRED can only restore
slots not yet played: the receiver holds ``recovery_ms`` of look-ahead (default
60 ms with DRED, as in simulation), which is part of the latency budget.
Models are loaded when a session is built -- a missing or corrupt model fails
there, never in the audio thread -- and once per process.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .constants import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .audio.device import AudioDevice, LoadMeter
from .codec.framing import FramingError, attach_dred, parse_packet
from .degrade import LoadGovernor, parse_level
from .receiver import DEFAULT_RECOVERY_MS, Decision, Receiver, ReceiverConfig, build_receiver as _build, recovery_lookahead
from .sender import Sender
from .transport.impair import Impairment
from .transport.jitter import JitterBuffer, JitterConfig, PutResult, SlotKind
from .transport.ogg import OggRecorder
from .transport.red import DEFAULT_RED_PAYLOAD_TYPE, MAX_RED_DISTANCE, RedEncoder, RedError, unpack_red
from .transport.rtp import (DEFAULT_PAYLOAD_TYPE, MAX_DATAGRAM_BYTES, RtpError, RtpPacketizer, build_rtcp_bye, is_rtcp,
                            parse_rtcp, parse_rtp)
from .transport.source import SourceLock, SourceVerdict

__all__ = ["LiveConfig", "LiveSetupError", "latency_budget", "dred_redundancy", "build_receiver", "pin_audio_thread",
           "SendCore", "RecvCore", "SendSession", "RecvSession", "LiveSession"]

FRAME_TS_48K = 48000 * FRAME_MS // 1000
#: Called with each 20 ms input frame; returns a DRED payload to attach, or None.
RedundancyHook = Callable[[np.ndarray], "bytes | None"]
#: Holes after the newest packet remembered to tell the stream's end from losses (> idle timeouts).
_MAX_TAIL = 4096
#: Receive buffer asked for (the kernel caps it at net.core.rmem_max).
_RCVBUF_BYTES = 4 << 20


def _usable_pt(pt: object) -> bool:
    # RFC 3551's unassigned 35..71 (WebRTC puts RED on 63) and the dynamic 96..127; 72..76 look like RTCP.
    return isinstance(pt, int) and not isinstance(pt, bool) and (35 <= pt <= 71 or 77 <= pt <= 127)


class LiveSetupError(ValueError):
    """A live session cannot start: bad settings, or a model/runtime that does not load."""


@dataclass
class LiveConfig:
    """Settings shared by the live sessions.

    Attributes
    ----------
    bitrate : int
        Total Opus bit rate (LBRR's bits come out of it).
    lbrr : bool
        Send in-band FEC and use it to recover single losses.
    complexity : int
        libopus complexity (from the board config).
    period_ms, buffer_periods : int
        Audio period and ALSA ring size (from the board config).
    jitter : JitterConfig
        Jitter buffer settings.
    payload_type : int
        RTP payload type announced in the SDP.
    dred_ms : int
        Sender: DRED redundancy depth carried in every packet (0 = none, else 40..1040).
    dred_budget : int
        Sender: largest DRED payload per packet in bytes (on top of ``bitrate``).
    dred : bool
        Receiver: recover holes from DRED found in arriving packets.
    neural_plc : bool
        Receiver: conceal what nothing recovers with the neural PLC.
    recovery_ms : int or None
        Receiver look-ahead in ms (whole 20 ms slots): how long a slot waits for
        later packets (LBRR needs 20, DRED fills bursts up to this length and
        the end of longer ones).  Default: 60 with ``dred``, else 20 with LBRR, else 0.
    decode_dred_ms : int
        Longest DRED reconstruction at the governor's full level (the board's ``dred_ms``).
    governor : bool
        Govern the neural plug-ins by the measured load.
    force_level : str or None
        Pin the governor's level (``full``, ``short``, ``classic``; testing).
    threads : int
        Threads of the DRED encoder's TFLite interpreter (the board's ``threads``).
    pin_cores : tuple of int
        Cores the audio thread runs on (the board's ``pin_cores``; empty: any).
    max_delay_ms : int or None
        Receiver: adaptive playout (:mod:`edge_dred.playout`) between
        ``recovery_ms`` and this budget; None keeps the look-ahead fixed.
    red : int
        Sender: send RFC 2198 RED with copies of this many earlier frames in
        every packet (0 = plain Opus), on top of ``bitrate``.
    red_payload_type : int or None
        RED's RTP payload type: what the sender uses with ``red`` and what the
        receiver unpacks as RED (always; Opus stays on ``payload_type``).
        Default 97, or 96 when Opus is on 97 (as ffmpeg sends it).
    monitor : bool
        Run the artifact monitor (:mod:`edge_dred.artifacts.monitor`) on the
        captured and/or played audio, in a low-priority background thread.
    """

    bitrate: int = 40000
    lbrr: bool = True
    complexity: int = 5
    expected_loss_pct: int = 20
    period_ms: int = 20
    buffer_periods: int = 4
    jitter: JitterConfig = field(default_factory=JitterConfig)
    payload_type: int = 96
    concealment: str = "opus_plc"
    playback_prefill_periods: int = 1
    dred_ms: int = 0
    dred_budget: int = 80
    dred: bool = False
    neural_plc: bool = False
    recovery_ms: int | None = None
    decode_dred_ms: int = 1040
    governor: bool = True
    force_level: str | None = None
    threads: int = 1
    pin_cores: tuple[int, ...] = ()
    max_delay_ms: int | None = None
    red: int = 0
    red_payload_type: int | None = None
    monitor: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.red, bool) or not isinstance(self.red, int) or not 0 <= self.red <= MAX_RED_DISTANCE:
            raise LiveSetupError(f"red must be an integer in 0..{MAX_RED_DISTANCE}, got {self.red!r}")
        if self.red_payload_type is None:
            self.red_payload_type = DEFAULT_RED_PAYLOAD_TYPE if self.payload_type != DEFAULT_RED_PAYLOAD_TYPE \
                else DEFAULT_PAYLOAD_TYPE
        if self.red_payload_type == self.payload_type or not _usable_pt(self.red_payload_type):
            raise LiveSetupError(f"red_payload_type must be in 35..71 or 77..127 and differ from the Opus payload type "
                                 f"{self.payload_type}, got {self.red_payload_type}")
        for name in ("dred_ms", "dred_budget", "decode_dred_ms"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise LiveSetupError(f"{name} must be an integer, got {v!r}")
        if not (self.dred_ms == 0 or 40 <= self.dred_ms <= 1040):
            raise LiveSetupError(f"dred_ms must be 0 or 40..1040, got {self.dred_ms}")
        if not 1 <= self.dred_budget <= 1000:
            raise LiveSetupError(f"dred_budget must be 1..1000 bytes, got {self.dred_budget}")
        if not 0 <= self.decode_dred_ms <= 1040 or self.decode_dred_ms % 40:
            raise LiveSetupError(f"decode_dred_ms must be a multiple of 40 in 0..1040, got {self.decode_dred_ms}")
        if self.recovery_ms is not None and (isinstance(self.recovery_ms, bool) or not isinstance(
                self.recovery_ms, int) or not 0 <= self.recovery_ms <= 1040):
            raise LiveSetupError(f"recovery_ms must be an integer in 0..1040, got {self.recovery_ms!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 1 <= self.threads <= 64:
            raise LiveSetupError(f"threads must be an integer in 1..64, got {self.threads!r}")
        self.pin_cores = tuple(self.pin_cores)
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in self.pin_cores):
            raise LiveSetupError(f"pin_cores must be core numbers >= 0, got {list(self.pin_cores)}")
        if self.max_delay_ms is not None and (isinstance(self.max_delay_ms, bool) or not isinstance(
                self.max_delay_ms, int) or not (self.recovery_ms or 0) <= self.max_delay_ms <= 1040):
            raise LiveSetupError(f"max_delay_ms must be an integer in recovery_ms..1040, got {self.max_delay_ms!r}")
        if self.force_level is not None:
            try:
                parse_level(self.force_level)
            except ValueError as e:
                raise LiveSetupError(f"force_level: {e}") from None

    @classmethod
    def from_board(cls, board, **overrides) -> "LiveConfig":
        """Defaults from a :class:`edge_dred.boards.BoardConfig`, then ``overrides``.

        The board decides the audio settings, the governor's full DRED
        length, the DRED encoder's threads and the audio thread's cores;
        neural recovery stays as asked (the CLI turns it on where the board's
        ``dred_ms`` says it is sustained).
        """
        base = dict(complexity=board.complexity, period_ms=board.period_ms, buffer_periods=board.buffer_periods,
                    decode_dred_ms=board.dred_ms, threads=board.threads, pin_cores=tuple(board.pin_cores))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def neural(self) -> bool:
        """Whether the receiver runs any neural plug-in."""
        return self.dred or self.neural_plc

    def receiver_config(self) -> ReceiverConfig:
        ms = self.recovery_ms
        if ms is None and self.dred:
            ms = DEFAULT_RECOVERY_MS
        look = None if ms is None else recovery_lookahead(ms, self.lbrr)
        return ReceiverConfig(lbrr=self.lbrr, concealment=self.concealment, lookahead=look)


def dred_redundancy(config: LiveConfig) -> RedundancyHook | None:
    """The sender's DRED hook for ``config.dred_ms`` (None when 0), built now.

    Raises
    ------
    LiveSetupError
        No TFLite runtime, or a missing/corrupt DRED model.
    """
    if not config.dred_ms:
        return None
    from .dred.encoder import DredEncoder, DredStreamEncoder

    try:
        enc = DredStreamEncoder(config.dred_ms, config.dred_budget, encoder=DredEncoder(num_threads=config.threads))
        # First inference sets up the interpreter's buffers: pay for it here, not in the first slot.
        enc.push_pcm(np.zeros(FRAME_SAMPLES, np.int16))
        enc.reset()
    except (ImportError, ValueError, OSError) as e:
        raise LiveSetupError(f"DRED encoder: {e}") from None
    return enc.push_pcm


def pin_audio_thread(cores: tuple[int, ...]) -> tuple[list[int] | None, Callable[[], None]]:
    """Pin the calling thread (the audio thread) to ``cores``, the board's ``pin_cores``.

    Threads started before keep their own affinity (Linux pins a single
    thread), so sessions call this after starting their helpers.

    Returns
    -------
    cores : list of int or None
        The cores the thread now runs on; None when nothing was asked, the
        platform has no ``sched_setaffinity``, or none of ``cores`` is
        available here (then the thread keeps running anywhere: a board config
        must not stop the audio).
    restore : callable
        Gives the thread its previous affinity back.
    """
    if not cores or not hasattr(os, "sched_setaffinity"):
        return None, lambda: None
    before = os.sched_getaffinity(0)
    usable = sorted(set(cores) & before)
    if not usable:
        return None, lambda: None
    os.sched_setaffinity(0, usable)
    return usable, lambda: os.sched_setaffinity(0, before)


def build_receiver(config: LiveConfig, governor: LoadGovernor | None = None) -> Receiver:
    """A :class:`Receiver` with the plug-ins and governor ``config`` asks for, models loaded now.

    Parameters
    ----------
    config : LiveConfig
    governor : LoadGovernor, optional
        Use this governor instead of building one (``config.governor`` still
        decides whether there is one at all).

    Raises
    ------
    LiveSetupError
        A missing or corrupt model.
    """
    if config.neural and config.governor:
        if governor is None:
            governor = LoadGovernor.for_dred_ms(config.decode_dred_ms, FRAME_MS, force_level=config.force_level)
    else:
        governor = None
    try:
        return _build(lbrr=config.lbrr, concealment=config.concealment, dred=config.dred,
                      neural_plc=config.neural_plc, recovery_ms=config.recovery_ms, governor=governor)
    except (ImportError, ValueError, OSError) as e:
        raise LiveSetupError(f"neural recovery models: {e}") from None


def _adaptive_playout(config: LiveConfig, receiver: Receiver):
    """The adaptive playout of a receiver when the config asks for one (else None)."""
    if config.max_delay_ms is None:
        return None
    from .playout import LIVE_TRACE_PERIODS, Playout, PlayoutController

    try:
        ctl = PlayoutController(receiver.lookahead * FRAME_MS, config.max_delay_ms)
    except ValueError as e:
        raise LiveSetupError(f"max_delay_ms: {e}") from None
    # The receiver decodes no further back than the board's DRED depth: waiting longer buys nothing.
    ctl.set_redundancy_ms(config.decode_dred_ms if config.dred else 0)
    return Playout(receiver, ctl, keep_media=False, trace_periods=LIVE_TRACE_PERIODS)


def latency_budget(config: LiveConfig, codec_lookahead_samples: int) -> dict[str, float]:
    """Latency our pipeline adds, per stage, in ms.

    ``pipeline_ms`` is the bar: framing/capture (one 20 ms frame must be
    captured before it is encoded; a 10 ms period does not shorten that),
    the encoder's look-ahead, the jitter buffer's target and the recovery
    look-ahead (the receiver waits for the next packet's LBRR/DRED).  The
    playback ring the device needs is reported separately.
    """
    look = config.receiver_config().effective_lookahead()
    stages = {
        "capture_framing_ms": float(max(FRAME_MS, config.period_ms)),
        "codec_lookahead_ms": codec_lookahead_samples * 1000.0 / SAMPLE_RATE,
        "jitter_buffer_target_ms": float(config.jitter.start_delay_ms),
        "recovery_lookahead_ms": float(look * FRAME_MS),
    }
    stages["pipeline_ms"] = sum(stages.values())
    stages["playback_buffer_ms"] = float(config.playback_prefill_periods * config.period_ms)
    stages["total_with_playback_ms"] = stages["pipeline_ms"] + stages["playback_buffer_ms"]
    return stages


class SendCore:
    """Encode and packetize 20 ms frames (no I/O).

    ``redundancy`` defaults to :func:`dred_redundancy` of the config (DRED when
    ``config.dred_ms`` > 0).
    """

    def __init__(self, config: LiveConfig, redundancy: RedundancyHook | None = None,
                 record: str | None = None, packetizer: RtpPacketizer | None = None) -> None:
        self.config = config
        self.sender = Sender(config.bitrate, lbrr=config.lbrr, complexity=config.complexity,
                             expected_loss_pct=config.expected_loss_pct)
        self.red = RedEncoder(config.red, config.payload_type, FRAME_TS_48K) if config.red else None
        self.rtp = packetizer or RtpPacketizer(FRAME_TS_48K, config.red_payload_type if config.red
                                               else config.payload_type)
        self.redundancy = redundancy if redundancy is not None else dred_redundancy(config)
        self.redundancy_bytes = 0
        self.redundancy_packets = 0
        self.recorder = OggRecorder(record, self.sender.lookahead * 3, comments={"ENCODER": "edge-dred send"}) \
            if record else None
        self.frames = 0
        self.bytes = 0
        self.redundancy_failures = 0

    def encode(self, frame: np.ndarray) -> bytes:
        """One 20 ms int16 frame -> one RTP datagram."""
        pkt = plain = self.sender.encoder.encode(frame)
        if self.redundancy is not None:
            payload = self.redundancy(frame)
            if payload:
                try:
                    pkt = attach_dred(pkt, payload)
                    self.redundancy_bytes += len(payload)
                    self.redundancy_packets += 1
                except FramingError:
                    self.redundancy_failures += 1  # too large for the packet: send it without
        if self.recorder is not None:
            self.recorder.packet(pkt)
        if self.red is not None:
            pkt = self.red.push(pkt, plain)  # later packets repeat this frame without its DRED
        self.frames += 1
        self.bytes += len(pkt)
        return self.rtp.next(pkt)

    def close(self) -> dict | None:
        return self.recorder.close() if self.recorder is not None else None

    def redundancy_report(self) -> dict:
        """DRED the packets carried: depth asked, packets with a payload, mean payload bytes."""
        return {"dred_ms": self.config.dred_ms if self.redundancy is not None else 0,
                "packets_with_payload": self.redundancy_packets, "payload_bytes": self.redundancy_bytes,
                "mean_payload_bytes": self.redundancy_bytes / max(1, self.frames),
                "too_large": self.redundancy_failures}

    def red_report(self) -> dict:
        """RED the packets carried: distance, payload type, bytes of copies and headers, copies left out."""
        if self.red is None:
            return {"distance": 0}
        return {"distance": self.red.distance, "payload_type": self.rtp.payload_type,
                "redundant_bytes": self.red.redundant_bytes,
                "mean_redundant_bytes": self.red.redundant_bytes / max(1, self.frames),
                "omitted": self.red.omitted}


class RecvCore:
    """Datagrams in, 20 ms frames out: RTP parsing, jitter buffer, receiver (no I/O).

    Thread-safety: :meth:`on_datagram` (network thread) and
    :meth:`next_frame` (audio thread) share the jitter buffer under a lock
    held only for the buffer call itself.

    The receiver defaults to :func:`build_receiver` of the config (plug-ins
    and governor loaded here, at start-up).  The audio loop reports each
    slot's busy time through :meth:`slot_done`, which feeds the governor.

    Untrusted input: ``source`` (a :class:`~edge_dred.transport.source.SourceLock`,
    default: lock onto the first sender) decides which sender is played;
    ``srtp`` (an :class:`~edge_dred.transport.srtp.SrtpReceiver`) authenticates
    every datagram first.  What either rejects is counted and dropped.  An RTCP
    BYE from the locked source, or :meth:`end_stream`, ends the stream: the
    missing slots played after its last packet count as ``after_end``, not as loss.
    """

    _DECISION_TRIM = 1000

    def __init__(self, config: LiveConfig, record: str | None = None, payload_type: int | None = None,
                 receiver: Receiver | None = None, source: SourceLock | None = None, srtp=None) -> None:
        self.config = config
        self.source = source if source is not None else SourceLock()
        self.srtp = srtp
        self.ended_by = ""  # "bye" or "silence" once the stream has ended
        self.jb = JitterBuffer(config.jitter)
        self.receiver = receiver if receiver is not None else build_receiver(config)
        self.governor: LoadGovernor | None = self.receiver.governor
        self._fed = False
        self.payload_type = payload_type
        self.lock = threading.Lock()
        # The sender's look-ahead is not signalled; 312 (6.5 ms at 48 kHz) is libopus's for
        # the voip/audio applications, ours and ffmpeg's alike.
        self.recorder = OggRecorder(record, 312, comments={"ENCODER": "edge-dred recv"}) if record else None
        self.silence = np.zeros(FRAME_SAMPLES, np.int16)
        self.counts: dict[str, int] = {k: 0 for k in (
            "datagrams", "bad_rtp", "bad_red", "bad_opus", "unsupported_duration", "impaired_lost", "idle_frames",
            "warmup_frames", "frames", "foreign", "srtp_auth_failed", "srtp_replayed", "srtp_rejected", "rtcp",
            "bad_rtcp", "after_end_slots", "red_packets", "red_copies_ignored")}
        self.decisions: dict[str, int] = {}
        self.hole_decisions: dict[str, dict[str, int]] = {}
        self.last_error = ""
        # (slot kind, (tail generation, slot) of a hole after the newest packet)
        self._kinds: deque[tuple[str, tuple[int, int] | None]] = deque()
        self._tail_gen = -1
        self._tail_decisions: deque[tuple[int, str]] = deque(maxlen=_MAX_TAIL)  # (slot, decision)
        self._dec_seen = 0
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None
        self.playout = _adaptive_playout(config, self.receiver)
        self.after_end_decisions: dict[str, int] = {}

    # -- network side ------------------------------------------------------
    def on_datagram(self, data: bytes | bytearray | memoryview, now: float,
                    addr: tuple | None = None) -> PutResult | None:
        """Check, parse and offer one datagram to the jitter buffer; what is rejected is counted and dropped.

        ``addr`` is the sender's address (None for in-process streams: the SSRC alone identifies them).
        """
        if not self.source.address_ok(addr, now):  # cheap: before any parsing or crypto
            self.foreign_datagram()
            return None
        self.counts["datagrams"] += 1
        rtcp = is_rtcp(data)
        if self.srtp is not None:
            from .transport.srtp import SrtpReject

            try:
                data = self.srtp.unprotect_rtcp(data) if rtcp else self.srtp.unprotect(data)
            except SrtpReject as e:
                self.counts[{"auth": "srtp_auth_failed", "replay": "srtp_replayed"}.get(e.reason, "srtp_rejected")] += 1
                self.last_error = str(e)
                return None
        if rtcp:
            self._on_rtcp(data, addr)
            return None
        red_pt = self.config.red_payload_type
        try:
            pkt = parse_rtp(data, None, MAX_DATAGRAM_BYTES)
            if self.payload_type is not None and pkt.payload_type not in (self.payload_type, red_pt):
                raise RtpError(f"payload type {pkt.payload_type}, expected {self.payload_type} (Opus) "
                               f"or {red_pt} (RED)")
        except RtpError as e:
            self.counts["bad_rtp"] += 1
            self.last_error = str(e)
            return None
        payload = pkt.payload
        if pkt.payload_type == red_pt:
            try:  # primary + copies of earlier frames; the receiver uses a copy when its frame is lost
                payload = unpack_red(payload, self.config.payload_type if self.payload_type is None
                                     else self.payload_type, FRAME_TS_48K)
            except RedError as e:
                self.counts["bad_red"] += 1
                self.last_error = str(e)
                return None
            self.counts["red_packets"] += 1
            self.counts["red_copies_ignored"] += payload.ignored
        try:
            op = parse_packet(payload)
        except FramingError as e:
            self.counts["bad_opus"] += 1
            self.last_error = str(e)
            return None
        if op.samples(48000) != FRAME_TS_48K:
            # The receiver works in 20 ms slots; other packet durations are not supported.
            self.counts["unsupported_duration"] += 1
            self.last_error = f"packet of {op.duration_ms} ms (only 20 ms packets are supported)"
            return None
        if self.source.check(addr, pkt.ssrc, now) is SourceVerdict.FOREIGN:
            self.counts["foreign"] += 1
            return None
        if self.first_arrival is None:
            self.first_arrival = now
        self.last_arrival = now
        with self.lock:
            return self.jb.put(pkt.timestamp, payload, now, pkt.ssrc)

    def foreign_datagram(self) -> None:
        """Count a datagram the source lock refused before parsing."""
        self.counts["datagrams"] += 1
        self.counts["foreign"] += 1
        self.source.stats["foreign"] += 1

    def _on_rtcp(self, data: bytes, addr: tuple | None) -> None:
        self.counts["rtcp"] += 1
        try:
            byes, reports = parse_rtcp(data)
        except RtpError as e:
            self.counts["bad_rtcp"] += 1
            self.last_error = str(e)
            return
        if any(self.source.is_locked_source(addr, ssrc) for ssrc in byes):
            self.end_stream("bye", reports.get(self.source.ssrc))

    def end_stream(self, reason: str, last_timestamp: int | None = None) -> None:
        """The sender is gone (``"bye"``, ``"silence"``): play out what is buffered (and up to
        ``last_timestamp``, the sender's last packet when its BYE says), then nothing more."""
        with self.lock:
            if self.jb.ended:
                return
            self.counts["after_end_slots"] += self.jb.end_stream(last_timestamp)
        self.ended_by = reason

    @property
    def drained(self) -> bool:
        """The stream has ended and everything up to its last packet has been played."""
        return self.jb.finished

    # -- audio side --------------------------------------------------------
    def next_frame(self, now: float) -> np.ndarray:
        """The next 20 ms of audio to play (silence before the stream starts)."""
        with self.lock:
            pkt, kind = self.jb.pop(now)
            tail = (self.jb.tail_gen, self.jb.next_slot - 1) if self.jb.last_pop_tail else None
        if kind is SlotKind.IDLE:
            self.counts["idle_frames"] += 1
            self._fed = False
            return self.silence
        self._fed = True
        return self._feed(pkt, kind.value, tail)

    def slot_done(self, busy_s: float) -> None:
        """The audio thread's busy time (s) for the period that just called :meth:`next_frame`.

        Feeds the load governor (idle periods before the stream starts are
        not slots and are left out).
        """
        if self.governor is not None and self._fed:
            self.governor.observe(busy_s)

    def _feed(self, pkt: bytes | None, kind: str, tail: tuple[int, int] | None = None) -> np.ndarray:
        if self.recorder is not None:
            if pkt is None:
                self.recorder.lost()
            else:
                self.recorder.packet(pkt)
        self._kinds.append((kind, tail))
        if self.playout is not None:
            out = self.playout.tick(pkt)
            outs = [] if out is None else [out]
        else:
            outs = self.receiver.push(pkt)
        self._count_decisions()
        self.counts["frames"] += 1
        if not outs:
            self.counts["warmup_frames"] += 1
            return self.silence
        return outs[0]

    def _count_decisions(self) -> None:
        decs = self.receiver.decisions
        for d in decs[self._dec_seen:]:
            name = d.value if isinstance(d, Decision) else str(d)
            self.decisions[name] = self.decisions.get(name, 0) + 1
            kind, tail = self._kinds.popleft() if self._kinds else ("unknown", None)
            if tail is not None:  # a hole after the newest packet: maybe the stream's end
                if tail[0] != self._tail_gen:
                    self._tail_gen = tail[0]
                    self._tail_decisions.clear()
                self._tail_decisions.append((tail[1], name))
            if kind != SlotKind.PACKET.value:
                per = self.hole_decisions.setdefault(kind, {})
                per[name] = per.get(name, 0) + 1
        self._dec_seen = len(decs)
        if len(decs) >= self._DECISION_TRIM:  # keep memory flat in long runs
            del decs[:]
            self._dec_seen = 0

    def finish(self, stream_ended: bool = True) -> list[np.ndarray]:
        """End of stream: play out what is buffered and decide the pending slots.

        With ``stream_ended`` (a network receiver: the sender said BYE or went silent) the holes
        after the last packet count as the stream's end; without it (``live``, where the sender's
        own count is known) they stay losses.
        """
        with self.lock:
            rest = self.jb.drain()
        out = []
        for pkt in rest:
            self._kinds.append((SlotKind.PACKET.value if pkt is not None else SlotKind.MISSING.value, None))
            if self.recorder is not None:
                self.recorder.lost() if pkt is None else self.recorder.packet(pkt)
            if self.playout is not None:
                o = self.playout.tick(pkt)
                out.extend([] if o is None else [o])
            else:
                out.extend(self.receiver.push(pkt))
        out.extend(self.playout.drain() if self.playout is not None else self.receiver.flush())
        self._count_decisions()
        if stream_ended:
            self.end_stream(self.ended_by or "silence")
            self._uncount_tail()
        return out

    def _uncount_tail(self) -> None:
        """The holes after the last packet were the stream's end: take their decisions out of the hole counts."""
        if self._tail_gen != self.jb.tail_gen or not self._tail_decisions:
            return
        per = self.hole_decisions.get(SlotKind.MISSING.value, {})
        end = self.jb.end_slot
        for slot, name in self._tail_decisions:
            if end is not None and slot <= end:
                continue  # the sender's report says this packet was sent: a loss
            self.decisions[name] -= 1
            if per.get(name):
                per[name] -= 1
            self.after_end_decisions[name] = self.after_end_decisions.get(name, 0) + 1
        self._tail_decisions.clear()

    def close(self) -> dict | None:
        return self.recorder.close() if self.recorder is not None else None

    def holes(self) -> int:
        s = self.jb.stats
        return s["missing"] + s["inserted"]

    def report(self) -> dict:
        s = dict(self.jb.stats)
        slots = sum(self.decisions.values())
        acct = {
            # every unique packet that reached the buffer is played, dropped, or was late/too early
            "unique_arrivals": s["accepted"] + s["late"] + s["too_early"],
            "accepted_balance_ok": s["accepted"] == s["played"] + s["dropped_drift"] + s["dropped_reset"]
            + self.jb.buffered,
            "slots_balance_ok": slots == s["played"] + s["missing"] + s["inserted"],
            "after_end_ok": sum(self.after_end_decisions.values()) == s["after_end"],
            "regular_equals_played": self.decisions.get("regular", 0) == s["played"],
            "datagrams_balance_ok": self.counts["datagrams"] == sum(self.counts[k] for k in (
                "bad_rtp", "bad_red", "bad_opus", "unsupported_duration", "foreign", "srtp_auth_failed",
                "srtp_replayed", "srtp_rejected", "rtcp")) + s["received"],
        }
        return {"rtp": dict(self.counts), "jitter": s, "jitter_delay_ms": self.jb.delay_ms,
                "decisions": dict(self.decisions), "hole_decisions": self.hole_decisions,
                "accounting": acct, "last_error": self.last_error, "recovery": self.recovery_report(),
                "source": {"locked": self.source.describe(), **self.source.stats}, "end": self.ended_by,
                "after_end_decisions": dict(self.after_end_decisions),
                "governor": self.governor_report(),
                "playout": self.playout.report() if self.playout is not None else None}

    def recovery_report(self) -> dict:
        """Which recovery ran: plug-ins, look-ahead, their counters."""
        rx = self.receiver
        plugins = {}
        for p in [*rx.recoverers, *([rx.concealer] if rx.concealer is not None else [])]:
            plugins[p.decision.value] = dict(getattr(p, "stats", {}))
        return {"lbrr": rx.config.lbrr, "lookahead_slots": rx.lookahead, "plugins": plugins,
                "governor": rx.governor is not None}

    def governor_report(self) -> dict | None:
        """The governor's level, load and transitions plus the slots decided at each level."""
        if self.governor is None:
            return None
        r = self.governor.report(FRAME_MS)
        by_level = {k: dict(v) for k, v in self.receiver.level_decisions.items()}
        r["slots_by_level"] = {k: sum(v.values()) for k, v in by_level.items()}
        r["decisions_by_level"] = {k: {d: n for d, n in v.items() if n} for k, v in by_level.items()}
        r["holes_kept_from_plugins"] = self.receiver.governor_skips
        return r

    def governor_status(self) -> str | None:
        """``load 0.41 full`` etc. plus slot counts per level once the level has changed; None without a governor."""
        gov = self.governor
        if gov is None:
            return None
        s = gov.status()
        if gov.downgrades or gov.forced is not None:
            from .degrade import Level

            counts = {lvl: sum(self.receiver.level_decisions[lvl.key].values()) for lvl in Level}
            s += " [" + ", ".join(f"{lvl.key} {n}" for lvl, n in counts.items()) + "]"
        return s


def _status(t: float, sent: int | None, lost: int | None, rc: RecvCore, load: LoadMeter, xruns: int) -> str:
    parts = [f"t {t:6.1f}s"]
    if sent is not None:
        parts.append(f"sent {sent} lost {lost} ({100.0 * (lost or 0) / max(1, sent):.1f}%)")
    else:  # receiver only: the loss it sees is the share of slots without a packet
        s = rc.jb.stats
        slots = s["played"] + s["missing"]
        parts.append(f"slots {slots} missing {s['missing']} ({100.0 * s['missing'] / max(1, slots):.1f}%)")
    holes = {k: v for k, v in rc.decisions.items() if k != "regular"}
    parts.append(f"holes {sum(holes.values())}: " + (", ".join(f"{k} {v}" for k, v in sorted(holes.items()))
                                                     or "none"))
    s = rc.jb.stats
    parts.append(f"late {s['late']} dup {s['duplicates']} jb {rc.jb.delay_ms:.0f}ms")
    rejected = {k: rc.counts[k] for k in ("foreign", "srtp_auth_failed", "srtp_replayed") if rc.counts[k]}
    if rejected:  # other senders and forged packets: counted and dropped, never played
        parts.append("dropped " + ", ".join(f"{k.replace('srtp_', 'srtp ').replace('_', ' ')} {v}"
                                            for k, v in rejected.items()))
    parts.append(f"RTF {load.load:.3f}")
    gov = rc.governor_status()
    if gov is not None:
        parts.append(gov)
    if rc.playout is not None:
        parts.append(rc.playout.status())
    parts.append(f"xruns {xruns}")
    return " | ".join(parts)


class _StatusPrinter:
    """Prints a status line from another thread (the audio thread never prints)."""

    def __init__(self, line: Callable[[], str], interval: float, stream) -> None:
        self.line, self.interval, self.stream = line, interval, stream
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> "_StatusPrinter":
        if self.interval > 0 and self.stream is not None:
            self._t.start()
        return self

    def _run(self) -> None:
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        while not self._stop.wait(self.interval):
            try:
                self.stream.write(("\r" + self.line() + "\x1b[K") if tty else self.line() + "\n")
                self.stream.flush()
            except (ValueError, OSError, RuntimeError):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._t.is_alive():
            self._t.join()
            if hasattr(self.stream, "isatty") and self.stream.isatty():
                self.stream.write("\n")


def _monitor(config: LiveConfig, monitor, mic: bool, playout: bool, governor=None):
    """The session's artifact monitor: the one given, else the shipped detector's if ``config.monitor``."""
    if monitor is None and config.monitor:
        from .artifacts.monitor import LiveMonitor

        monitor = LiveMonitor(mic=mic, playout=playout)
    if monitor is not None and governor is not None:
        monitor.attach_governor(governor)
    return monitor


def _with_monitor(line: str, monitor) -> str:
    return line if monitor is None else f"{line} | {monitor.status()}"


class SendSession:
    """``edge-dred send``: capture -> encode -> (impair) -> RTP over UDP.

    Parameters
    ----------
    capture : AudioDevice
        Opened microphone.
    dest : (host, port)
        Where the datagrams go.
    config : LiveConfig
    impairment : Impairment, optional
        netem-like loss/reorder/duplication applied before sending.
    record : str, optional
        Ogg Opus file of everything sent (before impairment).
    srtp : SrtpSender, optional
        Protect every datagram (SRTP/SRTCP) before it is impaired and sent.

    The stream ends with an RTCP BYE, so the receiver knows it ended rather than got lost.
    """

    def __init__(self, capture: AudioDevice, dest: tuple[str, int], config: LiveConfig,
                 impairment: Impairment | None = None, record: str | None = None,
                 redundancy: RedundancyHook | None = None, sock: socket.socket | None = None,
                 srtp=None, monitor=None) -> None:
        self.capture = capture
        self.monitor = _monitor(config, monitor, mic=True, playout=False)
        self.dest = dest
        self.config = config
        self.core = SendCore(config, redundancy, record)
        self.impairment = impairment or Impairment()
        self.srtp = srtp
        if sock is None:
            family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)  # never block the audio thread
        self.sock = sock
        self.load = LoadMeter(FRAME_MS / 1000.0)
        self.audio_cores: list[int] | None = None  # set by run() from config.pin_cores
        self.send_errors = 0
        self.datagrams = 0
        self.bye_sent = False
        self._frame = np.zeros(FRAME_SAMPLES, np.int16)
        self.stop_event = threading.Event()
        self.started_at = 0.0

    def _protect(self, datagram: bytes, rtcp: bool = False) -> bytes:
        if self.srtp is None:
            return datagram
        return self.srtp.protect_rtcp(datagram) if rtcp else self.srtp.protect(datagram)

    def _bye(self) -> None:
        """RTCP BYE (never impaired, not counted as a media datagram): the stream ends here."""
        try:
            rtp = self.core.rtp
            last = (rtp.timestamp - rtp.step) & 0xFFFFFFFF if rtp.packets else None
            bye = build_rtcp_bye(rtp.ssrc, last, rtp.packets, self.core.bytes)
            self.sock.sendto(self._protect(bye, rtcp=True), self.dest)
            self.bye_sent = True
        except OSError:
            self.send_errors += 1

    def _send(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            try:
                self.sock.sendto(d, self.dest)
                self.datagrams += 1
            except (BlockingIOError, OSError):
                self.send_errors += 1  # e.g. ICMP port unreachable before the receiver is up

    def status_line(self) -> str:
        st = self.impairment.stats
        return _with_monitor(
            f"t {time.monotonic() - self.started_at:6.1f}s | sent {st['packets']} lost {st['lost']} "
            f"dup {st['duplicated']} reordered {st['reordered']} | {self.core.bytes * 8 / max(1, self.core.frames) / FRAME_MS:.1f} kb/s "
            f"| RTF {self.load.load:.3f} | xruns {self.capture.xruns}", self.monitor)

    def run(self, seconds: float, status_interval: float = 0.0, status_stream=None) -> dict:
        """Capture and send for ``seconds`` (until :attr:`stop_event` is set)."""
        n_frames = int(round(seconds * 1000 / FRAME_MS))
        self.started_at = time.monotonic()
        printer = _StatusPrinter(self.status_line, status_interval, status_stream).start()
        self.audio_cores, unpin = pin_audio_thread(self.config.pin_cores)
        try:
            for _ in range(n_frames):
                if self.stop_event.is_set():
                    break
                self.capture.capture(self._frame)
                self.load.start()
                self._send(self.impairment.process(self._protect(self.core.encode(self._frame))))
                self.load.stop()
                if self.monitor is not None:
                    self.monitor.mic.feed(self._frame)
            self._send(self.impairment.flush())
            self._bye()
        finally:
            unpin()
            printer.stop()
            rec = self.core.close()
            if self.monitor is not None:
                self.monitor.close()
        return self.report(rec)

    def report(self, recording: dict | None = None) -> dict:
        return {
            "role": "send", "dest": f"{self.dest[0]}:{self.dest[1]}", "frames": self.core.frames,
            "impairment": self.impairment.describe(), "impairment_stats": dict(self.impairment.stats),
            "datagrams_sent": self.datagrams, "send_errors": self.send_errors, "bye_sent": self.bye_sent,
            "srtp": self.srtp.suite if self.srtp is not None else None,
            "bitrate_bps": self.core.bytes * 8 / max(1, self.core.frames) / (FRAME_MS / 1000.0),
            "dred": self.core.redundancy_report(), "red": self.core.red_report(),
            "ssrc": self.core.rtp.ssrc, "first_sequence": self.core.rtp.first_sequence,
            "cpu_load_mean": self.load.mean, "cpu_load_peak": self.load.peak, "audio_cores": self.audio_cores,
            "overruns": self.capture.overruns, "capture_periods": self.capture.periods,
            "latency_budget_ms": latency_budget(self.config, self.core.sender.lookahead),
            "recording": recording,
            "artifacts": self.monitor.report() if self.monitor is not None else None,
        }


class RecvSession:
    """``edge-dred recv``: RTP over UDP -> jitter buffer -> recovery -> playback.

    Parameters
    ----------
    playback : AudioDevice
        Opened speaker.
    sock : socket.socket
        Bound UDP socket.
    config : LiveConfig
    impairment : Impairment, optional
        Loss (and reordering/duplication) applied to what arrives, before parsing.
    record : str, optional
        Ogg Opus file of the received stream (holes as TOC-only packets).
    payload_type : int, optional
        Accept only this RTP payload type.
    receiver : Receiver, optional
        Default: :func:`build_receiver` of ``config``.
    source : SourceLock, optional
        Which sender to play (default: lock onto the first one).
    srtp : SrtpReceiver, optional
        Authenticate and decrypt every datagram (SRTP/SRTCP).
    """

    def __init__(self, playback: AudioDevice, sock: socket.socket, config: LiveConfig,
                 impairment: Impairment | None = None, record: str | None = None,
                 payload_type: int | None = None, receiver: Receiver | None = None,
                 source: SourceLock | None = None, srtp=None, monitor=None) -> None:
        self.playback = playback
        self.sock = sock
        try:  # room for a burst (or a flood from elsewhere) while the network thread catches up
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
        except OSError:
            pass
        self.config = config
        self.core = RecvCore(config, record, payload_type, receiver, source, srtp)
        self.monitor = _monitor(config, monitor, mic=False, playout=True, governor=self.core.governor)
        self.impairment = impairment
        self.load = LoadMeter(FRAME_MS / 1000.0)
        self.audio_cores: list[int] | None = None  # set by run() from config.pin_cores
        self.stop_event = threading.Event()
        self._net = threading.Thread(target=self._net_loop, name="rtp-recv", daemon=True)
        self._arrived = threading.Event()
        self.started_at = 0.0
        self.frames_played = 0

    def _net_loop(self) -> None:
        buf = bytearray(MAX_DATAGRAM_BYTES + 1)
        view = memoryview(buf)
        self.sock.settimeout(0.1)
        while not self.stop_event.is_set():
            try:
                n, addr = self.sock.recvfrom_into(buf)
            except socket.timeout:
                continue
            except OSError:
                if self.stop_event.is_set():
                    return
                continue
            now = time.monotonic()
            if not self.core.source.address_ok(addr, now):
                self.core.foreign_datagram()  # before copying anything: a flood must cost little
                continue
            data = bytes(view[:n])  # n == len(buf) means truncated: parse_rtp rejects it as too long
            if self.impairment is not None:
                released = self.impairment.process(data)
                self.core.counts["impaired_lost"] = self.impairment.stats["lost"]
            else:
                released = [data]
            for d in released:
                self.core.on_datagram(d, now, addr)
            if self.core.first_arrival is not None:  # the stream (not just any datagram) has started
                self._arrived.set()

    def status_line(self) -> str:
        t = time.monotonic() - self.started_at
        return _with_monitor(_status(t, None, None, self.core, self.load, self.playback.xruns), self.monitor)

    def run(self, seconds: float, idle_timeout: float = 1.0, wait_timeout: float = 10.0,
            status_interval: float = 0.0, status_stream=None) -> dict:
        """Receive and play.

        Stops after ``seconds`` of playback from the stream's start, once an
        RTCP BYE has come and the buffer is played out, after ``idle_timeout``
        seconds without packets from the sender once it has started (the
        stream's end), if no packet arrives within ``wait_timeout``, or when
        :attr:`stop_event` is set.  Other senders' datagrams keep nothing alive.

        Pops follow a schedule of one per period from the playout start; a
        device that accepts periods faster (an ALSA ring filling up) does not
        pull them early.
        """
        self.started_at = time.monotonic()
        self._net.start()
        printer = _StatusPrinter(self.status_line, status_interval, status_stream).start()
        self.audio_cores, unpin = pin_audio_thread(self.config.pin_cores)
        n_frames = int(round(seconds * 1000 / FRAME_MS))
        try:
            if self._arrived.wait(wait_timeout):
                # Start the playback clock one jitter-buffer delay after the first arrival,
                # so pops are phase-aligned with arrivals.
                start = self.core.first_arrival + self.config.jitter.start_delay_ms / 1000.0
                period = FRAME_MS / 1000.0
                while self.frames_played < n_frames and not self.stop_event.is_set():
                    due = start + self.frames_played * period
                    now = time.monotonic()
                    if due > now:
                        time.sleep(due - now)
                        now = time.monotonic()
                    if self.core.drained:
                        break
                    if self.core.last_arrival is not None and now - self.core.last_arrival > idle_timeout:
                        self.core.end_stream("silence")
                        break
                    self.load.start()
                    frame = self.core.next_frame(now)
                    self.core.slot_done(self.load.stop())  # decode + recovery of this slot
                    self.playback.play(frame)
                    self.frames_played += 1
                    if self.monitor is not None:
                        self.monitor.playout.feed(frame)
            self.stop_event.set()
            self._net.join()
            for frame in self.core.finish():
                self.playback.play(frame)
                self.frames_played += 1
        finally:
            unpin()
            self.stop_event.set()
            printer.stop()
            rec = self.core.close()
            if self.monitor is not None:
                self.monitor.close()
        return self.report(rec)

    def report(self, recording: dict | None = None) -> dict:
        r = self.core.report()
        r.update({
            "role": "recv", "frames_played": self.frames_played,
            "impairment": self.impairment.describe() if self.impairment else "none",
            "impairment_stats": dict(self.impairment.stats) if self.impairment else None,
            "cpu_load_mean": self.load.mean, "cpu_load_peak": self.load.peak, "audio_cores": self.audio_cores,
            "underruns": self.playback.underruns, "srtp": self.core.srtp.suite if self.core.srtp else None,
            # The sender's look-ahead is not signalled; 104 samples (6.5 ms) is libopus's at 16 kHz.
            "latency_budget_ms": latency_budget(self.config, 104),
            "recording": recording,
            "artifacts": self.monitor.report() if self.monitor is not None else None,
        })
        return r


class LiveSession:
    """``edge-dred live``: capture -> encode -> impairment -> jitter buffer -> recovery -> playback.

    One audio thread, paced by the capture device.  Datagrams go through the
    same RTP build/parse and jitter buffer as over a network.  ``redundancy``
    and ``receiver`` default to what ``config`` asks for (DRED sender hook,
    :func:`build_receiver`).
    """

    def __init__(self, capture: AudioDevice, playback: AudioDevice, config: LiveConfig,
                 impairment: Impairment | None = None, record: str | None = None,
                 record_received: str | None = None, redundancy: RedundancyHook | None = None,
                 receiver: Receiver | None = None, monitor=None) -> None:
        self.capture = capture
        self.playback = playback
        self.config = config
        self.send = SendCore(config, redundancy, record)
        # Arrivals and pops share the capture clock here: no timing noise to keep a safety margin for.
        rconf = replace(config, jitter=replace(config.jitter, safety_ms=0.0))
        self.recv = RecvCore(rconf, record_received, receiver=receiver)
        self.monitor = _monitor(config, monitor, mic=True, playout=True, governor=self.recv.governor)
        self.impairment = impairment or Impairment()
        self.load = LoadMeter(FRAME_MS / 1000.0)
        self.audio_cores: list[int] | None = None  # set by run() from config.pin_cores
        self.stop_event = threading.Event()
        self._frame = np.zeros(FRAME_SAMPLES, np.int16)
        self.started_at = 0.0
        self.frames_played = 0

    @property
    def xruns(self) -> int:
        return self.capture.xruns + self.playback.xruns

    def status_line(self) -> str:
        st = self.impairment.stats
        return _with_monitor(_status(time.monotonic() - self.started_at, st["packets"], st["lost"], self.recv,
                                     self.load, self.xruns), self.monitor)

    def step(self) -> None:
        """One 20 ms period: capture, encode, impair, buffer, recover, play.

        The capture device is the clock: arrival and playout times are
        counted in captured frames, so a run is deterministic whether the
        devices block, are paced, or run as fast as possible.
        """
        self.capture.capture(self._frame)
        self.load.start()
        now = self.send.frames * (FRAME_MS / 1000.0)
        for d in self.impairment.process(self.send.encode(self._frame)):
            self.recv.on_datagram(d, now)
        frame = self.recv.next_frame(now)
        # Sender and receiver share this thread and its budget: the governor sees the whole period.
        self.recv.slot_done(self.load.stop())
        self.playback.play(frame)
        self.frames_played += 1
        if self.monitor is not None:
            self.monitor.mic.feed(self._frame)
            self.monitor.playout.feed(frame)

    def run(self, seconds: float, status_interval: float = 0.0, status_stream=None) -> dict:
        """Run for ``seconds`` of audio (or until :attr:`stop_event` is set)."""
        self.started_at = time.monotonic()
        printer = _StatusPrinter(self.status_line, status_interval, status_stream).start()
        self.audio_cores, unpin = pin_audio_thread(self.config.pin_cores)
        n = int(round(seconds * 1000 / FRAME_MS))
        try:
            for _ in range(n):
                if self.stop_event.is_set():
                    break
                self.step()
            now = self.send.frames * (FRAME_MS / 1000.0)
            for d in self.impairment.flush():
                self.recv.on_datagram(d, now)
            for frame in self.recv.finish(stream_ended=False):
                self.playback.play(frame)
                self.frames_played += 1
        finally:
            unpin()
            printer.stop()
            rec_sent = self.send.close()
            rec_recv = self.recv.close()
            if self.monitor is not None:
                self.monitor.close()
        return self.report(rec_sent, rec_recv)

    def report(self, rec_sent: dict | None = None, rec_recv: dict | None = None) -> dict:
        r = self.recv.report()
        st = self.impairment.stats
        delivered = st["packets"] - st["lost"]
        r["accounting"]["sent"] = st["packets"]
        r["accounting"]["network_ok"] = (r["jitter"]["received"] == delivered + st["duplicated"]
                                         and r["jitter"]["duplicates"] == st["duplicated"]
                                         and r["accounting"]["unique_arrivals"] == delivered)
        r["accounting"]["ok"] = all(v for k, v in r["accounting"].items() if k.endswith("_ok"))
        r.update({
            "role": "live", "frames": self.send.frames, "frames_played": self.frames_played,
            "impairment": self.impairment.describe(), "impairment_stats": dict(st),
            "bitrate_bps": self.send.bytes * 8 / max(1, self.send.frames) / (FRAME_MS / 1000.0),
            "dred": self.send.redundancy_report(), "red": self.send.red_report(),
            "cpu_load_mean": self.load.mean, "cpu_load_peak": self.load.peak, "audio_cores": self.audio_cores,
            "overruns": self.capture.overruns, "underruns": self.playback.underruns,
            "latency_budget_ms": latency_budget(self.config, self.send.sender.lookahead),
            "recording_sent": rec_sent, "recording_received": rec_recv,
            "artifacts": self.monitor.report() if self.monitor is not None else None,
        })
        return r
