"""Ogg Opus files (RFC 7845 on RFC 3533 Ogg): recording and reading.

A recording is one logical stream: a first page with only ``OpusHead``
(pre-skip = the encoder's look-ahead at 48 kHz), a second page with only
``OpusTags``, then audio pages.  Each page's granule position is the 48 kHz
sample count at the end of the last packet that completes on it, so players
trim the pre-skip and know the duration.  Our packets keep their DRED padding:
it is part of each Opus packet and legacy decoders ignore it.

A received stream has holes.  A lost slot is recorded as a one-byte TOC-only
packet (a zero-length frame, RFC 6716 section 3.2.1), which every decoder
treats as a lost frame and conceals, so the recording stays on the timeline.

:class:`OggRecorder` moves file writes off the real-time audio thread: the
audio thread only enqueues (never blocks; a full queue drops and counts).

The reader checks every page (capture pattern, version, CRC, lacing lengths
against the buffer) and bounds page, packet and file sizes; problems raise
:class:`OggError` (a ``ValueError``).
"""
from __future__ import annotations

import os
import queue
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from ..codec.framing import parse_packet

__all__ = [
    "OggError",
    "ogg_crc32",
    "OpusHead",
    "OggOpusWriter",
    "OggOpusStream",
    "read_ogg_opus",
    "OggRecorder",
    "MAX_OGG_FILE_BYTES",
]

MAX_OGG_FILE_BYTES = 1 << 30
_MAX_PACKET_BYTES = 1 << 16
_PAGE_HDR = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, nseg
_FLAG_CONTINUED, _FLAG_BOS, _FLAG_EOS = 0x01, 0x02, 0x04
_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


class OggError(ValueError):
    """An Ogg page or Opus header is malformed."""


