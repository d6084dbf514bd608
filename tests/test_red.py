"""RED (RFC 2198): payload framing, the sender's copies, recovery in the receiver, RTP/SDP use."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_dred.codec.opus import OpusDecoder
from edge_dred.live import LiveConfig, LiveSession, LiveSetupError, RecvCore
from edge_dred.audio.device import MockDevice
from edge_dred.loss import GilbertElliott
from edge_dred.receiver import Decision, Receiver, ReceiverConfig
from edge_dred.sender import Sender
from edge_dred.simulate import run_condition
from edge_dred.transport.impair import Impairment
from edge_dred.transport.red import (MAX_RED_BLOCKS, RED_MAX_BLOCK_BYTES, RED_MAX_TIMESTAMP_OFFSET, RedBlock,
                                     RedEncoder, RedError, RedOpusPacket, build_red, parse_red, unpack_red)
from edge_dred.transport.rtp import build_rtp
from edge_dred.transport.sdp import make_sdp, parse_sdp

from conftest import play_datagrams, voiced

blocks = st.lists(st.builds(RedBlock, st.integers(0, 127), st.integers(0, RED_MAX_TIMESTAMP_OFFSET),
                            st.binary(max_size=RED_MAX_BLOCK_BYTES)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(pt=st.integers(0, 127), primary=st.binary(min_size=1, max_size=1500), red=blocks)
def test_build_parse_round_trip(pt, primary, red):
    data = build_red(pt, primary, red)
    assert len(data) == 4 * len(red) + 1 + sum(len(b.data) for b in red) + len(primary)
    p = parse_red(data)
    assert (p.payload_type, p.primary, p.redundant) == (pt, primary, tuple(red))
    assert build_red(p.payload_type, p.primary, p.redundant) == data


def test_header_layout_matches_rfc_2198_figure():
    # RFC 2198 section 3: F=1, block PT, 14-bit offset, 10-bit length; then F=0 + primary PT.
    data = build_red(111, b"PRIM", [RedBlock(111, 1920, b"ab"), RedBlock(111, 960, b"cde")])
    assert data[:4] == bytes([0x80 | 111, (1920 << 10 | 2) >> 16, ((1920 << 10 | 2) >> 8) & 0xFF, 2])
    assert data[8] == 111 and data[9:] == b"abcdePRIM"


@pytest.mark.parametrize("data, words", [
    (b"", "past the end"),
    (bytes([0x80 | 96]), "past the end"),                         # F=1 but no offset/length bytes
    (bytes([0x80 | 96, 0, 0]), "past the end"),                   # header cut after 3 bytes
    (bytes([0x80 | 96, 0x0F, 0x00, 0x05, 96, 1, 2]), "runs past the end"),  # block of 5 bytes, 2 left
    (bytes([0x80 | 96, 0x0F, 0x00, 0x01, 96, 7]), "empty primary"),          # block eats the primary
    (bytes([96]), "empty primary"),
    (bytes([0x80 | 96, 0x0F, 0x00, 0x00]), "past the end"),       # no final (F=0) header
    (bytes([0x80 | 96, 0x0F, 0x00, 0x00]) * (MAX_RED_BLOCKS + 1) + bytes([96, 1]), "more than"),
])
def test_malformed_block_headers_are_rejected(data, words):
    with pytest.raises(RedError, match=words):
        parse_red(data)


def test_offsets_beyond_14_bits_and_lengths_beyond_10_bits_are_rejected():
    with pytest.raises(RedError, match="14-bit"):
        build_red(96, b"x", [RedBlock(96, RED_MAX_TIMESTAMP_OFFSET + 1, b"a")])
    with pytest.raises(RedError, match="14-bit"):
        build_red(96, b"x", [RedBlock(96, -960, b"a")])
    with pytest.raises(RedError, match="10-bit"):
        build_red(96, b"x", [RedBlock(96, 960, bytes(RED_MAX_BLOCK_BYTES + 1))])
    with pytest.raises(RedError, match="non-empty"):
        build_red(96, b"", [])
    build_red(96, b"x", [RedBlock(96, RED_MAX_TIMESTAMP_OFFSET, bytes(RED_MAX_BLOCK_BYTES))])  # the limits themselves


def test_encoder_repeats_earlier_frames_and_leaves_out_what_does_not_fit():
    enc = RedEncoder(2, 96)
    first = enc.push(b"A1", b"a1")
    assert parse_red(first).redundant == ()
    assert parse_red(enc.push(b"B2", b"b2")).redundant == (RedBlock(96, 960, b"a1"),)
    p = parse_red(enc.push(b"C3", b"c3"))
    assert p.primary == b"C3" and p.redundant == (RedBlock(96, 1920, b"a1"), RedBlock(96, 960, b"b2"))
    # DTX: 17 frames skipped puts the older copies beyond the 14-bit offset; they are left out.
    p = parse_red(enc.push(b"D4", skipped_frames=17))
    assert p.redundant == () and enc.omitted == 2
    assert parse_red(enc.push(b"E5" * 600)).redundant == (RedBlock(96, 960, b"D4"),)
    # E5 is longer than the 10-bit length field: left out, D4 still goes.
    assert parse_red(enc.push(b"F6")).redundant == (RedBlock(96, 1920, b"D4"),)
    assert enc.omitted == 4  # b2, c3 (twice: still in view when E5 went) and E5
    with pytest.raises(RedError):
        RedEncoder(4, 96)


def test_unpack_keeps_only_20ms_opus_copies_of_this_stream():
    s = Sender(24000)
    pk = s.encode_stream(voiced(0.2))
    data = build_red(111, pk[3], [RedBlock(111, 1920, pk[1]), RedBlock(111, 960, pk[2]),
                                  RedBlock(0, 960 * 3, pk[0]),      # another payload type
                                  RedBlock(111, 480, pk[0]),        # half a frame back
                                  RedBlock(111, 2880, b"\x03"),     # not an Opus packet
                                  RedBlock(111, 2880, b"\x18\x00"),  # a 40 ms Opus packet
                                  RedBlock(111, 0, pk[0])])          # no offset at all
    u = unpack_red(data, 111)
    assert isinstance(u, RedOpusPacket) and bytes(u) == pk[3]
    assert u.redundant == {1: pk[2], 2: pk[1]} and u.ignored == 5
    with pytest.raises(RedError, match="expected Opus 96"):
        unpack_red(data, 96)


def _red2_stream():
    s = Sender(24000, lbrr=False, red=2)
    wire = s.encode_stream(voiced(1.0))
    plain = Sender(24000).encode_stream(voiced(1.0))
    return s, wire, plain


@pytest.mark.parametrize("lost", [[10], [10, 11], [20, 21, 30]])
def test_red2_recovers_single_and_double_losses_bit_exact(lost):
    s, wire, plain = _red2_stream()
    rx = Receiver(ReceiverConfig(lookahead=2))
    out = []
    for i, p in enumerate(wire):
        out += rx.push(None if i in lost else s.receive(p))
    out = np.concatenate(out + rx.flush())
    # Reference: a decoder that decodes, for each lost frame, the redundant copy taken straight from the
    # first later packet, without the receiver.
    ref_dec = OpusDecoder(16000, 1)
    ref = []
    for i, p in enumerate(wire):
        if i in lost:
            back = next(j for j in (1, 2) if i + j not in lost)
            copy = parse_red(wire[i + back]).redundant[-back].data
            assert copy == plain[i]  # the copy is the frame as plain Opus would have sent it
            ref.append(ref_dec.decode(copy, 320))
        else:
            ref.append(ref_dec.decode(parse_red(p).primary, 320))
    assert np.array_equal(out, np.concatenate(ref))
    assert [i for i, d in enumerate(rx.decisions) if d is Decision.RED] == lost
    assert all(d is Decision.REGULAR for i, d in enumerate(rx.decisions) if i not in lost)


def test_red_needs_the_copy_in_view():
    s, wire, _ = _red2_stream()
    # Three in a row: the first of them has no copy in any packet that arrives (RED-2 reaches 2 back).
    rx = Receiver(ReceiverConfig(lookahead=3))
    for i, p in enumerate(wire):
        rx.push(None if i in (10, 11, 12) else s.receive(p))
    rx.flush()
    assert [d.value for d in rx.decisions[10:13]] == ["opus_plc", "red", "red"]
    # Look-ahead 1: only the next packet is in view, so only its copy of the previous frame helps.
    rx = Receiver(ReceiverConfig(lookahead=1))
    for i, p in enumerate(wire):
        rx.push(None if i in (10, 11) else s.receive(p))
    rx.flush()
    assert [d.value for d in rx.decisions[10:12]] == ["opus_plc", "red"]


def test_red_conditions_report_their_total_bit_rate():
    pcm = voiced(2.0)
    lost = np.zeros(120, bool)
    lost[[20, 40, 41]] = True
    base = run_condition(pcm, lost, "opus_plc")
    r1, r2 = run_condition(pcm, lost, "red1"), run_condition(pcm, lost, "red2")
    assert r1.decision_counts().get("red") == 2 and r2.decision_counts().get("red") == 3
    # Every copy costs about one more primary stream.
    assert 1.8 < r1.total_bitrate_bps / base.total_bitrate_bps < 2.2
    assert 2.7 < r2.total_bitrate_bps / base.total_bitrate_bps < 3.3
    assert r2.extra["red_bytes"].sum() == r2.packet_bytes.sum() - base.packet_bytes.sum()


def test_sdp_announces_red_as_webrtc_does_and_parses_back():
    sdp = make_sdp("127.0.0.1", 5004, 111, red_payload_type=63)
    assert "m=audio 5004 RTP/AVP 63 111\r\n" in sdp
    assert "a=rtpmap:63 red/48000/2\r\n" in sdp and "a=fmtp:63 111/111\r\n" in sdp
    s = parse_sdp(sdp)
    assert (s.payload_type, s.red_payload_type) == (111, 63)
    assert parse_sdp(make_sdp("127.0.0.1", 5004, 96)).red_payload_type is None
    # RED whose blocks are another codec is not ours to unpack.
    other = sdp.replace("a=fmtp:63 111/111", "a=fmtp:63 0/111")
    assert parse_sdp(other).red_payload_type is None


def _webrtc_red_datagrams(n_frames: int, distance: int = 2):
    """RED the way a browser sends it: Opus PT 111 inside RED PT 63, one or two earlier frames,
    packed here with build_red from plain Opus packets (not with our RedEncoder)."""
    plain = Sender(32000, lbrr=True).encode_stream(voiced(n_frames / 50))
    out = []
    for i, p in enumerate(plain):
        red = [RedBlock(111, 960 * j, plain[i - j]) for j in range(distance, 0, -1) if i - j >= 0]
        out.append(build_rtp(build_red(111, p, red), (1000 + i) & 0xFFFF, 5000 + 960 * i, 0xC0FFEE, 63))
    return plain, out


def test_recv_core_receives_a_webrtc_style_red_stream_and_recovers_from_copies():
    plain, datagrams = _webrtc_red_datagrams(60)
    cfg = LiveConfig(payload_type=111, red_payload_type=63, recovery_ms=40)
    core = RecvCore(cfg, payload_type=111)
    lost = {10, 20, 21, 35}
    got, rep = play_datagrams(core, datagrams, lost)
    assert rep["rtp"]["red_packets"] == len(datagrams) - len(lost) and rep["rtp"]["bad_red"] == 0
    assert rep["decisions"].get("red") == len(lost) and "opus_plc" not in rep["decisions"]
    assert all(v for k, v in rep["accounting"].items() if k.endswith("_ok")), rep["accounting"]
    # Bit-exact with the lossless stream: every copy is the frame itself.  The first slots out are
    # silence: before playout starts, then while the receiver's look-ahead fills.
    dec = OpusDecoder(16000, 1)
    ref = np.concatenate([dec.decode(p, 320) for p in plain])
    assert len(got) == len(ref) and np.array_equal(got, ref)


def test_recv_core_counts_bad_red_and_keeps_plain_opus_working():
    plain, datagrams = _webrtc_red_datagrams(4)
    core = RecvCore(LiveConfig(payload_type=111, red_payload_type=63), payload_type=111)
    core.on_datagram(build_rtp(bytes([0x80 | 111, 0, 0]), 1, 960, 7, 63), 0.0)   # cut block header
    core.on_datagram(build_rtp(build_red(96, plain[0]), 2, 1920, 7, 63), 0.0)    # primary not Opus 111
    core.on_datagram(build_rtp(plain[1], 3, 2880, 7, 111), 0.0)                   # plain Opus still fine
    core.on_datagram(build_rtp(plain[1], 4, 3840, 7, 100), 0.0)                   # neither payload type
    c = core.counts
    assert (c["bad_red"], c["bad_rtp"], c["red_packets"]) == (2, 1, 0)
    assert core.report()["accounting"]["datagrams_balance_ok"]
    with pytest.raises(LiveSetupError):
        LiveConfig(payload_type=96, red_payload_type=96)
    with pytest.raises(LiveSetupError):
        LiveConfig(red=4)
    # ffmpeg sends Opus on 97: RED then defaults to 96, so plain Opus on 97 is never taken for RED.
    assert (LiveConfig().red_payload_type, LiveConfig(payload_type=97).red_payload_type) == (97, 96)


def test_live_session_sends_and_receives_red_with_dred_in_the_primary():
    src = voiced(3.0)
    cap = MockDevice("capture", source=src, loop=False)
    play = MockDevice("playback")
    imp = Impairment(GilbertElliott(15, 1.5, seed=5), seed=6)
    cfg = LiveConfig(red=2, lbrr=False, bitrate=24000, dred_ms=200, recovery_ms=40)
    rep = LiveSession(cap, play, cfg, imp).run(3.0)
    assert rep["accounting"]["ok"], rep["accounting"]
    assert rep["red"]["distance"] == 2 and rep["red"]["omitted"] == 0
    assert rep["rtp"]["red_packets"] == rep["jitter"]["received"]
    lost = rep["impairment_stats"]["lost"]
    assert lost > 10 and rep["decisions"].get("red", 0) >= 0.7 * lost
    # DRED rides in the primary only: the copies cost about two more plain Opus packets.
    red, dred = rep["red"]["mean_redundant_bytes"], rep["dred"]["mean_payload_bytes"]
    assert rep["dred"]["packets_with_payload"] > 100 and dred > 10
    opus = rep["bitrate_bps"] / 400 - red - dred
    assert 1.7 < red / opus < 2.3


def test_send_command_sends_red_and_writes_its_sdp(tmp_path):
    import socket
    import subprocess
    import sys

    from edge_dred.audio.wavio import write_wav
    from edge_dred.transport.rtp import is_rtcp, parse_rtp

    write_wav(tmp_path / "in.wav", voiced(1.0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    port = sock.getsockname()[1]
    p = subprocess.run([sys.executable, "-m", "edge_dred.cli", "send", "--dest", f"127.0.0.1:{port}", "--device",
                        f"file:{tmp_path / 'in.wav'}", "--no-pace", "--seconds", "1", "--red", "2", "--dred-ms", "0",
                        "--sdp", str(tmp_path / "s.sdp"), "--status-interval", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "as RED pt 97 with 2 earlier frames" in p.stdout and "red       2 earlier frames" in p.stdout
    sock.settimeout(1.0)
    got, rtcp = [], 0
    try:
        while True:
            d = sock.recv(4096)
            if is_rtcp(d):   # the closing sender report + BYE
                rtcp += 1
            else:
                got.append(parse_rtp(d))
    except socket.timeout:
        pass
    sock.close()
    assert rtcp >= 1 and len(got) == 50 and {g.payload_type for g in got} == {97}
    pk = [unpack_red(g.payload, 96) for g in got]
    assert all(pk[i].redundant == {1: bytes(pk[i - 1]), 2: bytes(pk[i - 2])} for i in range(2, 50))
    sdp = parse_sdp((tmp_path / "s.sdp").read_text())
    assert (sdp.payload_type, sdp.red_payload_type) == (96, 97)
