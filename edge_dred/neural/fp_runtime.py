"""Compiled runtime of the frame-parallel vocoder: int8 frame network + compiled signal stage.

The design and the float64 reference are in :mod:`edge_dred.neural.fp_vocoder`
(``FPVocoderStream``); the model is trained by ``training/train_fp_vocoder.py`` and
exported by ``training/export_fp_vocoder.py``.  This runtime is not the shipped vocoder
(``edge_dred.neural.vocoder`` is); :class:`edge_dred.neural.continuation.Continuation` runs it
when given its model (``training/tune_concealment.py --fp-vocoder``), nothing shipped does.

Per call (a packet of any number of frames) there are two calls into C:

* the frame network (two causal convs as dense layers over the last three frames, a GRU,
  a dense layer) on :mod:`edge_dred.kernels` (int8 weights), all frames in one
  :class:`edge_dred.kernels.Network` run;
* the signal stage (``edge_dred/dsp/src/fp_synthesis.c`` over KISS FFT): filter design,
  pulse train, noise, overlap-save and cross-fade, all frames in one call.

numpy only normalises the features; the postfilter and the de-emphasis are the shipped
vocoder's (:mod:`edge_dred.dsp.postfilter`).  Frame ``i``'s call returns samples
``[160 i - 80, 160 i + 80)`` (5 ms algorithmic delay, see docs/vocoder.md).  The
postfilter measures a block over the 20 ms ending with it, centred on ``160 i - 80``,
half-way between the analysis windows of features ``i - 1`` and ``i``: its target is
their mean (:func:`postfilter_features`; docs/vocoder.md, "Runtime").

Public API
----------
:class:`FPVocoderModel`  weights shared by all streams (``FPVocoderModel.load(path=...)``).
:class:`FPVocoder`  one stream: ``synthesize(feats) -> int16``, ``prime(pcm, feats)``, ``reset()``.
:func:`export_fp_vocoder`  float parameters (torch ``state_dict`` names) -> weight file.
:func:`fp_copy_synthesis`  a signal resynthesised from its own features, aligned with it.
:func:`noise_sequence`  the noise a fresh stream draws (tests feed it to the reference).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from ..constants import FRAME_SIZE, NB_FEATURES, PITCH_MAX, PITCH_MIN, PREEMPHASIS, SAMPLE_RATE
from ..dsp import _fp_synthesis as _c
from ..dsp.features import C0_OFFSET
from ..dsp.postfilter import VocoderPostfilter, deemphasis_int16
from ..models.loader import ModelFileError
from . import fp_vocoder as ref
from .layers import LayerModel, export_gru, export_linear, float_gru, float_linear, linear_shape, load_gru, load_linear
from .vocoder import VocoderInputError, _check_features

__all__ = [
    "MODEL_NAME", "MODEL_VERSION", "FPVocoderShape", "FPVocoderModel", "FPVocoder", "export_fp_vocoder",
    "fp_copy_synthesis", "noise_sequence", "postfilter_features", "POSTFILTER", "DELAY",
]

MODEL_NAME = "fp_vocoder"
MODEL_VERSION = "fp-int8-1"
CONV_K = 3
N_OUT = ref.KNOTS_PER_FRAME * (2 * ref.NB_CORR + 1)
DELAY = ref.KNOT_HOP            # output samples behind the features' framing
POSTFILTER = (0.35, 0.35)       # envelope, pitch strengths (docs/vocoder.md: the shipped 0.7, 0.5 cost PLCMOS)
ENV_LOG10_MAX = 12.0            # the reference's clamp of log10 band energies


def _set_tables() -> None:
    sizes = {"FRAME": FRAME_SIZE, "KNOT_HOP": ref.KNOT_HOP, "NFFT": ref.NFFT, "IR_LEN": ref.IR_LEN,
             "NB_CORR": ref.NB_CORR, "NB_BANDS": 18, "NB_FEATURES": NB_FEATURES, "NOISE_WIN": ref.NOISE_WIN,
             "RAW": N_OUT, "PRIME_FRAMES": ref.PRIME_FRAMES, "EXC_HIST": ref.EXC_HIST,
             "PULSE_TAPS": ref.PULSE_TAPS, "PHASE_CANDIDATES": ref.PHASE_CANDIDATES}
    if sizes != _c.SIZES:
        raise RuntimeError(f"fp synthesis C build does not match edge_dred.neural.fp_vocoder: {_c.SIZES} != {sizes}")
    scal = np.array([C0_OFFSET, 2 * math.log(ref.INT16_SCALE), PITCH_MIN, PITCH_MAX, ref.VOICING_FLOOR, ref.CORR_MAX,
                     ref.DLOGT_MAX, ref.NOISE_FLOOR, ENV_LOG10_MAX, ref.PULSE_CUTOFF_HZ / SAMPLE_RATE,
                     ref.PULSE_BETA])
    env, corr = ref.envelope_basis(), ref.correction_basis()
    c = np.ascontiguousarray
    _c.set_tables(c(env), c(_min_phase_of(env)), c(corr), c(_min_phase_of(corr)), c(ref.dct_matrix()),
                  c(ref.ir_taper()), c(ref.knot_window()), c(ref.noise_window()), scal)


def _min_phase_of(logmag: np.ndarray) -> np.ndarray:
    """(rows, 257) ln-magnitudes -> their minimum phases (``fp_vocoder.min_phase`` before the exponential;
    linear in the ln-magnitude, so the runtime combines these rows instead of transforming each filter)."""
    fold = np.zeros(ref.NFFT)
    fold[0] = fold[ref.NFFT // 2] = 1.0
    fold[1:ref.NFFT // 2] = 2.0
    return np.fft.rfft(np.fft.irfft(logmag, ref.NFFT) * fold).imag


_set_tables()


def postfilter_features(prev: np.ndarray | None, f: np.ndarray) -> np.ndarray:
    """Postfilter targets of the output blocks of frames ``f`` (T, 20): the mean of each frame's
    features and the previous frame's (``prev``, the row before ``f[0]``; None: ``f[0]`` itself)."""
    before = np.vstack([f[:1] if prev is None else prev[None], f[:-1]])
    return (0.5 * (before + f)).astype(np.float32)


