"""Neural PLC: feature predictor runtime, fade to silence, edges, weight-file errors.

The predictor tests use a tiny randomly initialised model exported through the
real path (``export_plc`` -> weight file -> ``PLCModel.load``); the concealer
tests drive :class:`NeuralPLC` directly with slots of a synthetic speech-like
signal (no Opus, no ../shared).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import voiced
from edge_dred.dsp.features import compute_features
from edge_dred.models.loader import ModelFileError, load_manifest, update_manifest
from edge_dred.neural.predictor import (MODEL_VERSION, FeaturePredictor, FeaturePredictorReference, PLCInputError,
                                        PLCModel, export_plc, random_plc_params)
from edge_dred.plc import POLICY, ConcealmentPolicy, NeuralPLC
from edge_dred.receiver import Decision, SlotContext
from edge_dred.neural.vocoder import VocoderModel, export_vocoder, random_vocoder_params

REPO = Path(__file__).resolve().parents[1]
SLOT = 320


def _plc(vocoder_model, plc_model, **policy):
    """A NeuralPLC with the shipped policy changed in ``policy`` (as the tuning script does)."""
    return NeuralPLC(vocoder_model, plc_model, _policy=dataclasses.replace(POLICY, **policy))


@pytest.fixture(scope="module")
def feats():
    return compute_features(voiced(2.0, f0=150.0, seed=5))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, feats):
    params, cfg = random_plc_params({"dense_in": 24, "gru1": 32, "gru2": 24}, seed=3,
                                    feat_mean=feats.mean(0), feat_std=feats.std(0) + 1e-3)
    path = tmp_path_factory.mktemp("plc") / "plc.bin"
    info = export_plc(params, cfg, path)
    return PLCModel.load(path=path), params, cfg, info


@pytest.fixture(scope="module")
def tiny_vocoder(tmp_path_factory, feats):
    params, cfg = random_vocoder_params(dict(pembed_dim=4, cond_dense1=16, cond_conv=16, cond_size=16, fwc_size=16,
                                             gru_sizes=[16, 16, 16], skip_size=16), seed=2,
                                        feat_mean=feats.mean(0), feat_std=feats.std(0) + 1e-3)
    path = tmp_path_factory.mktemp("voc") / "v.bin"
    export_vocoder(params, cfg, path)
    return VocoderModel.load(path=path)


def _run(pred, feats, lost):
    out = []
    for t in range(len(feats)):
        if lost[t]:
            out.append(pred.lost())
        else:
            out.append(pred.prediction)
            pred.update(feats[t])
    return np.array(out)


def _mask(n):
    lost = np.zeros(n, bool)
    lost[30:36] = lost[80:100] = lost[140:142] = True
    return lost


def test_predictor_shapes_semantics_and_determinism(tiny, feats):
    model, *_ = tiny
    a, b = FeaturePredictor(model), FeaturePredictor(model)
    lost = _mask(len(feats))
    pa = _run(a, feats, lost)
    assert pa.shape == feats.shape and pa.dtype == np.float32
    assert np.array_equal(pa, _run(b, feats, lost))
    a.reset()
    assert np.allclose(a.prediction, model.feat_mean)  # before any input: the mean frame
    a.update(feats[0])
    p = a.prediction
    assert np.array_equal(a.lost(), p)  # a lost frame gets the pending prediction ...
    assert not np.array_equal(a.prediction, p)  # ... and the predictor advances
    assert a.state_bytes < 64 * 1024


def test_predictor_int8_matches_float_reference(tiny, feats):
    model, *_ = tiny
    lost = _mask(len(feats))
    q = _run(FeaturePredictor(model), feats, lost)
    f = _run(FeaturePredictorReference(model), feats, lost)
    scale = np.sqrt(np.mean((f - f.mean(0)) ** 2, axis=0)) + 1e-3
    assert np.max(np.abs(q - f) / scale) < 0.1  # per-feature error < 10 % of its spread
    assert np.sqrt(np.mean(((q - f) / scale) ** 2)) < 0.02


def test_predictor_reference_equals_torch(tiny, feats):
    torch = pytest.importorskip("torch")
    model, params, cfg, _ = tiny
    sys.path.insert(0, str(REPO / "training"))
    try:
        from plc_model import PLCConfig, PLCPredictor
    finally:
        sys.path.pop(0)
    from edge_dred.neural.layers import float_gru, float_linear

    m = PLCPredictor(PLCConfig.from_dict(cfg))  # float32: the training code's states are float32
    sd = {"feat_mean": params["feat_mean"], "feat_std": params["feat_std"]}
    for name in ("dense_in", "out"):
        w, b = float_linear(model.arrays, name)
        sd[f"{name}.weight"], sd[f"{name}.bias"] = w, b
    for g in ("gru1", "gru2"):
        for k, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), float_gru(model.arrays, g)):
            sd[f"{g}.{k}"] = a
    m.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in sd.items()})
    lost = _mask(len(feats))
    lost[0] = False
    with torch.no_grad():
        z = m.run(torch.from_numpy(feats.astype(np.float32))[None], torch.from_numpy(lost)[None])
        want = m.denormalize(z)[0].numpy()
    got = _run(FeaturePredictorReference(model), feats, lost)
    assert np.allclose(got[1:], want[1:], rtol=1e-4, atol=1e-3)


def test_predictor_bad_input(tiny, feats):
    p = FeaturePredictor(tiny[0])
    with pytest.raises(PLCInputError, match="20 values"):
        p.update(feats[0, :19])
    bad = feats[0].copy()
    bad[3] = np.inf
    with pytest.raises(PLCInputError, match="finite"):
        p.update(bad)


def test_plc_weight_file_errors(tmp_path, tiny):
    _, params, cfg, _ = tiny
    d = tmp_path / "m"
    d.mkdir()
    export_plc(params, cfg, d / "plc.bin")
    update_manifest("plc", d / "plc.bin", MODEL_VERSION, models_dir=d)
    PLCModel.load(models_dir=d)
    p = d / "plc.bin"
    good = p.read_bytes()
    p.write_bytes(good[:-64])
    with pytest.raises(ModelFileError, match="truncated"):
        PLCModel.load(models_dir=d)
    p.write_bytes(good)
    man = json.loads((d / "manifest.json").read_text())
    man["models"]["plc"]["version"] = "plc-int8-9"
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelFileError, match="version 'plc-int8-9'"):
        PLCModel.load(models_dir=d)
    p.unlink()
    with pytest.raises(ModelFileError, match="missing"):
        PLCModel.load(path=p)


# ------------------------------------------------------------ the concealer

def _drive(plc, pcm, loss_start, n_lost, opus_plc=True):
    """Real slots up to ``loss_start``, ``n_lost`` concealed slots, then one handed-back slot.

    Returns the output stream (real slots, concealment, handed-back slot) as float64.
    """
    out = []
    hist = np.zeros(4096, np.int16)
    for s in range(loss_start):
        x = pcm[s * SLOT:(s + 1) * SLOT]
        out.append(x)
        hist = np.concatenate([hist[SLOT:], x])
        plc.observe(x, Decision.REGULAR)
    for k in range(n_lost):
        s = loss_start + k
        # Stand-in for libopus's concealment: a copy of the last real slot.
        fake = pcm[(loss_start - 1) * SLOT: loss_start * SLOT] if opus_plc else None
        ctx = SlotContext(s, [], hist, k + 1, fake)
        y = plc.conceal(ctx)
        assert y.shape == (SLOT,) and y.dtype == np.int16
        out.append(y)
        hist = np.concatenate([hist[SLOT:], y])
        plc.observe(y, Decision.NEURAL_PLC)
    s = loss_start + n_lost
    back = plc.handback(pcm[s * SLOT:(s + 1) * SLOT])
    plc.observe(back, Decision.REGULAR)
    out.append(back)
    return np.concatenate(out).astype(np.float64)


@pytest.fixture(scope="module")
def speech():
    return voiced(3.0, f0=120.0, seed=11)


def test_fade_to_silence_after_100ms(speech, tiny, tiny_vocoder):
    """Without libopus's concealment to fade into, the continuation fades to silence."""
    opus_plc = False
    plc = _plc(tiny_vocoder, tiny[0], fade_start_ms=100, fade_ms=100, opus_lead_ms=0)
    start, n_lost = 50, 15  # 300 ms loss
    y = _drive(plc, speech, start, n_lost, opus_plc)
    loss = y[start * SLOT:(start + n_lost) * SLOT]
    assert np.all(loss[3200:] == 0)  # silent from 200 ms on
    assert plc.stats["silent_slots"] == 5  # and the vocoder is not run there
    # The fade is the raised cosine applied to the continuation: unchanged up to 100 ms ...
    ref = _plc(tiny_vocoder, tiny[0], fade_start_ms=10_000, opus_lead_ms=0)
    y_full = _drive(ref, speech, start, n_lost, opus_plc)[start * SLOT:(start + n_lost) * SLOT]
    assert np.array_equal(loss[:1600], y_full[:1600])
    # ... then smoothly down: the ratio follows the monotone gain within int16 rounding.
    t = np.arange(1600, 3200)
    g = 0.5 + 0.5 * np.cos(np.pi * (t - 1600 + 0.5) / 1600)
    assert np.max(np.abs(loss[1600:3200] - np.round(y_full[1600:3200] * g))) <= 1


