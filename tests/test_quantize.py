"""quantize: int8 error bounds, the 16-bit pair rule, block sparsity, weight files."""
from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from edge_dred.quantize import (QuantizationError, WeightFileError, apply_block_mask, block_energy, block_mask,
                      check_int8_weights, dequantize_int8, enforce_pair_limit, expand_block_mask, mask_density,
                      pair_limit, quantize_input, quantize_int8, read_weights, recurrent_block_mask,
                      simulate_pair_int16, split_diagonal, write_weights)
from edge_dred.quantize import weightfile as wf

# ------------------------------------------------------------------ int8


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 33), (300, 17)])
def test_quantize_error_bound(shape):
    rng = np.random.default_rng(shape[0])
    w = (rng.standard_normal(shape) * rng.uniform(0.01, 10, (shape[0], 1))).astype(np.float32)
    q, scale = quantize_int8(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (shape[0],)
    assert q.min() >= -127 and q.max() <= 127
    err = np.abs(w - dequantize_int8(q, scale))
    assert np.all(err <= scale[:, None] * 0.5 * (1 + 1e-5))
    # The largest weight of every row maps to +-127 (full use of the range).
    np.testing.assert_array_equal(np.abs(q).max(axis=1), 127)


def test_quantize_zero_rows_and_bad_input():
    w = np.zeros((3, 4), np.float32)
    w[1, 2] = -2.0
    q, scale = quantize_int8(w)
    assert np.all(q[0] == 0) and q[1, 2] == -127 and scale[0] > 0
    with pytest.raises(QuantizationError, match="NaN"):
        quantize_int8(np.array([[1.0, np.nan]]))
    with pytest.raises(QuantizationError, match="2-D"):
        quantize_int8(np.ones(4))


def test_pair_limit_values():
    assert pair_limit() == 258
    assert pair_limit(128) == 255
    assert pair_limit(200) == 163
    with pytest.raises(QuantizationError):
        pair_limit(0)


def test_checker_rejects_minus_128_with_location():
    q = np.zeros((4, 6), np.int8)
    q[2, 5] = -128
    with pytest.raises(QuantizationError, match=r"-128 at row 2, col 5"):
        check_int8_weights(q)
    with pytest.raises(QuantizationError, match="int8"):
        check_int8_weights(q.astype(np.int16))


def test_pair_rule_adversarial():
    """Pairs that overflow the NEON int16 lane are found by the checker, and the
    numpy model of that lane shows the overflow really happens."""
    # Inputs allowed to reach 200 (e.g. a wider activation quantizer): pairs of 127 overflow.
    q = np.zeros((3, 8), np.int8)
    q[1, 2:4] = [127, 127]
    q[2, 6:8] = [100, -60]  # 160 <= 163: fine
    with pytest.raises(QuantizationError, match=r"row 1, cols 2,3"):
        check_int8_weights(q, x_max=200)
    x = np.zeros(8, np.int32)
    x[2:4] = 200
    exact = q.astype(np.int64) @ x
    assert simulate_pair_int16(q, x)[1] != exact[1]  # 50800 wraps in 16 bits
    fixed = enforce_pair_limit(q, x_max=200)
    check_int8_weights(fixed, x_max=200)
    assert np.abs(fixed[1, 2:4]).sum() <= 163 and np.all(fixed[2] == q[2])
    np.testing.assert_array_equal(simulate_pair_int16(fixed, x), fixed.astype(np.int64) @ x)


def test_pair_rule_holds_for_quantized_weights_at_worst_case():
    rng = np.random.default_rng(3)
    w = rng.choice([-1.0, 1.0], (40, 64)) * rng.uniform(0.99, 1.0, (40, 64))
    q, _ = quantize_int8(w)
    check_int8_weights(q)
    x = np.where(q[0] >= 0, 127, -127).astype(np.int32)  # aligns every product with row 0's signs
    np.testing.assert_array_equal(simulate_pair_int16(q, x), q.astype(np.int64) @ x)
    # The -128 * -128 pair is the one int8 case that cannot fit: the checker rejects it.
    bad = np.full((1, 2), -128, np.int8)
    assert simulate_pair_int16(bad, np.array([-128, -128]))[0] != 32768
    with pytest.raises(QuantizationError):
        check_int8_weights(bad)


def test_quantize_input_model():
    x = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
    q, s = quantize_input(x)
    assert s == pytest.approx(2.0 / 127) and q.tolist() == [32, -64, 16, 127]
    q, s = quantize_input(x, 1 / 127)
    assert q.tolist() == [64, -127, 32, 127]  # 2.0 saturates
    q, s = quantize_input(np.zeros(3))
    assert s == 0 and not q.any()


# ------------------------------------------------------------------ sparsity


def test_block_mask_density_and_choice():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((37, 50)) * 0.01
    w[8:16, 20:24] = 5.0  # one dominant block must be kept
    for d in (0.05, 0.1, 0.5, 1.0):
        m = block_mask(w, d)
        assert m.shape == (5, 13)
        assert m.sum() == int(np.ceil(d * m.size))
        assert m[1, 5]
        e = block_energy(w)
        assert e[m].min() >= e[~m].max() if (~m).any() else True
    assert mask_density(block_mask(w, 0.1)) == pytest.approx(7 / 65)
    with pytest.raises(QuantizationError, match="density"):
        block_mask(w, 0.0)
    with pytest.raises(QuantizationError, match="density"):
        block_mask(w, 1.5)


def test_expand_and_apply_mask():
    m = np.array([[True, False], [False, True]])
    e = expand_block_mask(m, (13, 7))
    assert e.shape == (13, 7) and e.dtype == np.float32
    assert e[:8, :4].all() and not e[:8, 4:].any() and e[8:, 4:].all() and not e[8:, :4].any()
    w = np.ones((13, 7), np.float32)
    np.testing.assert_array_equal(apply_block_mask(w, m), e)
    with pytest.raises(QuantizationError, match="does not cover"):
        expand_block_mask(m, (20, 7))


def test_split_diagonal_and_recurrent_mask():
    rng = np.random.default_rng(1)
    H = 16
    w = rng.standard_normal((3 * H, H)).astype(np.float32)
    off, diag = split_diagonal(w)
    r = np.arange(3 * H)
    np.testing.assert_array_equal(diag, w[r, r % H])
    assert np.all(off[r, r % H] == 0)
    back = off.copy()
    back[r, r % H] = diag
    np.testing.assert_array_equal(back, w)
    mask, d2, pruned = recurrent_block_mask(w, 0.2)
    np.testing.assert_array_equal(d2, diag)
    assert mask_density(mask) == pytest.approx(np.ceil(0.2 * mask.size) / mask.size)
    assert np.all(pruned[expand_block_mask(mask, w.shape) == 0] == 0)
    with pytest.raises(QuantizationError, match="multiple"):
        split_diagonal(np.ones((10, 4)))


# ------------------------------------------------------------------ weight files

def _arrays():
    rng = np.random.default_rng(7)
    return {
        "gru.w_hh": rng.integers(-127, 128, (48, 16)).astype(np.int8),
        "gru.scale": rng.random(48).astype(np.float32),
        "idx": np.arange(11, dtype=np.int32),
        "f64": rng.standard_normal((2, 3, 4)),
        "scalar": np.array(3.5, np.float32),
        "empty": np.zeros((0, 5), np.float16),
        "u8": np.arange(5, dtype=np.uint8),
    }


def test_weight_file_round_trip(tmp_path):
    p = tmp_path / "m.bin"
    arrays = _arrays()
    meta = {"model": "plc", "version": "1.2", "hidden": 16}
    digest = write_weights(p, arrays, meta)
    got, m = read_weights(p, expect_model="plc", expect_version="1.2",
                          expect_arrays={"gru.w_hh": (48, 16), "gru.scale": ((48,), np.float32)})
    assert m == meta
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
        if got[k].size:
            assert got[k].ctypes.data % 64 == 0
        assert not got[k].flags.writeable
    raw = p.read_bytes()
    assert raw[:8] == b"EDREDWTS" and hashlib.sha256(raw[80:]).hexdigest() == digest
    hdr = wf.HEADER.unpack(raw[:80])
    assert hdr[7] % 64 == 0 and hdr[8] == len(raw)


def test_weight_file_errors(tmp_path):
    p = tmp_path / "m.bin"
    write_weights(p, _arrays(), {"model": "plc", "version": "1"})
    raw = p.read_bytes()

    def bad(data: bytes, match: str, **kw):
        q = tmp_path / "bad.bin"
        q.write_bytes(data)
        with pytest.raises(WeightFileError, match=match):
            read_weights(q, **kw)

    bad(raw[:-10], "truncated")
    bad(raw[:40], "truncated")
    flipped = bytearray(raw)
    flipped[-3] ^= 0x40
    bad(bytes(flipped), "sha256 mismatch")
    bad(b"NOTMAGIC" + raw[8:], "not an edge-dred weight file")
    bad(raw[:8] + struct.pack("<I", 2) + raw[12:], "unsupported weight file format 2")
    with pytest.raises(WeightFileError, match="model is 'plc', expected 'vocoder'"):
        read_weights(p, expect_model="vocoder")
    with pytest.raises(WeightFileError, match="version is '1', expected '2'"):
        read_weights(p, expect_version="2")
    with pytest.raises(WeightFileError, match="lacks array 'gru.w_ih'"):
        read_weights(p, expect_arrays={"gru.w_ih": (48, 8)})
    with pytest.raises(WeightFileError, match=r"array 'gru.w_hh' has shape \(48, 16\), expected \(48, 8\)"):
        read_weights(p, expect_arrays={"gru.w_hh": (48, 8)})
    with pytest.raises(WeightFileError, match="dtype"):
        read_weights(p, expect_arrays={"gru.w_hh": ((48, 16), np.float32)})
    with pytest.raises(WeightFileError, match="cannot open"):
        read_weights(tmp_path / "missing.bin")


def _forge(table: bytes, data: bytes, n_arrays: int, meta: bytes = b'{"model":"m","version":"1"}') -> bytes:
    """A file with a *valid* checksum around a hostile table."""
    data_offset = wf._align(wf.HEADER.size + len(meta) + len(table))
    body = bytearray(data_offset - wf.HEADER.size + len(data))
    body[:len(meta)] = meta
    body[len(meta):len(meta) + len(table)] = table
    body[data_offset - wf.HEADER.size:] = data
    hdr = wf.HEADER.pack(wf.MAGIC, wf.FORMAT_VERSION, 0, len(meta), n_arrays, len(table), 0, data_offset,
                         wf.HEADER.size + len(body), hashlib.sha256(body).digest())
    return hdr + bytes(body)


def _entry(name: bytes, code: int, dims: tuple, off: int, nbytes: int) -> bytes:
    return (struct.pack("<H", len(name)) + name + struct.pack("<BB", code, len(dims))
            + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<QQ", off, nbytes))


@pytest.mark.parametrize("table,n,match", [
    (_entry(b"w", 1, (1 << 40, 1 << 40), 0, 64), 1, "out of range|do not match"),
    (_entry(b"w", 1, (128,), 0, 128), 1, "outside the data section"),
    (_entry(b"w", 1, (64,), 8, 64), 1, "misaligned"),
    (_entry(b"w", 99, (64,), 0, 64), 1, "unknown dtype"),
    (_entry(b"w", 1, (64,), 0, 64)[:-4], 1, "truncated"),
    (_entry(b"w", 1, (64,), 0, 64), 2, "truncated"),
    (_entry(b"w", 1, (64,), 0, 64) + b"xx", 1, "trailing"),
    (_entry(b"w", 1, (64,), 0, 64) * 2, 2, "twice"),
    (_entry(b"w", 1, (64,) * 9, 0, 64), 1, "dimensions"),
    (struct.pack("<H", 0), 1, "name length"),
    (_entry(b"\xff\xfe", 1, (64,), 0, 64), 1, "UTF-8"),
])
def test_weight_file_hostile_tables(tmp_path, table, n, match):
    p = tmp_path / "h.bin"
    p.write_bytes(_forge(table, bytes(64), n))
    with pytest.raises(WeightFileError, match=match):
        read_weights(p)


def test_weight_file_hostile_header_and_meta(tmp_path):
    p = tmp_path / "h.bin"
    good = _forge(_entry(b"w", 1, (64,), 0, 64), bytes(64), 1)
    read_weights_ok = p.write_bytes(good) and read_weights(p)
    assert read_weights_ok[0]["w"].shape == (64,)
    fields = list(wf.HEADER.unpack(good[:80]))
    fields[3] = 1 << 30  # meta_len beyond the cap
    p.write_bytes(wf.HEADER.pack(*fields) + good[80:])
    with pytest.raises(WeightFileError, match="out of range"):
        read_weights(p)
    p.write_bytes(_forge(b"", b"", 0, meta=b"[1, 2]"))
    with pytest.raises(WeightFileError, match="not a JSON object"):
        read_weights(p)
    p.write_bytes(_forge(b"", b"", 0, meta=b"\xff{"))
    with pytest.raises(WeightFileError, match="UTF-8 JSON"):
        read_weights(p)


def test_write_weights_validation(tmp_path):
    with pytest.raises(WeightFileError, match="model"):
        write_weights(tmp_path / "a.bin", {"w": np.zeros(3)}, {"version": "1"})
    with pytest.raises(WeightFileError, match="dtype"):
        write_weights(tmp_path / "a.bin", {"w": np.zeros(3, complex)}, {"model": "m", "version": "1"})
    with pytest.raises(WeightFileError, match="name"):
        write_weights(tmp_path / "a.bin", {"": np.zeros(3)}, {"model": "m", "version": "1"})
    with pytest.raises(WeightFileError, match="JSON"):
        write_weights(tmp_path / "a.bin", {"w": np.zeros(3)}, {"model": "m", "version": "1", "x": object()})


def test_weights_feed_kernels(tmp_path):
    """Quantize -> file -> kernels gives the same layer as quantizing in memory."""
    import edge_dred.kernels as ck
    rng = np.random.default_rng(2)
    w = rng.standard_normal((40, 24)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    q, s = quantize_int8(w)
    write_weights(tmp_path / "l.bin", {"q": q, "s": s, "b": b}, {"model": "t", "version": "1"})
    a, _ = read_weights(tmp_path / "l.bin", expect_model="t",
                        expect_arrays={"q": ((40, 24), np.int8), "s": (40,), "b": (40,)})
    x = rng.standard_normal(24).astype(np.float32)
    np.testing.assert_array_equal(ck.linear_from_int8(a["q"], a["s"], a["b"]).forward(x),
                                  ck.make_linear(w, b, mode="int8").forward(x))
