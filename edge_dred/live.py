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
"""
from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from . import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .audio.device import AudioDevice, LoadMeter
from .codec.framing import FramingError, attach_dred, parse_packet
from .receiver import Decision, Receiver, ReceiverConfig
from .simulate import Sender
from .transport.impair import Impairment
from .transport.jitter import JitterBuffer, JitterConfig, PutResult, SlotKind
from .transport.ogg import OggRecorder
from .transport.rtp import MAX_DATAGRAM_BYTES, RtpError, RtpPacketizer, parse_rtp

__all__ = ["LiveConfig", "latency_budget", "SendCore", "RecvCore", "SendSession", "RecvSession", "LiveSession"]

FRAME_TS_48K = 48000 * FRAME_MS // 1000
#: Called with each 20 ms input frame; returns a DRED payload to attach, or None.
RedundancyHook = Callable[[np.ndarray], "bytes | None"]


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

    @classmethod
    def from_board(cls, board, **overrides) -> "LiveConfig":
        """Defaults from a :class:`edge_dred.boards.BoardConfig`, then ``overrides``."""
        base = dict(complexity=board.complexity, period_ms=board.period_ms, buffer_periods=board.buffer_periods)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def receiver_config(self) -> ReceiverConfig:
        return ReceiverConfig(lbrr=self.lbrr, concealment=self.concealment)


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
    """Encode and packetize 20 ms frames (no I/O)."""

    def __init__(self, config: LiveConfig, redundancy: RedundancyHook | None = None,
                 record: str | None = None, packetizer: RtpPacketizer | None = None) -> None:
        self.config = config
        self.sender = Sender(config.bitrate, lbrr=config.lbrr, complexity=config.complexity,
                             expected_loss_pct=config.expected_loss_pct)
        self.rtp = packetizer or RtpPacketizer(FRAME_TS_48K, config.payload_type)
        self.redundancy = redundancy
        self.recorder = OggRecorder(record, self.sender.lookahead * 3, comments={"ENCODER": "edge-dred send"}) \
            if record else None
        self.frames = 0
        self.bytes = 0
        self.redundancy_failures = 0

    def encode(self, frame: np.ndarray) -> bytes:
        """One 20 ms int16 frame -> one RTP datagram."""
        pkt = self.sender.encoder.encode(frame)
        if self.redundancy is not None:
            payload = self.redundancy(frame)
            if payload:
                try:
                    pkt = attach_dred(pkt, payload)
                except FramingError:
                    self.redundancy_failures += 1  # too large for the packet: send it without
        if self.recorder is not None:
            self.recorder.packet(pkt)
        self.frames += 1
        self.bytes += len(pkt)
        return self.rtp.next(pkt)

    def close(self) -> dict | None:
        return self.recorder.close() if self.recorder is not None else None


class RecvCore:
    """Datagrams in, 20 ms frames out: RTP parsing, jitter buffer, receiver (no I/O).

    Thread-safety: :meth:`on_datagram` (network thread) and
    :meth:`next_frame` (audio thread) share the jitter buffer under a lock
    held only for the buffer call itself.
    """

    _DECISION_TRIM = 1000

    def __init__(self, config: LiveConfig, record: str | None = None, payload_type: int | None = None,
                 receiver: Receiver | None = None) -> None:
        self.config = config
        self.jb = JitterBuffer(config.jitter)
        self.receiver = receiver or Receiver(config.receiver_config())
        self.payload_type = payload_type
        self.lock = threading.Lock()
        # The sender's look-ahead is not signalled; 312 (6.5 ms at 48 kHz) is libopus's for
        # the voip/audio applications, ours and ffmpeg's alike.
        self.recorder = OggRecorder(record, 312, comments={"ENCODER": "edge-dred recv"}) if record else None
        self.silence = np.zeros(FRAME_SAMPLES, np.int16)
        self.counts: dict[str, int] = {k: 0 for k in (
            "datagrams", "bad_rtp", "bad_opus", "unsupported_duration", "impaired_lost", "idle_frames",
            "warmup_frames", "frames")}
        self.decisions: dict[str, int] = {}
        self.hole_decisions: dict[str, dict[str, int]] = {}
        self.last_error = ""
        self._kinds: deque[str] = deque()
        self._dec_seen = 0
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None

    # -- network side ------------------------------------------------------
    def on_datagram(self, data: bytes | bytearray | memoryview, now: float) -> PutResult | None:
        """Parse one datagram and offer it to the jitter buffer; bad input is counted and dropped."""
        self.counts["datagrams"] += 1
        try:
            pkt = parse_rtp(data, self.payload_type, MAX_DATAGRAM_BYTES)
        except RtpError as e:
            self.counts["bad_rtp"] += 1
            self.last_error = str(e)
            return None
        try:
            op = parse_packet(pkt.payload)
        except FramingError as e:
            self.counts["bad_opus"] += 1
            self.last_error = str(e)
            return None
        if op.samples(48000) != FRAME_TS_48K:
            # The receiver works in 20 ms slots; other packet durations are not supported.
            self.counts["unsupported_duration"] += 1
            self.last_error = f"packet of {op.duration_ms} ms (only 20 ms packets are supported)"
            return None
        if self.first_arrival is None:
            self.first_arrival = now
        self.last_arrival = now
        with self.lock:
            return self.jb.put(pkt.timestamp, pkt.payload, now, pkt.ssrc)

    # -- audio side --------------------------------------------------------
    def next_frame(self, now: float) -> np.ndarray:
        """The next 20 ms of audio to play (silence before the stream starts)."""
        with self.lock:
            pkt, kind = self.jb.pop(now)
        if kind is SlotKind.IDLE:
            self.counts["idle_frames"] += 1
            return self.silence
        return self._feed(pkt, kind.value)

    def _feed(self, pkt: bytes | None, kind: str) -> np.ndarray:
        if self.recorder is not None:
            if pkt is None:
                self.recorder.lost()
            else:
                self.recorder.packet(pkt)
        self._kinds.append(kind)
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
            kind = self._kinds.popleft() if self._kinds else "unknown"
            if kind != SlotKind.PACKET.value:
                per = self.hole_decisions.setdefault(kind, {})
                per[name] = per.get(name, 0) + 1
        self._dec_seen = len(decs)
        if len(decs) >= self._DECISION_TRIM:  # keep memory flat in long runs
            del decs[:]
            self._dec_seen = 0

    def finish(self) -> list[np.ndarray]:
        """End of stream: play out what is buffered and decide the pending slots."""
        with self.lock:
            rest = self.jb.drain()
        out = []
        for pkt in rest:
            self._kinds.append(SlotKind.PACKET.value if pkt is not None else SlotKind.MISSING.value)
            if self.recorder is not None:
                self.recorder.lost() if pkt is None else self.recorder.packet(pkt)
            out.extend(self.receiver.push(pkt))
        out.extend(self.receiver.flush())
        self._count_decisions()
        return out

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
            "regular_equals_played": self.decisions.get("regular", 0) == s["played"],
            "datagrams_balance_ok": self.counts["datagrams"] == self.counts["bad_rtp"] + self.counts["bad_opus"]
            + self.counts["unsupported_duration"] + s["received"],
        }
        return {"rtp": dict(self.counts), "jitter": s, "jitter_delay_ms": self.jb.delay_ms,
                "decisions": dict(self.decisions), "hole_decisions": self.hole_decisions,
                "accounting": acct, "last_error": self.last_error}


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
    parts.append(f"RTF {load.load:.3f}")
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
    """

    def __init__(self, capture: AudioDevice, dest: tuple[str, int], config: LiveConfig,
                 impairment: Impairment | None = None, record: str | None = None,
                 redundancy: RedundancyHook | None = None, sock: socket.socket | None = None) -> None:
        self.capture = capture
        self.dest = dest
        self.config = config
        self.core = SendCore(config, redundancy, record)
        self.impairment = impairment or Impairment()
        if sock is None:
            family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)  # never block the audio thread
        self.sock = sock
        self.load = LoadMeter(FRAME_MS / 1000.0)
        self.send_errors = 0
        self.datagrams = 0
        self._frame = np.zeros(FRAME_SAMPLES, np.int16)
        self.stop_event = threading.Event()
        self.started_at = 0.0

    def _send(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            try:
                self.sock.sendto(d, self.dest)
                self.datagrams += 1
            except (BlockingIOError, OSError):
                self.send_errors += 1  # e.g. ICMP port unreachable before the receiver is up

    def status_line(self) -> str:
        st = self.impairment.stats
        return (f"t {time.monotonic() - self.started_at:6.1f}s | sent {st['packets']} lost {st['lost']} "
                f"dup {st['duplicated']} reordered {st['reordered']} | {self.core.bytes * 8 / max(1, self.core.frames) / FRAME_MS:.1f} kb/s "
                f"| RTF {self.load.load:.3f} | xruns {self.capture.xruns}")

    def run(self, seconds: float, status_interval: float = 0.0, status_stream=None) -> dict:
        """Capture and send for ``seconds`` (until :attr:`stop_event` is set)."""
        n_frames = int(round(seconds * 1000 / FRAME_MS))
        self.started_at = time.monotonic()
        printer = _StatusPrinter(self.status_line, status_interval, status_stream).start()
        try:
            for _ in range(n_frames):
                if self.stop_event.is_set():
                    break
                self.capture.capture(self._frame)
                self.load.start()
                self._send(self.impairment.process(self.core.encode(self._frame)))
                self.load.stop()
            self._send(self.impairment.flush())
        finally:
            printer.stop()
            rec = self.core.close()
        return self.report(rec)

    def report(self, recording: dict | None = None) -> dict:
        return {
            "role": "send", "dest": f"{self.dest[0]}:{self.dest[1]}", "frames": self.core.frames,
            "impairment": self.impairment.describe(), "impairment_stats": dict(self.impairment.stats),
            "datagrams_sent": self.datagrams, "send_errors": self.send_errors,
            "bitrate_bps": self.core.bytes * 8 / max(1, self.core.frames) / (FRAME_MS / 1000.0),
            "ssrc": self.core.rtp.ssrc, "first_sequence": self.core.rtp.first_sequence,
            "cpu_load_mean": self.load.mean, "cpu_load_peak": self.load.peak,
            "overruns": self.capture.overruns, "capture_periods": self.capture.periods,
            "latency_budget_ms": latency_budget(self.config, self.core.sender.lookahead),
            "recording": recording,
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
    """

    def __init__(self, playback: AudioDevice, sock: socket.socket, config: LiveConfig,
                 impairment: Impairment | None = None, record: str | None = None,
                 payload_type: int | None = None) -> None:
        self.playback = playback
        self.sock = sock
        self.config = config
        self.core = RecvCore(config, record, payload_type)
        self.impairment = impairment
        self.load = LoadMeter(FRAME_MS / 1000.0)
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
                n, _ = self.sock.recvfrom_into(buf)
            except socket.timeout:
                continue
            except OSError:
                if self.stop_event.is_set():
                    return
                continue
            now = time.monotonic()
            data = bytes(view[:n])  # n == len(buf) means truncated: parse_rtp rejects it as too long
            if self.impairment is not None:
                released = self.impairment.process(data)
                self.core.counts["impaired_lost"] = self.impairment.stats["lost"]
            else:
                released = [data]
            for d in released:
                self.core.on_datagram(d, now)
            self._arrived.set()

    def status_line(self) -> str:
        t = time.monotonic() - self.started_at
        return _status(t, None, None, self.core, self.load, self.playback.xruns)

    def run(self, seconds: float, idle_timeout: float = 1.0, wait_timeout: float = 10.0,
            status_interval: float = 0.0, status_stream=None) -> dict:
        """Receive and play.

        Stops after ``seconds`` of playback from the stream's start, after
        ``idle_timeout`` seconds without datagrams once it has started, if no
        datagram arrives within ``wait_timeout``, or when :attr:`stop_event` is set.
        """
        self.started_at = time.monotonic()
        self._net.start()
        printer = _StatusPrinter(self.status_line, status_interval, status_stream).start()
        n_frames = int(round(seconds * 1000 / FRAME_MS))
        try:
            if self._arrived.wait(wait_timeout):
                # Start the playback clock one jitter-buffer delay after the first arrival,
                # so pops are phase-aligned with arrivals.
                start = self.core.first_arrival + self.config.jitter.start_delay_ms / 1000.0
                time.sleep(max(0.0, start - time.monotonic()))
                while self.frames_played < n_frames and not self.stop_event.is_set():
                    now = time.monotonic()
                    if self.core.last_arrival is not None and now - self.core.last_arrival > idle_timeout:
                        break
                    self.load.start()
                    frame = self.core.next_frame(now)
                    self.load.stop()
                    self.playback.play(frame)
                    self.frames_played += 1
            self.stop_event.set()
            self._net.join()
            for frame in self.core.finish():
                self.playback.play(frame)
                self.frames_played += 1
        finally:
            self.stop_event.set()
            printer.stop()
            rec = self.core.close()
        return self.report(rec)

    def report(self, recording: dict | None = None) -> dict:
        r = self.core.report()
        r.update({
            "role": "recv", "frames_played": self.frames_played,
            "impairment": self.impairment.describe() if self.impairment else "none",
            "impairment_stats": dict(self.impairment.stats) if self.impairment else None,
            "cpu_load_mean": self.load.mean, "cpu_load_peak": self.load.peak,
            "underruns": self.playback.underruns,
            # The sender's look-ahead is not signalled; 104 samples (6.5 ms) is libopus's at 16 kHz.
            "latency_budget_ms": latency_budget(self.config, 104),
            "recording": recording,
        })
        return r


class LiveSession:
    """``edge-dred live``: capture -> encode -> impairment -> jitter buffer -> recovery -> playback.

    One audio thread, paced by the capture device.  Datagrams go through the
    same RTP build/parse and jitter buffer as over a network.
    """

    def __init__(self, capture: AudioDevice, playback: AudioDevice, config: LiveConfig,
                 impairment: Impairment | None = None, record: str | None = None,
                 record_received: str | None = None, redundancy: RedundancyHook | None = None) -> None:
        self.capture = capture
        self.playback = playback
        self.config = config
        self.send = SendCore(config, redundancy, record)
        # Arrivals and pops share the capture clock here: no timing noise to keep a safety margin for.
        rconf = replace(config, jitter=replace(config.jitter, safety_ms=0.0))
        self.recv = RecvCore(rconf, record_received)
        self.impairment = impairment or Impairment()
        self.load = LoadMeter(FRAME_MS / 1000.0)
        self.stop_event = threading.Event()
        self._frame = np.zeros(FRAME_SAMPLES, np.int16)
        self.started_at = 0.0
        self.frames_played = 0

    @property
    def xruns(self) -> int:
        return self.capture.xruns + self.playback.xruns

    def status_line(self) -> str:
        st = self.impairment.stats
        return _status(time.monotonic() - self.started_at, st["packets"], st["lost"], self.recv, self.load,
                       self.xruns)

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
        self.load.stop()
        self.playback.play(frame)
        self.frames_played += 1

    def run(self, seconds: float, status_interval: float = 0.0, status_stream=None) -> dict:
        """Run for ``seconds`` of audio (or until :attr:`stop_event` is set)."""
        self.started_at = time.monotonic()
        printer = _StatusPrinter(self.status_line, status_interval, status_stream).start()
        n = int(round(seconds * 1000 / FRAME_MS))
        try:
            for _ in range(n):
                if self.stop_event.is_set():
                    break
                self.step()
            now = self.send.frames * (FRAME_MS / 1000.0)
            for d in self.impairment.flush():
                self.recv.on_datagram(d, now)
            for frame in self.recv.finish():
                self.playback.play(frame)
                self.frames_played += 1
        finally:
            printer.stop()
            rec_sent = self.send.close()
            rec_recv = self.recv.close()
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
            "cpu_load_mean": self.load.mean, "cpu_load_peak": self.load.peak,
            "overruns": self.capture.overruns, "underruns": self.playback.underruns,
            "latency_budget_ms": latency_budget(self.config, self.send.sender.lookahead),
            "recording_sent": rec_sent, "recording_received": rec_recv,
        })
        return r
