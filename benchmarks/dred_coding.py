"""Instructions per packet of DRED coding (sender) and payload parsing (receiver), under callgrind.

Usage::

    python benchmarks/dred_coding.py [--wav SPEECH.wav] [--stages code,parse,parse1] [--json out.json]

Stages (each per packet, 1.04 s of redundancy in an 80-byte budget, steady state with a
full 26-chunk history):

* ``code``: ``DredStreamEncoder.push_features`` minus the encoder network step
  (the step is replayed from a list, and the replay alone is measured and subtracted):
  activity, quantization at every level, rate control and range coding.
* ``parse``: ``parse_payload`` of one of those payloads (every chunk).
* ``parse1`` / ``parse3``: parsing for a hole that needs the newest 1 / 3 chunks
  (``parse_payload(..., chunks=n)``; the whole stream is still validated).
* ``net``, ``net_builtin``, ``invoke`` (not run by default; need a TFLite runtime): the
  RDO-VAE encoder step (``DredEncoder.step``) with the runtime's default delegate (XNNPACK),
  with its builtin kernels only, and the interpreter's ``invoke()`` alone (default delegate).

Each stage runs twice in a fresh interpreter under ``valgrind --tool=callgrind``
(K1 and K2 packets after the same set-up and warm-up); instructions per packet
are the difference of the two totals over K2 - K1, so start-up and imports
cancel.  Latents come from the TFLite encoder on ``--wav`` when given (and a
TFLite runtime imports), else from the shipped entropy model's prior
(``edge_dred.tools.bench.sampled_latents``).  The libopus column is the issue's
reference measurement (libopus HEAD with DRED, x86, same speech); the bar is
at most 2x.  Stages the checkout lacks (partial parse before it existed) print
``n/a``, so the script also measures an older checkout when run with its venv.
A benchmark, never a test; x86 instruction counts, not time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIBOPUS_K = {"code": 18.0, "parse": 14.0, "parse1": 14.0, "parse3": 14.0, "net": 62.0, "net_builtin": 62.0,
             "invoke": 62.0}
STAGES = ("code", "parse", "parse1", "parse3")
NET_STAGES = ("net", "net_builtin", "invoke")
K1, K2 = 40, 240
N_PACKETS = 200     # distinct packets cycled through


def _inputs(wav: str | None, n: int):
    """(latent, state) pairs and feature frames of n packets."""
    from edge_dred.dred.tables import shipped_tables
    from edge_dred.tools.bench import sampled_latents

    tables = shipped_tables()
    frames = np.zeros((n, 2, 20), np.float32)
    frames[:, :, 0] = 1.0                                    # active (above the silence c0)
    if wav:
        from edge_dred.audio.wavio import load_audio
        from edge_dred.dred.encoder import DredEncoder
        from edge_dred.dsp.features import FeatureExtractor

        pcm = load_audio(wav).pcm
        fx, enc = FeatureExtractor(), DredEncoder()
        frames = np.stack([fx.process_block(pcm[i * 320:(i + 1) * 320]) for i in range(min(n, len(pcm) // 320))])
        zs = [enc.step(f) for f in frames]
        return tables, zs, frames
    return tables, sampled_latents(tables, n), frames


def _net_worker(stage: str, k: int) -> None:
    import edge_dred.dred.encoder as E

    if stage == "net_builtin":
        cls = E.interpreter_class()
        kind = sys.modules[cls.__module__].OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        E.interpreter_class = lambda: (lambda **kw: cls(experimental_op_resolver_type=kind, **kw))
    enc = E.DredEncoder()
    frames = np.random.default_rng(0).normal(size=(64, 2, 20)).astype(np.float32)
    fn = enc._it.invoke if stage == "invoke" else None
    for i in range(20 + k):
        enc.step(frames[i % 64]) if fn is None else fn()


def worker(stage: str, k: int, wav: str | None) -> None:
    """Set up, warm up, then run ``k`` packets of ``stage`` (the measured part)."""
    if stage in NET_STAGES:
        _net_worker(stage, k)
        return
    from edge_dred.dred.encoder import DredStreamEncoder
    from edge_dred.dred.payload import parse_payload
    from edge_dred.tools.bench import _Replay

    tables, zs, frames = _inputs(wav, N_PACKETS)
    n = len(zs)
    rep = _Replay(zs)
    se = DredStreamEncoder(1040, 80, encoder=rep, tables=tables)
    pays = [se.push_features(frames[i % n]) for i in range(2 * n)]   # full history, then payloads
    if stage in ("code", "replay"):
        fn = se.push_features if stage == "code" else rep.step
        for i in range(60):
            fn(frames[i % n])
        for i in range(k):
            fn(frames[i % n])
        return
    pays = [p for p in pays[n:] if p]
    if stage == "parse":
        for i in range(60):
            parse_payload(pays[i % len(pays)], tables)
        for i in range(k):
            parse_payload(pays[i % len(pays)], tables)
        return
    c = int(stage[5:])
    try:
        parse_payload(pays[0], tables, chunks=c)
    except TypeError:
        sys.exit(3)                       # this checkout has no partial parse
    for i in range(60):
        parse_payload(pays[i % len(pays)], tables, chunks=c)
    for i in range(k):
        parse_payload(pays[i % len(pays)], tables, chunks=c)


def _callgrind(stage: str, k: int, wav: str | None) -> int | None:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           str(Path(__file__).resolve()), "--worker", stage, "--k", str(k)] + (["--wav", wav] if wav else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                  "OPENBLAS_NUM_THREADS": "1"})
    if r.returncode == 3:
        return None
    m = re.search(r"Collected\s*:\s*(\d+)", r.stderr)
    if r.returncode != 0 or not m:
        raise SystemExit(f"callgrind run failed ({stage}, k={k}):\n{r.stderr[-2000:]}")
    return int(m.group(1))


def per_packet(stage: str, wav: str | None) -> float | None:
    a, b = _callgrind(stage, K1, wav), _callgrind(stage, K2, wav)
    if a is None or b is None:
        return None
    return (b - a) / (K2 - K1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wav", help="speech for real latents (needs a TFLite runtime)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.worker:
        worker(a.worker, a.k, a.wav)
        return
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind not found (apt-get install valgrind)")
    stages = [s for s in a.stages.split(",") if s]
    bad = set(stages) - set(STAGES) - set(NET_STAGES)
    if bad:
        raise SystemExit(f"unknown stages {sorted(bad)}; choose from {', '.join(STAGES + NET_STAGES)}")
    res: dict[str, float | None] = {}
    replay = per_packet("replay", a.wav) if "code" in stages else 0.0
    for s in stages:
        v = per_packet(s, a.wav)
        res[s] = None if v is None else v - (replay if s == "code" else 0.0)
    print(f"x86 instructions per packet (callgrind; {'latents of ' + a.wav if a.wav else 'sampled latents'})")
    print(f"{'stage':<12} {'edge-dred':>10} {'libopus':>8} {'ratio':>6}")
    for s in stages:
        v = res[s]
        if v is None:
            print(f"{s:<12} {'n/a':>10} {LIBOPUS_K[s]:>7.0f}k {'':>6}")
        else:
            print(f"{s:<12} {v / 1e3:>9.1f}k {LIBOPUS_K[s]:>7.0f}k {v / 1e3 / LIBOPUS_K[s]:>5.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"instructions_per_packet": res, "wav": a.wav}, indent=1))


if __name__ == "__main__":
    main()
