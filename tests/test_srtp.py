"""SRTP (libsrtp2 through pylibsrtp): keys, tamper/replay rejection, interop with ffmpeg."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pylibsrtp", reason="pylibsrtp not installed (pip install '.[srtp]')")

from edge_dred.audio.device import MockDevice  # noqa: E402
from edge_dred.codec.opus import OpusDecoder  # noqa: E402
from edge_dred.live import LiveConfig, RecvCore, SendSession  # noqa: E402
from edge_dred.sender import Sender  # noqa: E402
from edge_dred.transport.ogg import read_ogg_opus  # noqa: E402
from edge_dred.transport.rtp import RtpPacketizer, build_rtcp_bye  # noqa: E402
from edge_dred.transport.sdp import make_sdp, parse_sdp  # noqa: E402
from edge_dred.transport.srtp import (SUITES, SrtpError, SrtpKey, SrtpReceiver, SrtpSender,  # noqa: E402
                                      parse_crypto, read_key_file, write_key_file)

from conftest import voiced  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (./quickstart.sh test installs it)")
PEER = ("127.0.0.1", 40000)


def test_keys_round_trip_through_sdp_and_key_files(tmp_path):
    for suite in SUITES:
        k = SrtpKey.generate(suite)
        sdp = parse_sdp(make_sdp("127.0.0.1", 5004, crypto=k.sdp_attribute()[len("crypto:"):], ssrc=77))
        assert parse_crypto(sdp.crypto[0]) == k and sdp.ssrc == 77
        write_key_file(tmp_path / suite, k)
        assert read_key_file(tmp_path / suite) == k and (tmp_path / suite).stat().st_mode & 0o077 == 0
    for bad in ("AES_CM_128_HMAC_SHA1_80 inline:AAAA", "F8_128_HMAC_SHA1_80 inline:" + "A" * 40,
                "1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "|2^20|1:4", "garbage", "x" * 600):
        with pytest.raises(SrtpError):
            parse_crypto(bad)
    (tmp_path / "bad.key").write_text("two\nlines\n")
    with pytest.raises(SrtpError, match="bad.key"):
        read_key_file(tmp_path / "bad.key")


@pytest.mark.parametrize("suite", list(SUITES))
def test_tampered_replayed_and_plain_packets_are_rejected_and_counted(suite):
    key = SrtpKey.generate(suite)
    tx, enc = SrtpSender(key), Sender(24000).encoder
    pcm = voiced(1.2)
    rtp = RtpPacketizer(ssrc=0x5151, first_timestamp=0)
    core = RecvCore(LiveConfig(lbrr=False), srtp=SrtpReceiver(key))
    fed = []
    push = core.receiver.push
    core.receiver.push = lambda p: (fed.append(p), push(p))[1]
    sent = []
    for i in range(50):
        plain = rtp.next(enc.encode(pcm[i * 320:(i + 1) * 320]))
        pkt = tx.protect(plain)
        sent.append(pkt)
        if i == 10:  # libsrtp checks the replay window first: tamper with a packet not seen yet
            bad = bytearray(pkt)
            bad[20] ^= 0x01  # one flipped payload bit
            core.on_datagram(bytes(bad), i * 0.02, PEER)
        core.on_datagram(pkt, i * 0.02, PEER)
        if i == 10:
            core.on_datagram(pkt, i * 0.02, PEER)  # replayed
            core.on_datagram(rtp.next(plain[12:]), i * 0.02, PEER)  # plain RTP, a fresh index
            core.on_datagram(build_rtcp_bye(0x5151), i * 0.02, PEER)  # a forged (plain) BYE
        core.next_frame(i * 0.02 + 0.01)
    c = core.counts
    assert c["srtp_auth_failed"] == 2 and c["srtp_replayed"] == 1 and c["srtp_rejected"] == 1
    assert not core.jb.ended
    assert core.jb.stats["accepted"] == 50 and sum(p is not None for p in fed) >= 48
    core.on_datagram(tx.protect_rtcp(build_rtcp_bye(0x5151)), 1.0, PEER)  # the real BYE
    assert core.ended_by == "bye" and core.report()["accounting"]["datagrams_balance_ok"]


@pytest.mark.slow  # ffmpeg, paced
@needs_ffmpeg
def test_ffmpeg_srtp_stream_plays_through_our_recv(tmp_path):
    key = SrtpKey.generate()
    write_key_file(tmp_path / "k.key", key)
    env = dict(os.environ, PYTHONPATH=ROOT)
    recv = subprocess.Popen([sys.executable, "-m", "edge_dred.cli", "recv", "--listen", "127.0.0.1:0",
                             "--srtp-key", str(tmp_path / "k.key"), "--device", f"file:{tmp_path / 'out.wav'}",
                             "--seconds", "10", "--idle-timeout", "0.5", "--report", str(tmp_path / "r.json"),
                             "--status-interval", "0", "--payload-type", "97", "--no-dred", "--no-neural-plc"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = recv.stdout.readline()
        assert line.startswith("listening on"), line + recv.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        ff = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "sine=f=440:d=1.5",
                             "-ac", "1", "-c:a", "libopus", "-b:a", "24k", "-frame_duration", "20",
                             "-payload_type", "97", "-f", "rtp", "-srtp_out_suite", key.suite,
                             "-srtp_out_params", key.inline().split("inline:")[1], f"srtp://127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=60)
        assert ff.returncode == 0, ff.stderr
        _, err = recv.communicate(timeout=30)
    finally:
        if recv.poll() is None:
            recv.kill()
    assert recv.returncode == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["srtp"] == key.suite and r["rtp"]["srtp_auth_failed"] == 0 and r["rtp"]["bad_rtp"] == 0
    # every packet authenticated and decrypted; ffmpeg's -re pacing is bursty, so a few may come late
    assert r["jitter"]["received"] >= 74 and r["jitter"]["played"] >= 60


@pytest.mark.slow  # ffmpeg, paced
@needs_ffmpeg
def test_ffmpeg_decodes_our_srtp_stream_from_the_sdp_key(tmp_path):
    key = SrtpKey.generate()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sdp = tmp_path / "s.sdp"
    sdp.write_text(make_sdp("127.0.0.1", port, 96, useinbandfec=True, crypto=key.sdp_attribute()[len("crypto:"):]))
    out = tmp_path / "ff.raw"
    ff = subprocess.Popen([FFMPEG, "-v", "warning", "-y", "-protocol_whitelist", "file,udp,rtp,srtp",
                           "-reorder_queue_size", "0", "-c:a", "libopus", "-i", str(sdp), "-t", "1.6",
                           "-f", "s16le", "-ac", "1", "-ar", "48000", str(out)],
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.7)  # let ffmpeg bind its port
        cap = MockDevice("capture", source=voiced(2.4), loop=False, pace=True)
        SendSession(cap, ("127.0.0.1", port), LiveConfig(), record=str(tmp_path / "sent.opus"),
                    srtp=SrtpSender(key)).run(2.4)
        _, err = ff.communicate(timeout=30)
    finally:
        if ff.poll() is None:
            ff.kill()
    assert ff.returncode == 0 and err.strip() == "", err
    dec = OpusDecoder(48000)
    ref = np.concatenate([dec.decode(p) for p in read_ogg_opus(tmp_path / "sent.opus").packets])
    y = np.fromfile(out, "<i2")
    assert len(y) == 76800 and np.array_equal(y, ref[:76800])  # decrypted bit for bit


def test_crypto_attribute_with_a_run_of_separators_is_refused_at_once():
    # Found by tests/fuzz/fuzz_sdp.py: '|' runs after the key made the attribute pattern backtrack
    # exponentially (an SDP line of 351 bytes never finished). Run in a child with a generous
    # limit, so the old pattern fails the test instead of hanging the suite.
    line = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "|" * 110 + "A" * 70
    code = ("import sys; from edge_dred.transport.srtp import SrtpError, parse_crypto\n"
            "try:\n    parse_crypto(sys.argv[1])\nexcept SrtpError as e:\n    print('refused:', e)\n")
    p = subprocess.run([sys.executable, "-c", code, line], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.startswith("refused: "), p.stdout + p.stderr[-2000:]
    with pytest.raises(SrtpError, match="lifetime/MKI"):  # the parameters themselves are still named
        parse_crypto("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "|2^20|1:4")
