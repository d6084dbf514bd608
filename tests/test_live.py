"""Live sessions: latency, accounting, send/recv as separate processes over 127.0.0.1."""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_dred.audio.device import MockDevice
from edge_dred.codec.opus import OpusDecoder
from edge_dred.live import LiveConfig, LiveSession, RecvSession, SendSession, latency_budget
from edge_dred.loss import GilbertElliott
from edge_dred.transport.impair import Impairment
from edge_dred.transport.ogg import read_ogg_opus

from conftest import voiced

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _delay(ref: np.ndarray, out: np.ndarray, max_lag: int = 1000) -> int:
    a = ref[4000:20000].astype(float)
    scores = [np.dot(a, out[4000 + k:20000 + k].astype(float)) for k in range(max_lag)]
    return int(np.argmax(scores))


def test_default_latency_budget_is_within_60_ms():
    b = latency_budget(LiveConfig(), 104)
    assert b["capture_framing_ms"] == 20 and b["codec_lookahead_ms"] == 6.5
    assert b["jitter_buffer_target_ms"] == 10 and b["recovery_lookahead_ms"] == 20
    assert b["pipeline_ms"] == 56.5 <= 60


def test_live_session_clean_output_is_the_decoded_stream_at_the_measured_delay(tmp_path):
    src = voiced(2.0)
    cap = MockDevice("capture", source=src, loop=False)
    play = MockDevice("playback")
    sess = LiveSession(cap, play, LiveConfig(), record=str(tmp_path / "s.opus"))
    rep = sess.run(2.0)
    assert rep["accounting"]["ok"] and rep["decisions"] == {"regular": 100}
    out = play.recorded
    # Exactly libopus's decode of the sent packets, after one silent slot of recovery look-ahead
    # (the jitter buffer adds nothing when arrivals and playout share the capture clock).
    dec = OpusDecoder(16000)
    ref = np.concatenate([np.zeros(320, np.int16)] + [dec.decode(p) for p in read_ogg_opus(tmp_path / "s.opus").packets])
    assert np.array_equal(out, ref)
    d = _delay(src, out)
    assert abs(d - (104 + 320)) <= 2  # codec look-ahead + one slot
    assert d / 16 + 20 <= latency_budget(LiveConfig(), 104)["pipeline_ms"]


def test_live_session_with_bursty_loss_reordering_and_duplicates_accounts_for_every_packet(tmp_path):
    src = voiced(4.0)
    cap = MockDevice("capture", source=src, loop=False)
    play = MockDevice("playback")
    imp = Impairment(GilbertElliott(20, 2.5, seed=3), reorder_pct=5, duplicate_pct=5, seed=4)
    sess = LiveSession(cap, play, LiveConfig(), imp, record=str(tmp_path / "s.opus"),
                       record_received=str(tmp_path / "r.opus"))
    rep = sess.run(4.0)
    acct, st, jb = rep["accounting"], rep["impairment_stats"], rep["jitter"]
    assert acct["ok"], acct
    assert st["packets"] == 200 and st["lost"] > 20 and st["duplicated"] > 0 and st["reordered"] > 0
    assert jb["duplicates"] == st["duplicated"]
    holes = sum(v for k, v in rep["decisions"].items() if k != "regular")
    assert holes == jb["missing"] + jb["inserted"] >= st["lost"]
    assert rep["decisions"].get("lbrr", 0) > 0 and rep["decisions"].get("opus_plc", 0) > 0
    assert sum(sum(d.values()) for d in rep["hole_decisions"].values()) == holes
    sent, recv = read_ogg_opus(tmp_path / "s.opus"), read_ogg_opus(tmp_path / "r.opus")
    assert len(sent.packets) == 200
    assert sum(len(p) == 1 for p in recv.packets) == holes
    assert len(play.recorded) == rep["frames_played"] * 320


