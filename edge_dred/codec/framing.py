"""Opus packet framing (RFC 6716 section 3) and padding extensions.

Everything here treats its input as untrusted network data: every length is
checked against the buffer and against the module's hard limits before it is
used, and every malformed input raises :class:`MalformedPacketError` (a
``ValueError``) naming the rule and the byte offset.  No other exception type
escapes from the parsers for ``bytes``-like input.

Packet layout (RFC 6716 section 3.1/3.2)::

    TOC | [frame count byte (code 3)] | [padding length] | [frame lengths] |
    frames... | [padding]

Padding extensions follow draft-ietf-mlcodec-opus-extension as implemented in
libopus 1.5 (``src/extensions.c``): the code 3 padding is a sequence of
elements, each starting with a byte ``ID << 1 | L``:

* ID 0: padding.  L=1: one padding byte; L=0: the rest is padding.  All-zero
  RFC 6716 padding therefore reads as "no extensions".
* ID 1: frame separator.  L=0: advance one frame; L=1: the next byte is the
  frame increment.
* ID 2..31: short extension, L=1 means one data byte follows, L=0 none.
  (Later draft revisions give ID 2 the meaning "repeat these extensions";
  this module follows the libopus 1.5 layout and treats it as a plain short
  extension.)
* ID 32..127: long extension.  L=1: length by lacing (each 255 adds 255, the
  first byte < 255 ends it) then data; L=0: data runs to the end of the
  padding, which is only possible for the last element.

Our DRED payload rides in extension :data:`DRED_EXT_ID` (126, the ID libopus
uses for its experimental DRED) behind a two-byte header ``DRED_MAGIC``,
``DRED_VERSION`` that differs from libopus's own (``'D'``, 10/12), so the two
never get confused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = [
    "MAX_PACKET_BYTES",
    "MAX_PADDING_BYTES",
    "MAX_EXTENSIONS",
    "MAX_FRAME_BYTES",
    "MAX_FRAMES",
    "MAX_PACKET_SAMPLES_48K",
    "DRED_EXT_ID",
    "DRED_MAGIC",
    "DRED_VERSION",
    "DRED_HEADER",
    "FramingError",
    "MalformedPacketError",
    "OpusPacket",
    "Extension",
    "toc_info",
    "parse_packet",
    "build_packet",
    "with_padding",
    "strip_padding",
    "build_extensions",
    "parse_extensions",
    "packet_extensions",
    "attach_dred",
    "extract_dred",
]

#: Largest packet accepted or produced.  RFC 6716 allows far larger code 3
#: packets (48 x 1275 bytes), but a network datagram for a voice stream never
#: needs more than a few hundred bytes; 4096 keeps the worst-case work per
#: packet small while leaving room for 120 ms of high-rate audio plus DRED.
MAX_PACKET_BYTES = 4096
#: Largest padding area we parse for extensions or emit.  A DRED payload is at
#: most a few hundred bytes; 2048 leaves room for legacy CBR padding too.
MAX_PADDING_BYTES = 2048
#: Most extensions parse_extensions() returns / build_extensions() accepts.
MAX_EXTENSIONS = 64
#: RFC 6716 [R2]: no frame is longer than 1275 bytes.
MAX_FRAME_BYTES = 1275
#: 120 ms of 2.5 ms frames.
MAX_FRAMES = 48
#: RFC 6716 [R5]: at most 120 ms of audio per packet (48 kHz samples).
MAX_PACKET_SAMPLES_48K = 5760

DRED_EXT_ID = 126
DRED_MAGIC = b"e"
DRED_VERSION = 1
DRED_HEADER = DRED_MAGIC + bytes([DRED_VERSION])

_BYTES_LIKE = (bytes, bytearray, memoryview)


class FramingError(ValueError):
    """Invalid arguments to a packet/extension builder."""


class MalformedPacketError(FramingError):
    """A packet or padding area violates RFC 6716 / the extension layout.

    ``offset`` is the byte offset where the problem was detected (or None).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        if offset is not None:
            message = f"{message} (at byte offset {offset})"
        super().__init__(message)


