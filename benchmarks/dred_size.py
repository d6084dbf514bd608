"""DRED payload sizes on real speech: bytes per packet per redundancy depth, latent bit rate.

Usage::

    python benchmarks/dred_size.py SPEECH_DIR [--max-files 40] [--budget 80] [--json out.json]

Every ``.wav``/``.flac`` file under ``SPEECH_DIR`` (16 kHz mono; spread over
the sorted list when ``--max-files`` cuts it) goes through the sender's DRED
path exactly as in a call: features, the shipped int8 TFLite encoder, silence
trimming, rate control and range coding, one payload per 20 ms packet.  The
table shows, per requested depth (0.2 / 0.5 / 1.04 s):

* mean and 95th-percentile payload bytes per packet within the byte budget
  (the product bar: <= 80 bytes at 1.04 s), how much redundancy those
  payloads really carry (the rate control shortens the depth to fit) and at
  which quantizer schedule (it spends the budget on the finest that fits, so
  short depths come out near the budget too, at finer levels), and
* what the full requested depth (after silence trimming) would cost at the
  coarsest quantizer level for every chunk: the least any schedule needs.

A second table gives the latent bit rate per second of active speech per
quantizer level (exact range-coder code lengths; 25 latents per second carry
the speech once) and the state bits per packet.  A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
from edge_dred.dred.encoder import DredEncoder, DredStreamEncoder, chunk_activity
from edge_dred.dred.quantizer import N_LEVELS, quantize
from edge_dred.dred.ratecontrol import estimate_bits
from edge_dred.dsp.features import compute_features

DEPTHS_MS = (200, 500, 1040)


def load(path: Path) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="int16", always_2d=True)
    if sr != 16000:
        raise ValueError(f"{path}: {sr} Hz, expected 16000")
    return x[:, 0]


def run(files: list[Path], budget: int) -> dict:
    enc = DredEncoder()
    res: dict = {"files": len(files), "seconds": 0.0, "depths": {}}
    stats = {d: {"bytes": [], "chunks": [], "requested": [], "full_q15": [], "q0": [], "dq": [], "silent": 0, "short": 0}
             for d in DEPTHS_MS}
    lat_bits = np.zeros(N_LEVELS)
    n_active = 0
    state_bits = []
    for path in files:
        feats = compute_features(load(path))
        n = feats.shape[0] // 2
        res["seconds"] += n * 0.02
        for depth, st in stats.items():
            se = DredStreamEncoder(depth, budget, encoder=enc)
            tables = se.tables
            se.reset()
            for j in range(n):
                pay = se.push_features(feats[2 * j:2 * j + 2])
                dec = se.last_decision
                st["bytes"].append(len(pay))
                st["requested"].append(dec.requested_chunks)
                st["chunks"].append(dec.n_chunks)
                if pay:
                    st["q0"].append(dec.q0)
                    st["dq"].append(dec.dq)
                st["silent"] += dec.reason == "silent"
                st["short"] += dec.reason == "shortened"
                # What the full (silence-trimmed) depth costs at the coarsest level, q = 15 for every chunk.
                lat, act = se.current_inputs()
                on = np.flatnonzero(act[:dec.requested_chunks])
                m = int(on[-1]) + 1 if on.size else 0
                ks = quantize(se.last_s, tables.state_quant_scale, tables.state_dead_zone)
                if m:
                    k = quantize(lat[None, :m], tables.quant_scale[:, None], tables.dead_zone[:, None])
                    fixed, per = estimate_bits(ks, k.astype(np.int32), tables)
                    st["full_q15"].append(int(np.ceil((fixed + per[15].sum() + 1) / 8)))
                else:
                    st["full_q15"].append(0)
                if depth == DEPTHS_MS[0] and j % 2 == 1 and chunk_activity(feats[2 * j - 2:2 * j + 2, 0]):
                    # Every other step's latent covers the speech once: the per-second rate.
                    k = quantize(np.broadcast_to(se.last_z, (N_LEVELS, se.last_z.shape[0])),
                                 tables.quant_scale, tables.dead_zone)
                    fixed, per = estimate_bits(ks, k[:, None, :].astype(np.int32), tables)
                    lat_bits += per[:, 0]
                    state_bits.append(fixed)
                    n_active += 1
    for depth, st in stats.items():
        by = np.asarray(st["bytes"], float)
        ch = np.asarray(st["chunks"], float)
        full = np.asarray(st["full_q15"], float)
        res["depths"][f"{depth}ms"] = {
            "depth_ms": depth, "budget": budget, "mean_bytes": float(by.mean()),
            "p95_bytes": float(np.percentile(by, 95)), "max_bytes": int(by.max()), "mean_chunks": float(ch.mean()),
            "mean_requested": float(np.mean(st["requested"])), "carried_ms_mean": float(ch.mean() * 40),
            "silent_pct": 100.0 * st["silent"] / len(by), "shortened_pct": 100.0 * st["short"] / len(by),
            "kbps": float(by.mean() * 8 * 50 / 1000), "full_depth_q15_mean_bytes": float(full.mean()),
            "mean_q0": float(np.mean(st["q0"])) if st["q0"] else float("nan"),
            "mean_dq": float(np.mean(st["dq"])) if st["dq"] else float("nan")}
    res["active_seconds"] = n_active * 0.04
    res["latent_bits_per_chunk"] = (lat_bits / max(n_active, 1)).tolist()
    res["latent_kbps_active_speech"] = (lat_bits / max(n_active, 1) * 25 / 1000).tolist()
    res["state_bits_per_packet"] = float(np.mean(state_bits)) if state_bits else float("nan")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("speech_dir", type=Path)
    ap.add_argument("--max-files", type=int, default=40)
    ap.add_argument("--budget", type=int, default=80, help="payload cap in bytes (default 80)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    files = sorted(p for p in a.speech_dir.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        print(f"no .wav/.flac files under {a.speech_dir}", file=sys.stderr)
        return 2
    if len(files) > a.max_files:
        files = [files[i] for i in np.linspace(0, len(files) - 1, a.max_files).astype(int)]
    t0 = time.time()
    r = run(files, a.budget)
    print(f"DRED payload sizes: {r['files']} files, {r['seconds']:.0f} s of audio "
          f"({r['active_seconds']:.0f} s active), {time.time() - t0:.0f} s\n")
    print(f"| depth asked | mean B/packet (budget {a.budget}) | p95 B | kb/s | carried (mean) | shortened % "
          f"| silent % | mean q0 / dQ | full depth at q=15: mean B |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in r["depths"].values():
        print(f"| {v['depth_ms']} ms | {v['mean_bytes']:.1f} | {v['p95_bytes']:.0f} | {v['kbps']:.1f} | "
              f"{v['carried_ms_mean']:.0f} ms | {v['shortened_pct']:.1f} | {v['silent_pct']:.1f} | "
              f"{v['mean_q0']:.1f} / {v['mean_dq']:.1f} | {v['full_depth_q15_mean_bytes']:.1f} |")
    print("\nLatent bit rate on active speech (one 40 ms latent per 40 ms of speech):\n")
    print("| q | bits/latent | kb/s |")
    print("|---:|---:|---:|")
    for q in range(N_LEVELS):
        print(f"| {q} | {r['latent_bits_per_chunk'][q]:.1f} | {r['latent_kbps_active_speech'][q]:.2f} |")
    print(f"\nheader + state: {r['state_bits_per_packet']:.1f} bits per packet")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
