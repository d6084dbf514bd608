# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Thin nogil wrappers over the C kernels (see ``edge_dred/kernels/__init__.py``).

Every array handed to C is checked here (dtype, length, contiguity) and kept
alive by the owning object; the C side trusts what passed these checks.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from edge_dred.kernels.nnet cimport *

cnp.import_array()


class KernelInputError(ValueError):
    """Bad shape, dtype, index or name passed to the kernels."""


_ACT = {"none": CK_ACT_NONE, "linear": CK_ACT_NONE, "tanh": CK_ACT_TANH,
        "sigmoid": CK_ACT_SIGMOID, "relu": CK_ACT_RELU, "exp": CK_ACT_EXP}
_KIND = {"float": CK_W_FLOAT, "int8": CK_W_INT8, "sparse": CK_W_SPARSE}
_ERR = {CK_ERR_SHAPE: "inconsistent shapes", CK_ERR_INDEX: "invalid sparse index",
        CK_ERR_SCRATCH: "scratch too small", CK_ERR_SLICE: "buffer slice out of range",
        CK_ERR_OP: "invalid op"}


def activation_code(name) -> int:
    """Map an activation name (none/linear/tanh/sigmoid/relu/exp) to its C code."""
    try:
        return _ACT[name]
    except (KeyError, TypeError):
        raise KernelInputError(f"unknown activation {name!r}; expected one of {sorted(_ACT)}") from None


# ---------------------------------------------------------------- variants

def compiled_variants() -> list:
    """Names of the variants compiled into this build (scalar first)."""
    return [ck_variant_at(i).name.decode() for i in range(ck_variant_count())]


def known_variants() -> list:
    """Every variant name of any build (``src/variants.h``), in order of preference."""
    return [ck_known_variant_name(i).decode() for i in range(ck_known_variant_count())]


def variant_supported(name: str) -> bool:
    """True if ``name`` is compiled in and this CPU can run it."""
    for i in range(ck_variant_count()):
        if ck_variant_at(i).name.decode() == name:
            return bool(ck_variant_supported(ck_variant_at(i)))
    return False


def best_variant() -> str:
    """The variant the dispatcher picks from the CPU features."""
    return ck_best_variant().name.decode()


def active_variant() -> str:
    """The variant used by the next kernel call."""
    return ck_active().name.decode()


def set_variant_code(name: str) -> int:
    """Select a variant; returns 0 or a negative code (-10 unknown, -11 not
    compiled, -12 unsupported CPU). The Python-level set_variant raises."""
    b = name.encode() if isinstance(name, str) else b""
    return ck_set_variant(b)


def isa() -> str:
    """Instruction-set family this module was compiled for."""
    return ck_isa_name().decode()


def ftz_probe(bint inside_run=False) -> int:
    """Bit 0: denormal results flushed; bit 1: denormal inputs read as zero.

    With ``inside_run`` the probe runs between ck_ftz_enter/exit, i.e. in the
    state every kernel entry point uses."""
    cdef unsigned long saved
    cdef int r
    if inside_run:
        saved = ck_ftz_enter()
        r = ck_ftz_probe()
        ck_ftz_exit(saved)
        return r
    return ck_ftz_probe()


# ---------------------------------------------------------------- helpers

cdef cnp.ndarray _vec_f32(object x, str what):
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 1:
        raise KernelInputError(f"{what}: expected a 1-D array, got shape {a.shape}")
    return a


