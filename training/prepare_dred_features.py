"""DRED-decoded twins of the vocoder training features (training only).

In the receiver the vocoder rebuilds a burst from features that went through
the DRED encoder, the quantizer and rate control at the shipped budget, the
range coder and the backward decoder; its training saw only clean features.
This script writes, for ``training/data/vocoder_{i}.npz``, a file
``vocoder_{i}_dred.npz`` with one array ``feats`` of the same shape: each 20 ms
packet's two frames as the receiver would decode them from the payload of a
packet ``a`` slots later (``a`` drawn from :data:`AGE_P`: mostly short holes,
as on real traces; the newest chunks are the finest).  Frames no payload
describes (the last packets of a file; silence longer than the DRED depth,
for which the sender sends nothing) keep their clean features.

The sender runs exactly as at run time (:class:`DredStreamEncoder`, default
depth and budget), fed the stored features, so payloads are what the shipped
models produce.  ``train_vocoder_gan.py --dred-p P`` then conditions a share
``P`` of its sequences on these features (the target audio stays the real one).

Usage::

    .venv/bin/python training/prepare_dred_features.py --copies 0 1
"""
from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

#: Probability of decoding a packet from the payload 1, 2, ... slots later.
AGE_P = np.array([0.30, 0.25, 0.17, 0.12, 0.08, 0.05, 0.03])


def decode_file(feats: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """DRED-decoded twin of one file's (n, 20) features; also the number of packets decoded."""
    from edge_dred.dred.decoder import DEC_FRAMES, DredDecoder, sanitize_features
    from edge_dred.dred.encoder import DredStreamEncoder
    from edge_dred.dred.payload import MAX_CHUNKS, parse_payload
    from edge_dred.dred.recovery import _Source, payload_frame_span

    rng = np.random.default_rng(seed)
    enc = DredStreamEncoder()
    dec = DredDecoder()
    n_pk = feats.shape[0] // 2
    payloads = [enc.push_features(feats[2 * p:2 * p + 2]) for p in range(n_pk)]
    out = feats.copy()
    ages = rng.choice(len(AGE_P), size=n_pk, p=AGE_P / AGE_P.sum()) + 1
    # One lazy decode per payload, as the receiver keeps it (`_Source`): parsed for the chunks
    # the first packet asks of it, decoded further back only when an older one does.
    sources: dict[int, _Source] = {}
    done = 0
    for p in range(n_pk):
        q = p + int(ages[p])
        if q >= n_pk or not payloads[q]:
            continue
        lo, hi = 2 * p, 2 * p + 1
        src = sources.get(q)
        if src is None:
            pl = parse_payload(payloads[q], enc.tables, chunks=min(-(-(2 * q + 2 - lo) // DEC_FRAMES), MAX_CHUNKS))
            first, last = payload_frame_span(q, pl.offset, pl.n_chunks)
            src = sources[q] = _Source(q, first, last, dec.start_payload(pl), payloads[q], enc.tables)
        if not src.covers(lo, hi):
            continue
        # As the receiver hands them to the vocoder (ranges clamped).
        out[lo:hi + 1] = sanitize_features(src.frames(lo, hi))
        done += 1
    return out.astype(np.float32), done


def _work(args: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    return decode_file(*args)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--copies", type=int, nargs="+", default=[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    for c in args.copies:
        src = args.data / f"vocoder_{c}.npz"
        dst = args.data / f"dred_feats_{c}.npz"
        if not src.exists():
            print(f"{src}: missing; run training/prepare_data.py first", file=sys.stderr)
            return 2
        d = np.load(src)
        feats, offs = d["feats"], d["offsets"]
        jobs = [(feats[a:b], args.seed * 100003 + 1000 * c + i) for i, (a, b) in enumerate(zip(offs[:-1], offs[1:]))]
        t0 = time.time()
        with Pool(args.workers) as pool:
            res = pool.map(_work, jobs, chunksize=8)
        out = np.concatenate([r[0] for r in res]) if res else feats[:0]
        n_dec = sum(r[1] for r in res)
        assert out.shape == feats.shape
        tmp = dst.with_suffix(".tmp.npz")
        np.savez(tmp, feats=out)
        tmp.replace(dst)
        diff = np.abs(out - feats)
        print(f"{dst.name}: {len(jobs)} files, {n_dec} of {feats.shape[0] // 2} packets decoded, "
              f"mean |cepstral error| {diff[:, :18].mean():.3f}, {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
