"""Network runner: ops against numpy, streaming == one shot, validation.

Float weights are used where the comparison is against numpy (tolerance 5e-5
abs after 40 steps); int8 networks are compared across variants (1e-6).
"""
from __future__ import annotations

import numpy as np
import pytest

import edge_dred.kernels as ck
from edge_dred.kernels import GLU, GRU, Act, Add, Conv1d, Dense, Mul, Network, conv1d_matrix, make_gru, make_linear

VARIANTS = ck.available_variants()


def sig(v):
    return 1 / (1 + np.exp(-v))


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    H = h.size
    gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    r, z = sig(gi[:H] + gh[:H]), sig(gi[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1 - z) * n + z * h


def causal_conv(xs, w, b, dilation):
    """xs (T, C_in), w torch layout (C_out, C_in, K), zero history."""
    T, C = xs.shape
    K = w.shape[2]
    pad = np.concatenate([np.zeros(((K - 1) * dilation, C)), xs])
    out = []
    for t in range(T):
        acc = b.astype(np.float64).copy()
        for k in range(K):
            acc += w[:, :, k] @ pad[t + k * dilation]
        out.append(acc)
    return np.array(out)


def _params(seed=0):
    rng = np.random.default_rng(seed)
    u = lambda *s: rng.uniform(-0.4, 0.4, s).astype(np.float32)  # noqa: E731
    F, C, K, D, H, O = 12, 16, 3, 2, 24, 10
    return dict(F=F, C=C, K=K, D=D, H=H, O=O,
                w1=u(C, F), b1=u(C), wc=u(C, C, K), bc=u(C),
                w_ih=u(3 * H, C + O), w_hh=u(3 * H, H), b_ih=u(3 * H), b_hh=u(3 * H),
                wg=u(H, H), bg=u(H), wo=u(O, H + C), bo=u(O))


def _build(p, mode="float"):
    return Network(
        buffers={"feat": p["F"], "c1": p["C"], "c2": p["C"], "h": p["H"], "g": p["H"], "y": p["O"]},
        ops=[
            Dense(["feat"], "c1", make_linear(p["w1"], p["b1"], mode=mode), activation="tanh"),
            Conv1d(["c1"], "c2", make_linear(conv1d_matrix(p["wc"]), p["bc"], mode=mode),
                   kernel_size=p["K"], dilation=p["D"], activation="relu"),
            # The GRU also sees the previous output y (feedback through a buffer).
            GRU(["c2", "y"], "h", make_gru(p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], mode=mode)),
            GLU(["h"], "g", make_linear(p["wg"], p["bg"], mode=mode)),
            Dense(["g", "c2"], "y", make_linear(p["wo"], p["bo"], mode=mode), activation="tanh"),
        ])