@pytest.mark.slow  # paced: real time
def test_send_and_recv_sessions_over_loopback():
    src = voiced(1.6)
    rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rsock.bind(("127.0.0.1", 0))
    play = MockDevice("playback", pace=True)
    recv = RecvSession(play, rsock, LiveConfig())
    import threading

    result = {}
    t = threading.Thread(target=lambda: result.update(recv.run(5.0, idle_timeout=0.4, wait_timeout=5)))
    t.start()
    cap = MockDevice("capture", source=src, loop=False, pace=True)
    imp = Impairment(GilbertElliott(15, 2, seed=1), reorder_pct=5, duplicate_pct=5, seed=2)
    srep = SendSession(cap, rsock.getsockname(), LiveConfig(), imp).run(1.6)
    t.join(10)
    rsock.close()
    st = srep["impairment_stats"]
    assert srep["datagrams_sent"] == st["packets"] - st["lost"] + st["duplicated"]
    assert srep["bye_sent"] and result["end"] == "bye"  # the RTCP BYE ends the stream
    assert result["rtp"]["datagrams"] == srep["datagrams_sent"] + result["rtp"]["rtcp"]
    assert result["rtp"]["rtcp"] == 1
    assert result["jitter"]["duplicates"] == st["duplicated"]
    assert result["accounting"]["unique_arrivals"] == st["packets"] - st["lost"]
    assert all(v for k, v in result["accounting"].items() if k.endswith("_ok"))
    j = result["jitter"]
    assert j["played"] + j["late"] + j["too_early"] + j["dropped_drift"] + j["dropped_reset"] \
        == st["packets"] - st["lost"]
    out = play.recorded
    assert np.abs(out).max() > 1000


ASOUND = """
pcm.edge_null {{ type null }}
pcm.edge_mic {{ type file slave.pcm "edge_null" file "/dev/null" infile "{inp}" format "raw" }}
pcm.edge_spk {{ type file slave.pcm "edge_null" file "{out}" format "raw" }}
"""


def _alsa_env(tmp_path, src):
    pytest.importorskip("alsaaudio", reason="pyalsaaudio not installed (pip install '.[alsa]')")
    (tmp_path / "in.raw").write_bytes(src.astype("<i2").tobytes())
    conf = tmp_path / "asound.conf"
    conf.write_text(ASOUND.format(inp=tmp_path / "in.raw", out=tmp_path / "out.raw"))
    env = dict(os.environ, ALSA_CONFIG_PATH=str(conf), PYTHONPATH=ROOT)
    return env


def _cli(*args):
    return [sys.executable, "-m", "edge_dred.cli", *args]


