"""The compiled DRED coder and parser against the step-by-step path they replace.

* `ratecontrol.StreamCoder` (one compiled call per packet) must give exactly the
  decision and bytes of `ratecontrol.encode_dred` fed the same cached history;
* `payload.parse_payload` (one compiled call) must accept, reject (with the same
  message) and decode exactly as `reference_parse`, the previous parser built
  from the range decoder's primitives, kept here as the reference;
* a partial parse (``chunks=n``) returns exactly the newest n chunks of the full
  parse and rejects exactly what the full parse rejects.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_dred.dred import _entropy
from edge_dred.dred.payload import (DRED_VERSION, MAX_CHUNKS, MAX_PAYLOAD_BYTES, DredPayload, DredPayloadError,
                                    encode_payload, parse_payload)
from edge_dred.dred.quantizer import EntropyTables, chunk_levels
from edge_dred.dred.ratecontrol import CHUNK_MS, RateControlError, StreamCoder, encode_dred, quantize_chunks

TABLES = EntropyTables.synthetic(latent_dim=32, state_dim=48, seed=0)
D, S = TABLES.latent_dim, TABLES.state_dim
RING = 2 * MAX_CHUNKS - 1


def reference_parse(data, tables: EntropyTables, max_chunks: int = MAX_CHUNKS) -> DredPayload:
    """The previous parser: header, state and chunks through the Python-level range decoder."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DredPayloadError(f"payload must be bytes-like, got {type(data).__name__}")
    n = memoryview(data).nbytes
    if not 1 <= n <= MAX_PAYLOAD_BYTES:
        raise DredPayloadError(f"payload length {n} outside [1, {MAX_PAYLOAD_BYTES}]")
    dec = _entropy.RangeDecoder(data)
    version = dec.decode_bits(4)
    if version != DRED_VERSION:
        raise DredPayloadError(f"unsupported payload version {version}")
    q0, dq, qmax, offset = dec.decode_bits(4), dec.decode_bits(3), dec.decode_bits(4), dec.decode_bits(2)
    n_chunks = dec.decode_uint(MAX_CHUNKS) + 1
    if n_chunks > max_chunks:
        raise DredPayloadError(f"payload announces {n_chunks} chunks, at most {max_chunks} accepted")
    try:
        state = _entropy.decode_vector(dec, tables.state_p0_q15, tables.state_decay_q15)
        latents = _entropy.decode_chunks(dec, tables.p0_q15, tables.decay_q15, chunk_levels(n_chunks, q0, dq, qmax))
    except _entropy.EntropyDecodeError as e:
        raise DredPayloadError(f"malformed payload: {e}") from None
    if dec.overrun:
        raise DredPayloadError(f"truncated payload: needs more than its {n} bytes")
    if not dec.ends_exactly():
        raise DredPayloadError(f"payload length {n} does not match the coded content "
                               f"({dec.expected_length()} bytes)")
    return DredPayload(version=version, q0=q0, dq=dq, qmax=qmax, offset=offset, state_k=state,
                       latents_k=list(latents))


def _outcome(fn, *args, **kw):
    try:
        return "ok", fn(*args, **kw)
    except DredPayloadError as e:
        return "error", str(e)


def _check_parsers_agree(data: bytes, max_chunks: int = MAX_CHUNKS) -> None:
    ref = _outcome(reference_parse, data, TABLES, max_chunks)
    got = _outcome(parse_payload, data, TABLES, max_chunks)
    assert got[0] == ref[0] and (got[1] == ref[1])
    for c in (1, 2, 5, MAX_CHUNKS):
        part = _outcome(parse_payload, data, TABLES, max_chunks, chunks=c)
        assert part[0] == ref[0]
        if ref[0] == "error":
            assert part[1] == ref[1]
            continue
        p, full = part[1], ref[1]
        assert p.n_chunks == full.n_chunks and len(p.latents_k) == min(c, full.n_chunks)
        assert (p.q0, p.dq, p.qmax, p.offset) == (full.q0, full.dq, full.qmax, full.offset)
        assert np.array_equal(p.state_k, full.state_k)
        assert np.array_equal(np.asarray(p.latents_k), np.asarray(full.latents_k[:c]))


