"""Live artifact monitor: the detector on captured and played audio, off the real-time path.

The audio thread only calls :meth:`ArtifactMonitor.feed` with each period's
samples: a copy into one of a few preallocated 1 s buffers and, once a
second, a ``put_nowait`` of that buffer into a bounded queue (no allocation).  When the analysis thread
falls behind, the queue is full and the second is dropped (counted), so the
audio thread never waits.  The analysis thread runs at the lowest priority
(nice 19) and loads the detector itself, so start-up does not wait for it
either.

When a load governor is attached (:class:`edge_dred.degrade.LoadGovernor`),
a second is only queued while :meth:`~edge_dred.degrade.LoadGovernor.allow_monitor`
says the board has headroom: the monitor is the first work dropped.
"""
from __future__ import annotations

import os
import queue
import threading
from collections import deque
from typing import Callable

import numpy as np

from ..constants import SAMPLE_RATE
from .detector import SegmentClassifier, Verdict
from .frontend import SEGMENT

__all__ = ["ArtifactMonitor", "LiveMonitor", "QUEUE_SECONDS", "MAX_FLAGGED"]

#: Seconds waiting for analysis at most; more are dropped.
QUEUE_SECONDS = 2
#: Flagged seconds kept for the report (the counts keep going).
MAX_FLAGGED = 3600
_NICE = 19


def _lower_priority() -> None:
    """Lowest CPU priority for the calling thread (Linux: per-thread nice)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
    except (AttributeError, OSError):
        pass  # not Linux, or not permitted: still a separate thread behind a bounded queue


class ArtifactMonitor:
    """One audio stream's monitor (``mic`` or ``playout``).

    Parameters
    ----------
    name : str
        Shown in the status line and the report.
    detector : callable
        Returns a :class:`~edge_dred.artifacts.detector.SegmentClassifier`;
        called once, in the analysis thread.
    governor : optional
        Object with ``allow_monitor() -> bool`` (the receiver's load governor).
    """

    def __init__(self, name: str, detector: Callable[[], SegmentClassifier], governor=None) -> None:
        self.name = name
        self._make = detector
        self.governor = governor
        # Queued seconds plus the one being analysed never reach the buffer being filled.
        self._bufs = [np.zeros(SEGMENT, np.int16) for _ in range(QUEUE_SECONDS + 2)]
        self._cur = 0
        self._fill = 0
        self._seconds = 0  # whole seconds fed so far
        self._q: queue.Queue = queue.Queue(maxsize=QUEUE_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"artifacts-{name}", daemon=True)
        self.analysed = 0
        self.dropped = 0
        self.skipped = 0
        self.counts: dict[str, int] = {}
        self.flagged: deque[dict] = deque(maxlen=MAX_FLAGGED)
        self.last: Verdict | None = None
        self.error: str | None = None
        self._thread.start()

    # -- audio thread ----------------------------------------------------------
    def feed(self, pcm: np.ndarray) -> None:
        """Add one period of int16 samples (audio thread: copies only, never waits)."""
        pcm = np.asarray(pcm).reshape(-1)
        pos = 0
        while pos < len(pcm):
            k = min(SEGMENT - self._fill, len(pcm) - pos)
            self._bufs[self._cur][self._fill:self._fill + k] = pcm[pos:pos + k]
            self._fill += k
            pos += k
            if self._fill == SEGMENT:
                self._fill = 0
                start = float(self._seconds)
                self._seconds += 1
                if self.error is not None:
                    continue
                if self.governor is not None and not self.governor.allow_monitor():
                    self.skipped += 1
                    continue
                try:
                    self._q.put_nowait((start, self._bufs[self._cur]))
                    self._cur = (self._cur + 1) % len(self._bufs)
                except queue.Full:
                    self.dropped += 1

    # -- analysis thread -------------------------------------------------------
    def _run(self) -> None:
        _lower_priority()
        try:
            det = self._make()
        except Exception as e:  # a missing model or runtime must not take the call down
            self.error = f"{type(e).__name__}: {e}"
            return
        while not self._stop.is_set():
            try:
                start, seg = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            v = det.classify(seg, start)
            self.last = v
            self.analysed += 1
            if v.label != "none":
                self.counts[v.label] = self.counts.get(v.label, 0) + 1
                self.flagged.append(v.as_dict())

    def close(self, drain_s: float = 2.0) -> None:
        """Analyse what is queued (up to ``drain_s``), then stop the thread."""
        waited = 0.0
        while not self._q.empty() and self.error is None and waited < drain_s and self._thread.is_alive():
            self._stop.wait(0.05)
            waited += 0.05
        self._stop.set()
        self._thread.join(timeout=drain_s)

    # -- any thread ------------------------------------------------------------
    def status(self) -> str:
        """``"mic: hum -22 dB (50 Hz)"``, ``"playout: clean"``, ``"mic: -"`` before the first second."""
        if self.error is not None:
            return f"{self.name}: off"
        v = self.last
        return f"{self.name}: {v.text() if v is not None else '-'}"

    def report(self) -> dict:
        return {"analysed_s": self.analysed, "dropped_s": self.dropped, "skipped_by_governor_s": self.skipped,
                "flagged_counts": dict(self.counts), "flagged": list(self.flagged), "error": self.error,
                "segment_s": SEGMENT / SAMPLE_RATE}


class LiveMonitor:
    """The monitors of one session: ``mic`` (sender), ``playout`` (receiver), or both (``live``).

    Parameters
    ----------
    mic, playout : bool
        Which streams to watch.
    detector : callable, optional
        Factory of the classifier (default: the shipped
        :class:`~edge_dred.artifacts.detector.ArtifactDetector`).
    governor : optional
        The receiver's load governor.
    """

    def __init__(self, mic: bool, playout: bool, detector: Callable[[], SegmentClassifier] | None = None,
                 governor=None) -> None:
        if detector is None:
            from .detector import ArtifactDetector

            detector = ArtifactDetector
        self.mic = ArtifactMonitor("mic", detector, governor) if mic else None
        self.playout = ArtifactMonitor("playout", detector, governor) if playout else None

    def attach_governor(self, governor) -> None:
        """Let ``governor`` (``allow_monitor()``) decide when the monitors may run."""
        for m in self._all():
            m.governor = governor

    def _all(self) -> list[ArtifactMonitor]:
        return [m for m in (self.mic, self.playout) if m is not None]

    def status(self) -> str:
        return " | ".join(m.status() for m in self._all())

    def report(self) -> dict:
        return {m.name: m.report() for m in self._all()}

    def close(self) -> None:
        for m in self._all():
            m.close()
