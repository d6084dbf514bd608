"""Copy synthesis: the frame-parallel vocoder (float) against the shipped int8 vocoder, paired.

For each file: features = ``edge_dred.dsp.features.compute_features`` of the whole
file; the fp vocoder runs free from the file's start (silence before it, pulse
phase 0, seeded noise), the shipped vocoder through
``edge_dred.neural.vocoder.copy_synthesis`` (int8 runtime, default postfilter; the
``vocoder`` condition of ``edge-dred eval``).  Scores STOI, PESQ-WB, DNSMOS
OVRL and PLCMOS (``eval_copy_synthesis.score``), and DNSMOS/PLCMOS of the
original; prints means per folder and the paired difference (fp − shipped)
with its standard error; appends a JSON line to ``--log``.

Choose models on training speech; the dev set is for the final check only::

    .venv/bin/python training/eval_fp_vocoder.py --ckpt training/checkpoints/fp_vocoder/latest.pt \
        --speech ../shared/data/speech/train/vcc2016 ../shared/data/speech/train/ljspeech --n-files 16
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
from eval_copy_synthesis import METRICS, parse_metrics, pick_files, score  # noqa: E402
from fp_vocoder_model import FRAME, NOISE_AHEAD, PREEMPH, FPVocoder, FPVocoderConfig  # noqa: E402

from edge_dred.dsp.features import band_energies_from_cepstrum, compute_features  # noqa: E402


DIAG = ("band_db", "pcorr", "pcorr_ref", "lag_ms")


def load_fp(path: Path, noise_norm: bool = False) -> tuple[FPVocoder, int]:
    """Checkpoint -> model in eval mode and its step; ``noise_norm`` turns that option on for an older model."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = FPVocoderConfig.from_dict(ck["config"]["model"])
    cfg.noise_norm = cfg.noise_norm or noise_norm
    m = FPVocoder(cfg)
    m.load_state_dict(ck["model"])
    m.eval()
    return m, int(ck.get("step", -1))


