"""WAV reading/writing with strict validation, and loading of any input file.

The RIFF parser is our own (the stdlib ``wave`` module rejects float WAVs and
WAVE_FORMAT_EXTENSIBLE headers): every chunk length is bounded by the file size,
so a corrupt or hostile file raises :class:`AudioFormatError` instead of reading
garbage.  Output files are written atomically (temporary file + rename) so an
interrupted run never leaves a half-written WAV behind.  A file cut off inside
its data chunk is read up to where it ends, with a
:class:`TruncatedAudioWarning` that names the file and what was read.
"""
from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import SAMPLE_RATE
from ..outputs import write_atomic
from .resample import resample

__all__ = ["AudioFormatError", "TruncatedAudioWarning", "LoadedAudio", "read_wav", "write_wav", "load_audio",
           "to_int16"]

MAX_INPUT_BYTES = 2 * 1024**3  # 2 GiB: a WAV's 32-bit sizes cannot describe more
_FMT_PCM, _FMT_FLOAT, _FMT_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


class AudioFormatError(ValueError):
    """An audio file is missing, empty, corrupt or in an unsupported format."""


class TruncatedAudioWarning(UserWarning):
    """A WAV file ends before its data chunk does; the samples present were read."""


@dataclass
class LoadedAudio:
    """Mono 16 kHz int16 audio ready for the pipeline, plus what was done to it."""

    pcm: np.ndarray
    sample_rate: int = SAMPLE_RATE
    source_rate: int = SAMPLE_RATE
    source_channels: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


def _decode_samples(raw: bytes, fmt: int, bits: int, channels: int, path: str) -> np.ndarray:
    block = channels * bits // 8
    n = len(raw) // block
    raw = raw[: n * block]
    if fmt == _FMT_PCM:
        if bits == 8:
            x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
        elif bits == 16:
            x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
        elif bits == 24:
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            v = np.where(v >= 1 << 23, v - (1 << 24), v)
            x = v.astype(np.float64) / float(1 << 23)
        elif bits == 32:
            x = np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)
        else:
            raise AudioFormatError(f"{path}: unsupported PCM bit depth {bits}")
    elif fmt == _FMT_FLOAT:
        if bits not in (32, 64):
            raise AudioFormatError(f"{path}: unsupported float bit depth {bits}")
        x = np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise AudioFormatError(f"{path}: float samples contain NaN or infinity")
    else:
        raise AudioFormatError(f"{path}: unsupported WAV encoding 0x{fmt:04x} (PCM and IEEE float only)")
    return x.reshape(-1, channels)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file.

    Returns
    -------
    samples : np.ndarray
        float64 array of shape (n_samples, channels), full scale = 1.0.
    sample_rate : int

    Raises
    ------
    AudioFormatError
        Missing/empty/truncated file, bad RIFF structure, unsupported encoding.
    """
    path = str(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise AudioFormatError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0:
        raise AudioFormatError(f"{path}: file is empty")
    if size > MAX_INPUT_BYTES:
        raise AudioFormatError(f"{path}: file is larger than {MAX_INPUT_BYTES} bytes")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{path}: not a RIFF/WAVE file")
    pos, fmt_info, raw, claimed = 12, None, None, 0
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (clen,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        body_end = body_start + clen
        if cid == b"data":
            # Streamed WAVs carry 0 or 0xFFFFFFFF here: take what is present.  Any other
            # length past the end is a cut-off file: take what is present, with a warning.
            if clen in (0, 0xFFFFFFFF):
                body_end = len(data)
            elif body_end > len(data):
                claimed, body_end = clen, len(data)
            raw = data[body_start:body_end]
            if fmt_info is not None:
                break
        elif body_end > len(data):
            raise AudioFormatError(f"{path}: chunk {cid!r} at byte {pos} claims {clen} bytes, file is truncated")
        elif cid == b"fmt ":
            if clen < 16:
                raise AudioFormatError(f"{path}: fmt chunk too short ({clen} bytes)")
            fmt, ch, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body_start)
            if fmt == _FMT_EXTENSIBLE:
                if clen < 40:
                    raise AudioFormatError(f"{path}: WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
                (fmt,) = struct.unpack_from("<H", data, body_start + 24)
            fmt_info = (fmt, ch, rate, bits)
        pos = body_end + (clen & 1)
    if fmt_info is None:
        raise AudioFormatError(f"{path}: no fmt chunk")
    if raw is None:
        raise AudioFormatError(f"{path}: no data chunk")
    fmt, ch, rate, bits = fmt_info
    if not 1 <= ch <= 32:
        raise AudioFormatError(f"{path}: implausible channel count {ch}")
    if not 1000 <= rate <= 384000:
        raise AudioFormatError(f"{path}: implausible sample rate {rate}")
    if bits % 8 or bits == 0:
        raise AudioFormatError(f"{path}: unsupported bit depth {bits}")
    samples = _decode_samples(raw, fmt, bits, ch, path)
    if samples.shape[0] == 0:
        raise AudioFormatError(f"{path}: no audio samples")
    block = ch * bits // 8
    if claimed or len(raw) % block:
        want = (claimed or len(raw)) // block
        warnings.warn(f"{path}: file is truncated inside its audio data: read {samples.shape[0]} of {want} samples "
                      f"({samples.shape[0] / rate:.2f} of {want / rate:.2f} s)", TruncatedAudioWarning, stacklevel=2)
    return samples, int(rate)


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float (full scale 1.0) to int16 with rounding and clipping."""
    return np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def load_audio(path: str | os.PathLike, target_rate: int = SAMPLE_RATE) -> LoadedAudio:
    """Load any supported file as mono int16 at ``target_rate``.

    WAV is read natively; FLAC/OGG need the optional ``soundfile`` package.
    Stereo input is downmixed and other rates are resampled; each conversion
    adds a human-readable line to ``notes``.
    """
    p = Path(path)
    if p.suffix.lower() in (".wav", ".wave"):
        samples, rate = read_wav(p)
    else:
        try:
            import soundfile as sf  # optional: evaluation extra
        except ImportError:
            raise AudioFormatError(
                f"{p}: only WAV is supported without the optional 'soundfile' package "
                "(pip install 'edge-dred[eval]')"
            ) from None
        try:
            samples, rate = sf.read(str(p), dtype="float64", always_2d=True)
        except Exception as e:  # soundfile raises its own error types
            raise AudioFormatError(f"{p}: cannot decode ({e})") from None
        if samples.shape[0] == 0:
            raise AudioFormatError(f"{p}: no audio samples")
    notes: list[str] = []
    channels = samples.shape[1]
    if channels > 1:
        notes.append(f"downmixed {channels} channels to mono")
    mono = samples.mean(axis=1)
    if rate != target_rate:
        notes.append(f"resampled {rate} Hz to {target_rate} Hz")
        try:
            mono = resample(mono, rate, target_rate)
        except ValueError as e:  # a rate whose ratio the polyphase resampler does not support
            raise AudioFormatError(f"{p}: cannot resample {rate} Hz to {target_rate} Hz ({e})") from None
    return LoadedAudio(to_int16(mono), target_rate, int(rate), channels, notes)


def write_wav(path: str | os.PathLike, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono int16 PCM as a WAV file, atomically."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"write_wav expects mono 1-D samples, got shape {pcm.shape}")
    if pcm.dtype != np.int16:
        raise ValueError(f"write_wav expects int16 samples, got {pcm.dtype}")
    body = pcm.astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, _FMT_PCM, 1, sample_rate, sample_rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(body))
    write_atomic(path, header + body)