def noise_sequence(seed: int, n: int) -> np.ndarray:
    """The first ``n`` noise samples a stream with ``seed`` draws after a reset (float64)."""
    return _c.noise_sequence(int(seed), int(n)).astype(np.float64)


@dataclass(frozen=True)
class FPVocoderShape:
    """Layer sizes (the ``config`` entry of the weight file's metadata)."""

    conv: int = 128
    gru: int = 128

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FPVocoderShape":
        try:
            kw = {k: d[k] for k in ("conv", "gru")}
        except (KeyError, TypeError) as e:
            raise ModelFileError(f"fp vocoder config is incomplete or malformed: {e!r}") from None
        for k, v in kw.items():
            if not (isinstance(v, int) and 1 <= v <= 1024):
                raise ModelFileError(f"fp vocoder config: {k} = {v!r} out of range")
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(rows, cols) of every dense layer (convs as their (out, K * in) matrices, the GRU as ih / hh)."""
        c, g = self.conv, self.gru
        return {"conv1": (c, CONV_K * NB_FEATURES), "conv2": (c, CONV_K * c),
                "gru.ih": (3 * g, c), "gru.hh": (3 * g, g), "out": (N_OUT, g + c)}


def _conv_matrix(w: np.ndarray) -> np.ndarray:
    """torch Conv1d weight (out, in, K) -> (out, K * in), oldest frame's taps first (``kernels.conv1d_matrix``)."""
    return np.ascontiguousarray(np.asarray(w, np.float32).transpose(0, 2, 1)).reshape(w.shape[0], -1)


def _conv_weight(m: np.ndarray, c_in: int) -> np.ndarray:
    """Inverse of :func:`_conv_matrix`."""
    return np.ascontiguousarray(m.reshape(m.shape[0], CONV_K, c_in).transpose(0, 2, 1))


