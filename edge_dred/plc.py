"""Neural packet-loss concealment: feature prediction + vocoder continuation.

Two parts:

* :class:`FeaturePredictor` -- the int8 runtime of the PLC feature predictor
  trained by ``training/train_plc.py`` (``dense(21 -> 96, tanh) -> GRU -> GRU ->
  dense(-> 20)``).  Each 10 ms frame it consumes the frame's features
  (normalised) and a "lost" flag and predicts the next frame's features.  For a
  received frame it is fed the real features (flag 0); for a lost frame its own
  prediction for that frame (flag 1), exactly as in training.
  :class:`FeaturePredictorReference` is the same in float64 numpy.
* :class:`NeuralPLC` -- the receiver plug-in (:class:`edge_dred.receiver.Concealer`).
  It analyses every output slot with :class:`edge_dred.features.FeatureExtractor`
  (``observe``), keeps the predictor running on real frames, and on a loss
  primes :class:`edge_dred.vocoder.Vocoder` from the last real output samples
  and synthesises the predicted frames.

Edges (why each step exists)
----------------------------
* Which losses: only those that start in voiced speech (``voiced_gate`` on
  the pitch correlation of the last frame played); after unvoiced frames or
  silence libopus conceals the whole loss and the vocoder is not run.  Its
  concealment is then pulled towards the predicted frames' band energies by
  an :class:`edge_dred.postfilter.EnvelopePostfilter` (``shape_gated``),
  primed from the real output; libopus keeps the waveform, the predictor
  the envelope.  At the hand-back the same filter runs on into the first
  real frame and fades out over it (the real decode continues libopus's
  unshaped concealment).  Past the vocoder's fade in a voiced loss,
  libopus's concealment is shaped the same way (``shape_tail``).
* Loss start: libopus's concealment leads for ``opus_lead_ms``; then the
  vocoder continues the output so far (its pitch-lag history,
  previous subframe, de-emphasis memory and recurrent states come from the last
  output samples), and its first ``start_xfade`` samples cross-fade from
  libopus's own concealment, which is continuous with that output by
  construction.
* Long losses: after ``fade_start_ms`` of continuous loss the vocoder's
  output fades along a raised cosine over ``fade_ms`` into libopus's own
  concealment (which decays to silence) or into silence (``fade_to``):
  predictions drift the further they go, and silence is better than babble.
  Once faded out the vocoder is not run.
* Loss end (``handback``): the vocoder synthesises ``end_xfade`` more
  samples from the predicted next frame, at the current fade gain, and the
  first real samples cross-fade from them.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from .models.loader import ModelFileError, load_weight_file
from .postfilter import EnvelopePostfilter
from .nn_reference import LayerFileError, dense, export_gru, export_linear, float_gru, float_linear, gru_step, \
    linear_shape, load_gru, load_linear

__all__ = [
    "MODEL_NAME", "MODEL_VERSION", "PLCShape", "PLCModel", "FeaturePredictor", "FeaturePredictorReference",
    "NeuralPLC", "PLCInputError", "export_plc", "random_plc_params", "default_models",
]

MODEL_NAME = "plc"
MODEL_VERSION = "plc-int8-1"
NB_FEATURES = 20
FRAME = 160
PRED_CLAMP = 8.0  # normalised units: a prediction fed back on itself must not run away
PITCH_CORR = 19   # index of the pitch correlation (voicing) among the 20 features


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
    from quantize import write_weights

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


class PLCModel:
    """Predictor weights, shared read-only by any number of streams."""

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        if not isinstance(meta.get("config"), dict):
            raise ModelFileError("PLC weight file has no 'config' in its metadata")
        self.shape = PLCShape.from_dict(meta["config"])
        self.meta = dict(meta)
        self.arrays = dict(arrays)
        try:
            for name, want in self.shape.linear_shapes().items():
                got = linear_shape(self.arrays, name)
                if got != want:
                    raise ModelFileError(f"PLC layer {name} has shape {got}, config says {want}")
            for name in ("feat_mean", "feat_std"):
                a = self.arrays.get(name)
                if a is None or a.shape != (NB_FEATURES,) or not np.all(np.isfinite(a)):
                    raise ModelFileError(f"PLC weight file needs a finite {name} of {NB_FEATURES} values")
            self.feat_mean = np.asarray(self.arrays["feat_mean"], np.float32)
            self.feat_std = np.asarray(self.arrays["feat_std"], np.float32)
            if np.any(self.feat_std <= 0):
                raise ModelFileError("PLC feat_std must be positive")
            self.kernel = {"dense_in": load_linear(self.arrays, "dense_in"), "gru1": load_gru(self.arrays, "gru1"),
                           "gru2": load_gru(self.arrays, "gru2"), "out": load_linear(self.arrays, "out")}
            self._float: dict[str, Any] | None = None
        except LayerFileError as e:
            raise ModelFileError(f"PLC weights: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None) -> "PLCModel":
        """Load the shipped model (manifest-checked), or the weight file at ``path``."""
        arrays, meta = load_weight_file(MODEL_NAME, MODEL_VERSION, models_dir=models_dir, path=path)
        return cls(arrays, meta)

    @property
    def weight_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))

    def float_layers(self) -> dict[str, Any]:
        if self._float is None:
            self._float = {"dense_in": float_linear(self.arrays, "dense_in"), "gru1": float_gru(self.arrays, "gru1"),
                           "gru2": float_gru(self.arrays, "gru2"), "out": float_linear(self.arrays, "out")}
        return self._float


def _check_frame(f: np.ndarray) -> np.ndarray:
    a = np.asarray(f, np.float32).ravel()
    if a.shape != (NB_FEATURES,):
        raise PLCInputError(f"a feature frame has {NB_FEATURES} values, got {np.shape(f)}")
    if not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1e4):
        raise PLCInputError("features must be finite and within +-1e4")
    return a


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
        return (self._pred * self.model.feat_std + self.model.feat_mean).astype(np.float32)

    def update(self, features: np.ndarray) -> None:
        """Feed a received frame's real features."""
        f = _check_frame(features)
        self._pred = np.clip(self._step((f - self.model.feat_mean) / self.model.feat_std, 0.0),
                             -PRED_CLAMP, PRED_CLAMP)

    def lost(self) -> np.ndarray:
        """Conceal one frame: return its predicted features and feed them back as lost.

        Predictions are clamped to +-8 standard deviations of the training
        features, so a long loss can never hand the vocoder absurd features.
        """
        out = self.prediction
        self._pred = np.clip(self._step(self._pred, 1.0), -PRED_CLAMP, PRED_CLAMP)
        return out


