"""The fp vocoder's compiled runtime against its float64 numpy reference (edge_dred.neural.fp_vocoder)."""
from __future__ import annotations

import numpy as np
import pytest

from edge_dred.constants import FRAME_SIZE
from edge_dred.dsp import _fp_synthesis as _c
from edge_dred.dsp.features import compute_features
from edge_dred.models.loader import ModelFileError
from edge_dred.neural import fp_runtime as rt
from edge_dred.neural import fp_vocoder as ref
from edge_dred.neural.vocoder import VocoderInputError


def _speechlike(n_frames: int, seed: int = 0) -> np.ndarray:
    """int16: a gliding harmonic signal with a moving level, a noise burst and a pause (realistic features)."""
    rng = np.random.default_rng(seed)
    n = n_frames * FRAME_SIZE
    t = np.arange(n) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 1.3 * t)
    ph = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * ph) / k for k in range(1, 40)) * (0.3 + np.sin(2 * np.pi * 2 * t) ** 2)
    x += 0.02 * rng.standard_normal(n)
    burst = slice(n // 2, n // 2 + 2400)
    x[burst] = 0.6 * rng.standard_normal(2400)                  # unvoiced
    x[n - 3200: n - 1600] *= 0.01                               # a pause
    return np.round(4000 * x).astype(np.int16)


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    return compute_features(_speechlike(60)).astype(np.float32)


@pytest.fixture(scope="module")
def params() -> dict[str, np.ndarray]:
    # out_scale 0.5: corrections of a few nepers and period corrections near their bounds
    return ref.random_params(seed=1, out_scale=0.5)


@pytest.fixture(scope="module")
def model(params, tmp_path_factory) -> rt.FPVocoderModel:
    path = tmp_path_factory.mktemp("fp") / "fp.bin"
    rt.export_fp_vocoder({k: v.astype(np.float32) for k, v in params.items()}, {"conv": 128, "gru": 128}, path)
    return rt.FPVocoderModel.load(path=path)


def _raws(params: dict, feats: np.ndarray) -> np.ndarray:
    s = ref.FPVocoderStream(params)
    return np.stack([s._net(f) for f in feats.astype(np.float64)])


def test_signal_stage_matches_the_float64_reference(params, feats):
    """float32 C (KISS FFT) vs float64 numpy, the same network outputs and the same noise."""
    raws = _raws(params, feats)
    noise = rt.noise_sequence(7, feats.shape[0] * FRAME_SIZE + 400)
    want = ref.FPVocoderStream(params).synthesize_pe(feats, noise=noise)
    syn = _c.Synthesis(7)
    got = np.zeros((feats.shape[0], FRAME_SIZE), np.float32)
    assert syn.process(feats, raws.astype(np.float32), got) == 0
    got = got.ravel()
    rms = np.sqrt(np.mean(want**2))
    assert rms > 1e-3
    assert np.sqrt(np.mean((got - want) ** 2)) < 1e-5 * rms
    assert np.max(np.abs(got - want)) < 1e-4 * rms


def test_noise_sequence_is_white_and_unit_variance():
    x = rt.noise_sequence(3, 200_000)
    assert abs(x.mean()) < 0.01 and abs(x.var() - 1.0) < 0.02
    assert abs(np.corrcoef(x[1:], x[:-1])[0, 1]) < 0.01
    assert abs(np.mean(x**4) - 3.0) < 0.1                       # Gaussian kurtosis
    assert not np.array_equal(rt.noise_sequence(4, 100), x[:100])


def test_int8_network_agrees_with_float(model, params, feats):
    """int8 weights and activations vs the float64 network: outputs at >= 25 dB SNR, and the synthesised
    signal's band energies (measured as the features measure them) within 0.5 dB on average (pulse
    positions move with the period corrections, so the waveform itself is not compared)."""
    from edge_dred.dsp.features import band_energies_from_cepstrum

    v = rt.FPVocoder(model, seed=7, postfilter=False)
    raw8 = v._network(feats)
    rawf = _raws(params, feats)
    snr = 10 * np.log10(np.sum(rawf**2) / np.sum((raw8 - rawf) ** 2))
    assert snr > 25.0
    v.reset()
    y8 = v.synthesize_pe(feats).ravel()
    yf = ref.FPVocoderStream(params).synthesize_pe(feats, noise=rt.noise_sequence(7, feats.shape[0] * FRAME_SIZE + 400))

    def bands(y: np.ndarray) -> np.ndarray:
        pcm = np.clip(np.round(y * 32768), -32768, 32767).astype(np.int16)
        return band_energies_from_cepstrum(compute_features(pcm), log10=True)

    b8, bf = bands(y8), bands(yf)
    active = bf.mean(1) > 2
    assert active.sum() > 30
    assert 10 * np.abs(b8 - bf)[active].mean() < 0.5


def test_chunked_equals_one_shot(model, feats):
    v = rt.FPVocoder(model, seed=5)
    one = v.synthesize(feats)
    assert one.dtype == np.int16 and one.shape == (feats.shape[0] * FRAME_SIZE,) and one.std() > 10
    v.reset()
    cuts = (0, 1, 2, 9, 10, 33, feats.shape[0])
    parts = [v.synthesize(feats[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    assert np.array_equal(np.concatenate(parts), one)
    assert v.synthesize(feats[:0]).shape == (0,)


def test_prime_matches_the_reference(params, feats):
    """Phase search and the excitation it leaves: the C prime then free synthesis vs the reference's."""
    pcm = _speechlike(60)
    x = pcm.astype(np.float64) / 32768
    pe = x[1:] - 0.85 * x[:-1]
    end = 24 * FRAME_SIZE                                        # voiced: prime on frames 18..23
    k = end // FRAME_SIZE
    raws = _raws(params, feats[: k + 8])
    seq = rt.noise_sequence(11, 4000)

    class Draws:                                                # the reference's RNG fed the C stream's noise
        def __init__(self, s: np.ndarray) -> None:
            self.s, self.i = s, 0

        def standard_normal(self, n: int) -> np.ndarray:
            self.i += n
            return self.s[self.i - n: self.i]

    r = ref.FPVocoderStream(params)
    for f in feats[: k - 6].astype(np.float64):                 # the network state before the priming frames
        r._net(f)
    r.rng = Draws(seq[ref.KNOT_HOP:])                           # a C stream draws 80 at reset
    r.prime(pe[end - 700: end], feats[k - 6: k].astype(np.float64))
    want = r.synthesize_pe(feats[k: k + 8].astype(np.float64))

    syn = _c.Synthesis(11)
    rc, score = syn.prime(pe[end - 700: end].astype(np.float32), feats[k - 6: k], raws[k - 6: k].astype(np.float32))
    assert rc == 0 and abs(score - r.prime_score) < 1e-4 and score > 0.3
    got = np.zeros((8, FRAME_SIZE), np.float32)
    assert syn.process(feats[k: k + 8], raws[k: k + 8].astype(np.float32), got) == 0
    got = got.ravel()
    assert np.sqrt(np.mean((got - want) ** 2)) < 1e-4 * np.sqrt(np.mean(want**2))


def test_runtime_prime_continues_the_real_signal(model, feats):
    pcm = _speechlike(60)
    v = rt.FPVocoder(model, seed=2)
    k = 24
    v.synthesize(feats[: k - 6])                                # the network state of a running stream
    score = v.prime(pcm[: k * FRAME_SIZE], feats[k - 6: k])
    assert np.isfinite(score) and score == v.prime_score
    y = v.synthesize(feats[k: k + 4])
    assert y.shape == (4 * FRAME_SIZE,) and y.std() > 10
    with pytest.raises(VocoderInputError, match="at least"):
        v.prime(pcm[:100], feats[:6])
    with pytest.raises(VocoderInputError, match="feature frames"):
        v.prime(pcm[: k * FRAME_SIZE], feats[:2])


def test_copy_synthesis_is_aligned_with_the_input(model):
    pcm = _speechlike(40)
    v = rt.FPVocoder(model, seed=0, postfilter=False)
    y = rt.fp_copy_synthesis(pcm, v)
    assert y.shape == pcm.shape
    # the 4 ms energy envelopes line up best at zero lag (the 5 ms look-ahead is compensated)
    def env(s: np.ndarray) -> np.ndarray:
        return np.log10(np.convolve(s.astype(np.float64) ** 2, np.ones(64), "same")[::16] + 64.0)
    a, b = env(pcm), env(y)
    cc = [np.corrcoef(a[20:-20], b[20 + d: len(b) - 20 + d])[0, 1] for d in range(-8, 9)]
    assert abs(int(np.argmax(cc)) - 8) <= 1


def test_bad_features_are_refused(model):
    v = rt.FPVocoder(model)
    with pytest.raises(VocoderInputError, match="features must be"):
        v.synthesize(np.zeros((3, 19), np.float32))
    bad = np.zeros((3, 20), np.float32)
    bad[1, 4] = np.nan
    with pytest.raises(VocoderInputError, match="finite"):
        v.synthesize(bad)


def test_export_refuses_a_model_the_runtime_does_not_run(params, tmp_path):
    with pytest.raises(ValueError, match="noise_norm"):
        rt.export_fp_vocoder(params, {"conv": 128, "gru": 128, "noise_norm": False}, tmp_path / "x.bin")
    p = dict(params)
    del p["gru.weight_hh_l0"]
    with pytest.raises(KeyError, match="gru.weight_hh_l0"):
        rt.export_fp_vocoder(p, {"conv": 128, "gru": 128}, tmp_path / "x.bin")


def test_bad_weight_files_give_clear_errors(params, tmp_path):
    from edge_dred.quantize import read_weights, write_weights

    good = tmp_path / "fp.bin"
    rt.export_fp_vocoder(params, {"conv": 128, "gru": 128}, good)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.bin"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="trunc.bin"):
        rt.FPVocoderModel.load(path=trunc)
    with pytest.raises(ModelFileError, match="missing"):
        rt.FPVocoderModel.load(path=tmp_path / "nope.bin")
    arrays, meta = read_weights(good)
    wrong = tmp_path / "wrong_config.bin"
    write_weights(wrong, arrays, {**meta, "config": {"conv": 64, "gru": 128}})
    with pytest.raises(ModelFileError, match="conv1 has shape"):
        rt.FPVocoderModel.load(path=wrong)
    other = tmp_path / "other_version.bin"
    write_weights(other, arrays, {**meta, "version": "fp-int8-0"})
    with pytest.raises(ModelFileError, match="other_version.bin"):
        rt.FPVocoderModel.load(path=other)
    a2 = dict(arrays)
    a2["feat_std"] = np.zeros(20, np.float32)
    zero = tmp_path / "zero_std.bin"
    write_weights(zero, a2, meta)
    with pytest.raises(ModelFileError, match="feat_std"):
        rt.FPVocoderModel.load(path=zero)


def test_exported_checkpoint_agrees_with_the_torch_model(tmp_path):
    """The committed checkpoint through the export script: int8 network outputs vs torch's on realistic features."""
    torch = pytest.importorskip("torch")
    import sys
    from pathlib import Path

    training = Path(__file__).resolve().parents[1] / "training"
    sys.path.insert(0, str(training))
    from export_fp_vocoder import export_checkpoint

    ck = training / "checkpoints" / "fp_vocoder" / "latest.pt"
    model_t, info = export_checkpoint(ck, tmp_path / "fp.bin")
    m = rt.FPVocoderModel.load(path=tmp_path / "fp.bin")
    f = compute_features(_speechlike(60)).astype(np.float32)
    with torch.no_grad():
        raw_t = model_t.frame_net(torch.from_numpy(f[None]))[0][0].double().numpy()
    raw8 = rt.FPVocoder(m)._network(f)
    snr = 10 * np.log10(np.sum(raw_t**2) / np.sum((raw8 - raw_t) ** 2))
    assert snr > 25.0, snr
    assert info["bytes"] < 250_000


def test_extreme_features_give_finite_bounded_output(model):
    """Any features the input check lets through (finite, within +-1e4) give finite int16 output."""
    rng = np.random.default_rng(0)
    v = rt.FPVocoder(model)
    for scale in (1.0, 100.0, 1e4):
        f = (rng.uniform(-1, 1, (12, 20)) * scale).astype(np.float32)
        y = v.synthesize(f)
        assert y.dtype == np.int16 and y.shape == (12 * FRAME_SIZE,)
        e = v.synthesize_pe(f)
        assert np.all(np.isfinite(e))
