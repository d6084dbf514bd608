"""The audio hardware as a two-function contract: ``capture`` and ``play``.

Backends: :class:`MockDevice` (a synthetic microphone and a recording speaker,
what CI runs), :class:`FileDevice` (WAV in, WAV out) and
:class:`edge_dred.audio.alsa.AlsaDevice` (pyalsaaudio, imported lazily).
:func:`open_capture` / :func:`open_playback` pick one from a device spec.

Real-time contract
------------------
``capture`` and ``play`` are called from the audio thread, once per period
(10 or 20 ms), and so is everything between them (encode, jitter-buffer pop,
recovery).  Code on that thread follows these rules:

* The only blocking calls are the device read/write themselves (and the
  pacing sleep of devices that do not block on their own).
* No file I/O, no logging or printing, no waiting on locks held by other
  threads for longer than a dictionary update: recordings go through
  :class:`edge_dred.transport.ogg.OggRecorder` (enqueue only), status lines
  are printed by another thread reading counters, sockets are non-blocking.
* No buffer allocation that grows with time: period buffers are allocated
  once at open and reused.  (CPython still allocates small objects and the
  codec returns a fresh packet ``bytes``; both are bounded per period.)
* Errors are not fatal: an over-run (capture) or under-run (playback) is
  recovered by re-preparing the device and filling the gap with concealment
  (a faded copy of the last period), and counted in :attr:`overruns` /
  :attr:`underruns`.

CPU load is measured by :class:`LoadMeter` (busy time / period time) and
exposed by the sessions in :mod:`edge_dred.live`.

Sample format everywhere: 16 kHz mono int16.  Devices that cannot run at
16 kHz are opened through ALSA's ``plug`` layer (``default``, ``plughw:N``),
which converts the rate in alsa-lib; a raw ``hw:`` device granting another
rate is refused with a clear error (no streaming resampler here yet).
"""
from __future__ import annotations

import os
import time
import wave
from abc import ABC, abstractmethod

import numpy as np

from ..constants import SAMPLE_RATE

__all__ = [
    "AudioDeviceError",
    "AudioDevice",
    "MockDevice",
    "FileDevice",
    "Pacer",
    "LoadMeter",
    "open_capture",
    "open_playback",
    "conceal_period",
]


class AudioDeviceError(ValueError):
    """A device spec is invalid or a device cannot be opened/used."""


