"""Soak test of the live path with the default configuration: minutes of real time under bursty loss.

Runs what ``edge-dred live``/``send``/``recv`` run by default (the board's
settings: Opus + LBRR + DRED, the DRED recoverer and the neural PLC under the
load governor).  Two transports:

* ``--transport live`` (default): :class:`~edge_dred.live.LiveSession`, one
  audio thread, ALSA ``file``/``null`` plugins (through a generated
  ``ALSA_CONFIG_PATH``) or mock devices;
* ``--transport udp``: a :class:`~edge_dred.live.SendSession` and a
  :class:`~edge_dred.live.RecvSession` over loopback UDP (mock devices), so
  hostile traffic can be aimed at the receiver's socket.

Between sender and receiver: 20 % Gilbert-Elliott loss, reordering,
duplication (``--loss 0 --reorder 0 --duplicate 0`` for a clean run).

``--hostile [FROM-TO]`` (udp only; minutes, default the whole run) starts an
attacker process on 127.0.0.1 -- never anywhere else -- that, during the
window, sends packet for packet alongside the stream a second stream (its own
SSRC) and a spoofed one (the stream's SSRC, timestamps far ahead), forged RTCP
BYEs, random datagrams, and every ``--flood-every`` seconds a 20 000-packet
flood and 64 datagrams of 65 000 bytes.  Its packets are marked, so the
receiver can count any attacker frame that reaches the decoder (bar: 0).

Checks and prints: no crash, resident memory flat (max minus the value after
warm-up, bar 5 MB), every packet accounted for, x-runs, CPU load, the
per-stage latency budget, what recovered the holes and, with ``--hostile``,
the legitimate packets played and the attacker's accounting.

    .venv/bin/python benchmarks/soak_live.py --minutes 10 --report out/soak_live.json
    .venv/bin/python benchmarks/soak_live.py --minutes 0.5 --backend mock   # no pyalsaaudio needed
    .venv/bin/python benchmarks/soak_live.py --transport udp --minutes 3 --loss 0 --reorder 0 --duplicate 0 \\
        --hostile --report out/hostile.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
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
LOOPBACK = "127.0.0.1"
MARK = b"ATTACKER"  # in the Opus padding of every attacker packet
FLOOD_PACKETS = 20000
BIG_DATAGRAMS, BIG_BYTES = 64, 65000


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


def _default_config(args):
    """The configuration ``edge-dred live`` runs with by default (board detection included)."""
    from edge_dred.cli.main import build_parser
    from edge_dred.cli.live import _config

    board, _how, cfg = _config(build_parser().parse_args(["live", "--device", "mock"]))
    return board, cfg


def _attack(port: int, ssrc: int, start_s: float, stop_s: float, flood_every: float, seed: int, out) -> None:
    """The attacker process: loopback only, marked packets, counts what it sent."""
    from edge_dred.codec.framing import with_padding
    from edge_dred.sender import Sender
    from edge_dred.transport.rtp import RtpPacketizer, build_rtcp_bye

    rng = np.random.default_rng(seed)
    enc = Sender(24000).encoder
    t = np.arange(320 * 50) / 16000
    tone = (np.sin(2 * np.pi * 1000 * t) * 12000).astype(np.int16)
    pkts = [with_padding(enc.encode(tone[i * 320:(i + 1) * 320]), MARK) for i in range(50)]
    dest = (LOOPBACK, port)
    second, spoof, junk = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    for s_ in (second, spoof, junk):
        s_.bind((LOOPBACK, 0))
        s_.setblocking(False)
    tx_second = RtpPacketizer(ssrc=(ssrc ^ 0x5A5A5A5A) or 1)
    tx_spoof = RtpPacketizer(ssrc=ssrc, first_timestamp=int(rng.integers(0, 1 << 32)))
    sent = {k: 0 for k in ("second_sender", "spoofed_ssrc", "flood", "big", "random", "forged_bye", "send_errors")}

    def send(sock, data, what):
        try:
            sock.sendto(data, dest)
            sent[what] += 1
        except OSError:
            sent["send_errors"] += 1

    t0 = time.monotonic()
    time.sleep(max(0.0, start_s))
    next_flood = time.monotonic() + 5.0
    k = 0
    while time.monotonic() - t0 < stop_s:
        p = pkts[k % len(pkts)]
        send(second, tx_second.next(p), "second_sender")
        send(spoof, tx_spoof.next(p, skipped_frames=int(rng.integers(0, 2)) * 3000), "spoofed_ssrc")
        if k % 5 == 0:
            send(junk, rng.bytes(int(rng.integers(0, 1500))), "random")
        if k % 50 == 0:
            send(spoof, build_rtcp_bye(ssrc), "forged_bye")
        if time.monotonic() >= next_flood:
            for i in range(FLOOD_PACKETS):
                pkt = RtpPacketizer(ssrc=int(rng.integers(1, 1 << 32))).next(pkts[i % len(pkts)]) if i % 64 == 0 \
                    else pkt
                send(junk, pkt, "flood")
            for _ in range(BIG_DATAGRAMS):
                send(junk, rng.bytes(BIG_BYTES), "big")
            next_flood += flood_every
        k += 1
        time.sleep(0.02)
    out.put(sent)


def _window(spec: str | None, minutes: float) -> tuple[float, float]:
    if spec in (None, "", "all"):
        return 0.0, minutes * 60
    lo, _, hi = spec.partition("-")
    return float(lo) * 60, (float(hi) if hi else minutes) * 60


def _run_udp(args, cfg, src, seconds):
    """SendSession -> loopback UDP -> RecvSession, optionally with the attacker process."""
    from edge_dred.audio.device import MockDevice
    from edge_dred.live import RecvSession, SendSession, build_receiver, dred_redundancy
    from edge_dred.loss import GilbertElliott
    from edge_dred.transport.impair import Impairment

    rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rsock.bind((LOOPBACK, 0))
    port = rsock.getsockname()[1]
    n_packets = int(seconds * 50) + 64
    loss = GilbertElliott(args.loss, args.burst, seed=args.seed) if args.loss > 0 else None
    imp = Impairment(loss, reorder_pct=args.reorder, duplicate_pct=args.duplicate, seed=args.seed + 1,
                     expected_packets=n_packets)
    cap = MockDevice("capture", source=src, loop=True, pace=True)
    play = MockDevice("playback", pace=True, record_limit_s=1.0)
    send = SendSession(cap, (LOOPBACK, port), cfg, imp, redundancy=dred_redundancy(cfg))
    recv = RecvSession(play, rsock, cfg, receiver=build_receiver(cfg))
    attacker_frames = [0]
    push = recv.core.receiver.push

    def checked_push(pkt):
        if pkt is not None and MARK in pkt:
            attacker_frames[0] += 1
        return push(pkt)

    recv.core.receiver.push = checked_push
    attacker, queue = None, None
    if args.hostile is not None:
        lo, hi = _window(args.hostile, args.minutes)
        queue = mp.get_context("spawn").Queue()
        attacker = mp.get_context("spawn").Process(
            target=_attack, args=(port, send.core.rtp.ssrc, lo + 1.0, hi + 1.0, args.flood_every, args.seed, queue),
            daemon=True)
        attacker.start()  # before our threads: nothing to inherit
    result: dict = {}
    rt = threading.Thread(target=lambda: result.update(recv.run(seconds + 30, idle_timeout=2.0, wait_timeout=30,
                                                                status_interval=args.status_interval,
                                                                status_stream=sys.stdout)))
    rt.start()
    time.sleep(1.0)  # the sender starts 1 s after the receiver (and the attacker's clock)
    srep = send.run(seconds)
    rt.join(seconds + 60)
    rsock.close()
    sent_by_attacker = {}
    if attacker is not None:
        try:
            sent_by_attacker = queue.get(timeout=30)
        except Exception:  # noqa: BLE001  (the verdict reports a missing count)
            sent_by_attacker = {}
        attacker.join(5)
        if attacker.is_alive():
            attacker.terminate()
    result.update({"send": srep, "attacker_frames_played": attacker_frames[0], "attacker_sent": sent_by_attacker,
                   "impairment_stats": srep["impairment_stats"], "frames": srep["frames"]})
    st = srep["impairment_stats"]
    delivered = st["packets"] - st["lost"]
    a = result["accounting"]
    a["sent"] = st["packets"]
    # What the impairment let through either arrived or was dropped by the kernel (receive buffer
    # full: a flood); loopback loses nothing else.  Each packet is counted once, either way.
    a["socket_drops"] = delivered - a["unique_arrivals"]
    a["network_ok"] = a["socket_drops"] >= 0 and (args.hostile is not None or a["socket_drops"] == 0)
    a["ok"] = all(v for k, v in a.items() if k.endswith("_ok"))
    result["overruns"] = srep["overruns"]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--loss", type=float, default=20.0)
    ap.add_argument("--burst", type=float, default=3.0)
    ap.add_argument("--reorder", type=float, default=5.0)
    ap.add_argument("--duplicate", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--transport", choices=("live", "udp"), default="live")
    ap.add_argument("--backend", choices=("alsa", "mock"), default="alsa", help="devices of --transport live")
    ap.add_argument("--hostile", nargs="?", const="all", metavar="FROM-TO",
                    help="attack the receiver (udp only) during this window in minutes (default: all of it)")
    ap.add_argument("--flood-every", type=float, default=60.0, help="seconds between floods (default 60)")
    ap.add_argument("--warmup-s", type=float, default=30.0, help="RSS baseline is taken after this long")
    ap.add_argument("--status-interval", type=float, default=30.0)
    ap.add_argument("--report", help="write the JSON result here")
    args = ap.parse_args(argv)
    if args.hostile is not None and args.transport != "udp":
        ap.error("--hostile needs --transport udp")

    work = tempfile.mkdtemp(prefix="soak_live_")
    seconds = args.minutes * 60
    src = _voice(min(seconds, 60.0) + 1.0, args.seed)
    reps = int(np.ceil((seconds + 2) * 16000 / len(src)))
    if args.transport == "live" and args.backend == "alsa":
        inp, out = os.path.join(work, "mic.raw"), os.path.join(work, "spk.raw")
        with open(inp, "wb") as f:  # the file plugin reads this as the microphone
            for _ in range(reps):
                f.write(src.astype("<i2").tobytes())
        conf = os.path.join(work, "asound.conf")
        with open(conf, "w") as f:
            f.write(ASOUND.format(inp=inp, out=out))
        os.environ["ALSA_CONFIG_PATH"] = conf

    from edge_dred.audio.device import MockDevice, open_capture, open_playback
    from edge_dred.live import LiveSession, build_receiver, dred_redundancy
    from edge_dred.loss import GilbertElliott
    from edge_dred.transport.impair import Impairment

    board, cfg = _default_config(args)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def monitor() -> None:
        t0 = time.monotonic()
        while not stop.wait(5.0):
            samples.append((time.monotonic() - t0, _rss_kb()))

    mon = threading.Thread(target=monitor, daemon=True)
    rss0 = _rss_kb()
    t0 = time.monotonic()
    crashed = ""
    rep: dict = {}
    cap = play = None
    try:
        if args.transport == "udp":
            mon.start()
            rep = _run_udp(args, cfg, src, seconds)
        else:
            if args.backend == "alsa":
                cap = open_capture("alsa:soak_mic", pace=True)
                play = open_playback("alsa:soak_spk", pace=False)
            else:
                cap = MockDevice("capture", source=src, loop=True, pace=True)
                play = MockDevice("playback", record_limit_s=1.0)
            n_packets = int(seconds * 50) + 64
            imp = Impairment(GilbertElliott(args.loss, args.burst, seed=args.seed) if args.loss > 0 else None,
                             reorder_pct=args.reorder, duplicate_pct=args.duplicate, seed=args.seed + 1,
                             expected_packets=n_packets)
            sess = LiveSession(cap, play, cfg, imp, record_received=os.path.join(work, "received.opus"),
                               redundancy=dred_redundancy(cfg), receiver=build_receiver(cfg))
            mon.start()
            rep = sess.run(seconds, args.status_interval, sys.stdout)
    except Exception as e:  # the soak's verdict: report a crash instead of dying
        crashed = f"{type(e).__name__}: {e}"
    finally:
        stop.set()
        if mon.is_alive():
            mon.join()
        for d in (cap, play):
            if d is not None:
                d.close()
    wall = time.monotonic() - t0
    after = [kb for t, kb in samples if t >= args.warmup_s] or [kb for _, kb in samples] or [_rss_kb()]
    rss_growth_mb = (max(after) - after[0]) / 1024.0
    acct = rep.get("accounting", {})
    st = rep.get("impairment_stats", {})
    verdict = {
        "no_crash": not crashed,
        "rss_flat_within_5mb": rss_growth_mb <= 5.0,
        "every_packet_accounted": bool(acct.get("ok")),
        "default_path": bool(cfg.dred and cfg.neural_plc and cfg.governor and cfg.dred_ms),
    }
    hostile = None
    if args.hostile is not None and rep:
        legit_sent = rep["send"]["datagrams_sent"] - st.get("duplicated", 0)
        played_share = rep["jitter"]["played"] / max(1, legit_sent)
        hostile = {"legit_sent": legit_sent, "legit_played": rep["jitter"]["played"], "played_share": played_share,
                   "attacker_frames_played": rep["attacker_frames_played"], "attacker_sent": rep["attacker_sent"],
                   "dropped_foreign": rep["rtp"]["foreign"], "bad_rtp": rep["rtp"]["bad_rtp"],
                   "rtcp": rep["rtp"]["rtcp"], "source": rep["source"], "end": rep["end"]}
        verdict["no_attacker_frame_played"] = rep["attacker_frames_played"] == 0
        verdict["attacker_ran"] = bool(rep["attacker_sent"])
        if args.loss == 0 and args.reorder == 0 and args.duplicate == 0:
            verdict["legit_played_ge_99pct"] = played_share >= 0.99
    result = {
        "minutes": args.minutes, "transport": args.transport, "backend": args.backend, "board": board.name,
        "config": {"dred_ms": cfg.dred_ms, "dred": cfg.dred, "neural_plc": cfg.neural_plc, "governor": cfg.governor},
        "hostile_window": args.hostile, "wall_s": wall, "crash": crashed,
        "rss_kb_start": rss0, "rss_kb_after_warmup": after[0], "rss_kb_max_after_warmup": max(after),
        "rss_growth_mb": rss_growth_mb, "rss_samples": samples, "verdict": verdict, "hostile": hostile,
        "session": rep,
    }
    print()
    print("| check | value | bar | ok |")
    print("|---|---|---|---|")
    print(f"| duration | {wall / 60:.2f} min wall for {args.minutes:g} min audio | real time | "
          f"{abs(wall - seconds) < 0.05 * seconds + 5} |")
    print(f"| configuration | board {board.name}: DRED {cfg.dred_ms} ms, recoverer {cfg.dred}, neural PLC "
          f"{cfg.neural_plc}, governor {cfg.governor} | the default path | {verdict['default_path']} |")
    print(f"| crash | {crashed or 'none'} | none | {verdict['no_crash']} |")
    print(f"| resident memory | {after[0] / 1024:.1f} MB after warm-up, max {max(after) / 1024:.1f} MB "
          f"(+{rss_growth_mb:.2f} MB) | <= 5 MB growth | {verdict['rss_flat_within_5mb']} |")
    if rep:
        j = rep["jitter"]
        print(f"| packets | sent {st['packets']}, lost {st['lost']} ({100 * st['lost'] / max(1, st['packets']):.1f} %), "
              f"dup {st['duplicated']}, reordered {st['reordered']}; played {j['played']}, late {j['late']}, "
              f"missing {j['missing']}, drift drop {j['dropped_drift']}, inserted {j['inserted']}, after end "
              f"{j['after_end']}, socket drops {acct.get('socket_drops', 0)} | all accounted | "
              f"{verdict['every_packet_accounted']} |")
        holes = {k: v for k, v in rep["decisions"].items() if k != "regular"}
        print(f"| holes recovered by | {', '.join(f'{k} {v}' for k, v in sorted(holes.items()))} | - | - |")
        print(f"| jitter buffer | {rep['jitter_delay_ms']:.0f} ms median wait | - | - |")
        print(f"| x-runs | overruns {rep['overruns']}, underruns {rep['underruns']} | counted | - |")
        print(f"| CPU load (audio thread) | mean {100 * rep['cpu_load_mean']:.1f} %, peak "
              f"{100 * rep['cpu_load_peak']:.0f} % | < 100 % | {rep['cpu_load_mean'] < 1} |")
        g = rep.get("governor") or {}
        if g:
            print(f"| governor | slots by level {g['slots_by_level']}, {g['downgrades']} down / {g['upgrades']} up "
                  f"| - | - |")
    if hostile:
        a = hostile["attacker_sent"]
        print(f"| attacker sent | {', '.join(f'{k} {v}' for k, v in a.items()) or 'nothing reported'} | - | "
              f"{verdict['attacker_ran']} |")
        print(f"| attacker frames played | {hostile['attacker_frames_played']} (dropped as other senders "
              f"{hostile['dropped_foreign']}, bad RTP {hostile['bad_rtp']}, RTCP {hostile['rtcp']}) | 0 | "
              f"{verdict['no_attacker_frame_played']} |")
        print(f"| legitimate packets played | {hostile['legit_played']} of {hostile['legit_sent']} "
              f"({100 * hostile['played_share']:.2f} %); locked {hostile['source']['locked']}, switches "
              f"{hostile['source']['switches']}, end {hostile['end']} | >= 99 % (clean network) | "
              f"{verdict.get('legit_played_ge_99pct', '-')} |")
    if args.report:
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
