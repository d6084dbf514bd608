"""Per-stage timing per 20 ms packet and real-time factors (``edge-dred bench``).

A benchmark prints a table; it never asserts on speed (timed tests are flaky
on shared machines).  Each stage is timed over every packet of a synthetic
voiced signal, and min/median/max per packet are reported.
"""
from __future__ import annotations

import platform
import time
from typing import Callable

import numpy as np

from . import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["run_bench", "time_per_packet"]


def time_per_packet(fn: Callable[[int], object], n_packets: int, repeat: int) -> np.ndarray:
    """Call ``fn(i)`` for every packet index, ``repeat`` times; return seconds per call (best run per packet)."""
    best = np.full(n_packets, np.inf)
    for _ in range(repeat):
        for i in range(n_packets):
            t0 = time.perf_counter()
            fn(i)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _signal(seconds: float) -> np.ndarray:
    from .demo_audio import _synthetic

    x = _synthetic(max(seconds, 1.0))
    rng = np.random.default_rng(0)
    return np.clip(x + rng.normal(0, 30, len(x)), -32768, 32767).astype(np.int16)


def _neural_plc_rows(pcm: np.ndarray, n: int, repeat: int) -> list[tuple[str, str, np.ndarray]]:
    """Neural PLC per 20 ms slot: vocoder (2 frames), predictor (2 frames), output analysis (2 frames).

    Their sum is the cost of a concealed slot (``conceal`` + ``observe``);
    received slots pay only the analysis and the predictor.  Skipped (no
    rows) when the shipped models cannot be loaded.
    """
    try:
        from .features import FeatureExtractor, compute_features
        from .plc import FeaturePredictor, default_models
        from .vocoder import PRIME_FRAMES, Vocoder, prime_samples

        vm, pm = default_models()
    except (ImportError, ValueError):
        return []
    feats = compute_features(pcm)
    voc, pred, fx = Vocoder(vm), FeaturePredictor(pm), FeatureExtractor()
    k = PRIME_FRAMES + 3
    voc.prime(pcm[: k * 160][-prime_samples():], feats[1:k])
    frames = pcm[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)

    def predictor(i: int) -> None:
        pred.update(feats[2 * i])
        pred.lost()

    return [
        ("neural plc", "vocoder (2 x 10 ms)", time_per_packet(lambda i: voc.synthesize(feats[2 * i:2 * i + 2]), n, repeat)),
        ("neural plc", "PLC predictor (2 frames)", time_per_packet(predictor, n, repeat)),
        ("neural plc", "output features (2 x 10 ms)", time_per_packet(lambda i: fx.process_block(frames[i]), n, 1)),
    ]


def _dred_rows(pcm: np.ndarray, n: int, repeat: int) -> list[tuple[str, str, np.ndarray]]:
    """DRED per 20 ms packet: the sender's whole path and the receiver's decode of the newest 40 ms.

    Sender: features, int8 TFLite encoder step, quantisation, rate control and
    range coding of a 1.04 s / 80-byte payload.  Receiver: parse the payload
    and run the decoder from the state through the newest latent (4 frames),
    what a single lost packet costs before synthesis (the vocoder row above
    gives the synthesis).  Skipped when the models or the TFLite runtime are
    missing.
    """
    try:
        from .dred.decoder import DredDecoder
        from .dred.encoder import DredStreamEncoder
        from .dred.payload import parse_payload

        se = DredStreamEncoder(1040, 80)
        dec = DredDecoder()
    except (ImportError, ValueError):
        return []
    frames = pcm[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    payloads: list[bytes] = [b""] * n

    def send(i: int) -> None:
        payloads[i] = se.push_pcm(frames[i])

    t_send = time_per_packet(send, n, 1)    # stateful stream: one pass
    have = [p for p in payloads if p]
    if not have:
        return [("dred sender", "features + TFLite step + quantize + code", t_send)]

    def recv(i: int) -> None:
        dec.start_payload(parse_payload(have[i % len(have)], dec.tables)).frames(4)

    return [
        ("dred sender", "features + TFLite step + quantize + code", t_send),
        ("dred receiver", "parse + decode newest 40 ms", time_per_packet(recv, len(have), repeat)),
    ]


def run_bench(seconds: float = 10.0, repeat: int = 3) -> str:
    """Time every available stage and return a markdown table."""
    from .codec.opus import OpusDecoder, OpusEncoder

    pcm = _signal(seconds)
    n = len(pcm) // FRAME_SAMPLES
    frames = pcm[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    rows: list[tuple[str, str, np.ndarray]] = []

    try:
        from .features import FeatureExtractor

        fx = FeatureExtractor()
        rows.append(("sender", "features (2 x 10 ms)", time_per_packet(lambda i: fx.process_block(frames[i]), n, 1)))
    except ImportError:
        pass

    enc = OpusEncoder(SAMPLE_RATE, 1, bitrate=24000)
    packets = [enc.encode(f) for f in frames]
    enc2 = OpusEncoder(SAMPLE_RATE, 1, bitrate=24000)
    rows.append(("sender", "opus encode 24 kb/s", time_per_packet(lambda i: enc2.encode(frames[i]), n, repeat)))
    dec = OpusDecoder(SAMPLE_RATE, 1)
    rows.append(("receiver", "opus decode", time_per_packet(lambda i: dec.decode(packets[i], FRAME_SAMPLES), n, repeat)))
    rows.append(("receiver", "opus PLC", time_per_packet(lambda i: dec.decode(None, FRAME_SAMPLES), n, repeat)))

    rows.extend(_neural_plc_rows(pcm, n, repeat))
    rows.extend(_dred_rows(pcm, n, repeat))

    budget = FRAME_MS / 1000.0
    lines = [
        f"edge-dred bench: {platform.machine()} ({platform.processor() or 'unknown cpu'}), "
        f"{n} packets of {FRAME_MS} ms, best of {repeat}",
        "",
        "| side | stage | min us | median us | max us | RTF (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    totals: dict[str, float] = {}
    for side, name, t in rows:
        med = float(np.median(t))
        totals[side] = totals.get(side, 0.0) + med
        lines.append(f"| {side} | {name} | {t.min() * 1e6:.1f} | {med * 1e6:.1f} | {t.max() * 1e6:.1f} | {med / budget:.4f} |")
    lines.append("")
    for side, tot in totals.items():
        if side == "receiver":
            # a slot is either decoded or concealed, not both
            tot -= sum(float(np.median(t)) for sd, nm, t in rows if sd == side and nm == "opus PLC")
        lines.append(f"{side} real-time factor: {tot / budget:.4f} (headroom {budget / max(tot, 1e-12):.0f}x)")
    return "\n".join(lines)
