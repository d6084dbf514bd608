"""Which sender a receiver listens to: source locking.

A UDP port accepts datagrams from anyone.  The receiver locks onto one
source -- the sender's address and RTP SSRC -- and drops (and counts)
everything else, so a stranger can neither replace the audio nor reset the
jitter buffer.  The source is either named in advance (``--peer``, the SDP) or
is the first sender of a valid packet.

A legitimate sender may restart (new process: new source port and SSRC).  The
lock moves to a new source only after a sustained run of valid packets from
it while the locked source is silent: :data:`SWITCH_RUN` consecutive packets
and :data:`SWITCH_SILENCE_S` without a packet from the locked source.  A
stranger sending alongside a live stream never gets in.

Policy constants live here; every counter is a plain int and no state grows
with the number of sources seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["SWITCH_RUN", "SWITCH_SILENCE_S", "SourceVerdict", "SourceLock", "Address"]

#: Consecutive valid packets a new source must send before the lock moves to it.
SWITCH_RUN = 4
#: How long the locked source must have been silent before another source may take over.
SWITCH_SILENCE_S = 1.0

Address = tuple  # (host, port) as returned by socket.recvfrom; compared as a whole


class SourceVerdict(str, Enum):
    """What :meth:`SourceLock.check` decided for one packet."""

    LOCKED = "locked"      # from the locked source: play it
    FIRST = "first"        # first valid packet: the lock is now on its source
    SWITCHED = "switched"  # a new source completed its run while the old one was silent: now locked
    FOREIGN = "foreign"    # another source: drop


@dataclass
class _Candidate:
    addr: Address | None
    ssrc: int
    run: int
    last_s: float


class SourceLock:
    """Lock a receiver onto one (address, SSRC) source.

    Parameters
    ----------
    peer : (host, port), optional
        Only this sender address is ever accepted (port 0: any port of that
        host).  Without it the first sender's address is locked.
    ssrc : int, optional
        Only this SSRC is ever accepted (from the SDP).  Without it the first
        packet's SSRC is locked.

    Notes
    -----
    ``addr`` is None for in-process streams (no socket): only the SSRC counts.
    Not thread-safe; called from the network thread only.
    """

    def __init__(self, peer: Address | None = None, ssrc: int | None = None) -> None:
        if ssrc is not None and not 0 <= int(ssrc) <= 0xFFFFFFFF:
            raise ValueError(f"ssrc must be a 32-bit unsigned int, got {ssrc!r}")
        self.peer = None if peer is None else (str(peer[0]), int(peer[1]))
        self.pinned_ssrc = None if ssrc is None else int(ssrc)
        self.addr: Address | None = None
        self.ssrc: int | None = None
        self.last_s: float | None = None
        self._cand: _Candidate | None = None
        self.stats = {"foreign": 0, "foreign_address": 0, "switches": 0}

    @property
    def locked(self) -> bool:
        return self.ssrc is not None

    def _peer_ok(self, addr: Address | None) -> bool:
        if self.peer is None or addr is None:
            return True
        host, port = self.peer
        return addr[0] == host and (port == 0 or addr[1] == port)

    def address_ok(self, addr: Address | None, now_s: float | None = None) -> bool:
        """Cheap pre-check before parsing (a flood must cost little): False for a datagram that
        cannot be accepted -- not from the pinned peer, or from another address while the locked
        source is live (it could not take over yet anyway)."""
        if not self._peer_ok(addr):
            return False
        if now_s is None or addr is None or self.addr is None or addr == self.addr or self.last_s is None:
            return True
        return now_s - self.last_s >= SWITCH_SILENCE_S

    def check(self, addr: Address | None, ssrc: int, now_s: float) -> SourceVerdict:
        """Classify one *valid* packet (parsed, right payload type) by its source."""
        if not self._peer_ok(addr) or (self.pinned_ssrc is not None and ssrc != self.pinned_ssrc):
            return self._foreign(addr)
        if self.ssrc is None:
            self.addr, self.ssrc, self.last_s = addr, ssrc, now_s
            return SourceVerdict.FIRST
        if ssrc == self.ssrc and (addr is None or addr == self.addr):
            self.last_s = now_s
            self._cand = None  # a run must be consecutive: the locked source interrupted it
            return SourceVerdict.LOCKED
        c = self._cand
        if c is not None and c.addr == addr and c.ssrc == ssrc:
            c.run += 1
            c.last_s = now_s
        else:
            c = self._cand = _Candidate(addr, ssrc, 1, now_s)
        if c.run >= SWITCH_RUN and now_s - (self.last_s or 0.0) >= SWITCH_SILENCE_S:
            self.addr, self.ssrc, self.last_s = addr, ssrc, now_s
            self._cand = None
            self.stats["switches"] += 1
            return SourceVerdict.SWITCHED
        return self._foreign(addr)

    def _foreign(self, addr: Address | None) -> SourceVerdict:
        self.stats["foreign"] += 1
        if addr is not None and self.addr is not None and addr != self.addr:
            self.stats["foreign_address"] += 1
        return SourceVerdict.FOREIGN

    def is_locked_source(self, addr: Address | None, ssrc: int) -> bool:
        """Whether (addr, ssrc) is the locked source (RTCP BYE is honoured only from it)."""
        return self.ssrc is not None and ssrc == self.ssrc and (addr is None or addr == self.addr)

    def describe(self) -> str:
        if self.ssrc is None:
            return "none"
        where = "" if self.addr is None else f"{self.addr[0]}:{self.addr[1]} "
        return f"{where}ssrc {self.ssrc:08x}"
