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
    assert np.allclose(same, frames, rtol=0, atol=1e-6)   # float32 FFTs: the impulse to rounding


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
    assert not np.any(a._c.history())


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
    x32 = frames.astype(np.float32)
    assert np.array_equal(PitchPostfilter(0.5).process(frames, f), x32)
    f[:, 19] = 1.0
    assert np.array_equal(PitchPostfilter(0.0).process(frames, f), x32)


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
    assert not np.any(a._c.history()) and a._c.gains == (0.0, 1.0)


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
    assert np.array_equal(VocoderPostfilter(0.0, 0.0).process(frames, target), frames.astype(np.float32))


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


# ------------------------------------------- compiled (float32) vs the float64 reference

#: Largest difference allowed between the compiled stages and the float64 numpy reference,
#: float scale (1 int16 LSB = 3.1e-5); measured ~6e-8 on these signals.
TOL = 1e-6


def _speechlike(seconds: float = 3.0, seed: int = 11) -> np.ndarray:
    """int16 speech-like signal: voiced stretches (gliding pitch, three formants), fricative
    noise, silences and onsets, at speech levels."""
    rng = np.random.default_rng(seed)
    fs, n = 16000, int(seconds * 16000)
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * np.arange(n) / fs) + 15 * rng.standard_normal() # Hz
    pulses = np.zeros(n)
    pulses[np.searchsorted(np.cumsum(f0 / fs), np.arange(1, int(np.sum(f0 / fs))))] = 1.0
    t = np.arange(400) / fs
    formants = sum(np.exp(-np.pi * bw * t) * np.sin(2 * np.pi * fr * t) / (1 + i)
                   for i, (fr, bw) in enumerate(((650, 80), (1200, 100), (2600, 150))))
    voiced = np.convolve(pulses, formants, "full")[:n]
    fric = np.convolve(rng.standard_normal(n), [1, -1.6, 0.7], "same")
    gate = np.zeros(n)
    for a, b, kind in ((0.1, 0.9, 1), (1.0, 1.25, 2), (1.3, 2.2, 1), (2.35, 2.6, 2), (2.7, 2.95, 1)):
        s = slice(int(a * fs), int(b * fs))
        ramp = np.minimum(1, np.minimum(np.arange(s.stop - s.start), np.arange(s.stop - s.start)[::-1]) / 160)
        gate[s] = ramp * (1 if kind == 1 else -1)
    x = np.where(gate > 0, gate, 0) * voiced / np.max(np.abs(voiced)) * 12000 \
        + np.where(gate < 0, -gate, 0) * fric / np.max(np.abs(fric)) * 2500 + rng.normal(0, 20, n)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def speech():
    from edge_dred.dsp.postfilter_reference import (EnvelopePostfilterReference, PitchPostfilterReference,
                                                    VocoderPostfilterReference)
    pcm = _speechlike()
    pcm = pcm[:len(pcm) // FRAME * FRAME]
    own = compute_features(pcm)
    other = compute_features(_speechlike(seed=12)[:len(pcm)])   # another utterance's envelopes and pitch
    refs = {EnvelopePostfilter: EnvelopePostfilterReference, PitchPostfilter: PitchPostfilterReference,
            VocoderPostfilter: VocoderPostfilterReference}
    return pcm, own, other, refs


def test_compiled_matches_the_float64_reference(speech):
    pcm, own, other, refs = speech
    frames = _preemph(pcm).reshape(-1, FRAME)
    assert np.max(np.abs(frames)) > 0.2      # speech levels
    for make, ref in refs.items():
        for feats in (own, other):
            got, want = make().process(frames, feats), ref().process(frames, feats)
            assert got.dtype == np.float32
            assert np.max(np.abs(got - want)) < TOL, make.__name__
            # primed from real signal, then continuing
            a, b = make(), ref()
            a.prime(frames[:40].ravel())
            b.prime(frames[:40].ravel())
            assert np.max(np.abs(a.process(frames[40:], feats[40:]) - b.process(frames[40:], feats[40:]))) < TOL


@pytest.mark.parametrize("taps", [16, 17, 159, 160])
def test_compiled_minimum_phase_design_holds_at_every_filter_length(speech, taps):
    # The compiled filters come from the cepstral recursion, the reference's from a long FFT.
    pcm, _, other, refs = speech
    frames = _preemph(pcm).reshape(-1, FRAME)
    got = EnvelopePostfilter(0.9, taps=taps).process(frames, other)
    want = refs[EnvelopePostfilter](0.9, taps=taps).process(frames, other)
    assert np.max(np.abs(got - want)) < TOL


def test_compiled_pcm_path_matches_the_reference(speech):
    pcm, _, other, refs = speech
    a, b = EnvelopePostfilter(0.5), refs[EnvelopePostfilter](0.5)
    a.prime_pcm(pcm[:4000])
    b.prime_pcm(pcm[:4000])
    got = a.process_pcm(pcm[4000:12000], other[25:75])
    want = b.process_pcm(pcm[4000:12000], other[25:75])
    assert got.dtype == np.int16 and np.max(np.abs(got.astype(int) - want)) <= 1     # rounding ties only
    assert np.mean(got != want) < 0.01


def test_compiled_pcm_path_and_deemphasis_stream(speech):
    from edge_dred.dsp.features import deemphasis
    from edge_dred.dsp.postfilter import deemphasis_int16

    pcm, _, other, _ = speech
    a, b = EnvelopePostfilter(), EnvelopePostfilter()
    one = a.process_pcm(pcm[:16000], other[:100])
    parts = [b.process_pcm(pcm[i * FRAME:j * FRAME], other[i:j]) for i, j in ((0, 1), (1, 2), (2, 30), (30, 100))]
    assert np.array_equal(one, np.concatenate(parts))
    # de-emphasis: chunked == one call, and the float64 formula to rounding
    e = _preemph(pcm).reshape(-1, FRAME)
    whole, m1 = deemphasis_int16(e, 0.0)
    out, m = [], 0.0
    for i, j in ((0, 3), (3, 4), (4, len(e))):
        y, m = deemphasis_int16(e[i:j], m)
        out.append(y)
    assert np.array_equal(whole, np.concatenate(out)) and m == m1
    ref, m = [], 0.0
    for row in e:
        y = deemphasis(row, m)
        m = float(np.clip(y[-1], -1.0, 32767 / 32768))
        ref.append(y)
    ref = np.clip(np.round(np.concatenate(ref) * 32768), -32768, 32767)
    assert np.max(np.abs(whole - ref)) <= 1 and np.max(np.abs(whole - pcm)) <= 1
    with pytest.raises(PostfilterInputError, match="finite"):
        deemphasis_int16(np.full((1, FRAME), np.nan), 0.0)
