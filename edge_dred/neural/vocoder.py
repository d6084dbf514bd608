"""FARGAN-like neural vocoder: int8 runtime on :mod:`edge_dred.kernels` and a float reference.

The model (trained by ``training/train_vocoder.py``, exported by
``training/export_vocoder.py``) turns 20 LPCNet features per 10 ms frame
(:mod:`edge_dred.dsp.features`) into 160 samples of 16 kHz speech.  It continues
from real audio: :meth:`Vocoder.prime` loads the history buffers from the last
real samples and runs a few real frames teacher-forced so the recurrent state
matches the signal, then :meth:`Vocoder.synthesize` produces the following
frames free-running.

Signal conventions (identical to ``training/vocoder_model.py``)
-----------------------------------------------------------------
* ``x = pcm / 32768``; the network works on the pre-emphasised signal
  ``e[n] = x[n] - 0.85 x[n-1]``; the output is de-emphasised and clipped to
  int16.
* Frame ``i`` = samples ``[160 i, 160 i + 160)`` is synthesised from features
  ``i, i-1, i-2`` (causal conv in the conditioning net).
* A frame is 4 subframes of 40 samples.  Each subframe sees its conditioning
  vector, the previous 40 output samples and 44 samples of its own past output
  around the integer pitch lag ``round(period)`` (clamped to 32..267; taps
  that would fall into the future wrap back by one lag), both divided by the
  subframe gain ``exp(gain_dense(cond))``.

Layers run on the int8 kernels except the two tiny gain layers (their output
is exponentiated, so they stay float).  The conditioning net runs all
requested frames in one call into C; then one more call runs all their
subframes, each a step of a :class:`edge_dred.kernels.Network` doing the gains,
the pitch-lag gather (``Lag`` op), the GRUs, the output and the push into the
history (``Shift`` op).  numpy only prepares the inputs (normalisation, pitch
embedding) and de-emphasises the output.  Dense int8 everywhere: 8x4 block sparsity of the
GRU recurrent matrices (``export_vocoder(gru_density=...)``) was measured
not to pay (no speed-up at these sizes, and the model was not trained
sparse: teacher-forced int8-vs-float SNR drops from ~37 dB to ~22 dB at 50 %).

Public API
----------
:class:`VocoderModel`  weights (shared by all streams): ``VocoderModel.load()``
    reads the shipped ``models/vocoder.bin`` after the manifest checks.
:class:`Vocoder`  one stream's int8 runtime state: ``prime(pcm, feats)``,
    ``synthesize(feats) -> int16``, ``reset()``.
:class:`VocoderReference`  the same maths in float64 numpy (the test oracle).
:func:`export_vocoder`  float parameters (torch ``state_dict`` names) -> weight file.
:func:`random_vocoder_params`  a randomly initialised model (tests, benchmarks).
:func:`copy_synthesis`  a whole signal resynthesised from its own features (the
    vocoder's ceiling; the ``vocoder`` condition of ``edge-dred eval``).
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from ..constants import FRAME_SIZE, NB_FEATURES, PITCH_MAX, PITCH_MIN, PREEMPHASIS
from ..dsp.postfilter import EnvelopePostfilter, PitchPostfilter, VocoderPostfilter, deemphasis_int16
from ..models.loader import ModelFileError
from .layers import (LayerModel, dense, export_gru, export_linear, float_gru, float_linear, glu,
                     gru_step, linear_shape, load_gru, load_linear)

__all__ = [
    "MODEL_NAME", "MODEL_VERSION", "VocoderShape", "VocoderModel", "Vocoder", "VocoderReference",
    "VocoderInputError", "export_vocoder", "random_vocoder_params", "PRIME_FRAMES", "prime_samples",
    "copy_synthesis", "shipped_vocoder",
]

MODEL_NAME = "vocoder"
MODEL_VERSION = "fargan-int8-1"  # weight layout this runtime understands

SUBFRAME = 40
NB_SUB = FRAME_SIZE // SUBFRAME
PRED_EXTRA = 2
PRED_SIZE = SUBFRAME + 2 * PRED_EXTRA
HIST = 320
COND_CONV_K = 3
PRIME_FRAMES = 3  # teacher-forced frames when priming (as in training)
MAX_FRAMES_PER_CALL = 100_000  # 1000 s: bounds the work one call can ask for

_F32_LAYERS = ("gain_dense", "pgain_dense")  # exponentiated outputs: kept in float
_GLU_LAYERS = ("fwc_glu.gate", "glu1.gate", "glu2.gate", "glu3.gate", "skip_glu.gate")


class VocoderInputError(ValueError):
    """Bad features or PCM handed to the vocoder."""


def prime_samples(n_teacher: int = PRIME_FRAMES) -> int:
    """PCM samples :meth:`Vocoder.prime` needs for ``n_teacher`` teacher-forced frames."""
    return HIST + 1 + n_teacher * FRAME_SIZE


@dataclass(frozen=True)
class VocoderShape:
    """Layer sizes (the ``config`` entry of the weight file's metadata)."""

    pembed_dim: int = 12
    cond_dense1: int = 64
    cond_conv: int = 128
    cond_size: int = 64
    fwc_size: int = 128
    gru_sizes: tuple[int, int, int] = (128, 112, 96)
    skip_size: int = 112

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VocoderShape":
        try:
            kw = {k: d[k] for k in ("pembed_dim", "cond_dense1", "cond_conv", "cond_size", "fwc_size", "skip_size")}
            kw["gru_sizes"] = tuple(int(g) for g in d["gru_sizes"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"vocoder config is incomplete or malformed: {e!r}") from None
        if len(kw["gru_sizes"]) != 3:
            raise ModelFileError("vocoder config: gru_sizes must have 3 entries")
        for k, v in kw.items():
            vals = v if isinstance(v, tuple) else (v,)
            if not all(isinstance(x, int) and 1 <= x <= 4096 for x in vals):
                raise ModelFileError(f"vocoder config: {k} = {v!r} out of range")
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gru_sizes"] = list(self.gru_sizes)
        return d

    @property
    def sig_in(self) -> int:
        return self.cond_size + PRED_SIZE + SUBFRAME + 1

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(rows, cols) of every dense layer (GRUs as ``g.ih`` / ``g.hh``)."""
        c, side = self.cond_size, PRED_SIZE + SUBFRAME
        g1, g2, g3 = self.gru_sizes
        return {
            "cond_dense1": (self.cond_dense1, NB_FEATURES + self.pembed_dim),
            "cond_conv": (self.cond_conv, COND_CONV_K * self.cond_dense1),
            "cond_dense2": (NB_SUB * c, self.cond_conv),
            "gain_dense": (1, c),
            "pgain_dense": (4, c),
            "fwc": (self.fwc_size, 2 * self.sig_in),
            "fwc_glu.gate": (self.fwc_size, self.fwc_size),
            "gru1.ih": (3 * g1, self.fwc_size + side), "gru1.hh": (3 * g1, g1),
            "gru2.ih": (3 * g2, g1 + side), "gru2.hh": (3 * g2, g2),
            "gru3.ih": (3 * g3, g2 + side), "gru3.hh": (3 * g3, g3),
            "glu1.gate": (g1, g1), "glu2.gate": (g2, g2), "glu3.gate": (g3, g3),
            "skip_dense": (self.skip_size, self.fwc_size + g1 + g2 + g3 + side),
            "skip_glu.gate": (self.skip_size, self.skip_size),
            "out_dense": (SUBFRAME, self.skip_size),
        }


# ---------------------------------------------------------------- export

def export_vocoder(params: Mapping[str, np.ndarray], config: Mapping[str, Any], path: str | os.PathLike, *,
                   version: str = MODEL_VERSION, gru_density: float | None = None,
                   extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Quantize float vocoder parameters and write the weight file.

    Parameters
    ----------
    params : mapping
        ``Vocoder.state_dict()`` of ``training/vocoder_model.py`` as numpy
        arrays (``cond_dense1.weight``, ``gru1.weight_ih``, ``feat_mean``, ...).
    config : mapping
        ``VocoderConfig.to_dict()`` (layer sizes).
    path : path
        Output file.
    gru_density : float, optional
        Keep this fraction of 8x4 blocks of the GRU recurrent matrices
        (block-sparse kernel, dense diagonals); None = dense int8.
    extra_meta : mapping, optional
        Recorded in the file's metadata (e.g. the training step).

    Returns
    -------
    dict
        ``sha256``, ``bytes``, ``params`` (weights kept) and per-layer
        relative quantization error.
    """
    from edge_dred.quantize import write_weights

    shape = VocoderShape.from_dict(config)
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}

    def get(k: str) -> np.ndarray:
        if k not in p:
            raise KeyError(f"vocoder parameters lack {k!r}")
        return p[k]

    arrays: dict[str, np.ndarray] = {
        "feat_mean": get("feat_mean").reshape(NB_FEATURES),
        "feat_std": get("feat_std").reshape(NB_FEATURES),
        "pembed": get("pembed.weight").reshape(PITCH_MAX - PITCH_MIN + 1, shape.pembed_dim),
    }
    if np.any(arrays["feat_std"] <= 0):
        raise ValueError("feat_std must be positive")
    errs: dict[str, float] = {}
    n_params = float(arrays["pembed"].size + 2 * NB_FEATURES)
    for name in shape.linear_shapes():
        if name.startswith("gru"):
            continue
        mode = "float" if name in _F32_LAYERS else "int8"
        st = export_linear(arrays, name, get(f"{name}.weight"), get(f"{name}.bias"), mode=mode)
        errs[name], n_params = st["rel_err"], n_params + st["params"]
    for g in ("gru1", "gru2", "gru3"):
        st = export_gru(arrays, g, get(f"{g}.weight_ih"), get(f"{g}.weight_hh"), get(f"{g}.bias_ih"),
                        get(f"{g}.bias_hh"), rec_mode="sparse" if gru_density else "int8", density=gru_density)
        errs[g], n_params = st["rel_err"], n_params + st["params"]
    for name, (rows, cols) in shape.linear_shapes().items():
        if linear_shape(arrays, name) != (rows, cols):
            raise ValueError(f"{name}: shape {linear_shape(arrays, name)} does not match config ({rows}, {cols})")
    meta = {"model": MODEL_NAME, "version": version, "config": shape.to_dict(),
            "gru_density": gru_density, **dict(extra_meta or {})}
    sha = write_weights(path, arrays, meta)
    return {"sha256": sha, "bytes": os.path.getsize(path), "params": int(n_params), "rel_err": errs}


def random_vocoder_params(shape: VocoderShape | Mapping[str, Any] | None = None, seed: int = 0,
                          feat_mean: np.ndarray | None = None, feat_std: np.ndarray | None = None
                          ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A randomly initialised vocoder (torch-like uniform init), for tests and benchmarks.

    Returns ``(params, config)`` ready for :func:`export_vocoder`.
    """
    if shape is None:
        shape = VocoderShape()
    elif not isinstance(shape, VocoderShape):
        shape = VocoderShape.from_dict(shape)
    rng = np.random.default_rng(seed)
    p: dict[str, np.ndarray] = {}
    for name, (rows, cols) in shape.linear_shapes().items():
        k = 1.0 / np.sqrt(cols)
        if name.startswith("gru"):
            g, part = name.split(".")
            k = 1.0 / np.sqrt(rows // 3)
            p[f"{g}.weight_{part}"] = rng.uniform(-k, k, (rows, cols)).astype(np.float32)
            p[f"{g}.bias_{part}"] = rng.uniform(-k, k, rows).astype(np.float32)
        else:
            p[f"{name}.weight"] = rng.uniform(-k, k, (rows, cols)).astype(np.float32)
            p[f"{name}.bias"] = rng.uniform(-k, k, rows).astype(np.float32)
    p["gain_dense.bias"][:] = -4.0  # as the training code: start near speech level
    p["pembed.weight"] = rng.normal(0, 1, (PITCH_MAX - PITCH_MIN + 1, shape.pembed_dim)).astype(np.float32)
    p["feat_mean"] = np.zeros(NB_FEATURES, np.float32) if feat_mean is None else np.asarray(feat_mean, np.float32)
    p["feat_std"] = np.ones(NB_FEATURES, np.float32) if feat_std is None else np.asarray(feat_std, np.float32)
    return p, shape.to_dict()


# ----------------------------------------------------------------- model

class VocoderModel(LayerModel):
    """Vocoder weights, shared read-only by any number of :class:`Vocoder` streams.

    Parameters
    ----------
    arrays, meta : as returned by :func:`edge_dred.quantize.read_weights`.

    Raises
    ------
    ModelFileError
        Missing or mis-shaped arrays, bad config.
    """

    MODEL_NAME, MODEL_VERSION, LABEL, SHAPE = MODEL_NAME, MODEL_VERSION, "vocoder", VocoderShape

    def _check(self) -> None:
        self.pembed = self._vec("pembed", (PITCH_MAX - PITCH_MIN + 1, self.shape.pembed_dim))
        self._kernel: dict[str, Any] | None = None
        self.kernel_layers()  # validate int8 weights (pair rule, sparse index) now, not mid-stream

    def kernel_layers(self) -> dict[str, Any]:
        """Kernel Linear/GRUCell objects by layer name (built once)."""
        if self._kernel is None:
            k: dict[str, Any] = {}
            for name in self.shape.linear_shapes():
                if name.startswith("gru"):
                    g = name.split(".")[0]
                    if g not in k:
                        k[g] = load_gru(self.arrays, g)
                else:
                    k[name] = load_linear(self.arrays, name)
            # (glog, -glog) in one float layer, so an exp gives (gain, 1/gain).
            from edge_dred.kernels import make_linear

            wg, bg = float_linear(self.arrays, "gain_dense")
            k["gain2"] = make_linear(np.vstack([wg, -wg]), np.concatenate([bg, -bg]), mode="float")
            self._kernel = k
        return self._kernel

    def float_layers(self) -> dict[str, Any]:
        """Dequantized float64 layers by name (for :class:`VocoderReference`)."""
        if self._float is None:
            f: dict[str, Any] = {}
            for name in self.shape.linear_shapes():
                if name.startswith("gru"):
                    g = name.split(".")[0]
                    f[g] = float_gru(self.arrays, g)
                else:
                    f[name] = float_linear(self.arrays, name)
            self._float = f
        return self._float

    def frame_inputs(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conditioning-net inputs (normalised features + pitch embedding) and lags for (T, 20) features."""
        r = np.rint(feats[:, 18])      # as clip(round()): half to even
        # intp, not int64: take(out=) refuses int64 indices on 32-bit ARM
        lag = np.minimum(np.maximum(r, PITCH_MIN, out=r), PITCH_MAX, out=r).astype(np.intp)
        if feats.dtype != np.float32:
            x = (feats - self.feat_mean) / self.feat_std
            return np.concatenate([x, self.pembed[lag - PITCH_MIN]], axis=1).astype(np.float32), lag
        # Per synthesis call: the same float32 arithmetic, written into one array.
        out = np.empty((feats.shape[0], NB_FEATURES + self.pembed.shape[1]), np.float32)
        x = out[:, :NB_FEATURES]
        np.subtract(feats, self.feat_mean, out=x)
        np.divide(x, self.feat_std, out=x)
        np.take(self.pembed, lag - PITCH_MIN, axis=0, out=out[:, NB_FEATURES:])
        return out, lag


@functools.lru_cache(maxsize=1)
def shipped_vocoder() -> VocoderModel:
    """The shipped weights, loaded and manifest-checked once per process (every stream shares them)."""
    return VocoderModel.load()


def _pred_positions(lag: int) -> np.ndarray:
    """History indices of the 44 pitch-prediction taps (future taps wrap back one lag)."""
    pos = HIST - lag + np.arange(PRED_SIZE) - PRED_EXTRA
    return np.where(pos >= HIST, pos - lag, pos)


def _check_features(feats: np.ndarray, min_rows: int = 0) -> np.ndarray:
    f = np.asarray(feats)
    if f.ndim != 2 or f.shape[1] != NB_FEATURES:
        raise VocoderInputError(f"features must be (frames, {NB_FEATURES}), got {f.shape}")
    if f.shape[0] < min_rows:
        raise VocoderInputError(f"need at least {min_rows} feature frames, got {f.shape[0]}")
    if f.shape[0] > MAX_FRAMES_PER_CALL:
        raise VocoderInputError(f"{f.shape[0]} frames in one call (max {MAX_FRAMES_PER_CALL})")
    f = np.ascontiguousarray(f, np.float32)     # read only: no copy needed when it already is
    # One reduction: the largest |value| is NaN or inf whenever any value is.
    if f.size and not float(np.abs(f).max()) <= 1e4:
        raise VocoderInputError("features must be finite and within +-1e4")
    return f


@functools.lru_cache(maxsize=16)
def _free_running_feeds(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Constant feeds of ``n`` free-running subframes (fed back: own output, no teacher); read-only."""
    fr, teach = np.ones((n, 1), np.float32), np.zeros((n, SUBFRAME), np.float32)
    fr.flags.writeable = teach.flags.writeable = False
    return fr, teach


# ---------------------------------------------------------------- streams

Postfilter = VocoderPostfilter | EnvelopePostfilter | PitchPostfilter


class _VocoderStream:
    """Shared orchestration: priming, pre/de-emphasis, the postfilter."""

    def __init__(self, model: VocoderModel | None = None, postfilter: bool | Postfilter = True) -> None:
        self.model = model if model is not None else shipped_vocoder()
        if postfilter is True:
            postfilter = VocoderPostfilter()
        elif postfilter is not False and not isinstance(postfilter, Postfilter):
            raise TypeError(f"postfilter must be a bool or a postfilter from edge_dred.dsp.postfilter, got {postfilter!r}")
        # Outside the feedback loop: the network keeps seeing its own unfiltered output.
        self.postfilter: Postfilter | None = postfilter or None
        self.reset()

    # subclasses implement these four
    def _reset_state(self) -> None:
        raise NotImplementedError

    def _cond_history(self, fin: np.ndarray) -> None:
        """Zero the state, then fill the conditioning conv history from 2 frames' inputs."""
        raise NotImplementedError

    def _set_history(self, pe: np.ndarray) -> None:
        raise NotImplementedError

    def _frames(self, fin: np.ndarray, lag: np.ndarray, teacher: np.ndarray | None) -> np.ndarray:
        """Run T frames (teacher: (T, 160) real signal fed back instead of the output);
        returns (T, 160) pre-emphasised output."""
        raise NotImplementedError

    def reset(self) -> None:
        """Zero all state (as at the start of a stream)."""
        self._reset_state()
        self._x_mem = 0.0  # last output sample (de-emphasis memory), float scale
        if self.postfilter is not None:
            self.postfilter.reset()
        self.primed = False

    def prime(self, pcm: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Continue from real audio.

        Parameters
        ----------
        pcm : np.ndarray
            The most recent real samples (int16 scale), newest last; at least
            ``prime_samples(len(features) - 2)`` of them.  Its last sample ends
            the last feature frame.
        features : np.ndarray
            (n, 20) features of the last ``n >= 2`` frames of ``pcm`` (n = 5
            recommended: 2 frames fill the conditioning conv history, the other
            ``n - 2`` run teacher-forced to settle the recurrent states).

        Returns
        -------
        np.ndarray
            The network's own one-step outputs during the teacher-forced frames
            (pre-emphasised, float scale, ``(n - 2) * 160``): a cheap check of
            how well the model predicts the real signal.
        """
        f = _check_features(features, 2)
        n_tf = f.shape[0] - 2
        need = prime_samples(n_tf)
        x = np.asarray(pcm)
        if x.ndim != 1 or x.shape[0] < need:
            raise VocoderInputError(f"prime needs a 1-D history of at least {need} samples for {n_tf} "
                                    f"teacher-forced frames, got shape {x.shape}")
        x = x[-need:]
        # int16 PCM (the receiver's history) is finite and in range by its type
        checked = x.dtype == np.int16
        x = x.astype(np.float64) / 32768.0
        if not checked and not float(np.abs(x).max()) <= 2.0:    # NaN fails too
            raise VocoderInputError("pcm must be finite and on the int16 scale")
        pe = x[1:] - PREEMPHASIS * x[:-1]
        fin, lag = self.model.frame_inputs(f)
        self._cond_history(fin[:2])
        self._set_history(pe[:HIST])
        tf_out = np.zeros(n_tf * FRAME_SIZE, np.float32)
        if n_tf:
            tf_out[:] = self._frames(fin[2:], lag[2:], pe[HIST:].reshape(n_tf, FRAME_SIZE)).ravel()
        self._x_mem = float(x[-1])
        if self.postfilter is not None:
            self.postfilter.prime(pe)
        self.primed = True
        return tf_out

    def synthesize(self, features: np.ndarray) -> np.ndarray:
        """Synthesise ``len(features)`` frames (free-running) as int16 PCM (T*160,)."""
        f = _check_features(features)
        if f.shape[0] == 0:
            return np.zeros(0, np.int16)
        fin, lag = self.model.frame_inputs(f)
        e = self._frames(fin, lag, None)
        if self.postfilter is not None:
            e = self.postfilter.process(e, f)
        pcm, self._x_mem = deemphasis_int16(e, self._x_mem)
        return pcm


class Vocoder(_VocoderStream):
    """One stream of the int8 vocoder on :mod:`edge_dred.kernels`.

    Two :class:`Network` objects: the conditioning net (one step per frame)
    and the subframe net (one step per 40-sample subframe: gains, pitch-lag
    gather, GRUs, output, push into the history).  :meth:`synthesize` runs the
    conditioning of all requested frames in one call into C and then all
    their subframes in a second one.

    Parameters
    ----------
    model : VocoderModel, optional
        Shared weights; default: the shipped model (pass one model to many
        streams).
    postfilter : bool or a postfilter from :mod:`edge_dred.dsp.postfilter`
        Filter the output towards the features' band energies, then their
        pitch (:class:`edge_dred.dsp.postfilter.VocoderPostfilter`, no added
        delay); default on.  False gives the network's raw output.

    Notes
    -----
    Not thread-safe; one instance per stream.  Per-stream memory: the float
    buffers (:attr:`state_bytes`), scratch and the op tables; the weights are
    shared.
    """

    def __init__(self, model: VocoderModel | None = None, postfilter: bool | Postfilter = True) -> None:
        from edge_dred.kernels import GLU, GRU, Act, Add, Conv1d, Dense, Lag, Mul, Network, Shift

        model = model if model is not None else shipped_vocoder()
        s = model.shape
        k = model.kernel_layers()
        c = s.cond_size
        g1, g2, g3 = s.gru_sizes
        P = PRED_SIZE
        self._cond_net = Network(
            buffers={"fin": NB_FEATURES + s.pembed_dim, "d1": s.cond_dense1, "cc": s.cond_conv, "cond": NB_SUB * c},
            ops=[Dense(["fin"], "d1", k["cond_dense1"], activation="tanh"),
                 Conv1d(["d1"], "cc", k["cond_conv"], kernel_size=COND_CONV_K, activation="tanh"),
                 Dense(["cc"], "cond", k["cond_dense2"], activation="tanh")])
        self._sub_net = Network(
            buffers={"cond": c, "lag": 1, "teach": SUBFRAME, "fr": 1, "g2": 2, "eg": 2, "pg": 4, "predn": P,
                     "prevn": SUBFRAME, "pp": 4 * P, "f": s.fwc_size, "fg": s.fwc_size, "h1": g1, "o1": g1,
                     "h2": g2, "o2": g2, "h3": g3, "o3": g3, "s": s.skip_size, "sg": s.skip_size, "y": SUBFRAME,
                     "out": SUBFRAME, "fb": SUBFRAME, "hist": HIST},
            ops=[
                Dense(["cond"], "g2", k["gain2"]),
                Act(["g2"], "eg", "exp"),  # eg = (gain, 1/gain)
                Dense(["cond"], "pg", k["pgain_dense"], activation="sigmoid"),
                Lag("hist", "lag", "predn", scale=("eg", 1, 2), pre=PRED_EXTRA, lag_min=PITCH_MIN,
                    lag_max=PITCH_MAX),
                Mul([("hist", HIST - SUBFRAME, HIST), ("eg", 1, 2)], "prevn"),
                *[Mul(["predn", ("pg", i, i + 1)], ("pp", i * P, (i + 1) * P)) for i in range(4)],
                Conv1d(["cond", "predn", "prevn", ("g2", 0, 1)], "f", k["fwc"], kernel_size=2, activation="tanh"),
                GLU(["f"], "fg", k["fwc_glu.gate"]),
                GRU(["fg", ("pp", 0, P), "prevn"], "h1", k["gru1"]),
                GLU(["h1"], "o1", k["glu1.gate"]),
                GRU(["o1", ("pp", P, 2 * P), "prevn"], "h2", k["gru2"]),
                GLU(["h2"], "o2", k["glu2.gate"]),
                GRU(["o2", ("pp", 2 * P, 3 * P), "prevn"], "h3", k["gru3"]),
                GLU(["h3"], "o3", k["glu3.gate"]),
                Dense(["fg", "o1", "o2", "o3", ("pp", 3 * P, 4 * P), "prevn"], "s", k["skip_dense"],
                      activation="tanh"),
                GLU(["s"], "sg", k["skip_glu.gate"]),
                Dense(["sg"], "y", k["out_dense"], activation="tanh"),
                Mul(["y", ("eg", 0, 1)], "out"),
                # fed back: the output (fr = 1, teach = 0) or the real signal (fr = 0)
                Mul(["out", "fr"], "fb"),
                Add(["fb", "teach"], "fb"),
                Shift(["fb"], "hist"),
            ])
        # The per-call runs, buffers named once.
        self._run_cond = self._cond_net.bind(["fin"], ["cond"])
        self._run_sub = self._sub_net.bind(["cond", "lag", "fr", "teach"], ["out"])
        super().__init__(model, postfilter)

    @property
    def state_bytes(self) -> int:
        """Per-stream float buffers (states, histories, intermediates, postfilter) in bytes."""
        n = sum(n.buffer(b).nbytes for n in (self._cond_net, self._sub_net) for b in n.buffer_names)
        return int(n + (self.postfilter.state_bytes if self.postfilter is not None else 0))

    def _reset_state(self) -> None:
        self._cond_net.reset()
        self._sub_net.reset()

    def _cond_history(self, fin: np.ndarray) -> None:
        self._reset_state()
        self._cond_net.run({"fin": fin})

    def _set_history(self, pe: np.ndarray) -> None:
        self._sub_net.buffer("hist")[:] = pe

    def _frames(self, fin: np.ndarray, lag: np.ndarray, teacher: np.ndarray | None) -> np.ndarray:
        t = len(fin)
        n = t * NB_SUB
        cond = self._run_cond(t, fin)[0].reshape(n, self.model.shape.cond_size)
        lags = np.repeat(lag.astype(np.float32), NB_SUB).reshape(n, 1)
        if teacher is None:
            fr, teach = _free_running_feeds(n)
        else:
            fr, teach = np.zeros((n, 1), np.float32), np.asarray(teacher, np.float32).reshape(n, SUBFRAME)
        return self._run_sub(n, cond, lags, fr, teach)[0].reshape(t, FRAME_SIZE)


class VocoderReference(_VocoderStream):
    """The vocoder in float64 numpy with the model's dequantized weights (test oracle)."""

    def _reset_state(self) -> None:
        s = self.model.shape
        self._st = {"hist": np.zeros(HIST), "fwc_mem": np.zeros(s.sig_in), "h1": np.zeros(s.gru_sizes[0]),
                    "h2": np.zeros(s.gru_sizes[1]), "h3": np.zeros(s.gru_sizes[2]),
                    "cond_hist": np.zeros((COND_CONV_K - 1, s.cond_dense1))}

    def _set_history(self, pe: np.ndarray) -> None:
        self._st["hist"] = np.asarray(pe, np.float64).copy()

    def _cond_history(self, fin: np.ndarray) -> None:
        self._reset_state()
        for row in fin:
            self._cond(row)

    def _frames(self, fin: np.ndarray, lag: np.ndarray, teacher: np.ndarray | None) -> np.ndarray:
        return np.stack([self._frame(fin[i], int(lag[i]), None if teacher is None else teacher[i])
                         for i in range(len(fin))])

    def _cond(self, fin: np.ndarray) -> np.ndarray:
        L, st = self.model.float_layers(), self._st
        h = dense(L["cond_dense1"], fin, "tanh")
        win = np.concatenate([st["cond_hist"].ravel(), h])
        st["cond_hist"] = np.vstack([st["cond_hist"][1:], h[None]])
        h = dense(L["cond_conv"], win, "tanh")
        return dense(L["cond_dense2"], h, "tanh").reshape(NB_SUB, self.model.shape.cond_size)

    def _frame(self, fin: np.ndarray, lag: int, teacher: np.ndarray | None) -> np.ndarray:
        L, st = self.model.float_layers(), self._st
        cond = self._cond(fin)
        pos = _pred_positions(lag)
        out = np.empty(FRAME_SIZE)
        for j in range(NB_SUB):
            cj = cond[j]
            glog = dense(L["gain_dense"], cj)
            gain = np.exp(glog)
            pg = dense(L["pgain_dense"], cj, "sigmoid")
            hist = st["hist"]
            pred = hist[pos] / gain
            prev = hist[HIST - SUBFRAME:] / gain
            x = np.concatenate([cj, pred, prev, glog])
            f = np.tanh(L["fwc"][0] @ np.concatenate([st["fwc_mem"], x]) + L["fwc"][1])
            st["fwc_mem"] = x
            f = glu(L["fwc_glu.gate"], f)
            st["h1"] = gru_step(L["gru1"], np.concatenate([f, pg[0] * pred, prev]), st["h1"])
            o1 = glu(L["glu1.gate"], st["h1"])
            st["h2"] = gru_step(L["gru2"], np.concatenate([o1, pg[1] * pred, prev]), st["h2"])
            o2 = glu(L["glu2.gate"], st["h2"])
            st["h3"] = gru_step(L["gru3"], np.concatenate([o2, pg[2] * pred, prev]), st["h3"])
            o3 = glu(L["glu3.gate"], st["h3"])
            s = dense(L["skip_dense"], np.concatenate([f, o1, o2, o3, pg[3] * pred, prev]), "tanh")
            s = glu(L["skip_glu.gate"], s)
            y = np.tanh(L["out_dense"][0] @ s + L["out_dense"][1]) * gain
            out[j * SUBFRAME:(j + 1) * SUBFRAME] = y
            fb = y if teacher is None else teacher[j * SUBFRAME:(j + 1) * SUBFRAME]
            st["hist"] = np.concatenate([hist[SUBFRAME:], fb])
        return out


def copy_synthesis(pcm: np.ndarray, vocoder: "_VocoderStream | None" = None) -> np.ndarray:
    """Resynthesise a signal from its own features, free-running from its start.

    What the vocoder makes of perfect features: the ceiling of every neural
    concealment.  The stream is primed on silence before the signal, so not
    one real sample is fed back; the output is sample-aligned with the input.

    Parameters
    ----------
    pcm : numpy.ndarray
        int16 mono 16 kHz, at least one sample.
    vocoder : Vocoder or VocoderReference, optional
        The stream to use (it is primed afresh); default a new :class:`Vocoder`
        on the shipped model with its default postfilter.

    Returns
    -------
    numpy.ndarray
        int16, the same length as ``pcm``.
    """
    from ..dsp.features import compute_features

    x = np.asarray(pcm)
    if x.ndim != 1 or x.dtype != np.int16 or x.shape[0] == 0:
        raise VocoderInputError(f"copy_synthesis needs non-empty 1-D int16 PCM, got {x.dtype} {x.shape}")
    pad = -(-prime_samples() // FRAME_SIZE) * FRAME_SIZE          # whole frames of silence to prime on
    tail = -x.shape[0] % FRAME_SIZE                           # the last partial frame gets features too
    padded = np.concatenate([np.zeros(pad, np.int16), x, np.zeros(tail, np.int16)])
    f = compute_features(padded)
    k = pad // FRAME_SIZE
    v = vocoder if vocoder is not None else Vocoder()
    v.prime(padded[:pad], f[k - PRIME_FRAMES - 2:k])
    return v.synthesize(f[k:])[:x.shape[0]]
