"""RFC 6716 packet framing, padding extensions and DRED carriage."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_dred.codec import framing as fr
from edge_dred.codec.framing import (
    DRED_EXT_ID,
    Extension,
    FramingError,
    MalformedPacketError,
    attach_dred,
    build_extensions,
    build_packet,
    extract_dred,
    parse_extensions,
    parse_packet,
    strip_padding,
    with_padding,
)

_opus = pytest.importorskip("edge_dred.codec._opus")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def libopus_parse(packet: bytes):
    """libopus's opus_packet_parse as (sizes, offsets), or None when invalid."""
    try:
        _toc, sizes, offsets, _off = _opus.packet_parse(packet)
    except _opus.OpusError:
        return None
    return sizes, offsets


def frame_offsets(packet: bytes, p: fr.OpusPacket) -> list[int]:
    # Frames are laid out back to back and end where the padding starts.
    end = len(packet) - len(p.padding)
    offs, pos = [], end - sum(p.frame_sizes)
    for s in p.frame_sizes:
        offs.append(pos)
        pos += s
    return offs


# --------------------------------------------------------------------------
# TOC
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config,mode,bw,ms",
    [
        (0, "silk", "narrowband", 10),
        (5, "silk", "mediumband", 20),
        (9, "silk", "wideband", 20),
        (11, "silk", "wideband", 60),
        (12, "hybrid", "superwideband", 10),
        (15, "hybrid", "fullband", 20),
        (16, "celt", "narrowband", 2.5),
        (21, "celt", "wideband", 5),
        (26, "celt", "superwideband", 10),
        (31, "celt", "fullband", 20),
    ],
)
def test_toc_table(config, mode, bw, ms):
    info = fr.toc_info((config << 3) | 0x04 | 2)
    assert info["config"] == config and info["mode"] == mode and info["bandwidth"] == bw
    assert info["frame_ms"] == ms and info["stereo"] is True and info["code"] == 2


# --------------------------------------------------------------------------
# Hand-made packets, one per RFC 6716 section 3.4 rule
# --------------------------------------------------------------------------

TOC_WB20 = 9 << 3  # SILK WB 20 ms


def test_code0_and_r2():
    p = parse_packet(bytes([TOC_WB20]) + b"abc")
    assert p.code == 0 and p.frames == (b"abc",) and p.padding == b"" and p.mode == "silk"
    assert parse_packet(bytes([TOC_WB20])).frame_sizes == (0,)  # DTX-style empty frame
    assert len(parse_packet(bytes([TOC_WB20]) + b"x" * 1275).frames[0]) == 1275
    with pytest.raises(MalformedPacketError, match=r"\[R2\]"):
        parse_packet(bytes([TOC_WB20]) + b"x" * 1276)


def test_r1_empty():
    with pytest.raises(MalformedPacketError, match=r"\[R1\]"):
        parse_packet(b"")


def test_code1_and_r3():
    p = parse_packet(bytes([TOC_WB20 | 1]) + b"abcd")
    assert p.frames == (b"ab", b"cd")
    with pytest.raises(MalformedPacketError, match=r"\[R3\]"):
        parse_packet(bytes([TOC_WB20 | 1]) + b"abc")
    with pytest.raises(MalformedPacketError, match=r"\[R2\]"):
        parse_packet(bytes([TOC_WB20 | 1]) + b"x" * 2552)


def test_code2_and_r4():
    p = parse_packet(bytes([TOC_WB20 | 2, 2]) + b"abXYZ")
    assert p.frames == (b"ab", b"XYZ") and p.vbr
    # Two-byte length: 252 + 4*1 = 256.
    p = parse_packet(bytes([TOC_WB20 | 2, 252, 1]) + b"a" * 256 + b"b" * 3)
    assert p.frame_sizes == (256, 3)
    with pytest.raises(MalformedPacketError, match=r"\[R4\].*offset 1"):
        parse_packet(bytes([TOC_WB20 | 2]))
    with pytest.raises(MalformedPacketError, match=r"\[R4\].*second"):
        parse_packet(bytes([TOC_WB20 | 2, 253]))
    with pytest.raises(MalformedPacketError, match=r"\[R4\]"):
        parse_packet(bytes([TOC_WB20 | 2, 5]) + b"abcd")
    with pytest.raises(MalformedPacketError, match=r"\[R2\]"):
        parse_packet(bytes([TOC_WB20 | 2, 0]) + b"x" * 1276)


