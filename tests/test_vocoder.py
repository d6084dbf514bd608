"""Vocoder runtime: export path, int8 vs float, continuation, weight-file errors.

A tiny randomly initialised model goes through the real export path
(``export_vocoder`` -> weight file -> ``VocoderModel.load``), so nothing here
needs torch or ../shared.  Tests marked with torch compare against the
training code's PyTorch model and are skipped where torch is missing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import voiced
from edge_dred.dsp.features import compute_features
from edge_dred.models.loader import ModelFileError, load_manifest, update_manifest
from edge_dred.constants import FRAME_SIZE as FRAME
from edge_dred.neural.vocoder import (MODEL_VERSION, PRIME_FRAMES, Vocoder, VocoderInputError, VocoderModel,
                               VocoderReference, export_vocoder, prime_samples, random_vocoder_params)

TINY = dict(pembed_dim=4, cond_dense1=16, cond_conv=24, cond_size=16, fwc_size=16, gru_sizes=[24, 16, 16],
            skip_size=16)
REPO = Path(__file__).resolve().parents[1]


def snr_db(ref, test) -> float:
    ref = np.asarray(ref, np.float64)
    err = np.sum((ref - np.asarray(test, np.float64)) ** 2)
    return float(10 * np.log10(np.sum(ref ** 2) / max(err, 1e-20)))


@pytest.fixture(scope="module")
def signal():
    pcm = voiced(1.5, f0=130.0, seed=3)
    return pcm, compute_features(pcm)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, signal):
    _, f = signal
    params, cfg = random_vocoder_params(TINY, seed=7, feat_mean=f.mean(0), feat_std=f.std(0) + 1e-3)
    path = tmp_path_factory.mktemp("voc") / "vocoder.bin"
    info = export_vocoder(params, cfg, path)
    return VocoderModel.load(path=path), params, cfg, info


def _prime_at(v, pcm, f, s):
    return v.prime(pcm[: s * FRAME], f[s - PRIME_FRAMES - 2: s])


def test_shapes_and_determinism(tiny, signal):
    model, *_ = tiny
    pcm, f = signal
    a, b = Vocoder(model), Vocoder(model)
    tf = _prime_at(a, pcm, f, 50)
    assert tf.shape == (PRIME_FRAMES * FRAME,) and tf.dtype == np.float32
    _prime_at(b, pcm, f, 50)
    ya = a.synthesize(f[50:56])
    assert ya.shape == (6 * FRAME,) and ya.dtype == np.int16
    assert np.array_equal(ya, b.synthesize(f[50:56]))  # two streams of one model agree exactly
    _prime_at(a, pcm, f, 50)  # re-priming restores the same state
    assert np.array_equal(ya, a.synthesize(f[50:56]))
    assert np.any(ya != 0)
    assert a.synthesize(np.zeros((0, 20), np.float32)).shape == (0,)


def test_streaming_equals_one_call(tiny, signal):
    model, *_ = tiny
    pcm, f = signal
    a, b = Vocoder(model), Vocoder(model)
    _prime_at(a, pcm, f, 60)
    _prime_at(b, pcm, f, 60)
    one = a.synthesize(f[60:70])
    parts = np.concatenate([b.synthesize(f[60:63]), b.synthesize(f[63:64]), b.synthesize(f[64:70])])
    assert np.array_equal(one, parts)


def test_int8_matches_float_reference(tiny, signal):
    model, *_ = tiny
    pcm, f = signal
    rt, ref = Vocoder(model), VocoderReference(model)
    # Teacher-forced one-step outputs over 40 frames: per-step quantization error only.
    s = 50
    tf_rt = rt.prime(pcm[: s * FRAME], f[8:s])
    tf_ref = ref.prime(pcm[: s * FRAME], f[8:s])
    assert snr_db(tf_ref, tf_rt) > 30.0
    # Free-running continuation after real audio (what a lost packet gets).
    for s in (30, 55, 80):
        _prime_at(rt, pcm, f, s)
        _prime_at(ref, pcm, f, s)
        assert snr_db(ref.synthesize(f[s:s + 2]), rt.synthesize(f[s:s + 2])) > 25.0


def test_quantization_error_reported(tiny):
    *_, info = tiny
    assert info["bytes"] > 0 and len(info["sha256"]) == 64
    assert all(0 <= e < 0.01 for e in info["rel_err"].values())  # int8 per-row: ~max|w|/254 per weight


def test_block_sparse_export_runs_and_keeps_fewer_weights(tmp_path, tiny, signal):
    _, params, cfg, info = tiny
    pcm, f = signal
    sp = export_vocoder(params, cfg, tmp_path / "s.bin", gru_density=0.5)
    assert sp["params"] < info["params"]
    m = VocoderModel.load(path=tmp_path / "s.bin")
    rt, ref = Vocoder(m), VocoderReference(m)
    _prime_at(rt, pcm, f, 40)
    _prime_at(ref, pcm, f, 40)
    assert snr_db(ref.synthesize(f[40:42]), rt.synthesize(f[40:42])) > 25.0


def test_bad_inputs_raise_clear_errors(tiny, signal):
    model, *_ = tiny
    pcm, f = signal
    v = Vocoder(model)
    with pytest.raises(VocoderInputError, match="at least"):
        v.prime(pcm[:100], f[:5])
    with pytest.raises(VocoderInputError, match="at least 2"):
        v.prime(pcm[:2000], f[:1])
    with pytest.raises(VocoderInputError, match=r"\(frames, 20\)"):
        v.synthesize(f[:3, :19])
    bad = f[:3].copy()
    bad[1, 4] = np.nan
    with pytest.raises(VocoderInputError, match="finite"):
        v.synthesize(bad)
    with pytest.raises(VocoderInputError, match="int16 scale"):
        v.prime(pcm[:2000].astype(np.float64) * 100, f[:5])


# ------------------------------------------------------------ torch checks

def _torch_model(params, cfg):
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(REPO / "training"))
    try:
        from vocoder_model import Vocoder as TorchVocoder, VocoderConfig
    finally:
        sys.path.pop(0)
    m = TorchVocoder(VocoderConfig.from_dict(cfg))
    m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    return m.double().eval()


def _torch_continuation(m, pcm, f, s, n):
    import torch

    sys.path.insert(0, str(REPO / "training"))
    try:
        from export_vocoder import TorchStream
    finally:
        sys.path.pop(0)
    ts = TorchStream(m.float())
    ts.prime(pcm[: s * FRAME], f[s - PRIME_FRAMES - 2: s])
    return ts.synthesize(f[s:s + n])


def test_reference_equals_torch_model_math(tiny, signal):
    """The float reference with dequantized weights reproduces the training model exactly."""
    model, params, cfg, _ = tiny
    pytest.importorskip("torch")
    deq = dict(params)
    fl = model.float_layers()
    for name, layer in fl.items():
        if name.startswith("gru"):
            for k, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), layer):
                deq[f"{name}.{k}"] = a.astype(np.float32)
        else:
            deq[f"{name}.weight"], deq[f"{name}.bias"] = (a.astype(np.float32) for a in layer)
    m = _torch_model(deq, cfg)
    pcm, f = signal
    ref = VocoderReference(model)
    for s in (40, 70):
        _prime_at(ref, pcm, f, s)
        y_ref = ref.synthesize(f[s:s + 4])
        y_t = _torch_continuation(m, pcm, f, s, 4)
        assert np.max(np.abs(y_ref.astype(int) - y_t.astype(int))) <= 1  # int16 rounding only


def test_int8_runtime_matches_torch_float(tiny, signal):
    model, params, cfg, _ = tiny
    m = _torch_model(params, cfg)
    pcm, f = signal
    rt = Vocoder(model)
    for s in (35, 65, 90):
        _prime_at(rt, pcm, f, s)
        assert snr_db(_torch_continuation(m, pcm, f, s, 2), rt.synthesize(f[s:s + 2])) > 25.0


# ------------------------------------------------------------ shipped model

def test_shipped_model_loads_within_budgets():
    man = load_manifest()
    assert man["models"]["vocoder"]["version"] == MODEL_VERSION
    model = VocoderModel.load()
    total = sum(man["models"][k]["bytes"] for k in ("vocoder", "plc") if k in man["models"])
    assert total <= 1_500_000
    assert Vocoder(model).state_bytes <= 64 * 1024


def test_shipped_model_continues_real_audio_without_a_click():
    """First synthetic sample after priming: the jump is within the signal's own sample-to-sample jumps."""
    v = Vocoder(VocoderModel.load())
    for seed, f0 in ((0, 110.0), (1, 180.0)):
        pcm = voiced(1.6, f0=f0, seed=seed)
        f = compute_features(pcm)
        own = np.abs(np.diff(pcm.astype(np.float64)))
        for s in (40, 77, 123):
            _prime_at(v, pcm, f, s)
            y = v.synthesize(f[s:s + 4]).astype(np.float64)
            jump = abs(y[0] - float(pcm[s * FRAME - 1]))
            local = own[(s - 10) * FRAME: s * FRAME]
            assert jump <= np.percentile(local, 99.5), (seed, s, jump)
            # and the synthetic signal itself has no sample jumps beyond the real signal's
            assert np.max(np.abs(np.diff(y))) <= local.max() * 1.5
            assert np.sqrt(np.mean(y ** 2)) > 0.05 * np.sqrt(np.mean(pcm[s * FRAME:(s + 4) * FRAME] ** 2.0))


