"""Fuzz RTP and RTCP BYE parsing (edge_dred.transport.rtp)."""
import _harness

with _harness.instrumented():
    from edge_dred.transport.rtp import MAX_DATAGRAM_BYTES, RtpError, is_rtcp, parse_rtcp_bye, parse_rtp


def test_one_input(data: bytes) -> None:
    try:
        p = parse_rtp(data)
    except RtpError:
        pass
    else:
        assert len(data) <= MAX_DATAGRAM_BYTES and 0 < len(p.payload) <= len(data) - 12
        assert 0 <= p.payload_type < 128 and not 72 <= p.payload_type <= 76 and len(p.csrcs) <= 15
    if is_rtcp(data):
        try:
            byes = parse_rtcp_bye(data)
        except RtpError:
            return
        assert len(byes) <= 16 * 31 and all(0 <= s <= 0xFFFFFFFF for s in byes)


if __name__ == "__main__":
    _harness.main(test_one_input)
