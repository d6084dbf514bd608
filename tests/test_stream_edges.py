"""The receiver against strangers and flaky senders: source locking, resync, stream edges.

Each test here reproduces a finding of the hostile-traffic review: SSRC
injection, a stream stuck "late" after a sender restart, start-up lateness,
and the end of a stream counted as loss.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from edge_dred.audio.device import MockDevice, Pacer
from edge_dred.live import LiveConfig, RecvCore, RecvSession, SendSession
from edge_dred.sender import Sender
from edge_dred.transport.jitter import JitterBuffer, JitterConfig, PutResult, SlotKind
from edge_dred.transport.rtp import RtpPacketizer, build_rtcp_bye, parse_rtcp_bye
from edge_dred.transport.source import SWITCH_RUN, SWITCH_SILENCE_S, SourceLock, SourceVerdict

from conftest import voiced

LEGIT, ATTACKER = ("127.0.0.1", 40000), ("127.0.0.1", 40001)


def _opus_packets(n: int, f0: float, seed: int = 0) -> list[bytes]:
    enc = Sender(24000).encoder
    pcm = voiced(n * 0.02 + 0.1, f0=f0, seed=seed)
    return [enc.encode(pcm[i * 320:(i + 1) * 320]) for i in range(n)]


def _playing_core(config: LiveConfig | None = None) -> tuple[RecvCore, list]:
    """A RecvCore whose receiver records every packet it is fed."""
    core = RecvCore(config or LiveConfig(lbrr=False))
    fed: list = []
    push = core.receiver.push
    core.receiver.push = lambda pkt: (fed.append(pkt), push(pkt))[1]
    return core, fed


def test_ssrc_injection_from_another_sender_is_dropped_not_played():
    legit = _opus_packets(150, 140.0)
    evil = _opus_packets(150, 400.0, seed=1)
    tx_l = RtpPacketizer(ssrc=0x1111, first_sequence=100, first_timestamp=5000)
    tx_e = RtpPacketizer(ssrc=0x2222, first_sequence=7, first_timestamp=999_000)
    spoof = RtpPacketizer(ssrc=0x1111, first_sequence=9000, first_timestamp=5000 + 960 * 3000)  # far ahead
    core, fed = _playing_core()
    for i in range(150):
        t = i * 0.02
        core.on_datagram(tx_l.next(legit[i]), t, LEGIT)
        core.on_datagram(tx_e.next(evil[i]), t + 0.001, ATTACKER)   # a second sender, packet for packet
        core.on_datagram(spoof.next(evil[i]), t + 0.002, ATTACKER)  # the legit SSRC, timestamps far ahead
        core.next_frame(t + 0.01)
    rep = core.report()
    played = [p for p in fed if p is not None]
    assert played and set(played) <= set(legit) and not set(played) & set(evil)
    assert rep["jitter"]["resets"] == 0 and rep["rtp"]["foreign"] == 300
    assert rep["source"]["locked"].startswith("127.0.0.1:40000") and rep["accounting"]["datagrams_balance_ok"]
    assert rep["jitter"]["played"] >= 145


def test_one_stray_packet_per_second_no_longer_resets_the_stream():
    legit = _opus_packets(200, 140.0)
    tx = RtpPacketizer(ssrc=1, first_timestamp=0)
    core, fed = _playing_core()
    for i in range(200):
        core.on_datagram(tx.next(legit[i]), i * 0.02, LEGIT)
        if i % 50 == 25:  # the same address even: another SSRC is another source
            core.on_datagram(RtpPacketizer(ssrc=1000 + i).next(legit[0]), i * 0.02 + 0.005, LEGIT)
        core.next_frame(i * 0.02 + 0.01)
    assert core.jb.stats["resets"] == 0 and core.counts["foreign"] == 4


def test_source_lock_switches_only_after_a_run_while_the_old_source_is_silent():
    lock = SourceLock()
    assert lock.check(LEGIT, 1, 0.0) is SourceVerdict.FIRST
    t = 0.0
    for i in range(50):  # interleaved with the locked source: never enough
        t += 0.02
        assert lock.check(LEGIT, 1, t) is SourceVerdict.LOCKED
        assert lock.check(ATTACKER, 2, t) is SourceVerdict.FOREIGN
    assert lock.check(LEGIT, 1, t) is SourceVerdict.LOCKED
    t += SWITCH_SILENCE_S  # the locked sender went away (restarted on a new port)
    verdicts = [lock.check(ATTACKER, 2, t + 0.02 * k) for k in range(SWITCH_RUN)]
    assert verdicts[-1] is SourceVerdict.SWITCHED and set(verdicts[:-1]) == {SourceVerdict.FOREIGN}
    assert lock.check(LEGIT, 1, t + 1) is SourceVerdict.FOREIGN and lock.stats["switches"] == 1
    pinned = SourceLock(peer=("10.0.0.1", 0))
    assert pinned.check(LEGIT, 1, 0.0) is SourceVerdict.FOREIGN and not pinned.address_ok(LEGIT)
    assert pinned.check(("10.0.0.1", 5), 1, 0.0) is SourceVerdict.FIRST
    assert SourceLock(ssrc=7).check(LEGIT, 8, 0.0) is SourceVerdict.FOREIGN


def _run_jb(jb: JitterBuffer, schedule: list[tuple[int, float]], pops: int, t0: float = 0.0) -> list[SlotKind]:
    """Put (timestamp, arrival) packets and pop on a 20 ms grid; return the pop kinds."""
    kinds, k = [], 0
    for i in range(pops):
        now = t0 + i * 0.02
        while k < len(schedule) and schedule[k][1] <= now + 1e-9:
            jb.put(schedule[k][0], b"\x78\x00", schedule[k][1], 42)
            k += 1
        kinds.append(jb.pop(now + 0.01)[1])
    return kinds


def test_same_ssrc_restart_with_a_backward_timestamp_resumes_within_100_ms():
    jb = JitterBuffer(JitterConfig())
    before = [(10_000_000 + 960 * i, i * 0.02) for i in range(100)]
    # The sender restarts 2 s later (same SSRC) with its timestamp back at 0: 3.5 hours "in the past".
    after = [(960 * i, 2.0 + i * 0.02) for i in range(200)]
    kinds = _run_jb(jb, before + after, 300)
    restart_pop = 100
    resumed = next(i for i in range(restart_pop, 300) if kinds[i] is SlotKind.PACKET)
    assert (resumed - restart_pop) * 20 <= 100, kinds[restart_pop:resumed + 1]
    assert all(k is SlotKind.PACKET for k in kinds[resumed:299])
    assert jb.stats["late_resyncs"] == 1


def test_far_ahead_run_then_genuine_packets_does_not_stay_stuck_late():
    jb = JitterBuffer(JitterConfig())
    sched = [(960 * i, i * 0.02) for i in range(50)]
    sched += [(960 * (10_000 + i), 1.0 + i * 0.02) for i in range(8)]  # a far-ahead run: resync onto it
    sched += [(960 * (58 + i), 1.16 + i * 0.02) for i in range(150)]   # the genuine stream goes on
    kinds = _run_jb(jb, sched, 210)
    assert sum(k is SlotKind.PACKET for k in kinds[70:]) >= 130  # today: 0 of them (stuck "late")


def test_a_burst_of_late_packets_after_a_stall_is_not_a_restart():
    jb = JitterBuffer(JitterConfig())
    sched = [(960 * i, i * 0.02) for i in range(50)]
    sched += [(960 * (50 + i), 1.2) for i in range(10)]  # 200 ms stall, then all at once
    sched += [(960 * (60 + i), 1.2 + i * 0.02) for i in range(40)]
    _run_jb(jb, sched, 100)
    assert jb.stats["late_resyncs"] == 0 and jb.stats["resets"] == 0


def test_pacer_first_period_is_a_full_period():
    p = Pacer(0.02)
    t0 = time.monotonic()
    p.wait()
    p.wait()
    assert time.monotonic() - t0 >= 0.038  # two waits, two periods (the first used to return at once)


def test_end_of_stream_is_not_counted_as_loss():
    legit = _opus_packets(60, 140.0)
    tx = RtpPacketizer(ssrc=3, first_timestamp=0)
    core, _ = _playing_core(LiveConfig(lbrr=False, neural_plc=False, dred=False))
    frames = []
    for i in range(100):  # the sender stops after 60 packets, without a BYE; 40 more slots pass
        if i < 60:
            core.on_datagram(tx.next(legit[i]), i * 0.02, LEGIT)
        frames.append(core.next_frame(i * 0.02 + 0.01))
    core.finish()
    rep = core.report()
    assert rep["jitter"]["missing"] == 0 and rep["jitter"]["after_end"] > 30
    assert set(rep["decisions"]) == {"regular"} or all(v == 0 for k, v in rep["decisions"].items() if k != "regular")
    assert rep["end"] == "silence" and all(v for k, v in rep["accounting"].items() if k.endswith("_ok"))


def test_rtcp_bye_from_the_locked_source_ends_the_stream():
    assert parse_rtcp_bye(build_rtcp_bye(0xABCDEF01)) == [0xABCDEF01]
    legit = _opus_packets(20, 140.0)
    tx = RtpPacketizer(ssrc=9, first_timestamp=0)
    core, _ = _playing_core()
    for i in range(20):
        core.on_datagram(tx.next(legit[i]), i * 0.02, LEGIT)
        core.next_frame(i * 0.02 + 0.01)
    core.on_datagram(build_rtcp_bye(9), 0.40, ATTACKER)  # a stranger's BYE: ignored
    assert not core.jb.ended
    core.on_datagram(build_rtcp_bye(9), 0.40, LEGIT)
    assert core.jb.ended and core.ended_by == "bye"
    while not core.drained:
        core.next_frame(0.5)
    assert core.jb.pop(0.6)[1] is SlotKind.IDLE and core.jb.put(960 * 50, b"\x78\x00", 0.6, 9) is PutResult.ENDED


@pytest.mark.slow  # paced: real time
def test_clean_loopback_send_recv_has_no_late_missing_or_concealed_slots():
    rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rsock.bind(("127.0.0.1", 0))
    cfg = LiveConfig()
    recv = RecvSession(MockDevice("playback", pace=True), rsock, cfg)
    recv_pops: list[float] = []
    next_frame = recv.core.next_frame
    recv.core.next_frame = lambda now: (recv_pops.append(now), next_frame(now))[1]
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(recv.run(10.0, idle_timeout=1.0, wait_timeout=5)))
    t.start()
    srep = SendSession(MockDevice("capture", source=voiced(3.0), loop=False, pace=True),
                       rsock.getsockname(), cfg).run(3.0)
    t.join(15)
    rsock.close()
    j = result["jitter"]
    assert srep["datagrams_sent"] == 150 and j["after_end"] == 0 and result["end"] == "bye"
    # Start-up used to cost ~20 late packets and the end ~50 concealed slots.  On a loaded CI
    # machine a scheduling hiccup or two may still make a packet late (its slot then missing).
    assert j["late"] <= 2 and j["missing"] <= 2 and j["inserted"] <= 2 and j["played"] >= 147, j
    assert sum(v for k, v in result["decisions"].items() if k != "regular") <= 4
    assert all(v for k, v in result["accounting"].items() if k.endswith("_ok"))
    pops = recv_pops
    assert all(t >= pops[0] + 0.02 * k - 0.002 for k, t in enumerate(pops)), "a pop came before its period"


def test_packets_before_playout_starts_stay_within_capacity():
    jb = JitterBuffer(JitterConfig(capacity=16))
    for k in range(200):  # each packet 15 slots below the previous one: within reach of the current minimum
        jb.put((10_000_000 - 960 * 15 * k) & 0xFFFFFFFF, b"\x78\x00", 0.0, 1)
    assert jb.buffered <= 16


def test_recv_binds_loopback_by_default_and_honours_the_sdp(tmp_path):
    from edge_dred.cli.live import _recv_stream
    from edge_dred.cli.main import build_parser
    from edge_dred.transport.sdp import make_sdp
    from edge_dred.transport.srtp import SrtpKey

    parse = build_parser().parse_args
    listen, peer, ssrc, pt, key = _recv_stream(parse(["recv"]))
    assert listen == ("127.0.0.1", 5004) and peer is None and ssrc is None and key is None
    k = SrtpKey.generate()
    (tmp_path / "s.sdp").write_text(make_sdp("10.1.2.3", 6000, 101, ssrc=0xBEEF,
                                             crypto=k.sdp_attribute()[len("crypto:"):]))
    listen, peer, ssrc, pt, key = _recv_stream(parse(["recv", "--sdp", str(tmp_path / "s.sdp"),
                                                      "--peer", "10.1.2.4"]))
    assert listen == ("10.1.2.3", 6000) and peer == ("10.1.2.4", 0) and ssrc == 0xBEEF and pt == 101 and key == k


def test_bye_with_a_sender_report_keeps_lost_last_packets_as_losses():
    legit = _opus_packets(30, 140.0)
    tx = RtpPacketizer(ssrc=4, first_timestamp=0)
    core, _ = _playing_core()
    for i in range(30):  # the last 3 packets are lost in the network
        d = tx.next(legit[i])
        if i < 27:
            core.on_datagram(d, i * 0.02, LEGIT)
        core.next_frame(i * 0.02 + 0.01)
    core.on_datagram(build_rtcp_bye(4, last_timestamp=960 * 29, packets=30), 0.59, LEGIT)
    t = 0.61
    while not core.drained:
        core.next_frame(t)
        t += 0.02
    core.finish()
    j = core.report()["jitter"]
    assert j["missing"] == 3 and j["after_end"] == 0 and core.ended_by == "bye"
    assert core.jb.pop(t)[1] is SlotKind.IDLE