# --------------------------------------------------------- weight-file errors

@pytest.fixture
def models_copy(tmp_path, tiny):
    """A models directory with the tiny vocoder registered in its manifest."""
    d = tmp_path / "models"
    d.mkdir()
    params, cfg = tiny[1], tiny[2]
    export_vocoder(params, cfg, d / "vocoder.bin")
    (d / "manifest.json").write_text(json.dumps({"models": {"other": {"file": "x.bin", "version": "1",
                                                                      "sha256": "00", "bytes": 1}}}))
    update_manifest("vocoder", d / "vocoder.bin", MODEL_VERSION, {"note": "test"}, models_dir=d)
    return d


def test_manifest_merge_keeps_other_entries(models_copy):
    man = load_manifest(models_copy)
    assert set(man["models"]) == {"other", "vocoder"}
    assert man["models"]["vocoder"]["note"] == "test"
    VocoderModel.load(models_dir=models_copy)  # loads fine


def test_missing_file(models_copy):
    (models_copy / "vocoder.bin").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        VocoderModel.load(models_dir=models_copy)


def test_missing_manifest(models_copy):
    (models_copy / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="manifest .* is missing"):
        VocoderModel.load(models_dir=models_copy)


def test_not_in_manifest(models_copy):
    man = json.loads((models_copy / "manifest.json").read_text())
    del man["models"]["vocoder"]
    (models_copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelFileError, match="not in the manifest"):
        VocoderModel.load(models_dir=models_copy)


