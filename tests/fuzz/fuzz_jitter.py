"""Fuzz the jitter buffer and the source lock with arbitrary packet/pop sequences.

Checks after every step: bounded buffering, and every accepted packet is
played, dropped or still buffered.
"""
import _harness

with _harness.instrumented():
    import atheris  # noqa: F401  (FuzzedDataProvider)
    from edge_dred.transport.jitter import JitterBuffer, JitterConfig
    from edge_dred.transport.source import SourceLock


def _balance(jb: JitterBuffer) -> None:
    s = jb.stats
    assert s["accepted"] == s["played"] + s["dropped_drift"] + s["dropped_reset"] + jb.buffered, s
    assert jb.buffered <= jb.config.capacity + 1 and s["missing"] >= 0 and s["after_end"] >= 0, s
    assert s["received"] == s["accepted"] + s["duplicates"] + s["late"] + s["too_early"] + s["after_end_packets"]


def test_one_input(data: bytes) -> None:
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    jb = JitterBuffer(JitterConfig(resync_after=fdp.ConsumeIntInRange(1, 8)))
    lock = SourceLock()
    t, ts = 0.0, fdp.ConsumeIntInRange(0, 0xFFFFFFFF)
    for _ in range(fdp.ConsumeIntInRange(0, 120)):
        op = fdp.ConsumeIntInRange(0, 9)
        if op <= 5:  # a packet: mostly in order, sometimes a jump anywhere
            step = fdp.ConsumeIntInRange(-3, 5) if op < 5 else fdp.ConsumeIntInRange(-(1 << 31), 1 << 31)
            ts = (ts + step * 960 + (fdp.ConsumeIntInRange(0, 959) if op == 4 else 0)) & 0xFFFFFFFF
            t += fdp.ConsumeIntInRange(0, 60) / 1000.0
            addr = ("127.0.0.1", 40000 + fdp.ConsumeIntInRange(0, 2))
            ssrc = fdp.ConsumeIntInRange(1, 3)
            if lock.check(addr, ssrc, t).value != "foreign":
                jb.put(ts, b"\x78", t, ssrc)
        elif op <= 8:
            t += 0.02
            pkt, kind = jb.pop(t)
            assert (pkt is None) == (kind.value != "packet")
        else:
            jb.end_stream()
        _balance(jb)
    jb.drain()
    _balance(jb)


if __name__ == "__main__":
    _harness.main(test_one_input)
