"""The artifact recipe's lossy-coding step (training/lossy_coding.py, artifact_data.make_examples).

The recipe itself is testable without ffmpeg (the coder is replaced by a
recording stand-in); the round trips through ffmpeg are skipped where it is
absent.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import voiced

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import artifact_data as ad  # noqa: E402
import lossy_coding as lc  # noqa: E402

SR = 16000


def _have_encoders() -> bool:
    try:
        lc.require_ffmpeg()
    except lc.FFmpegMissing:
        return False
    return True


needs_ffmpeg = pytest.mark.skipif(not _have_encoders(),
                                  reason="ffmpeg with libmp3lame/libvorbis/aac not installed "
                                         "(./quickstart.sh test installs it); the lossy recipe is training-only")


def _speech(seconds: float = 1.0, seed: int = 0, f0: float = 140.0) -> np.ndarray:
    return voiced(seconds, f0=f0, seed=seed).astype(np.float32) / 32768.0


def test_chains_are_seeded_and_in_range():
    a = [lc.draw_chain(np.random.default_rng(s)) for s in range(200)]
    assert a == [lc.draw_chain(np.random.default_rng(s)) for s in range(200)]
    for c in a:
        assert c.bitrate in lc.CODECS[c.codec] and c.rate in lc.CODING_RATES
        assert c.lowpass_hz is None or lc.LOWPASS_HZ[0] <= c.lowpass_hz <= lc.LOWPASS_HZ[1]
    share = {k: np.mean([c.codec == k for c in a]) for k in lc.CODECS}
    assert share["mp3"] > 0.5 and share["vorbis"] > 0.03 and share["aac"] > 0.03
    assert all(c.codec == "mp3" for c in (lc.draw_chain(np.random.default_rng(s), ("mp3",)) for s in range(20)))


def test_missing_ffmpeg_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(lc.shutil, "which", lambda name: None)
    with pytest.raises(lc.FFmpegMissing, match="needs ffmpeg with libmp3lame"):
        lc.require_ffmpeg()
    with pytest.raises(lc.FFmpegMissing):
        lc.code_batch([_speech()], lc.Chain("mp3", 64000, 22050))


class _FakeCoder:
    """Stands in for ffmpeg: marks what it codes by scaling it, records each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, examples, chain, exe=None):
        self.calls.append((len(examples), chain))
        return [e * 0.5 for e in examples]


def test_recipe_codes_clean_and_defect_examples_in_one_call_per_batch(monkeypatch):
    fake = _FakeCoder()
    monkeypatch.setattr(lc, "code_batch", fake)
    segs = [_speech(seed=i, f0=120 + 5 * i) for i in range(6)]
    rng = np.random.default_rng(3)
    coded_by_class = {0: [], 1: []}
    for batch in range(30):
        classes = [0, 0, 0, 1, 3, 5]
        out = ad.make_examples(segs, rng, classes, lossy="/fake/ffmpeg")
        for (a, y, c, params), cls in zip(out, classes):
            assert c == cls and a.shape == (SR,)
            assert (y.sum() == 0) == (cls == 0)  # coding never changes the label
            coded_by_class[min(cls, 1)].append("lossy" in params)
    assert all(n <= 6 for n, _ in fake.calls) and len(fake.calls) <= 30
    assert abs(np.mean(coded_by_class[0]) - ad.LOSSY_NONE_P) < 0.15
    assert abs(np.mean(coded_by_class[1]) - ad.LOSSY_DEFECT_P) < 0.15


def test_plain_recipe_never_codes(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("coded without --lossy")

    monkeypatch.setattr(lc, "code_batch", boom)
    segs = [_speech(seed=i) for i in range(4)]
    a = ad.make_examples(segs[:1], np.random.default_rng(9), [0])
    b = ad.make_example(segs[0], np.random.default_rng(9), 0)
    assert np.array_equal(a[0][0], b[0]) and "lossy" not in b[3]
    assert len(ad.clean_set(segs, [ad.file_activity((s * 32767).astype(np.int16)) for s in segs], 1, 5)) == 5


@needs_ffmpeg
@pytest.mark.parametrize("chain", [lc.Chain("mp3", 128000, 44100), lc.Chain("mp3", 32000, 22050, 7500.0),
                                   lc.Chain("vorbis", 64000, 16000), lc.Chain("aac", 96000, 22050)],
                         ids=lambda c: c.describe())
def test_round_trip_is_aligned_and_keeps_examples_apart(chain):
    ex = [_speech(seed=1, f0=110), np.zeros(SR, np.float32), _speech(0.7, seed=2, f0=180)]
    y = lc.code_batch(ex, chain)
    assert [len(v) for v in y] == [len(v) for v in ex] and all(v.dtype == np.float32 for v in y)
    for a, b in ((ex[0], y[0]), (ex[2], y[2])):
        # aligned to the sample: the waveform survives to a perceptual coder's accuracy
        snr = 10 * np.log10(np.sum(a ** 2) / np.sum((a - b) ** 2))
        assert snr > 10, snr
        assert snr > 10 * np.log10(np.sum(a ** 2) / np.sum((a[:-2] - b[2:]) ** 2)) + 1
    # the silent example between two loud ones stays silent: no bleed across the gaps
    assert np.max(np.abs(y[1])) < 1e-3


@needs_ffmpeg
def test_coding_removes_the_top_band_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)  # white: energy up to 8 kHz
    chain = lc.Chain("mp3", 32000, 22050, 7000.0)
    y = lc.code_batch([x], chain)[0]
    assert np.array_equal(y, lc.code_batch([x], chain)[0])
    f = np.fft.rfftfreq(SR, 1 / SR)
    p = lambda v, lo, hi: np.sum(np.abs(np.fft.rfft(v))[(f >= lo) & (f < hi)] ** 2)  # noqa: E731
    assert p(y, 7600, 8000) < 0.1 * p(x, 7600, 8000)


@needs_ffmpeg
def test_recipe_with_ffmpeg_makes_valid_examples():
    exe = lc.require_ffmpeg()
    segs = [_speech(seed=i) for i in range(8)]
    out = ad.make_examples(segs, np.random.default_rng(11), [0, 0, 0, 0, 2, 4, 1, 3], exe)
    assert any("lossy" in p for *_, p in out)
    for a, y, c, p in out:
        assert a.shape == (SR,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
