"""Lossy coding chains for the artifact recipe (training only): MP3, Vorbis, AAC via ffmpeg.

Read speech published on the web (audiobooks, podcasts) reached 16 kHz
through a consumer chain: recorded at 22.05 or 44.1 kHz, MP3-coded at 32-128
kb/s (or Vorbis/AAC), decoded and resampled.  The coder removes what it
deems masked (spectral holes in quiet passages and noise floors), its
encoder low-passes, and the resampler adds its own low-pass near 8 kHz.
None of this is a defect, so the recipe puts such chains under the clean
class and, less often, under the defects.

ffmpeg (``libmp3lame``, ``libvorbis``, its native ``aac``) does the coding;
it is a training-time tool only, never needed by the package.  Without it
:func:`require_ffmpeg` raises a clear error naming what is missing.

To keep process starts off the training step, :func:`code_batch` codes many
1 s examples in one ffmpeg round trip: they are laid end to end with
:data:`GAP_S` of silence between them (more than the coders' frame overlap),
the decoded stream is aligned to the input by cross-correlation, and each
example is cut back out.  All examples of one call share one chain.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from edge_dred.constants import SAMPLE_RATE

#: Codecs and their bit rates (b/s): MP3 most often, as in audiobook archives.
CODECS: dict[str, tuple[int, ...]] = {
    "mp3": (32000, 40000, 48000, 56000, 64000, 80000, 96000, 128000),
    "vorbis": (48000, 64000, 80000),  # libvorbis refuses higher ones at 16-22 kHz
    "aac": (48000, 64000, 96000, 128000),
}
CODEC_P = {"mp3": 0.7, "vorbis": 0.15, "aac": 0.15}
#: Rates the coded stream runs at (16 kHz: coded as is; else resampled up and back down).
CODING_RATES = (16000, 22050, 44100)
LOWPASS_P = 0.5  # share of chains with a gentle low-pass before coding (an encoder's or resampler's)
LOWPASS_HZ = (7000.0, 8000.0)
GAP_S = 0.25  # silence between examples coded in one call
_ENCODERS = {"mp3": "libmp3lame", "vorbis": "libvorbis", "aac": "aac"}
_FORMATS = {"mp3": "mp3", "vorbis": "ogg", "aac": "adts"}  # muxer
_DEMUXERS = {"mp3": "mp3", "vorbis": "ogg", "aac": "aac"}
_MAX_LAG = 8192  # samples at 16 kHz: far more than any coder's delay


class FFmpegMissing(RuntimeError):
    """ffmpeg (or one of its encoders) is not available, so the lossy recipe cannot run."""


@dataclass(frozen=True)
class Chain:
    """One lossy chain: codec, bit rate, coding sample rate, optional low-pass (Hz)."""

    codec: str
    bitrate: int
    rate: int
    lowpass_hz: float | None = None

    def describe(self) -> str:
        lp = f", low-pass {self.lowpass_hz / 1000:.1f} kHz" if self.lowpass_hz else ""
        return f"{self.codec} {self.bitrate // 1000} kb/s at {self.rate} Hz{lp}"


def ffmpeg_path() -> str | None:
    """The ffmpeg executable on PATH, or None."""
    return shutil.which("ffmpeg")


def require_ffmpeg(codecs=tuple(CODECS)) -> str:
    """ffmpeg's path; :class:`FFmpegMissing` when it or an encoder for ``codecs`` is absent."""
    exe = ffmpeg_path()
    if exe is None:
        raise FFmpegMissing("the lossy-coding recipe (--lossy) needs ffmpeg with libmp3lame on PATH; "
                            "install it (apt-get install ffmpeg) or train without --lossy")
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    missing = [_ENCODERS[c] for c in codecs if f" {_ENCODERS[c]} " not in out]
    if missing:
        raise FFmpegMissing(f"ffmpeg at {exe} lacks the encoder(s) {', '.join(missing)} the lossy recipe uses")
    return exe


