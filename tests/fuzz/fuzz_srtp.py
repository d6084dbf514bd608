"""Fuzz the SRTP/SRTCP unprotect path (libsrtp2 through pylibsrtp, edge_dred.transport.srtp).

Half the inputs are taken as raw datagrams; the other half choose a suite and
mutate a genuinely protected packet, so the authentication and replay checks
are reached with near-valid data.
"""
import _harness

with _harness.instrumented():
    from edge_dred.transport.rtp import build_rtp
    from edge_dred.transport.srtp import SUITES, SrtpKey, SrtpReceiver, SrtpReject, SrtpSender

KEYS = {s: SrtpKey(s, bytes(range(n))) for s, n in SUITES.items()}
TX = {s: SrtpSender(k) for s, k in KEYS.items()}
RX = {s: SrtpReceiver(k) for s, k in KEYS.items()}
_seq = [0]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    suite = list(SUITES)[data[0] & 1]
    rx = RX[suite]
    if data[0] & 2:  # mutate a fresh protected packet: flip the bytes the input names
        _seq[0] = (_seq[0] + 1) & 0xFFFF
        pkt = bytearray(TX[suite].protect(build_rtp(b"\x78" + data[1:200] if len(data) > 1 else b"\x78\x00",
                                                    _seq[0], _seq[0] * 960, 0x1234)))
        for i in range(1, min(len(data), 9), 2):
            if i + 1 < len(data):
                pkt[data[i] % len(pkt)] ^= data[i + 1]
        data = bytes(pkt)
    for fn in (rx.unprotect, rx.unprotect_rtcp):
        try:
            out = fn(data)
        except SrtpReject as e:
            assert e.reason in ("auth", "replay", "other")
        else:
            assert len(out) < len(data)  # the tag (and SRTCP index) came off


if __name__ == "__main__":
    _harness.main(test_one_input)