def test_truncated_file(models_copy):
    p = models_copy / "vocoder.bin"
    p.write_bytes(p.read_bytes()[:-1000])
    with pytest.raises(ModelFileError, match="truncated"):
        VocoderModel.load(models_dir=models_copy)
    with pytest.raises(ModelFileError, match="truncated"):  # without the manifest the header catches it
        VocoderModel.load(path=p)


def test_corrupted_file(models_copy):
    p = models_copy / "vocoder.bin"
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x40
    p.write_bytes(bytes(b))
    with pytest.raises(ModelFileError, match="corrupted"):
        VocoderModel.load(models_dir=models_copy)
    with pytest.raises(ModelFileError, match="sha256"):
        VocoderModel.load(path=p)


def test_wrong_version(models_copy, tiny, tmp_path):
    man = json.loads((models_copy / "manifest.json").read_text())
    man["models"]["vocoder"]["version"] = "fargan-int8-0"
    (models_copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelFileError, match="version 'fargan-int8-0'.*needs 'fargan-int8-1'"):
        VocoderModel.load(models_dir=models_copy)
    # A file written for another version is refused by its own header too.
    export_vocoder(tiny[1], tiny[2], tmp_path / "old.bin", version="fargan-int8-0")
    with pytest.raises(ModelFileError, match="version is 'fargan-int8-0'"):
        VocoderModel.load(path=tmp_path / "old.bin")


def test_manifest_cannot_point_outside(models_copy):
    man = json.loads((models_copy / "manifest.json").read_text())
    man["models"]["vocoder"]["file"] = "../vocoder.bin"
    (models_copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelFileError, match="plain file name"):
        VocoderModel.load(models_dir=models_copy)


