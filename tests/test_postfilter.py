"""Vocoder postfilters (envelope, pitch, the chain): streaming, direction of the correction, bounds, errors."""
from __future__ import annotations

import numpy as np
import pytest

from edge_dred.dsp.features import band_energies_from_cepstrum, compute_features
from edge_dred.constants import FRAME_SIZE as FRAME, PREEMPHASIS
from edge_dred.dsp.postfilter import EnvelopePostfilter, PitchPostfilter, PostfilterInputError, VocoderPostfilter

NF = 60


def _preemph(x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64) / 32768.0
    return np.concatenate([y[:1], y[1:] - PREEMPHASIS * y[:-1]])


@pytest.fixture(scope="module")
def shaped():
    """A voiced-like signal and the features of a differently coloured one."""
    rng = np.random.default_rng(3)
    n = NF * FRAME
    t = np.arange(n)
    pulses = np.zeros(n)
    pulses[::100] = 1.0
    x = np.convolve(pulses, np.hanning(9), "same") * 6000 + rng.normal(0, 300, n)
    dark = np.convolve(rng.normal(0, 3000, n), np.ones(6) / 6, "same") + 2000 * np.sin(2 * np.pi * 160 * t / 16000)
    return x, compute_features(np.clip(x, -32000, 32000)), compute_features(np.clip(dark, -32000, 32000))


def _band_db(pe: np.ndarray) -> np.ndarray:
    """Band energies (dB) of a pre-emphasised float signal, via the feature analysis."""
    # the features pre-emphasise themselves: undo ours first
    x = np.zeros_like(pe)
    m = 0.0
    for i, v in enumerate(pe):
        m = v + PREEMPHASIS * m
        x[i] = m
    f = compute_features(np.clip(x * 32768.0, -32768, 32767))
    return 10 * band_energies_from_cepstrum(f[:, :18], log10=True)


def test_chunked_equals_one_call(shaped):
    x, _, target = shaped
    frames = _preemph(x).reshape(NF, FRAME)
    one = EnvelopePostfilter().process(frames, target)
    pf = EnvelopePostfilter()
    parts = [pf.process(frames[i:i + k], target[i:i + k]) for i, k in ((0, 1), (1, 7), (8, 20), (28, NF - 28))]
    assert np.array_equal(one, np.concatenate(parts))


def test_own_features_leave_the_signal_nearly_unchanged(shaped):
    x, own, _ = shaped
    frames = _preemph(x).reshape(NF, FRAME)
    y = EnvelopePostfilter().process(frames, own)
    s = slice(10, NF)   # after the zero history
    err = np.sum((y[s] - frames[s]) ** 2)
    assert 10 * np.log10(np.sum(frames[s] ** 2) / err) > 12.0


def test_moves_the_envelope_towards_the_target(shaped):
    x, _, target = shaped
    frames = _preemph(x).reshape(NF, FRAME)
    want = 10 * band_energies_from_cepstrum(target[:, :18], log10=True)[10:]
    before = np.mean(np.abs(_band_db(frames.ravel())[10:] - want))
    full = np.mean(np.abs(_band_db(EnvelopePostfilter(strength=1.0).process(frames, target).ravel())[10:] - want))
    half = np.mean(np.abs(_band_db(EnvelopePostfilter(strength=0.5).process(frames, target).ravel())[10:] - want))
    assert full < half < before - 1.0
    # strength 0 is the identity (a unit impulse filter)
    same = EnvelopePostfilter(strength=0.0).process(frames, target)
    assert np.allclose(same, frames, atol=1e-12)


def test_gain_is_bounded(shaped):
    x, own, _ = shaped
    frames = _preemph(x).reshape(NF, FRAME)
    loud = own.copy()
    loud[:, 0] += 40.0   # asks for a huge boost in every band
    y = EnvelopePostfilter(strength=1.0, max_boost_db=6.0).process(frames, loud)
    ratio = np.sqrt(np.sum(y[10:] ** 2) / np.sum(frames[10:] ** 2))
    assert 1.5 < ratio <= 2.0 * 1.05


def test_prime_makes_the_first_frame_continue_the_history(shaped):
    x, own, _ = shaped
    pe = _preemph(x)
    frames = pe.reshape(NF, FRAME)
    a = EnvelopePostfilter()
    a.prime(pe[:30 * FRAME])
    b = EnvelopePostfilter()
    b.process(frames[:30], own[:30])   # the history b keeps is the unfiltered input
    assert np.array_equal(a.process(frames[30:33], own[30:33]), b.process(frames[30:33], own[30:33]))
    a.reset()
    assert not np.any(a._hist)


def test_bad_inputs_raise_clear_errors(shaped):
    x, own, _ = shaped
    frames = _preemph(x).reshape(NF, FRAME)
    pf = EnvelopePostfilter()
    with pytest.raises(PostfilterInputError, match=r"\(T, 160\)"):
        pf.process(frames.ravel(), own)
    with pytest.raises(PostfilterInputError, match="features"):
        pf.process(frames[:3], own[:2])
    bad = frames[:2].copy()
    bad[0, 5] = np.inf
    with pytest.raises(PostfilterInputError, match="finite"):
        pf.process(bad, own[:2])
    with pytest.raises(PostfilterInputError, match="finite"):
        pf.prime(np.array([0.0, np.nan]))
    for kw in ({"strength": 1.5}, {"taps": 4}, {"max_boost_db": -1.0}):
        with pytest.raises(ValueError):
            EnvelopePostfilter(**kw)
    assert pf.process(np.zeros((0, FRAME)), np.zeros((0, 20))).shape == (0, FRAME)