def coder_or_exit(enabled: bool, prog: str) -> str | None:
    """For a script's ``--lossy`` flag: ffmpeg's path, None without the flag; exits naming ``prog``
    (and what is missing) when ffmpeg or an encoder is absent."""
    if not enabled:
        return None
    try:
        return require_ffmpeg()
    except FFmpegMissing as e:
        sys.exit(f"{prog}: {e}")


def draw_chain(rng: np.random.Generator, codecs=tuple(CODECS)) -> Chain:
    """A random chain: codec by :data:`CODEC_P` (over ``codecs``), bit rate, coding rate, low-pass."""
    p = np.array([CODEC_P[c] for c in codecs])
    codec = str(rng.choice(codecs, p=p / p.sum()))
    bitrate = int(rng.choice(CODECS[codec]))
    rate = int(rng.choice(CODING_RATES))
    lp = float(rng.uniform(*LOWPASS_HZ)) if rng.random() < LOWPASS_P else None
    return Chain(codec, bitrate, rate, lp)


def _lowpass(x: np.ndarray, fc: float) -> np.ndarray:
    """Zero-phase gentle low-pass (4th-order magnitude) at ``fc``."""
    n = len(x)
    m = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfftfreq(m, 1 / SAMPLE_RATE)
    return np.fft.irfft(np.fft.rfft(x, m) / np.sqrt(1 + (f / fc) ** 8), m)[:n]


def _roundtrip(pcm: np.ndarray, chain: Chain, exe: str) -> np.ndarray:
    """int16 16 kHz through encode + decode at the chain's rate; returned at 16 kHz, unaligned."""
    base = [exe, "-nostdin", "-hide_banner", "-loglevel", "error"]
    enc = [*base, "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0", "-ar", str(chain.rate),
           "-c:a", _ENCODERS[chain.codec], "-b:a", str(chain.bitrate), "-f", _FORMATS[chain.codec], "pipe:1"]
    dec = [*base, "-f", _DEMUXERS[chain.codec], "-i", "pipe:0", "-ar", str(SAMPLE_RATE), "-ac", "1",
           "-f", "s16le", "pipe:1"]
    try:
        coded = subprocess.run(enc, input=pcm.tobytes(), capture_output=True, check=True).stdout
        out = subprocess.run(dec, input=coded, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"ffmpeg failed on {chain.describe()}: {e.stderr.decode(errors='replace')[-300:]}") from e
    return np.frombuffer(out, np.int16).astype(np.float64) / 32768.0


def _lag(ref: np.ndarray, y: np.ndarray) -> int:
    """Delay of ``y`` against ``ref`` (0.._MAX_LAG samples) by FFT cross-correlation."""
    m = 1 << int(np.ceil(np.log2(len(ref) + len(y))))
    xc = np.fft.irfft(np.fft.rfft(y, m) * np.conj(np.fft.rfft(ref, m)), m)
    return int(np.argmax(xc[:_MAX_LAG + 1]))


def code_batch(examples: list[np.ndarray], chain: Chain, exe: str | None = None) -> list[np.ndarray]:
    """Each example (float in [-1, 1], 16 kHz) through ``chain``, sample-aligned, same lengths; float32.

    Raises
    ------
    FFmpegMissing
        No ffmpeg (or no encoder for the chain's codec).
    """
    if not examples:
        return []
    exe = exe or require_ffmpeg((chain.codec,))
    gap = int(GAP_S * SAMPLE_RATE)
    lens = [len(e) for e in examples]
    starts = np.cumsum([gap] + [n + gap for n in lens[:-1]])
    x = np.zeros(int(starts[-1] + lens[-1] + gap))
    for s, e in zip(starts, examples):
        x[s:s + len(e)] = e
    if chain.lowpass_hz:
        x = _lowpass(x, chain.lowpass_hz)
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    y = _roundtrip(pcm, chain, exe)
    d = _lag(pcm.astype(np.float64) / 32768.0, y)
    y = np.concatenate([y[d:], np.zeros(max(0, len(x) + d - len(y)))])[:len(x)]
    return [np.clip(y[s:s + n], -1.0, 1.0).astype(np.float32) for s, n in zip(starts, lens)]
