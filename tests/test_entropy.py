"""Range coder and DRED symbol coder (edge_dred.dred._entropy)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

E = pytest.importorskip("edge_dred.dred._entropy")
from edge_dred.dred.quantizer import ideal_bits, prob_to_q15  # noqa: E402

# ------------------------------------------------------------------ helpers

OPS = ("encode", "logp", "bits", "symbol", "uint", "q15")


@st.composite
def op_lists(draw):
    """Random mixes of every coder primitive with valid arguments."""
    ops = []
    for _ in range(draw(st.integers(0, 120))):
        kind = draw(st.sampled_from(OPS))
        if kind == "encode":
            ft = draw(st.integers(2, 65536))
            fl = draw(st.integers(0, ft - 1))
            fh = draw(st.integers(fl + 1, ft))
            ops.append((kind, fl, fh, ft))
        elif kind == "logp":
            ops.append((kind, draw(st.integers(0, 1)), draw(st.integers(1, 15))))
        elif kind == "bits":
            n = draw(st.integers(0, 31))
            ops.append((kind, draw(st.integers(0, (1 << n) - 1)), n))
        elif kind == "symbol":
            ops.append((kind, draw(st.integers(-1023, 1023)), draw(st.integers(0, 65535)),
                        draw(st.integers(0, 65535))))
        elif kind == "uint":
            ft = draw(st.integers(2, 65536))
            ops.append((kind, draw(st.integers(0, ft - 1)), ft))
        else:
            ops.append((kind, draw(st.integers(0, 1)), draw(st.integers(1, 32767))))
    return ops


def run_encode(ops):
    enc = E.RangeEncoder()
    for op in ops:
        kind = op[0]
        if kind == "encode":
            enc.encode(*op[1:])
        elif kind == "logp":
            enc.encode_bit_logp(*op[1:])
        elif kind == "bits":
            enc.encode_bits(*op[1:])
        elif kind == "symbol":
            enc.encode_symbol(*op[1:])
        elif kind == "uint":
            enc.encode_uint(*op[1:])
        else:
            enc.encode_bit_q15(*op[1:])
    tell = enc.tell()
    return enc.finish(), tell


def check_decode(data, ops, tell):
    dec = E.RangeDecoder(data)
    for op in ops:
        kind = op[0]
        if kind == "encode":
            _, fl, fh, ft = op
            x = dec.decode(ft)
            assert fl <= x < fh
            dec.update(fl, fh, ft)
        elif kind == "logp":
            assert dec.decode_bit_logp(op[2]) == op[1]
        elif kind == "bits":
            assert dec.decode_bits(op[2]) == op[1]
        elif kind == "symbol":
            assert dec.decode_symbol(op[2], op[3]) == op[1]
        elif kind == "uint":
            assert dec.decode_uint(op[2]) == op[1]
        else:
            assert dec.decode_bit_q15(op[2]) == op[1]
    assert dec.tell() == tell
    assert not dec.overrun
    assert dec.ends_exactly()
    # The output length is a function of tell(): ceil(tell / 8).
    assert len(data) == math.ceil(tell / 8)


# ------------------------------------------------------------------ round trips

@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(op_lists())
def test_mixed_primitives_round_trip(ops):
    data, tell = run_encode(ops)
    check_decode(data, ops, tell)


def test_carry_propagation_runs_of_ff():
    # Symbols at the very top of the range drive val towards the carry bit and
    # emit long 0xFF runs that a later carry must flip; the round trip proves
    # the pending-byte logic.
    ops = []
    for i in range(400):
        ops.append(("encode", 65535, 65536, 65536))
        if i % 37 == 0:
            ops.append(("encode", 1, 65536, 65536))
    data, tell = run_encode(ops)
    assert b"\xff\xff\xff" in data or b"\x00\x00\x00" in data
    check_decode(data, ops, tell)


def test_empty_stream():
    enc = E.RangeEncoder()
    data = enc.finish()
    assert len(data) == 1
    dec = E.RangeDecoder(data)
    assert dec.ends_exactly() and not dec.overrun


@pytest.mark.parametrize("q", range(16))
def test_vector_round_trip_every_level(q):
    rng = np.random.default_rng(q)
    d = 32
    p0 = rng.uniform(0.05, 0.95, d)
    decay = rng.uniform(0.05, 0.95, d)
    k = sample_model(rng, p0, decay, (40, d))
    p0q, dq = prob_to_q15(p0), prob_to_q15(decay)
    enc = E.RangeEncoder()
    for row in k:
        E.encode_vector(enc, row, p0q, dq)
    data = enc.finish()
    dec = E.RangeDecoder(data)
    out = np.empty(d, np.int32)
    for row in k:
        got = E.decode_vector(dec, p0q, dq, out)
        assert got is out
        np.testing.assert_array_equal(got, row)
    assert dec.ends_exactly()


def test_symbol_boundaries_and_extremes():
    values = [0, 1, -1, 14, 15, 16, -16, 17, 30, 31, 32, 100, 1007, 1008, -1022, 1023, -1023]
    params = [(0, 0), (1, 1), (32767, 32767), (65535, 65535), (16384, 30000), (200, 100)]
    ops = [("symbol", k, p, d) for k in values for p, d in params]
    data, tell = run_encode(ops)
    check_decode(data, ops, tell)


def test_encoder_clamps_large_values():
    enc = E.RangeEncoder()
    E.encode_vector(enc, np.array([5000, -70000, 1024], np.int32), np.full(3, 16384, np.uint16),
                    np.full(3, 16384, np.uint16))
    enc.encode_symbol(2000, 16384, 16384)
    dec = E.RangeDecoder(enc.finish())
    got = E.decode_vector(dec, np.full(3, 16384, np.uint16), np.full(3, 16384, np.uint16))
    np.testing.assert_array_equal(got, [1023, -1023, 1023])
    assert dec.decode_symbol(16384, 16384) == 1023


def _escape_prefix(enc, p0=16384, decay=16384):
    # Non-zero, positive, escape symbol: the start of a |k| >= 16 code.
    f = E.geometric_freqs(decay)
    enc.encode_bin(p0, 32768, 15)
    enc.encode_bit_logp(0, 1)
    enc.encode_bin(int(f[:15].sum()), 32768, 15)


def test_decoder_rejects_overlong_escape():
    enc = E.RangeEncoder()
    _escape_prefix(enc)
    for _ in range(10):          # 10 unary ones: 2^10 > any legal tail
        enc.encode_bit_logp(1, 1)
    enc.encode_bit_logp(0, 1)
    dec = E.RangeDecoder(enc.finish())
    with pytest.raises(E.EntropyDecodeError):
        dec.decode_symbol(16384, 16384)


def test_decoder_rejects_escape_above_1023():
    # n = 9 and v = 1009 -> |k| = 1024, one past the contract's limit.
    enc = E.RangeEncoder()
    _escape_prefix(enc)
    for _ in range(9):
        enc.encode_bit_logp(1, 1)
    enc.encode_bit_logp(0, 1)
    enc.encode_bits(1009 - 512, 9)
    data = enc.finish()
    with pytest.raises(E.EntropyDecodeError):
        E.decode_vector(E.RangeDecoder(data), np.array([16384], np.uint16), np.array([16384], np.uint16))
    # The same prefix with v = 1008 is |k| = 1023 and legal.
    enc = E.RangeEncoder()
    _escape_prefix(enc)
    for _ in range(9):
        enc.encode_bit_logp(1, 1)
    enc.encode_bit_logp(0, 1)
    enc.encode_bits(1008 - 512, 9)
    assert E.RangeDecoder(enc.finish()).decode_symbol(16384, 16384) == 1023


@pytest.mark.parametrize("decay", [0, 1, 100, 8192, 16384, 30000, 32767, 40000, 65535])
def test_geometric_freqs_valid(decay):
    f = E.geometric_freqs(decay)
    assert f.shape == (16,) and f.sum() == 32768 and f.min() >= 1
    if 100 <= decay <= 30000:
        # Geometric: successive ratios follow decay until the floor of 1 kicks in.
        big = f[:15][f[:15] > 64]
        if len(big) >= 3:
            np.testing.assert_allclose(big[1:] / big[:-1], decay / 32768, atol=0.02)


# ------------------------------------------------------------------ efficiency

def sample_model(rng, p0, decay, shape):
    """Integers from the contract's float Laplace model."""
    zero = rng.random(shape) < p0
    mag = rng.geometric(1.0 - decay, size=shape)       # P(m) = (1-d) d^(m-1), m >= 1
    sign = np.where(rng.random(shape) < 0.5, -1, 1)
    return np.where(zero, 0, np.minimum(mag, 1023) * sign).astype(np.int32)