# ------------------------------------------------------------------ pitch stage

def _voiced(period: float = 100.0, corr: float = 1.0, noise: float = 2.0, seed: int = 5):
    """Pre-emphasised pulse train plus white noise, and features that say (period, corr)."""
    rng = np.random.default_rng(seed)
    n = NF * FRAME
    pulses = np.zeros(n)
    pulses[(np.arange(0, n, period)).astype(int)] = 1.0
    x = np.convolve(pulses, np.hanning(7), "same") * 0.2 + rng.normal(0, 0.2 * noise / np.sqrt(period), n)
    f = np.zeros((NF, 20))
    f[:, 18], f[:, 19] = period, corr
    return x.reshape(NF, FRAME), f


def _ncc(x: np.ndarray, lag: int) -> float:
    a, b = x[lag:], x[:-lag]
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_pitch_chunked_equals_one_call():
    frames, f = _voiced(period=97.3)
    f[::7, 19] = 0.2   # the gain moves
    for make in (PitchPostfilter, VocoderPostfilter):
        one = make().process(frames, f)
        pf = make()
        parts = [pf.process(frames[i:i + k], f[i:i + k]) for i, k in ((0, 1), (1, 7), (8, 20), (28, NF - 28))]
        assert np.array_equal(one, np.concatenate(parts))


def test_pitch_reinforces_the_period_and_keeps_the_energy():
    frames, f = _voiced(period=100.0)
    y = PitchPostfilter(0.5).process(frames, f)
    s = slice(5 * FRAME, None)   # after the history has filled
    x_, y_ = frames.ravel()[s], y.ravel()[s]
    assert _ncc(y_, 100) > _ncc(x_, 100) + 0.1
    ratio = np.sum(y[5:] ** 2, axis=1) / np.sum(frames[5:] ** 2, axis=1)
    assert np.all(np.abs(ratio - 1.0) < 0.15)   # per frame, up to the scale's ramp
    assert abs(np.sum(y[5:] ** 2) / np.sum(frames[5:] ** 2) - 1.0) < 0.02
    # the wrong period does not help
    wrong = f.copy()
    wrong[:, 18] = 73.0
    z = PitchPostfilter(0.5).process(frames, wrong).ravel()[s]
    assert _ncc(z, 100) < _ncc(y_, 100) - 0.05


def test_pitch_leaves_unvoiced_frames_and_strength_zero_alone():
    frames, f = _voiced()
    f[:, 19] = 0.0
    assert np.array_equal(PitchPostfilter(0.5).process(frames, f), frames)
    f[:, 19] = 1.0
    assert np.array_equal(PitchPostfilter(0.0).process(frames, f), frames)


def test_pitch_prime_continues_the_history_and_fades_the_comb_in():
    frames, f = _voiced(period=120.0)
    a = PitchPostfilter()
    a.prime(frames[:10].ravel())
    y = a.process(frames[10:12], f[10:12])
    # gain and scale start from the real signal's (0 and 1): the first samples are nearly untouched
    assert np.max(np.abs(y[0, :8] - frames[10, :8])) < 0.02 * np.max(np.abs(frames))
    b = PitchPostfilter()
    b.prime(frames[:10].ravel())
    assert np.array_equal(b.process(frames[10:12], f[10:12]), y)
    a.reset()
    assert not np.any(a._hist) and a._g == 0.0 and a._scale == 1.0


def test_chain_is_the_stages_in_order(shaped):
    x, own, target = shaped
    frames = _preemph(x).reshape(NF, FRAME)
    want = PitchPostfilter(0.5).process(EnvelopePostfilter(0.7).process(frames, target), target)
    chain = VocoderPostfilter(envelope=0.7, pitch=0.5)
    assert np.array_equal(chain.process(frames, target), want)
    assert chain.state_bytes == EnvelopePostfilter().state_bytes + PitchPostfilter().state_bytes
    only_env = VocoderPostfilter(envelope=0.7, pitch=0.0)
    assert only_env.pitch is None
    assert np.array_equal(only_env.process(frames, target), EnvelopePostfilter(0.7).process(frames, target))
    assert np.array_equal(VocoderPostfilter(0.0, 0.0).process(frames, target), frames)


def test_pitch_and_chain_bad_inputs_raise_clear_errors():
    frames, f = _voiced()
    for pf in (PitchPostfilter(), VocoderPostfilter()):
        with pytest.raises(PostfilterInputError, match="features"):
            pf.process(frames[:3], f[:3, :18])   # the pitch stage needs the pitch entries
        bad = f[:2].copy()
        bad[1, 18] = np.nan
        with pytest.raises(PostfilterInputError, match="finite"):
            pf.process(frames[:2], bad)
        with pytest.raises(PostfilterInputError, match="finite"):
            pf.prime(np.array([np.inf]))
    # hostile pitch values are clamped to the features' range, never read outside the history
    wild = f[:4].copy()
    wild[:, 18] = [1e4, -5.0, 0.0, 3.0]
    wild[:, 19] = [9.0, -3.0, 1.0, 1.0]
    y = PitchPostfilter().process(frames[:4], wild)
    assert np.all(np.isfinite(y))
    for kw in ({"strength": -0.1}, {"strength": 1.01}):
        with pytest.raises(ValueError):
            PitchPostfilter(**kw)
    for kw in ({"envelope": 1.5}, {"pitch": -1.0}):
        with pytest.raises(ValueError):
            VocoderPostfilter(**kw)
