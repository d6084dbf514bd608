"""Tests for edge_dred.dsp.features on synthetic signals only."""
from __future__ import annotations

import numpy as np
import pytest

from edge_dred.dsp import features as fm
from edge_dred.dsp.features import (
    C0_OFFSET,
    FRAME_SIZE,
    NB_BANDS,
    NB_FEATURES,
    PITCH_MAX,
    PITCH_MIN,
    FeatureExtractor,
    FeatureInputError,
    band_energies_from_cepstrum,
    band_weights,
    cepstrum_from_band_energies,
    compute_features,
)

SR = 16000


def harmonic(f0, seconds=1.0, n_harm=8, level=6000.0, vibrato=0.0, am=0.0, seed=0):
    """Harmonic tone; returns (signal, instantaneous f0 per sample)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    inst = f0 * (1.0 + vibrato * np.sin(2 * np.pi * 5.0 * t))
    phase = 2 * np.pi * np.cumsum(inst) / SR
    x = np.zeros(n)
    for k in range(1, n_harm + 1):
        if k * f0 * (1 + vibrato) < 7500:
            x += np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k
    x *= 1.0 + am * np.sin(2 * np.pi * 3.0 * t)
    return x / np.max(np.abs(x)) * level, inst


def deemphasised_noise(n, sigma, seed=0):
    """Noise that is white after the extractor's pre-emphasis."""
    e = np.random.default_rng(seed).normal(0.0, sigma, n)
    x = np.empty(n)
    acc = 0.0
    for i in range(n):  # small n only
        acc = e[i] + fm.PREEMPHASIS * acc
        x[i] = acc
    return x


def true_period(inst, n_frames):
    """Period implied by the mean f0 over each frame's 20 ms causal window."""
    out = np.empty(n_frames)
    for i in range(n_frames):
        end = FRAME_SIZE * (i + 1)
        out[i] = SR / np.mean(inst[max(0, end - 320):end])
    return out


# -- shape, alignment, constants ---------------------------------------------------------

def test_shape_dtype_and_partial_frame_dropped():
    x = np.random.default_rng(1).normal(0, 500, 160 * 7 + 99)
    f = compute_features(x)
    assert f.shape == (7, NB_FEATURES)
    assert f.dtype == np.float32
    assert compute_features(np.zeros(159)).shape == (0, NB_FEATURES)
    np.testing.assert_array_equal(compute_features(x.astype(np.float32)[:160 * 7]),
                                  compute_features(x.astype(np.float32)))


def test_alignment_is_causal_and_frame_i_covers_its_samples():
    x = np.zeros(160 * 12)
    j = 6
    burst = np.random.default_rng(2).normal(0, 3000, 160)
    x[160 * j:160 * (j + 1)] = burst
    f = compute_features(x)
    silent = compute_features(np.zeros_like(x))
    # Frames before j never see the burst (no look-ahead).
    np.testing.assert_array_equal(f[:j], silent[:j])
    # Frame j (window ending at 160 j + 160) and j + 1 (window start) see it.
    assert f[j, 0] > silent[j, 0] + 5
    assert f[j + 1, 0] > silent[j + 1, 0] + 5
    # Frame j + 2's window starts right after the burst and only sees its
    # pre-emphasis tail (one sample); frame j + 3 sees nothing of it.
    assert f[j + 2, 0] < f[j + 1, 0] - 5
    np.testing.assert_allclose(f[j + 3, :NB_BANDS], silent[j + 3, :NB_BANDS])


def test_int16_input_matches_float():
    x = np.random.default_rng(3).normal(0, 2000, 3200).clip(-32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(compute_features(x), compute_features(x.astype(np.float64)))


# -- pitch --------------------------------------------------------------------------------

@pytest.mark.parametrize("f0", [62.0, 70.0, 100.0, 150.0, 220.0, 300.0, 450.0, 490.0])
def test_steady_harmonic_pitch(f0):
    x, inst = harmonic(f0, seconds=0.8, seed=int(f0))
    f = compute_features(x)
    steady = f[4:]
    period = SR / f0
    assert np.all(np.abs(steady[:, 18] / period - 1) < 0.02), steady[:, 18]
    assert np.all(steady[:, 19] > 0.8)
    assert np.all((f[:, 18] >= PITCH_MIN) & (f[:, 18] <= PITCH_MAX))


@pytest.mark.parametrize("f0", [70.0, 120.0, 220.0, 400.0])
def test_vibrato_and_amplitude_modulation(f0):
    x, inst = harmonic(f0, seconds=1.0, vibrato=0.03, am=0.5, seed=7)
    f = compute_features(x)
    expect = true_period(inst, len(f))
    err = np.abs(f[4:, 18] / expect[4:] - 1)
    assert np.mean(err < 0.02) > 0.97, err.max()
    assert np.median(f[4:, 19]) > 0.8


def test_missing_fundamental_not_halved():
    # Harmonics 2..6 of 110 Hz: the period is still 1/110 s.
    n = SR
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * 110 * k * t + k) for k in range(2, 7)) * 2000
    f = compute_features(x)
    assert np.all(np.abs(f[4:, 18] / (SR / 110) - 1) < 0.02)