def conceal_period(last: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with ``last`` faded to silence (gap concealment, in place)."""
    n = len(out)
    ramp = np.linspace(1.0, 0.0, n, endpoint=False)
    np.multiply(last[:n], ramp, out=out, casting="unsafe")


class Pacer:
    """Hold real time for devices that do not block (mock, files, ALSA null/file plugins).

    ``wait()`` sleeps until the next period boundary of a schedule started at
    the first call (the first boundary is one period after it, like a device
    that takes a period to capture or play one); if we fall more than
    ``max_lag`` periods behind, the schedule restarts rather than bursting to
    catch up.
    """

    def __init__(self, period_s: float, max_lag: int = 5) -> None:
        self.period_s = period_s
        self.max_lag = max_lag
        self._next: float | None = None
        self.late = 0

    def wait(self) -> None:
        now = time.monotonic()
        if self._next is None:
            self._next = now + self.period_s
        delay = self._next - now
        if delay > 0:
            time.sleep(delay)
        elif -delay > self.max_lag * self.period_s:
            self.late += 1
            self._next = now
        self._next += self.period_s


class LoadMeter:
    """CPU load of the audio thread: busy time per period / period time.

    Call :meth:`start` when the blocking device call returns and :meth:`stop`
    before the next one.  :attr:`load` is an exponential average,
    :attr:`peak` the maximum after the first ``warmup`` periods, :attr:`mean`
    the overall average.
    """

    def __init__(self, period_s: float, alpha: float = 0.05, warmup: int = 3) -> None:
        self.period_s = period_s
        self.warmup = warmup  # first periods (lazy imports, codec set-up) stay out of the peak
        self.alpha = alpha
        self.load = 0.0
        self.peak = 0.0
        self._t0 = 0.0
        self._sum = 0.0
        self.periods = 0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        """End the period's busy time; return it in seconds (the load governor's input)."""
        busy = time.perf_counter() - self._t0
        x = busy / self.period_s
        self.load += self.alpha * (x - self.load)
        if self.periods >= self.warmup:
            self.peak = max(self.peak, x)
        self._sum += x
        self.periods += 1
        return busy

    @property
    def mean(self) -> float:
        return self._sum / self.periods if self.periods else 0.0


class AudioDevice(ABC):
    """One direction of an audio device: 16 kHz mono int16, fixed period.

    Attributes
    ----------
    period : int
        Samples per period (160 = 10 ms, 320 = 20 ms).
    overruns, underruns : int
        Recovered capture over-runs / playback under-runs.
    periods : int
        Periods captured or played.
    """

    direction: str = "capture"

    def __init__(self, period_ms: int = 20, sample_rate: int = SAMPLE_RATE, pace: bool = False) -> None:
        if period_ms not in (10, 20):
            raise AudioDeviceError(f"period must be 10 or 20 ms, got {period_ms}")
        if sample_rate != SAMPLE_RATE:
            raise AudioDeviceError(f"only {SAMPLE_RATE} Hz is supported, got {sample_rate}")
        self.sample_rate = sample_rate
        self.period_ms = period_ms
        self.period = sample_rate * period_ms // 1000
        self.overruns = 0
        self.underruns = 0
        self.periods = 0
        self._pacer = Pacer(period_ms / 1000.0) if pace else None
        self._last = np.zeros(self.period, np.int16)  # for concealment fills

    @property
    def xruns(self) -> int:
        """Over-runs plus under-runs."""
        return self.overruns + self.underruns

    def open(self) -> "AudioDevice":
        return self

    def close(self) -> None:
        pass

    def __enter__(self) -> "AudioDevice":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def capture(self, out: np.ndarray) -> None:
        """Fill ``out`` (int16, a whole number of periods) with microphone samples."""
        if self.direction != "capture":
            raise AudioDeviceError(f"{type(self).__name__} was opened for {self.direction}")
        self._check(out)
        for i in range(0, len(out), self.period):
            if self._pacer is not None:
                self._pacer.wait()
            seg = out[i:i + self.period]
            self._capture_period(seg)
            self._last[:] = seg
            self.periods += 1

    def play(self, pcm: np.ndarray) -> None:
        """Play ``pcm`` (int16, a whole number of periods)."""
        if self.direction != "playback":
            raise AudioDeviceError(f"{type(self).__name__} was opened for {self.direction}")
        self._check(pcm)
        for i in range(0, len(pcm), self.period):
            if self._pacer is not None:
                self._pacer.wait()
            seg = pcm[i:i + self.period]
            self._play_period(seg)
            self._last[:] = seg
            self.periods += 1

    def _check(self, buf: np.ndarray) -> None:
        if not isinstance(buf, np.ndarray) or buf.dtype != np.int16 or buf.ndim != 1:
            raise AudioDeviceError("audio buffers are 1-D int16 numpy arrays")
        if len(buf) == 0 or len(buf) % self.period:
            raise AudioDeviceError(f"buffer of {len(buf)} samples is not a whole number of {self.period}-sample periods")

    @abstractmethod
    def _capture_period(self, out: np.ndarray) -> None: ...

    @abstractmethod
    def _play_period(self, pcm: np.ndarray) -> None: ...

    def describe(self) -> str:
        return f"{type(self).__name__} ({self.direction}, {self.period_ms} ms periods)"


def _default_source(seconds: float = 4.0) -> np.ndarray:
    """A voice-like test signal: harmonic tone, gliding pitch, syllable envelope."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 150.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    ph = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * ph) * 0.7 ** k for k in range(1, 20))
    env = 0.3 + 0.7 * np.sin(2 * np.pi * 2.5 * t) ** 2
    return np.round(x / np.max(np.abs(x)) * env * 8000).astype(np.int16)


class MockDevice(AudioDevice):
    """In-memory device for tests and CI.

    Parameters
    ----------
    direction : str
        ``"capture"`` or ``"playback"``.
    source : np.ndarray, optional
        int16 samples the microphone returns (a voice-like tone by default),
        looped when ``loop`` else followed by silence.
    record_limit_s : float
        Seconds of played audio kept in :attr:`recorded` (a preallocated buffer).
    faults : dict, optional
        ``{period_index: "xrun"}``: simulate an over-run (capture) or under-run
        (playback) at those periods, recovered like a real device would be.
    """

    def __init__(self, direction: str = "capture", source: np.ndarray | None = None, loop: bool = True,
                 period_ms: int = 20, pace: bool = False, record_limit_s: float = 60.0,
                 faults: dict[int, str] | None = None) -> None:
        super().__init__(period_ms, pace=pace)
        if direction not in ("capture", "playback"):
            raise AudioDeviceError(f"direction must be capture or playback, got {direction!r}")
        self.direction = direction
        src = _default_source() if source is None else np.asarray(source)
        if src.dtype != np.int16 or src.ndim != 1 or len(src) == 0:
            raise AudioDeviceError("source must be a non-empty 1-D int16 array")
        self.source = src
        self.loop = loop
        self._pos = 0
        self.faults = dict(faults or {})
        self._rec = np.zeros(int(record_limit_s * SAMPLE_RATE), np.int16)
        self._rec_n = 0

    @property
    def recorded(self) -> np.ndarray:
        """What was played so far (up to ``record_limit_s``)."""
        return self._rec[: self._rec_n]

    def _capture_period(self, out: np.ndarray) -> None:
        if self.faults.get(self.periods) == "xrun":
            self.overruns += 1
            conceal_period(self._last, out)
            self._pos += self.period  # the samples of the over-run are gone
            return
        n = len(out)
        src, pos = self.source, self._pos
        if self.loop:
            idx = (pos + np.arange(n)) % len(src)
            out[:] = src[idx]
        else:
            k = max(0, min(n, len(src) - pos))
            out[:k] = src[pos:pos + k]
            out[k:] = 0
        self._pos += n

    def _play_period(self, pcm: np.ndarray) -> None:
        if self.faults.get(self.periods) == "xrun":
            self.underruns += 1
            fill = np.empty(self.period, np.int16)
            conceal_period(self._last, fill)
            self._store(fill)
        self._store(pcm)

    def _store(self, pcm: np.ndarray) -> None:
        k = min(len(pcm), len(self._rec) - self._rec_n)
        self._rec[self._rec_n:self._rec_n + k] = pcm[:k]
        self._rec_n += k


