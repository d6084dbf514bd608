"""Copy-synthesis evaluation of a vocoder checkpoint on dev speech.

For N dev files: features = ``edge_dred.dsp.features.compute_features(pcm)``; the
float vocoder is primed on the first ``--prime-frames`` frames of real audio
(history = those samples; default 2 frames = 20 ms) and then runs free over the
rest of the file.  Scores: STOI and PESQ-WB against the original, DNSMOS OVRL
and PLCMOS (v2) of the output; the same for a band-shaped-noise baseline
vocoder (white noise shaped per 10 ms frame by the 18-band envelope of the
cepstrum, sine-window overlap-add) and DNSMOS/PLCMOS of the original for
reference.  ``--metrics`` picks a subset (PESQ and DNSMOS are the slow ones).

``--speech`` (alias ``--dev-dir``) points at another speech folder: quick model
comparisons should use training speech (e.g.
``../shared/data/speech/train/vcc2016``) so nothing gets tuned on the dev set.

Usage::

    .venv/bin/python training/eval_copy_synthesis.py --ckpt training/checkpoints/vocoder_gan/latest.pt --n-files 8
    .venv/bin/python training/eval_copy_synthesis.py --ckpt CKPT --speech ../shared/data/speech/train/vcc2016 \
        --n-files 6 --metrics plcmos --no-baseline
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
from vocoder_model import FRAME, PREEMPHASIS, Vocoder, VocoderConfig  # noqa: E402

from edge_dred.evaluate import metrics  # noqa: E402
from edge_dred.dsp.features import band_energies_from_cepstrum, band_weights, compute_features  # noqa: E402
from edge_dred.dsp.postfilter import VocoderPostfilter  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "speech" / "dev"


def pick_files(dev_dir: Path, n: int) -> list[Path]:
    """``n`` files spread evenly over the sorted list (covers both speakers)."""
    files = sorted(dev_dir.rglob("*.flac")) + sorted(dev_dir.rglob("*.wav"))
    if not files:
        raise SystemExit(f"no audio under {dev_dir}")
    idx = np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)
    return [files[i] for i in idx]


def load_model(path: Path) -> tuple[Vocoder, int]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = VocoderConfig.from_dict(ck["config"]["model"])
    m = Vocoder(cfg)
    m.load_state_dict(ck["model"])
    m.eval()
    return m, int(ck.get("step", -1))


@torch.no_grad()
def vocode(model: Vocoder, pcms: list[np.ndarray], feats: list[np.ndarray], prime_frames: int = 2,
           postfilter: tuple[float, float] | None = (0.7, 0.5)) -> list[np.ndarray]:
    """Free-running copy synthesis of several files at once (batched, padded).

    The first ``prime_frames`` frames of each output are the real samples; the
    model history is primed with them (zeros before the file start).  Unless
    ``postfilter`` is None the free-running frames pass through the runtime's
    :class:`edge_dred.dsp.postfilter.VocoderPostfilter` with these (envelope,
    pitch) strengths (primed with the real frames), as
    :class:`edge_dred.neural.vocoder.Vocoder` does.
    """
    b = len(pcms)
    t = max(len(f) for f in feats)
    f = np.zeros((b, t, 20), np.float32)
    f[..., 18] = 100.0
    x = np.zeros((b, t * FRAME), np.float32)
    for i, (p, ff) in enumerate(zip(pcms, feats)):
        f[i, : len(ff)] = ff
        x[i, : len(p)] = p.astype(np.float32) / 32768.0
    e = x.copy()
    e[:, 1:] -= PREEMPHASIS * x[:, :-1]
    ft = torch.from_numpy(f)
    st = model.init_state(b)  # silence before the file start
    # Priming: teacher-forced over the first real frames, then free-running.
    if prime_frames:
        model.run(ft[:, :prime_frames], st, torch.from_numpy(e[:, : prime_frames * FRAME]), n_teacher=prime_frames)
    y = model.run(ft[:, prime_frames:], st).numpy().astype(np.float64)
    if postfilter is not None:
        for i, ff in enumerate(feats):
            pf = VocoderPostfilter(*postfilter)
            pf.prime(e[i, : prime_frames * FRAME])
            n = max(len(ff) - prime_frames, 0)
            y[i, : n * FRAME] = pf.process(y[i, : n * FRAME].reshape(n, FRAME), ff[prime_frames:]).ravel()
    y = np.concatenate([e[:, : prime_frames * FRAME], y], 1)
    from scipy.signal import lfilter

    out = lfilter([1.0], [1.0, -PREEMPHASIS], y.astype(np.float64), axis=1)
    return [np.clip(np.round(out[i, : len(p)] * 32768), -32768, 32767).astype(np.int16) for i, p in enumerate(pcms)]


def noise_vocoder(feats: np.ndarray, n_samples: int, seed: int = 0) -> np.ndarray:
    """Band-shaped white noise: the baseline a neural vocoder must beat."""
    rng = np.random.default_rng(seed)
    n = len(feats)
    env = band_energies_from_cepstrum(feats[:, :18]) @ band_weights()  # (n, 161) power per bin
    win = np.sin(np.pi * (np.arange(2 * FRAME) + 0.5) / (2 * FRAME))
    out = np.zeros((n + 1) * FRAME)
    for i in range(n):
        # Unit-variance noise under the sine window has P_k ~ 1 (same
        # normalisation as the features), so scaling by sqrt(env) matches E_b.
        spec = np.fft.rfft(rng.standard_normal(2 * FRAME) * win) * np.sqrt(env[i])
        out[i * FRAME : i * FRAME + 2 * FRAME] += np.fft.irfft(spec, 2 * FRAME) * win
    e = out[FRAME : FRAME + n_samples]  # frame i's window spans [160 i - 160, 160 i + 160)
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, -PREEMPHASIS], e)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


METRICS = ("stoi", "pesq", "ovrl", "plcmos")


def score(ref: np.ndarray, deg: np.ndarray, which: tuple[str, ...] = METRICS) -> dict[str, float]:
    """Selected metrics of int16 ``deg`` (``ref`` is needed by STOI and PESQ only)."""
    out: dict[str, float] = {}
    if "stoi" in which:
        out["stoi"] = metrics.stoi(ref, deg)
    if "pesq" in which:
        out["pesq"] = metrics.pesq_wb(ref, deg)
    if "ovrl" in which:
        out["ovrl"] = metrics.dnsmos(deg)["OVRL"]
    if "plcmos" in which:
        out["plcmos"] = metrics.plcmos(deg.astype(np.float32) / 32768.0)
    return out


def parse_metrics(s: str) -> tuple[str, ...]:
    which = tuple(m.strip() for m in s.split(",") if m.strip())
    bad = [m for m in which if m not in METRICS]
    if bad or not which:
        raise argparse.ArgumentTypeError(f"metrics must be a comma list of {','.join(METRICS)}")
    return which


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="copy-synthesis evaluation of the vocoder")
    ap.add_argument("--ckpt", type=Path, default=HERE / "checkpoints" / "vocoder_gan" / "latest.pt")
    ap.add_argument("--speech", "--dev-dir", dest="speech", type=Path, default=DEV,
                    help="speech folder (default: the dev set; use training speech for quick comparisons)")
    ap.add_argument("--metrics", type=parse_metrics, default=METRICS, help="comma list of " + ",".join(METRICS))
    ap.add_argument("--n-files", type=int, default=8)
    ap.add_argument("--prime-frames", type=int, default=2)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-postfilter", action="store_true", help="score the network's raw output")
    ap.add_argument("--postfilter-strength", type=float, default=VocoderPostfilter().envelope.strength,
                    help="envelope stage (0 = off)")
    ap.add_argument("--pitch-strength", type=float, default=VocoderPostfilter().pitch.strength,
                    help="pitch (comb) stage after it (0 = off)")
    ap.add_argument("--save-wav", type=Path, default=None, help="write outputs here (never commit them)")
    ap.add_argument("--log", type=Path, default=HERE / "runs" / "vocoder" / "eval.jsonl")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    import soundfile as sf

    model, step = load_model(a.ckpt)
    files = pick_files(a.speech, a.n_files)
    pcms = []
    for p in files:
        x, fs = sf.read(str(p), dtype="int16", always_2d=True)
        if fs != 16000:
            raise SystemExit(f"{p}: {fs} Hz, expected 16000")
        x = x[:, 0]
        pcms.append(x[: len(x) // FRAME * FRAME])
    feats = [compute_features(p) for p in pcms]
    t0 = time.time()
    pf_strength = None if a.no_postfilter else (a.postfilter_strength, a.pitch_strength)
    outs = vocode(model, pcms, feats, a.prime_frames, postfilter=pf_strength)
    dt = time.time() - t0
    audio_s = sum(len(p) for p in pcms) / 16000
    which = a.metrics
    orig_which = tuple(m for m in which if m in ("ovrl", "plcmos"))  # the non-intrusive ones
    rows: dict[str, list[dict[str, float]]] = {"vocoder": [], "noise": [], "original": []}
    for i, (p, f, y) in enumerate(zip(pcms, feats, outs)):
        rows["vocoder"].append(score(p, y, which))
        if not a.no_baseline:
            rows["noise"].append(score(p, noise_vocoder(f, len(p), seed=i), which))
        if orig_which:
            rows["original"].append(score(p, p, orig_which))
        if a.save_wav:
            a.save_wav.mkdir(parents=True, exist_ok=True)
            sf.write(str(a.save_wav / f"{i:02d}_vocoded.wav"), y, 16000)
    res: dict[str, object] = {"ckpt": str(a.ckpt), "step": step, "speech": str(a.speech), "n_files": len(files),
                              "synth_rtf": dt / audio_s, "postfilter": pf_strength, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    for k in ("vocoder", "noise", "original"):
        if rows[k]:
            res[k] = {m: float(np.nanmean([r[m] for r in rows[k]])) for m in rows[k][0]}
    if "ovrl" in orig_which:
        res["orig_ovrl"] = res["original"]["ovrl"]  # key kept for older log readers
    print(f"checkpoint {a.ckpt} step {step}: {len(files)} files from {a.speech}, {audio_s:.0f} s audio, "
          f"synthesis {dt:.1f} s ({dt / audio_s:.3f} x real time, batched)")
    names = {"stoi": "STOI", "pesq": "PESQ-WB", "ovrl": "OVRL", "plcmos": "PLCMOS"}
    print(f"{'':10s} " + " ".join(f"{names[m]:>8s}" for m in which))
    for k in ("vocoder", "noise", "original"):
        if k in res:
            r = res[k]
            print(f"{k:10s} " + " ".join(f"{r[m]:8.3f}" if m in r else f"{'':8s}" for m in which))
    a.log.parent.mkdir(parents=True, exist_ok=True)
    with open(a.log, "a") as fh:
        fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
