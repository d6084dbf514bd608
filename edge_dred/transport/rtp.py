"""RTP (RFC 3550) headers for an Opus stream (RFC 7587).

The Opus packet (with our DRED payload inside its code 3 padding, see
:mod:`edge_dred.codec.framing`) is the RTP payload, unchanged.  RFC 7587 fixes
the RTP clock at 48 kHz whatever rate the codec runs at, so a 20 ms packet
advances the timestamp by 960 even though we sample at 16 kHz.

Parsing treats every datagram as hostile: lengths are checked against the
buffer before use, nothing is read out of bounds, and every malformed input
raises :class:`RtpError` (a ``ValueError``) naming what was wrong.  Receivers
count and drop such datagrams; they never stop the stream.

Fixed header (RFC 3550 section 5.1)::

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |            contributing source (CSRC) identifiers             |  CC x 4 bytes
    | [header extension: profile(16) length(16, in words) data]    |
    | payload ...                                  [padding, last byte = count]
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

__all__ = [
    "RTP_VERSION",
    "RTP_CLOCK_RATE",
    "RTP_HEADER_BYTES",
    "MAX_DATAGRAM_BYTES",
    "DEFAULT_PAYLOAD_TYPE",
    "RtpError",
    "RtpPacket",
    "parse_rtp",
    "build_rtp",
    "RtpPacketizer",
    "SequenceUnwrapper",
    "is_rtcp",
    "build_rtcp_bye",
    "parse_rtcp",
    "parse_rtcp_bye",
]

RTP_VERSION = 2
#: RFC 7587 section 4.1: the Opus RTP clock is always 48 kHz.
RTP_CLOCK_RATE = 48000
RTP_HEADER_BYTES = 12
#: Largest datagram accepted: the largest Opus packet we handle (4096 bytes,
#: :data:`edge_dred.codec.framing.MAX_PACKET_BYTES`) plus a full header with
#: 15 CSRCs and a modest header extension.  Anything larger is rejected before
#: parsing.
MAX_DATAGRAM_BYTES = 4096 + RTP_HEADER_BYTES + 15 * 4 + 4 + 256
#: Dynamic payload type used by default (RFC 3551 range 96..127).
DEFAULT_PAYLOAD_TYPE = 96
_MAX_EXTENSION_BYTES = 256

_HDR = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram is not a valid RTP packet (or not one we accept)."""


@dataclass(frozen=True)
class RtpPacket:
    """One parsed RTP packet.

    Attributes
    ----------
    payload_type : int
        7-bit payload type.
    sequence : int
        16-bit sequence number.
    timestamp : int
        32-bit timestamp (48 kHz units for Opus).
    ssrc : int
        Synchronisation source.
    marker : bool
        M bit (RFC 7587: first packet after a DTX silence).
    payload : bytes
        The Opus packet, RTP padding removed.
    csrcs : tuple of int
        Contributing sources.
    extension : tuple (profile, bytes) or None
        The RTP header extension, if any.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None


def parse_rtp(data: bytes | bytearray | memoryview, expect_payload_type: int | None = None,
              max_bytes: int = MAX_DATAGRAM_BYTES) -> RtpPacket:
    """Parse one RTP datagram.

    Parameters
    ----------
    data : bytes-like
        The datagram.
    expect_payload_type : int, optional
        Reject packets of another payload type.
    max_bytes : int
        Reject datagrams longer than this.

    Returns
    -------
    RtpPacket

    Raises
    ------
    RtpError
        For anything malformed: too short or too long, version != 2, CSRC
        list, header extension or padding running past the end, empty payload.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RtpError(f"datagram must be bytes-like, got {type(data).__name__}")
    buf = bytes(data)
    n = len(buf)
    if n > max_bytes:
        raise RtpError(f"datagram of {n} bytes exceeds the limit of {max_bytes}")
    if n < RTP_HEADER_BYTES:
        raise RtpError(f"datagram of {n} bytes is shorter than the 12-byte RTP header")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(buf, 0)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected 2")
    has_padding = bool(b0 & 0x20)
    has_ext = bool(b0 & 0x10)
    cc = b0 & 0x0F
    marker = bool(b1 & 0x80)
    pt = b1 & 0x7F
    if 72 <= pt <= 76:
        # RFC 5761: these PT values collide with RTCP packet types (SR/RR...).
        raise RtpError(f"payload type {pt} is reserved (looks like RTCP)")
    if expect_payload_type is not None and pt != expect_payload_type:
        raise RtpError(f"payload type {pt}, expected {expect_payload_type}")
    pos = RTP_HEADER_BYTES
    if pos + 4 * cc > n:
        raise RtpError(f"CSRC list of {cc} entries runs past the end ({n} bytes)")
    csrcs = struct.unpack_from(f"!{cc}I", buf, pos) if cc else ()
    pos += 4 * cc
    extension = None
    if has_ext:
        if pos + 4 > n:
            raise RtpError("header extension header runs past the end")
        profile, words = struct.unpack_from("!HH", buf, pos)
        ext_len = 4 * words
        if ext_len > _MAX_EXTENSION_BYTES:
            raise RtpError(f"header extension of {ext_len} bytes exceeds {_MAX_EXTENSION_BYTES}")
        if pos + 4 + ext_len > n:
            raise RtpError(f"header extension of {ext_len} bytes runs past the end")
        extension = (profile, buf[pos + 4:pos + 4 + ext_len])
        pos += 4 + ext_len
    end = n
    if has_padding:
        pad = buf[-1]
        if pad == 0:
            raise RtpError("RTP padding count is 0")
        if pos + pad > n:
            raise RtpError(f"RTP padding of {pad} bytes runs into the header")
        end = n - pad
    if end <= pos:
        raise RtpError("empty RTP payload")
    return RtpPacket(pt, seq, ts, ssrc, marker, buf[pos:end], tuple(csrcs), extension)


