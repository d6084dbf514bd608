"""The capture/play contract: mock, file and ALSA backends, x-run recovery, pacing."""
import errno
import time
import types

import numpy as np
import pytest

from edge_dred.audio.alsa import AlsaDevice
from edge_dred.audio.device import (
    AudioDeviceError,
    FileDevice,
    LoadMeter,
    MockDevice,
    Pacer,
    open_capture,
    open_playback,
)
from edge_dred.audio.wavio import load_audio, write_wav

from conftest import voiced


def test_mock_capture_returns_the_source_in_periods_of_10_ms():
    src = voiced(0.2)
    dev = MockDevice("capture", source=src, loop=False, period_ms=10)
    frame = np.zeros(320, np.int16)
    got = []
    for _ in range(12):
        dev.capture(frame)
        got.append(frame.copy())
    got = np.concatenate(got)
    assert np.array_equal(got[:len(src)], src)
    assert not got[len(src):].any()
    assert dev.periods == 24


def test_mock_xruns_are_recovered_with_concealment_and_counted():
    src = np.full(3200, 1000, np.int16)
    cap = MockDevice("capture", source=src, faults={2: "xrun", 5: "xrun"})
    frame = np.zeros(320, np.int16)
    frames = []
    for _ in range(8):
        cap.capture(frame)
        frames.append(frame.copy())
    assert cap.overruns == 2 and cap.xruns == 2
    assert frames[2][0] == 1000 and frames[2][-1] < 10  # faded copy of the last period
    play = MockDevice("playback", faults={1: "xrun"})
    for f in frames[:3]:
        play.play(f)
    assert play.underruns == 1 and len(play.recorded) == 4 * 320


def test_buffers_and_directions_are_checked():
    cap = MockDevice("capture")
    with pytest.raises(AudioDeviceError):
        cap.capture(np.zeros(300, np.int16))
    with pytest.raises(AudioDeviceError):
        cap.capture(np.zeros(320, np.float32))
    with pytest.raises(AudioDeviceError):
        cap.play(np.zeros(320, np.int16))
    with pytest.raises(AudioDeviceError):
        MockDevice("capture", period_ms=15)
    with pytest.raises(AudioDeviceError):
        open_capture("file:")


def test_file_device_roundtrip(tmp_path):
    src = voiced(0.5)
    write_wav(tmp_path / "in.wav", src)
    cap = open_capture(f"file:{tmp_path / 'in.wav'}")
    play = open_playback(f"file:{tmp_path / 'out.wav'}")
    frame = np.zeros(320, np.int16)
    for _ in range(30):
        cap.capture(frame)
        play.play(frame)
    play.close()
    out = load_audio(tmp_path / "out.wav").pcm
    assert len(out) == 30 * 320
    assert np.array_equal(out[:len(src)], src) and not out[len(src):].any()


def test_pacer_holds_real_time():
    p = Pacer(0.01)
    t0 = time.monotonic()
    for _ in range(11):
        p.wait()
    assert 0.09 <= time.monotonic() - t0 < 1.0  # generous: CI machines are shared


def test_load_meter():
    m = LoadMeter(0.01, warmup=0)
    for _ in range(3):
        m.start()
        time.sleep(0.002)
        m.stop()
    assert 0.15 < m.mean < 2.0 and m.peak >= m.mean and m.periods == 3


class _FakePCM:
    """Stands in for alsaaudio.PCM: scripted return values of read()/write()."""

    def __init__(self, script, rate=16000, period=320):
        self.script = list(script)
        self.written = []
        self.dropped = 0
        self._info = {"rate": rate, "channels": 1, "format_name": "S16_LE", "period_size": period}

    def info(self):
        return self._info

    def _next(self):
        return self.script.pop(0) if self.script else "ok"

    def read(self):
        s = self._next()
        if s == "epipe":
            return -errno.EPIPE, b""
        if s == "error":
            raise _FakeError("Input/output error")
        return 320, (np.arange(320, dtype="<i2") + 100).tobytes()

    def write(self, data):
        s = self._next()
        if s == "epipe":
            return -errno.EPIPE
        if s == "error":
            raise _FakeError("Input/output error")
        self.written.append(np.frombuffer(data, "<i2").copy())
        return len(data) // 2

    def drop(self):
        self.dropped += 1

    def close(self):
        pass


class _FakeError(Exception):
    pass


