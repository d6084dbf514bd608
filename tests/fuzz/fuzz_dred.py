"""Fuzz the DRED payload parser (full and partial) and range decoder, then the decoder network on what parses.

Uses the shipped entropy tables and decoder (edge_dred.dred), so what a
hostile packet can reach in a receiver is what is fuzzed.  Features must
come out finite and bounded.
"""
import _harness

with _harness.instrumented():
    import numpy as np
    from edge_dred.dred.decoder import DredDecoder, shipped_decoder_weights
    from edge_dred.dred.payload import MAX_CHUNKS, DredPayloadError, parse_payload

W = shipped_decoder_weights()
DEC = DredDecoder(W)


def test_one_input(data: bytes) -> None:
    # A partial parse (what the receiver does for a hole) must accept and reject exactly as the
    # full parse, and keep exactly the newest chunks of it.
    keep = 1 + (data[0] % MAX_CHUNKS if data else 0)
    try:
        part = parse_payload(data, W.tables, chunks=keep)
    except DredPayloadError as e:
        part = str(e)
    try:
        p = parse_payload(data, W.tables)
    except DredPayloadError as e:
        assert part == str(e)
        return
    assert not isinstance(part, str), part
    assert part.n_chunks == p.n_chunks and np.array_equal(part.latents_k, p.latents_k[:keep])
    assert 1 <= p.n_chunks <= MAX_CHUNKS
    assert all(np.abs(v).max(initial=0) <= 1023 for v in [p.state_k, *p.latents_k])
    if data and data[-1] & 7 == 0:  # the network on a share of the accepted payloads (it is the slow part)
        bd = DEC.start_payload(p)
        f = bd.frames(min(4, bd.n_frames_available))
        assert np.all(np.isfinite(f)) and np.abs(f).max(initial=0) < 1e4


if __name__ == "__main__":
    _harness.main(test_one_input)
