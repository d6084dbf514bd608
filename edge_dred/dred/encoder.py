"""DRED on the sender: int8 TFLite encoder step, latent ring, rate control, payload.

Every 20 ms the sender has the packet's 320 samples.  :class:`DredStreamEncoder`
turns them into the 2 feature frames of that packet
(:class:`~edge_dred.dsp.features.FeatureExtractor`), runs one encoder step
(:class:`DredEncoder`, the int8 ``dred_encoder.tflite`` with its GRU states
kept here as explicit tensors) and gets the latent ``z_t`` (the 40 ms ending
at the end of this packet) and the decoder state ``s_t``.  It keeps the last
51 latents; packet ``t`` carries ``s_t`` and ``z_t, z_{t-2}, ...`` (26
non-overlapping 40 ms chunks = 1.04 s at most), newest first, coded by
:func:`~edge_dred.dred.ratecontrol.encode_dred` within a byte budget, with
silent chunks at the old end dropped.

Time reference
--------------
A payload's chunk 0 ends at the end of the packet's own *input* 20 ms (header
offset 0).  The decoded Opus stream lags the input by the encoder's
look-ahead (104 samples at 16 kHz); the receiver accounts for it
(:mod:`edge_dred.dred.recovery`).

Runtime
-------
``ai-edge-litert`` (``ai_edge_litert.interpreter``) runs the model; on 32-bit
ARM, where it has no wheels, the older ``tflite-runtime`` package
(``tflite_runtime.interpreter``) is used instead.  The model was converted
with ``litert-torch`` and quantized with ``ai-edge-quantizer``
(``training/export_rdovae.py``); its inputs are the *normalised* features
``(f - feature_mean) / feature_std`` of the 2 newest frames (older first) and
the two GRU states; outputs ``z``, ``s`` and the new states, in tensor-name
order.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..constants import NB_FEATURES
from ..dsp.features import FeatureExtractor
from .tables import DredModelError, check_manifest_entry, shipped_tables
from .quantizer import EntropyTables
from .ratecontrol import DEFAULT_BUDGET_BYTES, MAX_DURATION_MS, NEWEST_LEVEL_CAP, RateDecision, StreamCoder

__all__ = ["DredEncoder", "DredStreamEncoder", "TFLiteUnavailableError", "interpreter_class",
           "ENCODER_VERSION", "DEFAULT_SILENCE_C0", "chunk_activity"]

ENCODER_VERSION = "rdovae-1"
MANIFEST_KEY = "dred_encoder"
ENC_FRAMES = 2
#: c0 (see edge_dred.dsp.features) at or below which a 10 ms frame counts as silence.
#: Digital silence gives c0 = -18, white noise at -70 / -60 dBFS about -11 / -7,
#: LibriSpeech speech a median of -1 (its quietest 8 % of frames fall below).
DEFAULT_SILENCE_C0 = -9.0
_MAX_MODEL_BYTES = 16 << 20


class TFLiteUnavailableError(ImportError):
    """Neither ``ai-edge-litert`` nor ``tflite-runtime`` is installed."""


def interpreter_class():
    """The TFLite ``Interpreter`` class: ai-edge-litert first, tflite-runtime as fallback.

    Raises
    ------
    TFLiteUnavailableError
        With install instructions naming both packages.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]
        return Interpreter
    except ImportError:
        pass
    raise TFLiteUnavailableError(
        "the DRED encoder needs a TFLite runtime: install 'ai-edge-litert' (pip install ai-edge-litert; "
        "aarch64/x86-64) or, on 32-bit ARM, 'tflite-runtime' (pip install tflite-runtime); neither "
        "ai_edge_litert nor tflite_runtime could be imported")


def chunk_activity(c0: np.ndarray, threshold: float = DEFAULT_SILENCE_C0) -> bool:
    """True when any frame's c0 is above the silence threshold."""
    return bool(np.any(np.asarray(c0) > threshold))


