"""Tests for edge_dred.loss: trace parsing, model statistics, seeding."""
from __future__ import annotations

import numpy as np
import pytest

from edge_dred.loss import (
    GilbertElliott,
    NoLoss,
    TraceFormatError,
    TraceLoss,
    UniformLoss,
    load_trace,
    loss_stats,
)


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# ---------------------------------------------------------------- traces


def test_load_trace_crlf_whitespace_and_trailing_blank_lines(tmp_path):
    p = _write(tmp_path, "t.txt", b"0\r\n1\r\n  1 \r\n\t0\r\n1\r\n\r\n\n  \n")
    t = load_trace(p)
    assert t.dtype == bool
    assert t.tolist() == [False, True, True, False, True]


def test_load_trace_lf_no_final_newline(tmp_path):
    assert load_trace(_write(tmp_path, "t.txt", b"1\n0\n0")).tolist() == [True, False, False]


@pytest.mark.parametrize(
    "data, line",
    [
        (b"0\n1\n2\n", 3),
        (b"0\n\n1\n", 2),  # blank line inside the trace
        (b"0\n1 0\n", 2),
        (b"0\n0\n0\nyes\n", 4),
        (b"0\r\n0.5\r\n", 2),
        (b"0\n\xff\n", 2),
    ],
)
def test_load_trace_errors_name_file_and_line(tmp_path, data, line):
    p = _write(tmp_path, "bad.txt", data)
    with pytest.raises(TraceFormatError) as ei:
        load_trace(p)
    assert isinstance(ei.value, ValueError)
    assert f"bad.txt:{line}:" in str(ei.value)


@pytest.mark.parametrize("data", [b"", b"\n\n \r\n"])
def test_load_trace_empty(tmp_path, data):
    with pytest.raises(TraceFormatError, match="empty"):
        load_trace(_write(tmp_path, "e.txt", data))


def test_load_trace_missing_file(tmp_path):
    with pytest.raises(TraceFormatError, match="cannot read"):
        load_trace(tmp_path / "nope.txt")


def test_load_trace_size_bound(tmp_path, monkeypatch):
    import edge_dred.loss as loss

    monkeypatch.setattr(loss, "MAX_TRACE_BYTES", 10)
    with pytest.raises(TraceFormatError, match="larger than"):
        load_trace(_write(tmp_path, "big.txt", b"0\n" * 6))
    monkeypatch.setattr(loss, "MAX_TRACE_BYTES", 1000)
    monkeypatch.setattr(loss, "MAX_TRACE_LINES", 3)
    with pytest.raises(TraceFormatError, match="more than 3 lines"):
        load_trace(_write(tmp_path, "long.txt", b"0\n" * 4))


def test_trace_loss_wraps_and_offsets(tmp_path):
    p = _write(tmp_path, "w.txt", b"1\n0\n0\n1\n0\n")
    tl = TraceLoss(p)
    m = tl.mask(12)
    assert m.tolist() == [True, False, False, True, False] * 2 + [True, False]
    assert TraceLoss(p, offset=3).mask(4).tolist() == [True, False, True, False]
    # Offsets reduce modulo the trace length.
    assert TraceLoss(p, offset=8).mask(5).tolist() == TraceLoss(p, offset=3).mask(5).tolist()
    assert "w" in tl.describe() and "40.0%" in tl.describe()
    assert TraceLoss(np.array([0, 1]), offset=0).mask(3).tolist() == [False, True, False]


def test_trace_loss_rejects_bad_arrays():
    with pytest.raises(ValueError):
        TraceLoss(np.array([], dtype=bool))
    with pytest.raises(ValueError):
        TraceLoss(np.array([0, 2]))
    with pytest.raises(ValueError):
        TraceLoss(np.zeros((2, 2), dtype=bool))


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("loss_pct, burst", [(5.0, 1.5), (20.0, 3.0), (40.0, 6.0), (50.0, 1.0)])
def test_gilbert_elliott_statistics(loss_pct, burst):
    m = GilbertElliott(loss_pct, burst, seed=11).mask(400_000)
    s = loss_stats(m)
    assert abs(s["loss_rate"] - loss_pct / 100) < 0.1 * loss_pct / 100
    assert abs(s["mean_burst"] - burst) < 0.05 * burst
    if burst == 1.0:
        assert s["max_burst"] == 1


def test_gilbert_elliott_seed_reproduces_and_prefix_consistent():
    a = GilbertElliott(20, 3, seed=5)
    b = GilbertElliott(20, 3, seed=5)
    c = GilbertElliott(20, 3, seed=6)
    ma = a.mask(10_000)
    assert np.array_equal(ma, b.mask(10_000))
    assert np.array_equal(ma, a.mask(10_000))  # repeated calls agree
    assert not np.array_equal(ma, c.mask(10_000))
    assert np.array_equal(a.mask(37), ma[:37])


@pytest.mark.parametrize(
    "args",
    [(-1, 2), (100, 2), (20, 0.5), (20, float("nan")), (60, 1.0), (77.9, 3.5), ("x", 2)],
)
def test_gilbert_elliott_validation(args):
    with pytest.raises(ValueError):
        GilbertElliott(*args, seed=0)


def test_gilbert_elliott_edge_cases():
    assert not GilbertElliott(0, 4, seed=0).mask(1000).any()
    # 50% with mean burst 1 is exactly feasible (p = 1): losses never touch.
    m = GilbertElliott(50, 1, seed=0).mask(1000)
    assert loss_stats(m)["max_burst"] == 1
    assert GilbertElliott(10, 2).mask(0).shape == (0,)


def test_uniform_statistics_and_seed():
    u = UniformLoss(10, seed=3)
    m = u.mask(300_000)
    s = loss_stats(m)
    assert abs(s["loss_rate"] - 0.10) < 0.005
    # i.i.d.: mean burst is 1 / (1 - p).
    assert abs(s["mean_burst"] - 1 / 0.9) < 0.02
    assert np.array_equal(m, UniformLoss(10, seed=3).mask(300_000))
    assert not np.array_equal(m, UniformLoss(10, seed=4).mask(300_000))
    assert np.array_equal(u.mask(100), m[:100])
    with pytest.raises(ValueError):
        UniformLoss(100)
    with pytest.raises(ValueError):
        UniformLoss(5, seed=-1)


def test_mask_length_validation():
    for model in (NoLoss(), UniformLoss(5), GilbertElliott(5, 2), TraceLoss([0, 1])):
        with pytest.raises(ValueError):
            model.mask(-1)
        with pytest.raises(ValueError):
            model.mask(2.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            model.mask(10**12)
        assert model.mask(7).shape == (7,) and model.mask(7).dtype == bool
        assert isinstance(model.describe(), str) and model.describe()
    assert not NoLoss().mask(50).any()


def test_loss_stats_values():
    s = loss_stats(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool))
    assert s == {"loss_rate": 6 / 9, "mean_burst": 2.0, "max_burst": 3, "n_bursts": 3}
    assert loss_stats(np.zeros(5, bool)) == {"loss_rate": 0.0, "mean_burst": 0.0, "max_burst": 0, "n_bursts": 0}
    assert loss_stats(np.ones(4, bool))["max_burst"] == 4
    with pytest.raises(ValueError):
        loss_stats(np.zeros((2, 2), bool))
