"""The receiver's plug-in protocol: what a recovery or concealment plug-in sees and returns.

Kept apart from :mod:`edge_dred.receiver` so that plug-ins (DRED recovery, the
neural PLC) depend on the protocol, not on the receiver that assembles them.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, Sequence

import numpy as np

__all__ = ["Decision", "SlotContext", "Recoverer", "Concealer"]


class Decision(str, Enum):
    REGULAR = "regular"
    RED = "red"
    LBRR = "lbrr"
    DRED = "dred"
    NEURAL_PLC = "neural_plc"
    OPUS_PLC = "opus_plc"
    ZEROS = "zeros"


@dataclass
class SlotContext:
    """What a plug-in may look at when asked to fill a lost slot.

    Attributes
    ----------
    slot : int
        Index of the lost slot (packet sequence number from the start).
    future : Sequence[bytes | None]
        Packets of the slots after ``slot`` that are known now (``None`` = lost).
    history : np.ndarray
        The receiver's most recent output samples (int16), newest last.
    loss_run : int
        How many consecutive slots (including this one) have been lost.
    opus_plc : np.ndarray or None
        libopus's own concealment of this slot (already computed; the decoder
        state has advanced), usable as a fallback or for blending.
    dred_cap_ms : int or None
        Longest DRED reconstruction (ms, backward from a packet's newest
        frame) a recoverer may decode for this slot; None = no cap.
    """

    slot: int
    future: Sequence[bytes | None]
    history: np.ndarray
    loss_run: int
    opus_plc: np.ndarray | None = None
    dred_cap_ms: int | None = None


class Recoverer(Protocol):
    """Reconstructs a lost slot from redundancy (e.g. DRED); None if it can't.

    A recoverer or concealer may also define ``prepare(ctx) -> bool``: the
    receiver calls it after deciding a slot when the next one (``ctx.slot``,
    ``ctx.opus_plc`` None) is lost as things stand, so that work the hole's
    first slot would do from the history alone runs now; it returns whether
    the plug-in will take the slot (later plug-ins are then not asked).  It
    must not change what the plug-in outputs.
    """

    decision: Decision

    def recover(self, ctx: SlotContext) -> np.ndarray | None: ...


class Concealer(Protocol):
    """Invents audio for a lost slot from the past alone (e.g. neural PLC)."""

    decision: Decision

    def conceal(self, ctx: SlotContext) -> np.ndarray: ...
