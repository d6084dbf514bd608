"""ALSA backend through pyalsaaudio (``pip install edge-dred[alsa]``), imported lazily.

Device names, period and ring size come from the board config
(``[audio]`` in ``edge_dred/board_configs/*.toml``) unless overridden.  The real-time
rules of :mod:`edge_dred.audio.device` apply.

Recovery.  pyalsaaudio re-prepares the PCM itself after an x-run and reports
it as a length of ``-EPIPE``; we count it and fill the gap with concealment:

* capture over-run: the lost period is replaced by a faded copy of the last
  one, so the sender's timeline stays continuous;
* playback under-run: a faded copy of the last period is written first (it
  refills the ring so the next write does not under-run again), then the
  period itself.

Other ALSA errors (suspend, a device that went away for a moment) are
counted too: the PCM is dropped so the next call prepares it again; only
``max_consecutive_errors`` failures in a row raise :class:`AudioDeviceError`.

Testing without a sound card: ALSA's ``file`` plugin over the ``null``
plugin, in a config file named by ``ALSA_CONFIG_PATH``, turns a raw file into
the microphone and captures the speaker to a file.  Those plugins do not block,
so such devices are opened with ``pace=True``.
"""
from __future__ import annotations

import errno
from types import ModuleType

import numpy as np

from .device import AudioDevice, AudioDeviceError, conceal_period

__all__ = ["AlsaDevice", "import_alsaaudio"]


def import_alsaaudio() -> ModuleType:
    """Import pyalsaaudio or raise a clear error."""
    try:
        import alsaaudio
    except ImportError:
        raise AudioDeviceError(
            "pyalsaaudio is not installed: pip install 'edge-dred[alsa]' (needs libasound2-dev), "
            "or use --device file:PATH.wav / --device mock") from None
    return alsaaudio