# ----------------------------------------------------------------------------
# TOC (RFC 6716 section 3.1, Table 2)
# ----------------------------------------------------------------------------

_BW_NAMES = ("narrowband", "mediumband", "wideband", "superwideband", "fullband")


def _config_info(config: int) -> tuple[str, str, int]:
    """(mode, bandwidth, samples per frame at 48 kHz) for a TOC config 0..31."""
    if config < 12:  # SILK-only: NB, MB, WB x 10/20/40/60 ms
        return "silk", _BW_NAMES[config >> 2], (480, 960, 1920, 2880)[config & 3]
    if config < 16:  # Hybrid: SWB, FB x 10/20 ms
        return "hybrid", _BW_NAMES[3 + ((config - 12) >> 1)], (480, 960)[config & 1]
    # CELT-only: NB, WB, SWB, FB x 2.5/5/10/20 ms (no CELT mediumband).
    bw = ("narrowband", "wideband", "superwideband", "fullband")[(config - 16) >> 2]
    return "celt", bw, (120, 240, 480, 960)[config & 3]


def toc_info(toc: int) -> dict[str, object]:
    """Decode a TOC byte.

    Parameters
    ----------
    toc : int
        The first byte of an Opus packet (0..255).

    Returns
    -------
    dict
        ``config`` (0..31), ``mode`` ("silk"/"hybrid"/"celt"), ``bandwidth``,
        ``frame_samples_48k`` (samples per frame at 48 kHz), ``frame_ms``,
        ``stereo`` (bool) and ``code`` (0..3).
    """
    if not isinstance(toc, int) or not 0 <= toc <= 255:
        raise FramingError(f"TOC must be an int in 0..255, got {toc!r}")
    config = toc >> 3
    mode, bw, spf = _config_info(config)
    return {
        "config": config,
        "mode": mode,
        "bandwidth": bw,
        "frame_samples_48k": spf,
        "frame_ms": spf / 48.0,
        "stereo": bool(toc & 0x04),
        "code": toc & 0x03,
    }


# ----------------------------------------------------------------------------
# Packet parsing (RFC 6716 sections 3.2 and 3.4)
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OpusPacket:
    """A parsed Opus packet.  ``frames`` hold the compressed frames verbatim."""

    toc: int
    config: int
    stereo: bool
    code: int
    vbr: bool
    frame_sizes: tuple[int, ...]
    frames: tuple[bytes, ...]
    padding: bytes
    #: True when a code 3 packet has its padding flag set (possibly with 0 bytes).
    padding_flag: bool = False

    @property
    def mode(self) -> str:
        return _config_info(self.config)[0]

    @property
    def bandwidth(self) -> str:
        return _config_info(self.config)[1]

    @property
    def frame_samples_48k(self) -> int:
        return _config_info(self.config)[2]

    @property
    def nb_frames(self) -> int:
        return len(self.frames)

    @property
    def duration_ms(self) -> float:
        return self.nb_frames * self.frame_samples_48k / 48.0

    def samples(self, sample_rate: int = 48000) -> int:
        """Audio samples per channel this packet decodes to at ``sample_rate``."""
        if sample_rate not in (8000, 12000, 16000, 24000, 48000):
            raise FramingError(f"unsupported Opus sample rate {sample_rate}")
        return self.nb_frames * self.frame_samples_48k * sample_rate // 48000


def _as_bytes(data: object, what: str = "packet") -> bytes:
    if not isinstance(data, _BYTES_LIKE):
        raise MalformedPacketError(f"{what} must be bytes-like, got {type(data).__name__}")
    if isinstance(data, memoryview) and (data.ndim != 1 or data.itemsize != 1):
        data = data.cast("B") if data.c_contiguous else data.tobytes()
    return bytes(data)


