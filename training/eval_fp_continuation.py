"""Phase continuity of the fp vocoder's continuation from real speech (numpy streaming reference).

At voiced points of training speech (pitch correlation > 0.7 and c0 > -2 for 3 frames either
side), a stream that has run over the features so far is primed on the last 4 real frames
(``FPVocoderStream.prime``: the pulse phase is searched in the real signal) and synthesises
the next frame; the correlation of its first 5 ms after the real signal ends with the real
continuation is printed, against the same stream without priming (phase left where the
free-running synthesis put it)::

    .venv/bin/python training/eval_fp_continuation.py --ckpt training/checkpoints/fp_vocoder/latest.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from edge_dred.constants import FRAME_SIZE, PREEMPHASIS  # noqa: E402
from edge_dred.dsp.features import compute_features  # noqa: E402
from edge_dred.neural.fp_vocoder import KNOT_HOP, PRIME_FRAMES, FPVocoderStream  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, default=HERE / "checkpoints" / "fp_vocoder" / "latest.pt")
    ap.add_argument("--speech", type=Path, default=HERE.parent.parent / "shared" / "data" / "speech" / "train" / "vcc2016")
    ap.add_argument("--files", type=int, default=8)
    a = ap.parse_args(argv)
    import soundfile as sf

    params = {k: v.numpy() for k, v in torch.load(a.ckpt, map_location="cpu", weights_only=False)["model"].items()}
    primed, free, scores = [], [], []
    for fn in sorted(a.speech.rglob("*.flac"))[:: 97][: a.files]:
        x, _ = sf.read(str(fn), dtype="int16")
        n = len(x) // FRAME_SIZE
        x = x[: n * FRAME_SIZE]
        f = compute_features(x)
        xf = x / 32768.0
        pe = xf.copy()
        pe[1:] -= PREEMPHASIS * xf[:-1]
        points = [k for k in range(20, n - 3) if f[k - 3:k + 3, 19].min() > 0.7 and f[k - 3:k + 3, 0].min() > -2]
        for k in points[::9][:6]:
            real = pe[k * FRAME_SIZE:k * FRAME_SIZE + KNOT_HOP]
            s = FPVocoderStream(params)
            s.synthesize_pe(f[:k - PRIME_FRAMES])
            s.prime(pe[(k - PRIME_FRAMES) * FRAME_SIZE:k * FRAME_SIZE], f[k - PRIME_FRAMES:k])
            scores.append(s.prime_score)
            y = s.synthesize_pe(f[k:k + 1])[KNOT_HOP:]  # the first 80 overlap the real signal
            primed.append(float(y @ real / (np.linalg.norm(y) * np.linalg.norm(real) + 1e-12)))
            s2 = FPVocoderStream(params)
            s2.synthesize_pe(f[:k])
            y2 = s2.synthesize_pe(f[k:k + 1])[KNOT_HOP:]
            free.append(float(y2 @ real / (np.linalg.norm(y2) * np.linalg.norm(real) + 1e-12)))
    print(f"{len(primed)} voiced continuation points in {a.files} files of {a.speech}")
    print("| start | correlation with the real continuation, first 5 ms: mean | median |")
    print("|---|---|---|")
    print(f"| primed (phase from the real signal; its fit over the last 20 ms: {np.mean(scores):.3f}) "
          f"| {np.mean(primed):.3f} | {np.median(primed):.3f} |")
    print(f"| free-running phase | {np.mean(free):.3f} | {np.median(free):.3f} |")


if __name__ == "__main__":
    main()