def test_fade_parameters_validated(tiny, tiny_vocoder):
    with pytest.raises(ValueError, match="fade"):
        _plc(tiny_vocoder, tiny[0], fade_ms=0)
    with pytest.raises(ValueError, match="end_xfade"):
        _plc(tiny_vocoder, tiny[0], end_xfade=1000)
    # The hand-back fades within the first real slot: no longer.
    with pytest.raises(ValueError, match="end_xfade"):
        _plc(tiny_vocoder, tiny[0], end_xfade=321)


def test_opus_lead_and_fade_to_opus(speech, tiny, tiny_vocoder):
    start, n_lost = 50, 10
    fake = speech[(start - 1) * SLOT:start * SLOT].astype(np.float64)   # _drive's libopus stand-in
    plc = _plc(tiny_vocoder, tiny[0], opus_lead_ms=40, fade_start_ms=60, fade_ms=60,
               shape_tail=False)
    y = _drive(plc, speech, start, n_lost)
    loss = y[start * SLOT:(start + n_lost) * SLOT]
    # libopus leads for 40 ms untouched ...
    assert np.array_equal(loss[:640], np.tile(fake, 2)) and plc.stats["lead_slots"] == 2
    # ... the vocoder takes over in between ...
    assert not np.array_equal(loss[640:1920], np.tile(fake, 4))
    # ... and once faded (60 + 60 ms) the output is libopus's concealment again, and so is the hand-back.
    assert np.array_equal(loss[1920:], np.tile(fake, n_lost)[1920:])
    back = slice((start + n_lost) * SLOT, (start + n_lost + 1) * SLOT)
    assert np.array_equal(y[back], speech[back])
    # A loss that ends inside the lead is libopus's concealment alone: nothing to cross-fade.
    plc = _plc(tiny_vocoder, tiny[0], opus_lead_ms=40)
    y = _drive(plc, speech, start, 2)
    assert np.array_equal(y[start * SLOT:(start + 2) * SLOT], np.tile(fake, 2))
    assert np.array_equal(y[(start + 2) * SLOT:], speech[(start + 2) * SLOT:(start + 3) * SLOT])
    assert plc.stats["slots"] == 2 and plc.stats["lead_slots"] == 2
    # Without libopus's concealment there is nothing to lead with: the vocoder starts at once.
    plc = _plc(tiny_vocoder, tiny[0], opus_lead_ms=40)
    _drive(plc, speech, start, 3, opus_plc=False)
    assert plc.stats["lead_slots"] == 0