@contextmanager
def _runtime_info_held_back() -> Iterator[None]:
    """Drop the TFLite runtime's ``INFO:`` lines (it writes them to fd 2 when it builds an interpreter).

    Its own log level is not settable from Python; everything else it writes
    (warnings, errors) is passed on to stderr afterwards.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = [ln for ln in held.read(1 << 16).decode("utf-8", "replace").splitlines()
                    if not ln.startswith("INFO: ")]
            if rest:
                print("\n".join(rest), file=sys.stderr)


class DredEncoder:
    """One 20 ms RDO-VAE encoder step on the int8 TFLite model.

    Parameters
    ----------
    model_path : path-like, optional
        Defaults to the shipped ``edge_dred/models/dred_encoder.tflite``
        (checked against ``manifest.json``: version and sha256).
    feature_mean, feature_std : array_like (20,), optional
        Input normalisation; default: the manifest entry's values.
    num_threads : int
        Interpreter threads (1: the sender shares the core with Opus).

    Notes
    -----
    The GRU states are plain arrays owned by this object (:attr:`state`):
    fed in and read back every step, so the model itself is stateless.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, feature_mean: np.ndarray | None = None,
                 feature_std: np.ndarray | None = None, num_threads: int = 1) -> None:
        entry: dict = {}
        if model_path is None:
            path, entry = check_manifest_entry(MANIFEST_KEY, ENCODER_VERSION)
        else:
            path = Path(model_path)
            if (path.parent / "manifest.json").is_file():
                try:
                    entry = json.loads((path.parent / "manifest.json").read_text())["models"][MANIFEST_KEY]
                except (OSError, ValueError, KeyError, TypeError):
                    entry = {}
                if not isinstance(entry, dict):
                    entry = {}
        if not path.is_file():
            raise DredModelError(f"DRED encoder model not found: {path} (run training/export_rdovae.py)")
        if path.stat().st_size > _MAX_MODEL_BYTES:
            raise DredModelError(f"{path}: {path.stat().st_size} bytes is not an encoder model")
        mean = feature_mean if feature_mean is not None else entry.get("feature_mean")
        std = feature_std if feature_std is not None else entry.get("feature_std")
        if mean is None or std is None:
            raise DredModelError(f"{path}: no feature normalisation given and none in the manifest")
        self.feature_mean = np.asarray(mean, np.float32).reshape(-1)
        self.feature_std = np.asarray(std, np.float32).reshape(-1)
        if self.feature_mean.shape != (NB_FEATURES,) or self.feature_std.shape != (NB_FEATURES,) \
                or not np.all(self.feature_std > 0) or not np.all(np.isfinite(self.feature_mean)):
            raise DredModelError("feature_mean/feature_std must be finite (20,) with std > 0")
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        self.num_threads = num_threads
        Interpreter = interpreter_class()
        try:
            with _runtime_info_held_back():
                self._it = Interpreter(model_path=str(path), num_threads=num_threads)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise DredModelError(f"{path}: not a loadable TFLite model ({e})") from None
        # Tensor-name order is the argument / result order of the exported step.
        ind = sorted(self._it.get_input_details(), key=lambda d: d["name"])
        outd = sorted(self._it.get_output_details(), key=lambda d: d["name"])
        if len(ind) != 3 or len(outd) != 4:
            raise DredModelError(f"{path}: expected 3 inputs and 4 outputs, got {len(ind)} and {len(outd)}")
        shp = lambda d: tuple(int(v) for v in d["shape"])  # noqa: E731
        hs = shp(ind[1])[-1]
        if shp(ind[0]) != (1, ENC_FRAMES * NB_FEATURES) or shp(ind[1]) != (1, hs) or shp(ind[2]) != (1, hs) \
                or shp(outd[2]) != (1, hs) or shp(outd[3]) != (1, hs):
            raise DredModelError(f"{path}: unexpected tensor shapes {[shp(d) for d in ind]} -> {[shp(d) for d in outd]}")
        self.latent_dim = shp(outd[0])[-1]
        self.state_dim = shp(outd[1])[-1]
        self.gru_dim = hs
        for key, have in (("latent_dim", self.latent_dim), ("state_dim", self.state_dim), ("gru_dim", hs)):
            if key in entry and entry[key] != have:
                raise DredModelError(f"{path}: {key} {have} but the manifest says {entry[key]}")
        self._in = [self._io_spec(d) for d in ind]
        self._out = [self._io_spec(d) for d in outd]
        self._maps = self._state_maps()
        # The shipped model has float I/O (dynamic-range int8 inside): its step skips the
        # (de)quantisation and normalises into one preallocated buffer.
        self._float_io = all(spec[2] == 0.0 for spec in self._in + self._out)
        self._x = np.empty((1, ENC_FRAMES * NB_FEATURES), np.float32)
        self._x_flat = self._x.reshape(-1)
        self._mean2 = np.tile(self.feature_mean, ENC_FRAMES)
        self._std2 = np.tile(self.feature_std, ENC_FRAMES)
        self.path = path
        self.reset()

    def reset(self) -> None:
        """Zero the GRU states (stream start)."""
        zero = np.zeros((1, self.gru_dim), np.float32)
        # States are kept in the *input* tensors' representation (int8 for the int8 model).
        self._h = [self._q(zero, self._in[1]), self._q(zero, self._in[2])]

    def _state_maps(self) -> list:
        """Per state: a 256-entry table taking the int8 output code straight to the int8 input code.

        Exactly dequantize-then-requantize (same float32 arithmetic), without
        the float round trip per step.  None where either side is float.
        """
        maps = []
        for o, i in ((self._out[2], self._in[1]), (self._out[3], self._in[2])):
            if o[2] == 0.0 or i[2] == 0.0 or o[1] != np.int8:
                maps.append(None)
                continue
            codes = np.arange(-128, 128, dtype=np.int8)
            maps.append(self._q(self._dq(codes, o), i))
        return maps

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """The two GRU states as float32 (1, H) arrays."""
        return self._dq(self._h[0], self._in[1]), self._dq(self._h[1], self._in[2])

    @staticmethod
    def _io_spec(d: dict) -> tuple:
        """(index, dtype, scale, zero point, min, max); scale 0 marks a float tensor."""
        dt = np.dtype(d["dtype"])
        if dt == np.float32:
            return d["index"], dt, 0.0, 0, 0, 0
        if dt.kind != "i":
            raise DredModelError(f"unsupported TFLite tensor type {dt} for {d['name']}")
        scale, zp = d["quantization"]
        if not scale > 0:
            raise DredModelError(f"tensor {d['name']} is {dt} without quantization parameters")
        info = np.iinfo(dt)
        return d["index"], dt, float(scale), int(zp), int(info.min), int(info.max)

    @staticmethod
    def _q(v: np.ndarray, spec: tuple) -> np.ndarray:
        _, dt, scale, zp, lo, hi = spec
        if scale == 0.0:
            return v.astype(np.float32, copy=False)
        return np.clip(np.rint(v * (1.0 / scale)) + zp, lo, hi).astype(dt)

    @staticmethod
    def _dq(v: np.ndarray, spec: tuple) -> np.ndarray:
        _, _, scale, zp, _, _ = spec
        if scale == 0.0:
            return np.array(v, np.float32)
        return ((v.astype(np.float32) - zp) * scale).astype(np.float32)

    def normalize(self, frames: np.ndarray) -> np.ndarray:
        """(2, 20) raw features -> the (1, 40) normalised model input."""
        f = np.asarray(frames, np.float32)
        if f.shape != (ENC_FRAMES, NB_FEATURES):
            raise ValueError(f"frames must be ({ENC_FRAMES}, {NB_FEATURES}), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("frames must be finite")
        return ((f - self.feature_mean) / self.feature_std).reshape(1, -1)

    def step(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run one 20 ms step.

        Parameters
        ----------
        frames : numpy.ndarray
            (2, 20) raw features of the packet's two 10 ms frames, older first.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            Unquantised latent ``z`` (D,) and decoder state ``s`` (S,), float32.
        """
        if self._float_io:
            return self._step_float(frames)
        x = self.normalize(frames)
        it = self._it
        it.set_tensor(self._in[0][0], self._q(x, self._in[0]))
        it.set_tensor(self._in[1][0], self._h[0])
        it.set_tensor(self._in[2][0], self._h[1])
        it.invoke()
        out = self._out
        for k in range(2):
            h = it.get_tensor(out[2 + k][0])
            lut = self._maps[k]
            self._h[k] = (lut[h.astype(np.int16) + 128] if lut is not None
                          else self._q(self._dq(h, out[2 + k]), self._in[1 + k]))
        z = self._dq(it.get_tensor(out[0][0]), out[0])
        s = self._dq(it.get_tensor(out[1][0]), out[1])
        return z.reshape(-1), s.reshape(-1)

    def _step_float(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` for float I/O: the same arithmetic in a few in-place calls (it runs per packet)."""
        f = frames if type(frames) is np.ndarray and frames.dtype == np.float32 else np.asarray(frames, np.float32)
        if f.shape != (ENC_FRAMES, NB_FEATURES):
            raise ValueError(f"frames must be ({ENC_FRAMES}, {NB_FEATURES}), got {f.shape}")
        x = self._x_flat
        np.subtract(f.reshape(-1), self._mean2, out=x)
        np.divide(x, self._std2, out=x)
        # One sum finds any NaN/inf; only then is the input itself checked (a huge finite
        # input may overflow the normalised sum and is let through, as before).
        if not math.isfinite(float(x.sum())) and not np.isfinite(f).all():
            raise ValueError("frames must be finite")
        it, i, o = self._it, self._in, self._out
        it.set_tensor(i[0][0], self._x)
        it.set_tensor(i[1][0], self._h[0])
        it.set_tensor(i[2][0], self._h[1])
        it.invoke()
        self._h[0] = it.get_tensor(o[2][0])      # get_tensor copies: safe to feed back next step
        self._h[1] = it.get_tensor(o[3][0])
        return it.get_tensor(o[0][0]).reshape(-1), it.get_tensor(o[1][0]).reshape(-1)


class DredStreamEncoder:
    """Per-stream DRED state of a sender: features, encoder, latent ring, rate control.

    Parameters
    ----------
    duration_ms : float
        Redundancy depth asked of every packet, 0 < d <= 1040 (rounded up to
        40 ms chunks).
    budget_bytes : int
        Largest payload per packet (1..1000); the default 80 meets the
        product bar for 1.04 s.
    encoder : DredEncoder, optional
        Defaults to the shipped model.
    tables : EntropyTables, optional
        Defaults to the shipped tables (``dred_tables.npz``, shared with the decoder).
    silence_c0 : float
        Frames with c0 at or below this are silence (see
        :data:`DEFAULT_SILENCE_C0`); chunks of silence at the old end of a
        payload are not sent, and a packet of silence alone carries nothing.
    """

    def __init__(self, duration_ms: float = MAX_DURATION_MS, budget_bytes: int = DEFAULT_BUDGET_BYTES, *,
                 encoder: DredEncoder | None = None, tables: EntropyTables | None = None,
                 silence_c0: float = DEFAULT_SILENCE_C0) -> None:
        if not (isinstance(duration_ms, (int, float)) and 0 < duration_ms <= MAX_DURATION_MS):
            raise ValueError(f"duration_ms must be in (0, {MAX_DURATION_MS}], got {duration_ms!r}")
        if not isinstance(budget_bytes, int) or not 1 <= budget_bytes <= 1000:
            raise ValueError(f"budget_bytes must be an integer in [1, 1000], got {budget_bytes!r}")
        self.encoder = encoder if encoder is not None else DredEncoder()
        self.tables = tables if tables is not None else shipped_tables()
        if self.tables.latent_dim != self.encoder.latent_dim or self.tables.state_dim != self.encoder.state_dim:
            raise DredModelError(f"tables (D={self.tables.latent_dim}, S={self.tables.state_dim}) do not fit the "
                                 f"encoder (D={self.encoder.latent_dim}, S={self.encoder.state_dim})")
        self.duration_ms = float(duration_ms)
        self.budget_bytes = budget_bytes
        self.silence_c0 = float(silence_c0)
        self.features = FeatureExtractor()
        # Quantization (each latent at every level once, when it is made), rate control and range
        # coding: one compiled call per packet (the finest newest chunk first, `encode_dred`'s default).
        self._coder = StreamCoder(self.tables, duration_ms=self.duration_ms, budget_bytes=budget_bytes,
                                  q0cap=NEWEST_LEVEL_CAP)
        self._prev_active = False
        self.last_decision: RateDecision | None = None
        self.last_z = self.last_s = None
        self.n_steps = 0

    def reset(self) -> None:
        """Restart the stream (features, encoder state, latent history)."""
        self.features.reset()
        self.encoder.reset()
        self._coder.reset()
        self._prev_active = False
        self.last_decision = None
        self.n_steps = 0

    def push_features(self, frames: np.ndarray) -> bytes:
        """Advance by one packet given its 2 feature frames; return the payload (``b""``: none).

        Parameters
        ----------
        frames : numpy.ndarray
            (2, 20) raw features of the packet's 20 ms, older first.
        """
        z, s = self.encoder.step(frames)
        self.last_z, self.last_s = z, s
        # z_t covers this packet and the previous one: active if any of their 4 frames is.
        f, thr = np.asarray(frames), self.silence_c0
        # Python floats: a numpy scalar comparison costs more than the rest of this method.
        act_now = (f.item(0, 0) > thr or f.item(1, 0) > thr) if f.shape[0] == 2 else chunk_activity(f[:, 0], thr)
        dec = self._coder.push(z, s, act_now or self._prev_active)
        self._prev_active = act_now
        self.n_steps += 1
        self.last_decision = dec
        return dec.payload

    def current_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Latents ``z_t, z_{t-2}, ...`` (newest first, at most 26) and their activity flags."""
        return self._coder.history()

    def push_pcm(self, pcm: np.ndarray) -> bytes:
        """Advance by one packet of 320 int16 samples; return its DRED payload (``b""``: none)."""
        pcm = np.asarray(pcm)
        if pcm.shape != (2 * 160,):
            raise ValueError(f"expected 320 samples per packet, got shape {pcm.shape}")
        return self.push_features(self.features.process_block(pcm))