class AlsaDevice(AudioDevice):
    """One ALSA PCM, capture or playback, 16 kHz mono S16_LE.

    Parameters
    ----------
    name : str
        ALSA PCM name (``default``, ``plughw:1,0``, a name from an asound.conf).
    direction : str
        ``"capture"`` or ``"playback"``.
    period_ms : int
        10 or 20.
    buffer_periods : int
        Periods in the ALSA ring buffer.
    prefill_periods : int
        Playback: silent periods written at open so the first writes have slack.
    pace : bool
        Hold real time with the system clock (ALSA file/null plugins do not block).
    alsaaudio : module, optional
        Stand-in for the pyalsaaudio module (tests inject faults with it).
    """

    def __init__(self, name: str, direction: str = "capture", period_ms: int = 20, buffer_periods: int = 4,
                 prefill_periods: int = 1, pace: bool = False, max_consecutive_errors: int = 50,
                 alsaaudio: ModuleType | None = None) -> None:
        super().__init__(period_ms, pace=pace)
        if direction not in ("capture", "playback"):
            raise AudioDeviceError(f"direction must be capture or playback, got {direction!r}")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise AudioDeviceError(f"bad ALSA device name {name!r}")
        if not 2 <= buffer_periods <= 16:
            raise AudioDeviceError(f"buffer_periods must be 2..16, got {buffer_periods}")
        self.direction = direction
        self.name = name
        self.buffer_periods = buffer_periods
        self.prefill_periods = prefill_periods if direction == "playback" else 0
        self.max_consecutive_errors = max_consecutive_errors
        self.errors = 0
        self._consecutive = 0
        self._mod = alsaaudio
        self._pcm = None
        self._fill = np.zeros(self.period, np.int16)
        self._primed = False
        self.info: dict = {}

    def open(self) -> "AlsaDevice":
        mod = self._mod or import_alsaaudio()
        self._mod = mod
        kind = mod.PCM_CAPTURE if self.direction == "capture" else mod.PCM_PLAYBACK
        try:
            pcm = mod.PCM(type=kind, mode=mod.PCM_NORMAL, device=self.name, rate=self.sample_rate, channels=1,
                          format=mod.PCM_FORMAT_S16_LE, periodsize=self.period, periods=self.buffer_periods)
        except mod.ALSAAudioError as e:
            raise AudioDeviceError(f"cannot open ALSA {self.direction} device {self.name!r}: {e} (no sound card? "
                                   "--device mock runs without one; --device file:PATH.wav uses a WAV)") from None
        try:
            info = pcm.info()
        except (AttributeError, mod.ALSAAudioError):
            info = {}
        self.info = dict(info)
        rate = info.get("rate", self.sample_rate)
        if rate != self.sample_rate or info.get("channels", 1) != 1 or info.get("format_name", "S16_LE") != "S16_LE":
            pcm.close()
            raise AudioDeviceError(
                f"ALSA device {self.name!r} runs at {rate} Hz, {info.get('channels')} channel(s), "
                f"{info.get('format_name')}; need 16000 Hz mono S16_LE: use a 'plughw:' or 'default' device so "
                "alsa-lib converts")
        granted = info.get("period_size", self.period)
        if granted != self.period:
            pcm.close()
            raise AudioDeviceError(f"ALSA device {self.name!r} granted a period of {granted} frames, "
                                   f"asked for {self.period}")
        self._pcm = pcm
        self._primed = False
        return self

    def close(self) -> None:
        if self._pcm is not None:
            try:
                self._pcm.close()
            except self._mod.ALSAAudioError:
                pass
            self._pcm = None

    def _error(self, what: str, e: Exception) -> None:
        self.errors += 1
        self._consecutive += 1
        if self._consecutive >= self.max_consecutive_errors:
            raise AudioDeviceError(f"ALSA {self.direction} on {self.name!r} keeps failing ({what}): {e}")
        try:
            self._pcm.drop()  # the next read/write prepares the PCM again
        except (AttributeError, self._mod.ALSAAudioError):
            pass

    def _capture_period(self, out: np.ndarray) -> None:
        if self._pcm is None:
            raise AudioDeviceError("device not open")
        got = 0
        while got < self.period:
            try:
                n, data = self._pcm.read()
            except self._mod.ALSAAudioError as e:
                self._error("read", e)
                self.overruns += 1
                conceal_period(self._last, out)
                return
            if n < 0:  # -EPIPE: over-run; pyalsaaudio has already re-prepared the PCM
                self.overruns += 1
                conceal_period(self._last, out)
                return
            k = min(len(data) // 2, self.period - got)
            if k:
                out[got:got + k] = np.frombuffer(data, "<i2", count=k)
                got += k
            elif n == 0:
                continue  # EAGAIN cannot happen in blocking mode; retry
        self._consecutive = 0

    def _write(self, pcm: np.ndarray) -> int:
        try:
            return int(self._pcm.write(pcm.tobytes()))
        except self._mod.ALSAAudioError as e:
            self._error("write", e)
            return -errno.EIO

    def _play_period(self, pcm: np.ndarray) -> None:
        if self._pcm is None:
            raise AudioDeviceError("device not open")
        if not self._primed:  # prefill at the first write, when the stream really starts
            self._primed = True
            for _ in range(self.prefill_periods):
                self._write(self._fill)
        r = self._write(pcm)
        if r < 0:  # under-run (-EPIPE, PCM re-prepared) or error: refill with concealment, then retry once
            self.underruns += 1
            conceal_period(self._last, self._fill)
            self._write(self._fill)
            r = self._write(pcm)
        if 0 <= r < self.period:  # short write (a signal): finish the period
            r2 = self._write(pcm[r:])
            r = r if r2 < 0 else r + r2
        if r >= 0:
            self._consecutive = 0

    def describe(self) -> str:
        return f"ALSA {self.direction} {self.name!r} ({self.period_ms} ms x {self.buffer_periods})"
