"""RED, RFC 2198 redundant audio data, carrying earlier Opus frames.

WebRTC sends Opus as RED (``red/48000/2``, fmtp ``111/111``): every RTP packet
carries the current Opus packet (the *primary*) and copies of the one or two
before it.  A receiver that lost packet ``k`` decodes the copy of it found in
packet ``k + 1`` or ``k + 2`` instead, exactly as if ``k`` had arrived.

Payload layout (RFC 2198 section 3), redundant blocks oldest first::

    |1|  block PT  |  timestamp offset (14)  |  block length (10)  |   4 bytes per redundant block
    |0|  primary PT|                                                   1 byte, last header
    | redundant block data ... | primary data ... (to the end)        |

The offset is the primary's RTP timestamp minus the block's (so at most
16383, 0.34 s at 48 kHz) and the length counts bytes (at most 1023): the
sender leaves out a copy that does not fit either field.

Parsing treats every payload as hostile: the block count and every length are
checked against the buffer before use and anything malformed raises
:class:`RedError` (a ``ValueError``) naming what was wrong.  Blocks that are
well formed but useless to us (another payload type, an offset that is not a
whole number of 20 ms frames, a copy that is not a 20 ms Opus packet) are
ignored and counted, never played.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..codec.framing import FramingError, parse_packet

__all__ = [
    "RED_MAX_TIMESTAMP_OFFSET",
    "RED_MAX_BLOCK_BYTES",
    "MAX_RED_BLOCKS",
    "MAX_RED_DISTANCE",
    "MAX_RED_BACK",
    "DEFAULT_RED_PAYLOAD_TYPE",
    "RedError",
    "RedBlock",
    "RedPayload",
    "build_red",
    "parse_red",
    "RedEncoder",
    "RedOpusPacket",
    "unpack_red",
]

#: 14-bit timestamp offset field (RFC 2198 section 3).
RED_MAX_TIMESTAMP_OFFSET = (1 << 14) - 1
#: 10-bit block length field.
RED_MAX_BLOCK_BYTES = (1 << 10) - 1
#: Most redundant blocks a parsed payload may announce (WebRTC accepts 32 as well).
MAX_RED_BLOCKS = 32
#: Most earlier frames our sender repeats (browsers send 1 or 2).
MAX_RED_DISTANCE = 3
#: RED's payload type when none is given (the Opus stream's default is 96).
DEFAULT_RED_PAYLOAD_TYPE = 97
#: 20 ms at the 48 kHz RTP clock of Opus (RFC 7587).
_FRAME_TS = 960
#: Most 20 ms frames back a RED block can reach (its 14-bit timestamp offset).
MAX_RED_BACK = RED_MAX_TIMESTAMP_OFFSET // _FRAME_TS


class RedError(ValueError):
    """A RED payload is malformed, or a RED block cannot be built."""


@dataclass(frozen=True)
class RedBlock:
    """One redundant block: an earlier payload of type ``payload_type``.

    Attributes
    ----------
    payload_type : int
        7-bit payload type of the block's data.
    timestamp_offset : int
        Primary timestamp minus this block's, 0..16383.
    data : bytes
        The block's payload (0..1023 bytes).
    """

    payload_type: int
    timestamp_offset: int
    data: bytes


@dataclass(frozen=True)
class RedPayload:
    """A parsed RED payload.

    Attributes
    ----------
    payload_type : int
        Payload type of the primary block.
    primary : bytes
        The primary block's data (never empty).
    redundant : tuple of RedBlock
        Redundant blocks in the order they were sent (oldest first as WebRTC sends them).
    """

    payload_type: int
    primary: bytes
    redundant: tuple[RedBlock, ...] = ()


def _check_pt(name: str, pt: object) -> int:
    if isinstance(pt, bool) or not isinstance(pt, int) or not 0 <= pt <= 127:
        raise RedError(f"{name} must be an int in 0..127, got {pt!r}")
    return pt


def build_red(payload_type: int, primary: bytes, redundant: "tuple[RedBlock, ...] | list[RedBlock]" = ()) -> bytes:
    """Build a RED payload: block headers, redundant data, then the primary.

    Parameters
    ----------
    payload_type : int
        Payload type of the primary block.
    primary : bytes
        The primary data (non-empty).
    redundant : sequence of RedBlock
        Earlier blocks, in the order they go on the wire (oldest first).

    Raises
    ------
    RedError
        An offset outside 0..16383, a block longer than 1023 bytes, more than
        :data:`MAX_RED_BLOCKS` blocks, an empty primary or a bad payload type.
    """
    _check_pt("payload_type", payload_type)
    if not isinstance(primary, (bytes, bytearray, memoryview)) or len(primary) == 0:
        raise RedError("primary block must be non-empty bytes")
    if len(redundant) > MAX_RED_BLOCKS:
        raise RedError(f"{len(redundant)} redundant blocks, at most {MAX_RED_BLOCKS}")
    head = bytearray()
    body = bytearray()
    for i, b in enumerate(redundant):
        if not isinstance(b, RedBlock):
            raise RedError(f"redundant block {i} must be a RedBlock, got {type(b).__name__}")
        pt = _check_pt(f"block {i} payload_type", b.payload_type)
        off = b.timestamp_offset
        if isinstance(off, bool) or not isinstance(off, int) or not 0 <= off <= RED_MAX_TIMESTAMP_OFFSET:
            raise RedError(f"block {i}: timestamp offset {off!r} outside the 14-bit range 0..{RED_MAX_TIMESTAMP_OFFSET}")
        n = len(b.data)
        if n > RED_MAX_BLOCK_BYTES:
            raise RedError(f"block {i}: {n} bytes exceed the 10-bit length limit of {RED_MAX_BLOCK_BYTES}")
        word = (off << 10) | n
        head += bytes((0x80 | pt, word >> 16, (word >> 8) & 0xFF, word & 0xFF))
        body += b.data
    head.append(payload_type)
    return bytes(head + body) + bytes(primary)


def parse_red(data: bytes | bytearray | memoryview) -> RedPayload:
    """Parse a RED payload (the RTP payload, RTP padding already removed).

    Raises
    ------
    RedError
        Not bytes, a block header or block running past the end, more than
        :data:`MAX_RED_BLOCKS` redundant blocks, or an empty primary block.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RedError(f"RED payload must be bytes-like, got {type(data).__name__}")
    buf = bytes(data)
    n = len(buf)
    pos = 0
    headers: list[tuple[int, int, int]] = []
    while True:
        if pos >= n:
            raise RedError(f"RED block header {len(headers)} runs past the end ({n} bytes)")
        b0 = buf[pos]
        if not b0 & 0x80:  # F = 0: the primary's one-byte header ends the list
            pt = b0 & 0x7F
            pos += 1
            break
        if len(headers) == MAX_RED_BLOCKS:
            raise RedError(f"more than {MAX_RED_BLOCKS} redundant blocks")
        if pos + 4 > n:
            raise RedError(f"RED block header {len(headers)} runs past the end ({n} bytes)")
        word = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
        headers.append((b0 & 0x7F, word >> 10, word & 0x3FF))
        pos += 4
    blocks = []
    for i, (bpt, off, length) in enumerate(headers):
        if pos + length > n:
            raise RedError(f"RED block {i} of {length} bytes runs past the end ({n} bytes)")
        blocks.append(RedBlock(bpt, off, buf[pos:pos + length]))
        pos += length
    if pos >= n:
        raise RedError("RED payload has an empty primary block")
    return RedPayload(pt, buf[pos:], tuple(blocks))