def test_voicing_gate_leaves_unvoiced_losses_to_libopus(speech, tiny, tiny_vocoder):
    start, n_lost = 50, 5
    pcm = speech.copy()
    rng = np.random.default_rng(3)
    # Noise for the 100 ms before the loss: the last frame played is unvoiced.
    pcm[(start - 5) * SLOT:start * SLOT] = np.clip(rng.normal(0, 2000, 5 * SLOT), -32768, 32767).astype(np.int16)
    fake = pcm[(start - 1) * SLOT:start * SLOT].astype(np.float64)
    loss = slice(start * SLOT, (start + n_lost) * SLOT)
    back = slice((start + n_lost) * SLOT, (start + n_lost + 1) * SLOT)
    plc = _plc(tiny_vocoder, tiny[0], voiced_gate=0.5, shape_gated=None)
    y = _drive(plc, pcm, start, n_lost)
    assert np.array_equal(y[loss], np.tile(fake, n_lost))   # libopus throughout ...
    assert np.array_equal(y[back], pcm[back])                 # ... and nothing to cross-fade from
    assert plc.stats["gated_losses"] == 1 and plc.stats["losses"] == 1
    assert plc.stats["gated_slots"] == n_lost and plc.stats["lead_slots"] == 0 and plc.stats["shaped_slots"] == 0
    # Ungated, or after voiced speech, the vocoder takes over after the lead.
    y = _drive(_plc(tiny_vocoder, tiny[0], voiced_gate=None), pcm, start, n_lost)
    assert not np.array_equal(y[loss], np.tile(fake, n_lost))
    plc = _plc(tiny_vocoder, tiny[0], voiced_gate=0.5)
    y = _drive(plc, speech, start, n_lost)
    assert plc.stats["gated_losses"] == 0
    assert not np.array_equal(y[loss], np.tile(speech[(start - 1) * SLOT:start * SLOT].astype(np.float64), n_lost))
    # Without libopus's concealment there is nothing to leave the loss to: the vocoder runs.
    plc = _plc(tiny_vocoder, tiny[0], voiced_gate=0.5)
    _drive(plc, pcm, start, 2, opus_plc=False)
    assert plc.stats["lead_slots"] == 0 and plc.stats["silent_slots"] == 0


