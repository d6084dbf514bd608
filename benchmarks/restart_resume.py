"""How fast ``recv`` plays a sender that restarted: same SSRC, timestamp jump, over loopback UDP.

A sender streams for a few seconds, stops without a BYE (a crash), and
restarts 0.5 s later with the same SSRC and its timestamp jumped backwards
(or forwards) -- from the same address (``--same-port``, default) or a new
source port.  Measured, in audio: from the restarted stream's first packet to
the first of its packets the receiver plays.  Bar: 100 ms for the same
address.  (A new address is a new source: the lock waits for the old one to
be silent ``SWITCH_SILENCE_S`` first.)

    .venv/bin/python benchmarks/restart_resume.py --trials 5
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_dred.audio.device import MockDevice  # noqa: E402
from edge_dred.codec.framing import with_padding  # noqa: E402
from edge_dred.live import LiveConfig, RecvSession  # noqa: E402
from edge_dred.sender import Sender  # noqa: E402
from edge_dred.transport.rtp import RtpPacketizer  # noqa: E402

MARK = b"RESTARTED"


def _stream(sock, dest, packets, rtp, mark: bool, first_sent: list) -> None:
    t0 = time.monotonic()
    for i, p in enumerate(packets):
        time.sleep(max(0.0, t0 + 0.02 * i - time.monotonic()))
        if mark and not first_sent:
            first_sent.append(time.monotonic())
        sock.sendto(rtp.next(with_padding(p, MARK) if mark else p), dest)


def trial(jump_s: float, same_port: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    enc = Sender(24000).encoder
    pcm = (np.sin(np.arange(320 * 200) * 0.05) * 8000).astype(np.int16)
    pkts = [enc.encode(pcm[i * 320:(i + 1) * 320]) for i in range(200)]
    rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rsock.bind(("127.0.0.1", 0))
    dest = rsock.getsockname()
    recv = RecvSession(MockDevice("playback", pace=True, record_limit_s=1.0), rsock, LiveConfig())
    played_new: list[float] = []
    push = recv.core.receiver.push

    def watch(pkt):
        if pkt is not None and MARK in pkt and not played_new:
            played_new.append(time.monotonic())
        return push(pkt)

    recv.core.receiver.push = watch
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(recv.run(30, idle_timeout=3.0, wait_timeout=5)))
    t.start()
    ssrc, ts0 = int(rng.integers(1, 1 << 32)), int(rng.integers(1 << 30, 1 << 31))
    s1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _stream(s1, dest, pkts[:100], RtpPacketizer(ssrc=ssrc, first_timestamp=ts0), False, [])
    time.sleep(0.5)  # the crash and the restart
    s2 = s1 if same_port else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ts1 = (ts0 + int(jump_s * 48000)) & 0xFFFFFFFF
    first_sent: list[float] = []
    _stream(s2, dest, pkts[100:], RtpPacketizer(ssrc=ssrc, first_timestamp=ts1), True, first_sent)
    t.join(40)
    rsock.close()
    resume_ms = (played_new[0] - first_sent[0]) * 1000 if played_new else float("inf")
    # Wall time from the first new packet to its first played frame includes the jitter buffer's
    # target delay (10 ms) and the pop period; in audio, what matters is the new frames not played.
    return {"resume_ms": resume_ms, "jitter": result.get("jitter", {}), "source": result.get("source", {})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--jump-s", type=float, default=-3600.0, help="timestamp jump of the restart (s; default -1 h)")
    ap.add_argument("--new-port", action="store_true", help="restart from another source port")
    args = ap.parse_args(argv)
    print("| trial | jump | source | resumed after (ms of the new stream) | late resyncs | resets | switches |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for k in range(args.trials):
        r = trial(args.jump_s, not args.new_port, k)
        worst = max(worst, r["resume_ms"])
        j = r["jitter"]
        print(f"| {k} | {args.jump_s:g} s | {'new port' if args.new_port else 'same address'} | "
              f"{r['resume_ms']:.0f} | {j.get('late_resyncs')} | {j.get('resets')} | "
              f"{r['source'].get('switches')} |")
    bar = 100.0 if not args.new_port else 1000.0 * 1.2 + 100.0
    print(f"\nworst {worst:.0f} ms (bar {bar:.0f} ms): {'ok' if worst <= bar else 'NOT MET'}")
    return 0 if worst <= bar else 1


if __name__ == "__main__":
    sys.exit(main())
