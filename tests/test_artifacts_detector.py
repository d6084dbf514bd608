"""Artifact detector: shipped model under the manifest, detection on synthetic speech, int8 vs float,
``edge-dred inspect`` end to end, and a live monitor that never blocks the audio path."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import voiced

from edge_dred.constants import FRAME_SAMPLES, SAMPLE_RATE
from edge_dred.artifacts.detector import MODEL_KEY, MODEL_VERSION, ArtifactDetector, Verdict, segments
from edge_dred.artifacts.generator import DEFECTS, apply_defect
from edge_dred.artifacts.monitor import QUEUE_SECONDS, ArtifactMonitor, LiveMonitor
from edge_dred.audio.wavio import write_wav
from edge_dred.models import loader

FLOAT_MODEL = Path(__file__).parent / "data" / "artifact_detector_f32.tflite"


@pytest.fixture(scope="module")
def detector() -> ArtifactDetector:
    return ArtifactDetector()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Synthetic speech made here: espeak-ng when installed (as in CI), else a voiced signal; float32."""
    from edge_dred.tools.demo_audio import _espeak

    pcm = _espeak("The quick brown fox jumps over the lazy dog. A voice link on a small board can fail in "
                  "many ways, and we would like to hear about it before the listener does.")
    if pcm is None or len(pcm) < 6 * SAMPLE_RATE:
        pcm = voiced(8.0)
    x = pcm[: 6 * SAMPLE_RATE].astype(np.float32) / 32768.0
    # A recording never has digital silence between words: a faint noise floor (-75 dB re full scale).
    return x + np.random.default_rng(0).normal(0, 10 ** (-75 / 20), len(x)).astype(np.float32)


def test_shipped_model_loads_under_the_manifest(detector):
    path, entry = loader.verify_model_file(MODEL_KEY, MODEL_VERSION)
    assert detector.path == path
    assert entry["weights"] <= 200_000
    assert entry["labels"] == list(DEFECTS)


