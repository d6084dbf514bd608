"""DRED quantizer, payload format and rate control (edge_dred.dred)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("edge_dred.dred._entropy")
from edge_dred.dred.payload import (MAX_CHUNKS, MAX_PAYLOAD_BYTES, DredPayload,  # noqa: E402
                                    DredPayloadError, encode_payload, parse_payload)
from edge_dred.dred.quantizer import (EntropyTables, QuantizerError, chunk_level,  # noqa: E402
                                      chunk_levels, dequantize, ideal_bits, prob_to_q15, quantize)
from edge_dred.dred.ratecontrol import RateControlError, encode_dred  # noqa: E402

D, S = 32, 48
TABLES = EntropyTables.synthetic(D, S, seed=0)


def sample_k(rng, p0, decay, shape=None):
    """Integers drawn from the contract's (p0, decay) Laplace model."""
    shape = np.shape(p0) if shape is None else shape
    zero = rng.random(shape) < p0
    mag = np.minimum(rng.geometric(1.0 - decay, size=shape), 1023)
    sign = np.where(rng.random(shape) < 0.5, -1, 1)
    return np.where(zero, 0, mag * sign).astype(np.int32)


def random_payload(rng, q0, dq, qmax, offset, n):
    levels = chunk_levels(n, q0, dq, qmax)
    return DredPayload(q0=q0, dq=dq, qmax=qmax, offset=offset,
                       state_k=sample_k(rng, TABLES.state_p0, TABLES.state_decay),
                       latents_k=[sample_k(rng, TABLES.p0[q], TABLES.decay[q]) for q in levels])


# ------------------------------------------------------------------ quantizer

def test_deadzone_quantize_values():
    z = np.array([0.0, 0.4, 0.6, 0.74, 0.76, -0.76, 1.6, -2.4, 5000.0])
    k = quantize(z, np.ones(9), np.full(9, 0.25))
    # Thresholds move out by 0.25: 0.75 -> 1, 1.75 -> 2, ...
    np.testing.assert_array_equal(k, [0, 0, 0, 0, 1, -1, 1, -2, 1023])
    assert k.dtype == np.int32
    np.testing.assert_array_equal(quantize([1.0, -1.0], [2.0, 3.0], [0.0, 0.0]), [2, -3])
    np.testing.assert_allclose(dequantize(np.array([2, -3]), np.array([2.0, 3.0])), [1.0, -1.0])


def test_quantizer_rejects_bad_input():
    with pytest.raises(QuantizerError):
        quantize([np.nan], [1.0], [0.0])
    with pytest.raises(QuantizerError):
        quantize([1.0], [0.0], [0.0])
    with pytest.raises(QuantizerError):
        quantize([1.0], [1.0], [-0.1])
    with pytest.raises(QuantizerError):
        quantize(np.ones(3), np.ones(2), np.zeros(2))
    with pytest.raises(QuantizerError):
        dequantize(np.array([0.5]), np.array([1.0]))


def test_prob_to_q15_clamps():
    np.testing.assert_array_equal(prob_to_q15([0.0, 1e-9, 0.5, 1.0, 2.0]), [1, 1, 16384, 32767, 32767])


def test_chunk_levels_formula():
    # q_j = min(qmax, q0 + (dq*j + 4)//8)
    np.testing.assert_array_equal(chunk_levels(6, 3, 5, 6), [3, 4, 4, 5, 6, 6])
    np.testing.assert_array_equal(chunk_levels(4, 9, 0), [9, 9, 9, 9])
    assert chunk_level(25, 0, 7) == 15 and chunk_level(25, 0, 7, 10) == 10
    assert chunk_level(3, 12, 0, 5) == 5        # qmax below q0 caps every chunk
    with pytest.raises(QuantizerError):
        chunk_levels(3, 16, 0)
    with pytest.raises(QuantizerError):
        chunk_level(0, 0, 8)