def _laplace_history(rng, n_steps: int, scale: float):
    b = np.random.default_rng(0).uniform(0.5, 1.5, D)
    zs = (rng.laplace(0, 1, (n_steps, D)) * b * scale).astype(np.float32)
    ss = (rng.laplace(0, 1, (n_steps, S)) * scale).astype(np.float32)
    return zs, ss


def _reference_stream(zs, ss, act, *, duration_ms, budget, prefer="newest", qmax=15, dq_grid=tuple(range(8)),
                      offset=0, q0cap=15):
    """The previous stream path: a ring of quantize_chunks results and encode_dred per packet."""
    ring_z = np.zeros((RING, D), np.float32)
    ring_a = np.zeros(RING, bool)
    ring_k = np.zeros((16, RING, D), np.int32)
    ring_b = np.zeros((16, RING))
    out = []
    for t in range(len(zs)):
        i = t % RING
        k, bits = quantize_chunks(zs[t][None], TABLES)
        ring_z[i], ring_a[i], ring_k[:, i], ring_b[:, i] = zs[t], act[t], k[:, 0], bits[:, 0]
        n = (min(t + 1, RING) + 1) // 2
        picks = (t - 2 * np.arange(n)) % RING
        out.append(encode_dred(ring_z[picks], ss[t], TABLES, duration_ms=duration_ms, budget_bytes=budget,
                               active=ring_a[picks], offset=offset, qmax=qmax, dq_grid=dq_grid,
                               quantized=(ring_k[:, picks], ring_b[:, picks]), prefer=prefer, q0cap=q0cap))
    return out


# ------------------------------------------------------------------ coder

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), budget=st.integers(1, 400), duration_ms=st.sampled_from([40, 200, 520, 1000, 1040]),
       prefer=st.sampled_from(["newest", "mean"]), qmax=st.integers(5, 15), scale=st.sampled_from([0.3, 1.0, 3.0]),
       grid=st.sampled_from([tuple(range(8)), (0,), (7, 2, 5), (3, 3, 1)]), offset=st.integers(0, 3),
       silence=st.floats(0.0, 0.6), q0cap=st.sampled_from([0, 2, 4, 15]))
def test_compiled_coder_equals_encode_dred(seed, budget, duration_ms, prefer, qmax, scale, grid, offset, silence,
                                           q0cap):
    rng = np.random.default_rng(seed)
    n_steps = 70                                   # > 51: the ring wraps
    zs, ss = _laplace_history(rng, n_steps, scale)
    act = rng.random(n_steps) >= silence
    want = _reference_stream(zs, ss, act, duration_ms=duration_ms, budget=budget, prefer=prefer, qmax=qmax,
                             dq_grid=grid, offset=offset, q0cap=q0cap)
    sc = StreamCoder(TABLES, duration_ms=duration_ms, budget_bytes=budget, prefer=prefer, qmax=qmax,
                     dq_grid=grid, offset=offset, q0cap=q0cap)
    for t in range(n_steps):
        got = sc.push(zs[t], ss[t], bool(act[t]))
        assert got == want[t], (t, got, want[t])
    lat, a = sc.history()
    n = (min(n_steps, RING) + 1) // 2
    assert np.array_equal(lat, zs[n_steps - 1 - 2 * np.arange(n)]) and np.array_equal(a, act[n_steps - 1 - 2 * np.arange(n)])


