"""The frame-parallel vocoder's numpy reference: streaming, excitation, filters, continuation."""
from __future__ import annotations

import numpy as np
import pytest

from edge_dred.constants import FRAME_SIZE
from edge_dred.neural import fp_vocoder as fp


def _voiced_features(n: int, period: float = 100.0) -> np.ndarray:
    """A steady voiced frame description: falling spectral envelope, given period, correlation 0.95."""
    f = np.zeros((n, 20), np.float32)
    f[:, 0] = 4.0
    f[:, 1] = 2.0
    f[:, 18] = period
    f[:, 19] = 0.95
    return f


def test_chunked_equals_one_shot():
    p = fp.random_params(seed=1)
    f = _voiced_features(23)
    f[:, 18] = np.linspace(80, 140, 23)
    a = fp.FPVocoderStream(p, seed=3)
    one = a.synthesize_pe(f)
    a.reset()
    parts = [a.synthesize_pe(f[i:j]) for i, j in ((0, 1), (1, 8), (8, 9), (9, 23))]
    assert np.array_equal(np.concatenate(parts), one)
    assert np.all(np.isfinite(one)) and one.std() > 0


def test_pulse_train_is_periodic_with_unit_variance():
    f0 = np.full(3, 1.0 / 100.0)
    cyc, tail, frames = 0.0, np.zeros(fp.PULSE_TAPS), []
    for _ in range(20):
        fr, cyc, tail = fp.FPVocoderStream._excitation(None, f0, cyc, tail)  # type: ignore[arg-type]
        frames.append(fr)
    e = np.concatenate(frames)[200:]
    assert 0.85 < e.var() < 1.0  # band-limited at 7.5 kHz: 15/16 of white
    peaks = np.flatnonzero(e > 0.5 * e.max())
    assert np.all(np.diff(peaks) == 100)
    # phase 0 at sample 0: the first pulse crosses at sample 99 (sum of 100 f0s) and peaks PULSE_DELAY later
    first = np.concatenate(frames)
    assert int(np.argmax(first[:150])) == 99 + fp.PULSE_DELAY


def test_min_phase_filter_has_the_asked_magnitude_and_is_causal():
    f = np.arange(fp.NBIN) / fp.NBIN
    logmag = np.log(1.0 + 4.0 * np.exp(-((f - 0.2) / 0.05) ** 2))  # one smooth resonance
    h = fp.min_phase(logmag)
    assert np.max(np.abs(np.log(np.abs(h)) - logmag)) < 0.05
    ir = np.fft.irfft(h, fp.NFFT)
    assert np.max(np.abs(ir[fp.IR_LEN:])) < 1e-12 * np.max(np.abs(ir))
    assert np.sum(ir[:32] ** 2) > 0.9 * np.sum(ir**2)  # energy up front, as minimum phase puts it


def test_continuation_takes_its_phase_from_the_real_signal():
    p = fp.random_params(seed=2)
    f = _voiced_features(30, period=91.3)
    zeros = np.zeros(30 * FRAME_SIZE)
    ref = fp.FPVocoderStream(p)
    ref.cycles = 0.37  # a phase the continuation must find from the signal alone
    y = ref.synthesize_pe(f, np.zeros(30 * FRAME_SIZE + fp.NOISE_AHEAD))  # the noise a frame reads ahead, too
    k = 20
    cont = fp.FPVocoderStream(p)
    cont.synthesize_pe(f[: k - fp.PRIME_FRAMES], zeros[: (k - fp.PRIME_FRAMES) * FRAME_SIZE + fp.NOISE_AHEAD])
    real = y[fp.KNOT_HOP:]  # the stream's output runs 80 samples behind real time
    cont.prime(real[: k * FRAME_SIZE], f[k - fp.PRIME_FRAMES : k])
    nxt = cont.synthesize_pe(f[k : k + 2], zeros[: 2 * FRAME_SIZE + fp.NOISE_AHEAD])
    want = y[k * FRAME_SIZE : (k + 2) * FRAME_SIZE]
    corr = float(nxt @ want / np.linalg.norm(nxt) / np.linalg.norm(want))
    assert corr > 0.9
    # the same stream with its phase off by half a period does not line up
    cont.cycles += 0.5
    off = cont.synthesize_pe(f[k + 2 : k + 4], zeros[: 2 * FRAME_SIZE])
    want2 = y[(k + 2) * FRAME_SIZE : (k + 4) * FRAME_SIZE]
    assert float(off @ want2 / np.linalg.norm(off) / np.linalg.norm(want2)) < 0.5