def _drive_continuous(plc, pcm, start, n_lost, n_slots):
    """Like :func:`_drive`, but libopus's stand-in is the true signal of each lost slot, so the
    concealment is continuous with what follows and any jump at the loss edges is the plug-in's.
    Runs ``n_slots`` slots (the one after the loss is handed back); returns float64."""
    hist = np.zeros(4096, np.int16)
    out = []
    for s in range(n_slots):
        x = pcm[s * SLOT:(s + 1) * SLOT]
        if start <= s < start + n_lost:
            y = plc.conceal(SlotContext(s, [], hist, s - start + 1, x))
            dec = Decision.NEURAL_PLC
        else:
            y = plc.handback(x) if s == start + n_lost else x
            dec = Decision.REGULAR
        out.append(y)
        hist = np.concatenate([hist[SLOT:], y])
        plc.observe(y, dec)
    return np.concatenate(out).astype(np.float64)


def test_gated_losses_are_shaped_and_handed_back_smoothly(tiny, tiny_vocoder):
    """libopus's concealment of a gated loss is pulled towards the predicted features,
    within the filter's gain bounds, and the shaping fades out over the first real frame."""
    rng = np.random.default_rng(5)
    n_slots, start, n_lost = 60, 40, 4
    # Unvoiced and continuous: the stand-in for libopus's concealment is the true signal itself,
    # so any jump at the loss edges comes from the shaping.
    pcm = np.convolve(rng.normal(0, 3000, n_slots * SLOT), np.ones(4) / 4, "same").astype(np.int16)
    own = np.abs(np.diff(pcm.astype(np.float64)))
    plc = NeuralPLC(tiny_vocoder, tiny[0])     # voiced_gate=0.5, shape_gated=0.5
    y = _drive_continuous(plc, pcm, start, n_lost, n_slots)
    assert plc.stats["gated_losses"] == 1 and plc.stats["shaped_slots"] == n_lost
    a, b = start * SLOT, (start + n_lost) * SLOT
    ratio = np.sqrt(np.sum(y[a:b] ** 2) / np.sum(pcm[a:b].astype(np.float64) ** 2))
    assert not np.array_equal(y[a:b], pcm[a:b]) and 0.25 < ratio < 2.0
    # the first real frame fades out of the shaping; the rest of the slot is untouched
    assert not np.array_equal(y[b:b + 160], pcm[b:b + 160])
    assert np.array_equal(y[b + 160:], pcm[b + 160:])
    limit = np.percentile(own, 99.5)
    assert abs(y[a] - y[a - 1]) <= limit and abs(y[b] - y[b - 1]) <= limit
    assert np.max(np.abs(np.diff(y[a - 1:b + 160]))) <= 1.5 * own.max()


