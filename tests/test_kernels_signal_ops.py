"""Network ops for autoregressive signal models: Lag, Shift, scalar Mul, exp activation.

They let the vocoder run whole frames (pitch-lag gathers and history pushes
included) in one call into C; each is checked against numpy on every kernel
variant this CPU runs.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_dred.kernels import (Act, Dense, KernelInputError, Lag, Mul, Network, Shift, available_variants,
                            make_linear, use_variant)

VARIANTS = available_variants()


def lag_ref(h: np.ndarray, lag: float, n: int, pre: int, lo: int, hi: int, s: float = 1.0) -> np.ndarray:
    L = lo if np.isnan(lag) else int(np.clip(np.round(lag), lo, hi))
    H = len(h)
    out = np.empty(n, np.float32)
    for j in range(n):
        p = H - L + j - pre
        while p >= H:
            p -= L
        out[j] = s * h[p]
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_lag_gather_matches_numpy(variant):
    rng = np.random.default_rng(0)
    H, n, pre = 320, 44, 2
    net = Network(buffers={"h": H, "lag": 1, "s": 1, "out": n},
                  ops=[Lag("h", "lag", "out", scale="s", pre=pre, lag_min=32, lag_max=267)])
    lags = [32, 33.4, 40.5, 41.5, 100.0, 266.6, 267, 300.0, 5.0, -7.0, float("nan"), 150.49999]
    with use_variant(variant):
        for lag in lags:
            h = rng.normal(size=H).astype(np.float32)
            s = np.float32(rng.uniform(0.1, 3))
            out = net.step({"h": h, "lag": [lag], "s": [s]}, fetch=["out"])["out"]
            np.testing.assert_array_equal(out, lag_ref(h, lag, n, pre, 32, 267, s))


def test_lag_wraps_several_times_for_short_lags():
    h = np.arange(64, dtype=np.float32)
    net = Network(buffers={"h": 64, "lag": 1, "out": 30}, ops=[Lag("h", "lag", "out", lag_min=4, lag_max=60)])
    out = net.step({"h": h, "lag": [4]}, fetch=["out"])["out"]
    np.testing.assert_array_equal(out, np.tile(h[60:64], 8)[:30])  # periodic continuation of the last lag


def test_shift_pushes_and_equals_numpy():
    net = Network(buffers={"x": 5, "h": 12}, ops=[Shift(["x"], "h")])
    h = np.zeros(12, np.float32)
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = rng.normal(size=5).astype(np.float32)
        h = np.concatenate([h[5:], x])
        np.testing.assert_array_equal(net.step({"x": x}, fetch=["h"])["h"], h)
    full = Network(buffers={"x": 12, "h": 12}, ops=[Shift(["x"], "h")])
    x = rng.normal(size=12).astype(np.float32)
    np.testing.assert_array_equal(full.step({"x": x}, fetch=["h"])["h"], x)


def test_scalar_mul_and_exp():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(6, 4)).astype(np.float32)
    net = Network(buffers={"a": 7, "k": 1, "out": 7, "x": 4, "e": 6, "d": 6},
                  ops=[Mul(["a", "k"], "out"), Dense(["x"], "d", make_linear(W, None, mode="float"), activation="exp"),
                       Act(["d"], "e", "exp")])
    a, x = rng.normal(size=7).astype(np.float32), rng.normal(size=4).astype(np.float32) * 0.3
    r = net.step({"a": a, "k": [-2.5], "x": x}, fetch=["out", "d", "e"])
    np.testing.assert_array_equal(r["out"], a * np.float32(-2.5))
    np.testing.assert_allclose(r["d"], np.exp(W.astype(np.float64) @ x), rtol=2e-6)
    np.testing.assert_allclose(r["e"], np.exp(r["d"].astype(np.float64)), rtol=2e-6)
    lin = make_linear(W, None, mode="float")
    np.testing.assert_allclose(lin.forward(x, activation="exp"), np.exp(W.astype(np.float64) @ x), rtol=2e-6)


@pytest.mark.parametrize("bad", [
    dict(lag_max=319),           # oldest tap before the history start (319 + 2 > 320)
    dict(lag_min=0),             # a zero lag would never wrap
    dict(lag_min=50, lag_max=40),
    dict(pre=-1),
])
def test_lag_rejects_out_of_range_parameters(bad):
    kw = dict(pre=2, lag_min=32, lag_max=267)
    kw.update(bad)
    with pytest.raises(KernelInputError, match="lag"):
        Network(buffers={"h": 320, "lag": 1, "out": 44}, ops=[Lag("h", "lag", "out", **kw)])


def test_bad_shapes_rejected():
    with pytest.raises(KernelInputError, match="single floats"):
        Network(buffers={"h": 320, "lag": 2, "out": 44}, ops=[Lag("h", "lag", "out", lag_min=32, lag_max=267)])
    with pytest.raises(KernelInputError, match="pushes 13"):
        Network(buffers={"x": 13, "h": 12}, ops=[Shift(["x"], "h")])
    with pytest.raises(KernelInputError, match="same or 1"):
        Network(buffers={"a": 7, "k": 2, "out": 7}, ops=[Mul(["a", "k"], "out")])
