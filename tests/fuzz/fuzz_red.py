"""atheris harness for the RED (RFC 2198) parser (not collected by pytest).

Every input must be either rejected with :class:`RedError` or parsed into
blocks that rebuild to exactly the input bytes; :func:`unpack_red` must keep
only 20 ms Opus copies at whole frames back.  Anything else (another
exception, a mismatch) is a finding.

Usage (libFuzzer flags)::

    .venv/bin/python tests/fuzz/fuzz_red.py -runs=10000000          # long run
    .venv/bin/python tests/fuzz/fuzz_red.py -max_total_time=3       # smoke test
"""
from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

with atheris.instrument_imports(include=["edge_dred"]):
    from edge_dred.codec.framing import parse_packet
    from edge_dred.transport.red import (MAX_RED_BLOCKS, RED_MAX_BLOCK_BYTES, RED_MAX_TIMESTAMP_OFFSET,
                                         RedError, RedOpusPacket, build_red, parse_red, unpack_red)

_OPUS_PT = 111


def test_one(data: bytes) -> None:
    try:
        red = parse_red(data)
    except RedError:
        red = None
    if red is not None:
        assert len(red.primary) > 0 and len(red.redundant) <= MAX_RED_BLOCKS
        for b in red.redundant:
            assert 0 <= b.timestamp_offset <= RED_MAX_TIMESTAMP_OFFSET and len(b.data) <= RED_MAX_BLOCK_BYTES
        # The format has one encoding per payload: parse then build gives the input back.
        assert build_red(red.payload_type, red.primary, red.redundant) == data, "round trip differs"
    try:
        pkt = unpack_red(data, _OPUS_PT)
    except RedError:
        assert red is None or red.payload_type != _OPUS_PT, "unpack_red rejected a parsed payload"
        return
    assert red is not None and isinstance(pkt, RedOpusPacket) and bytes(pkt) == red.primary
    for back, copy in pkt.redundant.items():
        assert 1 <= back <= RED_MAX_TIMESTAMP_OFFSET // 960
        assert parse_packet(copy).samples(48000) == 960
    assert len(pkt.redundant) + pkt.ignored == len(red.redundant)


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