def test_tail_of_a_voiced_loss_is_shaped_and_handed_back_smoothly(speech, tiny, tiny_vocoder):
    """Past the vocoder's fade libopus's concealment is shaped; the shaping fades in over one
    frame and out over the first real frame."""
    start, n_lost = 50, 8
    own = np.abs(np.diff(speech.astype(np.float64)))
    plc = NeuralPLC(tiny_vocoder, tiny[0])     # lead 20 ms, vocoder fades out by 80 ms
    y = _drive_continuous(plc, speech, start, n_lost, start + n_lost + 2)
    assert plc.stats["gated_losses"] == 0 and plc.stats["shaped_slots"] == n_lost - 4   # from 80 ms on
    t0, b = (start + 4) * SLOT, (start + n_lost) * SLOT
    assert not np.array_equal(y[t0:b], speech[t0:b])
    ratio = np.sqrt(np.sum(y[t0:b] ** 2) / np.sum(speech[t0:b].astype(np.float64) ** 2))
    assert 0.25 < ratio < 2.0
    assert np.array_equal(y[b + 160:], speech[b + 160:(start + n_lost + 2) * SLOT])
    limit = np.percentile(own, 99.5)
    assert abs(y[t0] - y[t0 - 1]) <= limit and abs(y[b] - y[b - 1]) <= limit
    assert np.max(np.abs(np.diff(y[t0 - 1:b + 160]))) <= 1.5 * own.max()


def test_lead_feeds_the_predictor_its_predictions(speech, tiny, tiny_vocoder):
    """During the libopus lead the predictor runs on its own predictions (flagged lost), as in training."""
    start = 30
    plc = _plc(tiny_vocoder, tiny[0], opus_lead_ms=20)
    hist = np.zeros(4096, np.int16)
    for s in range(start):
        x = speech[s * SLOT:(s + 1) * SLOT]
        hist = np.concatenate([hist[SLOT:], x])
        plc.observe(x, Decision.REGULAR)
    fake = speech[(start - 1) * SLOT:start * SLOT]
    y = plc.conceal(SlotContext(start, [], hist, 1, fake))
    assert np.array_equal(y, fake)  # the lead is libopus's output either way
    plc.observe(y, Decision.NEURAL_PLC)
    ref = FeaturePredictor(tiny[0])
    for f in compute_features(speech[:start * SLOT]):
        ref.update(f)
    ref.lost(), ref.lost()
    np.testing.assert_array_equal(plc._pred.prediction, ref.prediction)


def test_policy_validated(tiny, tiny_vocoder):
    for kw in ({"opus_lead_ms": 30}, {"opus_lead_ms": -20}, {"opus_lead_ms": 1020}, {"opus_lead_ms": True},
               {"voiced_gate": 1.5}, {"voiced_gate": -0.1}, {"voiced_gate": "0.5"}, {"shape_gated": 0.0},
               {"prime_frames": -1}, {"prime_frames": 4}):
        with pytest.raises(ValueError):
            ConcealmentPolicy(**kw)
    with pytest.raises(TypeError, match="_policy"):
        NeuralPLC(tiny_vocoder, tiny[0], _policy={"opus_lead_ms": 20})


