"""Ogg Opus recording (RFC 7845): pages, CRC, granules, holes, hostile input."""
import io
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_dred.codec.framing import attach_dred
from edge_dred.codec.opus import OpusDecoder
from edge_dred.sender import Sender
from edge_dred.transport.ogg import (
    OggError,
    OggOpusWriter,
    OggRecorder,
    OpusHead,
    ogg_crc32,
    read_ogg_opus,
)

from conftest import voiced


def _crc_reference(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


@pytest.mark.parametrize("data", [b"", b"\x00", b"OggS", bytes(range(256)) * 3])
def test_crc_matches_bitwise_reference(data):
    assert ogg_crc32(data) == _crc_reference(data)


@pytest.fixture(scope="module")
def packets():
    s = Sender(24000, lbrr=True)
    pk = s.encode_stream(voiced(1.5))
    return [attach_dred(p, bytes(range(30))) if i % 2 else p for i, p in enumerate(pk)], s.lookahead


def _pages(data: bytes):
    pos, out = 0, []
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS"
        flags, granule, serial, seq, crc, nseg = struct.unpack_from("<BqIIIB", data, pos + 5)
        lacing = data[pos + 27:pos + 27 + nseg]
        end = pos + 27 + nseg + sum(lacing)
        out.append((flags, granule, seq, nseg))
        pos = end
    return out


def test_write_read_roundtrip_with_holes(packets, tmp_path):
    pk, look = packets
    path = tmp_path / "x.opus"
    with OggOpusWriter(path, pre_skip=look * 3, packets_per_page=20, serial=77) as w:
        for i, p in enumerate(pk):
            if i in (10, 11, 30):
                w.write_lost()
            else:
                w.write_packet(p)
    s = read_ogg_opus(path)
    assert s.head == OpusHead(1, look * 3, 16000, 0, 0)
    assert s.vendor == "edge-dred" and s.eos
    assert len(s.packets) == len(pk)
    assert s.final_granule == 960 * len(pk)
    assert s.duration_48k == 960 * len(pk) - look * 3
    for i, p in enumerate(pk):
        if i in (10, 11, 30):
            assert len(s.packets[i]) == 1 and s.packets[i][0] == p[0] & 0xFC  # TOC-only: a lost frame
        else:
            assert s.packets[i] == p
    pages = _pages(path.read_bytes())
    assert pages[0][0] == 0x02 and pages[0][1] == 0  # BOS, OpusHead alone
    assert pages[1][1] == 0  # OpusTags
    assert pages[-1][0] & 0x04  # EOS
    assert [p[2] for p in pages] == list(range(len(pages)))
    # granule of each audio page = samples at the end of its last packet (20 packets per page)
    assert [p[1] for p in pages[2:-1]] == [960 * 20 * (k + 1) for k in range(len(pages) - 3)]
    # Decoding the recording equals decoding the stream with the same holes.
    d1, d2 = OpusDecoder(16000), OpusDecoder(16000)
    a = np.concatenate([d1.decode(p) if len(p) > 1 else d1.decode(None, 320) for p in s.packets])
    b = np.concatenate([d2.decode(None if i in (10, 11, 30) else p, 320) for i, p in enumerate(pk)])
    assert np.array_equal(a, b)


def test_lost_before_first_packet_is_not_recorded(tmp_path):
    buf = io.BytesIO()
    w = OggOpusWriter(buf, pre_skip=312)
    w.write_lost()
    w.close()
    s = read_ogg_opus(buf.getvalue())
    assert s.packets == [] and s.final_granule == 0


def test_recorder_writes_from_another_thread(packets, tmp_path):
    pk, look = packets
    rec = OggRecorder(tmp_path / "r.opus", look * 3)
    for p in pk[:20]:
        rec.packet(p)
    rec.lost()
    summary = rec.close()
    assert summary["packets"] == 21 and summary["lost_slots"] == 1 and summary["queue_dropped"] == 0
    assert len(read_ogg_opus(tmp_path / "r.opus").packets) == 21


def test_recorder_never_blocks_when_full(packets, tmp_path):
    pk, look = packets
    rec = OggRecorder(tmp_path / "r.opus", look * 3, max_queue=1)
    for _ in range(3000):
        rec.packet(pk[0])
    summary = rec.close()
    assert summary["packets"] + summary["queue_dropped"] == 3000


def test_writer_rejects_invalid_packets():
    w = OggOpusWriter(io.BytesIO(), pre_skip=312)
    with pytest.raises(ValueError):
        w.write_packet(b"")
    with pytest.raises(ValueError):
        w.write_packet(b"\x03\x00")  # code 3 with a frame count of 0
    w.close()
    with pytest.raises(ValueError):
        w.write_packet(b"\x08\x00")


@pytest.fixture(scope="module")
def good_file(packets):
    pk, look = packets
    buf = io.BytesIO()
    with OggOpusWriter(buf, pre_skip=look * 3, packets_per_page=10) as w:
        for p in pk[:30]:
            w.write_packet(p)
    return buf.getvalue()


def test_reader_detects_corruption_and_truncation(good_file):
    bad = bytearray(good_file)
    bad[200] ^= 0x40
    with pytest.raises(OggError, match="CRC"):
        read_ogg_opus(bytes(bad))
    with pytest.raises(OggError, match="truncated"):
        read_ogg_opus(good_file[:-7])
    with pytest.raises(OggError, match="capture"):
        read_ogg_opus(b"RIFF" + good_file[4:])
    with pytest.raises(OggError, match="limit"):
        read_ogg_opus(good_file, max_bytes=100)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_reader_never_crashes_on_mutations(good_file, data):
    buf = bytearray(good_file)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(buf)))
    try:
        read_ogg_opus(bytes(buf[:cut]))
    except OggError:
        pass
