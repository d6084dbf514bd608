"""Speech quality metrics at 16 kHz: PESQ-WB, STOI, PLCMOS v2, DNSMOS.

All functions take 1-D arrays: int16 samples (scaled by 1/32768) or floats in
[-1, 1].  The scorers come from the ``eval`` extra (``pesq``, ``pystoi``,
``speechmos`` + ``onnxruntime``); a missing one raises
:class:`MissingEvalExtraError` telling how to install it.

The ONNX models shipped inside ``speechmos`` are loaded once per process and
cached.  Two deliberate differences from calling ``speechmos.plcmos.run``:

* PLCMOS averages the model over random "rater embeddings"; speechmos draws
  them from NumPy's global generator, so scores would change from call to
  call.  We draw them from a fixed seed, which makes every score reproducible.
* ``speechmos.dnsmos`` imports ``librosa`` (only for the P.808 model's log-mel
  input) and ``requests`` (unused) at import time.  When those are not
  installed we hand it a small NumPy log-mel implementation with the same
  definition (Slaney mel filterbank, centred zero-padded Hann STFT, dB
  relative to the maximum with an 80 dB floor) instead of pulling in librosa
  and its numba/llvmlite stack.
"""
from __future__ import annotations

import importlib
import os
import sys
import threading
import types
import warnings
from typing import Any

import numpy as np

from ..constants import SAMPLE_RATE

__all__ = [
    "MissingEvalExtraError",
    "pesq_wb",
    "stoi",
    "plcmos",
    "dnsmos",
    "set_onnx_threads",
    "pesq_error_counts",
    "available_metrics",
    "METRIC_NAMES",
    "artifact_fraction",
]

INSTALL_HINT = 'pip install "edge-dred[eval]"'
# One hour at 16 kHz: bounds memory and run time of a single score.
MAX_SAMPLES = 3600 * SAMPLE_RATE
PLCMOS_ROUNDS = 15  # what the PLCMOS v2 paper/speechmos average over
PLCMOS_SEED = 20230820

#: Metric name -> columns it produces (used by the runner and its CSV).
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "pesq": ("pesq_wb",),
    "stoi": ("stoi",),
    "plcmos": ("plcmos",),
    "dnsmos": ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"),
    "artifacts": ("artifact_frac",),
}


class MissingEvalExtraError(ImportError):
    """An optional evaluation dependency is not installed."""


_lock = threading.Lock()
_cache: dict[str, Any] = {}
_onnx_threads = 1
_pesq_errors: dict[str, int] = {}


