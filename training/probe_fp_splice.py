"""Where a vocoder's PESQ-WB is lost: its output spliced into the original by frame class or band.

For each training file the fp vocoder (with the runtime postfilter) and the shipped vocoder
resynthesise the file; each output then replaces the original only in voiced frames (pitch
correlation > 0.5), only in unvoiced active frames, only in inactive frames (mean log10 band
energy <= 3), or only below / above 3 kHz (8th-order Butterworth, zero phase), ramped over
30 ms at frame-class changes.  Prints PESQ-WB of each splice per vocoder and the paired
difference fp − shipped (± standard error)::

    .venv/bin/python training/probe_fp_splice.py --ckpt training/checkpoints/fp_vocoder/latest.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from eval_copy_synthesis import pick_files  # noqa: E402
from eval_fp_vocoder import fp_copy_synthesis, load_fp  # noqa: E402
from fp_vocoder_model import FRAME  # noqa: E402

from edge_dred.dsp.features import band_energies_from_cepstrum, compute_features  # noqa: E402
from edge_dred.evaluate.metrics import pesq_wb  # noqa: E402

CASES = ("all", "voiced only", "unvoiced active only", "inactive only", "below 3 kHz only", "above 3 kHz only")


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def splices(x: np.ndarray, y: np.ndarray, f: np.ndarray) -> dict[str, np.ndarray]:
    """The original ``x`` with ``y`` in each part (int16 in, int16 out)."""
    from scipy.signal import butter, sosfiltfilt

    xf, yf = x.astype(np.float64), y.astype(np.float64)
    v = f[:, 19] > 0.5
    act = band_energies_from_cepstrum(f, log10=True).mean(1) > 3

    def by_frame(mask: np.ndarray) -> np.ndarray:
        g = np.convolve(np.repeat(mask.astype(np.float64), FRAME), np.ones(480) / 480, "same")
        return _int16(g * yf + (1.0 - g) * xf)

    lo = butter(8, 3000, "low", fs=16000, output="sos")
    hi = butter(8, 3000, "high", fs=16000, output="sos")
    return {"all": y, "voiced only": by_frame(v), "unvoiced active only": by_frame(~v & act),
            "inactive only": by_frame(~act),
            "below 3 kHz only": _int16(sosfiltfilt(lo, yf) + sosfiltfilt(hi, xf)),
            "above 3 kHz only": _int16(sosfiltfilt(hi, yf) + sosfiltfilt(lo, xf))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, default=HERE / "checkpoints" / "fp_vocoder" / "latest.pt")
    ap.add_argument("--speech", type=Path, nargs="+",
                    default=[HERE.parent.parent / "shared/data/speech/train/vcc2016",
                             HERE.parent.parent / "shared/data/speech/train/ljspeech"])
    ap.add_argument("--n-files", type=int, default=8, help="per folder")
    ap.add_argument("--postfilter", type=float, nargs=2, default=(0.35, 0.35), metavar=("ENVELOPE", "PITCH"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    import soundfile as sf

    from edge_dred.neural.vocoder import copy_synthesis

    model, _ = load_fp(a.ckpt)
    rows: dict[tuple[str, str], list[float]] = {}
    i = 0
    for folder in a.speech:
        for p in pick_files(folder, a.n_files):
            x, _ = sf.read(str(p), dtype="int16")
            x = x[: len(x) // FRAME * FRAME]
            f = compute_features(x)
            outs = {"fp": fp_copy_synthesis(model, x, seed=i, postfilter=tuple(a.postfilter)),
                    "shipped": copy_synthesis(x)[: len(x)]}
            for name, y in outs.items():
                for case, z in splices(x, y, f).items():
                    rows.setdefault((case, name), []).append(pesq_wb(x, z))
            i += 1
    print(f"{'vocoded part':24s} {'fp':>7s} {'shipped':>8s}  fp − shipped ({i} files)")
    for case in CASES:
        fp_, sh = np.array(rows[(case, "fp")]), np.array(rows[(case, "shipped")])
        d = fp_ - sh
        print(f"{case:24s} {fp_.mean():7.3f} {sh.mean():8.3f}  {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f}")


if __name__ == "__main__":
    main()
