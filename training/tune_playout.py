"""Compare adaptive-playout policy constants on *training* speech under synthetic loss.

The policy's constants (:mod:`edge_dred.playout`: ``PRIOR_S``, ``HALF_LIFE_S``,
``CONCEALED_FRACTION``, ``RESIDUAL_FRACTION``, ``STEP_FRACTION``) are chosen here, never on the dev
set: the speech comes from ``../shared/data/speech/train`` and the loss masks
from seeded Gilbert-Elliott models, so the dev speech and the real traces stay
unseen.

The training files are concatenated and cut into streams of ``--stream-s``
seconds; each stream starts a fresh receiver and controller, as every file of
``eval`` does.  Per loss model and stream, ``lbrr+dred`` with the fixed 60 ms
window and with an ideal 1040 ms one bound the adaptive playout; each variant is
``lbrr+dred_adaptive`` with some constants replaced.  Printed per loss model
and variant: PLCMOS (mean over 10 s segments of what is heard, on the input's
segment grid and averaged over :data:`SHIFTS` start offsets; the same packets,
masks and streams for every variant, so differences are paired), the paired
difference from the fixed window, the share of the fixed -> ideal gap it
closes, and the mean added delay.

Usage::

    .venv/bin/python training/tune_playout.py --streams 8
    .venv/bin/python training/tune_playout.py --skip-files 60 --seed-offset 100   # other streams and masks
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from tune_concealment import _loss_models  # noqa: E402  (the same PCT/BURST argument)

TRAIN = REPO.parent / "shared" / "data" / "speech" / "train" / "vcc2016"
# (loss %, mean burst in packets)
LOSS_MODELS = [(20.0, 2.5), (6.6, 4.0), (12.0, 5.0), (40.0, 3.0)]
MAX_BURST = 40

# name -> constants of edge_dred.playout replaced for that variant ("shipped": none).
VARIANTS: dict[str, dict[str, float]] = {
    "shipped": {},
    # Measured before the step rule existed (they now run with it) and with the biased segment grid.
    "prior5_hl10_cf3": {"PRIOR_S": 5.0, "HALF_LIFE_S": 10.0, "CONCEALED_FRACTION": 0.03},
    "prior1": {"PRIOR_S": 1.0},
    "prior1_hl5": {"PRIOR_S": 1.0, "HALF_LIFE_S": 5.0},
    "prior2_hl5": {"PRIOR_S": 2.0, "HALF_LIFE_S": 5.0},
    "prior1_cf1": {"PRIOR_S": 1.0, "CONCEALED_FRACTION": 0.01},
    "prior1_hl5_cf5": {"PRIOR_S": 1.0, "HALF_LIFE_S": 5.0, "CONCEALED_FRACTION": 0.05},
    "hl5_res2": {"HALF_LIFE_S": 5.0, "RESIDUAL_FRACTION": 0.02},
    # Measured with the segment-grid fix (docs/training-log.md); explicit about every constant that
    # differs from the shipped ones (step rule 0.5 %, prior 1 s).
    "step0_prior2": {"STEP_FRACTION": 0.0, "PRIOR_S": 2.0},
    "step25_prior2": {"STEP_FRACTION": 0.0025, "PRIOR_S": 2.0},
    "step50_prior2": {"PRIOR_S": 2.0},
    "step75_prior2": {"STEP_FRACTION": 0.0075, "PRIOR_S": 2.0},
    "cf3_prior2": {"CONCEALED_FRACTION": 0.03, "PRIOR_S": 2.0},
    "cf2_prior2": {"CONCEALED_FRACTION": 0.02, "PRIOR_S": 2.0},
    "prior05": {"PRIOR_S": 0.5},
    "cf3": {"CONCEALED_FRACTION": 0.03},
}
CONSTANTS = ("PRIOR_S", "HALF_LIFE_S", "CONCEALED_FRACTION", "RESIDUAL_FRACTION", "STEP_FRACTION")
#: PLCMOS is averaged over these start offsets (samples, one STFT hop of PLCMOS): its score of the
#: same audio moves by ~0.05 with a few ms of shift, and adaptive playout shifts what is heard.
SHIFTS = (0, 64, 128, 192)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", type=Path, default=TRAIN)
    ap.add_argument("--files", type=int, default=200, help="training files read (sorted, spread over speakers)")
    ap.add_argument("--skip-files", type=int, default=0, help="start after this many of them")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--stream-s", type=float, default=20.0)
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--only", default="shipped,step0_prior2", help="comma list of variant names")
    ap.add_argument("--loss-models", type=_loss_models, default=LOSS_MODELS, metavar="PCT/BURST[,...]")
    args = ap.parse_args()

    import edge_dred.playout as P
    from edge_dred.loss import GilbertElliott
    from edge_dred.simulate import run_condition
    from playout_bench import _files, _load, _plcmos_segments, clip_bursts

    def plcmos(x: np.ndarray, n: int) -> float:   # n: the input's length (the segment grid)
        return float(np.mean([_plcmos_segments(x[s:], n - s) for s in SHIFTS]))

    names = [v for v in args.only.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    defaults = {k: getattr(P, k) for k in CONSTANTS}
    files = _files(str(args.speech), args.files)[args.skip_files:]
    pcm = np.concatenate([_load(p) for p in files])
    n = int(args.stream_s * 16000)
    streams = [pcm[i:i + n] for i in range(0, len(pcm) - n + 1, n)][: args.streams]
    if not streams:
        ap.error(f"{len(pcm) / 16000:.1f} s of speech in {len(files)} files: not one {args.stream_s:g} s stream")
    print(f"{len(streams)} streams of {args.stream_s:g} s from {args.speech} ({len(files)} files); "
          f"shipped: {defaults}\n")
    print("| loss model | variant | PLCMOS fixed 60 | ideal 1040 | adaptive | adaptive - fixed ± s.e. | gap closed "
          "| added delay ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for pct, burst in args.loss_models:
        rows: dict[str, list[tuple[float, float, float, float]]] = {v: [] for v in names}
        for si, x in enumerate(streams):
            mask = clip_bursts(GilbertElliott(pct, burst, seed=args.seed_offset + si + 1).mask(len(x) // 320 + 8),
                               MAX_BURST)
            pf = plcmos(run_condition(x, mask, "lbrr+dred").audio, len(x))
            pi = plcmos(run_condition(x, mask, "lbrr+dred", recovery_ms=1040).audio, len(x))
            for name in names:
                for k, v in {**defaults, **VARIANTS[name]}.items():
                    setattr(P, k, v)
                a = run_condition(x, mask, "lbrr+dred_adaptive")
                rows[name].append((pf, pi, plcmos(a.extra["played"], len(x)), a.extra["playout"]["mean_added_ms"]))
        for k, v in defaults.items():
            setattr(P, k, v)
        for name in names:
            r = np.asarray(rows[name])
            f, i, a, d = r.mean(axis=0)
            closed = f"{100 * (a - f) / (i - f):.0f} %" if abs(i - f) > 1e-9 else "-"
            se = float(np.std(r[:, 2] - r[:, 0], ddof=1) / np.sqrt(len(r))) if len(r) > 1 else float("nan")
            print(f"| {pct:g}/{burst:g} | {name} | {f:.3f} | {i:.3f} | {a:.3f} | {a - f:+.3f} ± {se:.3f} | {closed} "
                  f"| {d:.1f} |", flush=True)


if __name__ == "__main__":
    main()
