"""Train the artifact detector on generated defects over real training speech.

Speech: ``../shared/data/speech/train`` only; the speakers
``artifact_data.VAL_SPEAKERS`` are held out for validation.  Examples come
from :mod:`artifact_data` (fresh defects every step, generator seeds from a
stream the evaluation never uses).  Generating
an example costs far more than a gradient step, so each step adds
``--new`` fresh examples to a replay pool of ``--pool`` and trains on a batch
drawn from it.

Loss: binary cross-entropy per defect (hum, hiss, distortion, clicks).
Validation: per-defect thresholds calibrated so that the held-out speakers'
clean examples are flagged at most ``--clean-fa`` of the time
(``artifact_data.calibrate_thresholds``), then the balanced accuracy of the
5-class decision with those thresholds.
Resumable: ``training/runs/artifacts/latest_full.pt`` (git-ignored, with the
optimiser) and ``training/checkpoints/artifacts/latest.pt`` (weights);
``best.pt`` keeps the best validation balanced accuracy.

Usage::

    nice -n 10 .venv/bin/python training/train_artifacts.py --steps 20000 \
        > training/runs/artifacts.log 2>&1 &
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from artifact_data import (CLASS_P, MIN_ACTIVE, TRAIN_STREAM, calibrate_thresholds, clean_set,  # noqa: E402
                           file_activity, load_speech, make_example, make_examples, random_crop, speaker_split)
from artifact_model import ArtifactNet, n_weights  # noqa: E402
from common import atomic_save, load_resume, open_log, save_checkpoint, stop_on_sigterm  # noqa: E402

from edge_dred.artifacts.frontend import features  # noqa: E402

TRAIN_DIR = HERE.parent.parent / "shared" / "data" / "speech" / "train"
VAL_SEED = 7_000_001  # validation examples (held-out training speakers), also never used by the evaluation
VAL_CLEAN_SEED = 7_000_002  # clean validation examples for the thresholds
NONE_ANY_ACTIVITY = 0.3  # share of clean examples drawn without the activity floor


def balanced_accuracy(pred: np.ndarray, cls: np.ndarray, n: int = 5) -> tuple[float, np.ndarray]:
    """Mean per-class recall over single-defect classes and the confusion matrix."""
    cm = np.zeros((n, n), int)
    for p, c in zip(pred, cls):
        cm[c, p] += 1
    rec = np.diag(cm) / np.maximum(cm.sum(1), 1)
    return float(rec[cm.sum(1) > 0].mean()), cm


def predict_class(scores: np.ndarray, threshold=0.5) -> np.ndarray:
    """5-class decision from 4 defect scores: none unless one reaches its threshold; else the highest flagged one."""
    on = scores >= np.asarray(threshold, np.float32)
    return np.where(on.any(1), np.where(on, scores, -1.0).argmax(1) + 1, 0)


def build_set(speech, act, seed: int, n: int, lossy: str | None = None, shares=None):
    rng = np.random.default_rng(seed)
    S, G, Y, C = [], [], [], []
    chunk = 24 if lossy else 1  # plain recipe: the same examples as one make_example each
    for i0 in range(0, n, chunk):
        idx = range(i0, min(n, i0 + chunk))
        ex = make_examples([random_crop(speech, act, rng) for _ in idx], rng, [i % 6 for i in idx], lossy, shares)
        for a, y, c, _ in ex:
            s, g = features(a)
            S.append(s); G.append(g); Y.append(y); C.append(c)
    return (torch.from_numpy(np.stack(S)), torch.from_numpy(np.stack(G)), np.stack(Y), np.array(C))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--new", type=int, default=24, help="fresh examples per step")
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--ckpt-dir", type=Path, default=HERE / "checkpoints" / "artifacts")
    ap.add_argument("--run-dir", type=Path, default=HERE / "runs" / "artifacts")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--val-clean", type=int, default=800, help="clean validation examples for the thresholds")
    ap.add_argument("--clean-fa", type=float, default=0.01, help="clean validation share the thresholds may flag")
    ap.add_argument("--validate-only", action="store_true", help="log the validation of the --init weights and stop")
    ap.add_argument("--init", type=Path, help="start from these weights (fresh optimiser and schedule)")
    ap.add_argument("--lossy", action="store_true",
                    help="lossy-coding recipe (MP3/Vorbis/AAC via ffmpeg, artifact_data.LOSSY_*_P) in training "
                         "and validation examples; needs ffmpeg")
    ap.add_argument("--lossy-shares", type=lambda s: tuple(float(v) for v in s.split(",")), default=None,
                    metavar="CLEAN,DEFECT", help="shares of clean and of defect examples coded "
                                                 "(default artifact_data.LOSSY_NONE_P, LOSSY_DEFECT_P)")
    args = ap.parse_args()
    from lossy_coding import coder_or_exit

    lossy = coder_or_exit(args.lossy, "train_artifacts.py")
    torch.set_num_threads(1)
    log = open_log(args.run_dir)
    stop = stop_on_sigterm()

    train_files, val_files = speaker_split(TRAIN_DIR)
    train_speech = load_speech(train_files, args.max_files)
    val_speech = load_speech(val_files, args.max_files)
    act = [file_activity(x) for x in train_speech]
    val_act = [file_activity(x) for x in val_speech]
    log(f"train files {len(train_speech)}, validation files {len(val_speech)}"
        + (f"; lossy-coding recipe with {lossy}" if lossy else ""))

    net = ArtifactNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    log(f"weights {n_weights(net)}")
    step, best = 0, 0.0
    if args.init is not None:
        net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=False)["model"])
        log(f"initialised from {args.init}")
    ck, src = load_resume(args.ckpt_dir, args.run_dir)
    if ck is not None:
        net.load_state_dict(ck["model"])
        step, best = int(ck["step"]), float(ck.get("best", 0.0))
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
        log(f"resumed from {src} at step {step}")

    t0 = time.time()
    shares = args.lossy_shares
    vs, vg, vy, vc = build_set(val_speech, val_act, VAL_SEED, args.val, lossy, shares)
    cf = [features(a) for a in clean_set(val_speech, val_act, VAL_CLEAN_SEED, args.val_clean, lossy, shares)]
    cs, cg = torch.from_numpy(np.stack([c[0] for c in cf])), torch.from_numpy(np.stack([c[1] for c in cf]))
    log(f"validation set {len(vc)} in {time.time() - t0:.0f} s")

    def validate(prefix: str) -> float:
        """Log and return the validation balanced accuracy at thresholds calibrated on clean validation."""
        net.eval()
        with torch.no_grad():
            sc = torch.sigmoid(net(vs, vg)).numpy()
            csc = torch.sigmoid(net(cs, cg)).numpy()
        thr = calibrate_thresholds(csc, args.clean_fa)
        single = vc < 5
        bacc05, _ = balanced_accuracy(predict_class(sc[single]), vc[single])
        bacc, cm = balanced_accuracy(predict_class(sc[single], thr), vc[single])
        multi = float(np.mean(np.all((sc[~single] >= thr) == (vy[~single] >= 0.5), axis=1)))
        log(f"{prefix} val bacc {bacc:.4f} (at 0.5: {bacc05:.4f}; clean flagged at 0.5: "
            f"{np.mean(csc.max(1) >= 0.5):.4f}; thresholds {' '.join(f'{t:.3f}' for t in thr)}) "
            f"mixed exact {multi:.3f}")
        log("confusion rows=true none,hum,hiss,dist,clicks: " + " | ".join(" ".join(map(str, r)) for r in cm))
        return bacc

    if args.validate_only:
        validate(f"weights of step {step}")
        return

    P = args.pool
    pool_s = np.zeros((P, *vs.shape[1:]), np.float16)
    pool_g = np.zeros((P, vg.shape[1]), np.float32)
    pool_y = np.zeros((P, 4), np.float32)
    filled, head = 0, 0
    bce = torch.nn.BCEWithLogitsLoss()

    def add(rng, k):
        nonlocal filled, head
        classes, crops, examples = [], [], []
        for _ in range(k):
            cls = int(rng.choice(len(CLASS_P), p=CLASS_P))
            # Some clean examples may be mostly pauses: a quiet second is not a defect.
            lo = 0.0 if cls == 0 and rng.random() < NONE_ANY_ACTIVITY else MIN_ACTIVE
            if lossy:
                classes.append(cls)
                crops.append(random_crop(train_speech, act, rng, lo))
            else:
                examples.append(make_example(random_crop(train_speech, act, rng, lo), rng, cls))
        if lossy:  # one ffmpeg round trip for the coded ones among these k
            examples = make_examples(crops, rng, classes, lossy, shares)
        for a, y, _, _ in examples:
            s, g = features(a)
            pool_s[head], pool_g[head], pool_y[head] = s, g, y
            head = (head + 1) % P
            filled = min(filled + 1, P)

    warm = np.random.default_rng(np.random.SeedSequence((TRAIN_STREAM, step, 1)))
    t0 = time.time()
    for _ in range(40):  # in the trainer's batches (one lossy chain per batch)
        add(warm, min(P, args.new))
    log(f"pool warm-up {filled} in {time.time() - t0:.0f} s")
    losses = []
    t0 = time.time()
    while step < args.steps and not stop["flag"]:
        rng = np.random.default_rng(np.random.SeedSequence((TRAIN_STREAM, step)))
        add(rng, args.new)
        idx = rng.integers(0, filled, args.batch)
        net.train()
        logits = net(torch.from_numpy(pool_s[idx].astype(np.float32)), torch.from_numpy(pool_g[idx]))
        loss = bce(logits, torch.from_numpy(pool_y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        if step % args.every == 0 or step == args.steps or stop["flag"]:
            bacc = validate(f"step {step} loss {np.mean(losses):.4f} "
                            f"({(time.time() - t0) / len(losses):.2f} s/step, pool {filled})")
            losses = []
            t0 = time.time()
            state = {"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "step": step, "best": max(best, bacc), "config": {}}
            save_checkpoint(state, args.ckpt_dir, args.run_dir, ("model", "step", "best", "config"))
            if bacc >= best:
                best = bacc
                atomic_save({"model": net.state_dict(), "step": step, "val_bacc": bacc}, args.ckpt_dir / "best.pt")
    log(f"stopped at step {step}, best val bacc {best:.4f}")


if __name__ == "__main__":
    main()