def _reference(p, feats):
    c1 = np.tanh(feats @ p["w1"].T + p["b1"])
    c2 = np.maximum(causal_conv(c1, p["wc"], p["bc"], p["D"]), 0)
    h = np.zeros(p["H"])
    y = np.zeros(p["O"])
    ys = []
    for t in range(len(feats)):
        h = gru_step(np.concatenate([c2[t], y]), h, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        g = h * sig(p["wg"] @ h + p["bg"])
        y = np.tanh(p["wo"] @ np.concatenate([g, c2[t]]) + p["bo"])
        ys.append(y)
    return np.array(ys), h


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_matches_numpy(variant):
    p = _params()
    net = _build(p)
    feats = np.random.default_rng(1).standard_normal((40, p["F"])).astype(np.float32)
    with ck.use_variant(variant):
        out = net.run({"feat": feats}, fetch=["y", "h"])
    ref_y, ref_h = _reference(p, feats)
    assert out["y"].shape == (40, p["O"])
    np.testing.assert_allclose(out["y"], ref_y, atol=5e-5)
    np.testing.assert_allclose(out["h"][-1], ref_h, atol=5e-5)
    np.testing.assert_array_equal(net.buffer("h"), out["h"][-1])


@pytest.mark.parametrize("mode", ["float", "int8"])
def test_streaming_equals_one_shot(mode):
    p = _params(3)
    feats = np.random.default_rng(2).standard_normal((33, p["F"])).astype(np.float32)
    one = _build(p, mode).run({"feat": feats}, fetch=["y"])["y"]
    net = _build(p, mode)
    parts = [net.run({"feat": feats[a:b]}, fetch=["y"])["y"] for a, b in ((0, 7), (7, 8), (8, 30), (30, 33))]
    np.testing.assert_array_equal(np.concatenate(parts), one)
    net.reset()
    np.testing.assert_array_equal(net.run({"feat": feats}, fetch=["y"])["y"], one)
    step = _build(p, mode)
    np.testing.assert_array_equal(np.array([step.step({"feat": f}, ["y"])["y"] for f in feats]), one)


@pytest.mark.parametrize("variant", VARIANTS)
def test_int8_network_variants_agree(variant):
    p = _params(5)
    feats = np.random.default_rng(4).standard_normal((20, p["F"])).astype(np.float32)
    with ck.use_variant("scalar"):
        ref = _build(p, "int8").run({"feat": feats}, fetch=["y"])["y"]
    with ck.use_variant(variant):
        got = _build(p, "int8").run({"feat": feats}, fetch=["y"])["y"]
    np.testing.assert_allclose(got, ref, atol=1e-6)
    ref_f, _ = _reference(p, feats)
    assert np.max(np.abs(got - ref_f)) < 0.05  # quantization error of the whole net


@pytest.mark.parametrize("K,D", [(1, 1), (2, 1), (3, 1), (4, 3)])
def test_conv1d_against_direct(K, D):
    rng = np.random.default_rng(K * 10 + D)
    C_in, C_out, T = 5, 7, 19
    w = rng.standard_normal((C_out, C_in, K)).astype(np.float32)
    b = rng.standard_normal(C_out).astype(np.float32)
    xs = rng.standard_normal((T, C_in)).astype(np.float32)
    net = Network({"x": C_in, "y": C_out},
                  [Conv1d(["x"], "y", make_linear(conv1d_matrix(w), b, mode="float"), kernel_size=K, dilation=D)])
    got = net.run({"x": xs}, ["y"])["y"]
    np.testing.assert_allclose(got, causal_conv(xs, w, b, D), atol=1e-5)
    if K > 1:
        assert net.buffer("y.hist").shape == ((K - 1) * D * C_in,)
        np.testing.assert_array_equal(net.buffer("y.hist")[-C_in:], xs[-1])


def test_conv1d_matches_torch():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Conv1d(4, 6, kernel_size=3, dilation=2)
    xs = np.random.default_rng(0).standard_normal((15, 4)).astype(np.float32)
    with torch.no_grad():
        padded = torch.nn.functional.pad(torch.from_numpy(xs.T)[None], (4, 0))
        ref = conv(padded)[0].numpy().T
    net = Network({"x": 4, "y": 6}, [Conv1d(["x"], "y", make_linear(conv1d_matrix(conv.weight.detach().numpy()),
                                                                    conv.bias.detach().numpy(), mode="float"),
                                            kernel_size=3, dilation=2)])
    np.testing.assert_allclose(net.run({"x": xs}, ["y"])["y"], ref, atol=1e-5)


def test_slices_and_elementwise_ops():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((6, 10)).astype(np.float32)
    net = Network({"a": 10, "p": 4, "s": 4, "t": 8, "cat": 9},
                  [Mul([("a", 0, 4), ("a", 4, 8)], "p"),
                   Add([("a", 0, 4), "p"], "s"),
                   Act(["p", "s"], "t", "tanh"),
                   Act([("a", 8, 10), ("t", 1, 8)], "cat", "none")])
    out = net.run({"a": a}, ["p", "s", "t", "cat"])
    p = a[:, :4] * a[:, 4:8]
    np.testing.assert_allclose(out["p"], p, rtol=1e-6)
    np.testing.assert_allclose(out["s"], a[:, :4] + p, rtol=1e-6)
    np.testing.assert_allclose(out["t"], np.tanh(np.concatenate([p, a[:, :4] + p], 1)), atol=1e-6)
    np.testing.assert_allclose(out["cat"], np.concatenate([a[:, 8:], out["t"][:, 1:]], 1), atol=1e-6)


def test_state_access_and_reset():
    p = _params(9)
    net = _build(p)
    feats = np.random.default_rng(0).standard_normal((5, p["F"])).astype(np.float32)
    net.run({"feat": feats})
    assert np.any(net.buffer("h") != 0) and np.any(net.buffer("c2.hist") != 0)
    net.reset()
    assert not any(np.any(net.buffer(n)) for n in net.buffer_names)
    net.buffer("h")[:] = 0.5  # states can be primed from outside
    y = net.run({"feat": feats[:1]}, ["h"])["h"][0]
    ref_net = _build(p)
    ref = ref_net.run({"feat": feats[:1]}, ["h"])["h"][0]
    assert not np.allclose(y, ref)


def test_bind_equals_run_and_checks_its_arguments():
    p = _params(4)
    a, b = _build(p, "int8"), _build(p, "int8")
    feats = np.random.default_rng(1).standard_normal((7, p["F"])).astype(np.float32)
    run = b.bind(["feat"], ["y", "h"])
    for chunk in (feats[:3], feats[3:4], feats[4:]):      # state carries across calls as with run
        want = a.run({"feat": chunk}, ["y", "h"])
        got = run(len(chunk), chunk)
        assert np.array_equal(got[0], want["y"]) and np.array_equal(got[1], want["h"])
    with pytest.raises(ck.KernelInputError, match="expected 1 feed arrays, got 2"):
        run(1, feats[:1], feats[:1])
    with pytest.raises(ck.KernelInputError, match="expected shape"):
        run(2, feats[:1])
    with pytest.raises(ck.KernelInputError, match="unknown buffer 'nope'"):
        b.bind(["nope"], [])


def test_runner_flushes_denormals():
    net = Network({"x": 1, "y": 1}, [Dense(["x"], "y", make_linear(np.ones((1, 1), np.float32), mode="float"))])
    assert net.run({"x": np.array([[1e-39]], np.float32)}, ["y"])["y"][0, 0] == 0.0
    assert np.float32(1e-39) * np.float32(1) != 0  # caller's mode restored


def test_network_validation():
    lin = make_linear(np.ones((4, 6), np.float32))
    with pytest.raises(ck.KernelInputError, match="unknown buffer 'nope'"):
        Network({"x": 6, "y": 4}, [Dense(["nope"], "y", lin)])
    with pytest.raises(ck.KernelInputError, match=r"op 0 \(Dense\): weights 4x6 vs input 5"):
        Network({"x": 5, "y": 4}, [Dense(["x"], "y", lin)])
    with pytest.raises(ck.KernelInputError, match="out of range"):
        Network({"x": 6, "y": 4}, [Dense([("x", 2, 8)], "y", lin)])
    with pytest.raises(ck.KernelInputError, match="positive int"):
        Network({"x": 0}, [])
    with pytest.raises(ck.KernelInputError, match="exactly two"):
        Network({"x": 4, "y": 4}, [Mul(["x"], "y")])
    with pytest.raises(ck.KernelInputError, match="unknown activation"):
        Network({"x": 6, "y": 4}, [Dense(["x"], "y", lin, activation="gelu")])
    with pytest.raises(ck.KernelInputError, match="GLU"):
        Network({"x": 6, "y": 4}, [GLU(["x"], "y", lin)])
    with pytest.raises(ck.KernelInputError, match="cell"):
        Network({"x": 5, "h": 3}, [GRU(["x"], "h", make_gru(*[np.ones(s, np.float32) for s in
                                                                ((9, 4), (9, 3), (9,), (9,))]))])
    with pytest.raises(ck.KernelInputError, match="1..8 inputs"):
        Network({"x": 1, "y": 9}, [Act(["x"] * 9, "y", "none")])
    net = Network({"x": 6, "y": 4}, [Dense(["x"], "y", lin)])
    with pytest.raises(ck.KernelInputError, match="expected shape"):
        net.run({"x": np.zeros((3, 5))})
    with pytest.raises(ck.KernelInputError, match="unknown buffer"):
        net.run({"x": np.zeros((3, 6))}, fetch=["z"])
    with pytest.raises(ck.KernelInputError, match="history buffer"):
        Network({"x": 2, "y": 2, "y.hist": 3},
                [Conv1d(["x"], "y", make_linear(np.ones((2, 4), np.float32)), kernel_size=2)])
