"""Kernel variants against the scalar reference and against numpy.

Tolerances:
* int8 dense / sparse: integer sums are exact, the final scaling uses the same
  float operations in every variant -> variants must equal scalar exactly;
  scalar must match a numpy model of the quantization to rtol 1e-6 and the
  float product within the quantization bound (see _int8_bound).
* float: |y - W x| <= 1e-5 * sum|w||x| (summation order / FMA differ).
* tanh/sigmoid/exp: abs 4e-7 / 2e-7, relative 4e-7 against float64.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import edge_dred.kernels as ck
from edge_dred.kernels.packing import (nonzero_block_mask, pack_float, pack_int8, pack_sparse_int8, unpack_float,
                                    unpack_int8, unpack_sparse_int8)
from edge_dred.quantize import block_mask, expand_block_mask, quantize_input, quantize_int8

VARIANTS = ck.available_variants()
SHAPES = [(1, 1), (3, 7), (8, 4), (9, 5), (16, 33), (37, 53), (64, 130), (129, 257)]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _int8_model(q, scale, x, bias=None, input_scale=0.0, diag=None):
    """numpy model of an int8 layer: exact integer sum, then float32 scaling."""
    xq, xs = quantize_input(x, input_scale)
    acc = q.astype(np.int64) @ xq.astype(np.int64)
    y = acc.astype(np.float32) * (scale.astype(np.float32) * np.float32(xs))
    if bias is not None:
        y = y + bias.astype(np.float32)
    if diag is not None:
        y = y + diag * np.tile(x, len(diag) // len(x))
    return y


def _int8_bound(w, x):
    """|W x - y_int8| bound: per-element errors <= max|w_row|/254 and max|x|/254."""
    wmax = np.abs(w).max(axis=1)
    xmax = np.abs(x).max()
    cols = w.shape[1]
    return cols * wmax * xmax * (2.0 / 254 + 1.0 / 254 ** 2) + 1e-6


def test_variant_listing():
    assert VARIANTS[0] == "scalar"
    assert ck.active_variant() in VARIANTS
    assert ck.best_variant() == VARIANTS[-1]
    assert set(ck.compiled_variants()) <= set(ck.KNOWN_VARIANTS)
    if ck.isa() == "x86_64":
        assert ck.compiled_variants() == ["scalar", "sse41", "avx2", "avx2_vnni"]
    elif ck.isa() == "aarch64":
        assert ck.compiled_variants() == ["scalar", "neon", "neon_dotprod"]


def test_set_variant_errors_and_restore():
    before = ck.active_variant()
    with pytest.raises(ValueError, match="unknown kernel variant"):
        ck.set_variant("avx9000")
    foreign = "neon" if ck.isa() == "x86_64" else "avx2"
    with pytest.raises(ValueError, match="not compiled"):
        ck.set_variant(foreign)
    with ck.use_variant("scalar"):
        assert ck.active_variant() == "scalar"
    assert ck.active_variant() == before


def _import_with_env(value: str) -> subprocess.CompletedProcess:
    code = "import warnings; warnings.simplefilter('always'); import edge_dred.kernels as c; print(c.active_variant())"
    env = dict(os.environ, EDGE_DRED_KERNELS=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_env_var_forces_variant():
    r = _import_with_env("scalar")
    assert r.returncode == 0 and r.stdout.strip() == "scalar"
    r = _import_with_env("bogus")
    assert r.returncode != 0 and "not a kernel variant" in r.stderr
    foreign = "neon" if ck.isa() == "x86_64" else "avx2"
    r = _import_with_env(foreign)
    assert r.returncode == 0 and "RuntimeWarning" in r.stderr
    assert r.stdout.strip() == ck.best_variant()


# ------------------------------------------------------------------ packing

@pytest.mark.parametrize("rows,cols", SHAPES)
def test_packing_round_trip(rows, cols):
    rng = _rng(rows * 1000 + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    np.testing.assert_array_equal(unpack_float(pack_float(w), rows, cols), w)
    q = rng.integers(-127, 128, (rows, cols)).astype(np.int8)
    np.testing.assert_array_equal(unpack_int8(pack_int8(q), rows, cols), q)
    m = rng.random(((rows + 7) // 8, (cols + 3) // 4)) < 0.4
    p, idx = pack_sparse_int8(q, m)
    qm = (q * expand_block_mask(m, q.shape)).astype(np.int8)
    np.testing.assert_array_equal(unpack_sparse_int8(p, idx, rows, cols), qm)
    assert p.size == 32 * m.sum()


# ------------------------------------------------------------------ dense float

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_float_matvec(variant, rows, cols):
    rng = _rng(rows + 7 * cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal(rows).astype(np.float32)
    x = rng.standard_normal((3, cols)).astype(np.float32)
    lin = ck.make_linear(w, b, mode="float")
    with ck.use_variant(variant):
        y = lin.forward(x)
    with ck.use_variant("scalar"):
        ref = lin.forward(x)
    exact = x.astype(np.float64) @ w.T.astype(np.float64) + b
    tol = 1e-5 * (np.abs(x) @ np.abs(w).T + np.abs(b)) + 1e-6
    assert np.all(np.abs(y - exact) <= tol)
    assert np.all(np.abs(y - ref) <= tol)


# ------------------------------------------------------------------ int8 dense / sparse

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_int8_matvec(variant, rows, cols):
    rng = _rng(3 * rows + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal(rows).astype(np.float32)
    x = rng.uniform(-3, 3, (4, cols)).astype(np.float32)
    lin = ck.make_linear(w, b, mode="int8")
    q, scale = quantize_int8(w)
    with ck.use_variant(variant):
        y = lin.forward(x)
    with ck.use_variant("scalar"):
        ref = lin.forward(x)
    np.testing.assert_array_equal(y, ref)
    for t in range(x.shape[0]):
        np.testing.assert_allclose(y[t], _int8_model(q, scale, x[t], b), rtol=1e-6, atol=1e-6)
        assert np.all(np.abs(y[t] - (w.astype(np.float64) @ x[t] + b)) <= _int8_bound(w, x[t]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_int8_extreme_values(variant):
    """Worst case for the 16-bit pair sums: all weights and inputs at +-127."""
    rng = _rng(5)
    rows, cols = 24, 68
    q = np.where(rng.random((rows, cols)) < 0.5, -127, 127).astype(np.int8)
    q[:8] = 127  # rows whose pairs all reach 127*127*2 with x = +127
    scale = np.ones(rows, np.float32)
    lin = ck.linear_from_int8(q, scale, input_scale=1.0)
    x = np.full(cols, 127.0, np.float32)
    x[1::3] = -127.0
    with ck.use_variant(variant):
        y = lin.forward(x)
    exact = q.astype(np.int64) @ x.astype(np.int64)
    np.testing.assert_array_equal(y, exact.astype(np.float32))
    sp = ck.linear_from_int8(q, scale, input_scale=1.0, sparse=True)
    with ck.use_variant(variant):
        np.testing.assert_array_equal(sp.forward(x), exact.astype(np.float32))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rows,cols", [(8, 4), (9, 5), (40, 36), (130, 67), (384, 1152)])
def test_sparse_matvec(variant, rows, cols):
    rng = _rng(rows * 3 + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal(rows).astype(np.float32)
    mask = block_mask(w, 0.3)
    mask[0, :] = False  # a row group with no blocks at all: output must be the bias
    lin = ck.make_linear(w, b, mode="sparse", mask=mask)
    q, scale = quantize_int8((w * expand_block_mask(mask, w.shape)).astype(np.float32))
    dense = ck.linear_from_int8(q, scale, b)
    x = rng.standard_normal((2, cols)).astype(np.float32)
    with ck.use_variant(variant):
        y = lin.forward(x)
        yd = dense.forward(x)
    with ck.use_variant("scalar"):
        ref = lin.forward(x)
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(y, yd)  # skipping zero blocks changes nothing
    np.testing.assert_array_equal(y[:, :min(8, rows)], np.broadcast_to(b[:min(8, rows)], (2, min(8, rows))))
    for t in range(2):
        np.testing.assert_allclose(y[t], _int8_model(q, scale, x[t], b), rtol=1e-6, atol=1e-6)


def test_sparse_all_empty():
    q = np.zeros((16, 12), np.int8)
    lin = ck.linear_from_int8(q, np.ones(16), np.arange(16, dtype=np.float32), sparse=True)
    assert lin.weights.size == 0
    np.testing.assert_array_equal(lin.forward(np.ones(12, np.float32)), np.arange(16, dtype=np.float32))


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixed_input_scale_saturates(variant):
    rng = _rng(11)
    w = rng.standard_normal((20, 30)).astype(np.float32)
    q, scale = quantize_int8(w)
    lin = ck.linear_from_int8(q, scale, input_scale=1 / 127)
    x = rng.uniform(-2, 2, 30).astype(np.float32)  # half the inputs saturate at +-1
    with ck.use_variant(variant):
        y = lin.forward(x)
    np.testing.assert_allclose(y, _int8_model(q, scale, x, input_scale=1 / 127), rtol=1e-6, atol=1e-6)
    clipped = np.clip(x, -1, 1)
    assert np.all(np.abs(y - w @ clipped) <= _int8_bound(w, clipped))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n", [1, 5, 16, 31, 32, 33, 100, 1027])
@pytest.mark.parametrize("input_scale", [0.0, 1 / 127, 0.02])
def test_input_quantization_matches_model(variant, n, input_scale):
    from edge_dred.kernels._kernels import quantize_input as kq
    rng = _rng(n)
    x = rng.uniform(-3, 3, n).astype(np.float32)
    x[::7] = np.round(x[::7] * 4) / 4  # exact ties when the step is 1/127 or 0.02 are rare; add some
    if n > 3:
        x[3] = np.nan
    with ck.use_variant(variant):
        q, s = kq(x, input_scale)
    qm, sm = quantize_input(x, input_scale)
    assert s == pytest.approx(sm, rel=1e-7)
    np.testing.assert_array_equal(q, qm)


def test_zero_and_nan_inputs_are_safe():
    w = _rng(1).standard_normal((9, 10)).astype(np.float32)
    lin = ck.make_linear(w, mode="int8")
    np.testing.assert_array_equal(lin.forward(np.zeros(10, np.float32)), np.zeros(9, np.float32))
    x = np.ones(10, np.float32)
    x[3] = np.nan
    assert lin.forward(x).shape == (9,)  # defined behaviour, no crash (NaN saturates)


# ------------------------------------------------------------------ diag

@pytest.mark.parametrize("variant", VARIANTS)
def test_diag(variant):
    rng = _rng(2)
    H = 12
    w = rng.standard_normal((3 * H, H)).astype(np.float32)
    d = rng.standard_normal(3 * H).astype(np.float32)
    x = rng.standard_normal(H).astype(np.float32)
    lin = ck.make_linear(w, mode="float", diag=d)
    with ck.use_variant(variant):
        y = lin.forward(x)
    np.testing.assert_allclose(y, w @ x + d * np.tile(x, 3), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ activations

GRID = np.concatenate([np.linspace(-30, 30, 60001), [-100, -88, -87.5, 87.9, 88.5, 100, 0.0, -0.0, 1e-30]])
GRID = GRID.astype(np.float32)


@pytest.mark.parametrize("variant", VARIANTS)
def test_activation_error_bounds(variant):
    x64 = GRID.astype(np.float64)
    with ck.use_variant(variant):
        t = ck.vec_tanh(GRID)
        s = ck.vec_sigmoid(GRID)
        xe = np.linspace(-87, 88, 50001).astype(np.float32)
        e = ck.vec_exp(xe)
    assert np.max(np.abs(t - np.tanh(x64))) < 4e-7
    assert np.max(np.abs(s - 1 / (1 + np.exp(-x64)))) < 2e-7
    assert np.max(np.abs(e / np.exp(xe.astype(np.float64)) - 1)) < 4e-7
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 17, 33])
def test_activation_tails_match_scalar(variant, n):
    x = _rng(n).uniform(-8, 8, n).astype(np.float32)
    with ck.use_variant(variant):
        got = [ck.vec_tanh(x), ck.vec_sigmoid(x), ck.vec_exp(x)]
    with ck.use_variant("scalar"):
        ref = [ck.vec_tanh(x), ck.vec_sigmoid(x), ck.vec_exp(x)]
    tol = 4e-7 if ck.isa() == "armv7" else 2e-7  # ARMv7 NEON has no vector divide
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


def test_activation_shapes():
    x = np.zeros((2, 3), np.float32)
    assert ck.vec_tanh(x).shape == (2, 3)
    assert ck.vec_exp(np.zeros(0, np.float32)).shape == (0,)


@pytest.mark.parametrize("act,fn", [("tanh", np.tanh), ("sigmoid", lambda v: 1 / (1 + np.exp(-v))),
                                    ("relu", lambda v: np.maximum(v, 0)), ("none", lambda v: v)])
def test_forward_activation(act, fn):
    rng = _rng(4)
    w = rng.standard_normal((19, 21)).astype(np.float32)
    x = rng.standard_normal(21).astype(np.float32)
    lin = ck.make_linear(w, mode="float")
    np.testing.assert_allclose(lin.forward(x, activation=act), fn((w @ x).astype(np.float64)), atol=1e-5)
    with pytest.raises(ValueError, match="unknown activation"):
        lin.forward(x, activation="swish")


# ------------------------------------------------------------------ validation

def test_linear_rejects_bad_inputs():
    q = np.zeros((9, 5), np.int8)
    with pytest.raises(ck.KernelInputError, match="dtype"):
        ck.Linear("int8", 9, 5, pack_int8(q).astype(np.int16), scale=np.ones(9))
    with pytest.raises(ck.KernelInputError, match="inconsistent shapes"):
        ck.Linear("int8", 9, 5, pack_int8(q)[:-1], scale=np.ones(9))
    with pytest.raises(ck.KernelInputError, match="inconsistent shapes"):
        ck.Linear("int8", 9, 5, pack_int8(q), scale=np.ones(9), bias=np.ones(8))
    with pytest.raises(ck.KernelInputError, match="unknown weight kind"):
        ck.Linear("int4", 9, 5, pack_int8(q), scale=np.ones(9))
    with pytest.raises(ck.KernelInputError, match="rows and cols"):
        ck.Linear("float", 0, 5, np.zeros(0, np.float32))
    with pytest.raises(ck.KernelInputError, match="non-finite"):
        ck.Linear("int8", 9, 5, pack_int8(q), scale=np.full(9, np.inf))
    with pytest.raises(ck.KernelInputError, match="diag"):
        ck.make_linear(np.ones((9, 5), np.float32), mode="float", diag=np.ones(9)).forward(np.ones(5))
    lin = ck.make_linear(np.ones((4, 6), np.float32), mode="int8")
    with pytest.raises(ck.KernelInputError, match="expected x of shape"):
        lin.forward(np.ones(5, np.float32))
    with pytest.raises(ck.KernelInputError, match="outside"):
        ck.linear_from_int8(np.full((4, 4), -128, np.int8), np.ones(4))


@pytest.mark.parametrize("idx", [
    [2, 0, 4, 1],          # second group announces a block that is missing
    [1, 0],                # one group missing entirely
    [-1, 1, 0],            # negative count
    [1, 3, 1, 0],          # misaligned column
    [1, 8, 1, 0],          # column past the end (cols_pad = 8)
    [1, -4, 1, 0],         # negative column
    [1, 0, 1, 0, 7],       # trailing garbage
    [3, 0, 4, 0, 0],       # more blocks than columns allow
])
def test_sparse_index_hostile(idx):
    rows, cols = 16, 8
    n_blocks = 2
    w = np.zeros(32 * n_blocks, np.int8)
    with pytest.raises(ck.KernelInputError, match="sparse index"):
        ck.Linear("sparse", rows, cols, w, scale=np.ones(rows), idx=np.asarray(idx, np.int32))


def test_sparse_index_weight_count_mismatch():
    with pytest.raises(ck.KernelInputError, match="sparse index"):
        ck.Linear("sparse", 16, 8, np.zeros(32, np.int8), scale=np.ones(16), idx=np.array([1, 0, 1, 4], np.int32))


# ------------------------------------------------------------------ flush to zero

def test_ftz_inside_calls_and_restored():
    assert ck.ftz_probe(inside_run=True) & 1  # denormal results flushed during kernel calls
    assert ck.ftz_probe() == 0  # caller's mode untouched outside
    lin = ck.make_linear(np.ones((1, 1), np.float32), mode="float")
    tiny = np.float32(1e-39)  # a float32 denormal
    assert lin.forward(np.array([tiny], np.float32))[0] == 0.0
    assert np.float32(tiny) * np.float32(1.0) != 0.0  # still denormal-capable after the call


def test_nonzero_block_mask():
    q = np.zeros((10, 9), np.int8)
    q[9, 8] = 1
    m = nonzero_block_mask(q)
    assert m.shape == (2, 3) and m.sum() == 1 and m[1, 2]
