"""Fuzz the SDP reader and the SDES key parser (edge_dred.transport.sdp, .srtp)."""
import _harness

with _harness.instrumented():
    from edge_dred.transport.sdp import SdpError, parse_sdp
    from edge_dred.transport.srtp import SrtpError, parse_crypto


def test_one_input(data: bytes) -> None:
    try:
        s = parse_sdp(data)
    except SdpError:
        return
    assert 0 < s.port < 65536 and 0 <= s.payload_type < 128 and len(s.crypto) <= 8
    for c in s.crypto:
        try:
            parse_crypto(c)
        except SrtpError:
            pass


if __name__ == "__main__":
    _harness.main(test_one_input)