def _read_frame_length(buf: bytes, pos: int, end: int, rule: str) -> tuple[int, int]:
    """Read a 1- or 2-byte frame length at ``pos`` (RFC 6716 3.2.1).

    Returns (length, bytes consumed); ``end`` bounds the readable header.
    """
    if pos >= end:
        raise MalformedPacketError(f"{rule}: missing frame length byte", pos)
    b0 = buf[pos]
    if b0 < 252:
        return b0, 1
    if pos + 1 >= end:
        raise MalformedPacketError(f"{rule}: missing second frame length byte", pos + 1)
    return b0 + 4 * buf[pos + 1], 2


def parse_packet(data: bytes | bytearray | memoryview) -> OpusPacket:
    """Parse and validate one Opus packet (RFC 6716 section 3, rules R1-R7).

    Parameters
    ----------
    data : bytes-like
        The packet, at most :data:`MAX_PACKET_BYTES` long.

    Returns
    -------
    OpusPacket

    Raises
    ------
    MalformedPacketError
        For any violation, with the rule and byte offset in the message.
    """
    buf = _as_bytes(data)
    n = len(buf)
    if n < 1:
        raise MalformedPacketError("[R1] packet is empty", 0)
    if n > MAX_PACKET_BYTES:
        raise MalformedPacketError(f"packet of {n} bytes exceeds MAX_PACKET_BYTES={MAX_PACKET_BYTES}")
    toc = buf[0]
    config = toc >> 3
    spf = _config_info(config)[2]
    code = toc & 3
    vbr = False
    padding = b""
    padding_flag = False
    if code == 0:
        if n - 1 > MAX_FRAME_BYTES:
            raise MalformedPacketError(f"[R2] code 0 frame of {n - 1} bytes exceeds 1275", 1)
        sizes = [n - 1]
        pos = 1
    elif code == 1:
        if (n - 1) % 2:
            raise MalformedPacketError(f"[R3] code 1 packet has even total length {n}", 0)
        half = (n - 1) // 2
        if half > MAX_FRAME_BYTES:
            raise MalformedPacketError(f"[R2] code 1 frames of {half} bytes exceed 1275", 1)
        sizes = [half, half]
        pos = 1
    elif code == 2:
        vbr = True
        size0, used = _read_frame_length(buf, 1, n, "[R4] code 2")
        pos = 1 + used
        if size0 > n - pos:
            raise MalformedPacketError(
                f"[R4] code 2 first frame length {size0} exceeds the {n - pos} bytes left", 1
            )
        last = n - pos - size0
        if last > MAX_FRAME_BYTES:
            raise MalformedPacketError(f"[R2] code 2 second frame of {last} bytes exceeds 1275", pos + size0)
        sizes = [size0, last]
    else:
        if n < 2:
            raise MalformedPacketError("[R6] code 3 packet lacks the frame count byte", 1)
        fc = buf[1]
        vbr = bool(fc & 0x80)
        padding_flag = bool(fc & 0x40)
        m = fc & 0x3F
        if m == 0:
            raise MalformedPacketError("[R5] code 3 packet with zero frames", 1)
        if m * spf > MAX_PACKET_SAMPLES_48K:
            raise MalformedPacketError(
                f"[R5] code 3 packet of {m} x {spf / 48:g} ms frames exceeds 120 ms", 1
            )
        pos = 2
        pad_len = 0
        if padding_flag:
            while True:
                if pos >= n:
                    raise MalformedPacketError("[R6/R7] padding length runs past the end", pos)
                b = buf[pos]
                pos += 1
                # 255 means "254 bytes of padding and another length byte".
                pad_len += 254 if b == 255 else b
                if b != 255:
                    break
        end = n - pad_len  # frame data ends where the trailing padding starts
        if end < pos:
            raise MalformedPacketError(
                f"[R6/R7] padding of {pad_len} bytes exceeds the {n - pos} bytes after the header", pos
            )
        if vbr:
            sizes = []
            for _ in range(m - 1):
                size, used = _read_frame_length(buf, pos, end, "[R7] code 3 VBR")
                sizes.append(size)
                pos += used
            total = sum(sizes)
            if total > end - pos:
                raise MalformedPacketError(
                    f"[R7] code 3 VBR frame lengths sum to {total} but only {end - pos} bytes remain", pos
                )
            last = end - pos - total
            if last > MAX_FRAME_BYTES:
                raise MalformedPacketError(f"[R2] code 3 VBR last frame of {last} bytes exceeds 1275", pos)
            sizes.append(last)
        else:
            avail = end - pos
            if avail % m:
                raise MalformedPacketError(
                    f"[R6] code 3 CBR: {avail} bytes of frame data is not a multiple of {m} frames", pos
                )
            size = avail // m
            if size > MAX_FRAME_BYTES:
                raise MalformedPacketError(f"[R2] code 3 CBR frames of {size} bytes exceed 1275", pos)
            sizes = [size] * m
        padding = buf[end:]
    frames = []
    for s in sizes:
        frames.append(buf[pos : pos + s])
        pos += s
    return OpusPacket(
        toc=toc,
        config=config,
        stereo=bool(toc & 4),
        code=code,
        vbr=vbr,
        frame_sizes=tuple(sizes),
        frames=tuple(frames),
        padding=padding,
        padding_flag=padding_flag,
    )