def test_white_noise_has_low_correlation():
    x = np.random.default_rng(4).normal(0, 2000, SR * 2)
    f = compute_features(x)
    assert np.mean(f[:, 19]) < 0.15
    assert np.percentile(f[:, 19], 95) < 0.35
    assert np.all((f[:, 18] >= PITCH_MIN) & (f[:, 18] <= PITCH_MAX))


def test_unvoiced_after_voiced_keeps_period():
    tone, _ = harmonic(150.0, seconds=0.5, seed=1)
    noise = np.random.default_rng(5).normal(0, 50, SR // 2)
    f = compute_features(np.concatenate([tone, noise]))
    tail = f[-20:]
    np.testing.assert_allclose(tail[:, 18], f[45, 18], rtol=0, atol=1e-4)
    assert np.all(tail[:, 19] < 0.4)


# -- cepstrum -----------------------------------------------------------------------------

def test_preemphasis_white_noise_gives_flat_cepstrum_and_expected_c0():
    sigma = 1000.0
    x = deemphasised_noise(SR, sigma, seed=6)
    f = compute_features(x)[3:]
    c = f[:, :NB_BANDS].mean(axis=0)
    assert np.all(np.abs(c[1:]) < 0.25), c
    expected_c0 = np.sqrt(NB_BANDS) * np.log10(sigma ** 2 + 1.0) - C0_OFFSET
    assert abs(c[0] - expected_c0) < 0.3


def test_plain_white_noise_shows_preemphasis_tilt():
    sigma = 1000.0
    f = compute_features(np.random.default_rng(8).normal(0, sigma, SR))[3:]
    freqs = np.arange(161) * 50.0
    gain = np.abs(1 - fm.PREEMPHASIS * np.exp(-2j * np.pi * freqs / SR)) ** 2
    w = band_weights()
    energy = sigma ** 2 * (w @ gain) / w.sum(axis=1)
    expect = cepstrum_from_band_energies(energy)
    np.testing.assert_allclose(f[:, :NB_BANDS].mean(axis=0), expect, atol=0.3)
    assert expect[1] < -1.0  # the tilt is real: rising spectrum -> negative c1


def test_level_change_moves_only_c0():
    x = deemphasised_noise(8000, 300.0, seed=9)
    a = compute_features(x)[3:].mean(axis=0)
    b = compute_features(x * 10.0)[3:].mean(axis=0)
    assert abs((b[0] - a[0]) - 2 * np.sqrt(NB_BANDS)) < 0.05
    np.testing.assert_allclose(a[1:NB_BANDS], b[1:NB_BANDS], atol=0.02)


def test_silence_is_finite_and_bounded():
    f = compute_features(np.zeros(SR // 2))
    assert np.all(np.isfinite(f))
    np.testing.assert_allclose(f[:, 0], -C0_OFFSET)
    np.testing.assert_allclose(f[:, 1:NB_BANDS], 0.0, atol=1e-6)
    np.testing.assert_allclose(f[:, 18], 100.0)
    np.testing.assert_allclose(f[:, 19], 0.0)


def test_dynamic_range_is_bounded():
    # A loud low tone next to nothing at high frequency: valleys are floored.
    t = np.arange(SR // 2) / SR
    x = 30000 * np.sin(2 * np.pi * 300 * t)
    f = compute_features(x)
    logs = band_energies_from_cepstrum(f[5:], log10=True)
    assert np.all(logs.max(axis=1) - logs.min(axis=1) <= 8.0 + 1e-4)
    assert np.all(np.diff(logs, axis=1) >= -2.5 - 1e-4)
    assert np.any(np.diff(logs, axis=1) < -2.4)  # the rule was active


def test_band_weights_partition_of_unity():
    w = band_weights()
    assert w.shape == (NB_BANDS, 161)
    np.testing.assert_allclose(w.sum(axis=0), 1.0)
    assert np.all(w >= 0)
    # Peak of band b sits on its edge frequency.
    peaks = np.argmax(w, axis=1) * 50
    np.testing.assert_array_equal(peaks, fm.BAND_EDGES_HZ)


def test_cepstrum_roundtrip():
    e = np.random.default_rng(10).uniform(1e3, 1e6, (5, NB_BANDS))
    cep = cepstrum_from_band_energies(e)
    np.testing.assert_allclose(band_energies_from_cepstrum(cep), e, rtol=1e-9)
    full = np.concatenate([cep, np.zeros((5, 2))], axis=1)
    np.testing.assert_allclose(band_energies_from_cepstrum(full), e, rtol=1e-9)


# -- streaming ----------------------------------------------------------------------------

def mixed_signal(seed=11):
    rng = np.random.default_rng(seed)
    parts = [
        np.zeros(1000),
        harmonic(120.0, 0.4, vibrato=0.02, seed=1)[0],
        rng.normal(0, 800, 3000),
        harmonic(260.0, 0.3, am=0.4, seed=2)[0],
        np.zeros(2000),
        harmonic(80.0, 0.3, seed=3)[0],
    ]
    x = np.concatenate(parts)
    return x[: len(x) // FRAME_SIZE * FRAME_SIZE]


def test_streaming_random_blocks_equal_batch():
    x = mixed_signal()
    ref = compute_features(x)
    rng = np.random.default_rng(12)
    ex = FeatureExtractor()
    out, pos = [], 0
    while pos < len(x):
        k = int(rng.integers(1, 9)) * FRAME_SIZE
        out.append(ex.process_block(x[pos:pos + k]))
        pos += k
    got = np.concatenate(out)
    np.testing.assert_array_equal(got, ref)   # every frame is its own C call: chunking changes nothing


def test_streaming_per_frame_and_reset():
    x = mixed_signal(13)[: 160 * 60]
    ref = compute_features(x)
    ex = FeatureExtractor()
    got = np.stack([ex.process(x[i:i + FRAME_SIZE]) for i in range(0, len(x), FRAME_SIZE)])
    np.testing.assert_array_equal(got, ref)
    ex.reset()
    np.testing.assert_array_equal(ex.process_block(x), ref)
    # non-contiguous and float input take the checked path to the same result
    np.testing.assert_array_equal(FeatureExtractor().process_block(np.repeat(x, 2)[::2]), ref)
    xi = np.clip(np.round(x), -32768, 32767)
    np.testing.assert_array_equal(FeatureExtractor().process_block(xi.astype(np.float32)),
                                  FeatureExtractor().process_block(xi.astype(np.int16)))


def test_skipped_frames_are_history_for_the_next():
    """Frames taken with skip_block are not analysed but still feed the window and the pitch
    search: the cepstra after them equal a full analysis's, and on a steady voice the pitch too."""
    x = mixed_signal(21)
    ref = compute_features(x)
    ex = FeatureExtractor()
    head = ex.process_block(x[:30 * FRAME_SIZE])
    ex.skip_block(x[30 * FRAME_SIZE:45 * FRAME_SIZE])
    tail = ex.process_block(x[45 * FRAME_SIZE:])
    np.testing.assert_array_equal(head, ref[:30])
    np.testing.assert_array_equal(tail[:, :NB_BANDS], ref[45:len(x) // FRAME_SIZE, :NB_BANDS])
    y, _ = harmonic(140.0, seconds=1.0)
    full = compute_features(y)
    ex.reset()
    ex.process_block(y[:20 * FRAME_SIZE])
    ex.skip_block(y[20 * FRAME_SIZE:40 * FRAME_SIZE].astype(np.float64))   # the checked path
    np.testing.assert_array_equal(ex.process_block(y[40 * FRAME_SIZE:]), full[40:])
    with pytest.raises(FeatureInputError):
        ex.skip_block(np.zeros(161, np.int16))
    with pytest.raises(FeatureInputError):
        ex.skip_block(np.full(320, np.nan))


# -- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 320)),
        np.array([0.0, np.nan] * 160),
        np.array([0.0, np.inf] * 160),
        np.zeros(320, dtype=np.int32),
        np.zeros(320, dtype=np.complex64),
        np.full(320, 1e6),
        [0.0] * 320,
    ],
)
def test_bad_input_raises(bad):
    with pytest.raises(FeatureInputError):
        compute_features(bad)
    assert issubclass(FeatureInputError, ValueError)


def test_streaming_bad_sizes_raise():
    ex = FeatureExtractor()
    with pytest.raises(FeatureInputError):
        ex.process(np.zeros(159))
    with pytest.raises(FeatureInputError):
        ex.process_block(np.zeros(161))
    with pytest.raises(FeatureInputError):
        band_energies_from_cepstrum(np.zeros(17))
    with pytest.raises(FeatureInputError):
        cepstrum_from_band_energies(-np.ones(NB_BANDS))


@pytest.mark.parametrize("fc", [500.0, 1000.0, 2500.0])
def test_formant_like_noise_is_mostly_unvoiced(fc):
    # Noise through one resonance of realistic width: no pitch to find.
    rng = np.random.default_rng(int(fc))
    r = np.exp(-np.pi * 300.0 / SR)
    a1, a2 = 2 * r * np.cos(2 * np.pi * fc / SR), -r * r
    e = rng.normal(0, 100, SR)
    x = np.zeros_like(e)
    for i in range(2, e.size):  # two-pole resonator
        x[i] = e[i] + a1 * x[i - 1] + a2 * x[i - 2]
    f = compute_features(x / np.std(x) * 2000)
    assert np.mean(f[5:, 19] > 0.5) < 0.1


# -- compiled analysis vs the numpy reference ---------------------------------------------

# The compiled spectrum is a float32 FFT, the reference's float64: cepstra agree to a few
# 1e-6 (7.7e-5 at worst on 23.5 k frames of training speech, docs/features.md).  The pitch
# path sums in float64 in the reference's order: period and correlation agree bit for bit.
CEP_ATOL = 5e-5


def _speech_like(seed: int) -> np.ndarray:
    """Voiced syllables on a gliding pitch, fricative noise, pauses and a level step."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(6):
        f0 = rng.uniform(75, 320)
        x, _ = harmonic(f0, rng.uniform(0.15, 0.4), n_harm=20, vibrato=0.04, am=0.6, seed=seed + k,
                        level=rng.uniform(300, 20000))
        parts += [x, rng.normal(0, rng.uniform(20, 1500), int(rng.integers(400, 3000))),
                  np.zeros(int(rng.integers(0, 1200)))]
    x = np.concatenate(parts)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("name", ["speech_like", "speech_like_2", "voiced_drift", "noise", "mixed", "quiet"])
def test_compiled_matches_reference(name):
    from conftest import voiced
    from features_reference import reference_features

    x = {
        "speech_like": lambda: _speech_like(1),
        "speech_like_2": lambda: _speech_like(2),
        "voiced_drift": lambda: voiced(2.0, f0=110.0, seed=3),
        "noise": lambda: np.random.default_rng(4).normal(0, 3000, SR),
        "mixed": mixed_signal,
        "quiet": lambda: (voiced(1.0, seed=5) // 400).astype(np.int16),
    }[name]()
    got, ref = compute_features(x), reference_features(x)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got[:, :NB_BANDS], ref[:, :NB_BANDS], rtol=0, atol=CEP_ATOL)
    np.testing.assert_array_equal(got[:, NB_BANDS:], ref[:, NB_BANDS:])
    assert np.mean(got[:, 19] > 0.5) > (0.2 if name not in ("noise", "quiet") else -1)  # voiced frames were compared


def test_streaming_matches_reference_across_calls():
    """Per-packet streaming (the receiver's calls) against the reference's own streaming."""
    from features_reference import ReferenceExtractor

    x = _speech_like(7)
    x = x[: min(len(x) // 320 * 320, 160 * 240)]
    ex, ref = FeatureExtractor(), ReferenceExtractor()
    for i in range(0, len(x), 320):
        g, r = ex.process_block(x[i:i + 320]), ref.process_block(x[i:i + 320])
        np.testing.assert_allclose(g[:, :NB_BANDS], r[:, :NB_BANDS], rtol=0, atol=CEP_ATOL)
        np.testing.assert_array_equal(g[:, NB_BANDS:], r[:, NB_BANDS:])


def test_wide_vectors_give_the_same_features():
    """The pitch correlations on AVX (where the CPU has it) and on the baseline vectors agree bit for bit."""
    from edge_dred.dsp import _features

    x = _speech_like(9)
    try:
        _features._wide_vectors(False)
        base = compute_features(x)
        wide = _features._wide_vectors(True)
        np.testing.assert_array_equal(compute_features(x), base)
    finally:
        _features._wide_vectors(True)
    if not wide:
        pytest.skip("no AVX on this CPU: only the baseline path ran")


def test_state_is_small_and_fixed():
    ex = FeatureExtractor()
    before = ex.state_bytes
    ex.process_block(_speech_like(8)[:160 * 50])
    assert ex.state_bytes == before < 64_000
