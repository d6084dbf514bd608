import numpy as np
import pytest

from edge_dred.dsp import tsm

from conftest import voiced

SR = 16000


def _harmonic(seconds: float, f0: float = 150.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * k * f0 * t + k) * 0.7 ** k for k in range(1, 8)) * 8000.0


def _f0(x: np.ndarray) -> float:
    """Fundamental by autocorrelation peak within 60..400 Hz."""
    x = x - x.mean()
    spec = np.fft.rfft(x, 2 * x.size)
    ac = np.fft.irfft(spec * np.conj(spec))[: x.size]
    lo, hi = SR // 400, SR // 60
    return SR / (lo + int(np.argmax(ac[lo:hi])))


@pytest.mark.parametrize("rate", [0.9, 0.95, 1.05, 1.1])
def test_output_length_follows_the_rate(rate):
    x = voiced(2.0).astype(float)
    y = tsm.time_scale(x, rate)
    # Within one lag of the requested length (whole pitch periods are inserted or removed).
    assert abs(y.size - x.size * rate) <= tsm.MIN_LAG + 160


@pytest.mark.parametrize("rate", [0.92, 1.08])
def test_pitch_and_level_preserved_without_discontinuities(rate):
    x = _harmonic(2.0)
    y = tsm.time_scale(x, rate)
    mid_x, mid_y = x[8000:24000], y[8000:24000]
    assert _f0(mid_y) == pytest.approx(_f0(mid_x), rel=0.02)
    assert np.sqrt(np.mean(mid_y ** 2)) == pytest.approx(np.sqrt(np.mean(mid_x ** 2)), rel=0.05)
    # A splice would show as a sample step larger than the signal's own steepest slope.
    assert np.abs(np.diff(y)).max() <= 1.05 * np.abs(np.diff(x)).max()


def test_best_lag_finds_the_period_and_flags_noise():
    x = _harmonic(0.2, f0=125.0)   # period 128 samples
    lag, corr = tsm.best_lag(x, 1600, tsm.MIN_LAG, 200, forward=False)
    assert lag == 128 and corr > 0.99
    lag, corr = tsm.best_lag(x, 0, tsm.MIN_LAG, 160, forward=True)
    assert lag == 128 and corr > 0.99
    noise = np.random.default_rng(0).normal(0, 1000, 3200)
    assert tsm.best_lag(noise, 1600, tsm.MIN_LAG, 200, forward=False)[1] < 0.5
    assert tsm.best_lag(x, 10, 40, 200, forward=False) == (0, 0.0)   # no room for the shortest lag


def test_stretch_and_compress_exact_lengths_and_joins():
    x = _harmonic(0.1, f0=125.0)
    ctx, blk = x[:640], x[640:960]
    s = tsm.stretch(ctx, blk, 128)
    assert s.size == 320 + 128
    # The inserted stretch continues the context and hands over to the block itself.
    assert np.allclose(s[128:], blk)
    assert np.allclose(s[:128], x[640 - 128:640], atol=1.0)   # periodic: the same samples, up to rounding
    c = tsm.compress(blk, 128)
    assert c.size == 320 - 128
    assert np.allclose(c[128:], blk[256:])
    with pytest.raises(ValueError):
        tsm.stretch(ctx[:10], blk, 128)
    with pytest.raises(ValueError):
        tsm.compress(blk, 200)
    with pytest.raises(ValueError):
        tsm.time_scale(blk, 3.0)
