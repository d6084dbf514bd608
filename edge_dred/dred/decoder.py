"""RDO-VAE decoder of the receiver: DRED latents -> feature frames, backward in time.

A payload carries the decoder's initial state ``s_t`` and latents
``z_t, z_{t-2}, ...`` newest first (``notes/dred_contract.md``).  The decoder
starts from ``s_t`` and each step turns one latent into 4 feature frames of
10 ms, newest first, so the frames closest to the packet come out first and a
receiver that only needs the newest 40 ms pays for one step.

Two implementations of the same maths (the exporter's ``decode_numpy`` in
``training/export_rdovae.py`` defines it):

* :class:`DredDecoder` runs on ``edge_dred.kernels`` (int8 weights by default,
  or float) and decodes lazily through :class:`BackwardDecode`;
* :func:`reference_decode` is a plain numpy float version for tests.

Network, per step ``j`` (GRUs in PyTorch's reset-after layout)::

    h1, h2 = split(tanh(W_i2 tanh(W_i1 s + b_i1) + b_i2))      # once, from s_t
    x   = tanh(W_in z_j + b_in)
    h1  = GRU1(x, h1);  h2 = GRU2([x, h1], h2)
    out = W_out [x, h1, h2] + b_out                               # 80 = 4 frames x 20, raw features

Weights and the feature normalisation live in one file
(``edge_dred/models/dred_decoder.npz``, or a :mod:`edge_dred.quantize.weightfile`
``.bin``), checked against the manifest's sha256 and version before use; the
entropy tables, which the sender needs too, in their own small file
(:mod:`edge_dred.dred.tables`).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..constants import NB_FEATURES, PITCH_MAX, PITCH_MIN
from ..neural.layers import gru_step
from ..models.loader import MODELS_DIR
from .payload import MAX_CHUNKS, DredPayload
from .quantizer import EntropyTables, chunk_levels
from .tables import DredModelError, locate_model_file, read_npz, shipped_tables

__all__ = ["DredModelError", "DecoderWeights", "DredDecoder", "BackwardDecode", "load_decoder_weights",
           "reference_decode", "sanitize_features", "default_model_dir", "DECODER_VERSION", "DEC_FRAMES"]

DECODER_VERSION = "rdovae-1"
DEC_FRAMES = 4                 # feature frames per latent (40 ms)
MANIFEST_KEY = "dred_decoder"
DECODER_FILE = "dred_decoder.npz"
_MAX_FILE_BYTES = 64 << 20     # a decoder file is ~1 MB; refuse absurd files before reading them
_MAX_LAYER = 1024              # bound on every layer width read from a file


def default_model_dir() -> Path:
    """Directory of the shipped model files (``edge_dred/models``)."""
    return MODELS_DIR


@dataclass(frozen=True, eq=False)
class DecoderWeights:
    """Validated float32 decoder arrays, the entropy tables they decode with and feature statistics.

    Attributes
    ----------
    arrays : dict
        Layer arrays with the exporter's names (``dec_init1_weight`` ...).
    tables : EntropyTables
        Quantizer / entropy-model tables of the contract (from ``dred_tables.npz``).
    latent_dim, state_dim, dense, gru, init_hidden : int
        Layer sizes.
    feature_mean, feature_std : numpy.ndarray
        (20,) normalisation the encoder's inputs use.
    version : str
    """

    arrays: dict
    tables: EntropyTables
    latent_dim: int
    state_dim: int
    dense: int
    gru: int
    init_hidden: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    version: str = DECODER_VERSION

    @classmethod
    def from_mapping(cls, arrs: Mapping[str, np.ndarray], tables: EntropyTables | None = None) -> "DecoderWeights":
        """Validate a mapping with the exporter's names (see module docstring).

        ``tables`` defaults to the shipped ones (:func:`~edge_dred.dred.tables.shipped_tables`).
        """
        try:
            dims = np.asarray(arrs["dims"]).astype(np.int64).ravel()
        except KeyError:
            raise DredModelError("decoder file has no 'dims' array") from None
        if dims.shape[0] < 7:
            raise DredModelError(f"'dims' has {dims.shape[0]} entries, expected 7")
        d, s, dense, gru, init_h, dec_frames, nfeat = (int(v) for v in dims[:7])
        if dec_frames != DEC_FRAMES or nfeat != NB_FEATURES:
            raise DredModelError(f"decoder emits {dec_frames} x {nfeat} per latent, runtime needs "
                                 f"{DEC_FRAMES} x {NB_FEATURES}")
        for name, v in (("latent_dim", d), ("state_dim", s), ("dense", dense), ("gru", gru), ("init", init_h)):
            if not 1 <= v <= _MAX_LAYER:
                raise DredModelError(f"decoder {name} = {v} out of range")
        out_n = DEC_FRAMES * NB_FEATURES
        shapes = {
            "dec_init1_weight": (init_h, s), "dec_init1_bias": (init_h,),
            "dec_init2_weight": (2 * gru, init_h), "dec_init2_bias": (2 * gru,),
            "dec_dense_in_weight": (dense, d), "dec_dense_in_bias": (dense,),
            "dec_gru1_w_ih": (3 * gru, dense), "dec_gru1_w_hh": (3 * gru, gru),
            "dec_gru1_b_ih": (3 * gru,), "dec_gru1_b_hh": (3 * gru,),
            "dec_gru2_w_ih": (3 * gru, dense + gru), "dec_gru2_w_hh": (3 * gru, gru),
            "dec_gru2_b_ih": (3 * gru,), "dec_gru2_b_hh": (3 * gru,),
            "dec_out_weight": (out_n, dense + 2 * gru), "dec_out_bias": (out_n,),
            "feature_mean": (NB_FEATURES,), "feature_std": (NB_FEATURES,),
        }
        out: dict[str, np.ndarray] = {}
        for name, shape in shapes.items():
            if name not in arrs:
                raise DredModelError(f"decoder file lacks array {name!r}")
            a = np.asarray(arrs[name])
            if a.shape != shape:
                raise DredModelError(f"{name} has shape {a.shape}, expected {shape}")
            if not np.issubdtype(a.dtype, np.floating):
                raise DredModelError(f"{name} must be floating point, got {a.dtype}")
            a = np.ascontiguousarray(a, dtype=np.float32)
            if not np.all(np.isfinite(a)):
                raise DredModelError(f"{name} contains NaN or infinity")
            a.setflags(write=False)
            out[name] = a
        if tables is None:
            tables = shipped_tables()
        if tables.latent_dim != d or tables.state_dim != s:
            raise DredModelError(f"tables are for D={tables.latent_dim}, S={tables.state_dim}; weights for D={d}, S={s}")
        if np.any(out["feature_std"] <= 0):
            raise DredModelError("feature_std must be > 0")
        version = str(np.asarray(arrs["version"])) if "version" in arrs else DECODER_VERSION
        return cls(out, tables, d, s, dense, gru, init_h, out["feature_mean"], out["feature_std"], version)


def load_decoder_weights(path: str | os.PathLike | None = None, *, verify: bool | None = None,
                         tables: EntropyTables | None = None) -> DecoderWeights:
    """Load and validate the decoder file.

    Parameters
    ----------
    path : path-like, optional
        Defaults to the shipped decoder named in ``manifest.json``
        (``dred_decoder.npz``, or ``dred_decoder.bin`` in the
        :mod:`edge_dred.quantize.weightfile` format).
    verify : bool, optional
        Check sha256/size/version against ``manifest.json`` next to the file;
        default: only for the shipped file.
    tables : EntropyTables, optional
        Defaults to the shipped tables.

    Raises
    ------
    DredModelError
        On any problem, with a message naming the file.
    """
    p = locate_model_file(MANIFEST_KEY, DECODER_VERSION, path, verify, "decoder", _MAX_FILE_BYTES)
    if p.suffix == ".bin":
        # edge_dred.quantize.weightfile format (header checksum, model name and version checked on read).
        from edge_dred.quantize import WeightFileError, read_weights

        try:
            arrs, _ = read_weights(p, expect_model=MANIFEST_KEY, expect_version=DECODER_VERSION)
        except (WeightFileError, OSError) as e:
            raise DredModelError(f"{p}: {e}") from None
        arrs = dict(arrs)
        arrs.setdefault("version", np.array(DECODER_VERSION))
    else:
        arrs = read_npz(p, "decoder")
    try:
        w = DecoderWeights.from_mapping(arrs, tables)
    except DredModelError as e:
        raise DredModelError(f"{p}: {e}") from None
    except (ValueError, TypeError, IndexError, OverflowError) as e:  # arrays of the wrong kind
        raise DredModelError(f"{p}: malformed decoder arrays ({type(e).__name__}: {e})") from None
    if w.version != DECODER_VERSION:
        raise DredModelError(f"{p}: version {w.version!r}, this runtime needs {DECODER_VERSION!r}")
    return w


@functools.lru_cache(maxsize=1)
def shipped_decoder_weights() -> DecoderWeights:
    """The shipped decoder file, checked and loaded once per process."""
    return load_decoder_weights()


_SANE_LO = np.array([PITCH_MIN, 0.0], np.float32)     # pitch period, pitch correlation
_SANE_HI = np.array([PITCH_MAX, 1.0], np.float32)


def sanitize_features(f: np.ndarray) -> np.ndarray:
    """Clip decoded features into the ranges the vocoder was trained on.

    Decoded pitch periods and correlations can overshoot slightly; the
    vocoder's pitch gather needs a period in [32, 267].
    """
    f = np.array(f, dtype=np.float32)
    v = f[..., 18:20]
    # In place, pitch and correlation together; maximum/minimum keep NaN as clip does.
    np.minimum(np.maximum(v, _SANE_LO, out=v), _SANE_HI, out=v)
    return f


def dequantize_payload(p: DredPayload, tables: EntropyTables) -> tuple[np.ndarray, np.ndarray]:
    """(state_hat (S,), latents_hat (n, D) newest first) of a parsed payload."""
    n = len(p.latents_k)
    lv = chunk_levels(n, p.q0, p.dq, p.qmax)
    k = np.asarray(p.latents_k, dtype=np.float64).reshape(n, tables.latent_dim)
    z = (k / tables.quant_scale[lv].astype(np.float64)).astype(np.float32)
    s = (np.asarray(p.state_k, dtype=np.float64) / tables.state_quant_scale).astype(np.float32)
    return s, z


# --------------------------------------------------------------------- numpy reference

def reference_decode(w: DecoderWeights, state_hat: np.ndarray, latents_hat: np.ndarray) -> np.ndarray:
    """Float64 numpy decode (the truth the kernel version is tested against).

    Parameters
    ----------
    w : DecoderWeights
    state_hat : numpy.ndarray, (S,)
        Dequantised initial state.
    latents_hat : numpy.ndarray, (L, D)
        Dequantised latents, newest first.

    Returns
    -------
    numpy.ndarray
        (4 L, 20) raw features, newest frame first (float32).
    """
    a = {k: v.astype(np.float64) for k, v in w.arrays.items()}
    s = np.asarray(state_hat, np.float64)
    z_all = np.asarray(latents_hat, np.float64).reshape(-1, w.latent_dim)
    g = np.tanh(a["dec_init2_weight"] @ np.tanh(a["dec_init1_weight"] @ s + a["dec_init1_bias"]) + a["dec_init2_bias"])
    h1, h2 = g[:w.gru], g[w.gru:]
    gru1, gru2 = ((a[f"dec_{n}_w_ih"], a[f"dec_{n}_w_hh"], a[f"dec_{n}_b_ih"], a[f"dec_{n}_b_hh"])
                  for n in ("gru1", "gru2"))
    out = []
    for z in z_all:
        x = np.tanh(a["dec_dense_in_weight"] @ z + a["dec_dense_in_bias"])
        h1 = gru_step(gru1, x, h1)
        h2 = gru_step(gru2, np.concatenate([x, h1]), h2)
        out.append(a["dec_out_weight"] @ np.concatenate([x, h1, h2]) + a["dec_out_bias"])
    if not out:
        return np.zeros((0, NB_FEATURES), np.float32)
    return np.concatenate(out).reshape(-1, NB_FEATURES).astype(np.float32)


# --------------------------------------------------------------------- kernel runtime

class DredDecoder:
    """The decoder on ``edge_dred.kernels`` (int8 by default).

    Parameters
    ----------
    weights : DecoderWeights, optional
        Defaults to the shipped file (manifest-checked).
    mode : {"int8", "float"}
        Weight storage of every layer.  Block sparsity is not used: the
        model was trained dense and the receiver decodes at most a few steps
        per lost packet, so pruning would cost quality for no real gain.

    Notes
    -----
    One instance holds one set of network buffers; :class:`BackwardDecode`
    objects save and restore their own recurrent state, so several may be
    in progress at once.  Not thread-safe.
    """

    def __init__(self, weights: DecoderWeights | None = None, *, mode: str = "int8") -> None:
        from edge_dred.kernels import GRU, Dense, Network, make_gru, make_linear

        if mode not in ("int8", "float"):
            raise ValueError(f"mode must be 'int8' or 'float', got {mode!r}")
        self.weights = w = weights if weights is not None else shipped_decoder_weights()
        self.mode = mode
        a = w.arrays
        lin = lambda n: make_linear(a[f"{n}_weight"], a[f"{n}_bias"], mode=mode)  # noqa: E731
        gru = lambda n: make_gru(a[f"{n}_w_ih"], a[f"{n}_w_hh"], a[f"{n}_b_ih"], a[f"{n}_b_hh"], mode=mode)  # noqa: E731
        h = w.gru
        self._init = Network(buffers={"s": w.state_dim, "i1": w.init_hidden, "g": 2 * h}, ops=[
            Dense(["s"], "i1", lin("dec_init1"), activation="tanh"),
            Dense(["i1"], "g", lin("dec_init2"), activation="tanh"),
        ])
        self._step = Network(buffers={"z": w.latent_dim, "x": w.dense, "g": 2 * h,
                                      "out": DEC_FRAMES * NB_FEATURES}, ops=[
            Dense(["z"], "x", lin("dec_dense_in"), activation="tanh"),
            GRU(["x"], ("g", 0, h), gru("dec_gru1")),
            GRU(["x", ("g", 0, h)], ("g", h, 2 * h), gru("dec_gru2")),
            Dense(["x", "g"], "out", lin("dec_out")),
        ])
        self._owner: BackwardDecode | None = None

    @property
    def tables(self) -> EntropyTables:
        """The entropy tables the weights decode with."""
        return self.weights.tables

    def initial_state(self, state_hat: np.ndarray) -> np.ndarray:
        """GRU states (2 H,) from a dequantised state vector (S,)."""
        s = np.asarray(state_hat, np.float32)
        if s.shape != (self.weights.state_dim,) or not np.all(np.isfinite(s)):
            raise ValueError(f"state must be finite ({self.weights.state_dim},), got {s.shape}")
        return self._init.run({"s": s[None]}, fetch=["g"])["g"][0].copy()

    def _run_steps(self, owner: "BackwardDecode", z: np.ndarray) -> np.ndarray:
        g = self._step.buffer("g")
        if self._owner is not owner:
            g[:] = owner._g
            self._owner = owner
        out = self._step.run({"z": z}, fetch=["out"])["out"]
        owner._g = g.copy()
        return out.reshape(-1, NB_FEATURES)

    def start(self, state_hat: np.ndarray, latents_hat: np.ndarray) -> "BackwardDecode":
        """Begin a lazy backward decode of dequantised values.

        Parameters
        ----------
        state_hat : (S,) float
        latents_hat : (n, D) float, newest first, 1 <= n <= 26
        """
        z = np.ascontiguousarray(latents_hat, np.float32)
        if z.ndim != 2 or z.shape[1] != self.weights.latent_dim or not 1 <= z.shape[0] <= MAX_CHUNKS:
            raise ValueError(f"latents must be (1..{MAX_CHUNKS}, {self.weights.latent_dim}), got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("latents must be finite")
        return BackwardDecode(self, self.initial_state(state_hat), z)

    def start_payload(self, payload: DredPayload) -> "BackwardDecode":
        """Begin a lazy backward decode of a parsed payload (dequantised with the shipped tables)."""
        s, z = dequantize_payload(payload, self.tables)
        return self.start(s, z)

    def decode(self, state_hat: np.ndarray, latents_hat: np.ndarray) -> np.ndarray:
        """Decode every latent at once: (4 n, 20) raw features, newest first."""
        bd = self.start(state_hat, latents_hat)
        return bd.frames(bd.n_frames_available)


@dataclass(eq=False)
class BackwardDecode:
    """One payload's decode, advanced only as far back as callers ask.

    ``frames(n)`` returns the newest ``n`` frames (newest first), running
    only the decoder steps not run yet.
    """

    decoder: DredDecoder
    _g: np.ndarray
    latents: np.ndarray
    _out: list = field(default_factory=list)

    @property
    def n_chunks(self) -> int:
        """Latents in the payload."""
        return int(self.latents.shape[0])

    @property
    def n_frames_available(self) -> int:
        """Frames the payload describes (4 per latent)."""
        return DEC_FRAMES * self.n_chunks

    @property
    def chunks_decoded(self) -> int:
        """Decoder steps run so far."""
        return len(self._out)

    def extend(self, latents_hat: np.ndarray) -> None:
        """Make older latents available: ``latents_hat`` (newest first) starts with the current ones.

        For a payload parsed first for its newest chunks only and again for more.
        """
        z = np.ascontiguousarray(latents_hat, np.float32)
        n = self.n_chunks
        if (z.ndim != 2 or z.shape[1] != self.latents.shape[1] or not n <= z.shape[0] <= MAX_CHUNKS
                or not np.array_equal(z[:n], self.latents)):
            raise ValueError(f"latents must be (>= {n}, {self.latents.shape[1]}) and begin with the current ones")
        self.latents = z

    def frames(self, n: int) -> np.ndarray:
        """The newest ``n`` frames, newest first (decoding more chunks if needed).

        Parameters
        ----------
        n : int
            0 <= n <= `n_frames_available`.

        Returns
        -------
        numpy.ndarray
            (n, 20) float32 raw features.
        """
        if not isinstance(n, (int, np.integer)) or not 0 <= n <= self.n_frames_available:
            raise ValueError(f"n must be in [0, {self.n_frames_available}], got {n!r}")
        need = -(-int(n) // DEC_FRAMES)
        if need > len(self._out):
            new = self.decoder._run_steps(self, self.latents[len(self._out):need])
            self._out.extend(np.split(new, need - len(self._out)))
        if n == 0:
            return np.zeros((0, NB_FEATURES), np.float32)
        return np.concatenate(self._out[:need])[:n]