@pytest.mark.parametrize("p0_lo,p0_hi,d_lo,d_hi", [(0.05, 0.3, 0.3, 0.8), (0.5, 0.95, 0.05, 0.5),
                                                   (0.2, 0.8, 0.1, 0.9)])
def test_coded_size_close_to_ideal(p0_lo, p0_hi, d_lo, d_hi):
    rng = np.random.default_rng(7)
    d = 32
    p0 = rng.uniform(p0_lo, p0_hi, d)
    decay = rng.uniform(d_lo, d_hi, d)
    k = sample_model(rng, p0, decay, (600, d))
    p0q, dq = prob_to_q15(p0), prob_to_q15(decay)
    enc = E.RangeEncoder(1 << 20)
    for row in k:
        E.encode_vector(enc, row, p0q, dq)
    actual = 8 * len(enc.finish())
    ideal = float(ideal_bits(k, p0, decay).sum())
    assert abs(actual - ideal) / ideal < 0.02, (actual, ideal)
    # The exact integer-model cost table predicts the coder to within 0.1 %.
    lut = E.symbol_cost_table(p0q, dq)
    a = np.abs(k)
    exact = np.take_along_axis(lut[None], np.minimum(a, 16)[..., None], axis=-1)[..., 0]
    exact = exact + np.where(a >= 16, 2 * np.floor(np.log2(np.maximum(a - 15, 1))) + 1, 0)
    assert abs(actual - exact.sum()) < 0.001 * actual + 16


