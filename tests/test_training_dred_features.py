"""training/prepare_dred_features.py: DRED-decoded twins of the vocoder's training features."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import voiced

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

pytest.importorskip("ai_edge_litert.interpreter", reason="the DRED encoder needs ai-edge-litert")


def _features(seed: int) -> np.ndarray:
    from edge_dred.dsp.features import compute_features

    pcm = voiced(3.0, f0=120.0 + 20 * seed, seed=seed).astype(np.float64)
    # A level that jumps every 20 ms (+-10 dB), so that neighbouring packets' features differ.
    gain = 10 ** (np.random.default_rng(seed).uniform(-0.5, 0.5, pcm.size // 320 + 1) / 2)
    return compute_features(np.round(pcm * np.repeat(gain, 320)[:pcm.size] * 0.5).astype(np.int16))


def test_twin_is_the_decoded_stream_in_place() -> None:
    from prepare_dred_features import decode_file

    f = _features(0)
    out, n = decode_file(f, seed=1)
    assert out.shape == f.shape and out.dtype == np.float32
    n_pk = f.shape[0] // 2
    assert 0.9 * n_pk < n < n_pk     # all but the last few packets (no payload after them)
    changed = np.any(out != f, axis=1)
    assert not changed[-2:].any()     # the last packet: clean features kept
    # Decoded, not copied, and in its own place: the level (c0) of each frame is closer to its
    # clean frame's than to the frames 10 ms away (measured: 0.37 against 0.75).
    act = np.nonzero(changed)[0]
    act = act[(act >= 1) & (act < f.shape[0] - 1)]
    err = np.abs(out[act, 0] - f[act, 0]).mean()
    shifted = min(np.abs(out[act, 0] - f[act - 1, 0]).mean(), np.abs(out[act, 0] - f[act + 1, 0]).mean())
    assert 0.0 < err < 0.7 * shifted
    # Pitch and correlation clamped as the receiver hands them to the vocoder.
    from edge_dred.dred.decoder import sanitize_features

    np.testing.assert_array_equal(sanitize_features(out[act]), out[act])


def test_twin_is_reproducible_and_seeded() -> None:
    from prepare_dred_features import decode_file

    f = _features(1)
    a, _ = decode_file(f, seed=3)
    b, _ = decode_file(f, seed=3)
    c, _ = decode_file(f, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)    # another draw of payload ages