@torch.no_grad()
def fp_copy_synthesis(model: FPVocoder, pcm: np.ndarray, seed: int = 0,
                      postfilter: tuple[float, float] | None = None) -> np.ndarray:
    """int16 ``pcm`` -> int16 resynthesis from its own features (free-running from silence).

    ``postfilter``: (envelope, pitch) strengths of the runtime's ``VocoderPostfilter`` applied
    to the output (as the shipped vocoder does), or None.
    """
    n = len(pcm) // FRAME
    fn = compute_features(pcm[: n * FRAME])
    f = torch.from_numpy(fn[None])
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, n * FRAME + NOISE_AHEAD, generator=g)
    e = model.synthesize(f, torch.zeros(1), noise)[0].double().numpy()
    if postfilter is not None:
        from edge_dred.dsp.postfilter import VocoderPostfilter

        e = VocoderPostfilter(*postfilter).process(e.reshape(n, FRAME), fn).ravel()
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, -PREEMPH], e) * 32768.0
    out = np.zeros(len(pcm))
    out[: n * FRAME] = x
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def diagnostics(ref: np.ndarray, deg: np.ndarray, f_ref: np.ndarray) -> dict[str, float]:
    """What the issue's probe fell short on, measured on the output's own features.

    ``band_db``: mean absolute log band-energy error (dB) on active frames (mean log10 energy
    > 3); ``pcorr``: mean pitch correlation of the output on voiced frames (input's > 0.7),
    ``pcorr_ref`` the input's; ``lag_ms``: the shift (1 ms steps, -8..8) that best aligns the
    output's 4 ms energy envelope with the input's (positive = output late).
    """
    f_deg = compute_features(deg)
    lr = band_energies_from_cepstrum(f_ref, log10=True)
    ld = band_energies_from_cepstrum(f_deg, log10=True)
    act = lr.mean(1) > 3
    v = f_ref[:, 19] > 0.7

    def env(x: np.ndarray) -> np.ndarray:
        e = np.convolve(x.astype(np.float64) ** 2, np.ones(64), "same")[::16]
        return np.log10(e + 64.0)

    er, ed = env(ref), env(deg)
    n = min(len(er), len(ed)) - 16
    lags = np.arange(-8, 9)
    cc = [np.corrcoef(er[8:n], ed[8 + k:n + k])[0, 1] for k in lags]
    return {"band_db": float(10 * np.abs(ld - lr)[act].mean()) if act.any() else float("nan"),
            "pcorr": float(f_deg[v, 19].mean()) if v.any() else float("nan"),
            "pcorr_ref": float(f_ref[v, 19].mean()) if v.any() else float("nan"),
            "lag_ms": float(lags[int(np.argmax(cc))])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, default=HERE / "checkpoints" / "fp_vocoder" / "latest.pt")
    ap.add_argument("--speech", type=Path, nargs="+", required=True)
    ap.add_argument("--n-files", type=int, default=16, help="per folder, spread evenly over its sorted files")
    ap.add_argument("--metrics", type=parse_metrics, default=METRICS)
    ap.add_argument("--no-shipped", action="store_true", help="skip the shipped vocoder")
    ap.add_argument("--postfilter", type=float, nargs=2, default=None, metavar=("ENVELOPE", "PITCH"),
                    help="pass the fp output through the runtime's VocoderPostfilter at these strengths")
    ap.add_argument("--noise-norm", action="store_true", help="turn the noise normalisation on for a model trained without it")
    ap.add_argument("--log", type=Path, default=HERE / "runs" / "fp_vocoder" / "eval.jsonl")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    import soundfile as sf

    from edge_dred.neural.vocoder import copy_synthesis

    model, step = load_fp(a.ckpt, a.noise_norm)
    res: dict[str, object] = {"ckpt": str(a.ckpt), "step": step, "n_files": a.n_files, "postfilter": a.postfilter,
                              "noise_norm": model.cfg.noise_norm,
                              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "folders": {}}
    names = {"stoi": "STOI", "pesq": "PESQ-WB", "ovrl": "OVRL", "plcmos": "PLCMOS", "band_db": "band dB",
             "pcorr": "pcorr", "pcorr_ref": "pcorr in", "lag_ms": "lag ms"}
    which = a.metrics
    nonintr = tuple(m for m in which if m in ("ovrl", "plcmos"))
    all_rows: dict[str, list[dict[str, float]]] = {"fp": [], "shipped": [], "original": []}
    t_fp = t_sh = audio = 0.0
    for folder in a.speech:
        rows: dict[str, list[dict[str, float]]] = {"fp": [], "shipped": [], "original": []}
        for i, p in enumerate(pick_files(folder, a.n_files)):
            x, fs = sf.read(str(p), dtype="int16", always_2d=True)
            if fs != 16000:
                raise SystemExit(f"{p}: {fs} Hz, expected 16000")
            x = x[:, 0]
            audio += len(x) / 16000
            t0 = time.process_time()
            y = fp_copy_synthesis(model, x, seed=i, postfilter=a.postfilter)
            t_fp += time.process_time() - t0
            fx = compute_features(x[: len(x) // FRAME * FRAME])
            rows["fp"].append({**score(x, y, which), **diagnostics(x, y, fx)})
            if not a.no_shipped:
                t0 = time.process_time()
                ys = copy_synthesis(x)
                t_sh += time.process_time() - t0
                rows["shipped"].append({**score(x, ys, which), **diagnostics(x, ys, fx)})
            if nonintr:
                rows["original"].append(score(x, x, nonintr))
        summ = {k: {m: float(np.nanmean([r[m] for r in v])) for m in v[0]} for k, v in rows.items() if v}
        if rows["shipped"]:
            d = {m: np.array([r[m] for r in rows["fp"]]) - np.array([r[m] for r in rows["shipped"]]) for m in which + DIAG}
            summ["diff"] = {m: float(v.mean()) for m, v in d.items()}
            summ["diff_se"] = {m: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0 for m, v in d.items()}
        res["folders"][str(folder)] = summ  # type: ignore[index]
        for k in all_rows:
            all_rows[k] += rows[k]
        print(f"{folder} ({len(rows['fp'])} files)")
        cols = which + DIAG
        print(f"  {'':12s} " + " ".join(f"{names[m]:>8s}" for m in cols))
        for k in ("fp", "shipped", "original", "diff"):
            if k in summ:
                r = summ[k]
                print(f"  {k:12s} " + " ".join(f"{r[m]:8.3f}" if m in r else f"{'':8s}" for m in cols))
        if "diff_se" in summ:
            print(f"  {'± (se)':12s} " + " ".join(f"{summ['diff_se'][m]:8.3f}" for m in cols))
    res["all"] = {k: {m: float(np.nanmean([r[m] for r in v])) for m in v[0]} for k, v in all_rows.items() if v}
    res["fp_cpu_s_per_audio_s"] = t_fp / audio
    res["shipped_cpu_s_per_audio_s"] = t_sh / audio if not a.no_shipped else None
    print(f"all ({len(all_rows['fp'])} files, {audio:.0f} s audio): " +
          "  ".join(f"{k} " + " ".join(f"{names[m]} {v[m]:.3f}" for m in v) for k, v in res["all"].items()))
    print(f"synthesis CPU time per audio second: fp {t_fp / audio:.4f} (torch float, one call per file)"
          + ("" if a.no_shipped else f", shipped {t_sh / audio:.4f} (int8 runtime + postfilter)"))
    a.log.parent.mkdir(parents=True, exist_ok=True)
    with open(a.log, "a") as fh:
        fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
