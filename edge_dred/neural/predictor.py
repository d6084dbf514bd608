"""The PLC feature predictor: int8 runtime, float reference, export.

The network trained by ``training/train_plc.py`` (``dense(21 -> 96, tanh) ->
GRU -> GRU -> dense(-> 20)``).  Each 10 ms frame it consumes the frame's
features (normalised) and a "lost" flag and predicts the next frame's
features.  For a received frame it is fed the real features (flag 0); for a
lost frame its own prediction for that frame (flag 1), exactly as in training.
:class:`FeaturePredictor` runs on the int8 kernels;
:class:`FeaturePredictorReference` is the same in float64 numpy.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from ..constants import NB_FEATURES
from ..models.loader import ModelFileError
from .layers import LayerModel, dense, export_gru, export_linear, float_gru, float_linear, gru_step, \
    linear_shape, load_gru, load_linear

__all__ = [
    "MODEL_NAME", "MODEL_VERSION", "PLCShape", "PLCModel", "FeaturePredictor", "FeaturePredictorReference",
    "PLCInputError", "export_plc", "random_plc_params",
]

MODEL_NAME = "plc"
MODEL_VERSION = "plc-int8-1"
PRED_CLAMP = 8.0  # normalised units: a prediction fed back on itself must not run away


class PLCInputError(ValueError):
    """Bad features or PCM handed to the PLC."""


@dataclass(frozen=True)
class PLCShape:
    """Layer sizes (``config`` in the weight file's metadata)."""

    dense_in: int = 96
    gru1: int = 128
    gru2: int = 128

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PLCShape":
        try:
            kw = {k: d[k] for k in ("dense_in", "gru1", "gru2")}
        except (KeyError, TypeError) as e:
            raise ModelFileError(f"PLC config is incomplete: {e!r}") from None
        for k, v in kw.items():
            if not isinstance(v, int) or not 1 <= v <= 4096:
                raise ModelFileError(f"PLC config: {k} = {v!r} out of range")
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        return {
            "dense_in": (self.dense_in, NB_FEATURES + 1),
            "gru1.ih": (3 * self.gru1, self.dense_in), "gru1.hh": (3 * self.gru1, self.gru1),
            "gru2.ih": (3 * self.gru2, self.gru1), "gru2.hh": (3 * self.gru2, self.gru2),
            "out": (NB_FEATURES, self.gru1 + self.gru2),
        }


def export_plc(params: Mapping[str, np.ndarray], config: Mapping[str, Any], path: str | os.PathLike, *,
               version: str = MODEL_VERSION, extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Quantize float PLC parameters (torch ``state_dict`` names) and write the weight file.

    The output layer stays float: its outputs are fed back as the next input
    during a loss, so its error compounds (it is 5 k weights).

    Returns
    -------
    dict
        ``sha256``, ``bytes``, ``params`` and per-layer relative quantization error.
    """
    from edge_dred.quantize import write_weights

    shape = PLCShape.from_dict(config)
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}

    def get(k: str) -> np.ndarray:
        if k not in p:
            raise KeyError(f"PLC parameters lack {k!r}")
        return p[k]

    arrays: dict[str, np.ndarray] = {"feat_mean": get("feat_mean").reshape(NB_FEATURES),
                                     "feat_std": get("feat_std").reshape(NB_FEATURES)}
    if np.any(arrays["feat_std"] <= 0):
        raise ValueError("feat_std must be positive")
    errs, n = {}, 2 * NB_FEATURES
    for name, mode in (("dense_in", "int8"), ("out", "float")):
        st = export_linear(arrays, name, get(f"{name}.weight"), get(f"{name}.bias"), mode=mode)
        errs[name], n = st["rel_err"], n + st["params"]
    for g in ("gru1", "gru2"):
        st = export_gru(arrays, g, get(f"{g}.weight_ih"), get(f"{g}.weight_hh"), get(f"{g}.bias_ih"),
                        get(f"{g}.bias_hh"))
        errs[g], n = st["rel_err"], n + st["params"]
    for name, want in shape.linear_shapes().items():
        if linear_shape(arrays, name) != want:
            raise ValueError(f"{name}: shape {linear_shape(arrays, name)} does not match config {want}")
    meta = {"model": MODEL_NAME, "version": version, "config": shape.to_dict(), **dict(extra_meta or {})}
    sha = write_weights(path, arrays, meta)
    return {"sha256": sha, "bytes": os.path.getsize(path), "params": int(n), "rel_err": errs}


def random_plc_params(shape: PLCShape | Mapping[str, Any] | None = None, seed: int = 0,
                      feat_mean: np.ndarray | None = None, feat_std: np.ndarray | None = None
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A randomly initialised predictor (torch-like init), for tests and benchmarks."""
    if shape is None:
        shape = PLCShape()
    elif not isinstance(shape, PLCShape):
        shape = PLCShape.from_dict(shape)
    rng = np.random.default_rng(seed)
    p: dict[str, np.ndarray] = {}
    for name, (rows, cols) in shape.linear_shapes().items():
        if name.startswith("gru"):
            g, part = name.split(".")
            k = 1.0 / np.sqrt(rows // 3)
            p[f"{g}.weight_{part}"] = rng.uniform(-k, k, (rows, cols)).astype(np.float32)
            p[f"{g}.bias_{part}"] = rng.uniform(-k, k, rows).astype(np.float32)
        else:
            k = 1.0 / np.sqrt(cols)
            p[f"{name}.weight"] = rng.uniform(-k, k, (rows, cols)).astype(np.float32)
            p[f"{name}.bias"] = rng.uniform(-k, k, rows).astype(np.float32)
    p["feat_mean"] = np.zeros(NB_FEATURES, np.float32) if feat_mean is None else np.asarray(feat_mean, np.float32)
    p["feat_std"] = np.ones(NB_FEATURES, np.float32) if feat_std is None else np.asarray(feat_std, np.float32)
    return p, shape.to_dict()


class PLCModel(LayerModel):
    """Predictor weights, shared read-only by any number of streams."""

    MODEL_NAME, MODEL_VERSION, LABEL, SHAPE = MODEL_NAME, MODEL_VERSION, "PLC", PLCShape

    def _check(self) -> None:
        self.kernel = {"dense_in": load_linear(self.arrays, "dense_in"), "gru1": load_gru(self.arrays, "gru1"),
                       "gru2": load_gru(self.arrays, "gru2"), "out": load_linear(self.arrays, "out")}

    def float_layers(self) -> dict[str, Any]:
        if self._float is None:
            self._float = {"dense_in": float_linear(self.arrays, "dense_in"), "gru1": float_gru(self.arrays, "gru1"),
                           "gru2": float_gru(self.arrays, "gru2"), "out": float_linear(self.arrays, "out")}
        return self._float


def _check_frame(f: np.ndarray) -> np.ndarray:
    a = np.asarray(f, np.float32).ravel()
    if a.shape != (NB_FEATURES,):
        raise PLCInputError(f"a feature frame has {NB_FEATURES} values, got {np.shape(f)}")
    # One reduction: the largest |value| is NaN or inf whenever any value is.
    if not float(np.abs(a).max()) <= 1e4:
        raise PLCInputError("features must be finite and within +-1e4")
    return a


def _clamped(y: np.ndarray) -> np.ndarray:
    """``y`` (a fresh array) clamped to +-PRED_CLAMP in place (as ``np.clip``, NaN kept)."""
    return np.minimum(np.maximum(y, -PRED_CLAMP, out=y), PRED_CLAMP, out=y)


class _PredictorBase:
    def __init__(self, model: PLCModel | None = None) -> None:
        self.model = model if model is not None else PLCModel.load()
        self.reset()

    def _step(self, zin: np.ndarray, lost: float) -> np.ndarray:
        raise NotImplementedError

    def _reset_state(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Zero the state (the prediction before any input is the mean frame)."""
        self._reset_state()
        self._pred = np.zeros(NB_FEATURES, np.float32)  # normalised prediction of the next frame

    @property
    def prediction(self) -> np.ndarray:
        """Predicted features of the next frame (raw scale), without advancing."""
        out = np.multiply(self._pred, self.model.feat_std)     # float32 throughout
        out += self.model.feat_mean
        return out

    def update(self, features: np.ndarray) -> None:
        """Feed a received frame's real features."""
        f = _check_frame(features)
        self._pred = _clamped(self._step((f - self.model.feat_mean) / self.model.feat_std, 0.0))

    def update_block(self, features: np.ndarray) -> None:
        """Feed received frames (n, 20) in order; the same state as ``update`` on each row."""
        f = np.asarray(features, np.float32)
        if f.ndim != 2 or f.shape[1] != NB_FEATURES:
            raise PLCInputError(f"a block of feature frames has shape (n, {NB_FEATURES}), got {np.shape(features)}")
        if not np.all(np.isfinite(f)) or np.any(np.abs(f) > 1e4):
            raise PLCInputError("features must be finite and within +-1e4")
        if f.shape[0]:
            self._pred = _clamped(self._steps((f - self.model.feat_mean) / self.model.feat_std))

    def _steps(self, z: np.ndarray) -> np.ndarray:
        """Received steps over the rows of ``z``; the last step's output."""
        y = self._pred
        for row in z:
            y = self._step(row, 0.0)
        return y

    def lost(self) -> np.ndarray:
        """Conceal one frame: return its predicted features and feed them back as lost.

        Predictions are clamped to +-8 standard deviations of the training
        features, so a long loss can never hand the vocoder absurd features.
        """
        out = self.prediction
        self._pred = _clamped(self._step(self._pred, 1.0))
        return out


class FeaturePredictor(_PredictorBase):
    """One stream of the int8 PLC predictor on :mod:`edge_dred.kernels`."""

    def __init__(self, model: PLCModel | None = None) -> None:
        from edge_dred.kernels import GRU, Dense, Network

        model = model if model is not None else PLCModel.load()
        s, k = model.shape, model.kernel
        self._net = Network(
            buffers={"in": NB_FEATURES + 1, "d": s.dense_in, "h1": s.gru1, "h2": s.gru2, "y": NB_FEATURES},
            ops=[Dense(["in"], "d", k["dense_in"], activation="tanh"), GRU(["d"], "h1", k["gru1"]),
                 GRU(["h1"], "h2", k["gru2"]), Dense(["h1", "h2"], "y", k["out"])])
        self._in, self._y = self._net.buffer("in"), self._net.buffer("y")  # live views, no feed/fetch copies
        super().__init__(model)

    @property
    def state_bytes(self) -> int:
        return int(sum(self._net.buffer(b).nbytes for b in self._net.buffer_names))

    def _reset_state(self) -> None:
        self._net.reset()

    def _step(self, zin: np.ndarray, lost: float) -> np.ndarray:
        self._in[:NB_FEATURES] = zin
        self._in[NB_FEATURES] = lost
        self._net.run(steps=1)
        return self._y.copy()

    def _steps(self, z: np.ndarray) -> np.ndarray:
        feed = np.zeros((z.shape[0], NB_FEATURES + 1), np.float32)   # the "lost" flag column stays 0
        feed[:, :NB_FEATURES] = z
        self._net.run({"in": feed})                                   # all steps in one C call
        return self._y.copy()


class FeaturePredictorReference(_PredictorBase):
    """The predictor in float64 numpy with the model's dequantized weights (test oracle)."""

    def _reset_state(self) -> None:
        self._h1 = np.zeros(self.model.shape.gru1)
        self._h2 = np.zeros(self.model.shape.gru2)

    def _step(self, zin: np.ndarray, lost: float) -> np.ndarray:
        L = self.model.float_layers()
        h = dense(L["dense_in"], np.concatenate([zin, [lost]]), "tanh")
        self._h1 = gru_step(L["gru1"], h, self._h1)
        self._h2 = gru_step(L["gru2"], self._h1, self._h2)
        return dense(L["out"], np.concatenate([self._h1, self._h2])).astype(np.float32)
