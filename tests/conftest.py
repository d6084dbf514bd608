"""Shared synthetic signals: the tests never read ../shared."""
from __future__ import annotations

import numpy as np
import pytest


def voiced(seconds: float = 2.0, f0: float = 140.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A speech-like int16 signal: harmonics with a drifting pitch, syllable envelope, a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.5 * t))
    ph = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * ph) * (0.8 ** k) for k in range(1, 25) if k * f0 * 1.1 < sr / 2)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x = x / np.max(np.abs(x)) * env * 0.4 + rng.normal(0, 0.003, n)
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


@pytest.fixture
def speechlike() -> np.ndarray:
    return voiced()


@pytest.fixture
def truncated_plc_models(tmp_path, monkeypatch):
    """The shipped models with ``plc.bin`` cut short, installed as the models directory."""
    from edge_dred import plc as plc_mod
    from edge_dred.models import loader

    d = tmp_path / "models"
    d.mkdir()
    for name in ("manifest.json", "vocoder.bin", "plc.bin"):
        (d / name).write_bytes((loader.MODELS_DIR / name).read_bytes())
    (d / "plc.bin").write_bytes((d / "plc.bin").read_bytes()[:5000])
    monkeypatch.setattr(loader, "MODELS_DIR", d)
    plc_mod.default_models.cache_clear()
    yield d
    plc_mod.default_models.cache_clear()  # the next test loads the real models again


def play_datagrams(core, datagrams, lost=()):
    """Feed a RecvCore one datagram per 20 ms (dropping the indices in ``lost``), pull a frame 11 ms
    into each period, and finish the stream.  Returns (the played audio after the idle and warm-up
    frames, the report)."""
    frames = []
    for i, d in enumerate(datagrams):
        if i not in lost:
            core.on_datagram(d, i * 0.02)
        frames.append(core.next_frame(i * 0.02 + 0.011))
    frames += core.finish()
    rep = core.report()
    skip = (rep["rtp"]["idle_frames"] + rep["rtp"]["warmup_frames"]) * 320
    return np.concatenate(frames)[skip:], rep