@pytest.mark.slow  # paced: real time
def test_send_and_recv_commands_as_processes_with_alsa_file_plugins(tmp_path):
    src = voiced(2.0)
    env = _alsa_env(tmp_path, src)
    recv = subprocess.Popen(_cli("recv", "--listen", "127.0.0.1:0", "--device", "edge_spk", "--pace",
                                 "--seconds", "10", "--idle-timeout", "0.5", "--record", str(tmp_path / "r.opus"),
                                 "--report", str(tmp_path / "r.json"), "--status-interval", "0.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = recv.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line + recv.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        send = subprocess.run(_cli("send", "--dest", f"127.0.0.1:{port}", "--device", "edge_mic", "--pace",
                                   "--seconds", "2", "--loss", "20", "--burst", "2", "--reorder", "5",
                                   "--duplicate", "5", "--seed", "3", "--sdp", str(tmp_path / "s.sdp"),
                                   "--record", str(tmp_path / "s.opus"), "--report", str(tmp_path / "s.json")),
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
        assert send.returncode == 0, send.stderr
        out, err = recv.communicate(timeout=30)
    finally:
        if recv.poll() is None:
            recv.kill()
    assert recv.returncode == 0, err
    assert "holes" in out and "accounted yes" in out and "| RTF" in out
    s, r = json.loads((tmp_path / "s.json").read_text()), json.loads((tmp_path / "r.json").read_text())
    st = s["impairment_stats"]
    assert st["packets"] == 100 and st["lost"] > 5
    assert s["datagrams_sent"] == st["packets"] - st["lost"] + st["duplicated"]
    assert r["rtp"]["datagrams"] == s["datagrams_sent"] + r["rtp"]["rtcp"] and r["end"] == "bye"
    assert r["accounting"]["unique_arrivals"] == st["packets"] - st["lost"]
    assert r["jitter"]["duplicates"] == st["duplicated"]
    # every lost packet left a hole (unless the buffer shrank over that very slot) -- except the
    # first one this seed loses: a stream starts at the first packet that arrives; the BYE's
    # sender report marks the last packet, so losses at the end are holes and nothing after it is.
    # The board's defaults put DRED and the neural PLC under the governor (the status line shows it).
    holes = sum(v for k, v in r["decisions"].items() if k != "regular")
    assert holes >= st["lost"] - 1 - r["jitter"]["dropped_empty"]
    assert r["jitter"]["after_end"] == 0 and r["end"] == "bye"
    assert set(r["decisions"]) <= {"regular", "lbrr", "dred", "neural_plc", "opus_plc"}
    assert r["governor"]["slots_observed"] > 0 and "| load " in out
    assert len(read_ogg_opus(tmp_path / "s.opus").packets) == 100
    assert "a=rtpmap:96 opus/48000/2" in (tmp_path / "s.sdp").read_text()
    played = np.frombuffer((tmp_path / "out.raw").read_bytes(), "<i2")
    assert len(played) >= 90 * 320 and np.abs(played).max() > 1000


@pytest.mark.slow  # paced: real time
def test_live_command_with_alsa_file_plugins(tmp_path):
    src = voiced(1.5)
    env = _alsa_env(tmp_path, src)
    p = subprocess.run(_cli("live", "--device", "edge_mic", "--playback-device", "edge_spk", "--seconds", "1.0",
                            "--loss", "10", "--report", str(tmp_path / "l.json"), "--status-interval", "0"),
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
    assert p.returncode == 0, p.stderr
    # The board's defaults carry DRED, so the receiver waits 60 ms (not LBRR's 20) for later packets.
    assert "96.5 ms" in p.stdout and "accounted yes" in p.stdout
    rep = json.loads((tmp_path / "l.json").read_text())
    assert rep["accounting"]["ok"] and rep["frames"] == 50
    assert rep["latency_budget_ms"]["recovery_lookahead_ms"] == 60 and rep["dred"]["packets_with_payload"] > 40
    played = np.frombuffer((tmp_path / "out.raw").read_bytes(), "<i2")
    d = 104 + 3 * 320 + 320  # codec + recovery look-ahead + the playback prefill period
    good = [i for i in range(50) if rep["decisions"]]
    assert len(played) == 320 + rep["frames_played"] * 320 and good
    a, b = src[3200:12800].astype(float), played[3200 + d:12800 + d].astype(float)
    assert np.corrcoef(a, b)[0, 1] > 0.6


def test_cli_rejects_bad_arguments(tmp_path):
    from edge_dred.cli.main import main

    assert main(["send", "--dest", "nonsense", "--device", "mock", "--seconds", "0.1"]) == 2
    assert main(["recv", "--listen", "127.0.0.1:99999", "--device", "mock", "--seconds", "0.1"]) == 2
    assert main(["live", "--device", "mock", "--seconds", "0.1", "--jitter-ms", "900"]) == 2


def test_live_without_a_sound_card_suggests_the_mock_device(capsys):
    from edge_dred.cli.main import main

    assert main(["live", "--device", "hw:97", "--no-dred", "--no-neural-plc", "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "hw:97" in err and "--device mock" in err, err


def test_live_commands_refuse_to_overwrite_their_input(tmp_path, capsys):
    from edge_dred.audio.wavio import write_wav
    from edge_dred.cli.main import main

    src = tmp_path / "in.wav"
    write_wav(src, voiced(0.2))
    before = src.read_bytes()
    # Without --playback-device, live plays into --device: the capture file itself.
    assert main(["live", "--device", f"file:{src}", "--no-dred", "--no-neural-plc", "--seconds", "0.1"]) == 2
    assert main(["send", "--dest", "127.0.0.1:9", "--device", f"file:{src}", "--report", str(src),
                 "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("refusing to overwrite") == 2, err
    assert src.read_bytes() == before


def test_recv_core_counts_and_drops_hostile_datagrams():
    from edge_dred.live import RecvCore
    from edge_dred.transport.rtp import build_rtp

    core = RecvCore(LiveConfig())
    rng = np.random.default_rng(0)
    for _ in range(300):
        core.on_datagram(rng.integers(0, 256, rng.integers(0, 80), dtype=np.uint8).tobytes(), 0.0)
    core.on_datagram(build_rtp(b"\x03\x00", 1, 960, 5), 0.0)  # RTP fine, Opus invalid (frame count 0)
    core.on_datagram(build_rtp(b"\x18\x00\x00", 2, 1920, 5), 0.0)  # a valid 40 ms packet: unsupported
    core.on_datagram(bytes(70000), 0.0)
    c = core.counts
    assert c["datagrams"] == 303
    assert c["bad_opus"] >= 1 and c["unsupported_duration"] >= 1 and c["bad_rtp"] >= 250
    assert core.report()["accounting"]["datagrams_balance_ok"]
    frame = core.next_frame(1.0)
    assert frame.shape == (320,) and frame.dtype == np.int16