# ------------------------------------------------------------------ hostile input

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 65535), st.integers(0, 65535))
def test_decoder_on_random_bytes_is_bounded(data, p0, decay):
    dec = E.RangeDecoder(data)
    p = np.full(32, p0, np.uint16)
    d = np.full(32, decay, np.uint16)
    last = dec.tell()
    for _ in range(30):
        try:
            k = E.decode_vector(dec, p, d)
        except E.EntropyDecodeError:
            return
        assert k.dtype == np.int32 and np.all(np.abs(k) <= 1023)
        assert dec.tell() >= last
        last = dec.tell()
    assert dec.overrun == (dec.tell() > 8 * len(data))


def test_overrun_detected():
    dec = E.RangeDecoder(b"\x12\x34")
    for _ in range(100):
        dec.decode_bits(1)
    assert dec.overrun
    assert not dec.ends_exactly()


def test_truncated_and_padded_streams_do_not_end_exactly():
    rng = np.random.default_rng(3)
    ops = [("symbol", int(v), 12000, 20000) for v in rng.integers(-40, 40, 200)]
    data, tell = run_encode(ops)
    padded = E.RangeDecoder(data + b"\x5a")
    for op in ops:
        assert padded.decode_symbol(op[2], op[3]) == op[1]   # any continuation decodes the same
    assert not padded.ends_exactly()
    detected = 0
    for cut in range(1, len(data)):
        dec = E.RangeDecoder(data[:cut])
        for op in ops:
            dec.decode_symbol(op[2], op[3])
        detected += not dec.ends_exactly()
    assert detected >= len(data) - 2


# ------------------------------------------------------------------ API misuse