# ----------------------------------------------------------------------------
# Packet building
# ----------------------------------------------------------------------------


def _frame_length_bytes(size: int) -> bytes:
    """RFC 6716 3.2.1 frame length coding (0..1275)."""
    if size < 252:
        return bytes((size,))
    first = 252 + (size & 3)
    return bytes((first, (size - first) >> 2))


def _padding_length_bytes(pad: int) -> bytes:
    """RFC 6716 3.2.5 padding length: each 255 stands for 254 and continues."""
    q, r = divmod(pad, 254)
    return b"\xff" * q + bytes((r,))


def build_packet(
    toc_config: int,
    stereo: bool,
    frames: Sequence[bytes],
    padding: bytes = b"",
    *,
    code: int | None = None,
    vbr: bool | None = None,
    padding_flag: bool = False,
) -> bytes:
    """Assemble an Opus packet from compressed frames.

    Parameters
    ----------
    toc_config : int
        TOC configuration number 0..31 (mode, bandwidth, frame duration).
    stereo : bool
        TOC stereo flag.
    frames : sequence of bytes
        1..48 frames, each at most 1275 bytes, at most 120 ms in total.
    padding : bytes
        Padding area contents (e.g. from :func:`build_extensions`); forces
        code 3.
    code : int, optional
        Force a framing code; by default the smallest one that fits is used
        (0: one frame, 1: two equal frames, 2: two frames, 3: otherwise or
        whenever there is padding).
    vbr : bool, optional
        For code 3 only: force the VBR flag (VBR can always be used; CBR only
        when all frames have equal size).  Default: CBR when sizes are equal.
    padding_flag : bool
        For code 3: set the padding flag even when ``padding`` is empty.

    Returns
    -------
    bytes
        The packet; it always parses back with :func:`parse_packet` to the
        same frames and padding.
    """
    if not isinstance(toc_config, int) or not 0 <= toc_config <= 31:
        raise FramingError(f"toc_config must be an int in 0..31, got {toc_config!r}")
    if isinstance(frames, _BYTES_LIKE) or not isinstance(frames, (list, tuple)):
        raise FramingError("frames must be a list or tuple of bytes objects")
    frames = [_as_bytes(f, "frame") for f in frames]
    padding = _as_bytes(padding, "padding")
    m = len(frames)
    if not 1 <= m <= MAX_FRAMES:
        raise FramingError(f"need 1..{MAX_FRAMES} frames, got {m}")
    for i, f in enumerate(frames):
        if len(f) > MAX_FRAME_BYTES:
            raise FramingError(f"frame {i} has {len(f)} bytes, more than {MAX_FRAME_BYTES}")
    spf = _config_info(toc_config)[2]
    if m * spf > MAX_PACKET_SAMPLES_48K:
        raise FramingError(f"{m} frames of {spf / 48:g} ms exceed 120 ms")
    if len(padding) > MAX_PADDING_BYTES:
        raise FramingError(f"padding of {len(padding)} bytes exceeds MAX_PADDING_BYTES={MAX_PADDING_BYTES}")
    sizes = [len(f) for f in frames]
    equal = all(s == sizes[0] for s in sizes)
    if code is None:
        if padding or padding_flag or m > 2 or vbr is not None:
            code = 3
        elif m == 1:
            code = 0
        else:
            code = 1 if equal else 2
    if code not in (0, 1, 2, 3):
        raise FramingError(f"code must be 0..3, got {code!r}")
    if code != 3 and (padding or padding_flag or vbr is not None):
        raise FramingError("padding and the vbr flag need code 3")
    toc = (toc_config << 3) | (0x04 if stereo else 0) | code
    if code == 0:
        if m != 1:
            raise FramingError(f"code 0 carries exactly one frame, got {m}")
        out = bytes((toc,)) + frames[0]
    elif code == 1:
        if m != 2 or not equal:
            raise FramingError("code 1 carries exactly two frames of equal size")
        out = bytes((toc,)) + frames[0] + frames[1]
    elif code == 2:
        if m != 2:
            raise FramingError(f"code 2 carries exactly two frames, got {m}")
        out = bytes((toc,)) + _frame_length_bytes(sizes[0]) + frames[0] + frames[1]
    else:
        use_vbr = (not equal) if vbr is None else bool(vbr)
        if not use_vbr and not equal:
            raise FramingError("CBR code 3 needs frames of equal size")
        has_pad = bool(padding) or padding_flag
        parts = [bytes((toc, (0x80 if use_vbr else 0) | (0x40 if has_pad else 0) | m))]
        if has_pad:
            parts.append(_padding_length_bytes(len(padding)))
        if use_vbr:
            parts.extend(_frame_length_bytes(s) for s in sizes[:-1])
        parts.extend(frames)
        parts.append(padding)
        out = b"".join(parts)
    if len(out) > MAX_PACKET_BYTES:
        raise FramingError(f"packet of {len(out)} bytes exceeds MAX_PACKET_BYTES={MAX_PACKET_BYTES}")
    return out