def _fake_module(pcm):
    return types.SimpleNamespace(PCM=lambda **kw: pcm, PCM_CAPTURE=1, PCM_PLAYBACK=0, PCM_NORMAL=0,
                                 PCM_FORMAT_S16_LE=2, ALSAAudioError=_FakeError)


def test_alsa_capture_overrun_is_concealed_and_counted():
    pcm = _FakePCM(["ok", "epipe", "ok", "error", "ok"])
    dev = AlsaDevice("hw:9", "capture", alsaaudio=_fake_module(pcm)).open()
    frame = np.zeros(320, np.int16)
    out = []
    for _ in range(5):
        dev.capture(frame)
        out.append(frame.copy())
    assert dev.overruns == 2 and dev.errors == 1 and pcm.dropped == 1
    assert out[0][5] == 105 and out[1][0] == 100 and abs(int(out[1][-1])) < 5  # faded copy
    assert np.array_equal(out[2], out[0])


def test_alsa_underrun_refills_then_rewrites_and_persistent_errors_raise():
    pcm = _FakePCM(["ok", "ok", "epipe", "ok", "ok"])  # first write is the prefill
    dev = AlsaDevice("hw:9", "playback", alsaaudio=_fake_module(pcm)).open()
    a = np.full(320, 500, np.int16)
    dev.play(a)
    dev.play(a + 1)
    assert dev.underruns == 1
    assert len(pcm.written) == 4  # prefill, a, concealment fill, a + 1
    assert not pcm.written[0].any() and pcm.written[2][0] == 500 and np.array_equal(pcm.written[3], a + 1)
    bad = AlsaDevice("hw:9", "playback", max_consecutive_errors=3, alsaaudio=_fake_module(_FakePCM(["error"] * 20)))
    bad.open()
    with pytest.raises(AudioDeviceError, match="keeps failing"):
        for _ in range(5):
            bad.play(a)


def test_alsa_refuses_a_device_at_another_rate():
    with pytest.raises(AudioDeviceError, match="plughw"):
        AlsaDevice("hw:9", "capture", alsaaudio=_fake_module(_FakePCM([], rate=48000))).open()


ASOUND = """
pcm.edge_null {{ type null }}
pcm.edge_mic {{ type file slave.pcm "edge_null" file "/dev/null" infile "{inp}" format "raw" }}
pcm.edge_spk {{ type file slave.pcm "edge_null" file "{out}" format "raw" }}
"""


def test_real_alsa_through_file_and_null_plugins(tmp_path, monkeypatch):
    pytest.importorskip("alsaaudio", reason="pyalsaaudio not installed (pip install '.[alsa]')")
    src = voiced(0.6)
    (tmp_path / "in.raw").write_bytes(src.astype("<i2").tobytes())
    conf = tmp_path / "asound.conf"
    conf.write_text(ASOUND.format(inp=tmp_path / "in.raw", out=tmp_path / "out.raw"))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    cap = open_capture("alsa:edge_mic", pace=False)
    play = open_playback("edge_spk", period_ms=10, pace=True)
    frame = np.zeros(320, np.int16)
    t0 = time.monotonic()
    for _ in range(25):
        cap.capture(frame)
        play.play(frame)
    elapsed = time.monotonic() - t0
    cap.close()
    play.close()
    out = np.frombuffer((tmp_path / "out.raw").read_bytes(), "<i2")
    # One silent prefill period, then exactly what the microphone file held.
    assert len(out) == play.period + 25 * 320
    assert not out[:play.period].any() and np.array_equal(out[play.period:], src[:25 * 320])
    assert elapsed >= 0.45  # paced: 25 frames of 20 ms
    assert cap.xruns == 0 and play.xruns == 0
    with pytest.raises(AudioDeviceError, match="cannot open"):
        open_capture("alsa:no_such_pcm")


def test_alsa_without_a_sound_card_suggests_the_mock_device():
    def no_card(**kw):
        raise _FakeError("No such file or directory [default]")

    mod = types.SimpleNamespace(PCM=no_card, PCM_CAPTURE=1, PCM_PLAYBACK=0, PCM_NORMAL=0, PCM_FORMAT_S16_LE=2,
                                ALSAAudioError=_FakeError)
    with pytest.raises(AudioDeviceError, match="cannot open ALSA capture device 'default'.*--device mock"):
        AlsaDevice("default", "capture", alsaaudio=mod).open()