def export_fp_vocoder(params: Mapping[str, np.ndarray], config: Mapping[str, Any], path: str | os.PathLike, *,
                      extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Quantize float fp-vocoder parameters (int8 per row) and write the weight file.

    Parameters
    ----------
    params : mapping
        ``FPVocoder.state_dict()`` of ``training/fp_vocoder_model.py`` as numpy arrays
        (``conv1.weight`` (C, 20, 3), ``gru.weight_ih_l0``, ``out.weight``, ``feat_mean``, ...).
    config : mapping
        ``FPVocoderConfig.to_dict()``: ``conv``, ``gru``; ``lookahead`` and ``noise_norm``
        must be on (the only design this runtime runs).
    path : path
        Output file.
    extra_meta : mapping, optional
        Recorded in the file's metadata (e.g. the training step).

    Returns
    -------
    dict
        ``sha256``, ``bytes``, ``params`` and per-layer relative quantization error.
    """
    from edge_dred.quantize import write_weights

    for opt in ("lookahead", "noise_norm"):
        if not config.get(opt, True):
            raise ValueError(f"the runtime needs {opt}=True (the checkpoint was trained with it off)")
    shape = FPVocoderShape.from_dict({k: config[k] for k in ("conv", "gru") if k in config})
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}

    def get(k: str) -> np.ndarray:
        if k not in p:
            raise KeyError(f"fp vocoder parameters lack {k!r}")
        return p[k]

    arrays: dict[str, np.ndarray] = {"feat_mean": get("feat_mean").reshape(NB_FEATURES),
                                     "feat_std": get("feat_std").reshape(NB_FEATURES)}
    if np.any(arrays["feat_std"] <= 0):
        raise ValueError("feat_std must be positive")
    errs: dict[str, float] = {}
    n = 2.0 * NB_FEATURES
    for name in ("conv1", "conv2"):
        st = export_linear(arrays, name, _conv_matrix(get(f"{name}.weight")), get(f"{name}.bias"))
        errs[name], n = st["rel_err"], n + st["params"]
    st = export_gru(arrays, "gru", get("gru.weight_ih_l0"), get("gru.weight_hh_l0"), get("gru.bias_ih_l0"),
                    get("gru.bias_hh_l0"))
    errs["gru"], n = st["rel_err"], n + st["params"]
    st = export_linear(arrays, "out", get("out.weight"), get("out.bias"))
    errs["out"], n = st["rel_err"], n + st["params"]
    for name, want in shape.linear_shapes().items():
        if linear_shape(arrays, name) != want:
            raise ValueError(f"{name}: shape {linear_shape(arrays, name)} does not match config {want}")
    meta = {"model": MODEL_NAME, "version": MODEL_VERSION, "config": shape.to_dict(), **dict(extra_meta or {})}
    sha = write_weights(path, arrays, meta)
    return {"sha256": sha, "bytes": os.path.getsize(path), "params": int(n), "rel_err": errs}


class FPVocoderModel(LayerModel):
    """fp-vocoder weights, shared read-only by any number of :class:`FPVocoder` streams.

    ``FPVocoderModel.load(path=...)`` reads an exported file (the header checksum, model
    name and version are checked); the model is not in the shipped manifest.

    Raises
    ------
    ModelFileError
        Missing or mis-shaped arrays, bad config.
    """

    MODEL_NAME, MODEL_VERSION, LABEL, SHAPE = MODEL_NAME, MODEL_VERSION, "fp vocoder", FPVocoderShape

    def _check(self) -> None:
        self._kernel: dict[str, Any] | None = None
        self.kernel_layers()  # validate the int8 weights now, not mid-stream

    def kernel_layers(self) -> dict[str, Any]:
        """Kernel Linear / GRUCell objects by layer name (built once)."""
        if self._kernel is None:
            k = {name: load_linear(self.arrays, name) for name in ("conv1", "conv2", "out")}
            k["gru"] = load_gru(self.arrays, "gru")
            self._kernel = k
        return self._kernel

    def float_params(self) -> dict[str, np.ndarray]:
        """Dequantized parameters under the torch names, for ``fp_vocoder.FPVocoderStream``."""
        c = self.shape.conv
        w1, b1 = float_linear(self.arrays, "conv1")
        w2, b2 = float_linear(self.arrays, "conv2")
        wi, wh, bi, bh = float_gru(self.arrays, "gru")
        wo, bo = float_linear(self.arrays, "out")
        return {"feat_mean": self.feat_mean.astype(np.float64), "feat_std": self.feat_std.astype(np.float64),
                "conv1.weight": _conv_weight(w1, NB_FEATURES), "conv1.bias": b1,
                "conv2.weight": _conv_weight(w2, c), "conv2.bias": b2,
                "gru.weight_ih_l0": wi, "gru.weight_hh_l0": wh, "gru.bias_ih_l0": bi, "gru.bias_hh_l0": bh,
                "out.weight": wo, "out.bias": bo}


class FPVocoder:
    """One stream of the fp vocoder: int8 frame network + compiled signal stage.

    Parameters
    ----------
    model : FPVocoderModel
        Shared weights.
    seed : int
        Seed of the stream's noise excitation (restarted by :meth:`reset`).
    postfilter : bool
        Apply the runtime postfilter at :data:`POSTFILTER` strengths (default on).

    Notes
    -----
    Not thread-safe; one instance per stream.
    """

    def __init__(self, model: FPVocoderModel, seed: int = 0, postfilter: bool = True) -> None:
        from edge_dred.kernels import GRU, Conv1d, Dense, Network

        s, k = model.shape, model.kernel_layers()
        self.model = model
        self._net = Network(
            buffers={"x": NB_FEATURES, "c1": s.conv, "c2": s.conv, "h": s.gru, "out": N_OUT},
            ops=[Conv1d(["x"], "c1", k["conv1"], kernel_size=CONV_K, activation="tanh"),
                 Conv1d(["c1"], "c2", k["conv2"], kernel_size=CONV_K, activation="tanh"),
                 GRU(["c2"], "h", k["gru"]),
                 Dense(["h", "c2"], "out", k["out"])])
        self._syn = _c.Synthesis(int(seed))
        self.postfilter = VocoderPostfilter(*POSTFILTER) if postfilter else None
        self.prime_score = float("nan")
        self.reset()

    @property
    def state_bytes(self) -> int:
        """Per-stream memory: network buffers, the signal stage's block, the postfilter."""
        n = sum(self._net.buffer(b).nbytes for b in self._net.buffer_names) + self._syn.nbytes
        return int(n + (self.postfilter.state_bytes if self.postfilter is not None else 0))

    def reset(self) -> None:
        """Silence before the stream: zero network and signal state, the noise back at its seed."""
        self._net.reset()
        self._syn.reset()
        self._x_mem = 0.0
        self._prev: np.ndarray | None = None  # the last frame's features (postfilter target)
        if self.postfilter is not None:
            self.postfilter.reset()

    def _network(self, f: np.ndarray) -> np.ndarray:
        x = (f - self.model.feat_mean) / self.model.feat_std
        return self._net.run({"x": x}, fetch=["out"])["out"]

    def synthesize_pe(self, features: np.ndarray) -> np.ndarray:
        """(T, 20) features -> (T, 160) pre-emphasised float32 output, no postfilter (5 ms late)."""
        f = _check_features(features)
        out = np.empty((f.shape[0], FRAME_SIZE), np.float32)
        if f.shape[0] == 0:
            return out
        raw = self._network(f)
        if self._syn.process(f, raw, out) != 0:
            raise VocoderInputError("fp vocoder: the network's outputs are not finite")
        return out

    def synthesize(self, features: np.ndarray) -> np.ndarray:
        """Synthesise ``len(features)`` frames as int16 PCM (T * 160,); frame i's 160 samples end 80
        samples after frame i ends (the 5 ms look-ahead)."""
        f = _check_features(features)
        e = self.synthesize_pe(f)
        if f.shape[0]:
            if self.postfilter is not None:
                e = self.postfilter.process(e, postfilter_features(self._prev, f))
            self._prev = f[-1].copy()
        pcm, self._x_mem = deemphasis_int16(e, self._x_mem)
        return pcm

    def prime(self, pcm: np.ndarray, features: np.ndarray) -> float:
        """Continue from real audio (``FPVocoderStream.prime``): search the pulse phase in it.

        Parameters
        ----------
        pcm : numpy.ndarray
            The last real samples (int16 scale), newest last, at least ``4 * 160 + 1``;
            the last sample ends the last feature frame.
        features : numpy.ndarray
            (n >= 4, 20) features of the last ``n`` real frames; the network runs over them
            from wherever the stream stands (reset it first to start fresh).

        Returns
        -------
        float
            The correlation of the chosen phase's harmonic re-synthesis with the real signal
            over the last 20 ms it reaches.  The next :meth:`synthesize` starts 80 samples
            before the end of ``pcm`` (room for a cross-fade).
        """
        f = _check_features(features, ref.PRIME_FRAMES)
        need = ref.PRIME_FRAMES * FRAME_SIZE + 1
        x = np.asarray(pcm)
        if x.ndim != 1 or x.shape[0] < need:
            raise VocoderInputError(f"prime needs a 1-D history of at least {need} samples, got shape {x.shape}")
        x = x[-need:].astype(np.float64) / 32768.0
        if not np.all(np.isfinite(x)) or np.any(np.abs(x) > 2.0):
            raise VocoderInputError("pcm must be finite and on the int16 scale")
        pe = (x[1:] - PREEMPHASIS * x[:-1]).astype(np.float32)
        raw = self._network(f)
        rc, score = self._syn.prime(pe, f, raw)
        if rc != 0:
            raise VocoderInputError("fp vocoder: the network's outputs are not finite")
        # the output restarts 80 samples before the end of pcm: the de-emphasis and the
        # postfilter continue from the real signal there
        self._x_mem = float(x[-DELAY - 1])
        self._prev = f[-1].copy()
        if self.postfilter is not None:
            self.postfilter.prime(pe[:-DELAY])
        self.prime_score = score
        return score


def fp_copy_synthesis(pcm: np.ndarray, vocoder: FPVocoder) -> np.ndarray:
    """Resynthesise int16 ``pcm`` from its own features, free-running from silence (the stream is
    reset), sample-aligned with the input (the 5 ms look-ahead is one more frame of features)."""
    from ..dsp.features import compute_features

    x = np.asarray(pcm)
    if x.ndim != 1 or x.dtype != np.int16 or x.shape[0] == 0:
        raise VocoderInputError(f"copy synthesis needs non-empty 1-D int16 PCM, got {x.dtype} {x.shape}")
    n = -(-x.shape[0] // FRAME_SIZE) + 1
    f = compute_features(np.concatenate([x, np.zeros(n * FRAME_SIZE - x.shape[0], np.int16)]))
    vocoder.reset()
    return vocoder.synthesize(f)[DELAY:DELAY + x.shape[0]]