def _rev32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def ogg_crc32(data: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, MSB first, init 0, no final xor).

    Computed with zlib's (reflected) CRC-32: bit-reversing every byte turns
    the MSB-first CRC into the reflected one, and xoring the CRC of as many
    zero bytes cancels zlib's initial value and final xor (CRCs are affine).
    """
    n = len(data)
    refl = zlib.crc32(bytes(data).translate(_BITREV)) ^ zlib.crc32(bytes(n))
    return _rev32(refl)


@dataclass(frozen=True)
class OpusHead:
    """The identification header (RFC 7845 section 5.1)."""

    channels: int = 1
    pre_skip: int = 312
    input_sample_rate: int = 16000
    output_gain: int = 0
    mapping_family: int = 0

    def to_bytes(self) -> bytes:
        if not 1 <= self.channels <= 2 or self.mapping_family != 0:
            raise OggError("only mapping family 0 (mono/stereo) is written")
        if not 0 <= self.pre_skip <= 0xFFFF or not 0 <= self.input_sample_rate <= 0xFFFFFFFF:
            raise OggError("pre_skip or input_sample_rate out of range")
        return struct.pack("<8sBBHIhB", b"OpusHead", 1, self.channels, self.pre_skip,
                           self.input_sample_rate, self.output_gain, 0)

    @classmethod
    def from_bytes(cls, data: bytes) -> "OpusHead":
        if len(data) < 19 or data[:8] != b"OpusHead":
            raise OggError("first packet is not an OpusHead")
        _, version, ch, pre, rate, gain, fam = struct.unpack_from("<8sBBHIhB", data, 0)
        if version >> 4 != 0:  # RFC 7845: major version 0 only (minor 1..15 accepted)
            raise OggError(f"unsupported OpusHead version {version}")
        if ch == 0:
            raise OggError("OpusHead channel count 0")
        if fam == 0 and ch > 2:
            raise OggError("mapping family 0 with more than 2 channels")
        return cls(ch, pre, rate, gain, fam)


def _opus_tags(vendor: str, comments: dict[str, str]) -> bytes:
    v = vendor.encode("utf-8")
    items = [f"{k}={val}".encode("utf-8") for k, val in comments.items()]
    out = [b"OpusTags", struct.pack("<I", len(v)), v, struct.pack("<I", len(items))]
    for it in items:
        out += [struct.pack("<I", len(it)), it]
    return b"".join(out)


class OggOpusWriter:
    """Write Opus packets into an Ogg Opus file.

    Parameters
    ----------
    target : path or binary file object
        Opened for writing (a path is created/truncated).
    pre_skip : int
        Samples at 48 kHz to drop at the start: the encoder's look-ahead x 3 at 16 kHz.
    input_sample_rate : int
        Informational rate recorded in ``OpusHead``.
    channels : int
        1 or 2.
    serial : int, optional
        Stream serial number (random by default).
    packets_per_page : int
        Packets per audio page (50 = one second of 20 ms packets): bounds
        what a crash can lose and the seek granularity.
    comments : dict, optional
        Extra ``OpusTags`` comments.
    """

    def __init__(self, target: str | os.PathLike | BinaryIO, pre_skip: int, input_sample_rate: int = 16000,
                 channels: int = 1, serial: int | None = None, packets_per_page: int = 50,
                 vendor: str = "edge-dred", comments: dict[str, str] | None = None) -> None:
        if not 1 <= packets_per_page <= 255:
            raise ValueError("packets_per_page must be 1..255")
        self.head = OpusHead(channels, pre_skip, input_sample_rate)
        head_bytes = self.head.to_bytes()
        if isinstance(target, (str, os.PathLike)):
            self._f: BinaryIO = open(target, "wb")
            self._own = True
        else:
            self._f = target
            self._own = False
        self.serial = (int.from_bytes(os.urandom(4), "little") if serial is None else int(serial)) & 0xFFFFFFFF
        self.packets_per_page = packets_per_page
        self._seq = 0
        self.granule = 0
        self.packets = 0
        self.lost_packets = 0
        self._page: list[bytes] = []
        self._last_toc: int | None = None
        self.closed = False
        self._write_page([head_bytes], 0, _FLAG_BOS)
        self._write_page([_opus_tags(vendor, comments or {})], 0, 0)

    def _write_page(self, packets: list[bytes], granule: int, flags: int) -> None:
        lacing = bytearray()
        for p in packets:
            n = len(p)
            lacing += b"\xff" * (n // 255) + bytes([n % 255])
        if len(lacing) > 255:
            raise OggError("page would need more than 255 lacing values")
        body = b"".join(packets)
        hdr = _PAGE_HDR.pack(b"OggS", 0, flags, granule, self.serial, self._seq, 0, len(lacing))
        page = bytearray(hdr + bytes(lacing) + body)
        struct.pack_into("<I", page, 22, ogg_crc32(bytes(page)))
        self._f.write(page)
        self._f.flush()
        self._seq += 1

    def _lacing_after(self, extra: int) -> int:
        return sum(len(p) // 255 + 1 for p in self._page) + extra // 255 + 1

    def write_packet(self, packet: bytes) -> None:
        """Append one Opus packet (its duration comes from its TOC)."""
        if self.closed:
            raise ValueError("writer is closed")
        p = parse_packet(packet)  # validates; MalformedPacketError is a ValueError
        if len(packet) > _MAX_PACKET_BYTES:
            raise OggError("packet too large for this writer")
        self._append(bytes(packet), p.samples(48000))
        self._last_toc = packet[0]

    def write_lost(self, samples_48k: int = 960) -> None:
        """Record a lost packet as a TOC-only packet of the stream's last configuration.

        Before any packet was written nothing is recorded (there is no TOC to copy).
        """
        if self._last_toc is None:
            return
        toc = self._last_toc & 0xFC  # code 0: one frame, here of length 0
        frame_48k = parse_packet(bytes([toc])).samples(48000)
        if frame_48k != samples_48k:
            raise ValueError(f"lost slot of {samples_48k} samples but the stream's frames are {frame_48k}")
        self._append(bytes([toc]), frame_48k)
        self.lost_packets += 1

    def _append(self, data: bytes, samples_48k: int) -> None:
        if self._page and (len(self._page) >= self.packets_per_page or self._lacing_after(len(data)) > 255):
            self._write_page(self._page, self.granule, 0)
            self._page = []
        self._page.append(data)
        self.granule += samples_48k
        self.packets += 1

    def close(self) -> None:
        """Write the last page with the end-of-stream flag and close an owned file."""
        if self.closed:
            return
        self._write_page(self._page, self.granule, _FLAG_EOS)
        self._page = []
        self.closed = True
        if self._own:
            self._f.close()

    def __enter__(self) -> "OggOpusWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class OggOpusStream:
    """A parsed Ogg Opus file.

    Attributes
    ----------
    head : OpusHead
    vendor : str
    comments : list of str
    packets : list of bytes
        Audio packets in order.
    page_granules : list of int
        Granule position of every audio page (-1 when no packet ends on it).
    final_granule : int
        Granule of the last page.
    pages : int
        Number of pages read (all of them, headers included).
    """

    head: OpusHead
    vendor: str
    comments: list[str]
    packets: list[bytes] = field(default_factory=list)
    page_granules: list[int] = field(default_factory=list)
    final_granule: int = 0
    pages: int = 0
    eos: bool = False

    @property
    def duration_48k(self) -> int:
        """Playable samples at 48 kHz (final granule minus pre-skip)."""
        return max(0, self.final_granule - self.head.pre_skip)


def _parse_tags(data: bytes) -> tuple[str, list[str]]:
    if len(data) < 16 or data[:8] != b"OpusTags":
        raise OggError("second packet is not OpusTags")
    pos = 8

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise OggError("OpusTags field runs past the end")
        out = data[pos:pos + n]
        pos += n
        return out

    vlen = struct.unpack("<I", take(4))[0]
    vendor = take(vlen).decode("utf-8", "replace")
    count = struct.unpack("<I", take(4))[0]
    if count > (len(data) - pos) // 4:
        raise OggError(f"OpusTags claims {count} comments in {len(data) - pos} bytes")
    comments = []
    for _ in range(count):
        clen = struct.unpack("<I", take(4))[0]
        comments.append(take(clen).decode("utf-8", "replace"))
    return vendor, comments


def read_ogg_opus(source: str | os.PathLike | bytes, max_bytes: int = MAX_OGG_FILE_BYTES) -> OggOpusStream:
    """Read an Ogg Opus file (the first logical stream; others are skipped).

    Raises
    ------
    OggError
        On a bad capture pattern, version, CRC, truncated page, missing
        headers, or a file/packet larger than the limits.
    """
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        size = os.path.getsize(source)
        if size > max_bytes:
            raise OggError(f"file of {size} bytes exceeds the limit of {max_bytes}")
        with open(source, "rb") as f:
            data = f.read()
    if len(data) > max_bytes:
        raise OggError(f"data of {len(data)} bytes exceeds the limit of {max_bytes}")
    pos = 0
    serial: int | None = None
    expected_seq = 0
    partial = b""
    packets: list[bytes] = []
    granules: list[int] = []
    n_pages = 0
    eos = False
    final_granule = 0
    while pos < len(data):
        if pos + _PAGE_HDR.size > len(data):
            raise OggError(f"truncated page header at byte {pos}")
        cap, ver, flags, granule, ser, seq, crc, nseg = _PAGE_HDR.unpack_from(data, pos)
        if cap != b"OggS":
            raise OggError(f"bad capture pattern at byte {pos}")
        if ver != 0:
            raise OggError(f"unsupported Ogg version {ver} at byte {pos}")
        lace_start = pos + _PAGE_HDR.size
        if lace_start + nseg > len(data):
            raise OggError(f"truncated lacing table at byte {pos}")
        lacing = data[lace_start:lace_start + nseg]
        body_start = lace_start + nseg
        body_len = sum(lacing)
        end = body_start + body_len
        if end > len(data):
            raise OggError(f"truncated page body at byte {pos}")
        page = bytearray(data[pos:end])
        page[22:26] = b"\0\0\0\0"
        if ogg_crc32(bytes(page)) != crc:
            raise OggError(f"CRC mismatch in page at byte {pos}")
        page_start = pos
        pos = end
        if serial is None:
            if not flags & _FLAG_BOS:
                raise OggError("first page lacks the beginning-of-stream flag")
            serial = ser
        if ser != serial:
            continue  # another multiplexed logical stream
        if seq != expected_seq:
            raise OggError(f"page sequence {seq} at byte {page_start}, expected {expected_seq}")
        expected_seq += 1
        n_pages += 1
        if not flags & _FLAG_CONTINUED:
            partial = b""
        b = body_start
        completed = 0
        for lv in lacing:
            partial += data[b:b + lv]
            b += lv
            if len(partial) > _MAX_PACKET_BYTES:
                raise OggError(f"packet larger than {_MAX_PACKET_BYTES} bytes")
            if lv < 255:
                packets.append(partial)
                partial = b""
                completed += 1
        if n_pages > 2:
            granules.append(granule)
        if completed or flags & _FLAG_EOS:
            final_granule = granule if granule >= 0 else final_granule
        if flags & _FLAG_EOS:
            eos = True
            break
    if len(packets) < 2:
        raise OggError("stream lacks OpusHead/OpusTags")
    head = OpusHead.from_bytes(packets[0])
    vendor, comments = _parse_tags(packets[1])
    return OggOpusStream(head, vendor, comments, packets[2:], granules, final_granule, n_pages, eos)


class OggRecorder:
    """Record packets from the real-time thread without blocking it.

    ``packet``/``lost`` only enqueue (``put_nowait`` on a bounded queue); a
    writer thread does the file I/O.  When the queue is full the item is
    dropped and counted in :attr:`dropped` (the audio thread never waits).

    Parameters
    ----------
    path : path
        The ``.opus`` file to write.
    pre_skip, input_sample_rate : int
        See :class:`OggOpusWriter`.
    max_queue : int
        Items the queue holds (default 500 = 10 s of 20 ms packets).
    """

    def __init__(self, path: str | os.PathLike, pre_skip: int, input_sample_rate: int = 16000,
                 max_queue: int = 500, comments: dict[str, str] | None = None) -> None:
        self.path = os.fspath(path)
        self._writer = OggOpusWriter(self.path, pre_skip, input_sample_rate, comments=comments)
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="ogg-recorder", daemon=True)
        self._thread.start()

    def packet(self, data: bytes) -> None:
        """Record a packet (never blocks)."""
        self._put(data)

    def lost(self) -> None:
        """Record a lost 20 ms slot (never blocks)."""
        self._put(None)

    def _put(self, item: bytes | None) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            try:
                if item is None:
                    self._writer.write_lost()
                else:
                    self._writer.write_packet(item)
            except (ValueError, OSError) as e:  # keep recording; report at the end
                if len(self.errors) < 10:
                    self.errors.append(str(e))

    def close(self) -> dict[str, int | str]:
        """Finish the file; returns a summary (packets, lost slots, dropped, granule)."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join()
        self._writer.close()
        return {"path": self.path, "packets": self._writer.packets, "lost_slots": self._writer.lost_packets,
                "queue_dropped": self.dropped, "granule": self._writer.granule, "errors": len(self.errors)}


_STOP = object()
