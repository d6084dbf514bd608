"""Where the fp vocoder's PESQ-WB goes in its noise part: oracle and design probes on training speech.

For 4 VCC2016 + 4 LJSpeech training files, the fp vocoder's output (float, from the file's own
features, no postfilter) is rebuilt with its harmonic and noise parts separately, and PESQ-WB is
scored for variants of the noise part only:

* ``level``: the noise part raised or lowered by a few dB;
* ``oracle envelope``: the output multiplied by the ratio of the original's and its own energy
  envelopes (moving average over ``w`` samples), in unvoiced frames (pitch correlation < 0.5) only:
  what a perfect noise gain envelope at that time resolution would buy;
* ``normalised``: the noise filters divide out the noise's realised power on the 32 correction
  triangles over a window of ``w`` samples whose centre is ``shift`` samples before the knot
  (``FPVocoderConfig.noise_norm`` is ``w`` = 320, ``shift`` = 0).

The same noise realisation is used for every variant of a file, so the differences are paired::

    .venv/bin/python training/probe_fp_noise.py --ckpt training/checkpoints/fp_vocoder/latest.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from eval_copy_synthesis import pick_files  # noqa: E402
from eval_fp_vocoder import load_fp  # noqa: E402
from fp_vocoder_model import FRAME, NOISE_AHEAD, PREEMPH, FPVocoder  # noqa: E402

from edge_dred.dsp.features import compute_features  # noqa: E402
from edge_dred.evaluate.metrics import pesq_wb  # noqa: E402

TRAIN = HERE.parent.parent / "shared" / "data" / "speech" / "train"


def normalisation(m: FPVocoder, noise: torch.Tensor, n_knots: int, win: int, shift: int) -> torch.Tensor:
    """``FPVocoder.noise_normalisation`` with another window length and centre."""
    w = torch.sin(torch.pi * (torch.arange(win) + 0.5) / win) ** 2
    xp = F.pad(noise, (win // 2 + shift, win))
    seg = xp.unfold(1, win, 80)[:, :n_knots]
    spec = torch.fft.rfft(seg * w, 512)
    avg = m.corr_basis / m.corr_basis.sum(1, keepdim=True)
    ratio = ((spec.real**2 + spec.imag**2) @ avg.T) / (w**2).sum()
    return (-0.5 * torch.log(ratio.clamp_min(1e-3))) @ m.corr_basis


@torch.no_grad()
def parts(m: FPVocoder, fn: np.ndarray, noise: torch.Tensor, norm: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic and noise parts (pre-emphasised) of the copy synthesis, phase 0 at sample 0."""
    f = torch.from_numpy(fn[None])
    n = len(fn) * FRAME
    raw, _ = m.frame_net(f)
    lm_h, lm_n, period = m.knot_params(f, raw)
    lm_h, lm_n, period = (torch.cat([v, v[:, -1:]], 1) for v in (lm_h, lm_n, period))
    if norm is not None:
        lm_n = lm_n + normalisation(m, noise, lm_n.shape[1], *norm)
    yh = m.filter_ola(m.excitation(period, n, torch.zeros(1)), m.min_phase(lm_h))
    yn = m.filter_ola(noise[:, :n], m.min_phase(lm_n))
    return yh[0].double().numpy(), yn[0].double().numpy()


def to_pcm(e: np.ndarray, length: int) -> np.ndarray:
    from scipy.signal import lfilter

    out = np.zeros(length)
    out[: len(e)] = lfilter([1.0], [1.0, -PREEMPH], e) * 32768.0
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--n-files", type=int, default=4, help="per folder")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    import soundfile as sf

    m, step = load_fp(a.ckpt)
    m.cfg.noise_norm = False  # the variants below add their own
    files = pick_files(TRAIN / "vcc2016", a.n_files) + pick_files(TRAIN / "ljspeech", a.n_files)
    res: dict[str, list[float]] = {}
    for i, p in enumerate(files):
        x = sf.read(str(p), dtype="int16")[0]
        fn = compute_features(x[: len(x) // FRAME * FRAME])
        noise = torch.randn(1, len(fn) * FRAME + NOISE_AHEAD, generator=torch.Generator().manual_seed(i))
        yh, yn = parts(m, fn, noise, None)
        y = yh + yn
        xe = x[: len(y)].astype(np.float64) / 32768.0
        xe = np.concatenate([xe[:1], xe[1:] - PREEMPH * xe[:-1]])
        unv = np.convolve(np.repeat(fn[:, 19] < 0.5, FRAME).astype(float), np.ones(161) / 161, "same")
        cases = {"plain": y}
        for db in (-3.0, -1.5, 1.5):
            cases[f"level: noise {db:+.1f} dB"] = yh + yn * 10 ** (db / 20)
        for w in (20, 40, 80, 160):
            def sm(v: np.ndarray) -> np.ndarray:
                return np.convolve(v, np.ones(w) / w, "same") + 1e-10
            g = np.sqrt(sm(xe**2) / sm(y**2)).clip(0.25, 4.0)
            cases[f"oracle envelope, unvoiced frames, w {w}"] = y * (1 + unv * (g - 1))
        for win, shift in ((160, 0), (320, 0), (512, 0), (320, 80), (320, 160)):
            h, nz = parts(m, fn, noise, (win, shift))
            cases[f"normalised, w {win}, centre {shift} before the knot"] = h + nz
        for k, v in cases.items():
            res.setdefault(k, []).append(pesq_wb(x, to_pcm(v, len(x))))
        print(f"{i + 1}/{len(files)} {p.name}", flush=True)
    base = np.array(res["plain"])
    print(f"step {step}, {len(files)} training files, PESQ-WB (mean, paired difference to plain ± se)")
    for k, v in res.items():
        d = np.array(v) - base
        print(f"  {k:48s} {np.mean(v):.3f}  {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f}")


if __name__ == "__main__":
    main()
