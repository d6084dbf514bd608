"""Interop with a legacy Opus client (ffmpeg): it plays our stream, and we receive its stream."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_dred.audio.device import MockDevice
from edge_dred.audio.wavio import load_audio, write_wav
from edge_dred.codec.framing import attach_dred, extract_dred
from edge_dred.codec.opus import OpusDecoder
from edge_dred.live import LiveConfig, SendSession
from edge_dred.sender import Sender
from edge_dred.transport.ogg import OggOpusWriter, read_ogg_opus
from edge_dred.transport.sdp import make_sdp

from conftest import voiced

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FFMPEG = shutil.which("ffmpeg")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(FFMPEG is None or shutil.which("ffprobe") is None,
                                 reason="ffmpeg/ffprobe not installed (./quickstart.sh test installs them)")]
# A synthetic redundancy payload: the legacy client must skip whatever rides in the padding.
PAYLOAD = bytes(range(7, 67))


def _snr(ref: np.ndarray, x: np.ndarray) -> float:
    e = ref.astype(float) - x.astype(float)
    return 10 * np.log10(np.sum(ref.astype(float) ** 2) / max(np.sum(e ** 2), 1e-9))


def _ffmpeg_decode(args: list[str], out: str) -> tuple[np.ndarray, str]:
    p = subprocess.run([FFMPEG, "-nostdin", "-v", "warning", "-y", *args, "-f", "s16le", "-ac", "1", "-ar", "48000",
                        out], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return np.fromfile(out, "<i2"), p.stderr


@pytest.fixture(scope="module")
def ogg_with_dred(tmp_path_factory):
    d = tmp_path_factory.mktemp("ogg")
    s = Sender(40000, lbrr=True)
    pk = [attach_dred(p, PAYLOAD) for p in s.encode_stream(voiced(2.0))]
    assert extract_dred(pk[3]) == PAYLOAD
    path = d / "ours.opus"
    with OggOpusWriter(path, pre_skip=s.lookahead * 3) as w:
        for p in pk:
            w.write_packet(p)
    dec = OpusDecoder(48000)
    ref = np.concatenate([dec.decode(p) for p in pk])[s.lookahead * 3:]
    return path, pk, ref, d


def test_ffprobe_reads_our_ogg_file(ogg_with_dred):
    path, pk, _, _ = ogg_with_dred
    p = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stderr == ""
    info = json.loads(p.stdout)
    st = info["streams"][0]
    assert st["codec_name"] == "opus" and st["channels"] == 1 and st["sample_rate"] == "48000"
    assert float(info["format"]["duration"]) == pytest.approx(len(pk) * 0.02, abs=0.011)


def test_ffmpeg_libopus_decodes_our_ogg_bit_exactly(ogg_with_dred):
    path, _, ref, d = ogg_with_dred
    y, err = _ffmpeg_decode(["-c:a", "libopus", "-i", str(path)], str(d / "lib.raw"))
    assert err == ""
    assert len(y) == len(ref) and np.array_equal(y, ref)


def test_ffmpeg_native_decoder_plays_our_ogg(ogg_with_dred):
    path, _, ref, d = ogg_with_dred
    y, err = _ffmpeg_decode(["-i", str(path)], str(d / "native.raw"))
    assert err == ""
    assert len(y) == len(ref)
    # ffmpeg's own Opus decoder is not bit-exact with libopus (its SILK and resampler differ).
    assert np.corrcoef(y.astype(float), ref.astype(float))[0, 1] > 0.95 and _snr(ref, y) > 12


def _free_even_port_pair() -> int:
    for _ in range(50):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        if port % 2 or port >= 65535:
            a.close()
            continue
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            b.bind(("127.0.0.1", port + 1))  # ffmpeg also opens the RTCP port
        except OSError:
            continue
        finally:
            a.close()
            b.close()
        return port
    pytest.skip("no free UDP port pair")


def test_ffmpeg_receives_our_rtp_stream_via_sdp(tmp_path):
    port = _free_even_port_pair()
    sdp = tmp_path / "stream.sdp"
    sdp.write_text(make_sdp("127.0.0.1", port, 96, useinbandfec=True, max_average_bitrate=40000))
    out = tmp_path / "ff.raw"
    ff = subprocess.Popen([FFMPEG, "-v", "warning", "-y", "-protocol_whitelist", "file,udp,rtp",
                           "-reorder_queue_size", "0", "-c:a", "libopus", "-i", str(sdp), "-t", "1.6",  # stop after the stream's 80 packets
                           "-f", "s16le", "-ac", "1", "-ar", "48000", str(out)],
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.7)  # let ffmpeg bind its port
        cap = MockDevice("capture", source=voiced(2.4), loop=False, pace=True)
        sess = SendSession(cap, ("127.0.0.1", port), LiveConfig(), record=str(tmp_path / "sent.opus"),
                           redundancy=lambda frame: PAYLOAD)
        rep = sess.run(2.4)  # more than ffmpeg keeps: its RTP demuxer holds the newest packets back
        _, err = ff.communicate(timeout=30)
    finally:
        if ff.poll() is None:
            ff.kill()
    assert rep["frames"] == 120
    assert ff.returncode == 0 and err.strip() == "", err  # any warning would be a decoding problem
    sent = read_ogg_opus(tmp_path / "sent.opus").packets
    assert all(extract_dred(p) == PAYLOAD for p in sent)
    dec = OpusDecoder(48000)
    ref = np.concatenate([dec.decode(p) for p in sent])
    y = np.fromfile(out, "<i2")
    assert len(y) == 76800 and np.array_equal(y, ref[:76800])  # the primary frames, bit for bit


@pytest.mark.parametrize("fec", [False, True])
def test_our_recv_conceals_losses_in_an_ffmpeg_rtp_stream(tmp_path, fec):
    src = voiced(2.0)
    write_wav(tmp_path / "x.wav", src)
    env = dict(os.environ, PYTHONPATH=ROOT)
    recv = subprocess.Popen([sys.executable, "-m", "edge_dred.cli", "recv", "--listen", "127.0.0.1:0",
                             "--device", f"file:{tmp_path / 'out.wav'}", "--seconds", "10", "--idle-timeout", "0.5",
                             "--loss", "15", "--seed", "5", "--no-lbrr" if not fec else "--lbrr",
                             "--payload-type", "97", "--record", str(tmp_path / "rx.opus"),
                             "--report", str(tmp_path / "r.json"), "--status-interval", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = recv.stdout.readline()
        assert line.startswith("listening on"), line + recv.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        enc = ["-c:a", "libopus", "-b:a", "24k", "-application", "voip", "-frame_duration", "20"]
        if fec:
            enc += ["-fec:a", "1", "-packet_loss:a", "20"]  # ":a": not the rtp muxer's own "fec" option
        ff = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-re", "-i", str(tmp_path / "x.wav"), *enc,
                             "-payload_type", "97", "-f", "rtp", f"rtp://127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=60)
        assert ff.returncode == 0, ff.stderr
        out, err = recv.communicate(timeout=30)
    finally:
        if recv.poll() is None:
            recv.kill()
    assert recv.returncode == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["rtp"]["bad_rtp"] == 0 and r["rtp"]["bad_opus"] == 0
    assert r["accounting"]["accepted_balance_ok"] and r["accounting"]["slots_balance_ok"]
    lost = r["impairment_stats"]["lost"]
    assert lost >= 5
    d = r["decisions"]
    assert d["regular"] == r["jitter"]["played"] >= 0.9 * 100 - lost, r
    if fec:
        assert d.get("lbrr", 0) > 0
    else:
        # ffmpeg sends no DRED: holes are concealed (neural PLC where the board's defaults turn it on)
        assert d.get("opus_plc", 0) + d.get("neural_plc", 0) >= lost and "lbrr" not in d and "dred" not in d
    played = load_audio(tmp_path / "out.wav").pcm
    # Align the played audio with the input (codec + jitter buffer + look-ahead delay) and compare.
    a = src[2000:26000].astype(float)
    lags = range(0, 3000, 2)
    best = max(lags, key=lambda k: float(np.dot(a, played[2000 + k:26000 + k].astype(float)))
               if 26000 + k <= len(played) else -1e30)
    assert np.corrcoef(a, played[2000 + best:26000 + best].astype(float))[0, 1] > 0.6
    # every slot fed to the receiver is recorded; those after ffmpeg's last packet (no BYE: the
    # silence timeout ends the stream) are the stream's end, not holes
    assert len(read_ogg_opus(tmp_path / "rx.opus").packets) == sum(d.values()) + r["jitter"]["after_end"]
    assert r["end"] == "silence" and r["jitter"]["after_end"] > 0