def test_compiled_coder_every_outcome():
    """Budgets from 'nothing fits' to 'everything at q0 = 0', float64 input, a reset."""
    rng = np.random.default_rng(7)
    zs, ss = _laplace_history(rng, 60, 1.5)
    act = np.ones(60, bool)
    act[:6] = False
    act[20:35] = False
    reasons = set()
    for budget in (1, 12, 30, 60, 80, 120, 250, 1000):
        want = _reference_stream(zs.astype(np.float64), ss.astype(np.float64), act, duration_ms=1040, budget=budget)
        sc = StreamCoder(TABLES, duration_ms=1040, budget_bytes=budget)
        got = [sc.push(zs[t].astype(np.float64), ss[t].astype(np.float64), bool(act[t])) for t in range(60)]
        assert got == want
        reasons |= {d.reason for d in got}
        sc.reset()
        assert sc.history()[0].shape == (0, D)
        assert sc.push(zs[0].astype(np.float64), ss[0].astype(np.float64), bool(act[0])) == want[0]
    assert reasons == {"ok", "shortened", "silent", "budget"}


def test_newest_level_cap_trades_depth_for_a_finer_newest_chunk():
    """Under a q0 cap the newest chunk is never coarser than the cap while any capped schedule fits
    one chunk (fewer chunks instead); when none does, every schedule is searched as without it."""
    rng = np.random.default_rng(11)
    zs, ss = _laplace_history(rng, 80, 1.5)
    act = np.ones(80, bool)
    free = StreamCoder(TABLES, duration_ms=1040, budget_bytes=80)
    capped = StreamCoder(TABLES, duration_ms=1040, budget_bytes=80, q0cap=2)
    a = [free.push(zs[t], ss[t], True) for t in range(80)]
    b = [capped.push(zs[t], ss[t], True) for t in range(80)]
    assert max(d.q0 for d in a[40:]) > 2                     # the budget forces coarse levels uncapped ...
    assert all(d.q0 <= 2 and len(d.payload) <= 80 for d in b)   # ... not with the cap,
    assert sum(d.n_chunks for d in b) < sum(d.n_chunks for d in a)   # which carries fewer chunks
    assert b == _reference_stream(zs, ss, act, duration_ms=1040, budget=80, q0cap=2)
    # A budget no capped schedule fits: the cap gives way (the same as uncapped).
    tiny_free = StreamCoder(TABLES, duration_ms=1040, budget_bytes=12)
    tiny_cap = StreamCoder(TABLES, duration_ms=1040, budget_bytes=12, q0cap=0)
    for t in range(30):
        x, y = tiny_free.push(zs[t], ss[t], True), tiny_cap.push(zs[t], ss[t], True)
        if x.payload and x.q0 > 0 and not y.payload:
            raise AssertionError("the cap lost a payload that fits uncapped")


def test_compiled_coder_when_estimates_overshoot():
    """A stream where real encodes exceed the estimate: further candidates, then one chunk fewer."""
    zs, ss = _laplace_history(np.random.default_rng(35), 120, 3.0)
    act = np.ones(120, bool)
    want = _reference_stream(zs, ss, act, duration_ms=1040, budget=160)
    sc = StreamCoder(TABLES, duration_ms=1040, budget_bytes=160)
    got = [sc.push(zs[t], ss[t], True) for t in range(120)]
    assert got == want
    assert {2, 9} <= {d.encodes for d in got}


def test_compiled_coder_rejects_non_finite_and_bad_settings():
    sc = StreamCoder(TABLES)
    z, s = np.zeros(D, np.float32), np.zeros(S, np.float32)
    for bad in (np.nan, np.inf):
        zb = z.copy()
        zb[3] = bad
        with pytest.raises(RateControlError, match="finite"):
            sc.push(zb, s, True)
    sb = s.copy()
    sb[0] = np.nan
    with pytest.raises(RateControlError, match="finite"):
        sc.push(z, sb, True)
    assert sc.history()[0].shape == (0, D)         # nothing was stored
    with pytest.raises(_entropy.EntropyError):
        sc.push(np.zeros(D + 1, np.float32), s, True)
    for kw in ({"duration_ms": 0}, {"budget_bytes": 0}, {"qmax": 16}, {"prefer": "x"}, {"dq_grid": (8,)},
               {"dq_grid": ()}, {"offset": 4}, {"q0cap": 16}, {"q0cap": -1}):
        with pytest.raises(RateControlError):
            StreamCoder(TABLES, **kw)
    assert math.ceil(1040 / CHUNK_MS) == MAX_CHUNKS


