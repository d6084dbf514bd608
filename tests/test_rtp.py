"""RTP headers, SDP and the netem-like impairment."""
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_dred.loss import GilbertElliott, UniformLoss
from edge_dred.transport.impair import Impairment
from edge_dred.transport.rtp import (
    MAX_DATAGRAM_BYTES,
    RtpError,
    RtpPacket,
    RtpPacketizer,
    SequenceUnwrapper,
    build_rtp,
    parse_rtp,
)
from edge_dred.transport.sdp import SdpError, make_sdp, parse_sdp


def test_build_parse_roundtrip_fields():
    d = build_rtp(b"\x78\x01\x02", 65535, 0xFFFFFFFF, 0x12345678, 111, marker=True)
    assert len(d) == 15
    assert d[0] == 0x80 and d[1] == 0x80 | 111
    p = parse_rtp(d)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc, p.marker, p.payload) == \
        (111, 65535, 0xFFFFFFFF, 0x12345678, True, b"\x78\x01\x02")


def test_parse_csrc_extension_and_padding():
    hdr = bytes([0x80 | 0x20 | 0x10 | 2, 96]) + struct.pack("!HII", 7, 960, 42)
    csrc = struct.pack("!II", 1, 2)
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\xaa\xbb\xcc\xdd"
    payload = b"\x08\x11\x22"
    pad = b"\x00\x00\x03"
    p = parse_rtp(hdr + csrc + ext + payload + pad)
    assert p.csrcs == (1, 2)
    assert p.extension == (0xBEDE, b"\xaa\xbb\xcc\xdd")
    assert p.payload == payload


@pytest.mark.parametrize("data, msg", [
    (b"\x80\x60\x00", "shorter"),
    (bytes([0x40, 96]) + bytes(10) + b"x", "version"),
    (bytes([0x83, 96]) + bytes(10) + b"abcd", "CSRC"),
    (bytes([0x90, 96]) + bytes(10) + b"\x00\x00\x00\x05abc", "extension"),
    (bytes([0xA0, 96]) + bytes(10) + b"ab\x00", "padding count is 0"),
    (bytes([0xA0, 96]) + bytes(10) + b"ab\x09", "padding"),
    (bytes([0x80, 96]) + bytes(10), "empty"),
    (bytes([0x80, 72]) + bytes(10) + b"x", "RTCP"),
])
def test_parse_rejects_malformed(data, msg):
    with pytest.raises(RtpError, match=msg):
        parse_rtp(data)