cdef cnp.ndarray _exact(object x, object dtype, str what):
    if not isinstance(x, np.ndarray):
        raise KernelInputError(f"{what}: expected a numpy array, got {type(x).__name__}")
    if x.dtype != dtype:
        raise KernelInputError(f"{what}: expected dtype {np.dtype(dtype)}, got {x.dtype}")
    if x.ndim != 1:
        raise KernelInputError(f"{what}: expected a 1-D packed array, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _vec_op(int which, x):
    cdef cnp.ndarray[cnp.float32_t, ndim=1] a = _vec_f32(np.ravel(np.asarray(x, dtype=np.float32)), "x")
    cdef cnp.ndarray[cnp.float32_t, ndim=1] y = np.empty_like(a)
    cdef float[::1] av = a
    cdef float[::1] yv = y
    cdef int n = a.shape[0]
    cdef const ck_kernels *k = ck_active()
    cdef unsigned long saved
    if n == 0:
        return y.reshape(np.shape(x))
    with nogil:
        saved = ck_ftz_enter()
        if which == 0:
            k.vec_tanh(&yv[0], &av[0], n)
        elif which == 1:
            k.vec_sigmoid(&yv[0], &av[0], n)
        else:
            k.vec_exp(&yv[0], &av[0], n)
        ck_ftz_exit(saved)
    return y.reshape(np.shape(x))


def vec_tanh(x) -> np.ndarray:
    """tanh approximation (max abs error < 4e-7), float32, any shape."""
    return _vec_op(0, x)


def vec_sigmoid(x) -> np.ndarray:
    """Logistic sigmoid approximation (max abs error < 2e-7), float32."""
    return _vec_op(1, x)


def vec_exp(x) -> np.ndarray:
    """exp approximation (relative error < 4e-7 on [-87, 88]; inputs clamped there)."""
    return _vec_op(2, x)


def quantize_input(x, float input_scale=0.0):
    """The kernels' input quantization: returns (int8 array, step).

    Same semantics as edge_dred.quantize.quantize_input (the numpy model)."""
    cdef cnp.ndarray[cnp.float32_t, ndim=1] a = _vec_f32(x, "x")
    cdef int n = a.shape[0]
    if not (input_scale >= 0.0 and np.isfinite(input_scale)):
        raise KernelInputError(f"input_scale must be finite and >= 0, got {input_scale}")
    q = np.zeros(n + 4, np.int8)
    cdef int8_t[::1] qv = q
    cdef float[::1] av = a
    cdef float xs = 0
    cdef const ck_kernels *k = ck_active()
    if n > 0:
        with nogil:
            xs = k.quantize(&qv[0], &av[0], n, n, input_scale)
    return q[:n], float(xs)


# ---------------------------------------------------------------- Linear

cdef class Linear:
    """y = W x + bias (+ diag) on packed weights; see edge_dred.kernels docs.

    Parameters
    ----------
    kind : {"float", "int8", "sparse"}
    rows, cols : int
        Logical output and input sizes.
    weights : np.ndarray
        Packed weights, float32 for "float", int8 otherwise (edge_dred.kernels.packing).
    scale : np.ndarray, optional
        Per-row dequantization scales (int8 kinds), length rows or rows_pad.
    idx : np.ndarray, optional
        int32 sparse block index ("sparse").
    bias, diag : np.ndarray, optional
        Length ``rows``; ``diag`` adds ``diag[r] * x[r % cols]`` (needs rows % cols == 0).
    input_scale : float
        int8 kinds: step of the input quantization; 0 picks max|x|/127 per call.
    """
    cdef ck_linear c
    cdef readonly object weights, scale, idx, bias, diag
    cdef readonly str kind
    cdef readonly int rows, cols

    def __init__(self, str kind, int rows, int cols, weights, scale=None, idx=None,
                 bias=None, diag=None, float input_scale=0.0):
        if kind not in _KIND:
            raise KernelInputError(f"unknown weight kind {kind!r}; expected one of {sorted(_KIND)}")
        if rows < 1 or cols < 1:
            raise KernelInputError(f"rows and cols must be >= 1, got {rows}x{cols}")
        self.kind, self.rows, self.cols = kind, rows, cols
        memset(&self.c, 0, sizeof(ck_linear))
        self.c.kind = _KIND[kind]
        self.c.rows, self.c.cols = rows, cols
        self.c.rows_pad = (rows + 7) & ~7
        cdef long fw_len = 0, qw_len = 0, idx_len = 0, scale_len = 0, bias_len = 0, diag_len = 0
        cdef cnp.ndarray a
        if kind == "float":
            self.c.cols_pad = cols
            a = _exact(weights, np.float32, "float weights")
            self.weights = a
            self.c.fw = <const float *>cnp.PyArray_DATA(a)
            fw_len = a.shape[0]
            if scale is not None or idx is not None:
                raise KernelInputError("float weights take no scale or idx")
        else:
            self.c.cols_pad = (cols + 3) & ~3
            a = _exact(weights, np.int8, f"{kind} weights")
            self.weights = a
            self.c.qw = <const int8_t *>cnp.PyArray_DATA(a)
            qw_len = a.shape[0]
            if scale is None:
                raise KernelInputError(f"{kind} weights need per-row scales")
            s = _vec_f32(scale, "scale")
            if s.shape[0] == rows and rows != self.c.rows_pad:
                s = np.concatenate([s, np.zeros(self.c.rows_pad - rows, np.float32)])
            if not np.all(np.isfinite(s)):
                raise KernelInputError("scale contains non-finite values")
            self.scale = s
            self.c.scale = <const float *>cnp.PyArray_DATA(s)
            scale_len = s.shape[0]
            if not (input_scale >= 0.0 and np.isfinite(input_scale)):
                raise KernelInputError(f"input_scale must be finite and >= 0, got {input_scale}")
            self.c.input_scale = input_scale
            if kind == "sparse":
                if idx is None:
                    raise KernelInputError("sparse weights need an idx array")
                ia = _exact(idx, np.int32, "sparse idx")
                self.idx = ia
                self.c.idx = <const int32_t *>cnp.PyArray_DATA(ia)
                idx_len = ia.shape[0]
            elif idx is not None:
                raise KernelInputError("dense int8 weights take no idx")
        if bias is not None:
            b = _vec_f32(bias, "bias")
            self.bias = b
            self.c.bias = <const float *>cnp.PyArray_DATA(b)
            bias_len = b.shape[0]
        if diag is not None:
            d = _vec_f32(diag, "diag")
            self.diag = d
            self.c.diag = <const float *>cnp.PyArray_DATA(d)
            diag_len = d.shape[0]
        cdef int err = ck_linear_check(&self.c, fw_len, qw_len, idx_len, scale_len, bias_len, diag_len)
        if err != CK_OK:
            raise KernelInputError(
                f"Linear({kind}, {rows}x{cols}): {_ERR.get(err, err)} (weights {fw_len or qw_len}, "
                f"scale {scale_len}, idx {idx_len}, bias {bias_len}, diag {diag_len})")

    @property
    def input_scale(self) -> float:
        return self.c.input_scale

    @property
    def cols_pad(self) -> int:
        return self.c.cols_pad

    def forward(self, x, activation="none") -> np.ndarray:
        """Apply to x of shape (cols,) or (T, cols); returns (rows,) or (T, rows)."""
        cdef int act = activation_code(activation)
        xa = np.ascontiguousarray(x, dtype=np.float32)
        squeeze = xa.ndim == 1
        if squeeze:
            xa = xa.reshape(1, -1)
        if xa.ndim != 2 or xa.shape[1] != self.cols:
            raise KernelInputError(f"Linear.forward: expected x of shape ({self.cols},) or (T, {self.cols}), "
                                   f"got {np.shape(x)}")
        cdef int T = xa.shape[0]
        y = np.empty((T, self.rows), np.float32)
        q = np.zeros(self.c.cols_pad + 16, np.int8)
        cdef float[:, ::1] xv = xa
        cdef float[:, ::1] yv = y
        cdef int8_t[::1] qv = q
        cdef const ck_kernels *k = ck_active()
        cdef unsigned long saved
        cdef int t, i
        if T > 0:
            with nogil:
                saved = ck_ftz_enter()
                for t in range(T):
                    k.linear(&self.c, &yv[t, 0], &xv[t, 0], &qv[0])
                    if act == CK_ACT_TANH:
                        k.vec_tanh(&yv[t, 0], &yv[t, 0], self.c.rows)
                    elif act == CK_ACT_SIGMOID:
                        k.vec_sigmoid(&yv[t, 0], &yv[t, 0], self.c.rows)
                    elif act == CK_ACT_RELU:
                        for i in range(self.c.rows):
                            if not (yv[t, i] > 0):
                                yv[t, i] = 0
                    elif act == CK_ACT_EXP:
                        k.vec_exp(&yv[t, 0], &yv[t, 0], self.c.rows)
                ck_ftz_exit(saved)
        return y[0] if squeeze else y

    def bench(self, x, long iters) -> float:
        """Seconds per call of the bare matvec (+bias) over ``iters`` calls in one nogil loop."""
        import time
        xa = _vec_f32(x, "x")
        if xa.shape[0] != self.cols or iters < 1:
            raise KernelInputError("bench: x must have cols entries and iters >= 1")
        y = np.empty(self.rows, np.float32)
        q = np.zeros(self.c.cols_pad + 16, np.int8)
        cdef float[::1] xv = xa
        cdef float[::1] yv = y
        cdef int8_t[::1] qv = q
        cdef const ck_kernels *k = ck_active()
        cdef long i
        cdef unsigned long saved
        t0 = time.perf_counter()
        with nogil:
            saved = ck_ftz_enter()
            for i in range(iters):
                k.linear(&self.c, &yv[0], &xv[0], &qv[0])
            ck_ftz_exit(saved)
        return (time.perf_counter() - t0) / iters

    cdef ck_linear *ptr(self):
        return &self.c


# ---------------------------------------------------------------- GRU

cdef class GRUCell:
    """torch.nn.GRU-compatible (reset-after) cell on two Linear layers.

    ``inp``: 3H x I with bias b_ih; ``rec``: 3H x H with bias b_hh and an
    optional diag (rows [r; z; n])."""
    cdef ck_gru c
    cdef readonly Linear inp, rec
    cdef readonly int input_size, hidden_size

    def __init__(self, Linear inp, Linear rec):
        H = rec.cols
        if rec.rows != 3 * H or inp.rows != 3 * H:
            raise KernelInputError(f"GRUCell: recurrent must be 3H x H and input 3H x I; got "
                                   f"rec {rec.rows}x{rec.cols}, inp {inp.rows}x{inp.cols}")
        self.inp, self.rec = inp, rec
        self.input_size, self.hidden_size = inp.cols, H
        self.c.in_ = inp.ptr()[0]
        self.c.rec = rec.ptr()[0]

    def run(self, x, h0=None) -> np.ndarray:
        """Run over x of shape (T, I) (or (I,)) from h0 (zeros if None).

        Returns the hidden states, shape (T, H) (or (H,) for 1-D x)."""
        xa = np.ascontiguousarray(x, dtype=np.float32)
        squeeze = xa.ndim == 1
        if squeeze:
            xa = xa.reshape(1, -1)
        if xa.ndim != 2 or xa.shape[1] != self.input_size:
            raise KernelInputError(f"GRUCell: expected x of shape (T, {self.input_size}), got {np.shape(x)}")
        cdef int H = self.hidden_size
        h = np.zeros(H, np.float32) if h0 is None else np.array(h0, dtype=np.float32).ravel()
        if h.shape[0] != H:
            raise KernelInputError(f"GRUCell: expected h0 of length {H}, got {h.shape[0]}")
        cdef int T = xa.shape[0]
        out = np.empty((T, H), np.float32)
        scratch = np.empty(6 * H + 16, np.float32)
        q = np.zeros(max(self.inp.c.cols_pad, self.rec.c.cols_pad) + 16, np.int8)
        cdef float[:, ::1] xv = xa
        cdef float[:, ::1] ov = out
        cdef float[::1] hv = h
        cdef float[::1] sv = scratch
        cdef int8_t[::1] qv = q
        cdef const ck_kernels *k = ck_active()
        cdef unsigned long saved
        cdef int t, i
        with nogil:
            saved = ck_ftz_enter()
            for t in range(T):
                k.gru_step(&self.c, &hv[0], &xv[t, 0], &sv[0], &qv[0])
                for i in range(H):
                    ov[t, i] = hv[i]
            ck_ftz_exit(saved)
        return out[0] if squeeze else out

    def step(self, x, h) -> np.ndarray:
        """One step; returns the new hidden state (h is not modified)."""
        return self.run(np.asarray(x, dtype=np.float32).reshape(1, -1), h)[0]

    def bench(self, long iters) -> float:
        """Seconds per step over ``iters`` steps in one nogil loop."""
        import time
        H = self.hidden_size
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, self.input_size).astype(np.float32)
        h = np.zeros(H, np.float32)
        scratch = np.empty(6 * H + 16, np.float32)
        q = np.zeros(max(self.inp.c.cols_pad, self.rec.c.cols_pad) + 16, np.int8)
        cdef float[::1] xv = x
        cdef float[::1] hv = h
        cdef float[::1] sv = scratch
        cdef int8_t[::1] qv = q
        cdef const ck_kernels *k = ck_active()
        cdef long i
        cdef unsigned long saved
        t0 = time.perf_counter()
        with nogil:
            saved = ck_ftz_enter()
            for i in range(iters):
                k.gru_step(&self.c, &hv[0], &xv[0], &sv[0], &qv[0])
            ck_ftz_exit(saved)
        return (time.perf_counter() - t0) / iters