class RedEncoder:
    """Sender side: wrap each Opus packet with copies of the ``distance`` before it.

    Parameters
    ----------
    distance : int
        Earlier frames repeated in each packet, 1..:data:`MAX_RED_DISTANCE`.
    payload_type : int
        Payload type of the Opus blocks (the SDP's ``opus/48000/2``).
    frame_ts : int
        RTP timestamp units per packet (960 = 20 ms).

    Attributes
    ----------
    redundant_bytes : int
        Bytes of redundant data plus block headers sent so far.
    omitted : int
        Copies left out because their offset or length did not fit RFC 2198's fields.
    """

    def __init__(self, distance: int, payload_type: int, frame_ts: int = _FRAME_TS) -> None:
        if isinstance(distance, bool) or not isinstance(distance, int) or not 1 <= distance <= MAX_RED_DISTANCE:
            raise RedError(f"RED distance must be an integer in 1..{MAX_RED_DISTANCE}, got {distance!r}")
        self.payload_type = _check_pt("payload_type", payload_type)
        if not 0 < frame_ts <= RED_MAX_TIMESTAMP_OFFSET:
            raise RedError(f"frame_ts must be in 1..{RED_MAX_TIMESTAMP_OFFSET}, got {frame_ts}")
        self.distance = distance
        self.frame_ts = frame_ts
        self._history: deque[tuple[int, bytes]] = deque(maxlen=distance)
        self._ts = 0
        self.redundant_bytes = 0
        self.omitted = 0

    def reset(self) -> None:
        """Forget the earlier frames (a new stream)."""
        self._history.clear()
        self._ts = 0

    def push(self, primary: bytes, copy: bytes | None = None, skipped_frames: int = 0) -> bytes:
        """The RED payload for the next packet.

        Parameters
        ----------
        primary : bytes
            This frame's Opus packet as sent (with DRED in its padding, if any).
        copy : bytes, optional
            What later packets repeat of this frame (default ``primary``); the
            sender passes the packet without its DRED padding, which a
            redundant copy would only duplicate.
        skipped_frames : int
            Frames not sent before this one (DTX), as given to the RTP packetizer.
        """
        self._ts += skipped_frames * self.frame_ts
        blocks = []
        for ts, data in self._history:  # oldest first, as WebRTC orders them
            off = self._ts - ts
            if off > RED_MAX_TIMESTAMP_OFFSET or len(data) > RED_MAX_BLOCK_BYTES:
                self.omitted += 1
                continue
            blocks.append(RedBlock(self.payload_type, off, data))
        out = build_red(self.payload_type, primary, blocks)
        self.redundant_bytes += len(out) - len(primary)
        self._history.append((self._ts, bytes(primary if copy is None else copy)))
        self._ts += self.frame_ts
        return out


