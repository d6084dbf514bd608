"""Envelope postfilter: streaming, direction of the correction, bounds, errors."""
from __future__ import annotations

import numpy as np
import pytest

from edge_dred.features import band_energies_from_cepstrum, compute_features
from edge_dred.postfilter import FRAME, EnvelopePostfilter, PostfilterInputError
from edge_dred.vocoder import PREEMPH

NF = 60


def _preemph(x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64) / 32768.0
    return np.concatenate([y[:1], y[1:] - PREEMPH * y[:-1]])


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
        m = v + PREEMPH * m
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