# ---------------------------------------------------------------- network core

_OPS = {"dense": CK_OP_DENSE, "gru": CK_OP_GRU, "conv1d": CK_OP_CONV1D, "glu": CK_OP_GLU,
        "act": CK_OP_ACT, "mul": CK_OP_MUL, "add": CK_OP_ADD, "lag": CK_OP_LAG, "shift": CK_OP_SHIFT}


cdef class NetworkCore:
    """Executes a list of ops over float32 buffers in one nogil call.

    Built by :class:`edge_dred.kernels.network.Network`; ``ops`` is a list of
    dicts with keys type, activation, inputs [(buf, offset, len)], out
    (buf, offset, len), and per type: lin (Linear), gru (GRUCell),
    kernel_size, dilation, hist (buf, offset, len); lag_pre, lag_min, lag_max."""
    cdef ck_net net
    cdef ck_op *ops
    cdef float **bufptr
    cdef int *buflen
    cdef readonly list buffers
    cdef list _keep
    cdef object _scratch, _qscratch

    def __cinit__(self):
        self.ops = NULL
        self.bufptr = NULL
        self.buflen = NULL

    def __dealloc__(self):
        free(self.ops)
        free(self.bufptr)
        free(self.buflen)

    def __init__(self, buffer_lens, ops):
        cdef int nb = len(buffer_lens), no = len(ops), i, j
        if nb < 1 or nb > 65536 or no > 65536:
            raise KernelInputError(f"NetworkCore: {nb} buffers / {no} ops out of range")
        self.buffers = []
        self._keep = []
        self.bufptr = <float **>calloc(nb, sizeof(float *))
        self.buflen = <int *>calloc(nb, sizeof(int))
        self.ops = <ck_op *>calloc(max(no, 1), sizeof(ck_op))
        if self.bufptr == NULL or self.buflen == NULL or self.ops == NULL:
            raise MemoryError()
        for i, n in enumerate(buffer_lens):
            if not (1 <= int(n) <= (1 << 24)):
                raise KernelInputError(f"buffer {i}: length {n} out of range")
            b = np.zeros(int(n) + 0, np.float32)
            self.buffers.append(b)
            self.bufptr[i] = <float *>cnp.PyArray_DATA(b)
            self.buflen[i] = int(n)
        cdef ck_op *op
        cdef Linear lin
        cdef GRUCell gru
        for i, d in enumerate(ops):
            op = &self.ops[i]
            t = d["type"]
            if t not in _OPS:
                raise KernelInputError(f"op {i}: unknown type {t!r}")
            op.type = _OPS[t]
            op.activation = activation_code(d.get("activation", "none"))
            ins = d["inputs"]
            if not (1 <= len(ins) <= CK_MAX_INPUTS):
                raise KernelInputError(f"op {i} ({t}): 1..{CK_MAX_INPUTS} inputs allowed, got {len(ins)}")
            op.n_in = len(ins)
            for j, s in enumerate(ins):
                op.in_[j].buf, op.in_[j].offset, op.in_[j].len = s
            op.out.buf, op.out.offset, op.out.len = d["out"]
            if t in ("dense", "glu", "conv1d"):
                lin = d["lin"]
                self._keep.append(lin)
                op.lin = lin.ptr()[0]
            if t == "gru":
                gru = d["gru"]
                self._keep.append(gru)
                op.gru.in_ = gru.inp.ptr()[0]
                op.gru.rec = gru.rec.ptr()[0]
            if t == "conv1d":
                op.kernel_size = d["kernel_size"]
                op.dilation = d["dilation"]
                if "hist" in d and d["hist"] is not None:
                    op.hist.buf, op.hist.offset, op.hist.len = d["hist"]
            if t == "lag":
                op.lag_pre, op.lag_min, op.lag_max = d["lag_pre"], d["lag_min"], d["lag_max"]
        cdef long ns = ck_net_scratch_floats(self.ops, no) + 16
        cdef long nq = ck_net_qscratch_bytes(self.ops, no) + 16
        self._scratch = np.zeros(ns, np.float32)
        self._qscratch = np.zeros(nq, np.int8)
        self.net.n_ops = no
        self.net.ops = self.ops
        self.net.n_bufs = nb
        self.net.bufs = self.bufptr
        self.net.buf_len = self.buflen
        self.net.scratch = <float *>cnp.PyArray_DATA(self._scratch)
        self.net.qscratch = <int8_t *>cnp.PyArray_DATA(self._qscratch)
        self.net.scratch_len = ns
        self.net.qscratch_len = nq
        cdef int err = ck_net_check(&self.net)
        if err != CK_OK:
            raise KernelInputError(f"network description rejected: {_ERR.get(err, err)}")

    def run(self, feeds, fetch, int steps):
        """feeds: list of (buf, array (steps, len)); fetch: list of buf ids.

        Returns a list of (steps, len) arrays, one per fetched buffer."""
        cdef int nf = len(feeds), no = len(fetch), i, err
        if steps < 0:
            raise KernelInputError("steps must be >= 0")
        cdef ck_io *fi = <ck_io *>calloc(max(nf, 1), sizeof(ck_io))
        cdef ck_io *fo = <ck_io *>calloc(max(no, 1), sizeof(ck_io))
        if fi == NULL or fo == NULL:
            free(fi)
            free(fo)
            raise MemoryError()
        keep = []
        outs = []
        try:
            for i, (b, arr) in enumerate(feeds):
                if not (0 <= b < self.net.n_bufs):
                    raise KernelInputError(f"feed buffer id {b} out of range")
                a = np.ascontiguousarray(arr, dtype=np.float32)
                if a.shape != (steps, self.buflen[b]):
                    raise KernelInputError(f"feed for buffer {b}: expected shape ({steps}, {self.buflen[b]}), "
                                           f"got {a.shape}")
                keep.append(a)
                fi[i].buf = b
                fi[i].src = <const float *>cnp.PyArray_DATA(a)
            for i, b in enumerate(fetch):
                if not (0 <= b < self.net.n_bufs):
                    raise KernelInputError(f"fetch buffer id {b} out of range")
                o = np.empty((steps, self.buflen[b]), np.float32)
                outs.append(o)
                fo[i].buf = b
                fo[i].dst = <float *>cnp.PyArray_DATA(o)
            with nogil:
                err = ck_net_run(&self.net, steps, fi, nf, fo, no)
            if err != CK_OK:
                raise KernelInputError(f"network run failed: {_ERR.get(err, err)}")
        finally:
            free(fi)
            free(fo)
        return outs

    def reset(self) -> None:
        """Zero every buffer (one call, not one numpy assignment per buffer)."""
        cdef int i
        for i in range(self.net.n_bufs):
            memset(self.bufptr[i], 0, <size_t>self.buflen[i] * sizeof(float))

    def bench(self, long steps) -> float:
        """Seconds per step of the whole op list (no feeds/fetches)."""
        import time
        t0 = time.perf_counter()
        with nogil:
            ck_net_run(&self.net, steps, NULL, 0, NULL, 0)
        return (time.perf_counter() - t0) / max(steps, 1)