def test_corrupted_or_missing_model_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    (d / "manifest.json").write_bytes((loader.MODELS_DIR / "manifest.json").read_bytes())
    blob = bytearray((loader.MODELS_DIR / "artifact_detector.tflite").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (d / "artifact_detector.tflite").write_bytes(bytes(blob))
    monkeypatch.setattr(loader, "MODELS_DIR", d)
    with pytest.raises(loader.ModelFileError, match="corrupted"):
        ArtifactDetector()
    (d / "artifact_detector.tflite").unlink()
    with pytest.raises(loader.ModelFileError, match="missing"):
        ArtifactDetector()
    with pytest.raises(loader.ModelFileError, match="not found"):
        ArtifactDetector(tmp_path / "nope.tflite")


@pytest.mark.parametrize("defect, kw", [
    ("none", {"variant": "clean"}),
    ("none", {"variant": "opus"}),
    ("hum", {"level_db": -20}),
    ("hiss", {"level_db": 15}),
    ("distortion", {"variant": "hard"}),
    ("distortion", {"variant": "bitcrush"}),
    ("clicks", {"variant": "impulse", "rate": 5}),
    ("clicks", {"variant": "dropout", "rate": 5}),
])
def test_detects_generated_defects_on_synthetic_speech(detector, speech, defect, kw):
    right = 0
    verdicts = []
    for start, seg in segments(speech):
        d = apply_defect(seg, defect, 7 + int(start), **kw)
        v = detector.classify(d.audio, start)
        verdicts.append(v.label)
        right += v.label == defect
    assert right >= len(verdicts) - 1, verdicts  # at most one second of six wrong


def test_verdict_scores_and_text(detector, speech):
    d = apply_defect(speech[:SAMPLE_RATE], "hum", 3, level_db=-15)
    v = detector.classify(d.audio)
    assert set(v.scores) == set(DEFECTS)
    assert all(0.0 <= s <= 1.0 for s in v.scores.values())
    assert v.label == "hum" and v.text().startswith("hum -") and "dB" in v.text()
    with pytest.raises(ValueError, match="16000 samples"):
        detector.classify(speech[:8000])
    with pytest.raises(ValueError, match="at least 1 s"):
        detector.analyze(speech[:8000])


def test_int8_agrees_with_the_float_model(detector, speech):
    ref = ArtifactDetector(FLOAT_MODEL)
    agree, diffs, n = 0, [], 0
    for i, defect in enumerate(DEFECTS * 4):
        _, seg = segments(speech)[i % 6]
        x = apply_defect(seg, defect, 100 + i).audio
        a, b = detector.defect_scores(x), ref.defect_scores(x)
        dec = lambda s: int(np.argmax(s)) + 1 if s.max() >= 0.5 else 0  # noqa: E731
        agree += dec(a) == dec(b)
        diffs.append(np.abs(a - b).max())
        n += 1
    assert agree >= n - 1
    assert np.median(diffs) < 0.1


# ---------------------------------------------------------------------------------------- inspect


def _run_cli(argv, capsys):
    from edge_dred.cli.main import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_inspect_end_to_end(tmp_path, speech, capsys):
    clean = tmp_path / "clean.wav"
    hum = tmp_path / "hum.wav"
    write_wav(clean, np.round(speech[:3 * SAMPLE_RATE] * 32767).astype(np.int16))
    write_wav(hum, np.round(apply_defect(speech[:3 * SAMPLE_RATE + 9000], "hum", 1, level_db=-15).audio
                            * 32767).astype(np.int16))
    rc, out, err = _run_cli(["inspect", str(clean), str(hum), "--json"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert [r["file"] for r in res] == [str(clean), str(hum)]
    assert len(res[0]["segments"]) == 3 and len(res[1]["segments"]) == 4  # 3.56 s: the tail as the last 1 s
    assert res[1]["segments"][-1]["start_s"] == pytest.approx(2.5625, abs=1e-3)
    assert res[1]["summary"]["counts"].get("hum", 0) >= 3
    assert res[0]["summary"]["flagged"] <= 1
    png = tmp_path / "plots" / "p.png"
    rc, out, err = _run_cli(["inspect", str(hum), "--plot", str(png)], capsys)
    assert rc == 0, err
    assert "hum" in out and "flagged" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_bad_input_gives_clean_errors(tmp_path, speech, capsys):
    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(4000, np.int16))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    good = tmp_path / "good.wav"
    write_wav(good, np.round(speech[:SAMPLE_RATE] * 32767).astype(np.int16))
    rc, out, err = _run_cli(["inspect", str(tmp_path / "missing.wav"), str(short), str(junk), str(good)], capsys)
    assert rc == 2
    assert "Traceback" not in err
    for name in ("missing.wav", "short.wav", "junk.wav"):
        assert name in err
    assert "at least 1 s" in err
    assert str(good) in out  # the good file is still inspected
    rc, out, err = _run_cli(["inspect", str(good), "--plot", str(tmp_path / "x.jpg")], capsys)
    assert rc == 2 and "PNG" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------- monitor


class _SlowDetector:
    """Takes ``delay`` seconds per segment: a board far too slow for the monitor."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    def classify(self, segment, start_s=0.0):
        self.calls += 1
        time.sleep(self.delay)
        return Verdict("clicks", {k: 0.0 for k in DEFECTS}, "3/s", start_s, ("clicks",))


def test_monitor_never_blocks_the_audio_path():
    slow = _SlowDetector(0.5)
    mon = ArtifactMonitor("playout", lambda: slow)
    pcm = voiced(12.0)
    worst = 0.0
    for i in range(len(pcm) // FRAME_SAMPLES):
        t0 = time.perf_counter()
        mon.feed(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
        worst = max(worst, time.perf_counter() - t0)
    mon.close(drain_s=5.0)
    r = mon.report()
    # 12 seconds arrive at once; the detector needs 0.5 s each: most are dropped, none waited for.
    assert worst < 0.1  # far below one 0.5 s analysis
    assert r["dropped_s"] + r["analysed_s"] == 12
    assert r["analysed_s"] <= QUEUE_SECONDS + 2 and slow.calls == r["analysed_s"]
    assert mon.status() == "playout: clicks 3/s"


def test_monitor_reports_flagged_seconds_and_respects_the_governor():
    class Gov:
        ok = True

        def allow_monitor(self):
            return self.ok

    gov = Gov()
    mon = ArtifactMonitor("mic", lambda: _SlowDetector(0.0), governor=gov)
    pcm = voiced(2.0)
    mon.feed(pcm)
    gov.ok = False
    mon.feed(pcm)
    deadline = time.time() + 5
    while mon.analysed < 2 and time.time() < deadline:
        time.sleep(0.01)
    mon.close()
    r = mon.report()
    assert r["analysed_s"] == 2 and r["skipped_by_governor_s"] == 2
    assert [f["start_s"] for f in r["flagged"]] == [0.0, 1.0]
    assert r["flagged_counts"] == {"clicks": 2}
    assert mon.status() == "mic: clicks 3/s"


def test_monitor_without_a_model_switches_itself_off():
    def broken():
        raise loader.ModelFileError("model file x is missing")

    mon = ArtifactMonitor("mic", broken)
    mon._thread.join(2)
    mon.feed(voiced(1.0))
    mon.close()
    assert mon.status() == "mic: off" and "missing" in mon.report()["error"]


def test_governor_drops_the_monitor_first():
    from edge_dred.degrade import Level, LoadGovernor

    gov = LoadGovernor(0.014, high=0.85, low=0.5, degrade_slots=3)
    for _ in range(20):
        gov.observe(0.002)
    assert gov.allow_monitor()
    # Slots just under the budget: the average climbs past `high`; the monitor stops at once,
    # the receiver keeps its full level until the average has stayed there for `degrade_slots`.
    while gov.load <= gov.high:
        gov.observe(0.013)
    assert gov.level == Level.FULL and not gov.allow_monitor()
    for _ in range(5):
        gov.observe(0.013)
    assert gov.level > Level.FULL and not gov.allow_monitor()


def test_live_session_runs_a_slow_monitor_without_glitches():
    from edge_dred.audio.device import MockDevice
    from edge_dred.live import LiveConfig, LiveSession

    slow = _SlowDetector(0.3)
    cfg = LiveConfig(governor=False)
    cap, play = MockDevice("capture", source=voiced(4.0)), MockDevice("playback")
    mon = LiveMonitor(mic=True, playout=True, detector=lambda: slow)
    sess = LiveSession(cap, play, cfg, monitor=mon)
    t0 = time.perf_counter()
    rep = sess.run(4.0)
    assert rep["artifacts"]["mic"]["analysed_s"] + rep["artifacts"]["mic"]["dropped_s"] >= 3
    assert rep["artifacts"]["playout"]["dropped_s"] >= 1
    assert rep["underruns"] == 0 and rep["overruns"] == 0
    assert "mic: " in sess.status_line() and "playout: " in sess.status_line()
    assert time.perf_counter() - t0 < 30