def test_wrong_model_in_file(tmp_path):
    from edge_dred.quantize import write_weights

    write_weights(tmp_path / "v.bin", {"a": np.zeros(3, np.float32)}, {"model": "plc", "version": MODEL_VERSION})
    with pytest.raises(ModelFileError, match="model is 'plc'"):
        VocoderModel.load(path=tmp_path / "v.bin")


def test_mis_shaped_layer_is_refused(tmp_path, tiny):
    params, cfg = dict(tiny[1]), dict(tiny[2])
    export_vocoder(params, cfg, tmp_path / "v.bin")
    from edge_dred.quantize import read_weights, write_weights

    arrays, meta = read_weights(tmp_path / "v.bin")
    arrays = dict(arrays)
    arrays["out_dense.q"] = np.zeros((40, 15), np.int8)
    write_weights(tmp_path / "v2.bin", arrays, meta)
    with pytest.raises(ModelFileError, match="out_dense"):
        VocoderModel.load(path=tmp_path / "v2.bin")


def test_prime_samples_constant():
    assert prime_samples() == 320 + 1 + PRIME_FRAMES * FRAME


def test_postfilter_is_outside_the_loop_and_optional(tiny, signal):
    """The postfilter changes the output, not the network's state; strength 0 is the raw output."""
    from edge_dred.dsp.postfilter import EnvelopePostfilter

    model, *_ = tiny
    pcm, f = signal
    raw, on, zero = Vocoder(model, postfilter=False), Vocoder(model), Vocoder(model, postfilter=EnvelopePostfilter(0.0))
    assert raw.postfilter is None and on.postfilter is not None
    assert on.state_bytes == raw.state_bytes + on.postfilter.state_bytes
    for v in (raw, on, zero):
        _prime_at(v, pcm, f, 50)
    y_raw, y_on, y_zero = (v.synthesize(f[50:58]).astype(int) for v in (raw, on, zero))
    assert np.max(np.abs(y_zero - y_raw)) <= 1
    assert np.any(y_on != y_raw)
    # The network fed back its own unfiltered output: with the filter removed, the filtered
    # stream continues exactly as the raw one (after the de-emphasis memory has decayed).
    on.postfilter = None
    nxt_on, nxt_raw = on.synthesize(f[58:60]).astype(int), raw.synthesize(f[58:60]).astype(int)
    assert np.max(np.abs(nxt_on[FRAME:] - nxt_raw[FRAME:])) <= 1


def test_copy_synthesis_is_aligned_free_running_and_checks_its_input(tiny, signal):
    from edge_dred.neural.vocoder import copy_synthesis

    model, *_ = tiny
    pcm, _ = signal
    x = pcm[:7 * FRAME + 37]                    # a partial last frame
    y = copy_synthesis(x, Vocoder(model))
    assert y.dtype == np.int16 and y.shape == x.shape
    # the same as priming on silence and running free by hand
    pad = np.zeros(-(-prime_samples() // FRAME) * FRAME, np.int16)
    padded = np.concatenate([pad, x, np.zeros(-len(x) % FRAME, np.int16)])
    f = compute_features(padded)
    v = Vocoder(model)
    _prime_at(v, padded, f, len(pad) // FRAME)
    assert np.array_equal(y, v.synthesize(f[len(pad) // FRAME:])[:len(x)])
    # a stream that was busy elsewhere is primed afresh
    busy = Vocoder(model)
    _prime_at(busy, pcm, compute_features(pcm), 40)
    busy.synthesize(compute_features(pcm)[40:50])
    assert np.array_equal(copy_synthesis(x, busy), y)
    for bad in (x.astype(np.float32), x[None], x[:0]):
        with pytest.raises(VocoderInputError, match="int16"):
            copy_synthesis(bad, Vocoder(model))


def test_default_postfilter_is_the_chain_and_others_are_refused(tiny):
    from edge_dred.dsp.postfilter import PitchPostfilter, VocoderPostfilter

    model, *_ = tiny
    v = Vocoder(model)
    assert isinstance(v.postfilter, VocoderPostfilter)
    assert v.postfilter.envelope is not None and v.postfilter.pitch is not None
    assert isinstance(Vocoder(model, postfilter=PitchPostfilter()).postfilter, PitchPostfilter)
    with pytest.raises(TypeError, match="postfilter"):
        Vocoder(model, postfilter="on")
