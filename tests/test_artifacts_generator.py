"""Defect generator: each defect present and measurable, seeds reproduce, bad input refused."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import voiced

from edge_dred.artifacts.generator import (DEFECTS, HISS_OVER_FLOOR_DB, HISS_SNR_DB, HUM_LEVEL_DB,
                                           MAINS_RESIDUE_DB, ROOM_SNR_DB,
                                           VARIANTS, active_level, apply_defect, mix_defects, opus_roundtrip,
                                           ordinary_recording)

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return voiced(2.0).astype(np.float32) / 32768.0


def _line_db(y: np.ndarray, f: float) -> float:
    """Power within +/- 1 Hz of ``f`` re the whole signal (1 s windows, 1 Hz bins)."""
    seg = y[: len(y) // SR * SR].reshape(-1, SR) * np.hanning(SR)
    p = np.mean(np.abs(np.fft.rfft(seg, axis=1)) ** 2, axis=0)
    k = int(round(f))
    return 10 * np.log10(p[k - 1:k + 2].sum() / p.sum())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hum_energy_at_the_mains_harmonics(speech, seed):
    d = apply_defect(speech, "hum", seed, level_db=-20)
    f0, power = d.params["f0"], active_level(speech)[0]
    hum = d.audio - speech
    assert abs(10 * np.log10(np.mean(hum ** 2) / power) - (-20)) < 3.5
    # the fundamental (and the 2nd harmonic when drawn and strong) stands out below the voice's pitch
    assert _line_db(d.audio, f0) > _line_db(speech, f0) + 10
    if 2 in d.params["harmonics"] and d.params["alpha"] < 1.0:
        assert _line_db(d.audio, 2 * f0) > _line_db(speech, 2 * f0) + 6
    assert d.params["f0"] == pytest.approx(50, rel=0.006) or d.params["f0"] == pytest.approx(60, rel=0.006)


@pytest.mark.parametrize("variant", VARIANTS["hiss"])
def test_hiss_at_the_drawn_snr(speech, variant):
    d = apply_defect(speech, "hiss", 5, variant=variant, level_db=15)
    snr = 10 * np.log10(active_level(speech)[0] / np.mean((d.audio - speech) ** 2))
    assert abs(snr - 15) < 2.5
    assert d.labels == ("hiss",)


def test_drawn_hiss_stays_clear_of_the_recordings_own_floor(speech):
    noisy = speech + np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32) \
        * np.float32(np.sqrt(active_level(speech)[0]) * 10 ** (-18 / 20))  # a floor at 18 dB SNR
    for seed in range(8):
        d = apply_defect(noisy, "hiss", seed)
        assert HISS_SNR_DB[0] <= d.params["snr_db"] <= 18 - HISS_OVER_FLOOR_DB + 0.5
    room = apply_defect(noisy, "none", 1, variant="room")  # the floor is already louder than any room floor
    assert np.max(np.abs(room.audio - noisy)) < 1e-6


def test_hard_clipping_puts_the_drawn_fraction_at_the_rails(speech):
    for seed in range(4):
        d = apply_defect(speech, "distortion", seed, variant="hard")
        a = np.abs(d.audio)
        at_rails = np.mean(a >= a.max() * 0.999)
        assert 0.7 * d.params["clip_fraction"] <= at_rails <= 1.3 * d.params["clip_fraction"] + 1e-3
        clean = np.abs(speech)
        assert np.mean(clean >= clean.max() * 0.999) < 1e-3  # the clean signal has no rails


def test_asymmetric_clipping_and_bitcrushing_are_measurable(speech):
    d = apply_defect(speech, "distortion", 3, variant="asymmetric")
    y = d.audio
    top, bottom = np.mean(y >= y.max() * 0.999), np.mean(y <= y.min() * 0.999)
    assert max(top, bottom) > 3 * min(top, bottom) and max(top, bottom) >= 0.7 * d.params["clip_fraction"]
    b = apply_defect(speech, "distortion", 4, variant="bitcrush")
    assert len(np.unique(b.audio)) <= 2 ** b.params["bits"] + 1
    assert len(np.unique(speech)) > 1000
    for v in ("soft", "saturation"):
        s = apply_defect(speech, "distortion", 5, variant=v)
        crest = lambda z: np.max(np.abs(z)) / np.sqrt(np.mean(z ** 2))  # noqa: E731
        assert crest(s.audio) < 0.9 * crest(speech)  # compressed peaks


def test_impulse_count_matches_the_drawn_events(speech):
    d = apply_defect(speech, "clicks", 11, variant="impulse", rate=6)
    pos = d.params["positions"]
    assert len(pos) == 12  # 6/s over 2 s
    diff = np.abs(d.audio - speech)
    hits = np.flatnonzero(diff > 0.02 * np.max(np.abs(speech)))
    groups = 1 + int(np.sum(np.diff(hits) > 4))
    expected = 1 + int(np.sum(np.diff(pos) > 4))
    assert groups == expected
    assert set(hits) <= {p + i for p in pos for i in range(3)}


def test_dropouts_zero_1_to_40_ms_and_rates_hold(speech):
    d = apply_defect(speech, "clicks", 2, variant="dropout", rate=3)
    assert len(d.params["positions"]) == 6
    for p in d.params["positions"]:
        assert np.all(d.audio[p:p + 16] == 0)  # at least 1 ms
    zeros = np.flatnonzero(d.audio == 0)
    assert len(zeros) <= 6 * 0.040 * SR + 10
    for seed in range(5):
        r = apply_defect(speech, "clicks", seed).params["rate"]
        assert 1 <= r <= 20


def test_none_variants_keep_the_speech(speech):
    for v in VARIANTS["none"]:
        d = apply_defect(speech, "none", 3, variant=v)
        assert d.labels == ("none",) and d.audio.shape == speech.shape
        corr = np.corrcoef(d.audio, speech)[0, 1]
        assert corr > {"opus_plc": 0.5, "opus": 0.8, "recording": 0.75}.get(v, 0.9), v
    # A room floor tops the recording's own floor up to the drawn SNR (>= ROOM_SNR_DB[0]) ...
    quiet = speech.copy()
    quiet[6000:14000] = np.random.default_rng(0).normal(0, 1e-5, 8000)   # a pause with a clean floor
    added = np.mean((apply_defect(quiet, "none", 4, variant="room").audio - quiet) ** 2)
    assert 0 < added and 10 * np.log10(active_level(quiet)[0] / added) >= ROOM_SNR_DB[0] - 0.1
    # ... and adds nothing where the floor is already there (this signal never pauses).
    assert np.array_equal(apply_defect(speech, "none", 4, variant="room").audio, speech)


def test_ordinary_recording_keeps_its_floor_below_the_defects(speech):
    """The clean class's recording chain is seeded and its floor stays clear of the hiss range."""
    for seed in range(6):
        y = ordinary_recording(speech, seed)
        assert y.dtype == np.float32 and y.shape == speech.shape and np.max(np.abs(y)) <= 0.98 + 1e-6
        assert np.array_equal(y, ordinary_recording(speech, seed))
        assert np.corrcoef(y, speech)[0, 1] > 0.75
    # a floor at the lowest room SNR is 5 dB below the weakest hiss; a mains residue 15 dB below the weakest hum
    assert ROOM_SNR_DB[0] >= HISS_SNR_DB[1] + 5 and MAINS_RESIDUE_DB[1] <= HUM_LEVEL_DB[0] - 15
    quiet = np.zeros_like(speech)
    quiet[8000:24000] = speech[8000:24000]
    for seed in range(12):
        y = ordinary_recording(quiet, seed).astype(np.float64)
        # a pause of the input: only the chain's floor (with rumble and mains line below 300 Hz),
        # at least ROOM_SNR_DB[0] under the speech above 300 Hz, where hiss would be
        gap = np.fft.rfft(y[:6000])
        gap[np.fft.rfftfreq(6000, 1 / SR) < 300] = 0
        gap = np.fft.irfft(gap, 6000)
        assert 10 * np.log10(active_level(y)[0] / (np.mean(gap ** 2) + 1e-20)) >= ROOM_SNR_DB[0] - 1