def test_prime_rejects_short_input():
    s = fp.FPVocoderStream(fp.random_params())
    with pytest.raises(ValueError, match="features"):
        s.prime(np.zeros(1000), _voiced_features(2))
    with pytest.raises(ValueError, match="samples"):
        s.prime(np.zeros(100), _voiced_features(6))


def test_matches_the_torch_model():
    torch = pytest.importorskip("torch")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from fp_vocoder_model import FPVocoder

    m = FPVocoder().eval()
    assert m.cfg.lookahead
    torch.manual_seed(0)
    with torch.no_grad():
        m.out.weight.normal_(0.0, 0.05)
    f = _voiced_features(25)
    f[:, 18] = np.linspace(70, 160, 25)
    f[:, 19] = np.linspace(0.2, 0.99, 25)
    n = 25 * FRAME_SIZE
    noise = np.random.default_rng(0).standard_normal(n + fp.NOISE_AHEAD).astype(np.float32)
    with torch.no_grad():
        yt = m.synthesize(torch.from_numpy(f[None]), torch.zeros(1), torch.from_numpy(noise[None]))[0]
    s = fp.FPVocoderStream({k: v.numpy() for k, v in m.state_dict().items()})
    # the stream is 80 samples late and its first 80 are silence before the stream
    yn = s.synthesize_pe(f, noise)
    assert np.max(np.abs(yn[: fp.KNOT_HOP])) < 1e-15
    yn = yn[fp.KNOT_HOP:]
    err = yt.double().numpy()[: n - fp.KNOT_HOP] - yn
    assert 10 * np.log10(np.sum(yn**2) / np.sum(err**2)) > 60


def test_noise_normalisation_evens_out_the_noise_band_powers():
    rng = np.random.default_rng(4)
    seg = rng.standard_normal((200, fp.NOISE_WIN))
    w = np.sin(np.pi * (np.arange(fp.NOISE_WIN) + 0.5) / fp.NOISE_WIN) ** 2
    bands = fp.correction_basis()
    avg = bands / bands.sum(1, keepdims=True)

    def log_band_power(spec: np.ndarray) -> np.ndarray:
        return np.log((np.abs(spec) ** 2 @ avg.T) / np.sum(w**2))

    raw = np.fft.rfft(seg * w, fp.NFFT)
    before = log_band_power(raw)
    after = log_band_power(raw * np.exp(fp.noise_normalisation(seg)))
    assert np.abs(before).mean() > 0.3  # the log of a few-degree chi-square power: widely spread
    assert np.abs(after).mean() < 0.4 * np.abs(before).mean()  # overlapping triangles: not exactly flat
    # all-zero noise (silence before a stream) stays finite
    assert np.all(np.isfinite(fp.noise_normalisation(np.zeros((2, fp.NOISE_WIN)))))


def test_noise_is_drawn_ahead_in_one_order_however_the_stream_is_cut():
    p = fp.random_params(seed=5)
    f = _voiced_features(12)
    f[:, 19] = 0.3  # mostly noise
    a = fp.FPVocoderStream(p, seed=9)
    one = a.synthesize_pe(f)
    a.reset()
    b = np.concatenate([a.synthesize_pe(f[:5]), a.synthesize_pe(f[5:])])
    assert np.array_equal(one, b)
    # and the RNG's noise equals the same noise given explicitly
    noise = np.random.default_rng(9).standard_normal(12 * FRAME_SIZE + fp.NOISE_AHEAD)
    c = fp.FPVocoderStream(p, seed=123).synthesize_pe(f, noise)
    assert np.allclose(c, one, atol=1e-12)


def test_training_envelope_postfilter_matches_the_runtime():
    torch = pytest.importorskip("torch")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from fp_vocoder_model import TorchEnvelopePostfilter

    from edge_dred.dsp.features import band_energies_from_cepstrum
    from edge_dred.dsp.postfilter import EnvelopePostfilter

    rng = np.random.default_rng(4)
    f = _voiced_features(12)
    f[:, 0] += rng.normal(0, 1.0, 12)
    e = 0.05 * rng.standard_normal(12 * FRAME_SIZE)
    ref = EnvelopePostfilter(0.35).process(e.reshape(12, FRAME_SIZE), f).ravel()
    tgt = torch.from_numpy(band_energies_from_cepstrum(f)[None] + 1.0)
    out = TorchEnvelopePostfilter(0.35).double()(torch.from_numpy(e[None]), tgt)[0].numpy()
    assert np.abs(ref - e).max() > 1e-3  # the filter does something here
    np.testing.assert_allclose(out, ref, atol=2e-6 * np.abs(ref).max())  # the runtime computes in float32