class FileDevice(AudioDevice):
    """WAV file as microphone (capture) or speaker (playback).

    Capture reads any WAV :func:`edge_dred.audio.wavio.load_audio` accepts
    (converted to 16 kHz mono once, at open) and returns silence after the
    end, or loops.  Playback streams a 16-bit mono 16 kHz WAV.  File I/O is
    buffered; this backend is for tests and offline runs, not the hot path
    of a real-time deployment.
    """

    def __init__(self, path: str | os.PathLike, direction: str = "capture", period_ms: int = 20,
                 pace: bool = False, loop: bool = False) -> None:
        super().__init__(period_ms, pace=pace)
        if direction not in ("capture", "playback"):
            raise AudioDeviceError(f"direction must be capture or playback, got {direction!r}")
        self.direction = direction
        self.path = os.fspath(path)
        self.loop = loop
        self._src: np.ndarray | None = None
        self._pos = 0
        self._wav: wave.Wave_write | None = None
        self.notes: list[str] = []

    def open(self) -> "FileDevice":
        if self.direction == "capture":
            from .wavio import load_audio

            loaded = load_audio(self.path)
            self._src = loaded.pcm
            self.notes = list(loaded.notes)
            if len(self._src) == 0:
                raise AudioDeviceError(f"{self.path}: no audio")
        else:
            d = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(d):
                raise AudioDeviceError(f"output directory {d} does not exist")
            w = wave.open(self.path, "wb")
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            self._wav = w
        return self

    @property
    def source_samples(self) -> int:
        return 0 if self._src is None else len(self._src)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None

    def _capture_period(self, out: np.ndarray) -> None:
        if self._src is None:
            raise AudioDeviceError("device not open")
        src, n = self._src, len(out)
        if self.loop:
            out[:] = src[(self._pos + np.arange(n)) % len(src)]
        else:
            k = max(0, min(n, len(src) - self._pos))
            out[:k] = src[self._pos:self._pos + k]
            out[k:] = 0
        self._pos += n

    def _play_period(self, pcm: np.ndarray) -> None:
        if self._wav is None:
            raise AudioDeviceError("device not open")
        self._wav.writeframes(pcm.astype("<i2").tobytes())


def _parse_spec(spec: str | None) -> tuple[str, str]:
    if spec is None or spec == "":
        return "alsa", ""
    if not isinstance(spec, str) or len(spec) > 1024:
        raise AudioDeviceError("device spec must be a string of at most 1024 characters")
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("alsa", "file", "mock"):
        return kind, rest
    if spec == "mock":
        return "mock", ""
    return "alsa", spec  # a plain ALSA PCM name, which may itself contain ':' (plughw:1,0)


def _open(spec: str | None, direction: str, default_alsa: str, period_ms: int, buffer_periods: int,
          pace: bool | None, source: np.ndarray | None) -> AudioDevice:
    kind, arg = _parse_spec(spec)
    if kind == "mock":
        return MockDevice(direction, source=source, period_ms=period_ms, pace=bool(pace)).open()
    if kind == "file":
        if not arg:
            raise AudioDeviceError("file: needs a path (file:PATH.wav)")
        return FileDevice(arg, direction, period_ms=period_ms, pace=bool(pace)).open()
    from .alsa import AlsaDevice

    return AlsaDevice(arg or default_alsa, direction, period_ms=period_ms, buffer_periods=buffer_periods,
                      pace=bool(pace)).open()


def open_capture(spec: str | None = None, *, default_alsa: str = "default", period_ms: int = 20,
                 buffer_periods: int = 4, pace: bool | None = None,
                 source: np.ndarray | None = None) -> AudioDevice:
    """Open a microphone.

    Parameters
    ----------
    spec : str, optional
        ``"mock"``, ``"file:PATH.wav"``, ``"alsa:NAME"`` or a plain ALSA PCM
        name (``plughw:1,0``); None uses ``default_alsa`` (from the board config).
    period_ms, buffer_periods : int
        Period (10 or 20 ms) and ALSA ring size in periods.
    pace : bool, optional
        Hold real time with the system clock (for devices that do not block).
    source : np.ndarray, optional
        Samples of the mock microphone.
    """
    return _open(spec, "capture", default_alsa, period_ms, buffer_periods, pace, source)


def open_playback(spec: str | None = None, *, default_alsa: str = "default", period_ms: int = 20,
                  buffer_periods: int = 4, pace: bool | None = None) -> AudioDevice:
    """Open a speaker; see :func:`open_capture` for the spec."""
    return _open(spec, "playback", default_alsa, period_ms, buffer_periods, pace, None)