def test_argument_validation():
    enc = E.RangeEncoder()
    with pytest.raises(E.EntropyError):
        enc.encode(3, 3, 10)
    with pytest.raises(E.EntropyError):
        enc.encode(0, 5, 70000)
    with pytest.raises(E.EntropyError):
        enc.encode(-1, 5, 10)
    with pytest.raises(E.EntropyError):
        enc.encode_bits(8, 3)
    with pytest.raises(E.EntropyError):
        enc.encode_bit_logp(1, 0)
    with pytest.raises(E.EntropyError):
        enc.encode_symbol("x", 1, 1)
    with pytest.raises(E.EntropyError):
        E.encode_vector(enc, np.zeros(3, np.int32), np.zeros(2, np.uint16), np.zeros(3, np.uint16))
    with pytest.raises(ValueError):
        E.encode_vector(enc, np.zeros(3, np.int64), np.zeros(3, np.uint16), np.zeros(3, np.uint16))
    enc.finish()
    with pytest.raises(E.EntropyError):
        enc.finish()
    with pytest.raises(E.EntropyError):
        enc.encode_bits(1, 1)
    with pytest.raises(E.EntropyError):
        E.RangeEncoder(1)
    with pytest.raises(E.EntropyError):
        E.RangeDecoder(5)
    with pytest.raises(E.EntropyError):
        E.RangeDecoder("abc")
    dec = E.RangeDecoder(b"\x00\x01")
    x = dec.decode(10)
    with pytest.raises(E.EntropyError):
        dec.decode_bits(1)           # pending decode() must be updated first
    with pytest.raises(E.EntropyError):
        dec.update(0, 10, 11)        # wrong total
    with pytest.raises(E.EntropyError):
        dec.update(x + 1, 10, 10) if x < 9 else dec.update(0, x, 10)   # interval misses x
    dec.update(x, x + 1, 10)
    with pytest.raises(E.EntropyError):
        dec.update(0, 1, 10)         # nothing pending


def test_encoder_capacity_overflow_is_reported():
    enc = E.RangeEncoder(16)
    for _ in range(40):
        enc.encode_bits(0xABCD, 16)
    assert enc.error
    with pytest.raises(E.EntropyError, match="capacity"):
        enc.finish()


def test_chunk_entry_points_match_vector_calls():
    rng = np.random.default_rng(21)
    p0 = prob_to_q15(rng.uniform(0.1, 0.9, (16, 24)))
    dec_ = prob_to_q15(rng.uniform(0.1, 0.9, (16, 24)))
    levels = rng.integers(0, 16, 9).astype(np.int64)
    k = np.clip(np.round(rng.laplace(0, 6, (9, 24))), -1023, 1023).astype(np.int32)
    a, b = E.RangeEncoder(), E.RangeEncoder()
    E.encode_chunks(a, k, p0, dec_, levels)
    for q, row in zip(levels, k):
        E.encode_vector(b, row, p0[q], dec_[q])
    data = a.finish()
    assert data == b.finish()
    dec = E.RangeDecoder(data)
    np.testing.assert_array_equal(E.decode_chunks(dec, p0, dec_, levels), k)
    assert dec.ends_exactly()
    with pytest.raises(E.EntropyError):
        E.encode_chunks(E.RangeEncoder(), k, p0, dec_, np.full(9, 16, np.int64))
    # A short hostile buffer stops early instead of decoding every row.
    short = E.RangeDecoder(b"\x01")
    out = E.decode_chunks(short, p0, dec_, np.zeros(26, np.int64))
    assert short.overrun and out.shape == (26, 24)


def test_quantize_levels_matches_numpy_quantizer():
    from edge_dred.dred.quantizer import quantize
    rng = np.random.default_rng(22)
    z = rng.laplace(0, 3, (26, 32)) * rng.choice([1, 1e3], (26, 32))
    scale = rng.uniform(0.1, 8, (16, 32)).astype(np.float32)
    dz = rng.uniform(0, 0.5, (16, 32)).astype(np.float32)
    z[0, :4] = [0.5 / scale[0, 0], -0.5 / scale[0, 1], 0.0, -0.0]     # rounding ties
    got = E.quantize_levels(z, scale, dz)
    np.testing.assert_array_equal(got, quantize(z[None], scale[:, None, :], dz[:, None, :]))


def test_vector_costs_match_coder():
    rng = np.random.default_rng(23)
    p0 = prob_to_q15(rng.uniform(0.1, 0.9, 32))
    dq = prob_to_q15(rng.uniform(0.5, 0.97, 32))
    k = np.clip(np.round(rng.laplace(0, 30, (200, 32))), -1023, 1023).astype(np.int32)
    enc = E.RangeEncoder(1 << 20)
    for row in k:
        E.encode_vector(enc, row, p0, dq)
    actual = 8 * len(enc.finish())
    est = E.vector_costs(k[None], E.symbol_cost_table(p0, dq)[None]).sum()
    assert abs(actual - est) < 0.001 * actual + 16