def _require(module: str, what: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingEvalExtraError(
            f"{what} needs the '{module}' package, which is not installed: {INSTALL_HINT}"
        ) from e


def _as_float(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if a.size > MAX_SAMPLES:
        raise ValueError(f"{name} longer than {MAX_SAMPLES} samples ({MAX_SAMPLES // SAMPLE_RATE} s)")
    if a.dtype == np.int16:
        return a.astype(np.float64) / 32768.0
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be int16 or floating point, got {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.max(np.abs(a)) > 1.0:
        raise ValueError(f"{name} has samples outside [-1, 1]")
    return a


def _pair(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = _as_float(ref, "ref")
    d = _as_float(deg, "deg")
    if r.size != d.size:
        raise ValueError(f"ref and deg differ in length ({r.size} vs {d.size} samples)")
    return r, d


def set_onnx_threads(n: int) -> None:
    """Set ONNX Runtime intra-op threads for sessions created from now on.

    Parameters
    ----------
    n : int
        Threads per session (>= 1).  Use 1 in worker processes so that a pool
        of N workers uses N cores.  Already-loaded sessions are dropped so the
        setting takes effect.
    """
    global _onnx_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"onnx threads must be a positive int, got {n!r}")
    with _lock:
        if n != _onnx_threads:
            _onnx_threads = n
            _cache.clear()


def _session(path: str) -> Any:
    ort = _require("onnxruntime", "PLCMOS/DNSMOS")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _onnx_threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def pesq_error_counts() -> dict[str, int]:
    """PESQ failures (scored as NaN) in this process so far, by error type."""
    with _lock:
        return dict(_pesq_errors)


def pesq_wb(ref: np.ndarray, deg: np.ndarray) -> float:
    """Wide-band PESQ (ITU-T P.862.2) MOS-LQO of ``deg`` against ``ref``.

    Returns NaN (and counts it, see :func:`pesq_error_counts`) when PESQ finds
    no utterance in the reference or the signal is too short for it.
    """
    r, d = _pair(ref, deg)
    pesq_mod = _require("pesq", "PESQ")
    try:
        if not np.any(r):
            # pesq would divide by a zero peak; digital silence has no utterance anyway.
            raise pesq_mod.NoUtterancesError("reference is digital silence")
        return float(pesq_mod.pesq(SAMPLE_RATE, r, d, "wb"))
    except (pesq_mod.NoUtterancesError, pesq_mod.BufferTooShortError) as e:
        with _lock:
            key = type(e).__name__
            _pesq_errors[key] = _pesq_errors.get(key, 0) + 1
        return float("nan")


def stoi(ref: np.ndarray, deg: np.ndarray) -> float:
    """Short-Time Objective Intelligibility (0..1) of ``deg`` against ``ref``."""
    r, d = _pair(ref, deg)
    pystoi = _require("pystoi", "STOI")
    with warnings.catch_warnings():
        # pystoi warns (and returns ~0) when fewer than 30 frames remain after
        # removing silence; the number itself tells the story.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(pystoi.stoi(r, d, SAMPLE_RATE, extended=False))


def _plcmos_model() -> Any:
    with _lock:
        m = _cache.get("plcmos")
        if m is None:
            _require("onnxruntime", "PLCMOS")
            mod = _require("speechmos.plcmos", "PLCMOS")
            # Build without running __init__ so the ONNX file is loaded once,
            # with our session options.
            m = mod.PLCMOS.__new__(mod.PLCMOS)
            m.model_name = "plcmos_v2"
            m.embed_rounds = PLCMOS_ROUNDS
            m.max_lens = sys.maxsize
            path = os.path.join(os.path.dirname(os.path.abspath(mod.__file__)), "plcmos_models", "plcmos_v2.onnx")
            m.model_path = path
            m.session = _session(path)
            _cache["plcmos"] = m
        return m


def plcmos(deg: np.ndarray, rounds: int = PLCMOS_ROUNDS, seed: int = PLCMOS_SEED) -> float:
    """PLCMOS v2 (non-intrusive packet-loss-concealment MOS, 1..5) of ``deg``.

    Parameters
    ----------
    deg : np.ndarray
        Degraded/concealed signal, 16 kHz.
    rounds : int
        Number of random rater embeddings averaged.
    seed : int
        Seed of the rater embeddings (fixed so scores are reproducible).
    """
    d = _as_float(deg, "deg")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    m = _plcmos_model()
    feats = np.float32(m.stft_transform(d))[np.newaxis, np.newaxis, ...]
    embeds = np.random.default_rng(seed).normal(size=(rounds, 1, 64)).astype(np.float32)
    total = 0.0
    for e in embeds:
        out = m.session.run(None, {"degraded_audio": feats, "rater_embed": e})[0]
        total += float(np.asarray(out).reshape(-1)[0])
    return total / rounds


# --------------------------------------------------------------------- DNSMOS


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    # Slaney's auditory-toolbox scale: linear to 1 kHz, logarithmic above.
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular, area-normalised ("slaney") mel filters, shape (n_mels, n_fft//2+1)."""
    fft_f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(0.0), _hz_to_mel_slaney(sr / 2.0), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_f[None, :] - lo) / (mid - lo)
    falling = (hi - fft_f[None, :]) / (hi - mid)
    w = np.maximum(0.0, np.minimum(rising, falling))
    return w * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def _melspectrogram(
    y: np.ndarray, sr: int = SAMPLE_RATE, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128, **_: Any
) -> np.ndarray:
    """Power mel spectrogram, shape (n_mels, frames): centred, zero-padded, periodic Hann."""
    y = np.asarray(y, dtype=np.float32)
    pad = n_fft // 2
    yp = np.pad(y, (pad, pad))
    n_frames = 1 + (yp.size - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(
        yp, shape=(n_frames, n_fft), strides=(yp.strides[0] * hop_length, yp.strides[0]), writeable=False
    )
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2
    key = ("mel", sr, n_fft, n_mels)
    fb = _cache.get(key)
    if fb is None:
        fb = _cache[key] = _mel_filterbank(sr, n_fft, n_mels)
    return (fb @ power.T).astype(np.float32)


def _power_to_db(s: np.ndarray, ref: Any = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    s = np.asarray(s)
    ref_value = ref(s) if callable(ref) else ref
    db = 10.0 * np.log10(np.maximum(amin, s)) - 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


def _librosa_stand_in() -> types.ModuleType:
    mod = types.ModuleType("librosa")
    mod.feature = types.SimpleNamespace(melspectrogram=_melspectrogram)  # type: ignore[attr-defined]
    mod.power_to_db = _power_to_db  # type: ignore[attr-defined]

    def _no_load(*_a: Any, **_k: Any) -> None:
        raise MissingEvalExtraError("DNSMOS on file paths needs librosa; pass arrays instead")

    mod.load = _no_load  # type: ignore[attr-defined]
    return mod


def _import_speechmos_dnsmos() -> types.ModuleType:
    if "speechmos.dnsmos" in sys.modules:
        return sys.modules["speechmos.dnsmos"]
    _require("speechmos", "DNSMOS")
    shims: dict[str, types.ModuleType] = {}
    for name in ("librosa", "requests"):
        try:
            importlib.import_module(name)
        except ImportError:
            shim = _librosa_stand_in() if name == "librosa" else types.ModuleType("requests")
            if name == "requests":
                shim.session = None  # type: ignore[attr-defined]  # imported, never used
            shims[name] = shim
    saved = {k: sys.modules.get(k) for k in shims}
    sys.modules.update(shims)
    try:
        return importlib.import_module("speechmos.dnsmos")
    finally:
        # The stand-ins stay bound inside speechmos.dnsmos only; nobody else sees them.
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _dnsmos_model() -> Any:
    with _lock:
        m = _cache.get("dnsmos")
        if m is None:
            _require("onnxruntime", "DNSMOS")
            mod = _import_speechmos_dnsmos()
            base = os.path.dirname(os.path.abspath(mod.__file__))
            m = mod.DNSMOS.__new__(mod.DNSMOS)
            m.primary_model_path = os.path.join(base, "dnsmos_models", "sig_bak_ovr.onnx")
            m.onnx_sess = _session(m.primary_model_path)
            m.p808_onnx_sess = _session(os.path.join(base, "dnsmos_models", "model_v8.onnx"))
            _cache["dnsmos"] = m
        return m


def dnsmos(deg: np.ndarray) -> dict[str, float]:
    """DNSMOS P.835 (non-personalised) and P.808 scores of ``deg``.

    Clips shorter than the model's 9.01 s window are repeated to fill it (as
    speechmos does); longer ones are scored in 1 s hops and averaged.

    Returns
    -------
    dict
        ``OVRL``, ``SIG``, ``BAK``, ``P808`` MOS values (1..5).
    """
    d = _as_float(deg, "deg").astype(np.float32)
    m = _dnsmos_model()
    r = m(d, SAMPLE_RATE, False)
    return {
        "OVRL": float(r["ovrl_mos"]),
        "SIG": float(r["sig_mos"]),
        "BAK": float(r["bak_mos"]),
        "P808": float(r["p808_mos"]),
    }


_DETECTOR: Any = None
_DETECTOR_LOCK = threading.Lock()


def artifact_fraction(x: np.ndarray) -> float:
    """Fraction of the 1 s segments of ``x`` the shipped artifact detector flags (any defect).

    Uses :class:`edge_dred.artifacts.detector.ArtifactDetector` (loaded once
    per process); NaN for signals shorter than 1 s.
    """
    global _DETECTOR
    from ..artifacts.detector import ArtifactDetector, segments

    x = np.asarray(x)
    if len(x) < SAMPLE_RATE:
        return float("nan")
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            _DETECTOR = ArtifactDetector()
        verdicts = [_DETECTOR.classify(s) for _, s in segments(x)]
    return float(np.mean([v.label != "none" for v in verdicts]))


def available_metrics() -> dict[str, bool]:
    """Which metrics can run here (their packages import), by metric name."""
    out = {}
    for name, mods in {
        "pesq": ("pesq",),
        "stoi": ("pystoi",),
        "plcmos": ("speechmos", "onnxruntime"),
        "dnsmos": ("speechmos", "onnxruntime"),
        "artifacts": (),
    }.items():
        try:
            for mod in mods:
                importlib.import_module(mod)
            out[name] = True
        except ImportError:
            out[name] = False
    return out