def test_code3_r5():
    with pytest.raises(MalformedPacketError, match=r"\[R6\]"):
        parse_packet(bytes([TOC_WB20 | 3]))
    with pytest.raises(MalformedPacketError, match=r"\[R5\].*zero"):
        parse_packet(bytes([TOC_WB20 | 3, 0]))
    # 60 ms SILK frames: two are 120 ms (fine), three are 180 ms.
    silk60 = (11 << 3) | 3
    assert parse_packet(bytes([silk60, 2]) + b"ab").frames == (b"a", b"b")
    with pytest.raises(MalformedPacketError, match=r"\[R5\].*120 ms"):
        parse_packet(bytes([silk60, 3]) + b"abc")
    celt25 = (16 << 3) | 3
    assert parse_packet(bytes([celt25, 48]) + b"z" * 48).nb_frames == 48
    with pytest.raises(MalformedPacketError, match=r"\[R5\]"):
        parse_packet(bytes([celt25, 49]) + b"z" * 49)


def test_code3_cbr_r6_and_padding_chain():
    # CBR, 2 frames, padding 511 = 254 + 254 + 3.
    pkt = bytes([TOC_WB20 | 3, 0x40 | 2, 255, 255, 3]) + b"abcd" + bytes(511)
    p = parse_packet(pkt)
    assert p.frames == (b"ab", b"cd") and len(p.padding) == 511 and not p.vbr and p.padding_flag
    # Padding flag with a zero length byte: no padding.
    assert parse_packet(bytes([TOC_WB20 | 3, 0x40 | 1, 0]) + b"q").padding == b""
    with pytest.raises(MalformedPacketError, match=r"\[R6\].*multiple"):
        parse_packet(bytes([TOC_WB20 | 3, 2]) + b"abc")
    with pytest.raises(MalformedPacketError, match=r"padding length runs past"):
        parse_packet(bytes([TOC_WB20 | 3, 0x40 | 1, 255]))
    with pytest.raises(MalformedPacketError, match=r"padding of 10 bytes"):
        parse_packet(bytes([TOC_WB20 | 3, 0x40 | 1, 10]) + b"abc")
    with pytest.raises(MalformedPacketError, match=r"\[R2\]"):
        parse_packet(bytes([TOC_WB20 | 3, 1]) + b"x" * 1276)


def test_code3_vbr_r7():
    pkt = bytes([TOC_WB20 | 3, 0x80 | 3, 1, 2]) + b"a" + b"bc" + b"def"
    p = parse_packet(pkt)
    assert p.frames == (b"a", b"bc", b"def") and p.vbr
    with pytest.raises(MalformedPacketError, match=r"\[R7\].*sum"):
        parse_packet(bytes([TOC_WB20 | 3, 0x80 | 3, 3, 3]) + b"abcde")
    with pytest.raises(MalformedPacketError, match=r"\[R7\].*missing"):
        parse_packet(bytes([TOC_WB20 | 3, 0x80 | 3, 1]))
    with pytest.raises(MalformedPacketError, match=r"\[R2\]"):
        parse_packet(bytes([TOC_WB20 | 3, 0x80 | 2, 0]) + b"x" * 1276)
    # A frame length byte may not reach into the trailing padding.
    with pytest.raises(MalformedPacketError):
        parse_packet(bytes([TOC_WB20 | 3, 0xC0 | 2, 1, 5]))


def test_size_limit_and_types():
    with pytest.raises(MalformedPacketError, match="MAX_PACKET_BYTES"):
        parse_packet(bytes([TOC_WB20 | 3, 1]) + bytes(fr.MAX_PACKET_BYTES))
    with pytest.raises(MalformedPacketError, match="bytes-like"):
        parse_packet("not bytes")  # type: ignore[arg-type]
    assert parse_packet(memoryview(bytearray([TOC_WB20]) + b"ab")).frames == (b"ab",)


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------