def with_padding(packet: bytes, padding: bytes) -> bytes:
    """Re-frame any valid packet as code 3 carrying ``padding``.

    The compressed frames are copied byte for byte, so a decoder produces
    exactly the same audio as for the original packet.  Existing padding is
    replaced.
    """
    p = parse_packet(packet)
    vbr = p.vbr if p.code == 3 else None
    return build_packet(p.config, p.stereo, list(p.frames), padding, code=3, vbr=vbr,
                        padding_flag=bool(padding))


def strip_padding(packet: bytes) -> bytes:
    """Return the packet with its padding (and any extensions) removed.

    The result uses the most compact framing code for its frames.
    """
    p = parse_packet(packet)
    return build_packet(p.config, p.stereo, list(p.frames))


# ----------------------------------------------------------------------------
# Padding extensions (draft-ietf-mlcodec-opus-extension, libopus 1.5 layout)
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Extension:
    """One padding extension.

    Attributes
    ----------
    id : int
        2..127 (0 and 1 are padding and frame separators).  IDs below 32 are
        "short" and carry at most one data byte.
    frame : int
        Index of the Opus frame in the packet the extension belongs to.
    data : bytes
        Payload.
    """

    id: int
    frame: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or not 2 <= self.id <= 127:
            raise FramingError(f"extension id must be an int in 2..127, got {self.id!r}")
        if not isinstance(self.frame, int) or not 0 <= self.frame < MAX_FRAMES:
            raise FramingError(f"extension frame must be an int in 0..{MAX_FRAMES - 1}, got {self.frame!r}")
        if not isinstance(self.data, bytes):
            if not isinstance(self.data, _BYTES_LIKE):
                raise FramingError(f"extension data must be bytes, got {type(self.data).__name__}")
            object.__setattr__(self, "data", bytes(self.data))
        if self.id < 32 and len(self.data) > 1:
            raise FramingError(f"short extension id {self.id} carries at most 1 byte, got {len(self.data)}")
        if len(self.data) > MAX_PADDING_BYTES:
            raise FramingError(f"extension data of {len(self.data)} bytes exceeds MAX_PADDING_BYTES")


