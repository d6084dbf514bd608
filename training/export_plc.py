"""Export the trained neural-PLC feature predictor to the shipped int8 weight file.

Reads ``training/checkpoints/plc_adv/latest.pt`` (``plc_model.PLCPredictor``:
the band-loss predictor on Opus-decoded inputs, fine-tuned with a
feature-sequence critic, ``train_plc.py --adv-weight 0.1``; the chain is in
``training/README.md``), writes ``edge_dred/models/plc.bin`` with
:func:`edge_dred.neural.predictor.export_plc`
(int8; the 5 k-weight output layer stays float because its output is fed
back during a loss) and merges the ``plc`` entry into
``edge_dred/models/manifest.json``.

Verification on dev speech features (``../shared/data/speech/dev``): the
int8 runtime (:class:`edge_dred.plc.FeaturePredictor`) and the float PyTorch
model are run over the same frames with the same seeded burst losses (1..10
packets = 2..20 frames); reported: RMS difference int8 vs float of the
predictions on lost frames (cepstrum, log10 units; pitch period, samples),
and each one's error against the true features next to the "repeat the last
received frame" baseline.

Usage::

    .venv/bin/python training/export_plc.py
    .venv/bin/python training/export_plc.py --out /tmp/plc.bin --no-manifest
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from plc_model import PLCConfig, PLCPredictor  # noqa: E402

from edge_dred.dsp.features import compute_features  # noqa: E402
from edge_dred.models.loader import update_manifest  # noqa: E402
from edge_dred.neural.predictor import MODEL_NAME, MODEL_VERSION, FeaturePredictor, PLCModel, export_plc  # noqa: E402

DEFAULT_OUT = REPO / "edge_dred" / "models" / "plc.bin"


def load_checkpoint(path: Path) -> tuple[PLCPredictor, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = PLCConfig.from_dict(ck["config"]["model"])
    m = PLCPredictor(cfg)
    m.load_state_dict(ck["model"])
    m.eval()
    return m, {"step": int(ck.get("step", -1)), "epoch": int(ck.get("epoch", -1)), "config": cfg.to_dict()}


def burst_mask(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Frame loss mask: bursts of 1..10 packets (2 frames each) separated by >= 300 ms."""
    lost = np.zeros(n_frames, bool)
    t = 40
    while t < n_frames:
        k = 2 * int(rng.integers(1, 11))
        lost[t:t + k] = True
        t += k + 30 + int(rng.integers(0, 40))
    return lost


@torch.no_grad()
def torch_predictions(m: PLCPredictor, feats: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """Predictions (raw scale) for every frame, fed as at run time (own predictions when lost)."""
    z = m.run(torch.from_numpy(feats)[None], torch.from_numpy(lost)[None])
    return m.denormalize(z)[0].numpy()


def runtime_predictions(model: PLCModel, feats: np.ndarray, lost: np.ndarray) -> np.ndarray:
    p = FeaturePredictor(model)
    out = np.zeros_like(feats)
    out[0] = p.prediction
    for t in range(len(feats) - 1):
        if lost[t]:
            p.lost()
        else:
            p.update(feats[t])
        out[t + 1] = p.prediction
    return out


def verify(model: PLCModel, tmodel: PLCPredictor, feats_list: list[np.ndarray], seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"q": [], "f": [], "true": [], "rep": []}
    for f in feats_list:
        lost = burst_mask(len(f), rng)
        pf = torch_predictions(tmodel, f, lost)
        pq = runtime_predictions(model, f, lost)
        # "repeat last received frame" baseline
        rep = f.copy()
        for t in range(1, len(f)):
            if lost[t]:
                rep[t] = rep[t - 1]
        rows["q"].append(pq[lost]), rows["f"].append(pf[lost]), rows["true"].append(f[lost]), rows["rep"].append(rep[lost])
    q, fl, tr, rp = (np.concatenate(rows[k]) for k in ("q", "f", "true", "rep"))

    def rms(a: np.ndarray, b: np.ndarray, sl: slice) -> float:
        return float(np.sqrt(np.mean((a[:, sl] - b[:, sl]) ** 2)))

    cep, pit = slice(0, 18), slice(18, 19)
    return {
        "lost_frames": int(len(q)),
        "cep_rms_int8_vs_float": rms(q, fl, cep), "pitch_rms_int8_vs_float": rms(q, fl, pit),
        "cep_rms_float_vs_true": rms(fl, tr, cep), "cep_rms_int8_vs_true": rms(q, tr, cep),
        "cep_rms_repeat_vs_true": rms(rp, tr, cep),
        "pitch_rms_float_vs_true": rms(fl, tr, pit), "pitch_rms_int8_vs_true": rms(q, tr, pit),
        "pitch_rms_repeat_vs_true": rms(rp, tr, pit),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="export the PLC predictor to int8 and verify it")
    ap.add_argument("--checkpoint", type=Path, default=HERE / "checkpoints" / "plc_adv" / "latest.pt")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-manifest", action="store_true")
    ap.add_argument("--verify-files", type=int, default=8)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    tmodel, info = load_checkpoint(a.checkpoint)
    params = {k: v.detach().cpu().numpy() for k, v in tmodel.state_dict().items()}
    meta = {"checkpoint_step": info["step"], "checkpoint_epoch": info["epoch"],
            "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    st = export_plc(params, info["config"], a.out, extra_meta=meta)
    print(f"exported step {info['step']} (epoch {info['epoch']}) -> {a.out}: {st['bytes']} bytes, "
          f"{st['params']} weights, relative quantization error " +
          ", ".join(f"{k} {v:.4f}" for k, v in st["rel_err"].items()))
    if not a.no_manifest:
        entry = update_manifest(MODEL_NAME, a.out, MODEL_VERSION,
                                {"checkpoint_step": info["step"], "checkpoint_epoch": info["epoch"],
                                 "weights": st["params"]})
        print(f"manifest: {MODEL_NAME} {entry['version']} {entry['bytes']} bytes")
    report: dict[str, object] = {"export": {k: v for k, v in st.items() if k != "rel_err"}, **meta}
    if a.verify_files:
        from export_vocoder import dev_files, read_pcm

        feats = [compute_features(read_pcm(p)) for p in dev_files(a.verify_files)]
        v = verify(PLCModel.load(path=a.out), tmodel, feats)
        report["verify"] = v
        print(f"on {len(feats)} dev files: " + ", ".join(
            f"{k} {x:.3f}" if isinstance(x, float) else f"{k} {x}" for k, x in v.items()))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