def test_tables_validation():
    good = {n: getattr(TABLES, n) for n in ("quant_scale", "dead_zone", "p0", "decay", "state_quant_scale",
                                            "state_dead_zone", "state_p0", "state_decay")}
    t = EntropyTables.from_mapping(good)
    assert t.latent_dim == D and t.state_dim == S
    assert t.p0_q15.dtype == np.uint16 and t.p0_q15.shape == (16, D)
    with pytest.raises(QuantizerError, match="missing"):
        EntropyTables.from_mapping({k: v for k, v in good.items() if k != "decay"})
    for name, bad in (("p0", np.ones((16, D))), ("quant_scale", np.zeros((16, D))),
                      ("decay", np.ones((16, D + 1)) * 0.5), ("state_dead_zone", -np.ones(S)),
                      ("p0", np.full((16, D), np.nan))):
        with pytest.raises(QuantizerError):
            EntropyTables.from_mapping({**good, name: bad})
    with pytest.raises(QuantizerError):
        EntropyTables.from_mapping({**good, "quant_scale": np.ones((16, 33)), "dead_zone": np.zeros((16, 33)),
                                    "p0": np.full((16, 33), .5), "decay": np.full((16, 33), .5)})


# ------------------------------------------------------------------ payload round trips

@settings(max_examples=200, deadline=None)
@given(q0=st.integers(0, 15), dq=st.integers(0, 7), qmax=st.integers(0, 15), offset=st.integers(0, 3),
       n=st.integers(1, MAX_CHUNKS), seed=st.integers(0, 2**32 - 1))
def test_payload_round_trip(q0, dq, qmax, offset, n, seed):
    p = random_payload(np.random.default_rng(seed), q0, dq, qmax, offset, n)
    try:
        data = encode_payload(p, TABLES)
    except DredPayloadError as e:          # fine levels with 26 chunks can exceed 1000 bytes
        assert "exceeds" in str(e)
        return
    assert 1 <= len(data) <= MAX_PAYLOAD_BYTES
    back = parse_payload(data, TABLES)
    assert back == p
    assert back.state_k.dtype == np.int32 and all(z.dtype == np.int32 for z in back.latents_k)


@pytest.mark.parametrize("q0", range(16))
def test_round_trip_every_q0_and_dq(q0):
    rng = np.random.default_rng(100 + q0)
    for dq in range(8):
        p = random_payload(rng, q0, dq, 15, dq % 4, 8)
        assert parse_payload(encode_payload(p, TABLES), TABLES) == p


def test_payload_size_close_to_ideal():
    rng = np.random.default_rng(5)
    actual = ideal = 0.0
    for i in range(40):
        p = random_payload(rng, 6 + i % 8, i % 8, 15, 0, 26)
        actual += 8 * len(encode_payload(p, TABLES))
        levels = p.levels()
        ideal += ideal_bits(p.state_k, TABLES.state_p0, TABLES.state_decay).sum()
        ideal += sum(ideal_bits(z, TABLES.p0[q], TABLES.decay[q]).sum() for q, z in zip(levels, p.latents_k))
        ideal += 4 + 4 + 3 + 4 + 2 + np.log2(26)
    assert abs(actual - ideal) / ideal < 0.05, (actual, ideal)


def test_encode_payload_validation():
    rng = np.random.default_rng(1)
    base = random_payload(rng, 8, 2, 15, 0, 3)

    def variant(**kw):
        fields = dict(q0=base.q0, dq=base.dq, qmax=base.qmax, offset=base.offset, state_k=base.state_k,
                      latents_k=base.latents_k)
        fields.update(kw)
        return DredPayload(**fields)

    for bad in (variant(q0=16), variant(dq=8), variant(qmax=-1), variant(offset=4), variant(latents_k=[]),
                variant(latents_k=base.latents_k * 9), variant(state_k=base.state_k[:-1]),
                variant(latents_k=[np.zeros(D + 1, np.int32)]), variant(latents_k=[np.full(D, 1024)]),
                variant(latents_k=[np.zeros(D)]), DredPayload(version=2, q0=0, dq=0, state_k=base.state_k,
                                                              latents_k=base.latents_k)):
        with pytest.raises(DredPayloadError):
            encode_payload(bad, TABLES)
    huge = variant(q0=0, dq=0, latents_k=[np.full(D, 900, np.int32)] * 26)
    with pytest.raises(DredPayloadError, match="exceeds"):
        encode_payload(huge, TABLES)


