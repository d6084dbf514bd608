"""netem-like impairment applied by our own sender (no root, no tc needed).

Per packet, in this order: loss (a seeded :mod:`edge_dred.loss` model, so a
run is reproducible), duplication (the copy follows immediately), reordering
(the packet is held back ``reorder_gap`` packet times and released after the
packets sent meanwhile).  Every packet is accounted for in :attr:`stats`.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..loss import LossModel, NoLoss

__all__ = ["Impairment"]


class _StreamingMask:
    """Draw a loss model's mask lazily: models guarantee that prefixes agree,
    so the mask is regrown (doubling) when the stream outlives it."""

    def __init__(self, model: LossModel, initial: int = 3000) -> None:
        self.model = model
        self._mask = np.asarray(model.mask(initial), bool)

    def __getitem__(self, i: int) -> bool:
        if i >= len(self._mask):
            n = len(self._mask)
            while n <= i:
                n *= 2
            self._mask = np.asarray(self.model.mask(n), bool)
        return bool(self._mask[i])


class Impairment:
    """Loss, duplication and reordering of a packet stream.

    Parameters
    ----------
    loss : LossModel, optional
        Which packets are lost (by packet index); no loss by default.
    reorder_pct : float
        Percentage of (surviving) packets held back.
    reorder_gap : int
        Packet times a held packet waits (1 = swapped with its successor).
    duplicate_pct : float
        Percentage of packets sent twice.
    seed : int
        Seed for the reorder/duplicate draws.
    expected_packets : int, optional
        Pre-draw the loss mask for this many packets (keeps the hot path free
        of re-draws in runs of known length).
    """

    def __init__(self, loss: LossModel | None = None, reorder_pct: float = 0.0, reorder_gap: int = 1,
                 duplicate_pct: float = 0.0, seed: int = 0, expected_packets: int | None = None) -> None:
        for name, v in (("reorder_pct", reorder_pct), ("duplicate_pct", duplicate_pct)):
            if not 0.0 <= float(v) <= 50.0:
                raise ValueError(f"{name} must be in [0, 50], got {v}")
        if not isinstance(reorder_gap, int) or not 1 <= reorder_gap <= 50:
            raise ValueError(f"reorder_gap must be an int in 1..50, got {reorder_gap!r}")
        self.loss = loss or NoLoss()
        self._mask = _StreamingMask(self.loss, max(16, expected_packets or 3000))
        self.reorder_p = float(reorder_pct) / 100.0
        self.dup_p = float(duplicate_pct) / 100.0
        self.gap = reorder_gap
        self._rng = np.random.default_rng(seed)
        self._held: deque[tuple[int, bytes]] = deque()  # (release tick, datagram)
        self._tick = 0
        self.stats = {"packets": 0, "lost": 0, "duplicated": 0, "reordered": 0, "released": 0}
        self.lost_indices: list[int] = []

    def describe(self) -> str:
        """One line for reports."""
        parts = [self.loss.describe()]
        if self.reorder_p:
            parts.append(f"reorder {self.reorder_p * 100:g}% by {self.gap}")
        if self.dup_p:
            parts.append(f"duplicate {self.dup_p * 100:g}%")
        return ", ".join(parts)

    def process(self, datagram: bytes | None) -> list[bytes]:
        """Advance one packet time; offer this time's packet (or None).

        Returns the datagrams to put on the wire now, in order.
        """
        out: list[bytes] = []
        tick = self._tick
        self._tick += 1
        if datagram is not None:
            i = self.stats["packets"]
            self.stats["packets"] += 1
            if self._mask[i]:
                self.stats["lost"] += 1
                if len(self.lost_indices) < 1_000_000:
                    self.lost_indices.append(i)
            else:
                r = self._rng.random(2)
                copies = 2 if r[0] < self.dup_p else 1
                self.stats["duplicated"] += copies - 1
                if r[1] < self.reorder_p:
                    self.stats["reordered"] += 1
                    for _ in range(copies):
                        self._held.append((tick + self.gap, datagram))
                else:
                    out.extend([datagram] * copies)
        while self._held and self._held[0][0] <= tick:
            out.append(self._held.popleft()[1])
        self.stats["released"] += len(out)
        return out

    def flush(self) -> list[bytes]:
        """Release everything still held (end of stream)."""
        out = [d for _, d in self._held]
        self._held.clear()
        self.stats["released"] += len(out)
        return out
