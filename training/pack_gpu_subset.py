"""Pack a training subset small enough to travel to a lent GPU machine.

The device tool carries at most 64 MiB with the working tree, so the full
augmented copies (``vocoder_{k}.npz``, 330 MB each) cannot go.  This takes
whole files, disjoint between copy 0 and copy 1 (different augmentation,
different speech), up to ``--frames-per-copy`` 10 ms frames from each, and
writes one ``vocoder_0.npz`` (compressed) that ``train_vocoder.py`` and
``train_vocoder_gan.py`` read with ``--data <dir>``; where both copies have
DRED-decoded twins (``dred_feats_{k}.npz``, ``prepare_dred_features.py``),
the same files' rows go to ``dred_feats_0.npz`` (for ``--dred-p``).

Used for the shipped vocoder: ``--seed 5 --frames-per-copy 52000``
gave 258 files, 17.3 min of speech, 34 MB.

Usage::

    .venv/bin/python training/pack_gpu_subset.py --out gpu_job
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--out", type=Path, required=True, help="folder for vocoder_0.npz (keep it out of git)")
    ap.add_argument("--frames-per-copy", type=int, default=52000)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    pcm, feats, offs, tot = [], [], [0], 0
    twins = [a.data / f"dred_feats_{k}.npz" for k in (0, 1)]
    dred: list[np.ndarray] | None = [] if all(t.exists() for t in twins) else None
    for k in (0, 1):
        src = a.data / f"vocoder_{k}.npz"
        if not src.exists():
            raise SystemExit(f"{src} is missing: run training/prepare_data.py first")
        d = np.load(src)
        o, p, f = d["offsets"], d["pcm"], d["feats"]
        fd = np.load(twins[k])["feats"] if dred is not None else None
        if fd is not None and fd.shape != f.shape:
            raise SystemExit(f"{twins[k]}: shape {fd.shape} does not match {src} {f.shape}")
        idx = rng.permutation(len(o) - 1)
        for i in idx[idx % 2 == k]:  # even files from copy 0, odd from copy 1
            s, e = int(o[i]), int(o[i + 1])
            if tot + (e - s) > a.frames_per_copy * (k + 1):
                break
            pcm.append(p[s * 160: e * 160])
            feats.append(f[s:e])
            if dred is not None:
                dred.append(fd[s:e])
            tot += e - s
            offs.append(tot)
    a.out.mkdir(parents=True, exist_ok=True)
    dst = a.out / "vocoder_0.npz"
    np.savez_compressed(dst, pcm=np.concatenate(pcm), feats=np.concatenate(feats), offsets=np.array(offs, np.int64))
    print(f"{dst}: {len(offs) - 1} files, {tot / 6000:.1f} min, {dst.stat().st_size / 2**20:.1f} MiB")
    if dred is not None:
        dt = a.out / "dred_feats_0.npz"
        np.savez_compressed(dt, feats=np.concatenate(dred))
        print(f"{dt}: DRED-decoded twins, {dt.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
