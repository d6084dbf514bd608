"""Fuzz the receiver's Opus decode path through the compiled binding (edge_dred.codec._opus).

What `recv` does with a packet that passed the framing checks: decode it, read
its LBRR flag and decode its in-band FEC for a hole before it, conceal with
libopus PLC.  A packet the framing accepts must decode to exactly its own
duration, and the 20 ms ones (the only ones a receiver queues) give one
20 ms slot on every path; one it refuses may still reach the binding through
the public API and must then fail with a `ValueError` (`OpusError` is one)
or decode to at most 120 ms.  libopus itself is the
system library (not instrumented); the binding around it is, with
``tests/fuzz/build_native.sh``.
"""
import _harness

with _harness.instrumented():
    import numpy as np
    from edge_dred.codec.framing import FramingError, parse_packet
    from edge_dred.codec.opus import OpusDecoder, packet_has_lbrr
    from edge_dred.constants import FRAME_SAMPLES, SAMPLE_RATE

DEC = OpusDecoder(SAMPLE_RATE, 1)
MAX_SAMPLES = SAMPLE_RATE * 120 // 1000


def _pcm(out: np.ndarray, n: int) -> None:
    assert out.dtype == np.int16 and out.shape == (n,), (out.dtype, out.shape, n)


def test_one_input(data: bytes) -> None:
    DEC.reset()  # one state for all inputs, reset so that each input decodes alone
    try:
        p = parse_packet(data)
    except FramingError:
        try:
            out = DEC.decode(data)
        except ValueError:  # OpusError, or the wrapper's own check (empty packet)
            return
        assert 0 < out.shape[0] <= MAX_SAMPLES  # libopus is laxer (e.g. padding): still bounded
        return
    n = p.samples(SAMPLE_RATE)
    assert DEC.get_nb_samples(data) == n
    _pcm(DEC.decode(data), n)
    if n == FRAME_SAMPLES:  # a packet recv queues: the hole before it, then itself, then a loss
        DEC.reset()
        packet_has_lbrr(data)
        _pcm(DEC.decode(data, FRAME_SAMPLES, fec=True), FRAME_SAMPLES)
        _pcm(DEC.decode(data), FRAME_SAMPLES)
        _pcm(DEC.decode(None, FRAME_SAMPLES), FRAME_SAMPLES)


if __name__ == "__main__":
    _harness.main(test_one_input)