# ------------------------------------------------------------------ hostile input

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=1100), st.integers(1, MAX_CHUNKS))
def test_random_bytes_rejected_or_bounded(data, max_chunks):
    try:
        p = parse_payload(data, TABLES, max_chunks=max_chunks)
    except DredPayloadError:
        return
    assert 1 <= len(data) <= MAX_PAYLOAD_BYTES
    assert 1 <= p.n_chunks <= max_chunks
    assert 0 <= p.q0 <= 15 and 0 <= p.dq <= 7 and 0 <= p.qmax <= 15 and 0 <= p.offset <= 3
    assert p.state_k.shape == (S,) and all(z.shape == (D,) for z in p.latents_k)
    assert max(np.abs(z).max() for z in [p.state_k, *p.latents_k]) <= 1023
    # Whatever is accepted re-encodes to a payload of exactly the same length.
    again = encode_payload(p, TABLES)
    assert len(again) == len(data) and parse_payload(again, TABLES) == p


def test_truncations_fail_cleanly():
    rng = np.random.default_rng(2)
    total = detected = 0
    for i in range(30):
        data = encode_payload(random_payload(rng, 4 + i % 12, i % 8, 15, 1, 1 + i % 26), TABLES)
        for cut in range(len(data)):
            total += 1
            try:
                p = parse_payload(data[:cut], TABLES)
            except DredPayloadError:
                detected += 1
                continue
            assert p.n_chunks <= MAX_CHUNKS      # rare, but then still bounded
    # The exact-length rule catches (nearly) every truncation.
    assert detected >= 0.995 * total, (detected, total)


def test_padding_and_oversize_rejected():
    rng = np.random.default_rng(3)
    data = encode_payload(random_payload(rng, 10, 3, 15, 0, 20), TABLES)
    for tail in (b"\x00", b"\xff", b"\x00" * 5):
        with pytest.raises(DredPayloadError, match="length"):
            parse_payload(data + tail, TABLES)
    with pytest.raises(DredPayloadError):
        parse_payload(b"", TABLES)
    with pytest.raises(DredPayloadError):
        parse_payload(bytes(1001), TABLES)
    with pytest.raises(DredPayloadError):
        parse_payload("not bytes", TABLES)
    with pytest.raises(DredPayloadError):
        parse_payload(data, TABLES, max_chunks=27)
    with pytest.raises(DredPayloadError, match="chunks"):
        parse_payload(data, TABLES, max_chunks=19)
    assert parse_payload(bytearray(data), TABLES, max_chunks=20).n_chunks == 20


def test_version_checked():
    from edge_dred.dred import _entropy as E
    enc = E.RangeEncoder()
    enc.encode_bits(2, 4)
    with pytest.raises(DredPayloadError, match="version"):
        parse_payload(enc.finish(), TABLES)