class FeaturePredictor(_PredictorBase):
    """One stream of the int8 PLC predictor on :mod:`cython_kernels`."""

    def __init__(self, model: PLCModel | None = None) -> None:
        from cython_kernels import GRU, Dense, Network

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


@functools.lru_cache(maxsize=1)
def default_models() -> tuple[Any, PLCModel]:
    """The shipped (vocoder, PLC) models, loaded and checked once per process."""
    from .vocoder import VocoderModel

    return VocoderModel.load(), PLCModel.load()


def _raised_cosine(n: int) -> np.ndarray:
    """Weights falling smoothly from ~1 to ~0 over n samples (amplitude complementary)."""
    return 0.5 + 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


class NeuralPLC:
    """Receiver concealer plug-in: predicted features -> vocoder continuing the real signal.

    Parameters
    ----------
    vocoder_model, plc_model : optional
        Shared models (default: the shipped ones, loaded once per process).
    fade_start_ms : float
        Continuous loss after which the vocoder's output starts fading.
    fade_ms : float
        Length of the raised-cosine fade.
    start_xfade, end_xfade : int
        Cross-fade lengths in samples at the loss start (from libopus's
        concealment) and at the hand-back to real audio.  The default start fade spans the
        whole first slot (320): on training speech under synthetic bursty loss it
        scored higher (PESQ-WB and PLCMOS) than a 5 ms fade, since libopus's first
        concealed 20 ms continues its own decoder state exactly.
    opus_lead_ms : int
        The first ``opus_lead_ms`` of every loss (a multiple of 20) are
        libopus's own concealment, untouched; the vocoder, primed from that
        output, takes over after it with the ``start_xfade``.  0 = neural
        from the first lost sample.
    voiced_gate : float or None
        The vocoder takes over a loss only when the last frame played before
        it is voiced (pitch correlation >= ``voiced_gate``); any other loss is
        libopus's concealment throughout and the vocoder is not run.  None:
        every loss.
    shape_gated : float or None
        Strength of the envelope filter that pulls libopus's concealment of
        a gated loss towards the predicted features (see
        :class:`edge_dred.postfilter.EnvelopePostfilter`); None leaves it
        untouched.
    shape_tail : bool
        Shape libopus's concealment the same way once the vocoder has faded
        out of a voiced loss (``fade_to="opus"``; needs ``shape_gated``).
    lead_input : {"predicted", "observed"}
        What the predictor is fed for the libopus lead: its own predictions
        (flagged lost, as in training), or the features of libopus's
        concealment as if received.
    fade_to : {"opus", "silence"}
        What the vocoder fades into: libopus's concealment of the same
        samples (which itself decays to silence within about 100 ms) or
        silence.
    postfilter : bool or a postfilter from :mod:`edge_dred.postfilter`
        Pass the vocoder's output through :mod:`edge_dred.postfilter` (towards
        the predicted features' band energies, then their pitch).
    reference : bool
        Use the float64 numpy reference networks instead of the int8 kernels
        (tests).

    Notes
    -----
    Defaults (``opus_lead_ms=20, fade_start_ms=40, fade_ms=40, fade_to="opus"``:
    the vocoder fills 20..80 ms of a loss; ``voiced_gate=0.5``) were chosen with
    ``training/tune_concealment.py`` on training speech under seeded
    Gilbert-Elliott loss (32 files x 3 loss models).  The vocoder beats
    libopus's pitch-repeating concealment when a loss starts in voiced speech
    and loses to it after unvoiced frames or silence (where libopus's decaying
    noise is hard to improve on), hence the gate: it moved PLCMOS against
    libopus from -0.040 to +0.008 with the previous predictor on VCC2016
    files; with the shipped one, over VCC2016 and LJSpeech files together, it
    trades 0.014 PESQ-WB for 0.013 PLCMOS (``voiced_gate=None`` turns it off).
    Shaping the gated losses (``shape_gated=0.5``) then added +0.015 PESQ-WB
    and +0.019 PLCMOS on VCC2016 and +0.016 / +0.017 on LJSpeech, and the
    tail of voiced losses (``shape_tail``) about +0.002 / +0.005 more;
    shaping the lead of voiced losses cost PLCMOS.
    Longer vocoder windows (60/60, 80/80) or no lead scored lower.

    Per slot cost outside losses: feature analysis of the output and two
    predictor steps.  During a loss: two predictor steps and two vocoder
    frames (plus priming, 3 frames, once per loss), or for a gated loss two
    predictor steps and two frames of the envelope filter.
    """

    def __init__(self, vocoder_model: Any = None, plc_model: PLCModel | None = None, *,
                 fade_start_ms: float = 40.0, fade_ms: float = 40.0, start_xfade: int = 320,
                 end_xfade: int = 160, opus_lead_ms: int = 20, fade_to: str = "opus",
                 lead_input: str = "predicted", voiced_gate: float | None = 0.5,
                 shape_gated: float | None = 0.5, shape_tail: bool = True, postfilter: Any = True,
                 reference: bool = False) -> None:
        from .features import FeatureExtractor
        from .receiver import Decision
        from .vocoder import PRIME_FRAMES, Vocoder, VocoderReference, prime_samples

        if vocoder_model is None or plc_model is None:
            dv, dp = default_models()
            vocoder_model = vocoder_model or dv
            plc_model = plc_model or dp
        if not (0 <= fade_start_ms <= 60_000 and 1 <= fade_ms <= 60_000):
            raise ValueError("fade_start_ms must be in [0, 60000] and fade_ms in [1, 60000]")
        # The hand-back continuation is one vocoder frame, so its fade cannot be longer.
        if not (0 <= start_xfade <= 320 and 0 <= end_xfade <= FRAME):
            raise ValueError(f"start_xfade must be in [0, 320] and end_xfade in [0, {FRAME}] samples")
        if fade_to not in ("silence", "opus"):
            raise ValueError(f"fade_to must be 'silence' or 'opus', got {fade_to!r}")
        if lead_input not in ("predicted", "observed"):
            raise ValueError(f"lead_input must be 'predicted' or 'observed', got {lead_input!r}")
        if isinstance(opus_lead_ms, bool) or not isinstance(opus_lead_ms, int) or opus_lead_ms not in range(0, 1001, 20):
            raise ValueError(f"opus_lead_ms must be a multiple of 20 in [0, 1000], got {opus_lead_ms!r}")
        if voiced_gate is not None and (isinstance(voiced_gate, bool) or not isinstance(voiced_gate, (int, float))
                                        or not 0.0 <= voiced_gate <= 1.0):
            raise ValueError(f"voiced_gate must be None or in [0, 1], got {voiced_gate!r}")
        if shape_gated is not None and (isinstance(shape_gated, bool) or not isinstance(shape_gated, (int, float))
                                        or not 0.0 < shape_gated <= 1.0):
            raise ValueError(f"shape_gated must be None or in (0, 1], got {shape_gated!r}")
        self.voiced_gate = None if voiced_gate is None else float(voiced_gate)
        self.decision = Decision.NEURAL_PLC
        self._decisions_real = (Decision.REGULAR, Decision.LBRR)
        self._fx = FeatureExtractor()
        self._pred = (FeaturePredictorReference if reference else FeaturePredictor)(plc_model)
        self._voc = (VocoderReference if reference else Vocoder)(vocoder_model, postfilter=postfilter)
        self._n_prime_feats = PRIME_FRAMES + 2
        self._n_prime_pcm = prime_samples(PRIME_FRAMES)
        self._feats = np.zeros((self._n_prime_feats, NB_FEATURES), np.float32)
        self._fade_start = int(round(fade_start_ms * 16))
        self._fade_len = int(round(fade_ms * 16))
        self.start_xfade, self.end_xfade = int(start_xfade), int(end_xfade)
        self._lead = int(opus_lead_ms) * 16
        self.fade_to = fade_to
        self.lead_input = lead_input
        self._active = False       # the previous slot was ours
        self._primed = False       # the vocoder runs in the current loss (past the libopus lead)
        self._last_real = False    # the previous slot came from libopus (regular/LBRR)
        self._lost = 0             # samples concealed in the current loss
        self._gated = False        # the current loss is left to libopus (voiced_gate)
        self._shaper = None if shape_gated is None else EnvelopePostfilter(strength=float(shape_gated))
        self.shape_tail = bool(shape_tail)
        self._shaping = False      # the current loss is gated and its libopus output shaped
        self.stats = {"losses": 0, "slots": 0, "silent_slots": 0, "lead_slots": 0, "gated_losses": 0,
                      "gated_slots": 0, "shaped_slots": 0}

    # ------------------------------------------------------------- hooks
    def observe(self, pcm: np.ndarray, decision: Any) -> None:
        """Analyse every output slot; feed real frames to the predictor."""
        feats = self._fx.process_block(np.asarray(pcm))
        self._feats = np.concatenate([self._feats, feats])[-self._n_prime_feats:]
        ours = decision == self.decision
        # Audio we did not invent (decoded, LBRR, DRED) counts as received; so does libopus's
        # lead (a slot of ours before the vocoder is primed) with lead_input="observed".
        if not ours or (self.lead_input == "observed" and not self._primed):
            for f in feats:
                self._pred.update(f)
        if not ours:
            self._active = False
        self._last_real = decision in self._decisions_real

    def conceal(self, ctx: Any) -> np.ndarray:
        """Fill one lost slot (20 ms)."""
        n = len(ctx.opus_plc) if ctx.opus_plc is not None else 320
        if n % FRAME:
            raise PLCInputError(f"slot length {n} is not a multiple of {FRAME}")
        if not self._active:
            self._lost = 0
            self._active = True
            self._primed = False
            self.stats["losses"] += 1
            self._gated = self._leave_to_libopus(self._feats[-1])   # the last frame played before the loss
            self._shaping = False
            self.stats["gated_losses"] += int(self._gated)
        self.stats["slots"] += 1
        if ctx.opus_plc is not None and (self._lost < self._lead or self._gated):
            # libopus's concealment leads: it continues its own decoder state exactly and is
            # hard to beat for the first tens of ms.  The predictor advances over the slot on
            # its own predictions, or (lead_input="observed") on the features of this output.
            steps = [self._pred.lost() for _ in range(n // FRAME)] if self.lead_input == "predicted" else None
            out = np.asarray(ctx.opus_plc, np.int16).copy()
            if self._gated and self._shaper is not None:
                feats = np.stack(steps) if steps else np.repeat(self._pred.prediction[None], n // FRAME, axis=0)
                out = self._shape_opus(ctx, feats)[0]
            self._lost += n
            self.stats["gated_slots" if self._gated else "lead_slots"] += 1
            return out
        feats = np.stack([self._pred.lost() for _ in range(n // FRAME)])
        first = not self._primed
        if first:
            # Primed from the output so far (real audio, or libopus's lead): continuous with it.
            hist = np.asarray(ctx.history)
            if hist.shape[0] < self._n_prime_pcm:
                raise PLCInputError(f"receiver history has {hist.shape[0]} samples, need {self._n_prime_pcm}")
            self._voc.prime(hist[-self._n_prime_pcm:], self._feats)
            self._primed = True
        gain = self._gain(self._lost, n)
        if np.any(gain > 0):
            y = self._voc.synthesize(feats).astype(np.float64) * gain
        else:
            y = np.zeros(n)
            self.stats["silent_slots"] += 1
        if self.fade_to == "opus" and ctx.opus_plc is not None:
            # Fade into libopus's own (decaying) concealment rather than to silence.
            y += (1.0 - gain) * np.asarray(ctx.opus_plc, np.float64)
            if self.shape_tail and self._shaper is not None and not np.any(gain > 0):
                # Past the vocoder's fade: libopus's concealment alone, shaped as for gated
                # losses; the shaping fades in over the first frame.
                shaped, first_tail = self._shape_opus(ctx, feats)
                shaped = shaped.astype(np.float64)
                if first_tail:
                    w = _raised_cosine(FRAME)
                    shaped[:FRAME] = w * y[:FRAME] + (1.0 - w) * shaped[:FRAME]
                y = shaped
        if first and (self._last_real or self._lost > 0) and ctx.opus_plc is not None and self.start_xfade:
            w = _raised_cosine(self.start_xfade)
            k = self.start_xfade
            y[:k] = w * np.asarray(ctx.opus_plc[:k], np.float64) + (1.0 - w) * y[:k]
        self._lost += n
        return np.clip(np.round(y), -32768, 32767).astype(np.int16)

    def handback(self, pcm: np.ndarray) -> np.ndarray:
        """Cross-fade from the synthetic continuation into the first real samples."""
        out = np.asarray(pcm, np.int16).copy()
        k = min(self.end_xfade, len(out))
        if self._active and self._shaping:
            # The real decode continues libopus's unshaped concealment: fade the shaping out
            # over the first frame (the same filter runs on across the boundary).
            self._shaping = False
            if k and len(out) >= FRAME:
                shaped = self._shaper.process_pcm(out[:FRAME], self._pred.prediction[None]).astype(np.float64)[:k]
                w = _raised_cosine(k)
                out[:k] = np.clip(np.round(w * shaped + (1.0 - w) * out[:k]), -32768, 32767).astype(np.int16)
            return out
        if not self._active or not self._primed or k == 0:
            # (A loss that ended inside the libopus lead was libopus's own concealment.)
            return out
        gain = self._gain(self._lost, k)
        if np.any(gain > 0):
            cont = self._voc.synthesize(self._pred.prediction[None])[:k].astype(np.float64) * gain
        else:
            cont = np.zeros(k)
        w = _raised_cosine(k)
        if self.fade_to == "opus":
            # The faded-out share was libopus's concealment, which the real decode continues.
            w = w * gain
        mixed = w * cont + (1.0 - w) * out[:k].astype(np.float64)
        out[:k] = np.clip(np.round(mixed), -32768, 32767).astype(np.int16)
        return out

    # ---------------------------------------------------------- helpers
    def _shape_opus(self, ctx: Any, feats: np.ndarray) -> tuple[np.ndarray, bool]:
        """libopus's concealment of this slot pulled towards ``feats``; the filter is primed
        from the output so far on its first slot in a loss (second value True)."""
        first = not self._shaping
        if first:
            self._shaper.prime_pcm(np.asarray(ctx.history))
            self._shaping = True
        self.stats["shaped_slots"] += 1
        return self._shaper.process_pcm(np.asarray(ctx.opus_plc, np.int16), feats), first

    def _leave_to_libopus(self, last_frame: np.ndarray) -> bool:
        """The voicing gate: whether a loss after this frame is libopus's concealment throughout."""
        return self.voiced_gate is not None and float(last_frame[PITCH_CORR]) < self.voiced_gate

    def _gain(self, start: int, n: int) -> np.ndarray:
        """Fade gain for samples [start, start + n) of a loss."""
        t = np.arange(start, start + n) - self._fade_start
        g = np.ones(n)
        inside = (t >= 0) & (t < self._fade_len)
        g[inside] = _raised_cosine(self._fade_len)[t[inside]]
        g[t >= self._fade_len] = 0.0
        return g

    @property
    def state_bytes(self) -> int:
        """Approximate per-stream memory (buffers of predictor, vocoder, shaping filter, feature history)."""
        n = self._feats.nbytes + getattr(self._pred, "state_bytes", 0) + getattr(self._voc, "state_bytes", 0)
        n += self._shaper.state_bytes if self._shaper is not None else 0
        fx = self._fx
        n += sum(getattr(fx, a).nbytes for a in vars(fx) if isinstance(getattr(fx, a), np.ndarray))
        return int(n)