def test_prime_frames_sets_the_teacher_forced_frames(speech, tiny, tiny_vocoder):
    """The continuation starts from the last prime_frames + 2 analysed frames (2 fill the
    conditioning history, the rest run teacher-forced)."""
    for k in (0, 1, 2, 3):
        plc = _plc(tiny_vocoder, tiny[0], prime_frames=k)
        seen = []
        orig = plc._cont._voc.prime
        plc._cont._voc.prime = lambda h, f: seen.append(len(f)) or orig(h, f)
        _drive(plc, speech, 40, 3)
        assert seen == [k + 2]


def test_int8_concealment_matches_reference(speech, tiny, tiny_vocoder):
    a = _drive(NeuralPLC(tiny_vocoder, tiny[0]), speech, 40, 3)
    b = _drive(NeuralPLC(tiny_vocoder, tiny[0], reference=True), speech, 40, 3)
    seg = slice(40 * SLOT, 44 * SLOT)
    err = np.sum((a[seg] - b[seg]) ** 2)
    assert 10 * np.log10(np.sum(b[seg] ** 2) / max(err, 1e-9)) > 20.0


def _edge_jump(y, i):
    return abs(y[i] - y[i - 1])


@pytest.mark.parametrize("opus_plc", [True, False])
def test_shipped_models_edges_have_no_click(speech, opus_plc):
    """Loss start and hand-back: the sample jump is within the real signal's own jumps."""
    if "plc" not in load_manifest()["models"]:
        pytest.fail("the shipped PLC model is missing from edge_dred/models")
    plc = NeuralPLC()
    own = np.abs(np.diff(speech.astype(np.float64)))
    for start, n_lost in ((30, 1), (60, 3), (100, 8)):
        plc = NeuralPLC()
        y = _drive(plc, speech, start, n_lost, opus_plc)
        local = own[(start - 10) * SLOT:(start + n_lost + 1) * SLOT]
        a, b = start * SLOT, (start + n_lost) * SLOT
        assert _edge_jump(y, a) <= np.percentile(local, 99.5), ("start", start)
        assert _edge_jump(y, b) <= np.percentile(local, 99.5), ("end", start)
        # no click anywhere in the concealed span or the cross-fade
        assert np.max(np.abs(np.diff(y[a - 1:b + 320]))) <= 1.5 * local.max()
    # the last second of output (lazy analysis, 32 KB) and two envelope filters' FFT plans (2 x 7 KB)
    assert plc.state_bytes <= 96 * 1024


def test_runaway_predictions_are_clamped(tmp_path, tiny, feats):
    _, params, cfg, _ = tiny
    p = dict(params)
    p["out.bias"] = np.full(20, 1e3, np.float32)  # a predictor that explodes when fed its own output
    export_plc(p, cfg, tmp_path / "x.bin")
    model = PLCModel.load(path=tmp_path / "x.bin")
    pred = FeaturePredictor(model)
    pred.update(feats[10])
    for _ in range(50):
        f = pred.lost()
        assert np.all(np.abs(f - model.feat_mean) <= 8.0 * model.feat_std + 1e-3)


def test_history_analysis_at_loss_start(speech, tiny, tiny_vocoder):
    """With history_ms the plug-in analyses nothing while packets arrive; at a loss start it
    analyses its last history_ms of output with a fresh extractor and runs the predictor over it."""
    start, hist_ms = 40, 200
    plc = _plc(tiny_vocoder, tiny[0], history_ms=hist_ms)
    hist = np.zeros(4096, np.int16)
    for s in range(start):
        x = speech[s * SLOT:(s + 1) * SLOT]
        hist = np.concatenate([hist[SLOT:], x])
        plc.observe(x, Decision.REGULAR)
    assert not np.any(plc._feats)                                              # no frame analysed yet
    untouched = FeaturePredictor(tiny[0])
    np.testing.assert_array_equal(plc._pred.prediction, untouched.prediction)   # nothing analysed yet
    fake = speech[(start - 1) * SLOT:start * SLOT]
    plc.conceal(SlotContext(start, [], hist, 1, fake))
    ref = FeaturePredictor(tiny[0])
    for f in compute_features(speech[(start * SLOT - hist_ms * 16):start * SLOT]):
        ref.update(f)
    ref.lost(), ref.lost()
    np.testing.assert_allclose(plc._pred.prediction, ref.prediction, rtol=0, atol=1e-5)
    assert np.any(plc._feats)