def test_build_packet_picks_smallest_code():
    assert build_packet(9, False, [b"abc"]) == bytes([TOC_WB20]) + b"abc"
    assert build_packet(9, False, [b"ab", b"cd"])[0] & 3 == 1
    assert build_packet(9, True, [b"ab", b"cde"]) == bytes([TOC_WB20 | 4 | 2, 2]) + b"abcde"
    assert build_packet(9, False, [b"a", b"b", b"c"]) == bytes([TOC_WB20 | 3, 3]) + b"abc"
    pkt = build_packet(9, False, [b"x" * 300], b"\x00" * 300)
    # 300 bytes of padding = 255 (254) + 46.
    assert pkt[:4] == bytes([TOC_WB20 | 3, 0x40 | 1, 255, 46]) and len(pkt) == 4 + 600


def test_build_packet_errors():
    with pytest.raises(FramingError):
        build_packet(32, False, [b"a"])
    with pytest.raises(FramingError):
        build_packet(9, False, [])
    with pytest.raises(FramingError):
        build_packet(9, False, [b"x" * 1276])
    with pytest.raises(FramingError, match="120 ms"):
        build_packet(11, False, [b"a"] * 3)
    with pytest.raises(FramingError):
        build_packet(9, False, [b"a", b"bb"], code=1)
    with pytest.raises(FramingError):
        build_packet(9, False, [b"a"], b"pad", code=0)
    with pytest.raises(FramingError):
        build_packet(9, False, [b"a", b"bb"], vbr=False)
    with pytest.raises(FramingError, match="MAX_PADDING_BYTES"):
        build_packet(9, False, [b"a"], bytes(fr.MAX_PADDING_BYTES + 1))
    with pytest.raises(FramingError, match="MAX_PACKET_BYTES"):
        build_packet(19, False, [b"x" * 1275] * 4)
    with pytest.raises(FramingError):
        build_packet(9, False, b"abc")  # type: ignore[arg-type]


