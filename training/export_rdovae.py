"""Export the trained RDO-VAE: int8 TFLite encoder step, decoder weights + tables.

Outputs (in ``edge_dred/models/``)
----------------------------------
``dred_encoder.tflite``
    One 20 ms encoder step converted with litert-torch and quantised with
    ai-edge-quantizer.  Default recipe ``dynamic_wi8_afp32`` (int8 weights,
    int8 matmuls on dynamically quantised activations, float state): the
    fully static int8 recipe (``static_wi8_ai8``, calibrated on real training
    features) is available with ``--recipe`` but measured 0.5 dB worse
    decoded LSD at q = 0 (int8 GRU states drift), beyond
    :data:`LSD_TOLERANCE_DB`; see ``--compare-recipes``.  Inputs: ``frames``
    (1, 40) *normalised* features of the 2 newest frames, older first
    (``(f - feature_mean) / feature_std``, constants in the decoder file and
    the manifest), ``h1``, ``h2`` (1, 128) GRU states (zeros at start).
    Outputs: ``z`` (1, D) unquantised latent, ``s`` (1, S) unquantised state,
    new ``h1``, ``h2``.  Inputs are normalised outside the graph because int8
    per-tensor input quantisation cannot hold a pitch period (~32..267) and
    cepstral coefficients of magnitude ~0.1 in one tensor.
``dred_decoder.npz``
    float32 decoder weights (output de-normalisation folded into
    ``dec_out_*``, so it produces raw features) and ``feature_mean`` /
    ``feature_std``.  See :func:`decoder_arrays` for names and
    :func:`decode_numpy` for the exact maths the runtime must reproduce.
``dred_tables.npz``
    the contract's quantiser / entropy tables, which sender and receiver
    both code with (:mod:`edge_dred.dred.tables`; a few KB, so the sender
    does not load the decoder).
``manifest.json``
    entries ``dred_encoder``, ``dred_decoder`` and ``dred_tables`` (version,
    sha256, bytes); other entries are kept.

Also prints a rate/distortion table per quantiser level on held-out dev
features (``--dev-files`` FLAC files from ``../shared/data/speech/dev``,
features cached in ``training/data/rdovae_dev_features.npy``).

Usage::

    .venv/bin/python training/export_rdovae.py            # export + verify + table
    .venv/bin/python training/export_rdovae.py --eval-only
    .venv/bin/python training/export_rdovae.py --no-encoder --skip-table   # decoder + tables only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from rdovae_model import (DEC_FRAMES, ENC_FRAMES, MAX_CHUNKS, NB_FEATURES, RDOVAE,  # noqa: E402
                          deadzone_round, ideal_code_bits)

MODELS = REPO / "edge_dred" / "models"
VERSION = "rdovae-1"
DEV_DIR = REPO.parent / "shared" / "data" / "speech" / "dev"
DEV_CACHE = HERE / "data" / "rdovae_dev_features.npy"
# Accepted end-to-end cost of the int8 encoder: decoded band log-spectral
# distance at q = 0 may grow by at most this much over the float encoder.
LSD_TOLERANCE_DB = 0.3


class EncoderStep(torch.nn.Module):
    """The exported graph: one encoder step on normalised frames."""

    def __init__(self, model: RDOVAE) -> None:
        super().__init__()
        self.enc = model.encoder

    def forward(self, frames: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor):
        return self.enc.step(frames, h1, h2)


def load_checkpoint(path: Path) -> RDOVAE:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    from rdovae_model import config_from_dict
    m = RDOVAE(config_from_dict(ck["config"]))
    m.load_state_dict(ck["model"])
    print(f"checkpoint {path} step {ck.get('step')}", flush=True)
    return m.eval()


def dev_features(n_files: int) -> np.ndarray:
    """Features of the first ``n_files`` dev files (cached), concatenated."""
    if DEV_CACHE.exists():
        f = np.load(DEV_CACHE)
        return f
    import soundfile as sf
    from edge_dred.dsp.features import compute_features
    files = sorted(DEV_DIR.rglob("*.flac"))
    if not files:
        raise FileNotFoundError(f"no dev files under {DEV_DIR}")
    # Spread the pick over the sorted list so several speakers/corpora appear.
    pick = [files[i] for i in np.linspace(0, len(files) - 1, min(n_files, len(files))).astype(int)]
    out = []
    for p in pick:
        x, fs = sf.read(p, dtype="int16", always_2d=True)
        if fs != 16000:
            continue
        out.append(np.asarray(compute_features(x[:, 0].astype(np.float32)), dtype=np.float32))
    f = np.concatenate(out)
    DEV_CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.save(DEV_CACHE, f)
    return f


def encoder_states(model: RDOVAE, feats: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run the PyTorch step encoder over a sequence; returns per-step inputs and outputs."""
    n = feats.shape[0] // ENC_FRAMES
    x = model.normalize(torch.from_numpy(feats[:n * ENC_FRAMES])).reshape(n, ENC_FRAMES * NB_FEATURES)
    hs = model.cfg.enc_gru
    h1 = torch.zeros(1, hs)
    h2 = torch.zeros(1, hs)
    xs, h1s, h2s, zs, ss = [], [], [], [], []
    with torch.no_grad():
        for j in range(n):
            xs.append(x[j:j + 1]); h1s.append(h1); h2s.append(h2)
            z, s, h1, h2 = model.encoder.step(x[j:j + 1], h1, h2)
            zs.append(z); ss.append(s)
    cat = lambda v: torch.cat(v).numpy()  # noqa: E731
    return cat(xs), cat(h1s), cat(h2s), cat(zs), cat(ss)