def test_opus_roundtrip_is_aligned(speech):
    y = opus_roundtrip(speech, 32000)
    lags = [np.dot(y[1000:-1000], np.roll(speech, k)[1000:-1000]) for k in range(-20, 21)]
    assert abs(int(np.argmax(lags)) - 20) <= 1


def test_seeds_reproduce(speech):
    for defect in DEFECTS:
        a = apply_defect(speech, defect, 123)
        b = apply_defect(speech, defect, 123)
        c = apply_defect(speech, defect, 124)
        assert np.array_equal(a.audio, b.audio) and a.params == b.params
        if defect != "none":
            assert not np.array_equal(a.audio, c.audio)
    m1, m2 = mix_defects(speech, ("hum", "clicks"), 9), mix_defects(speech, ("clicks", "hum"), 9)
    assert np.array_equal(m1.audio, m2.audio) and m1.labels == ("hum", "clicks")


def test_mixed_mode_has_both_defects(speech):
    m = mix_defects(speech, ("hiss", "distortion"), 1)
    assert m.labels == ("hiss", "distortion")
    assert set(m.params) == {"hiss", "distortion"}
    assert not np.array_equal(m.audio, speech)


def test_int16_input_is_accepted(speech):
    pcm = voiced(1.0)
    d = apply_defect(pcm, "hum", 0)
    assert d.audio.dtype == np.float32 and np.max(np.abs(d.audio)) <= 1.0


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 16000), np.float32), "1-D"),
    (np.zeros(100, np.float32), "samples"),
    (np.zeros(16000, np.float32), "digital silence"),
    (np.full(16000, np.nan, np.float32), "NaN"),
    (np.full(16000, 2.0, np.float32), r"\[-1, 1\]"),
    (np.zeros(16000, np.int32), "dtype"),
])
def test_bad_signals_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        apply_defect(bad, "hum", 0)


def test_bad_arguments_are_refused(speech):
    with pytest.raises(ValueError, match="unknown defect"):
        apply_defect(speech, "wow", 0)
    with pytest.raises(ValueError, match="variant"):
        apply_defect(speech, "hiss", 0, variant="purple")
    for seed in (-1, "1", True, 1.5):
        with pytest.raises(ValueError, match="seed"):
            apply_defect(speech, "hiss", seed)
    for pair in (("hum", "hum"), ("hum",), ("none", "hum"), ("hum", "hiss", "clicks")):
        with pytest.raises(ValueError, match="two different"):
            mix_defects(speech, pair, 0)