@st.composite
def frame_lists(draw):
    config = draw(st.integers(0, 31))
    spf = fr.toc_info(config << 3)["frame_samples_48k"]
    max_frames = min(fr.MAX_FRAMES, fr.MAX_PACKET_SAMPLES_48K // spf)
    m = draw(st.integers(1, max_frames))
    if draw(st.booleans()):
        size = draw(st.integers(0, min(fr.MAX_FRAME_BYTES, 2000 // m)))
        frames = [draw(st.binary(min_size=size, max_size=size)) for _ in range(m)]
    else:
        # Sizes around the 1-/2-byte length boundary (251/252) are the tricky ones.
        sizes = draw(st.lists(st.sampled_from([0, 1, 7, 251, 252, 255, 256, 300]), min_size=m, max_size=m))
        while sum(sizes) > 2500:
            sizes[sizes.index(max(sizes))] //= 2
        frames = [draw(st.binary(min_size=s, max_size=s)) for s in sizes]
    return config, draw(st.booleans()), frames


@SETTINGS
@given(frame_lists(), st.binary(max_size=600), st.booleans())
def test_build_parse_roundtrip_and_libopus_agree(fl, padding, force3):
    config, stereo, frames = fl
    pkt = build_packet(config, stereo, frames, padding, code=3 if force3 else None)
    p = parse_packet(pkt)
    assert p.config == config and p.stereo == stereo
    assert list(p.frames) == frames and p.padding == padding
    ref = libopus_parse(pkt)
    assert ref is not None
    assert ref[0] == list(p.frame_sizes) and ref[1] == frame_offsets(pkt, p)
    # Re-framing keeps the frames byte-identical.
    padded = with_padding(pkt, b"\x07pad")
    q = parse_packet(padded)
    assert q.code == 3 and q.frames == p.frames and q.padding == b"\x07pad"
    stripped = strip_padding(padded)
    assert parse_packet(stripped).frames == p.frames and parse_packet(stripped).padding == b""
    assert len(stripped) <= len(pkt)


@SETTINGS
@given(st.binary(min_size=0, max_size=80))
def test_random_bytes_parse_or_malformed_and_match_libopus(data):
    try:
        p = parse_packet(data)
    except MalformedPacketError:
        assert libopus_parse(data) is None if data else True
        return
    ref = libopus_parse(data)
    assert ref is not None, "we accepted a packet libopus rejects"
    assert ref[0] == list(p.frame_sizes) and ref[1] == frame_offsets(data, p)
    assert sum(p.frame_sizes) + len(p.padding) <= len(data)


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40))
def test_code3_headers_parse_or_malformed(toc, count, rest):
    # Force code 3 with arbitrary count/flags: the branch with the most rules.
    data = bytes([toc | 3, count]) + rest
    try:
        p = parse_packet(data)
    except MalformedPacketError:
        assert libopus_parse(data) is None
        return
    assert libopus_parse(data) is not None
    assert 1 <= p.nb_frames <= 48


@pytest.mark.slow
@SETTINGS
@given(frame_lists(), st.binary(max_size=300))
def test_truncations_never_crash(fl, padding):
    config, stereo, frames = fl
    pkt = build_packet(config, stereo, frames, padding)
    for cut in range(len(pkt)):
        data = pkt[:cut]
        try:
            parse_packet(data)
        except MalformedPacketError:
            assert not data or libopus_parse(data) is None
        else:
            assert libopus_parse(data) is not None


# --------------------------------------------------------------------------
# Extensions
# --------------------------------------------------------------------------


def test_extension_layout_by_hand():
    exts = [Extension(5, 0, b"\x11"), Extension(3, 0), Extension(40, 1, b"ab"), Extension(126, 3, b"xyz")]
    pad = build_extensions(exts, 4)
    expected = bytes([5 << 1 | 1, 0x11, 3 << 1, 0x02, 40 << 1 | 1, 2]) + b"ab" + bytes([0x03, 2, 126 << 1]) + b"xyz"
    assert pad == expected
    assert parse_extensions(pad, 4) == exts
    # Long extension of 255 bytes not in last place: lacing 255, 0.
    pad = build_extensions([Extension(33, 0, b"q" * 255), Extension(4, 0)], 1)
    assert pad[:3] == bytes([33 << 1 | 1, 255, 0]) and parse_extensions(pad, 1)[0].data == b"q" * 255
    # Padding elements: 0x01 = one padding byte, 0x00 = rest is padding.
    assert parse_extensions(bytes([1, 1, 6, 0, 9, 9, 9]), 1) == [Extension(3, 0)]
    assert parse_extensions(bytes(50), 1) == []
    # Separator with increment 0 is a no-op.
    assert parse_extensions(bytes([3, 0, 6]), 1) == [Extension(3, 0)]


@pytest.mark.parametrize(
    "pad,nb_frames,msg",
    [
        (bytes([0x02]), 1, "frame separator moves to frame 1"),
        (bytes([0x03]), 2, "increment byte"),
        (bytes([0x03, 5]), 3, "frame 5"),
        (bytes([5 << 1 | 1]), 1, "data byte"),
        (bytes([40 << 1 | 1]), 1, "length runs past"),
        (bytes([40 << 1 | 1, 255, 255]), 1, "length runs past"),
        (bytes([40 << 1 | 1, 9]) + b"abc", 1, "claims 9 bytes"),
    ],
)
def test_malformed_extensions(pad, nb_frames, msg):
    with pytest.raises(MalformedPacketError, match=msg):
        parse_extensions(pad, nb_frames)


def test_extension_limits_and_args():
    with pytest.raises(MalformedPacketError, match="MAX_EXTENSIONS"):
        parse_extensions(bytes([6]) * (fr.MAX_EXTENSIONS + 1), 1)
    with pytest.raises(MalformedPacketError, match="MAX_PADDING_BYTES"):
        parse_extensions(bytes(fr.MAX_PADDING_BYTES + 1), 1)
    with pytest.raises(FramingError):
        Extension(1, 0)
    with pytest.raises(FramingError):
        Extension(128, 0)
    with pytest.raises(FramingError):
        Extension(5, 0, b"ab")
    with pytest.raises(FramingError):
        build_extensions([Extension(5, 2)], 2)
    with pytest.raises(FramingError):
        build_extensions([Extension(5, 0)] * (fr.MAX_EXTENSIONS + 1), 1)
    with pytest.raises(FramingError):
        parse_extensions(b"", 0)


@st.composite
def extension_lists(draw):
    nb_frames = draw(st.integers(1, 48))
    exts = []
    for _ in range(draw(st.integers(0, 12))):
        ext_id = draw(st.integers(2, 127))
        frame = draw(st.integers(0, nb_frames - 1))
        if ext_id < 32:
            data = draw(st.binary(max_size=1))
        else:
            data = draw(st.one_of(st.binary(max_size=20), st.binary(min_size=250, max_size=520)))
        exts.append(Extension(ext_id, frame, data))
    return exts, nb_frames


@SETTINGS
@given(extension_lists())
def test_extensions_roundtrip(el):
    exts, nb_frames = el
    total = sum(len(e.data) for e in exts)
    try:
        pad = build_extensions(exts, nb_frames)
    except FramingError:
        assert total > fr.MAX_PADDING_BYTES - 3 * len(exts) - 2 * nb_frames
        return
    assert parse_extensions(pad, nb_frames) == sorted(exts, key=lambda e: e.frame)


@SETTINGS
@given(st.binary(max_size=300), st.integers(1, 48))
def test_random_padding_parses_or_malformed(pad, nb_frames):
    try:
        exts = parse_extensions(pad, nb_frames)
    except MalformedPacketError:
        return
    assert all(0 <= e.frame < nb_frames for e in exts)
    assert sum(len(e.data) for e in exts) <= len(pad)
    # Canonical re-serialisation parses back to the same list.
    assert parse_extensions(build_extensions(exts, nb_frames), nb_frames) == exts


# --------------------------------------------------------------------------
# DRED carriage
# --------------------------------------------------------------------------


def test_dred_attach_extract():
    pkt = bytes([TOC_WB20]) + b"\x8a" * 40
    assert extract_dred(pkt) is None
    payload = bytes(range(200))
    out = attach_dred(pkt, payload)
    assert extract_dred(out) == payload
    assert parse_packet(out).frames == parse_packet(pkt).frames
    # Replacing keeps exactly one payload of ours.
    out2 = attach_dred(out, b"new")
    assert extract_dred(out2) == b"new"
    assert sum(e.id == DRED_EXT_ID for e in fr.packet_extensions(out2)) == 1
    assert strip_padding(out2) == pkt


def test_dred_keeps_other_extensions_and_ignores_libopus_dred():
    pkt = bytes([TOC_WB20 | 1]) + b"ab" + b"cd"
    libopus_dred = Extension(DRED_EXT_ID, 0, b"D\x0a" + b"\x55" * 30)
    other = Extension(7, 1, b"\x01")
    long_other = Extension(90, 0, b"hello")
    padded = with_padding(pkt, build_extensions([libopus_dred, other, long_other], 2))
    assert extract_dred(padded) is None
    out = attach_dred(padded, b"ours")
    assert extract_dred(out) == b"ours"
    exts = fr.packet_extensions(out)
    assert libopus_dred in exts and other in exts and long_other in exts and len(exts) == 4
    assert parse_packet(out).frames == (b"ab", b"cd")
    # Our magic with another version is not ours.
    foreign = with_padding(pkt, build_extensions([Extension(DRED_EXT_ID, 0, b"e\x02xyz")], 2))
    assert extract_dred(foreign) is None


def test_dred_malformed_padding_raises():
    pkt = bytes([TOC_WB20 | 3, 0x40 | 1, 2]) + b"abc" + bytes([40 << 1 | 1, 9])
    with pytest.raises(MalformedPacketError):
        extract_dred(pkt)
    with pytest.raises(MalformedPacketError):
        attach_dred(pkt, b"x")
    with pytest.raises(FramingError):
        attach_dred(bytes([TOC_WB20]) + b"abc", b"x" * fr.MAX_PADDING_BYTES)


@SETTINGS
@given(frame_lists(), st.binary(max_size=400), extension_lists())
def test_dred_roundtrip_property(fl, payload, el):
    config, stereo, frames = fl
    pkt = build_packet(config, stereo, frames)
    m = len(frames)
    others = [Extension(e.id, e.frame % m, e.data) for e in el[0] if e.id != DRED_EXT_ID]
    try:
        base = with_padding(pkt, build_extensions(others, m))
        out = attach_dred(base, payload)
    except FramingError as exc:
        assert not isinstance(exc, MalformedPacketError)
        return
    assert extract_dred(out) == payload
    assert parse_packet(out).frames == tuple(frames)
    assert libopus_parse(out) is not None