def convert_encoder(model: RDOVAE, calib_feats: np.ndarray, recipe: str, out: Path) -> bytes:
    """litert-torch conversion + ai-edge-quantizer static quantisation."""
    import litert_torch
    from ai_edge_quantizer import quantizer, recipe as aeq_recipe

    step = EncoderStep(model).eval()
    hs = model.cfg.enc_gru
    args = (torch.zeros(1, ENC_FRAMES * NB_FEATURES), torch.zeros(1, hs), torch.zeros(1, hs))
    edge = litert_torch.convert(step, args)
    f32 = out.with_suffix(".f32.tflite")
    edge.export(str(f32))
    float_bytes = f32.read_bytes()
    if recipe == "float":
        return float_bytes
    qz = quantizer.Quantizer(float_bytes)
    qz.load_quantization_recipe(getattr(aeq_recipe, recipe)())
    # Calibration samples: (frames, h1, h2) exactly as seen in a real stepwise run.
    xs, h1s, h2s, _, _ = encoder_states(model, calib_feats)
    from ai_edge_litert.interpreter import Interpreter
    sig = Interpreter(model_content=float_bytes).get_signature_list()["serving_default"]["inputs"]
    names = sorted(sig)  # args_0, args_1, args_2 in argument order
    data = [{names[0]: xs[j:j + 1], names[1]: h1s[j:j + 1], names[2]: h2s[j:j + 1]} for j in range(xs.shape[0])]
    calib = qz.calibrate({"serving_default": data}, num_threads=1)
    res = qz.quantize(calib, enable_progress_report=False)
    return bytes(res.quantized_model)


