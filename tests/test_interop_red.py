"""RED interop with GStreamer's independent RFC 2198 elements (rtpredenc / rtpreddec, plugins-good).

Packets travel as files (multifilesink / multifilesrc, one RTP packet per file), so the exchange is
deterministic and needs no sockets.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest

from edge_dred.codec.opus import OpusDecoder
from edge_dred.live import LiveConfig, RecvCore, SendCore
from edge_dred.transport.red import parse_red
from edge_dred.transport.rtp import parse_rtp

from conftest import play_datagrams, voiced

GST = shutil.which("gst-launch-1.0")


def _has_elements(*names: str) -> bool:
    insp = shutil.which("gst-inspect-1.0")
    return insp is not None and all(
        subprocess.run([insp, "--exists", n], capture_output=True).returncode == 0 for n in names)


pytestmark = pytest.mark.skipif(
    GST is None or not _has_elements("rtpredenc", "rtpreddec", "opusenc", "rtpopuspay", "multifilesrc"),
    reason="GStreamer with plugins-base/good not installed (./quickstart.sh test installs them)")


def _gst(*pipeline: str) -> None:
    p = subprocess.run([GST, "-q", *pipeline], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def _read_packets(d) -> list[bytes]:
    return [open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))]


def test_gstreamer_rtpredenc_stream_is_received_and_its_copies_fill_losses(tmp_path):
    _gst("audiotestsrc", "num-buffers=75", "samplesperbuffer=960", "wave=sine", "freq=220", "!",
         "audio/x-raw,rate=48000,channels=1", "!", "opusenc", "frame-size=20", "bitrate=32000", "!",
         "rtpopuspay", "pt=111", "!", "rtpredenc", "pt=63", "distance=1", "!",
         "multifilesink", f"location={tmp_path}/%05d.rtp")
    datagrams = _read_packets(tmp_path)
    assert len(datagrams) >= 70
    rtp = [parse_rtp(d) for d in datagrams]
    assert {p.payload_type for p in rtp} == {63}
    # Its copies are the previous packets' primaries, one frame (960 ticks) back.
    reds = [parse_red(p.payload) for p in rtp]
    for prev, red in zip(reds[5:], reds[6:]):
        assert [(b.payload_type, b.timestamp_offset, b.data) for b in red.redundant] == [(111, 960, prev.primary)]

    core = RecvCore(LiveConfig(payload_type=111, red_payload_type=63, lbrr=False, recovery_ms=20),
                    payload_type=111)
    lost = {12, 30, 47}
    got, rep = play_datagrams(core, datagrams, lost)
    assert rep["rtp"]["red_packets"] == len(datagrams) - len(lost) and rep["rtp"]["bad_red"] == 0
    assert rep["decisions"] == {"regular": len(datagrams) - len(lost), "red": len(lost)}
    # The recovered stream is bit-exact with decoding every primary.
    dec = OpusDecoder(16000, 1)
    ref = np.concatenate([dec.decode(r.primary, 320) for r in reds])
    assert np.array_equal(got, ref)


def test_gstreamer_rtpreddec_recovers_our_red2_stream_bit_exact(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    core = SendCore(LiveConfig(red=2, lbrr=False, bitrate=24000))
    plain = []
    real_encode = core.sender.encoder.encode

    def encode(frame):  # note the Opus packet each frame became (what the copies must carry)
        plain.append(real_encode(frame))
        return plain[-1]

    core.sender.encoder.encode = encode
    sent = [core.encode(f) for f in voiced(1.0).reshape(-1, 320)]
    seq0 = parse_rtp(sent[0]).sequence
    lost = {10, 20, 21, 33}
    kept = [d for i, d in enumerate(sent) if i not in lost]
    for i, d in enumerate(kept):
        (src / f"{i:05d}.rtp").write_bytes(d)
    _gst("multifilesrc", f"location={src}/%05d.rtp", "index=0",
         "caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96", "!",
         "rtpreddec", "pt=97", "!", "multifilesink", f"location={out}/%05d.rtp")
    got = [parse_rtp(d) for d in _read_packets(out)]
    assert {p.payload_type for p in got} == {96}
    by_seq: dict[int, set[bytes]] = {}
    for p in got:
        by_seq.setdefault((p.sequence - seq0) & 0xFFFF, set()).add(p.payload)
        assert p.timestamp == (parse_rtp(sent[0]).timestamp + 960 * ((p.sequence - seq0) & 0xFFFF)) & 0xFFFFFFFF
    # Every frame comes out, the lost ones rebuilt from our copies, each exactly the Opus packet sent.
    assert sorted(by_seq) == list(range(len(sent)))
    assert all(by_seq[i] == {plain[i]} for i in range(len(sent)))