def build_rtp(payload: bytes, sequence: int, timestamp: int, ssrc: int,
              payload_type: int = DEFAULT_PAYLOAD_TYPE, marker: bool = False) -> bytes:
    """Build an RTP datagram (no CSRCs, extension or RTP padding).

    Raises
    ------
    RtpError
        If a field is out of range or the payload is empty or too large.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) == 0:
        raise RtpError("payload must be non-empty bytes")
    if len(payload) + RTP_HEADER_BYTES > MAX_DATAGRAM_BYTES:
        raise RtpError(f"payload of {len(payload)} bytes is too large")
    for name, v, hi in (("sequence", sequence, 0xFFFF), ("timestamp", timestamp, 0xFFFFFFFF),
                        ("ssrc", ssrc, 0xFFFFFFFF), ("payload_type", payload_type, 127)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
            raise RtpError(f"{name} must be an int in 0..{hi}, got {v!r}")
    b1 = (0x80 if marker else 0) | payload_type
    return _HDR.pack(RTP_VERSION << 6, b1, sequence, timestamp, ssrc) + bytes(payload)


class RtpPacketizer:
    """Sender-side RTP state: sequence numbers, timestamps, SSRC.

    Sequence number and timestamp start at random values (RFC 3550 section
    5.1) unless given, and wrap modulo 2**16 / 2**32.

    Parameters
    ----------
    samples_per_packet_48k : int
        Timestamp increment per packet (960 for 20 ms).
    payload_type : int
        Dynamic payload type announced in the SDP.
    ssrc, first_sequence, first_timestamp : int, optional
        Fixed values (tests); random otherwise.
    """

    def __init__(self, samples_per_packet_48k: int = 960, payload_type: int = DEFAULT_PAYLOAD_TYPE,
                 ssrc: int | None = None, first_sequence: int | None = None,
                 first_timestamp: int | None = None) -> None:
        if not 0 < samples_per_packet_48k <= 5760:
            raise ValueError(f"samples_per_packet_48k must be in 1..5760 (120 ms), got {samples_per_packet_48k}")
        if not 96 <= payload_type <= 127:
            raise ValueError(f"payload_type must be dynamic (96..127), got {payload_type}")
        rnd = struct.unpack("!IHI", os.urandom(10))
        self.ssrc = rnd[0] if ssrc is None else int(ssrc) & 0xFFFFFFFF
        self.sequence = rnd[1] if first_sequence is None else int(first_sequence) & 0xFFFF
        self.timestamp = rnd[2] if first_timestamp is None else int(first_timestamp) & 0xFFFFFFFF
        self.first_sequence = self.sequence
        self.first_timestamp = self.timestamp
        self.step = samples_per_packet_48k
        self.payload_type = payload_type
        self.packets = 0
        self._marker_next = True  # RFC 3551: M set on the first packet of a talkspurt

    def next(self, payload: bytes, skipped_frames: int = 0) -> bytes:
        """Wrap the next packet's payload.

        Parameters
        ----------
        payload : bytes
            The Opus packet.
        skipped_frames : int
            Frames not sent before this one (DTX): the timestamp jumps by them
            while the sequence number does not, and the marker bit is set.
        """
        if skipped_frames:
            self.timestamp = (self.timestamp + skipped_frames * self.step) & 0xFFFFFFFF
            self._marker_next = True
        out = build_rtp(payload, self.sequence, self.timestamp, self.ssrc, self.payload_type, self._marker_next)
        self._marker_next = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.step) & 0xFFFFFFFF
        self.packets += 1
        return out


class SequenceUnwrapper:
    """Extend a wrapping counter (16-bit sequence, 32-bit timestamp) to an int.

    The extended value is the one closest to the previous extended value, so
    wrap-around in either direction (reordering across the wrap) is handled.

    Parameters
    ----------
    bits : int
        16 for sequence numbers, 32 for timestamps.
    """

    def __init__(self, bits: int) -> None:
        if bits not in (16, 32):
            raise ValueError("bits must be 16 or 32")
        self.modulus = 1 << bits
        self._half = self.modulus >> 1
        self._last: int | None = None

    def unwrap(self, value: int) -> int:
        """Return the extended value of ``value`` (0 <= value < 2**bits)."""
        if not 0 <= value < self.modulus:
            raise ValueError(f"value {value} out of range for a {self.modulus.bit_length() - 1}-bit counter")
        if self._last is None:
            ext = value
        else:
            delta = (value - self._last) % self.modulus
            if delta >= self._half:
                delta -= self.modulus
            ext = self._last + delta
        # Keep the reference at the newest value so old packets do not drag it back.
        if self._last is None or ext > self._last:
            self._last = ext
        return ext


# -- RTCP BYE (RFC 3550 section 6.6), multiplexed on the RTP port (RFC 5761) -------------

RTCP_SR = 200
RTCP_RR = 201
RTCP_BYE = 203
_MAX_RTCP_PACKETS = 16


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 section 4: a datagram whose second byte is 192..223 is RTCP."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def build_rtcp_bye(ssrc: int, last_timestamp: int | None = None, packets: int = 0, octets: int = 0) -> bytes:
    """A compound RTCP packet saying that ``ssrc`` leaves.

    With ``last_timestamp`` (the RTP timestamp of the last packet sent) it starts
    with a sender report carrying it and the packet/octet counts, so the
    receiver can tell lost last packets from the stream's end; else with an
    empty receiver report.  The report's NTP time is left 0 (no wallclock sync).
    """
    for name, v in (("ssrc", ssrc), ("last_timestamp", 0 if last_timestamp is None else last_timestamp)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
            raise RtpError(f"{name} must be an int in 0..{0xFFFFFFFF}, got {v!r}")
    if last_timestamp is None:
        rr = struct.pack("!BBHI", RTP_VERSION << 6, RTCP_RR, 1, ssrc)
    else:
        rr = struct.pack("!BBHIQIII", RTP_VERSION << 6, RTCP_SR, 6, ssrc, 0, last_timestamp,
                         packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    bye = struct.pack("!BBHI", (RTP_VERSION << 6) | 1, RTCP_BYE, 1, ssrc)
    return rr + bye


def parse_rtcp_bye(data: bytes | bytearray | memoryview, max_bytes: int = MAX_DATAGRAM_BYTES) -> list[int]:
    """The SSRCs that a (compound) RTCP datagram says goodbye for; [] if it has no BYE (see :func:`parse_rtcp`)."""
    return parse_rtcp(data, max_bytes)[0]


def parse_rtcp(data: bytes | bytearray | memoryview,
               max_bytes: int = MAX_DATAGRAM_BYTES) -> tuple[list[int], dict[int, int]]:
    """What a (compound) RTCP datagram says: the SSRCs it says goodbye for, and the RTP
    timestamp of each sender report (SSRC -> timestamp).

    Raises
    ------
    RtpError
        A malformed compound packet: wrong version, a length running past
        the end, too many packets, a BYE whose source count does not fit.
    """
    buf = bytes(data)
    n = len(buf)
    if n > max_bytes:
        raise RtpError(f"RTCP datagram of {n} bytes exceeds the limit of {max_bytes}")
    if n < 4:
        raise RtpError(f"RTCP datagram of {n} bytes is shorter than a 4-byte header")
    pos, out, reports = 0, [], {}
    for _ in range(_MAX_RTCP_PACKETS):
        if pos == n:
            return out, reports
        if pos + 4 > n:
            raise RtpError(f"RTCP header at byte {pos} runs past the end")
        b0, pt, words = struct.unpack_from("!BBH", buf, pos)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        length = 4 * (words + 1)
        if pos + length > n:
            raise RtpError(f"RTCP packet of {length} bytes at byte {pos} runs past the end")
        if pt == RTCP_BYE:
            sc = b0 & 0x1F
            if 4 + 4 * sc > length:
                raise RtpError(f"RTCP BYE with {sc} sources does not fit its {length} bytes")
            out.extend(struct.unpack_from(f"!{sc}I", buf, pos + 4))
        elif pt == RTCP_SR:
            if length < 28:
                raise RtpError(f"RTCP sender report of {length} bytes is shorter than 28")
            sender, _ntp, ts = struct.unpack_from("!IQI", buf, pos + 4)
            reports[sender] = ts
        pos += length
    if pos != n:
        raise RtpError(f"compound RTCP packet has more than {_MAX_RTCP_PACKETS} packets")
    return out, reports