def _check_nb_frames(nb_frames: int) -> None:
    if not isinstance(nb_frames, int) or not 1 <= nb_frames <= MAX_FRAMES:
        raise FramingError(f"nb_frames must be an int in 1..{MAX_FRAMES}, got {nb_frames!r}")


def build_extensions(extensions: Iterable[Extension], nb_frames: int) -> bytes:
    """Serialise extensions into a padding area.

    Extensions are emitted in frame order (stable within a frame), with frame
    separators between frames.  The last element, if long, uses L=0 (no
    length bytes) as libopus does.

    Parameters
    ----------
    extensions : iterable of Extension
    nb_frames : int
        Number of Opus frames in the packet that will carry the padding.

    Returns
    -------
    bytes
        At most :data:`MAX_PADDING_BYTES` bytes.
    """
    _check_nb_frames(nb_frames)
    exts = list(extensions)
    if len(exts) > MAX_EXTENSIONS:
        raise FramingError(f"{len(exts)} extensions exceed MAX_EXTENSIONS={MAX_EXTENSIONS}")
    for e in exts:
        if not isinstance(e, Extension):
            raise FramingError(f"expected Extension, got {type(e).__name__}")
        if e.frame >= nb_frames:
            raise FramingError(f"extension id {e.id} targets frame {e.frame} of a {nb_frames}-frame packet")
    exts.sort(key=lambda e: e.frame)  # stable: keeps the caller's order within a frame
    out = bytearray()
    cur = 0
    for i, e in enumerate(exts):
        if e.frame != cur:
            step = e.frame - cur
            out += b"\x02" if step == 1 else bytes((0x03, step))
            cur = e.frame
        last = i == len(exts) - 1
        if e.id < 32:
            out.append((e.id << 1) | len(e.data))
            out += e.data
        elif last:
            out.append(e.id << 1)
            out += e.data
        else:
            q, r = divmod(len(e.data), 255)
            out.append((e.id << 1) | 1)
            out += b"\xff" * q + bytes((r,))
            out += e.data
        if len(out) > MAX_PADDING_BYTES:
            raise FramingError(f"extensions need more than MAX_PADDING_BYTES={MAX_PADDING_BYTES} bytes")
    return bytes(out)