def test_parse_rejects_oversize_and_wrong_type():
    with pytest.raises(RtpError, match="exceeds"):
        parse_rtp(bytes([0x80, 96]) + bytes(MAX_DATAGRAM_BYTES))
    with pytest.raises(RtpError, match="expected 97"):
        parse_rtp(build_rtp(b"x", 1, 1, 1, 96), expect_payload_type=97)
    with pytest.raises(RtpError):
        parse_rtp("not bytes")  # type: ignore[arg-type]
    with pytest.raises(RtpError):
        build_rtp(b"", 1, 1, 1)
    with pytest.raises(RtpError):
        build_rtp(b"x", 70000, 1, 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_parse_random_bytes_never_crashes(data):
    try:
        p = parse_rtp(data)
    except RtpError:
        return
    assert isinstance(p, RtpPacket) and 0 < len(p.payload) <= len(data) - 12


def test_packetizer_wraps_and_marks_first_packet():
    pk = RtpPacketizer(960, 96, ssrc=5, first_sequence=65534, first_timestamp=0xFFFFFFFF - 959)
    ps = [parse_rtp(pk.next(b"\x08ab")) for _ in range(3)]
    assert [p.sequence for p in ps] == [65534, 65535, 0]
    assert [p.timestamp for p in ps] == [0xFFFFFFFF - 959, 0, 960]
    assert [p.marker for p in ps] == [True, False, False]
    # DTX: the timestamp skips, the sequence does not, the marker is set again.
    p = parse_rtp(pk.next(b"\x08ab", skipped_frames=5))
    assert p.sequence == 1 and p.timestamp == 1920 + 5 * 960 and p.marker


def test_sequence_unwrapper_handles_wrap_and_reordering():
    u = SequenceUnwrapper(16)
    vals = [65533, 65535, 65534, 0, 1, 65535, 3]
    assert [u.unwrap(v) for v in vals] == [65533, 65535, 65534, 65536, 65537, 65535, 65539]
    with pytest.raises(ValueError):
        u.unwrap(70000)


def test_sdp_is_rfc7587_and_parses_back():
    text = make_sdp("127.0.0.1", 5004, 101, useinbandfec=True, max_average_bitrate=40000)
    assert "\r\n" in text
    assert "m=audio 5004 RTP/AVP 101" in text
    assert "a=rtpmap:101 opus/48000/2" in text
    s = parse_sdp(text)
    assert (s.address, s.port, s.payload_type, s.ptime) == ("127.0.0.1", 5004, 101, 20)
    assert s.fmtp["useinbandfec"] == "1" and s.fmtp["sprop-maxcapturerate"] == "16000"
    assert s.fmtp["maxaveragebitrate"] == "40000"


def test_sdp_parses_an_ffmpeg_style_description():
    text = ("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\na=tool:libavformat 59.27.100\n"
            "m=audio 40000 RTP/AVP 97\nb=AS:24\na=rtpmap:97 opus/48000/2\na=fmtp:97 sprop-stereo=0\n")
    s = parse_sdp(text)
    assert (s.address, s.port, s.payload_type, s.fmtp) == ("127.0.0.1", 40000, 97, {"sprop-stereo": "0"})


@pytest.mark.parametrize("text, msg", [
    ("", "v=0"),
    ("v=0\nc=IN IP4 1.2.3.4\n", "m=audio"),
    ("v=0\nm=audio 5 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n", "c="),
    ("v=0\nc=IN IP4 1.2.3.4\nm=audio 5 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n", "opus"),
    ("v=0\nc=IN IP4 not-an-ip\n", "IP address"),
    ("v=0\n" + "a=x\n" * 5000, "longer"),
])
def test_sdp_rejects_bad_input(text, msg):
    with pytest.raises(SdpError, match=msg):
        parse_sdp(text)


def test_make_sdp_validates():
    with pytest.raises(SdpError):
        make_sdp("127.0.0.1", 0)
    with pytest.raises(SdpError):
        make_sdp("127.0.0.1", 5004, payload_type=8)


def _run_impairment(imp: Impairment, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        out += imp.process(i.to_bytes(4, "big"))
    return out + imp.flush()


def test_impairment_loss_follows_the_seeded_model():
    model = GilbertElliott(20, 3, seed=4)
    imp = Impairment(model)
    out = _run_impairment(imp, 2000)
    mask = model.mask(2000)
    kept = [i for i in range(2000) if not mask[i]]
    assert [int.from_bytes(d, "big") for d in out] == kept
    assert imp.stats["lost"] == int(mask.sum())


def test_impairment_duplicates_and_reorders_and_accounts_for_everything():
    imp = Impairment(UniformLoss(10, seed=1), reorder_pct=10, reorder_gap=2, duplicate_pct=10, seed=3)
    out = _run_impairment(imp, 3000)
    st = imp.stats
    assert st["lost"] > 200 and st["duplicated"] > 200 and st["reordered"] > 200
    assert len(out) == st["released"] == st["packets"] - st["lost"] + st["duplicated"]
    idx = [int.from_bytes(d, "big") for d in out]
    assert len(set(idx)) == st["packets"] - st["lost"]
    inversions = sum(1 for a, b in zip(idx, idx[1:]) if b < a)
    assert inversions >= st["reordered"] * 0.8
    # Held packets come out exactly reorder_gap packet times later: never further than gap back.
    assert all(i - j <= 2 for i, j in zip(idx, idx[1:]) if j < i)


def test_impairment_validates_and_grows_its_mask():
    with pytest.raises(ValueError):
        Impairment(reorder_pct=80)
    with pytest.raises(ValueError):
        Impairment(reorder_gap=0)
    model = UniformLoss(30, seed=9)
    imp = Impairment(model, expected_packets=16)  # forces re-draws of the mask
    _run_impairment(imp, 500)
    assert imp.lost_indices == list(np.flatnonzero(model.mask(500)))


def test_rtcp_compound_of_exactly_the_packet_limit_parses():
    from edge_dred.transport.rtp import build_rtcp_bye, parse_rtcp, parse_rtcp_bye

    rr = bytes([0x80, 201, 0, 1, 0, 0, 0, 7])
    data = rr * 15 + build_rtcp_bye(7)[8:]  # 16 packets, the last a BYE (found by tests/fuzz/fuzz_rtp.py)
    assert parse_rtcp_bye(data) == [7] and parse_rtcp(data) == ([7], {})
