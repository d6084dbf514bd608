"""Mutation fuzz loop for the DRED payload parser (not collected by pytest).

Feeds `parse_payload` random byte strings and mutations of valid payloads
(bit flips, byte overwrites, truncation, extension, splices) and checks that
every input is either rejected with DredPayloadError or decoded into bounded
integers, and that no single parse is slow.

Usage::

    .venv/bin/python tests/fuzz_payload.py --seconds 20 --seed 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from edge_dred.dred.payload import (MAX_CHUNKS, DredPayload, DredPayloadError, encode_payload,  # noqa: E402
                                    parse_payload)
from edge_dred.dred.quantizer import EntropyTables, chunk_levels  # noqa: E402


def _valid(rng: np.random.Generator, tables: EntropyTables) -> bytes:
    n = int(rng.integers(1, MAX_CHUNKS + 1))
    q0, dq = int(rng.integers(4, 16)), int(rng.integers(0, 8))
    lat = []
    for q in chunk_levels(n, q0, dq, 15):
        scale = tables.quant_scale[q] * rng.uniform(0.5, 1.5, tables.latent_dim)
        lat.append(np.clip(np.round(rng.laplace(0, 1, tables.latent_dim) * scale), -1023, 1023).astype(np.int32))
    st = np.round(rng.laplace(0, 2, tables.state_dim)).astype(np.int32)
    p = DredPayload(q0=q0, dq=dq, qmax=15, offset=int(rng.integers(0, 4)), state_k=st, latents_k=lat)
    try:
        return encode_payload(p, tables)
    except DredPayloadError:
        return b"\x10"


def _mutate(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0 and b:
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, 8 * len(b)))
            b[i // 8] ^= 1 << (i % 8)
    elif kind == 1 and b:
        b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 2:
        b = b[: int(rng.integers(0, len(b) + 1))]
    elif kind == 3:
        b += rng.bytes(int(rng.integers(1, 8)))
    elif kind == 4:
        cut = int(rng.integers(0, len(b) + 1))
        b = b[:cut] + other[int(rng.integers(0, len(other) + 1)):]
    else:
        b = bytearray(rng.bytes(int(rng.integers(0, 1100))))
    return bytes(b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    tables = EntropyTables.synthetic(32, 48, seed=args.seed)
    corpus = [_valid(rng, tables) for _ in range(64)]
    n = accepted = 0
    worst = 0.0
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        data = _mutate(rng, corpus[int(rng.integers(0, len(corpus)))], corpus[int(rng.integers(0, len(corpus)))])
        t0 = time.perf_counter()
        try:
            p = parse_payload(data, tables)
        except DredPayloadError:
            pass
        else:
            accepted += 1
            assert 1 <= p.n_chunks <= MAX_CHUNKS
            assert all(np.abs(v).max() <= 1023 for v in [p.state_k, *p.latents_k])
        worst = max(worst, time.perf_counter() - t0)
        n += 1
    print(f"{n} inputs, {accepted} accepted ({100 * accepted / max(n, 1):.2f} %), slowest parse {worst * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
