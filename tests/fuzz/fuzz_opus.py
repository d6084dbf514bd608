"""Fuzz Opus framing (RFC 6716 section 3) and padding extensions (edge_dred.codec.framing)."""
import _harness

with _harness.instrumented():
    from edge_dred.codec.framing import (FramingError, attach_dred, extract_dred, packet_extensions,
                                         parse_packet)


def test_one_input(data: bytes) -> None:
    try:
        p = parse_packet(data)
    except FramingError:
        return
    assert 0 < p.samples(48000) <= 5760 and len(p.frames) <= 48
    assert sum(len(f) for f in p.frames) <= len(data)
    try:
        exts = packet_extensions(data)
        payload = extract_dred(data)
    except FramingError:
        return
    assert all(0 <= e.frame < len(p.frames) for e in exts)
    if payload is not None:
        assert len(payload) < len(data)
        try:
            again = attach_dred(bytes(data), payload)
        except FramingError:
            return
        assert extract_dred(again) == payload


if __name__ == "__main__":
    _harness.main(test_one_input)