class RedOpusPacket(bytes):
    """A primary Opus packet (the bytes themselves) with the earlier frames that came with it.

    It is an ordinary Opus packet for everything that decodes or inspects
    one (LBRR and DRED live inside it as before); the receiver's decision
    machine also looks at :attr:`redundant` when an earlier slot is lost.

    Attributes
    ----------
    redundant : dict[int, bytes]
        Frames back (1 = the previous packet) -> that frame's Opus packet.
    ignored : int
        Well-formed blocks that were not usable 20 ms Opus frames of this stream.
    """

    redundant: dict[int, bytes]
    ignored: int

    def __new__(cls, primary: bytes, redundant: dict[int, bytes] | None = None, ignored: int = 0) -> "RedOpusPacket":
        self = super().__new__(cls, primary)
        self.redundant = dict(redundant or {})
        self.ignored = ignored
        return self

    def __reduce__(self):  # keep the copies when pickled (eval workers)
        return (RedOpusPacket, (bytes(self), self.redundant, self.ignored))


def _is_opus_frame(data: bytes, frame_ts: int) -> bool:
    try:
        return parse_packet(data).samples(48000) == frame_ts
    except FramingError:
        return False


def unpack_red(payload: bytes | bytearray | memoryview, opus_payload_type: int,
               frame_ts: int = _FRAME_TS) -> RedOpusPacket:
    """Parse a RED payload of an Opus stream into its primary and usable copies.

    Parameters
    ----------
    payload : bytes-like
        The RTP payload (RTP padding removed).
    opus_payload_type : int
        Payload type of Opus blocks; the primary must have it.
    frame_ts : int
        RTP timestamp units per slot (960 = 20 ms).

    Returns
    -------
    RedOpusPacket
        The primary, with the redundant blocks that are 20 ms Opus packets of
        ``opus_payload_type`` at a whole number of frames back.  Checking the
        primary itself is left to the caller (as for a plain Opus payload).

    Raises
    ------
    RedError
        Malformed RED, or a primary of another payload type.
    """
    red = parse_red(payload)
    if red.payload_type != opus_payload_type:
        raise RedError(f"RED primary block has payload type {red.payload_type}, expected Opus {opus_payload_type}")
    copies: dict[int, bytes] = {}
    ignored = 0
    for b in red.redundant:
        back, rem = divmod(b.timestamp_offset, frame_ts)
        if (b.payload_type != opus_payload_type or rem or back == 0 or back in copies
                or not _is_opus_frame(b.data, frame_ts)):
            ignored += 1
            continue
        copies[back] = b.data
    return RedOpusPacket(red.primary, copies, ignored)