@pytest.mark.parametrize("n_lost", [1, 3])
def test_lazy_analysis_conceals_as_eager_when_the_history_covers_the_stream(speech, tiny, tiny_vocoder, n_lost):
    """The lazy plug-in analyses what it played, from the stream's start, in one block at the loss:
    the same features and predictor state as analysing every slot, so the same concealment."""
    eager = _drive(_plc(tiny_vocoder, tiny[0], history_ms=None), speech, 40, n_lost)
    lazy = _drive(_plc(tiny_vocoder, tiny[0], history_ms=1000), speech, 40, n_lost)
    np.testing.assert_array_equal(lazy, eager)


def _drive_losses(plc, pcm, lost_slots, n_slots):
    """Slots 0..n_slots-1, those in ``lost_slots`` concealed (the real slot as libopus's stand-in)."""
    hist = np.zeros(4096, np.int16)
    out, run = [], 0
    for s in range(n_slots):
        x = pcm[s * SLOT:(s + 1) * SLOT]
        if s in lost_slots:
            run += 1
            y, dec = plc.conceal(SlotContext(s, [], hist, run, x)), Decision.NEURAL_PLC
        else:
            y, dec = (plc.handback(x) if run else x), Decision.REGULAR
            run = 0
        out.append(y)
        hist = np.concatenate([hist[SLOT:], y])
        plc.observe(y, dec)
    return np.concatenate(out)


def test_lazy_analysis_catches_up_across_losses(speech, tiny, tiny_vocoder):
    """Losses at most history_ms apart: each loss start analyses only what was played since the
    last analysis, continuing the extractor and predictor, so the concealment follows eager analysis
    throughout a stream far longer than the history; the work at each loss start is that backlog,
    less the plug-in's own output before the last frames (history for the extractor only)."""
    n_slots = len(speech) // SLOT
    lost = {s for s0 in range(8, n_slots - 3, 9) for s in (s0, s0 + 1)}    # 2 lost slots every 180 ms
    eager = _drive_losses(_plc(tiny_vocoder, tiny[0], history_ms=None), speech, lost, n_slots)
    plc = _plc(tiny_vocoder, tiny[0], history_ms=200)
    calls, skipped = [], []
    orig, orig_skip = plc._fx.process_block, plc._fx.skip_block
    plc._fx.process_block = lambda x: calls.append(len(x)) or orig(x)
    plc._fx.skip_block = lambda x: skipped.append(len(x)) or orig_skip(x)
    lazy = _drive_losses(plc, speech, lost, n_slots)
    assert n_slots * SLOT > 5 * 200 * 16                      # the stream is much longer than the history
    # Only the pitch tracker's continuity state can differ (it does not see the skipped frames).
    err = np.sum((lazy.astype(np.float64) - eager) ** 2)
    assert 10 * np.log10(np.sum(eager.astype(np.float64) ** 2) / max(err, 1e-9)) > 60.0
    # per loss: at its start, the 7 real slots since the previous loss (whose second, own slot is
    # skipped; the first loss: the 8 slots before it); when the vocoder is primed, libopus's lead
    # (one slot). Nothing else: the concealed slots themselves cost no analysis as they are played.
    n = len(lost) // 2
    assert calls == [8 * SLOT, SLOT] + [7 * SLOT, SLOT] * (n - 1)
    assert skipped == [SLOT] * (n - 1)


def test_predictor_block_update_equals_row_updates(tiny, feats):
    a, b = FeaturePredictor(tiny[0]), FeaturePredictor(tiny[0])
    for f in feats[:50]:
        a.update(f)
    b.update_block(feats[:50])
    np.testing.assert_array_equal(a.prediction, b.prediction)
    np.testing.assert_array_equal(a.lost(), b.lost())
    with pytest.raises(PLCInputError):
        b.update_block(feats[:5, :19])
    with pytest.raises(PLCInputError):
        b.update_block(np.full((2, 20), np.nan))