def parse_extensions(padding: bytes | bytearray | memoryview, nb_frames: int) -> list[Extension]:
    """Parse a padding area into its extensions (strict).

    Padding elements (ID 0) and frame separators (ID 1) are consumed, not
    returned.

    Parameters
    ----------
    padding : bytes-like
        The padding area of a code 3 packet (``OpusPacket.padding``).
    nb_frames : int
        Number of frames in that packet; a separator beyond the last frame is
        an error.

    Returns
    -------
    list of Extension
        In bitstream order (which is frame order).

    Raises
    ------
    MalformedPacketError
        Truncated lengths or data, frame index out of range, padding or
        extension count over the module limits.
    """
    _check_nb_frames(nb_frames)
    buf = _as_bytes(padding, "padding")
    n = len(buf)
    if n > MAX_PADDING_BYTES:
        raise MalformedPacketError(f"padding of {n} bytes exceeds MAX_PADDING_BYTES={MAX_PADDING_BYTES}")
    out: list[Extension] = []
    frame = 0
    pos = 0
    while pos < n:
        start = pos
        b = buf[pos]
        ext_id, flag = b >> 1, b & 1
        pos += 1
        if ext_id == 0:
            if flag:
                continue  # a single padding byte
            break  # L=0: everything after is padding
        if ext_id == 1:
            if flag:
                if pos >= n:
                    raise MalformedPacketError("frame separator lacks its increment byte", pos)
                frame += buf[pos]
                pos += 1
            else:
                frame += 1
            if frame >= nb_frames:
                raise MalformedPacketError(
                    f"frame separator moves to frame {frame} of a {nb_frames}-frame packet", start
                )
            continue
        if ext_id < 32:
            if flag:
                if pos >= n:
                    raise MalformedPacketError(f"short extension id {ext_id} lacks its data byte", pos)
                data = buf[pos : pos + 1]
                pos += 1
            else:
                data = b""
        elif not flag:
            data = buf[pos:]
            pos = n
        else:
            length = 0
            while True:
                if pos >= n:
                    raise MalformedPacketError(f"extension id {ext_id} length runs past the end", pos)
                lace = buf[pos]
                pos += 1
                length += lace
                if lace != 255:
                    break
            if length > n - pos:
                raise MalformedPacketError(
                    f"extension id {ext_id} claims {length} bytes but only {n - pos} remain", pos
                )
            data = buf[pos : pos + length]
            pos += length
        if len(out) >= MAX_EXTENSIONS:
            raise MalformedPacketError(f"more than MAX_EXTENSIONS={MAX_EXTENSIONS} extensions", start)
        out.append(Extension(ext_id, frame, data))
    return out


def packet_extensions(packet: bytes | bytearray | memoryview) -> list[Extension]:
    """All padding extensions of a packet ([] when it has no padding)."""
    p = parse_packet(packet)
    if not p.padding:
        return []
    return parse_extensions(p.padding, p.nb_frames)


# ----------------------------------------------------------------------------
# DRED carriage
# ----------------------------------------------------------------------------


def _is_ours(e: Extension) -> bool:
    return e.id == DRED_EXT_ID and e.data[:2] == DRED_HEADER


def attach_dred(packet: bytes, payload: bytes, frame: int = 0) -> bytes:
    """Return ``packet`` re-framed as code 3 with our DRED payload in its padding.

    Other extensions already present are kept; a previous payload of ours on
    the same frame is replaced.  The audio frames are unchanged.

    Parameters
    ----------
    packet : bytes
        A valid Opus packet.
    payload : bytes
        The DRED payload (without header); :data:`DRED_HEADER` is prepended.
    frame : int
        Frame index the payload is attached to (0 for single-frame packets).

    Raises
    ------
    MalformedPacketError
        If the packet or its existing padding is malformed.
    FramingError
        If the result would exceed the size limits.
    """
    payload = _as_bytes(payload, "payload")
    p = parse_packet(packet)
    if not isinstance(frame, int) or not 0 <= frame < p.nb_frames:
        raise FramingError(f"frame must be in 0..{p.nb_frames - 1}, got {frame!r}")
    exts = parse_extensions(p.padding, p.nb_frames) if p.padding else []
    exts = [e for e in exts if not (_is_ours(e) and e.frame == frame)]
    exts.append(Extension(DRED_EXT_ID, frame, DRED_HEADER + payload))
    padding = build_extensions(exts, p.nb_frames)
    vbr = p.vbr if p.code == 3 else None
    return build_packet(p.config, p.stereo, list(p.frames), padding, code=3, vbr=vbr)


def extract_dred(packet: bytes) -> bytes | None:
    """Our DRED payload from a packet's padding, or None if it carries none.

    libopus's own DRED (same extension ID, header ``'D'``) and unknown
    extensions are ignored; the first payload of ours in bitstream order is
    returned.  A malformed packet or padding raises MalformedPacketError.
    """
    for e in packet_extensions(packet):
        if _is_ours(e):
            return e.data[2:]
    return None
