"""int8 / block-sparse neural-network kernels with run-time SIMD dispatch.

All receiver networks (vocoder, neural PLC, DRED decoder) run on these
kernels. The C sources in ``src/`` are compiled once per instruction set;
one variant is picked at import from the CPU features.

Variants
--------
Listed once, in ``src/variants.h`` (read by the C dispatch, :mod:`.variants`
and the board configs): ``scalar`` (portable C, the reference), ``sse41``, ``avx2`` (x86-64, AVX2+FMA),
``avx2_vnni`` (AVX2 + AVX-VNNI ``vpdpbusd``: Alder Lake / Sapphire Rapids / Zen 5),
``neon`` (aarch64), ``neon_dotprod`` (aarch64 with ``sdot``, e.g. Cortex-A76 /
Pi 5), ``armv7_neon`` (32-bit ARM with NEON).

* :func:`available_variants` -- compiled in *and* runnable on this CPU.
* :func:`active_variant` -- the variant the next call uses.
* :func:`set_variant` / :func:`use_variant` -- switch (tests compare variants).
* ``EDGE_DRED_KERNELS=<name>`` forces a variant at import. An unknown name
  raises ``ValueError`` (a typo must not silently run slow code); a known name
  that is not compiled in or not supported by this CPU falls back to the best
  available variant with a ``RuntimeWarning``.

Numerics
--------
* int8 layers: ``y = scale[r] * xs * sum_c q[r,c] * xq[c] + bias``. The input
  is quantized per call to ``xq = round(x / xs)`` in [-127, 127]; ``xs`` is
  ``input_scale`` when > 0 (libopus uses 1/127 for inputs in [-1, 1]) or
  ``max|x| / 127`` when ``input_scale == 0`` (the default: safe for any
  range); ``_kernels.quantize_input`` exposes it, ``edge_dred.quantize.quantize_input``
  is its numpy model. Integer sums are exact and the final scaling uses the
  same float operations in every variant, so int8 layers are bit-identical
  across variants (tests assert equality).
* float layers: variants differ only by summation order / FMA (tests: error
  <= 1e-5 * sum|w||x|).
* ``vec_exp``: relative error < 4e-7 (inputs clamped to [-87, 88]);
  ``vec_sigmoid``: abs error < 2e-7; ``vec_tanh``: abs error < 4e-7.
* Every entry point sets flush-to-zero / denormals-are-zero (MXCSR on x86,
  FPCR.FZ on aarch64, FPSCR.FZ on armv7) for its duration and restores the
  caller's mode on return.

Building layers
---------------
>>> from edge_dred.kernels import make_linear, make_gru, Network, Dense, GRU, GLU, Conv1d
>>> lin = make_linear(W, b, mode="int8")          # W: (out, in) float, like torch.nn.Linear
>>> y = lin.forward(x, activation="tanh")         # x: (in,) or (T, in)
>>> sp = make_linear(W, b, mode="sparse", density=0.1)   # 8x4 blocks kept by energy
>>> cell = make_gru(w_ih, w_hh, b_ih, b_hh, rec_mode="sparse", density=0.25)  # torch layout
>>> hs = cell.run(xs, h0)                         # (T, I) -> (T, H), one C call

``linear_from_int8(q, scale, bias, mask=..., diag=...)`` builds a layer from
weights already quantized (e.g. read with ``edge_dred.quantize.read_weights``); it
rejects weights that break the overflow rules (``edge_dred.quantize.check_int8_weights``).
``Linear(kind, rows, cols, packed, ...)`` takes packed arrays directly
(``edge_dred.kernels.packing``).

Network runner
--------------
A :class:`Network` is a list of ops over named float32 buffers, each op
reading the concatenation of buffer slices (``"name"`` or ``(name, start,
stop)``) and writing one slice; ``run`` executes all ops for many steps in a
single nogil C call:

>>> net = Network(buffers={"feat": 20, "c": 64, "h": 128, "y": 40}, ops=[
...     Conv1d(["feat"], "c", make_linear(conv1d_matrix(Wc), bc), kernel_size=3, activation="tanh"),
...     GRU(["c", "y"], "h", make_gru(w_ih, w_hh, b_ih, b_hh)),   # "h" is the state
...     Dense(["h", "c"], "y", make_linear(Wo, bo), activation="tanh"),
... ])
>>> out = net.run({"feat": feats}, fetch=["y"])   # feats (T, 20) -> out["y"] (T, 40)
>>> net.buffer("h")                                # live state (numpy view); net.reset() zeroes all

Ops: Dense, GRU (torch reset-after), Conv1d (causal, kernel_size, dilation,
history buffer "<output>.hist"), GLU (x * sigmoid(W x + b)), Act, Mul (also
vector * one-float scalar), Add, and for autoregressive signal models (the
vocoder's subframe loop runs whole frames in one call): Lag (gather taps
around an integer pitch lag read from a buffer, scaled by a buffer float) and
Shift (push new samples into a history buffer).  Activations: none, tanh,
sigmoid, relu, exp.
Buffers persist across calls, so streaming in chunks equals one shot.

Errors: bad shapes, dtypes, names or indices raise :class:`KernelInputError`
(a ``ValueError``). Sparse indices and all slices are validated once at
construction (weight files are untrusted); kernels then run without checks.

Speed: ``python benchmarks/bench_kernels.py`` (GMAC/s per variant vs numpy)
and ``python benchmarks/qemu_icount.py`` (ARM instructions per call under qemu).
C-level tests: ``tests/c/kernel_test.c`` (run natively and under qemu by
``tests/test_cross_arm.py``).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator

from . import _kernels
from ._kernels import (GRUCell, KernelInputError, Linear, activation_code, best_variant, compiled_variants,
                       ftz_probe, isa, vec_exp, vec_sigmoid, vec_tanh)
from .layers import conv1d_matrix, linear_from_int8, make_gru, make_linear
from .network import GLU, GRU, Act, Add, Conv1d, Dense, Lag, Mul, Network, Shift
from .variants import NAMES

#: Every variant of any build, from src/variants.h (the C dispatch's list).
KNOWN_VARIANTS = NAMES
ENV_VAR = "EDGE_DRED_KERNELS"


def available_variants() -> list[str]:
    """Variants compiled in and supported by this CPU, scalar first."""
    return [v for v in compiled_variants() if _kernels.variant_supported(v)]


def active_variant() -> str:
    """Name of the variant the next kernel call uses."""
    return _kernels.active_variant()


def set_variant(name: str) -> None:
    """Switch all kernels to variant ``name``.

    Raises
    ------
    ValueError
        Unknown name, not compiled into this build, or not supported by this CPU.
    """
    code = _kernels.set_variant_code(name)
    if code == 0:
        return
    if code == -10:
        raise ValueError(f"unknown kernel variant {name!r}; known: {', '.join(KNOWN_VARIANTS)}")
    if code == -11:
        raise ValueError(f"kernel variant {name!r} is not compiled into this {isa()} build "
                         f"(compiled: {', '.join(compiled_variants())})")
    raise ValueError(f"kernel variant {name!r} is not supported by this CPU "
                     f"(available: {', '.join(available_variants())})")


@contextlib.contextmanager
def use_variant(name: str) -> Iterator[None]:
    """Context manager: run the block on variant ``name``, then restore."""
    prev = active_variant()
    set_variant(name)
    try:
        yield
    finally:
        set_variant(prev)


def _apply_env() -> None:
    name = os.environ.get(ENV_VAR, "").strip()
    if not name:
        return
    if name not in KNOWN_VARIANTS:
        raise ValueError(f"{ENV_VAR}={name!r} is not a kernel variant; known: {', '.join(KNOWN_VARIANTS)}")
    try:
        set_variant(name)
    except ValueError as e:
        warnings.warn(f"{ENV_VAR}={name}: {e}; using {active_variant()}", RuntimeWarning, stacklevel=3)


_apply_env()

__all__ = [
    "Act", "Add", "Conv1d", "Dense", "GLU", "GRU", "GRUCell", "KNOWN_VARIANTS", "KernelInputError", "Lag", "Linear",
    "Mul", "Network", "Shift", "activation_code", "active_variant", "available_variants", "best_variant",
    "compiled_variants", "conv1d_matrix", "ftz_probe", "isa", "linear_from_int8", "make_gru", "make_linear",
    "set_variant", "use_variant", "vec_exp", "vec_sigmoid", "vec_tanh",
]
