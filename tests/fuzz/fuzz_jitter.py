"""Fuzz the jitter buffer and the source lock with packet/pop/end sequences.

The input is a compact program, one byte per operation (three for a jump),
at most `MAX_OPS` steps, read with plain byte indexing: an execution spends
its time in the code under test, not in decoding its input.  Most packets
come from the locked sender (otherwise the lock drops them and the buffer
is never reached); a restarted sender, an SSRC spoofer and a stranger on the
sender's address send the rest.

Checks after every step: bounded buffering; the packet balance (every
accepted packet is played, dropped or still buffered); monotone playout
(between restarts packets come out in timestamp order, each at most once,
and only ones accepted since the last restart); no exception at all (every
argument is valid, so none is documented).
"""
import _harness

with _harness.instrumented():
    from edge_dred.transport.jitter import JitterBuffer, JitterConfig, PutResult, SlotKind
    from edge_dred.transport.source import SourceLock, SourceVerdict

MAX_OPS = 96
# 0: the sender; 1: the sender restarted (new port, new SSRC); 2: a spoofer of its SSRC elsewhere;
# 3: a stranger's SSRC from the sender's own address.
SOURCES = ((("127.0.0.1", 40000), 7), (("127.0.0.1", 40002), 9), (("10.0.0.9", 40000), 7),
           (("127.0.0.1", 40000), 5))
GAPS_S = (0.02, 0.0, 0.045, 0.013)  # arrival gap before a packet (paced, burst, late, early)
TS_MASK = 0xFFFFFFFF
FRAME_TS = 960
_FOREIGN = SourceVerdict.FOREIGN
_PACKET = SlotKind.PACKET
_TAKEN = (PutResult.ACCEPTED, PutResult.RESET)


class _Run:
    """The buffer and lock under test plus what the harness knows about the packets it sent."""

    def __init__(self, resync_after: int, ts: int) -> None:
        self.jb = JitterBuffer(JitterConfig(resync_after=resync_after))
        self.lock = SourceLock()
        self.t = 0.0
        self.ts = ts
        self.next_id = 0
        self.live: dict[int, tuple[int, int]] = {}  # packet id -> (timestamp, restart epoch)
        self.last_ts: int | None = None
        self.epoch = 0

    def put(self, src: int, gap_s: float) -> None:
        self.t += gap_s
        addr, ssrc = SOURCES[src]
        if self.lock.check(addr, ssrc, self.t) is _FOREIGN:
            return
        jb = self.jb
        pid = self.next_id
        self.next_id += 1
        res = jb.put(self.ts, pid.to_bytes(4, "big"), self.t, ssrc)
        if jb.stats["resets"] != self.epoch:  # a restart: playout order starts over
            self.epoch = jb.stats["resets"]
            self.last_ts = None
        if res in _TAKEN:
            self.live[pid] = (self.ts, self.epoch)

    def played(self, pkt: bytes) -> None:
        ts, epoch = self.live.pop(int.from_bytes(pkt, "big"))  # KeyError: never accepted, or played twice
        assert epoch == self.epoch, (epoch, self.epoch)
        if self.last_ts is not None:
            assert 0 < (ts - self.last_ts) & TS_MASK < 1 << 31, (self.last_ts, ts)
        self.last_ts = ts

    def pop(self) -> None:
        self.t += 0.02
        pkt, kind = self.jb.pop(self.t)
        assert (pkt is None) != (kind is _PACKET), (pkt, kind)
        if pkt is not None:
            self.played(pkt)

    def check(self) -> None:
        jb = self.jb
        s = jb.stats
        assert s["accepted"] == s["played"] + s["dropped_drift"] + s["dropped_reset"] + jb.buffered, s
        assert jb.buffered <= jb.config.capacity + 1 and s["missing"] >= 0 and s["after_end"] >= 0, s
        assert s["received"] == s["accepted"] + s["duplicates"] + s["late"] + s["too_early"] + s["after_end_packets"]


def test_one_input(data: bytes) -> None:
    """Byte 0: resync_after; 1-4: first timestamp; then one operation per byte:

    ``0xxxxxxx`` packet: ``step = (b & 7) - 2`` slots, source ``(b >> 3) & 3`` (0, 1 the
    sender), arrival gap ``GAPS_S[(b >> 5) & 3]``; ``10sxnnnn`` ``n + 1`` pops, after a 0.2 s
    stall if ``s``; ``110cmmmm j j`` a jump of the signed 16-bit ``j`` slots shifted by ``m``, plus a
    misalignment of ``c`` x 240 ticks, from the sender; ``1110nnnn`` ``n + 2`` paced
    packet+pop rounds from the sender; ``1111nnnn`` silence of ``n`` x 0.25 s (n < 14), end of
    stream without (14) or with (15) the last timestamp.
    """
    if len(data) < 5:
        return
    run = _Run(1 + (data[0] & 7), int.from_bytes(data[1:5], "big"))
    ops, i, n = 0, 5, len(data)
    while i < n and ops < MAX_OPS:
        b = data[i]
        i += 1
        ops += 1
        if b < 0x80:
            run.ts = (run.ts + ((b & 7) - 2) * FRAME_TS) & TS_MASK
            src = (b >> 3) & 3
            run.put(0 if src < 2 else src - 1, GAPS_S[(b >> 5) & 3])
        elif b < 0xC0:
            if b & 0x20:
                run.t += 0.2
            for _ in range((b & 15) + 1):
                run.pop()
                run.check()
            ops += b & 15
        elif b < 0xE0:
            if i + 2 > n:
                break
            j = int.from_bytes(data[i:i + 2], "big", signed=True)
            i += 2
            run.ts = (run.ts + (j << (b & 15)) * FRAME_TS + ((b >> 4) & 1) * 240) & TS_MASK
            run.put(0, 0.02)
        elif b < 0xF0:
            for _ in range((b & 15) + 2):
                run.ts = (run.ts + FRAME_TS) & TS_MASK
                run.put(0, 0.02)
                run.pop()
                run.check()
            ops += (b & 15) + 1
        elif b < 0xFE:
            run.t += (b & 15) * 0.25
        else:
            run.jb.end_stream(run.ts if b == 0xFF else None)
        run.check()
    for pkt in run.jb.drain():
        if pkt is not None:
            run.played(pkt)
    run.check()


if __name__ == "__main__":
    _harness.main(test_one_input)
