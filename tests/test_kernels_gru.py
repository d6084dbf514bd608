"""GRU cell against a numpy implementation of torch's reset-after GRU.

Tolerances: float weights 2e-5 abs over 30 steps (activation approximations
< 4e-7 plus float32 rounding); int8 weights against a numpy model of the same
quantization 2e-5; against the float GRU within 0.03 (quantization error).
"""
from __future__ import annotations

import numpy as np
import pytest

import edge_dred.kernels as ck
from edge_dred.quantize import dequantize_int8, expand_block_mask, quantize_input, quantize_int8, recurrent_block_mask

VARIANTS = ck.available_variants()


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def gru_ref(xs, h, w_ih, w_hh, b_ih, b_hh, matvec_i=None, matvec_h=None):
    """torch.nn.GRU equations in float64; optional custom matvecs model quantization."""
    H = h.size
    h = h.astype(np.float64)
    out = []
    for x in xs:
        gi = matvec_i(x) if matvec_i else w_ih @ x + b_ih
        gh = matvec_h(h.astype(np.float32)) if matvec_h else w_hh @ h + b_hh
        r = sigmoid(gi[:H] + gh[:H])
        z = sigmoid(gi[H:2 * H] + gh[H:2 * H])
        n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
        h = (1 - z) * n + z * h
        out.append(h.copy())
    return np.array(out)


def _weights(I, H, seed=0, gain=1.0):
    rng = np.random.default_rng(seed)
    k = gain / np.sqrt(H)
    return (rng.uniform(-k, k, (3 * H, I)).astype(np.float32), rng.uniform(-k, k, (3 * H, H)).astype(np.float32),
            rng.uniform(-k, k, 3 * H).astype(np.float32), rng.uniform(-k, k, 3 * H).astype(np.float32))


def _int8_matvec(q, scale, bias, diag=None):
    def f(x):
        xq, xs = quantize_input(x, 0.0)
        y = (q.astype(np.int64) @ xq.astype(np.int64)).astype(np.float32) * (scale * np.float32(xs)) + bias
        if diag is not None:
            y = y + diag * np.tile(x, 3)
        return y.astype(np.float64)
    return f


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("I,H", [(5, 3), (16, 24), (37, 19), (64, 128)])
def test_gru_float_matches_reference(variant, I, H):
    w_ih, w_hh, b_ih, b_hh = _weights(I, H, seed=I + H, gain=3.0)
    xs = np.random.default_rng(1).standard_normal((30, I)).astype(np.float32)
    h0 = np.random.default_rng(2).uniform(-0.5, 0.5, H).astype(np.float32)
    cell = ck.make_gru(w_ih, w_hh, b_ih, b_hh, mode="float")
    with ck.use_variant(variant):
        got = cell.run(xs, h0)
    ref = gru_ref(xs, h0, w_ih, w_hh, b_ih, b_hh)
    assert got.shape == (30, H)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    with ck.use_variant("scalar"):
        np.testing.assert_allclose(got, cell.run(xs, h0), atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("I,H", [(7, 9), (32, 64), (256, 256)])
def test_gru_int8_matches_quantized_model(variant, I, H):
    w_ih, w_hh, b_ih, b_hh = _weights(I, H, seed=3 * I + H, gain=2.0)
    xs = np.random.default_rng(5).standard_normal((12, I)).astype(np.float32)
    cell = ck.make_gru(w_ih, w_hh, b_ih, b_hh, mode="int8")
    with ck.use_variant(variant):
        got = cell.run(xs)
    qi, si = quantize_int8(w_ih)
    qh, sh = quantize_int8(w_hh)
    model = gru_ref(xs, np.zeros(H, np.float32), None, None, None, None,
                    _int8_matvec(qi, si, b_ih), _int8_matvec(qh, sh, b_hh))
    np.testing.assert_allclose(got, model, atol=2e-5)
    ref = gru_ref(xs, np.zeros(H, np.float32), w_ih, w_hh, b_ih, b_hh)
    assert np.max(np.abs(got - ref)) < 0.03


@pytest.mark.parametrize("variant", VARIANTS)
def test_gru_sparse_recurrent_with_diag(variant):
    I, H = 24, 48
    w_ih, w_hh, b_ih, b_hh = _weights(I, H, seed=9, gain=2.0)
    w_hh[np.arange(3 * H), np.arange(3 * H) % H] += 0.8  # strong diagonals must survive pruning
    xs = np.random.default_rng(6).standard_normal((15, I)).astype(np.float32)
    cell = ck.make_gru(w_ih, w_hh, b_ih, b_hh, mode="int8", rec_mode="sparse", density=0.25)
    assert cell.rec.kind == "sparse" and cell.rec.diag is not None
    with ck.use_variant(variant):
        got = cell.run(xs)
    mask, diag, off = recurrent_block_mask(w_hh, 0.25)
    qi, si = quantize_int8(w_ih)
    qh, sh = quantize_int8(off)
    model = gru_ref(xs, np.zeros(H, np.float32), None, None, None, None,
                    _int8_matvec(qi, si, b_ih), _int8_matvec(qh, sh, b_hh, diag))
    np.testing.assert_allclose(got, model, atol=2e-5)
    # Same thing through the float reference with the effective (pruned + diag) matrix.
    eff = dequantize_int8(qh, sh) * expand_block_mask(mask, off.shape)
    eff[np.arange(3 * H), np.arange(3 * H) % H] = diag
    ref = gru_ref(xs, np.zeros(H, np.float32), w_ih, eff.astype(np.float64), b_ih, b_hh)
    assert np.max(np.abs(got - ref)) < 0.03


def test_gru_step_equals_run():
    w = _weights(10, 16, seed=4)
    cell = ck.make_gru(*w, mode="int8")
    xs = np.random.default_rng(0).standard_normal((5, 10)).astype(np.float32)
    h = np.zeros(16, np.float32)
    steps = []
    for x in xs:
        h = cell.step(x, h)
        steps.append(h)
    np.testing.assert_array_equal(np.array(steps), cell.run(xs))


def test_gru_rejects_bad_shapes():
    w_ih, w_hh, b_ih, b_hh = _weights(4, 6)
    with pytest.raises(ValueError, match="weight_hh"):
        ck.make_gru(w_ih, w_hh[:, :5], b_ih, b_hh)
    cell = ck.make_gru(w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ck.KernelInputError, match="expected x"):
        cell.run(np.zeros((2, 5), np.float32))
    with pytest.raises(ck.KernelInputError, match="h0"):
        cell.run(np.zeros((2, 4), np.float32), np.zeros(5, np.float32))
    lin_a = ck.make_linear(np.ones((18, 4), np.float32))
    lin_b = ck.make_linear(np.ones((12, 4), np.float32))
    with pytest.raises(ck.KernelInputError, match="3H x H"):
        ck.GRUCell(lin_a, lin_b)


def test_reference_matches_torch():
    torch = pytest.importorskip("torch")
    I, H = 11, 13
    gru = torch.nn.GRU(I, H, batch_first=True)
    xs = np.random.default_rng(0).standard_normal((7, I)).astype(np.float32)
    with torch.no_grad():
        out, _ = gru(torch.from_numpy(xs)[None])
    w = [p.detach().numpy() for p in (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)]
    ref = gru_ref(xs, np.zeros(H, np.float32), *w)
    np.testing.assert_allclose(ref, out[0].numpy(), atol=1e-5)
    got = ck.make_gru(*w, mode="float").run(xs)
    np.testing.assert_allclose(got, out[0].numpy(), atol=2e-5)
