"""Crude stand-in for ``edge_dred.dsp.features.compute_features``.

Only used to test the training code before the real module landed
(``prepare_data.py --placeholder``); never for data the shipped models train on.
"""
from __future__ import annotations

import numpy as np

_EDGES_HZ = [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 2000, 2400, 2800, 3200, 4000, 4800, 5600, 6800, 8000]


def compute_features(pcm: np.ndarray) -> np.ndarray:
    """Rough LPCNet-like features (18 log-band DCT coefficients, period, corr)."""
    x = np.asarray(pcm, dtype=np.float64)
    x = np.concatenate([[0.0], x[1:] - 0.85 * x[:-1]])
    n = len(x) // 160
    pad = np.concatenate([np.zeros(160), x[: n * 160]])
    win = np.sin(np.pi * (np.arange(320) + 0.5) / 320)
    frames = np.stack([pad[i * 160 : i * 160 + 320] for i in range(n)]) * win if n else np.zeros((0, 320))
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = (np.array(_EDGES_HZ) / 8000 * 160).astype(int)
    e = np.stack([spec[:, edges[i] : max(edges[i] + 1, edges[i + 1] if i < 17 else 161)].sum(1) for i in range(18)], 1)
    le = np.log10(e + 1e2)
    k = np.arange(18)
    dct = np.cos(np.pi / 18 * (k[None, :] + 0.5) * k[:, None]) * np.sqrt(2 / 18)
    dct[0] /= np.sqrt(2)
    cep = le @ dct.T
    cep[:, 0] -= 40
    out = np.zeros((n, 20), np.float32)
    out[:, :18] = cep
    per = np.full(n, 100.0)
    corr = np.zeros(n)
    for i in range(n):
        fr = pad[i * 160 : i * 160 + 320]
        seg = fr[-160:]
        best, bl = 0.0, 100
        for lag in range(32, 160):
            ref = fr[-160 - lag : -lag] if lag <= 160 else None
            c = np.dot(seg, ref) / np.sqrt(np.dot(seg, seg) * np.dot(ref, ref) + 1e-9)
            if c > best:
                best, bl = c, lag
        per[i], corr[i] = bl, max(best, 0)
    out[:, 18] = per
    out[:, 19] = corr
    return out