# ------------------------------------------------------------------ parser

def _payloads(seed: int, count: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(1, MAX_CHUNKS + 1))
        q0, dq, qmax = int(rng.integers(0, 16)), int(rng.integers(0, 8)), int(rng.integers(0, 16))
        lat = [np.clip(np.round(rng.laplace(0, 1, D) * TABLES.quant_scale[q] * rng.uniform(0.3, 2.0)),
                       -1023, 1023).astype(np.int32) for q in chunk_levels(n, q0, dq, qmax)]
        if rng.random() < 0.2:
            lat[0][0] = int(rng.choice([-1023, 1023, 500]))       # escape tails
        p = DredPayload(q0=q0, dq=dq, qmax=qmax, offset=int(rng.integers(0, 4)),
                        state_k=np.round(rng.laplace(0, 2, S)).astype(np.int32), latents_k=lat)
        try:
            out.append(encode_payload(p, TABLES))
        except DredPayloadError:
            pass
    return out


def test_parser_equals_reference_on_valid_and_mutated_payloads():
    rng = np.random.default_rng(11)
    pays = _payloads(1, 60)
    assert len(pays) > 40
    for data in pays:
        _check_parsers_agree(data)
        _check_parsers_agree(data, max_chunks=int(rng.integers(1, MAX_CHUNKS + 1)))
        for _ in range(6):
            b = bytearray(data)
            kind = rng.integers(0, 4)
            if kind == 0:
                i = int(rng.integers(0, 8 * len(b)))
                b[i // 8] ^= 1 << (i % 8)
            elif kind == 1:
                b = b[:int(rng.integers(0, len(b)))]
            elif kind == 2:
                b += bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8))
            else:
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
            _check_parsers_agree(bytes(b))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=1100), st.integers(1, MAX_CHUNKS))
def test_parser_equals_reference_on_random_bytes(data, max_chunks):
    _check_parsers_agree(data, max_chunks)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q0=st.integers(0, 15), dq=st.integers(0, 7), qmax=st.integers(0, 15), offset=st.integers(0, 3),
       n=st.integers(1, MAX_CHUNKS), seed=st.integers(0, 2**31), big=st.integers(0, 1023))
def test_hypothesis_payloads_round_trip_and_partial(q0, dq, qmax, offset, n, seed, big):
    rng = np.random.default_rng(seed)
    lat = np.clip(np.round(rng.laplace(0, 3, (n, D))), -1023, 1023).astype(np.int32)
    lat[rng.integers(0, n), rng.integers(0, D)] = big
    p = DredPayload(q0=q0, dq=dq, qmax=qmax, offset=offset,
                    state_k=np.round(rng.laplace(0, 2, S)).astype(np.int32), latents_k=list(lat))
    try:
        data = encode_payload(p, TABLES)
    except DredPayloadError:
        return                                          # over 1000 bytes
    assert parse_payload(data, TABLES) == p == reference_parse(data, TABLES)
    _check_parsers_agree(data)


def test_partial_payload_fields_and_argument_checks():
    data = _payloads(3, 1)[0]
    full = parse_payload(data, TABLES)
    part = parse_payload(bytearray(data), TABLES, chunks=1)
    assert part.n_chunks == full.n_chunks and len(part.latents_k) == 1
    assert part.partial == (full.n_chunks > 1) and not full.partial
    assert np.array_equal(part.levels(), full.levels())
    if part.partial:
        with pytest.raises(DredPayloadError, match="partial"):
            encode_payload(part, TABLES)
    for bad in (0, 27, True, 1.5, "2"):
        with pytest.raises(DredPayloadError, match="chunks"):
            parse_payload(data, TABLES, chunks=bad)
