"""Kernel throughput per variant vs numpy float32; prints tables.

    python benchmarks/bench_kernels.py [--repeat N] [--time-per-run S]

GMAC/s = rows * cols / seconds per call (dense-equivalent for the sparse
matrix; the effective rate over the kept blocks is shown in brackets). Kernel
timings come from a nogil C loop per measurement (input quantization and bias
included); numpy times ``W @ x`` in a Python loop, single-threaded BLAS
(OPENBLAS_NUM_THREADS=1 unless already set: the kernels use one thread).
Measurements of all variants and numpy are interleaved and the best of
``--repeat`` runs is kept, which makes ratios robust on a shared machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import edge_dred.kernels as ck  # noqa: E402

DENSE_SHAPES = [(128, 320), (320, 1024)]
SPARSE_SHAPE = (384, 1152)
SPARSE_DENSITY = 0.10


def _iters(macs: float, target_s: float, rate: float = 2e10) -> int:
    return max(3, int(target_s * rate / max(macs, 1)))


def _time_numpy(w: np.ndarray, x: np.ndarray, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        w @ x
    return (time.perf_counter() - t0) / n


def bench_matvec(repeat: int, t_run: float) -> tuple[list[str], list[list[str]], dict]:
    rng = np.random.default_rng(0)
    variants = ck.available_variants()
    rows_out = []
    summary = {}
    cases = []
    for r, c in DENSE_SHAPES:
        cases.append((f"int8 dense {r}x{c}", "int8", r, c))
    cases.append((f"int8 sparse {SPARSE_SHAPE[0]}x{SPARSE_SHAPE[1]} @{SPARSE_DENSITY:.0%}", "sparse", *SPARSE_SHAPE))
    for r, c in DENSE_SHAPES + [SPARSE_SHAPE]:
        cases.append((f"float dense {r}x{c}", "float", r, c))
    numpy_best = {}
    for label, mode, r, c in cases:
        w = (rng.standard_normal((r, c)) / np.sqrt(c)).astype(np.float32)
        x = rng.standard_normal(c).astype(np.float32)
        lin = ck.make_linear(w, rng.standard_normal(r).astype(np.float32), mode=mode, density=SPARSE_DENSITY)
        kept = lin.weights.size / (r * ((c + 3) // 4 * 4)) if mode == "sparse" else 1.0
        n = _iters(r * c * kept, t_run)
        best = {v: np.inf for v in variants}
        nb = np.inf
        n_np = _iters(r * c, t_run, 5e9)
        for _ in range(repeat):
            for v in variants:
                with ck.use_variant(v):
                    best[v] = min(best[v], lin.bench(x, n))
            if (r, c) not in numpy_best:
                nb = min(nb, _time_numpy(w, x, n_np))
        if (r, c) not in numpy_best:
            numpy_best[(r, c)] = nb
        cells = []
        for v in variants:
            g = r * c / best[v] / 1e9
            cells.append(f"{g:.1f} [{g * kept:.1f}]" if mode == "sparse" else f"{g:.1f}")
        rows_out.append([label] + cells + [f"{best[variants[-1]] * 1e6:.2f}"])
        summary[(mode, r, c)] = {v: r * c / best[v] / 1e9 for v in variants}
    for (r, c), t in numpy_best.items():
        rows_out.append([f"numpy float32 {r}x{c}"] + [""] * (len(variants) - 1) + [f"{r * c / t / 1e9:.1f}",
                                                                                 f"{t * 1e6:.2f}"])
        summary[("numpy", r, c)] = r * c / t / 1e9
    header = ["GMAC/s"] + variants + [f"us/call ({variants[-1]}|numpy)"]
    return header, rows_out, summary


def _numpy_gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    H = h.size
    gi = w_ih @ x + b_ih
    gh = w_hh @ h + b_hh
    r = 1 / (1 + np.exp(-(gi[:H] + gh[:H])))
    z = 1 / (1 + np.exp(-(gi[H:2 * H] + gh[H:2 * H])))
    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1 - z) * n + z * h


def bench_gru(repeat: int, t_run: float, hidden: int = 256, inp: int = 256) -> tuple[list[str], list[list[str]]]:
    rng = np.random.default_rng(1)
    k = 1 / np.sqrt(hidden)
    w_ih = rng.uniform(-k, k, (3 * hidden, inp)).astype(np.float32)
    w_hh = rng.uniform(-k, k, (3 * hidden, hidden)).astype(np.float32)
    b_ih = rng.uniform(-k, k, 3 * hidden).astype(np.float32)
    b_hh = rng.uniform(-k, k, 3 * hidden).astype(np.float32)
    cells = {
        "int8 (dense W_hh)": ck.make_gru(w_ih, w_hh, b_ih, b_hh, mode="int8"),
        "int8 + W_hh 8x4 sparse 25% + diag": ck.make_gru(w_ih, w_hh, b_ih, b_hh, rec_mode="sparse", density=0.25),
        "float": ck.make_gru(w_ih, w_hh, b_ih, b_hh, mode="float"),
    }
    variants = ck.available_variants()
    n = _iters(3 * hidden * (inp + hidden), t_run)
    rows = []
    x = rng.standard_normal(inp).astype(np.float32)
    h = np.zeros(hidden, np.float32)
    tn = np.inf
    for label, cell in cells.items():
        best = {v: np.inf for v in variants}
        for _ in range(repeat):
            for v in variants:
                with ck.use_variant(v):
                    best[v] = min(best[v], cell.bench(n))
            if label == "float":
                t0 = time.perf_counter()
                for _ in range(n // 4 + 1):
                    _numpy_gru_step(x, h, w_ih, w_hh, b_ih, b_hh)
                tn = min(tn, (time.perf_counter() - t0) / (n // 4 + 1))
        rows.append([f"GRU {inp}->{hidden} {label}"] + [f"{best[v] * 1e6:.2f}" for v in variants])
    rows.append([f"GRU {inp}->{hidden} numpy float32 (Python step)"] + [""] * (len(variants) - 1) + [f"{tn * 1e6:.2f}"])
    return ["us/step"] + variants, rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) if i < len(r) else 0 for r in [header] + rows) for i in range(len(header) + 1)]
    widths = [w for w in widths if w] or widths
    for r in [header] + rows:
        print("  ".join(str(c).rjust(widths[i]) if i else str(c).ljust(widths[i]) for i, c in enumerate(r)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=40, help="interleaved runs per case (best kept)")
    ap.add_argument("--time-per-run", type=float, default=0.002, help="seconds per measurement")
    a = ap.parse_args(argv)
    print(f"# {platform.machine()} {platform.processor() or ''} | compiled {ck.compiled_variants()} | "
          f"available {ck.available_variants()} | dispatch picks {ck.best_variant()} | "
          f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    header, rows, summary = bench_matvec(a.repeat, a.time_per_run)
    print_table(header, rows)
    best = ck.available_variants()[-1]
    print()
    for r, c in DENSE_SHAPES:
        print(f"int8 {best} / numpy float32, {r}x{c}: {summary[('int8', r, c)][best] / summary[('numpy', r, c)]:.2f}x")
    r, c = SPARSE_SHAPE
    print(f"int8 sparse {SPARSE_DENSITY:.0%} {best} / numpy float32 dense, {r}x{c}: "
          f"{summary[('sparse', r, c)][best] / summary[('numpy', r, c)]:.2f}x; int8 dense-kernel-only variants: "
          + ", ".join(f"{v} {summary[('int8', 320, 1024)][v] / summary[('numpy', 320, 1024)]:.2f}x (320x1024)"
                      for v in ck.available_variants()))
    print()
    gh, grows = bench_gru(a.repeat, a.time_per_run)
    print_table(gh, grows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