def test_bit_flips_mostly_detected():
    rng = np.random.default_rng(4)
    data = encode_payload(random_payload(rng, 9, 2, 15, 0, 26), TABLES)
    detected = 0
    for i in range(8 * len(data)):
        b = bytearray(data)
        b[i // 8] ^= 1 << (i % 8)
        try:
            p = parse_payload(bytes(b), TABLES)
            assert p.n_chunks <= MAX_CHUNKS
        except DredPayloadError:
            detected += 1
    assert detected > 0.5 * 8 * len(data)


# ------------------------------------------------------------------ rate control

def laplace_latents(rng, n=26):
    b = np.random.default_rng(0).uniform(0.5, 1.5, D)   # same per-dim scales as the synthetic tables
    sb = np.random.default_rng(0).uniform(0.5, 1.5, S)
    return rng.laplace(0, 1, (n, D)) * b, rng.laplace(0, 1, S) * sb


@pytest.mark.parametrize("budget", [30, 50, 80, 120, 250, 1000])
def test_rate_control_fits_budget_and_decodes(budget):
    rng = np.random.default_rng(budget)
    z, s = laplace_latents(rng)
    dec = encode_dred(z, s, TABLES, budget_bytes=budget)
    assert dec.reason in ("ok", "shortened") and 1 <= len(dec.payload) <= budget
    assert abs(dec.est_bytes - len(dec.payload)) <= 1
    p = parse_payload(dec.payload, TABLES)
    assert (p.q0, p.dq, p.n_chunks) == (dec.q0, dec.dq, dec.n_chunks)
    for j, (q, k) in enumerate(zip(p.levels(), p.latents_k)):
        np.testing.assert_array_equal(k, quantize(z[j], TABLES.quant_scale[q], TABLES.dead_zone[q]))
    np.testing.assert_array_equal(p.state_k, quantize(s, TABLES.state_quant_scale, TABLES.state_dead_zone))


def test_rate_control_finer_with_more_budget():
    rng = np.random.default_rng(9)
    z, s = laplace_latents(rng)
    means = []
    for budget in (60, 80, 120, 200, 400, 800):
        d = encode_dred(z, s, TABLES, budget_bytes=budget)
        assert d.n_chunks == 26
        means.append(float(np.mean(np.minimum(d.qmax, d.q0 + (d.dq * np.arange(26) + 4) // 8))))
        # No finer schedule on the grid would have fit.
        if d.q0 > 0:
            finer = DredPayload(q0=d.q0 - 1, dq=d.dq, qmax=d.qmax, offset=0,
                                state_k=quantize(s, TABLES.state_quant_scale, TABLES.state_dead_zone),
                                latents_k=[quantize(z[j], TABLES.quant_scale[q], TABLES.dead_zone[q])
                                           for j, q in enumerate(chunk_levels(26, d.q0 - 1, d.dq, d.qmax))])
            try:
                assert len(encode_payload(finer, TABLES)) > budget - 1
            except DredPayloadError:
                pass
    assert means == sorted(means, reverse=True) and means[0] > means[-1]


def test_rate_control_duration_and_silence():
    rng = np.random.default_rng(11)
    z, s = laplace_latents(rng)
    assert encode_dred(z, s, TABLES, duration_ms=100, budget_bytes=1000).n_chunks == 3
    assert encode_dred(z, s, TABLES, duration_ms=40, budget_bytes=1000).n_chunks == 1
    assert encode_dred(z[:5], s, TABLES, budget_bytes=1000).n_chunks == 5
    active = np.ones(26, bool)
    active[10:] = False
    active[14] = True           # only trailing silence is dropped
    d = encode_dred(z, s, TABLES, active=active, budget_bytes=1000)
    assert d.n_chunks == 15 and d.requested_chunks == 26 and parse_payload(d.payload, TABLES).n_chunks == 15
    d = encode_dred(z, s, TABLES, active=np.zeros(26, bool))
    assert d.payload == b"" and d.reason == "silent"
    d = encode_dred(z, s, TABLES, budget_bytes=2)
    assert d.payload == b"" and d.reason == "budget"


def test_rate_control_average_bar_at_1040ms():
    # Product bar: <= 80 bytes per packet on average with 1.04 s of redundancy.
    rng = np.random.default_rng(12)
    sizes = []
    for _ in range(20):
        z, s = laplace_latents(rng)
        d = encode_dred(z, s, TABLES, duration_ms=1040)
        assert d.n_chunks == 26
        sizes.append(len(d.payload))
    assert np.mean(sizes) <= 80 and min(sizes) >= 60     # uses the budget, does not waste it


def test_rate_control_validation():
    z, s = laplace_latents(np.random.default_rng(0))
    for kw in ({"duration_ms": 0}, {"duration_ms": 1100}, {"budget_bytes": 0}, {"budget_bytes": 1001},
               {"offset": 4}, {"qmax": 16}, {"dq_grid": ()}, {"dq_grid": (8,)}, {"active": np.ones(3, bool)}):
        with pytest.raises(RateControlError):
            encode_dred(z, s, TABLES, **kw)
    with pytest.raises(RateControlError):
        encode_dred(z[:, :5], s, TABLES)
    with pytest.raises(RateControlError):
        encode_dred(z, s[:3], TABLES)
    bad = z.copy()
    bad[0, 0] = np.inf
    with pytest.raises(RateControlError):
        encode_dred(bad, s, TABLES)


def _brute_force_schedule(per_chunk, fixed, qmax, grid, budget):
    """Numpy reference of the compiled search: every candidate's size for every prefix."""
    n = per_chunk.shape[1]
    q0s = np.repeat(np.arange(16), len(grid))
    dqs = np.tile(np.asarray(grid), 16)
    j = np.arange(n)
    levels = np.minimum(qmax, q0s[:, None] + (dqs[:, None] * j[None, :] + 4) // 8)
    est = np.ceil((fixed + np.cumsum(per_chunk[levels, j[None, :]], axis=1) + 1.0) / 8.0).astype(np.int64)
    fits = est <= budget
    ms = [m for m in range(n, 0, -1) if fits[:, m - 1].any()]
    if not ms:
        return 0, [], [], []
    m = ms[0]
    ok = np.flatnonzero(fits[:, m - 1])
    return m, list(ok), list(levels[ok, :m].sum(axis=1)), list(est[ok, m - 1])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 26), st.integers(0, 15), st.integers(1, 1000), st.integers(0, 2**32 - 1),
       st.lists(st.integers(0, 7), min_size=1, max_size=8, unique=True))
def test_compiled_schedule_search_matches_brute_force(n, qmax, budget, seed, grid):
    from edge_dred.dred import _entropy

    rng = np.random.default_rng(seed)
    per_chunk = np.sort(rng.uniform(0, 90, (16, n)), axis=0)[::-1].copy()   # finer levels cost more
    fixed = float(rng.uniform(20, 120))
    got = _entropy.rank_schedules(per_chunk, fixed, qmax, np.asarray(grid, np.int64), budget)
    want = _brute_force_schedule(per_chunk, fixed, qmax, grid, budget)
    assert got[0] == want[0]
    for a, b in zip(got[1:], want[1:]):
        assert list(a) == list(b)


def test_cached_quantization_gives_identical_payloads():
    from edge_dred.dred.ratecontrol import quantize_chunks

    rng = np.random.default_rng(5)
    for budget in (40, 80, 300):
        z, s = laplace_latents(rng)
        active = rng.random(26) < 0.9
        plain = encode_dred(z, s, TABLES, budget_bytes=budget, active=active)
        cached = encode_dred(z, s, TABLES, budget_bytes=budget, active=active, quantized=quantize_chunks(z, TABLES))
        assert plain == cached and plain.payload
    with pytest.raises(RateControlError):
        encode_dred(z, s, TABLES, quantized=quantize_chunks(z[:3], TABLES))


def test_rate_control_prefer_newest():
    """'newest' takes the finest newest chunk that still carries the most chunks."""
    rng = np.random.default_rng(21)
    for budget in (50, 80, 160):
        z, s = laplace_latents(rng)
        mean = encode_dred(z, s, TABLES, budget_bytes=budget, prefer="mean")
        new = encode_dred(z, s, TABLES, budget_bytes=budget, prefer="newest")
        assert new.n_chunks == mean.n_chunks and len(new.payload) <= budget
        assert new.q0 <= mean.q0
        p = parse_payload(new.payload, TABLES)
        assert (p.q0, p.dq, p.n_chunks) == (new.q0, new.dq, new.n_chunks)
        # No schedule with a finer newest chunk would have fit.
        if new.q0 > 0:
            for dq in range(8):
                finer = DredPayload(q0=new.q0 - 1, dq=dq, qmax=new.qmax, offset=0,
                                    state_k=quantize(s, TABLES.state_quant_scale, TABLES.state_dead_zone),
                                    latents_k=[quantize(z[j], TABLES.quant_scale[q], TABLES.dead_zone[q])
                                               for j, q in enumerate(chunk_levels(26, new.q0 - 1, dq, new.qmax))])
                assert len(encode_payload(finer, TABLES)) > budget - 1
    with pytest.raises(RateControlError):
        encode_dred(z, s, TABLES, prefer="oldest")