def run_tflite(model_bytes: bytes, xs: np.ndarray, hs: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the TFLite step model recurrently (its own states fed back).

    Uses the plain tensor interface, inputs/outputs ordered by tensor name
    (``serving_default_args_{0,1,2}``, ``serving_default_output_{0..3}...``):
    ai-edge-quantizer 0.10 leaves the signature map of the two state outputs
    pointing at pre-requantisation tensors, so the signature runner fails.
    int8 tensors are (de)quantised with their (scale, zero_point), as the
    runtime must do.
    """
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=model_bytes, num_threads=1)
    it.allocate_tensors()
    ind = sorted(it.get_input_details(), key=lambda d: d["name"])
    outd = sorted(it.get_output_details(), key=lambda d: d["name"])

    def q_in(d: dict, v: np.ndarray) -> np.ndarray:
        if d["dtype"] == np.float32:
            return v.astype(np.float32)
        scale, zp = d["quantization"]
        info = np.iinfo(d["dtype"])
        return np.clip(np.round(v / scale) + zp, info.min, info.max).astype(d["dtype"])

    def dq_out(d: dict, v: np.ndarray) -> np.ndarray:
        if d["dtype"] == np.float32:
            return v.copy()
        scale, zp = d["quantization"]
        return ((v.astype(np.float32) - zp) * scale).astype(np.float32)

    h1 = np.zeros((1, hs), np.float32)
    h2 = np.zeros((1, hs), np.float32)
    zs, ss = [], []
    for j in range(xs.shape[0]):
        for d, v in zip(ind, (xs[j:j + 1], h1, h2)):
            it.set_tensor(d["index"], q_in(d, v))
        it.invoke()
        z, s, h1, h2 = (dq_out(d, it.get_tensor(d["index"])) for d in outd)
        zs.append(z); ss.append(s)
    return np.concatenate(zs), np.concatenate(ss)


def decoder_arrays(model: RDOVAE) -> dict[str, np.ndarray]:
    """Arrays of ``dred_decoder.npz`` (float32 unless noted; the tables go to ``dred_tables.npz``)."""
    d = model.decoder
    g = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    std = model.feature_std.repeat(DEC_FRAMES)
    mean = model.feature_mean.repeat(DEC_FRAMES)
    arr = {
        "version": np.array(VERSION),
        "dims": np.array([model.cfg.latent_dim, model.cfg.state_dim, model.cfg.dec_dense, model.cfg.dec_gru,
                          model.cfg.init_hidden, DEC_FRAMES, NB_FEATURES], dtype=np.int32),
        "dec_init1_weight": g(d.init1.weight), "dec_init1_bias": g(d.init1.bias),
        "dec_init2_weight": g(d.init2.weight), "dec_init2_bias": g(d.init2.bias),
        "dec_dense_in_weight": g(d.dense_in.weight), "dec_dense_in_bias": g(d.dense_in.bias),
        # Fold de-normalisation into the output layer: out_raw = std * (W h + b) + mean.
        "dec_out_weight": g(d.dense_out.weight * std[:, None]),
        "dec_out_bias": g(d.dense_out.bias * std + mean),
        "feature_mean": g(model.feature_mean), "feature_std": g(model.feature_std),
    }
    for name, gru in (("dec_gru1", d.gru1), ("dec_gru2", d.gru2)):
        arr[f"{name}_w_ih"] = g(gru.weight_ih_l0)
        arr[f"{name}_w_hh"] = g(gru.weight_hh_l0)
        arr[f"{name}_b_ih"] = g(gru.bias_ih_l0)
        arr[f"{name}_b_hh"] = g(gru.bias_hh_l0)
    return arr


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gru(x, h, w_ih, w_hh, b_ih, b_hh):
    gi = w_ih @ x + b_ih
    gh = w_hh @ h + b_hh
    n = h.shape[0]
    r = _sig(gi[:n] + gh[:n])
    u = _sig(gi[n:2 * n] + gh[n:2 * n])
    c = np.tanh(gi[2 * n:] + r * gh[2 * n:])
    return (1 - u) * c + u * h


def decode_numpy(w: dict[str, np.ndarray], k_lat: np.ndarray, q: np.ndarray, k_state: np.ndarray) -> np.ndarray:
    """Reference decoder on exported arrays (what the C runtime implements).

    Parameters
    ----------
    k_lat : numpy.ndarray
        (L, D) integer latents newest first.
    q : numpy.ndarray
        (L,) quantiser level of each latent.
    k_state : numpy.ndarray
        (S,) integer state.

    Returns
    -------
    numpy.ndarray
        (4 L, 20) raw features, newest frame first.
    """
    s = k_state / w["state_quant_scale"]
    h = np.tanh(w["dec_init2_weight"] @ np.tanh(w["dec_init1_weight"] @ s + w["dec_init1_bias"]) + w["dec_init2_bias"])
    hs = w["dec_gru1_w_hh"].shape[1]
    h1, h2 = h[:hs], h[hs:]
    out = []
    for j in range(k_lat.shape[0]):
        z = k_lat[j] / w["quant_scale"][q[j]]
        x = np.tanh(w["dec_dense_in_weight"] @ z + w["dec_dense_in_bias"])
        h1 = _gru(x, h1, w["dec_gru1_w_ih"], w["dec_gru1_w_hh"], w["dec_gru1_b_ih"], w["dec_gru1_b_hh"])
        h2 = _gru(np.concatenate([x, h1]), h2, w["dec_gru2_w_ih"], w["dec_gru2_w_hh"], w["dec_gru2_b_ih"],
                  w["dec_gru2_b_hh"])
        out.append(w["dec_out_weight"] @ np.concatenate([x, h1, h2]) + w["dec_out_bias"])
    return np.concatenate(out).reshape(-1, NB_FEATURES)


def quantize_np(x: np.ndarray, scale: np.ndarray, dz: np.ndarray) -> np.ndarray:
    return deadzone_round(torch.from_numpy(x * scale), torch.from_numpy(dz)).clamp(-1023, 1023).numpy()


def rd_table(model: RDOVAE, feats: np.ndarray, z: np.ndarray, s: np.ndarray) -> list[dict]:
    """Rate and distortion per quantiser level on a feature sequence.

    Packets every 52 encoder steps (so their 26 chunks tile the signal without
    overlap); each is decoded backward from its own quantised state, as the
    receiver would after a loss of >= 1.04 s.
    """
    tab = model.stats.tables()
    n = z.shape[0]
    ends = np.arange(2 * MAX_CHUNKS - 1, n, 2 * MAX_CHUNKS)
    zi = ends[:, None] - 2 * np.arange(MAX_CHUNKS)[None, :]          # (P, 26) newest first
    fi = np.stack([2 * zi + 1, 2 * zi, 2 * zi - 1, 2 * zi - 2], -1)   # (P, 26, 4)
    ref = feats[fi]                                                   # (P, 26, 4, 20)
    c0 = ref[..., 0]
    active = c0 > np.median(feats[:, 0])
    voiced = ref[..., 19] > 0.5
    ks = quantize_np(s[ends], tab["state_quant_scale"], tab["state_dead_zone"])
    state_bits = ideal_code_bits(ks, tab["state_p0"], tab["state_decay"]).sum(-1).mean()
    rows = []
    for q in range(model.cfg.quant_levels):
        k = quantize_np(z[zi], tab["quant_scale"][q], tab["dead_zone"][q])          # (P, 26, D)
        bits = ideal_code_bits(k, tab["p0"][q], tab["decay"][q]).sum(-1)            # (P, 26)
        with torch.no_grad():
            zh = torch.from_numpy((k / tab["quant_scale"][q]).astype(np.float32))
            sh = torch.from_numpy((ks / tab["state_quant_scale"]).astype(np.float32))
            out = model.denormalize(model.decoder(zh, sh).reshape(*zi.shape, DEC_FRAMES, NB_FEATURES)).numpy()
        d2 = ((out[..., :18] - ref[..., :18]) ** 2).mean(-1)
        lsd = 10.0 * np.sqrt(d2)                                  # band log-spectral distance, dB
        perr = np.abs(out[..., 18] - ref[..., 18]) / ref[..., 18]
        rows.append({"q": q, "bits_per_chunk": float(bits.mean()), "kbps": float(bits.mean() * 25 / 1000),
                     "zero_frac": float((k == 0).mean()),
                     "ceps_mse": float(d2.mean()), "lsd_db": float(lsd.mean()),
                     "lsd_db_active": float(lsd[active].mean()),
                     "pitch_rel_err_voiced_median": float(np.median(perr[voiced])) if voiced.any() else float("nan"),
                     "corr_mae": float(np.abs(out[..., 19] - ref[..., 19]).mean())})
    rows.append({"state_bits_per_packet": float(state_bits), "packets": int(len(ends))})
    return rows


def print_table(rows: list[dict]) -> None:
    print(" q | bits/40ms | kb/s  | zero% | ceps MSE | LSD dB | LSD act | pitch err (voiced, median) | corr MAE")
    for r in rows[:-1]:
        print(f"{r['q']:2d} | {r['bits_per_chunk']:9.1f} | {r['kbps']:5.2f} | {100 * r['zero_frac']:5.1f} | "
              f"{r['ceps_mse']:8.4f} | {r['lsd_db']:6.2f} | {r['lsd_db_active']:7.2f} | "
              f"{100 * r['pitch_rel_err_voiced_median']:25.2f}% | {r['corr_mae']:.3f}")
    print(f"state: {rows[-1]['state_bits_per_packet']:.1f} bits/packet over {rows[-1]['packets']} packets")


def update_manifest(entries: dict[str, tuple[Path, dict]]) -> None:
    """Merge our entries with the project's manifest writer (keeps other models')."""
    from edge_dred.models.loader import update_manifest as _update
    for name, (path, extra) in entries.items():
        _update(name, path, VERSION, extra)


def calibration_features(n_frames: int) -> np.ndarray:
    """Random 5 s segments of the clean training features (never dev)."""
    train_npz = HERE / "data" / "vocoder_0.npz"
    if train_npz.exists():
        with np.load(train_npz) as zf:
            cal = zf["feats"]
    else:
        cal = np.load(HERE / "data" / "rdovae_features.npy")
    rng = np.random.default_rng(0)
    segs = [cal[s0:s0 + 500] for s0 in rng.integers(0, cal.shape[0] - 500, max(1, n_frames // 500))]
    return np.concatenate(segs).astype(np.float32)


def verify_tflite(model: RDOVAE, qbytes: bytes, vf: np.ndarray) -> dict[str, float]:
    """Compare the TFLite encoder (run recurrently) with PyTorch on features ``vf``.

    Reports latent/state errors, quantiser-symbol mismatches at q = 0, 7, 15
    and the end-to-end decoded LSD with either encoder's latents.
    """
    tab = model.stats.tables()
    xs, _, _, zt, st = encoder_states(model, vf)
    zq, sq = run_tflite(qbytes, xs, model.cfg.enc_gru)
    zr = np.sqrt(((zq - zt) ** 2).mean() / (zt ** 2).mean())
    sr = np.sqrt(((sq - st) ** 2).mean() / (st ** 2).mean())
    check = {"z_rel_rms_err": float(zr), "s_rel_rms_err": float(sr),
             "z_max_abs_err": float(np.abs(zq - zt).max()), "z_rms": float(np.sqrt((zt ** 2).mean()))}
    for lv in (0, 7, 15):
        kt = quantize_np(zt, tab["quant_scale"][lv], tab["dead_zone"][lv])
        kq = quantize_np(zq, tab["quant_scale"][lv], tab["dead_zone"][lv])
        check[f"symbol_mismatch_q{lv}"] = float((kt != kq).mean())
        check[f"err_in_steps_rms_q{lv}"] = float(np.sqrt((((zq - zt) * tab["quant_scale"][lv]) ** 2).mean()))
    ndev = zq.shape[0] * ENC_FRAMES
    rows_q = rd_table(model, vf[:ndev], zq, sq)
    rows_t = rd_table(model, vf[:ndev], zt, st)
    for lv in (0, 15):
        check[f"lsd_db_q{lv}_tflite"] = rows_q[lv]["lsd_db"]
        check[f"lsd_db_q{lv}_torch"] = rows_t[lv]["lsd_db"]
        check[f"kbps_q{lv}_tflite"] = rows_q[lv]["kbps"]
        check[f"kbps_q{lv}_torch"] = rows_t[lv]["kbps"]
    return check


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=HERE / "checkpoints" / "rdovae" / "latest.pt")
    ap.add_argument("--recipe", default="dynamic_wi8_afp32",
                    help="ai_edge_quantizer.recipe function (static_wi8_ai8, static_wi8_ai16, "
                         "dynamic_wi8_afp32) or 'float'")
    ap.add_argument("--dev-files", type=int, default=80)
    ap.add_argument("--calib-frames", type=int, default=6000, help="train-set frames for calibration")
    ap.add_argument("--verify-frames", type=int, default=6000, help="dev frames for TFLite verification")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--decoder-format", choices=("npz", "bin"), default="npz",
                    help="npz (what edge_dred/dred/decoder.py loads today) or the edge_dred.quantize.weightfile format")
    ap.add_argument("--compare-recipes", action="store_true",
                    help="only convert with several ai-edge-quantizer recipes and print their agreement")
    ap.add_argument("--skip-table", action="store_true", help="skip the R/D table (quick export)")
    ap.add_argument("--no-encoder", action="store_true",
                    help="export the decoder and the tables only (no TFLite conversion; the encoder's file and "
                         "manifest entry stay as they are)")
    ap.add_argument("--json", type=Path, default=None, help="write the R/D table and checks here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load_checkpoint(a.checkpoint)
    dev = dev_features(a.dev_files)
    print(f"dev features: {dev.shape[0]} frames ({dev.shape[0] / 6000:.1f} min)")
    t = time.time()
    _, _, _, zdev, sdev = encoder_states(model, dev if not a.skip_table else dev[:1000])
    report: dict = {}
    if a.compare_recipes:
        cal = calibration_features(a.calib_frames)
        for rec in ("static_wi8_ai8", "static_wi8_ai16", "dynamic_wi8_afp32", "float"):
            qb = convert_encoder(model, cal, rec, Path("/tmp") / f"rdovae_{rec}.tflite")
            c = verify_tflite(model, qb, dev[: a.verify_frames])
            print(f"RECIPE {rec}: {len(qb)} bytes " + " ".join(f"{k}={v:.4g}" for k, v in c.items()), flush=True)
        return
    if not a.skip_table:
        rows = rd_table(model, dev, zdev, sdev)
        print(f"R/D table ({time.time() - t:.0f} s):")
        print_table(rows)
        report["rd"] = rows
    if a.eval_only:
        if a.json:
            a.json.write_text(json.dumps(report, indent=2))
        return

    MODELS.mkdir(parents=True, exist_ok=True)
    # Entropy tables: their own small file, read back through the runtime's loader.
    from edge_dred.dred.quantizer import EntropyTables
    from edge_dred.dred.tables import load_tables, table_arrays
    tab = model.stats.tables()
    tables_path = MODELS / "dred_tables.npz"
    np.savez(tables_path, **table_arrays(EntropyTables.from_mapping(tab)))
    back = load_tables(tables_path, verify=False)
    if not all(np.array_equal(getattr(back, k), v) for k, v in tab.items()):
        raise RuntimeError(f"{tables_path} does not read back as written")
    # Decoder weights, checked against the PyTorch decoder.
    arrs = decoder_arrays(model)
    if a.decoder_format == "npz":
        dec_path = MODELS / "dred_decoder.npz"
        np.savez(dec_path, **arrs)
        w = dict(np.load(dec_path))
    else:
        from edge_dred.quantize.weightfile import read_weights, write_weights
        dec_path = MODELS / "dred_decoder.bin"
        write_weights(dec_path, {k: v for k, v in arrs.items() if v.dtype.kind != "U"},
                      {"model": "dred_decoder", "version": VERSION})
        w, _ = read_weights(dec_path, expect_model="dred_decoder", expect_version=VERSION)
    w = {**w, **tab}
    zi = np.arange(2 * MAX_CHUNKS - 1, 0, -2)[:MAX_CHUNKS] + 200
    q = np.full(MAX_CHUNKS, 3)
    k = quantize_np(zdev[zi], tab["quant_scale"][3], tab["dead_zone"][3])
    ks = quantize_np(sdev[zi[0]], tab["state_quant_scale"], tab["state_dead_zone"])
    ref = decode_numpy(w, k, q, ks)
    with torch.no_grad():
        tout = model.decoder(torch.from_numpy((k / tab["quant_scale"][3])[None].astype(np.float32)),
                             torch.from_numpy((ks / tab["state_quant_scale"])[None].astype(np.float32)))
    tout = model.denormalize(tout.reshape(-1, NB_FEATURES))
    dec_err = float(np.abs(ref - tout.reshape(-1, NB_FEATURES).numpy()).max())
    print(f"numpy decoder vs PyTorch: max abs diff {dec_err:.2e}")
    if dec_err > 1e-3:
        raise RuntimeError("exported decoder does not match PyTorch")
    report["decoder_numpy_max_abs_diff"] = dec_err
    cfg = model.cfg
    dims = {"latent_dim": cfg.latent_dim, "state_dim": cfg.state_dim}
    entries = {
        "dred_decoder": (dec_path, {"format": f"{a.decoder_format} float32", **dims}),
        "dred_tables": (tables_path, {"format": "npz float32", **dims}),
    }
    if a.no_encoder:
        update_manifest(entries)
        print(f"wrote {dec_path}, {tables_path}, manifest")
        if a.json:
            a.json.write_text(json.dumps(report, indent=2))
        return

    # Encoder -> TFLite int8, calibrated on real (training) features.
    calib = calibration_features(a.calib_frames)
    enc_path = MODELS / "dred_encoder.tflite"
    t = time.time()
    qbytes = convert_encoder(model, calib, a.recipe, enc_path)
    enc_path.write_bytes(qbytes)
    f32 = enc_path.with_suffix(".f32.tflite")
    print(f"encoder tflite ({a.recipe}): {len(qbytes)} bytes (float {f32.stat().st_size}) in {time.time() - t:.0f} s")
    f32.unlink()

    check = verify_tflite(model, qbytes, dev[: a.verify_frames])
    print("TFLite vs PyTorch:", json.dumps(check, indent=1))
    if check["lsd_db_q0_tflite"] - check["lsd_db_q0_torch"] > LSD_TOLERANCE_DB:
        raise RuntimeError(f"TFLite encoder degrades q0 LSD by more than {LSD_TOLERANCE_DB} dB")
    report["tflite_check"] = check

    norm = {"feature_mean": [float(v) for v in arrs["feature_mean"]],
            "feature_std": [float(v) for v in arrs["feature_std"]]}
    update_manifest({
        "dred_encoder": (enc_path, {"format": f"tflite ({a.recipe})", **dims, "gru_dim": cfg.enc_gru,
                                    "input": "normalised features (f - feature_mean) / feature_std, "
                                             "2 frames older first", **norm}),
        **entries,
    })
    print(f"wrote {enc_path}, {dec_path}, {tables_path}, manifest")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
