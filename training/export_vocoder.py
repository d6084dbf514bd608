"""Export the trained vocoder to the shipped int8 weight file and check it.

Reads the trainer's checkpoint (``training/checkpoints/vocoder_gan/latest.pt`` by
default), quantizes it with :func:`edge_dred.neural.vocoder.export_vocoder` (int8;
``--gru-density`` makes the GRU recurrent matrices 8x4 block-sparse), writes
``edge_dred/models/vocoder.bin`` and merges its entry into
``edge_dred/models/manifest.json``.

Then it measures the int8 runtime against the float PyTorch model on dev
speech (``../shared/data/speech/dev``; never training data), both driven with
the same priming (``Vocoder.prime``: 320 samples of history, 2 frames of
conditioning history, 3 teacher-forced frames):

* ``tf_snr``: teacher-forced one-step agreement (each subframe from the real
  past), SNR of int8 vs float outputs in the pre-emphasised domain;
* ``cont_snr``: free-running 20 ms continuations after real audio (what a
  lost packet gets), SNR of int8 vs float PCM;
* ``cep_rms`` / ``pitch_err``: features of 1 s free-running segments of both
  outputs, RMS cepstral difference (log10 band energy units) and median
  pitch-period difference on voiced frames, int8 vs float and float vs the
  original for scale;
* ``--eval``: copy synthesis of whole files (primed on silence) with STOI,
  PESQ-WB and DNSMOS OVRL for the int8 runtime and the float model.

Usage::

    .venv/bin/python training/export_vocoder.py                 # export + verify (8 files)
    .venv/bin/python training/export_vocoder.py --eval          # + copy-synthesis metrics
    .venv/bin/python training/export_vocoder.py --out /tmp/v.bin --no-manifest --gru-density 0.5
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
from vocoder_model import FRAME, HIST, PREEMPHASIS, Vocoder as TorchVocoder, VocoderConfig  # noqa: E402

from edge_dred.dsp.features import compute_features  # noqa: E402
from edge_dred.dsp.postfilter import VocoderPostfilter  # noqa: E402
from edge_dred.models.loader import update_manifest  # noqa: E402
from edge_dred.neural.vocoder import MODEL_NAME, MODEL_VERSION, PRIME_FRAMES, Vocoder, VocoderModel, export_vocoder, \
    prime_samples  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "speech" / "dev"
DEFAULT_OUT = REPO / "edge_dred" / "models" / "vocoder.bin"


def load_checkpoint(path: Path) -> tuple[TorchVocoder, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = VocoderConfig.from_dict(ck["config"]["model"])
    m = TorchVocoder(cfg)
    m.load_state_dict(ck["model"])
    m.eval()
    info = {"step": int(ck.get("step", -1)), "epoch": int(ck.get("epoch", -1)), "config": cfg.to_dict()}
    return m, info


class TorchStream:
    """The float PyTorch model driven exactly like ``edge_dred.neural.vocoder.Vocoder``."""

    def __init__(self, model: TorchVocoder, postfilter: bool = True) -> None:
        self.m = model
        self.pf = VocoderPostfilter() if postfilter else None

    @torch.no_grad()
    def prime(self, pcm: np.ndarray, feats: np.ndarray) -> np.ndarray:
        n_tf = feats.shape[0] - 2
        x = pcm[-prime_samples(n_tf):].astype(np.float64) / 32768.0
        pe = torch.from_numpy((x[1:] - PREEMPHASIS * x[:-1]).astype(np.float32))[None]
        f = torch.from_numpy(feats.astype(np.float32))[None]
        st = self.m.init_state(1)
        _, st["cond_hist"] = self.m.cond_frames(f[:, :2], st["cond_hist"])
        st["hist"] = pe[:, :HIST].clone()
        y = self.m.run(f[:, 2:], st, pe[:, HIST:], n_teacher=n_tf)
        self.st = st
        self.x_mem = float(x[-1])
        if self.pf is not None:
            self.pf.prime(pe[0].numpy())
        return y[0].numpy()

    @torch.no_grad()
    def synthesize(self, feats: np.ndarray) -> np.ndarray:
        e = self.m.run(torch.from_numpy(feats.astype(np.float32))[None], self.st)[0].numpy().astype(np.float64)
        if self.pf is not None and len(e):
            e = self.pf.process(e.reshape(-1, FRAME), feats).ravel()
        out = np.empty_like(e)
        xm = self.x_mem
        for i in range(0, len(e), FRAME):  # de-emphasis; frames keep the loop short
            seg = e[i:i + FRAME]
            p = PREEMPHASIS ** np.arange(1, len(seg) + 1)
            out[i:i + FRAME] = p * (xm + np.cumsum(seg / p))
            xm = float(np.clip(out[i + len(seg) - 1], -1.0, 32767 / 32768))
        self.x_mem = xm
        return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    err = np.sum((ref - np.asarray(test, np.float64)) ** 2)
    return float(10 * np.log10(np.sum(ref ** 2) / max(err, 1e-20)))


def dev_files(n: int, dev_dir: Path = DEV) -> list[Path]:
    files = sorted(dev_dir.rglob("*.flac"))
    if not files:
        raise SystemExit(f"no dev audio under {dev_dir}")
    idx = np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)
    return [files[i] for i in idx]


def read_pcm(path: Path) -> np.ndarray:
    import soundfile as sf

    x, fs = sf.read(str(path), dtype="int16", always_2d=True)
    if fs != 16000:
        raise SystemExit(f"{path}: {fs} Hz, expected 16000")
    x = x[:, 0]
    return x[: len(x) // FRAME * FRAME]


def feature_errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """RMS cepstral difference and median |pitch difference| (voiced frames) of two signals."""
    fa, fb = compute_features(a), compute_features(b)
    cep = float(np.sqrt(np.mean((fa[:, :18] - fb[:, :18]) ** 2)))
    voiced = (fa[:, 19] > 0.5) & (fb[:, 19] > 0.5)
    pit = float(np.median(np.abs(fa[voiced, 18] - fb[voiced, 18]))) if voiced.any() else float("nan")
    return cep, pit


def verify(model: VocoderModel, tmodel: TorchVocoder, pcms: list[np.ndarray], seed: int = 0) -> dict[str, float]:
    """int8 runtime vs float torch on real features (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rt, ts = Vocoder(model), TorchStream(tmodel)
    n_prime = PRIME_FRAMES + 2
    tf_ref, tf_rt, c_ref, c_rt = [], [], [], []
    cep_q, cep_f, pit_q, pit_f = [], [], [], []
    for pcm in pcms:
        f = compute_features(pcm)
        n = len(f)
        # Teacher-forced: one long priming run over ~1 s.
        a = 10
        b = min(n, a + 100)
        tf_ref.append(ts.prime(pcm[: b * FRAME], f[a - 2: b]))
        tf_rt.append(rt.prime(pcm[: b * FRAME], f[a - 2: b]))
        # 20 ms continuations at random loss starts; 1 s segments for features.
        for k, s in enumerate(rng.integers(12, max(13, n - 110), 12)):
            hist = pcm[: s * FRAME]
            ts.prime(hist, f[s - n_prime: s])
            rt.prime(hist, f[s - n_prime: s])
            length = 100 if k < 3 else 2
            y_ref, y_rt = ts.synthesize(f[s: s + length]), rt.synthesize(f[s: s + length])
            c_ref.append(y_ref[:2 * FRAME])
            c_rt.append(y_rt[:2 * FRAME])
            if length == 100 and len(y_ref) == 100 * FRAME:
                orig = pcm[s * FRAME: (s + length) * FRAME]
                cq, pq = feature_errors(y_ref, y_rt)
                cf, pf = feature_errors(orig, y_ref)
                cep_q.append(cq), pit_q.append(pq), cep_f.append(cf), pit_f.append(pf)
    return {
        "tf_snr_db": snr_db(np.concatenate(tf_ref), np.concatenate(tf_rt)),
        "cont20_snr_db": snr_db(np.concatenate(c_ref), np.concatenate(c_rt)),
        "cep_rms_int8_vs_float": float(np.mean(cep_q)),
        "cep_rms_float_vs_orig": float(np.mean(cep_f)),
        "pitch_err_int8_vs_float": float(np.nanmedian(pit_q)),
        "pitch_err_float_vs_orig": float(np.nanmedian(pit_f)),
    }


def copy_synthesis(model: VocoderModel, tmodel: TorchVocoder, pcms: list[np.ndarray]) -> dict[str, dict]:
    """Whole-file copy synthesis (primed on silence) scored with STOI / PESQ-WB / DNSMOS OVRL."""
    from edge_dred.evaluate import metrics

    pad = prime_samples() + FRAME - 1  # whole frames of silence before the file
    pad -= pad % FRAME
    res: dict[str, list] = {"int8": [], "float": []}
    rt, ts = Vocoder(model), TorchStream(tmodel)
    t_rt = 0.0
    for pcm in pcms:
        x = np.concatenate([np.zeros(pad, np.int16), pcm])
        f = compute_features(x)
        k = pad // FRAME
        for name, v in (("int8", rt), ("float", ts)):
            t0 = time.perf_counter()
            v.prime(x[:pad], f[k - PRIME_FRAMES - 2: k])
            y = v.synthesize(f[k:])
            if name == "int8":
                t_rt += time.perf_counter() - t0
            res[name].append({"stoi": metrics.stoi(pcm, y), "pesq": metrics.pesq_wb(pcm, y),
                              "ovrl": metrics.dnsmos(y)["OVRL"]})
    out = {k: {m: float(np.nanmean([r[m] for r in v])) for m in ("stoi", "pesq", "ovrl")} for k, v in res.items()}
    out["int8_rtf"] = t_rt / (sum(len(p) for p in pcms) / 16000)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="export the vocoder to int8 and verify it")
    ap.add_argument("--checkpoint", type=Path, default=HERE / "checkpoints" / "vocoder_gan" / "latest.pt")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--gru-density", type=float, default=None, help="block density of GRU recurrent matrices")
    ap.add_argument("--no-manifest", action="store_true", help="do not touch edge_dred/models/manifest.json")
    ap.add_argument("--verify-files", type=int, default=8, help="dev files for the int8-vs-float check (0: skip)")
    ap.add_argument("--eval", action="store_true", help="copy-synthesis STOI/PESQ/DNSMOS on the same files")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    tmodel, info = load_checkpoint(a.checkpoint)
    params = {k: v.detach().cpu().numpy() for k, v in tmodel.state_dict().items()}
    meta = {"checkpoint_step": info["step"], "checkpoint_epoch": info["epoch"],
            "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    st = export_vocoder(params, info["config"], a.out, gru_density=a.gru_density, extra_meta=meta)
    print(f"exported step {info['step']} (epoch {info['epoch']}) -> {a.out}: {st['bytes']} bytes, "
          f"{st['params']} weights kept, sha256 {st['sha256'][:16]}")
    print("relative quantization error per layer: " +
          ", ".join(f"{k} {v:.4f}" for k, v in st["rel_err"].items()))
    if not a.no_manifest:
        entry = update_manifest(MODEL_NAME, a.out, MODEL_VERSION,
                                {"checkpoint_step": info["step"], "checkpoint_epoch": info["epoch"],
                                 "weights": st["params"], "gru_density": a.gru_density})
        print(f"manifest: {MODEL_NAME} {entry['version']} {entry['bytes']} bytes")
    report: dict[str, object] = {"export": {k: v for k, v in st.items() if k != "rel_err"}, **meta}
    if a.verify_files:
        model = VocoderModel.load(path=a.out)
        pcms = [read_pcm(p) for p in dev_files(a.verify_files)]
        t0 = time.time()
        v = verify(model, tmodel, pcms)
        report["verify"] = v
        print(f"int8 vs float on {len(pcms)} dev files ({time.time() - t0:.0f} s): " +
              ", ".join(f"{k} {x:.3f}" for k, x in v.items()))
        if a.eval:
            c = copy_synthesis(model, tmodel, pcms)
            report["copy_synthesis"] = c
            for k in ("int8", "float"):
                print(f"copy synthesis {k:5s}: STOI {c[k]['stoi']:.3f} PESQ-WB {c[k]['pesq']:.3f} "
                      f"DNSMOS OVRL {c[k]['ovrl']:.3f}")
            print(f"int8 runtime RTF (this machine, shared): {c['int8_rtf']:.3f}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
