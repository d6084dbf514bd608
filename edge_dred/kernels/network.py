"""Whole-network runner: a list of ops over named float32 buffers, executed
for one or many steps in a single nogil call into C.

Each op reads the concatenation of its input slices and writes an output
slice. A slice is a buffer name (whole buffer) or ``(name, start, stop)``.
All buffers persist between calls: GRU states and conv histories carry over,
``reset()`` zeroes them.

Example (a FARGAN-like sub-step)::

    net = Network(
        buffers={"x": 20, "c": 64, "h": 128, "g": 128, "y": 40},
        ops=[
            Dense(["x"], "c", make_linear(W1, b1), activation="tanh"),
            GRU(["c", "g"], "h", make_gru(Wih, Whh, bih, bhh)),   # h: state
            GLU(["h"], "g", make_linear(Wg, bg)),
            Dense(["g", "c"], "y", make_linear(W2, b2)),
        ])
    out = net.run({"x": feats}, fetch=["y"])        # feats (T, 20) -> out["y"] (T, 40)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence, Union

import numpy as np

from ._kernels import GRUCell, KernelInputError, Linear, NetworkCore, activation_code

SliceSpec = Union[str, tuple]


@dataclass
class Dense:
    """out = act(W concat(inputs) + b)."""
    inputs: Sequence[SliceSpec]
    output: SliceSpec
    linear: Linear
    activation: str = "none"


@dataclass
class GRU:
    """state <- GRUCell(concat(inputs), state); the state slice is the output."""
    inputs: Sequence[SliceSpec]
    state: SliceSpec
    cell: GRUCell


@dataclass
class Conv1d:
    """Causal conv over steps: out_t = act(W [x_{t-(K-1)d}, ..., x_{t-d}, x_t] + b).

    ``linear`` is (C_out, K*C_in) (see layers.conv1d_matrix). The history
    ((K-1)*d frames) lives in buffer ``history`` (default "<output>.hist",
    created automatically)."""
    inputs: Sequence[SliceSpec]
    output: SliceSpec
    linear: Linear
    kernel_size: int
    dilation: int = 1
    activation: str = "none"
    history: str | None = None


@dataclass
class GLU:
    """out = x * sigmoid(W x + b), x = concat(inputs), W square."""
    inputs: Sequence[SliceSpec]
    output: SliceSpec
    linear: Linear


@dataclass
class Act:
    """out = act(concat(inputs))."""
    inputs: Sequence[SliceSpec]
    output: SliceSpec
    activation: str


@dataclass
class Mul:
    """out = a * b (element-wise; ``b`` of length 1 scales all of ``a``)."""
    inputs: Sequence[SliceSpec]
    output: SliceSpec


@dataclass
class Add:
    """out = a + b (element-wise)."""
    inputs: Sequence[SliceSpec]
    output: SliceSpec


@dataclass
class Lag:
    """Pitch-lag gather from a signal history (e.g. a vocoder's own past output).

    ``out[j] = s * h[H - L + j - pre]`` for ``j < len(out)``, where ``h`` is the
    ``history`` slice (length H, newest sample last), ``L`` the value in the
    one-float ``lag`` slice rounded half-to-even and clamped to
    ``[lag_min, lag_max]`` (NaN -> ``lag_min``), and ``s`` the one-float
    ``scale`` slice (1 without it).  Taps at or past ``H`` (the future) wrap
    back by whole lags.  ``lag_max`` defaults to ``H - pre``, the largest lag
    whose oldest tap is still inside the history.
    """
    history: SliceSpec
    lag: SliceSpec
    output: SliceSpec
    scale: SliceSpec | None = None
    pre: int = 0
    lag_min: int = 1
    lag_max: int | None = None


@dataclass
class Shift:
    """History push: ``history <- [history[n:], concat(inputs)]`` (n = input length)."""
    inputs: Sequence[SliceSpec]
    history: SliceSpec


@dataclass
class Network:
    """Executes ``ops`` in order over ``buffers`` (name -> length)."""
    buffers: Mapping[str, int]
    ops: Sequence[object]
    _names: dict = field(init=False, repr=False)
    _core: NetworkCore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        bufs = dict(self.buffers)
        for name, n in bufs.items():
            if not isinstance(name, str) or not isinstance(n, (int, np.integer)) or n < 1:
                raise KernelInputError(f"buffer {name!r}: length must be a positive int, got {n!r}")
        specs = []
        for i, op in enumerate(self.ops):
            if isinstance(op, Conv1d) and op.kernel_size > 1:
                hname = op.history or f"{self._name_of(op.output)}.hist"
                c_in = sum(self._slice(s, bufs)[2] for s in op.inputs)
                need = (op.kernel_size - 1) * op.dilation * c_in
                if hname in bufs and bufs[hname] != need:
                    raise KernelInputError(f"op {i}: history buffer {hname!r} has {bufs[hname]} floats, needs {need}")
                bufs[hname] = need
        self._names = {n: i for i, n in enumerate(bufs)}
        self._lens = list(bufs.values())
        for i, op in enumerate(self.ops):
            specs.append(self._spec(i, op, bufs))
        self._core = NetworkCore(self._lens, specs)

    @staticmethod
    def _name_of(s: SliceSpec) -> str:
        return s if isinstance(s, str) else s[0]

    def _slice(self, s: SliceSpec, bufs: Mapping[str, int]) -> tuple[int, int, int]:
        if isinstance(s, str):
            name, start, stop = s, 0, None
        elif isinstance(s, tuple) and len(s) == 3 and isinstance(s[0], str):
            name, start, stop = s
        else:
            raise KernelInputError(f"slice must be a buffer name or (name, start, stop), got {s!r}")
        if name not in bufs:
            raise KernelInputError(f"unknown buffer {name!r}")
        n = bufs[name]
        stop = n if stop is None else stop
        if not (0 <= start < stop <= n):
            raise KernelInputError(f"slice {s!r} out of range for buffer {name!r} of length {n}")
        idx = list(bufs).index(name)
        return idx, int(start), int(stop - start)

    def _spec(self, i: int, op: object, bufs: Mapping[str, int]) -> dict:
        where = f"op {i} ({type(op).__name__})"
        if isinstance(op, Lag):
            srcs = [op.history, op.lag] + ([op.scale] if op.scale is not None else [])
            ins = [self._slice(s, bufs) for s in srcs]
            lag_max = ins[0][2] - int(op.pre) if op.lag_max is None else int(op.lag_max)
            d = {"type": "lag", "inputs": ins, "out": self._slice(op.output, bufs), "lag_pre": int(op.pre),
                 "lag_min": int(op.lag_min), "lag_max": lag_max}
        elif isinstance(op, Shift):
            ins = [self._slice(s, bufs) for s in op.inputs]
            d = {"type": "shift", "inputs": ins, "out": self._slice(op.history, bufs)}
        elif isinstance(op, GRU):
            ins = [self._slice(s, bufs) for s in op.inputs]
            d = {"type": "gru", "inputs": ins, "out": self._slice(op.state, bufs), "gru": op.cell}
        else:
            ins = [self._slice(s, bufs) for s in op.inputs]
            d = {"inputs": ins, "out": self._slice(op.output, bufs)}
            if isinstance(op, Dense):
                d.update(type="dense", lin=op.linear, activation=op.activation)
            elif isinstance(op, GLU):
                d.update(type="glu", lin=op.linear)
            elif isinstance(op, Act):
                d.update(type="act", activation=op.activation)
            elif isinstance(op, (Mul, Add)):
                if len(ins) != 2:
                    raise KernelInputError(f"{where}: needs exactly two inputs")
                d.update(type="mul" if isinstance(op, Mul) else "add")
            elif isinstance(op, Conv1d):
                d.update(type="conv1d", lin=op.linear, kernel_size=int(op.kernel_size),
                         dilation=int(op.dilation), activation=op.activation)
                if op.kernel_size > 1:
                    d["hist"] = self._slice(op.history or f"{self._name_of(op.output)}.hist", bufs)
            else:
                raise KernelInputError(f"{where}: unknown op type")
        if "activation" in d:
            activation_code(d["activation"])
        try:
            _check_shapes(d)
        except KernelInputError as e:
            raise KernelInputError(f"{where}: {e}") from None
        return d

    def buffer(self, name: str) -> np.ndarray:
        """The live float32 buffer (writes change the network state)."""
        try:
            return self._core.buffers[self._names[name]]
        except KeyError:
            raise KernelInputError(f"unknown buffer {name!r}") from None

    @property
    def buffer_names(self) -> list[str]:
        return list(self._names)

    def reset(self) -> None:
        """Zero every buffer (states, histories, intermediates)."""
        self._core.reset()

    def run(self, feeds: Mapping[str, np.ndarray] | None = None, fetch: Sequence[str] = (),
            steps: int | None = None) -> dict[str, np.ndarray]:
        """Run the ops for ``steps`` steps in one call into C.

        Parameters
        ----------
        feeds : mapping name -> array (steps, len) or (len,)
            Copied into the buffer before each step.
        fetch : sequence of buffer names
            Copied out after each step.
        steps : int, optional
            Defaults to the feeds' first dimension (1 without feeds).

        Returns
        -------
        dict name -> float32 array (steps, len)
        """
        feeds = dict(feeds or {})
        arrs = []
        for name, a in feeds.items():
            a = np.asarray(a, dtype=np.float32)
            if a.ndim == 1:
                a = a[None, :]
            arrs.append((self._id(name), a))
        if steps is None:
            steps = arrs[0][1].shape[0] if arrs else 1
        outs = self._core.run(arrs, [self._id(n) for n in fetch], int(steps))
        return dict(zip(fetch, outs))

    def bind(self, feeds: Sequence[str], fetch: Sequence[str]) -> Callable[..., list[np.ndarray]]:
        """:meth:`run` with its feed and fetch buffers named once, for a per-packet call.

        Returns ``f(steps, *arrays) -> [fetched arrays]``: ``arrays`` in the
        order of ``feeds``, each (steps, len) float32; the same checks as :meth:`run`.
        """
        fi, fo, core = [self._id(n) for n in feeds], [self._id(n) for n in fetch], self._core

        def run(steps: int, *arrays: np.ndarray) -> list[np.ndarray]:
            if len(arrays) != len(fi):
                raise KernelInputError(f"expected {len(fi)} feed arrays, got {len(arrays)}")
            return core.run(list(zip(fi, arrays)), fo, int(steps))
        return run

    def step(self, feeds: Mapping[str, np.ndarray] | None = None, fetch: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """One step; returns name -> (len,) arrays."""
        return {k: v[0] for k, v in self.run(feeds, fetch, 1).items()}

    def bench(self, steps: int) -> float:
        """Seconds per step of the op list (no feeds/fetches)."""
        return self._core.bench(steps)

    def _id(self, name: str) -> int:
        try:
            return self._names[name]
        except KeyError:
            raise KernelInputError(f"unknown buffer {name!r}") from None


def _check_shapes(d: dict) -> None:
    """Friendlier messages than the C check for the common mistakes."""
    n_in = sum(s[2] for s in d["inputs"])
    t, out = d["type"], d["out"][2]
    if t == "dense" and (d["lin"].cols != n_in or d["lin"].rows != out):
        raise KernelInputError(f"weights {d['lin'].rows}x{d['lin'].cols} vs input {n_in} / output {out}")
    if t == "glu" and not (d["lin"].rows == d["lin"].cols == n_in == out):
        raise KernelInputError(f"GLU needs a square {n_in}x{n_in} matrix and output {n_in}")
    if t == "gru" and (d["gru"].input_size != n_in or d["gru"].hidden_size != out):
        raise KernelInputError(f"cell {d['gru'].input_size}->{d['gru'].hidden_size} vs input {n_in} / state {out}")
    if t == "conv1d" and (d["lin"].cols != d["kernel_size"] * n_in or d["lin"].rows != out):
        raise KernelInputError(f"weights {d['lin'].rows}x{d['lin'].cols} vs kernel {d['kernel_size']} x input "
                               f"{n_in} / output {out}")
    if t in ("act",) and out != n_in:
        raise KernelInputError(f"output length {out} != input length {n_in}")
    if t == "add" and not (d["inputs"][0][2] == d["inputs"][1][2] == out):
        raise KernelInputError("inputs and output must have equal lengths")
    if t == "mul" and not (d["inputs"][0][2] == out and d["inputs"][1][2] in (out, 1)):
        raise KernelInputError("output and first input must have equal lengths, the second the same or 1")
    if t == "lag":
        h = d["inputs"][0][2]
        if any(s[2] != 1 for s in d["inputs"][1:]):
            raise KernelInputError("lag and scale must be single floats")
        if not (d["lag_pre"] >= 0 and 1 <= d["lag_min"] <= d["lag_max"] and d["lag_max"] + d["lag_pre"] <= h):
            raise KernelInputError(f"need 0 <= pre, 1 <= lag_min <= lag_max and lag_max + pre <= history "
                                   f"length {h}; got pre {d['lag_pre']}, lags [{d['lag_min']}, {d['lag_max']}]")
    if t == "shift" and n_in > out:
        raise KernelInputError(f"pushes {n_in} values into a history of {out}")
