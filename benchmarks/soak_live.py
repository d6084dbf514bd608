"""Soak test of ``edge-dred live``: minutes of real-time full duplex under bursty loss.

ALSA's ``file`` and ``null`` plugins (through a generated ``ALSA_CONFIG_PATH``
config, no sound card or ~/.asoundrc needed) feed a synthetic voice signal as
the microphone and capture the speaker to a raw file; the capture device is
paced to real time.  Between them: Opus + LBRR, RTP, 20 % Gilbert-Elliott
loss, reordering and duplication, the adaptive jitter buffer, recovery.

Checks and prints: no crash, resident memory flat (max minus the value after
warm-up, bar 5 MB), every packet accounted for, x-runs, CPU load, the
per-stage latency budget, and what recovered the holes.

    .venv/bin/python benchmarks/soak_live.py --minutes 10 --report out/soak_live.json
    .venv/bin/python benchmarks/soak_live.py --minutes 0.5 --backend mock   # no pyalsaaudio needed
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ASOUND = """
pcm.soak_null {{ type null }}
pcm.soak_mic {{ type file slave.pcm "soak_null" file "/dev/null" infile "{inp}" format "raw" }}
pcm.soak_spk {{ type file slave.pcm "soak_null" file "{out}" format "raw" }}
"""


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _voice(seconds: float, seed: int = 0) -> np.ndarray:
    """Voice-like test signal: harmonics with drifting pitch, syllables and pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.3 * t) + 10 * np.sin(2 * np.pi * 2.1 * t)
    ph = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * ph) * 0.75 ** k for k in range(1, 30))
    env = np.clip(np.sin(2 * np.pi * 1.7 * t) * 1.3, 0, 1) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.11 * t) ** 2)
    x = x / np.max(np.abs(x)) * env * 0.35 + rng.normal(0, 0.002, n)
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--loss", type=float, default=20.0)
    ap.add_argument("--burst", type=float, default=3.0)
    ap.add_argument("--reorder", type=float, default=5.0)
    ap.add_argument("--duplicate", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=("alsa", "mock"), default="alsa")
    ap.add_argument("--warmup-s", type=float, default=30.0, help="RSS baseline is taken after this long")
    ap.add_argument("--status-interval", type=float, default=30.0)
    ap.add_argument("--report", help="write the JSON result here")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="soak_live_")
    seconds = args.minutes * 60
    src = _voice(min(seconds, 60.0) + 1.0, args.seed)
    reps = int(np.ceil((seconds + 2) * 16000 / len(src)))
    if args.backend == "alsa":
        inp, out = os.path.join(work, "mic.raw"), os.path.join(work, "spk.raw")
        with open(inp, "wb") as f:  # the file plugin reads this as the microphone
            for _ in range(reps):
                f.write(src.astype("<i2").tobytes())
        conf = os.path.join(work, "asound.conf")
        with open(conf, "w") as f:
            f.write(ASOUND.format(inp=inp, out=out))
        os.environ["ALSA_CONFIG_PATH"] = conf

    from edge_dred.audio.device import MockDevice, open_capture, open_playback
    from edge_dred.live import LiveConfig, LiveSession
    from edge_dred.loss import GilbertElliott
    from edge_dred.transport.impair import Impairment

    if args.backend == "alsa":
        cap = open_capture("alsa:soak_mic", pace=True)
        play = open_playback("alsa:soak_spk", pace=False)
    else:
        cap = MockDevice("capture", source=src, loop=True, pace=True)
        play = MockDevice("playback", record_limit_s=1.0)
    n_packets = int(seconds * 50) + 64
    imp = Impairment(GilbertElliott(args.loss, args.burst, seed=args.seed), reorder_pct=args.reorder,
                     duplicate_pct=args.duplicate, seed=args.seed + 1, expected_packets=n_packets)
    sess = LiveSession(cap, play, LiveConfig(), imp, record_received=os.path.join(work, "received.opus"))

    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def monitor() -> None:
        t0 = time.monotonic()
        while not stop.wait(5.0):
            samples.append((time.monotonic() - t0, _rss_kb()))

    mon = threading.Thread(target=monitor, daemon=True)
    rss0 = _rss_kb()
    t0 = time.monotonic()
    mon.start()
    crashed = ""
    rep: dict = {}
    try:
        rep = sess.run(seconds, args.status_interval, sys.stdout)
    except Exception as e:  # the soak's verdict: report a crash instead of dying
        crashed = f"{type(e).__name__}: {e}"
    finally:
        stop.set()
        mon.join()
        cap.close()
        play.close()
    wall = time.monotonic() - t0
    after = [kb for t, kb in samples if t >= args.warmup_s] or [kb for _, kb in samples] or [_rss_kb()]
    rss_growth_mb = (max(after) - after[0]) / 1024.0
    acct = rep.get("accounting", {})
    st = rep.get("impairment_stats", {})
    verdict = {
        "no_crash": not crashed,
        "rss_flat_within_5mb": rss_growth_mb <= 5.0,
        "every_packet_accounted": bool(acct.get("ok")),
        "latency_pipeline_le_60ms": rep.get("latency_budget_ms", {}).get("pipeline_ms", 1e9) <= 60.0,
    }
    result = {
        "minutes": args.minutes, "backend": args.backend, "wall_s": wall, "crash": crashed,
        "rss_kb_start": rss0, "rss_kb_after_warmup": after[0], "rss_kb_max_after_warmup": max(after),
        "rss_growth_mb": rss_growth_mb, "rss_samples": samples, "verdict": verdict, "session": rep,
    }
    print()
    print("| check | value | bar | ok |")
    print("|---|---|---|---|")
    print(f"| duration | {wall / 60:.2f} min wall for {args.minutes:g} min audio | real time | "
          f"{abs(wall - seconds) < 0.05 * seconds + 2} |")
    print(f"| crash | {crashed or 'none'} | none | {verdict['no_crash']} |")
    print(f"| resident memory | {after[0] / 1024:.1f} MB after warm-up, max {max(after) / 1024:.1f} MB "
          f"(+{rss_growth_mb:.2f} MB) | <= 5 MB growth | {verdict['rss_flat_within_5mb']} |")
    if rep:
        j = rep["jitter"]
        print(f"| packets | sent {st['packets']}, lost {st['lost']} ({100 * st['lost'] / max(1, st['packets']):.1f} %), "
              f"dup {st['duplicated']}, reordered {st['reordered']}; played {j['played']}, late {j['late']}, "
              f"drift drop {j['dropped_drift']}, inserted {j['inserted']} | all accounted | "
              f"{verdict['every_packet_accounted']} |")
        holes = {k: v for k, v in rep["decisions"].items() if k != "regular"}
        print(f"| holes recovered by | {', '.join(f'{k} {v}' for k, v in sorted(holes.items()))} | - | - |")
        print(f"| jitter buffer | {rep['jitter_delay_ms']:.0f} ms median wait | - | - |")
        print(f"| x-runs | overruns {rep['overruns']}, underruns {rep['underruns']} | counted | - |")
        print(f"| CPU load (audio thread) | mean {100 * rep['cpu_load_mean']:.1f} %, peak "
              f"{100 * rep['cpu_load_peak']:.0f} % | < 100 % | {rep['cpu_load_mean'] < 1} |")
        b = rep["latency_budget_ms"]
        print(f"| latency budget | capture {b['capture_framing_ms']:g} + codec {b['codec_lookahead_ms']:g} + "
              f"jitter {b['jitter_buffer_target_ms']:g} + look-ahead {b['recovery_lookahead_ms']:g} = "
              f"{b['pipeline_ms']:g} ms (+{b['playback_buffer_ms']:g} ms playback ring) | <= 60 ms | "
              f"{verdict['latency_pipeline_le_60ms']} |")
    if args.report:
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
