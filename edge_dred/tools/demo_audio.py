"""A default input for the demo when the user gives none.

espeak-ng (a Debian package the quick start installs) speaks a few sentences;
without it, a synthetic voiced signal with a moving pitch stands in.  Either
way the caller is told which one it got.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..constants import SAMPLE_RATE
from ..audio.wavio import AudioFormatError, load_audio, to_int16

__all__ = ["make_demo_clip"]

DEMO_TEXT = (
    "Voice over the Internet breaks when bursts of packets are lost. "
    "Deep redundancy puts a compressed description of the last second of speech into every packet, "
    "so the first packet after a burst restores all of it."
)


def _espeak(text: str) -> np.ndarray | None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.wav")
        try:
            subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", path, text],
                           check=True, capture_output=True, timeout=60)
            return load_audio(path).pcm
        except (subprocess.SubprocessError, OSError, AudioFormatError):
            return None


def _synthetic(seconds: float = 6.0) -> np.ndarray:
    """Glottal-pulse-like harmonics through two moving formants, with pauses."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 30) if k * 150 < SAMPLE_RATE / 2)
    envelope = (np.sin(2 * np.pi * 0.9 * t) > -0.3).astype(float)
    envelope = np.convolve(envelope, np.hanning(801) / np.hanning(801).sum(), mode="same")
    return to_int16(0.25 * x / np.max(np.abs(x)) * envelope)


def make_demo_clip() -> tuple[np.ndarray, str]:
    """Return (int16 16 kHz mono clip, description of where it came from)."""
    pcm = _espeak(DEMO_TEXT)
    if pcm is not None and len(pcm) > SAMPLE_RATE:
        return pcm, "no input given: synthesized a speech clip with espeak-ng"
    return _synthetic(), "no input given and espeak-ng is unavailable: using a synthetic voiced signal"
