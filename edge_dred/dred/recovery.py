"""DRED in the receiver: a :class:`~edge_dred.receiver.Recoverer` plug-in.

When a slot is lost, :class:`DredRecoverer` looks at the packets after it
that the receiver already holds (``ctx.future``, bounded by its look-ahead,
i.e. the jitter buffer), takes the *earliest* arrived one whose DRED payload
reaches back over the lost 20 ms (it carries that audio with the finest
quantizer and the shortest backward decode), decodes its latents backward
only as far as needed, and synthesises the slot with the vocoder continuing
from the receiver's last output.  Consecutive lost slots of one burst reuse
the same decode (its frames are cached).  When real audio resumes,
``handback`` cross-fades from the synthesis, run on with DRED's features of
the first real slot, into all of that slot.

Payloads are hostile input: a malformed packet, padding or payload makes
that packet count as "no DRED" (``stats['bad_payloads']``), never an error.

Time alignment
--------------
Payload frames are in the sender's *input* time: packet ``p``'s chunk 0 ends
at the end of input frame ``2p + 1 - offset`` (10 ms frames; see
:mod:`edge_dred.dred.encoder`).  The receiver's output lags the input by the
codec delay ``D`` (the Opus encoder look-ahead, 104 samples at 16 kHz), so
output frame ``m`` shows input time ``m - D/160`` frames; its features are
interpolated between the two input frames around it (cepstrum and
correlation linearly, the pitch period from the nearer frame unless the two
agree within 20 %).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..codec.framing import extract_dred
from ..constants import FRAME_SAMPLES, FRAME_SIZE, SAMPLE_RATE
from ..dsp.features import FeatureExtractor
from ..neural.continuation import Continuation, fade_from, to_int16
from ..neural.vocoder import shipped_vocoder
from ..plugins import Decision
from .decoder import DEC_FRAMES, BackwardDecode, DredDecoder, dequantize_payload, sanitize_features
from .payload import MAX_CHUNKS, DredPayloadError, parse_payload

__all__ = ["DredRecoverer", "DEFAULT_CODEC_DELAY", "output_frame_features", "payload_frame_span"]

DEFAULT_CODEC_DELAY = 104     # Opus encoder look-ahead at 16 kHz (2.5 ms + 4 ms SILK), samples
_FRAMES_PER_SLOT = FRAME_SAMPLES // FRAME_SIZE
_PITCH_AGREE = 0.2
_CHUNK_MS = DEC_FRAMES * FRAME_SIZE * 1000 // SAMPLE_RATE   # one latent: 40 ms
_HISTORY_FRAMES = 10          # output frames analysed at a burst start DRED does not reach (last 2 used)
_PRIME_FRAMES = 0             # teacher-forced vocoder frames at a burst start (its training primes with 3)
START_XFADE = FRAME_SAMPLES   # from libopus's concealment into the first synthesised slot (as the neural PLC)
END_XFADE = FRAME_SAMPLES     # from the synthesis into the first real slot, all of it (Continuation.handback)


def _decode_from(src: "_Source", lo: int, lo_req: int, max_chunks: int | None) -> int | None:
    """The oldest input frame to decode from ``src`` under a cap of ``max_chunks`` (None: no cap):
    ``lo`` (the older interpolation neighbour included), ``lo_req`` when only that fits, or None."""
    if max_chunks is None:
        return lo
    if -(-(src.last - lo_req + 1) // DEC_FRAMES) > max_chunks:
        return None
    if -(-(src.last - max(lo, src.first) + 1) // DEC_FRAMES) > max_chunks:
        return lo_req   # drop the optional older neighbour rather than decode a chunk more
    return lo


def payload_frame_span(packet_slot: int, offset: int, n_chunks: int) -> tuple[int, int]:
    """Input frames ``[first, last]`` (inclusive, 10 ms) a payload describes."""
    last = 2 * packet_slot + 1 - offset
    return last - 4 * n_chunks + 1, last


def output_frame_features(frames_in: np.ndarray, first_in: int, m: np.ndarray, delay: int) -> np.ndarray:
    """Features of output frames ``m`` from input-time features.

    Parameters
    ----------
    frames_in : numpy.ndarray
        (n, 20) input-time features, oldest first, frame ``first_in`` first.
    first_in : int
        Input frame index of ``frames_in[0]``.
    m : numpy.ndarray of int
        Output frame indices; every ``m - delay/160`` must lie within the
        span (the older neighbour may be missing at the first frame: then
        the newer one is used alone).
    delay : int
        Codec delay in samples (>= 0).

    Returns
    -------
    numpy.ndarray
        (len(m), 20) float32.
    """
    # Runs per recovered slot on one or two frames: plain Python floats (the same float64
    # arithmetic numpy would do) cost less than a dozen small array operations.
    n = frames_in.shape[0]
    d = delay / FRAME_SIZE
    rows = []
    for mj in np.asarray(m).tolist():
        pos = float(mj) - d - first_in
        i0 = math.floor(pos)
        w = pos - i0
        i1 = min(i0 + 1, n - 1)
        if i0 < 0:              # the older neighbour is missing: the newer frame alone
            i0, w = i1, 1.0
        else:
            i0 = min(i0, n - 1)
            if i0 == i1:
                w = 1.0
        a, b = frames_in[i0].tolist(), frames_in[i1].tolist()
        v = 1.0 - w
        row = [v * x + w * y for x, y in zip(a, b)]
        pa, pb = a[18], b[18]
        if not abs(pa - pb) <= _PITCH_AGREE * min(pa, pb):
            row[18] = pb if w >= 0.5 else pa
        rows.append(row)
    return np.array(rows, np.float32).reshape(len(rows), frames_in.shape[1])


class _Source:
    """One packet's parsed DRED: its frame span and a lazy backward decode.

    The payload was parsed (and fully validated) keeping only the newest
    chunks the hole needed; an older frame asked for later re-parses it
    keeping more.
    """

    __slots__ = ("slot", "first", "last", "decode", "data", "tables")

    def __init__(self, slot: int, first: int, last: int, decode: BackwardDecode, data: bytes, tables: Any) -> None:
        self.slot, self.first, self.last, self.decode = slot, first, last, decode
        self.data, self.tables = data, tables

    def covers(self, lo: int, hi: int) -> bool:
        return self.first <= lo and hi <= self.last

    def frames(self, lo: int, hi: int) -> np.ndarray:
        """Input frames lo..hi (clipped to the span), oldest first; decodes back to ``lo`` only."""
        lo = max(lo, self.first)
        need = -(-(self.last - lo + 1) // DEC_FRAMES)
        if need > self.decode.n_chunks:
            p = parse_payload(self.data, self.tables, chunks=need)   # accepted before: accepted again
            self.decode.extend(dequantize_payload(p, self.tables)[1])
        newest_first = self.decode.frames(self.last - lo + 1)
        return newest_first[::-1][: hi - lo + 1] if hi < self.last else newest_first[::-1]


class DredRecoverer:
    """Recoverer plug-in that fills lost slots from DRED in later packets.

    Parameters
    ----------
    decoder : DredDecoder, optional
        Default: the shipped int8 decoder (its tables parse the payloads).
    vocoder_model : optional
        Shared :class:`edge_dred.neural.vocoder.VocoderModel` (default: shipped).
    codec_delay : int
        Samples the decoded stream lags the sender's input (Opus look-ahead).
    reference : bool
        Float numpy vocoder instead of the int8 kernels (tests).
    keep_trace : bool
        Record ``(slot, features)`` of every recovered slot in ``trace``
        (analysis and tests; grows with the stream).

    Attributes
    ----------
    stats : dict
        ``slots`` recovered, ``bursts`` (runs of recovered slots),
        ``bad_payloads`` (hostile/corrupt packets ignored), ``uncovered``
        (lost slots with DRED packets in view that did not reach back far
        enough), ``capped`` (lost slots left to the next plug-in because
        recovering them would decode more than the ``max_ms`` cap),
        ``chunks_decoded``.
    """

    def __init__(self, decoder: DredDecoder | None = None, vocoder_model: Any = None, *,
                 codec_delay: int = DEFAULT_CODEC_DELAY, reference: bool = False, keep_trace: bool = False,
                 _postfilter: Any = True) -> None:

        if not isinstance(codec_delay, int) or not 0 <= codec_delay <= 4 * FRAME_SIZE:
            raise ValueError(f"codec_delay must be an int in [0, {4 * FRAME_SIZE}], got {codec_delay!r}")
        self.decision = Decision.DRED
        self._real = (Decision.REGULAR, Decision.RED, Decision.LBRR)
        self.decoder = decoder if decoder is not None else DredDecoder()
        self.tables = self.decoder.tables
        if vocoder_model is None:
            vocoder_model = shipped_vocoder()
        self._cont = Continuation(vocoder_model, postfilter=_postfilter, reference=reference)
        self.codec_delay = codec_delay
        # Burst-start settings (training/tune_concealment.py varies them on training speech).
        self._history_frames = _HISTORY_FRAMES
        self._prime_frames = _PRIME_FRAMES
        self._end_xfade = END_XFADE
        self._fx = FeatureExtractor()                    # restarted at each burst start (plan kept)
        self._sources: dict[int, _Source | None] = {}   # packet slot -> parsed DRED (None: none/bad)
        self._active: _Source | None = None             # source of the previous slot, if it was ours
        self._active_slot = -1
        self._prepared: int | None = None                # slot whose burst start prepare() did
        self._last_real = False
        self.trace: list[tuple[int, np.ndarray]] | None = [] if keep_trace else None
        self.stats = {"slots": 0, "bursts": 0, "bad_payloads": 0, "uncovered": 0, "capped": 0, "chunks_decoded": 0}

    # ------------------------------------------------------------- helpers
    def _needed_input_frames(self, m: np.ndarray) -> tuple[int, int, int]:
        """Input frames for output frames ``m``: (oldest used, oldest required, newest required).

        The oldest used frame is only an interpolation neighbour: when a
        payload stops just short of it, the next frame stands in.
        """
        d = self.codec_delay / FRAME_SIZE
        first, last = float(m[0]) - d, float(m[-1]) - d
        return math.floor(first), math.ceil(first), math.ceil(last)

    def _slot_frames(self, slot: int) -> np.ndarray:
        return np.arange(_FRAMES_PER_SLOT * slot, _FRAMES_PER_SLOT * (slot + 1))

    def _history_features(self, hist: np.ndarray) -> np.ndarray:
        """Features of the last output frames, analysed from the history only when a burst starts.

        A fresh extractor over the last 100 ms has settled its buffers (the
        cepstra match a whole-stream analysis) and, in all but a few per cent
        of voiced frames, its pitch track before the last frames, so the
        receiver pays nothing for DRED while packets arrive.
        """
        n = min(hist.shape[0] // FRAME_SIZE, self._history_frames)
        self._fx.reset()
        return self._fx.process_block(hist[hist.shape[0] - n * FRAME_SIZE:])[-Continuation.history_frames:]

    def _start_burst(self, history: np.ndarray, src: _Source, slot: int, max_ms: int | None) -> bool:
        """Prime the vocoder on the output history; False if the history is too short.

        Its conditioning features are DRED's own for the output frames just
        before the hole (the payload that covers the hole almost always
        reaches them), so nothing is analysed; only where it stops short, or
        they lie deeper than ``max_ms`` lets it decode, is the history
        analysed instead.
        """
        hist = np.asarray(history)
        if hist.shape[0] < Continuation.history_samples:
            return False
        # Teacher forcing (not shipped) needs features analysed from the very samples it replays.
        feats = self._frames_before(src, slot, max_ms) if self._prime_frames == 0 else None
        self._prime(hist, self._history_features(hist) if feats is None else feats)
        return True

    def _frames_before(self, src: _Source, slot: int, max_ms: int | None) -> np.ndarray | None:
        """DRED's features of the output frames before ``slot`` the vocoder conditions on, or None
        if ``src`` stops short of them or they lie deeper than ``max_ms``."""
        m = np.arange(_FRAMES_PER_SLOT * slot - self._cont.conditioning_frames, _FRAMES_PER_SLOT * slot)
        return self._features_of(src, m, max_ms)

    def _features_of(self, src: _Source, m: np.ndarray, max_ms: int | None, count: bool = True) -> np.ndarray | None:
        """Features of output frames ``m`` from ``src``, or None if it stops short of them or they
        lie deeper than ``max_ms`` (None: no cap)."""
        lo, lo_req, hi = self._needed_input_frames(m)
        if not src.covers(lo_req, hi):
            return None
        lo = _decode_from(src, lo, lo_req, None if max_ms is None else int(max_ms) // _CHUNK_MS)
        return None if lo is None else self._decoded(src, m, lo, hi, count)

    def _decoded(self, src: _Source, m: np.ndarray, lo: int, hi: int, count: bool = True) -> np.ndarray:
        """Features of output frames ``m`` from input frames ``lo..hi`` of ``src`` (decoded back to
        ``lo`` only), counting the chunks decoded when ``count``."""
        before = src.decode.chunks_decoded
        fin = src.frames(lo, hi)
        if count:
            self.stats["chunks_decoded"] += src.decode.chunks_decoded - before
        return sanitize_features(output_frame_features(fin, max(lo, src.first), m, self.codec_delay))

    def _prime(self, hist: np.ndarray, feats: np.ndarray) -> None:
        """Start the vocoder from the output history: 2 frames of conditioning, its pitch history
        from the real samples (and ``_prime_frames`` teacher-forced frames, none shipped)."""
        self._cont.start(hist, feats, self._prime_frames)

    def _source(self, slot: int, packet: bytes, lo: int) -> _Source | None:
        """Parse (once) the DRED of the packet in ``slot``; None if absent or bad.

        Keeps the chunks back to input frame ``lo`` (the oldest the current
        hole uses); the whole payload is still checked.
        """
        if slot in self._sources:
            return self._sources[slot]
        src = None
        try:
            data = extract_dred(packet)
            if data is not None:
                # Chunk 0 ends at input frame 2 * slot + 1 - offset <= 2 * slot + 1.
                need = min(max(-(-(2 * slot + 2 - lo) // DEC_FRAMES), 1), MAX_CHUNKS)
                p = parse_payload(data, self.tables, chunks=need)
                first, last = payload_frame_span(slot, p.offset, p.n_chunks)
                src = _Source(slot, first, last, self.decoder.start_payload(p), data, self.tables)
        except (ValueError, DredPayloadError):
            # MalformedPacketError / DredPayloadError are ValueErrors: hostile or corrupt input.
            self.stats["bad_payloads"] += 1
        self._sources[slot] = src
        return src

    def _prune(self, slot: int) -> None:
        for s in [s for s in self._sources if s <= slot]:
            del self._sources[s]

    def reaches(self, slot: int, packet_slot: int, packet: bytes) -> bool:
        """Whether the DRED in ``packet`` (sent in ``packet_slot``) reaches back over lost ``slot``.

        For accounting after the fact (was the redundancy there, only too late?);
        parses the payload afresh and touches no state or statistics.
        """
        try:
            data = extract_dred(packet)
            if data is None:
                return False
            p = parse_payload(data, self.tables, chunks=1)
        except (ValueError, DredPayloadError):
            return False
        first, last = payload_frame_span(packet_slot, p.offset, p.n_chunks)
        _, lo_req, hi = self._needed_input_frames(self._slot_frames(slot))
        return first <= lo_req and hi <= last

    # --------------------------------------------------------------- hooks
    def observe(self, pcm: np.ndarray, decision: Any) -> None:
        """Note who produced each slot (nothing is computed while no packet is lost)."""
        if decision != self.decision:
            self._active = None
        self._last_real = decision in self._real
        self._prepared = None      # a start prepared for this slot was used, or its packet came

    def recover(self, ctx: Any, max_ms: int | None = None) -> np.ndarray | None:
        """Synthesise lost slot ``ctx.slot`` from DRED, or None if no packet in view covers it.

        Parameters
        ----------
        ctx : SlotContext
            The lost slot and the packets after it.
        max_ms : int, optional
            Decode at most this much DRED backward from a packet's newest
            frame (whole 40 ms chunks; the load governor's cap).  A slot
            further back than that behind the earliest packet covering it is
            left to the next plug-in (None).  Default: ``ctx.dred_cap_ms``
            when the context has one, else no cap.  0 = no DRED at all.
        """
        if max_ms is None:
            max_ms = getattr(ctx, "dred_cap_ms", None)
        found = self._cover(ctx, max_ms, count=True)
        if found is None:
            return None
        src, lo, m = found
        slot = int(ctx.slot)
        feats = self._decoded(src, m, lo, self._needed_input_frames(m)[2])
        if self.trace is not None:
            self.trace.append((slot, feats))

        continuing = self._active is not None and self._active_slot == slot - 1
        if not continuing:
            if self._prepared != slot and not self._start_burst(ctx.history, src, slot, max_ms):
                return None
            self.stats["bursts"] += 1
        self._prepared = None
        fade = not continuing and self._last_real and ctx.opus_plc is not None
        y = self._cont.synthesize(feats, ahead=self._frame_after(src, slot) if self._cont.wants_ahead else None,
                                  align=ctx.opus_plc if fade else None)
        if fade:
            # libopus's concealment continues the decoder's overlap exactly: fade from it.
            fade_from(y, ctx.opus_plc, min(START_XFADE, y.shape[0], len(ctx.opus_plc)))
        self._active, self._active_slot = src, slot
        self.stats["slots"] += 1
        return to_int16(y)

    def prepare(self, ctx: Any) -> bool:
        """Start the burst that lost slot ``ctx.slot`` opens, one slot early.

        The receiver calls this after deciding the slot before it, when that
        slot is lost as things stand (``ctx.opus_plc`` is None).  When the
        slot just decided was real audio, the burst start (the decode of the
        frames before the hole, vocoder priming) lands there instead of on top of the first slot's
        synthesis; the output is the same.  If the packet arrives after all,
        the work is wasted, never wrong.

        Returns
        -------
        bool
            Whether DRED in the packets held now covers the slot.
        """
        found = self._cover(ctx, getattr(ctx, "dred_cap_ms", None), count=False)
        if found is None:
            return False
        slot = int(ctx.slot)
        if self._last_real and self._prepared != slot:
            if not self._start_burst(ctx.history, found[0], slot, getattr(ctx, "dred_cap_ms", None)):
                return False
            self._prepared = slot
        return True

    def _cover(self, ctx: Any, max_ms: int | None, count: bool) -> tuple[_Source, int, np.ndarray] | None:
        """The earliest packet in view whose DRED recovers ``ctx.slot`` within ``max_ms``:
        (its source, the oldest input frame to decode, the slot's output frames), or None
        (counted in ``stats`` when ``count``)."""
        max_chunks = None
        if max_ms is not None:
            if isinstance(max_ms, bool) or not isinstance(max_ms, (int, np.integer)) or not 0 <= max_ms <= 10_000:
                raise ValueError(f"max_ms must be an integer in [0, 10000], got {max_ms!r}")
            max_chunks = int(max_ms) // _CHUNK_MS
            if max_chunks == 0:
                return None  # nothing may be decoded: not even a payload is parsed
        slot = int(ctx.slot)
        self._prune(slot)
        m = self._slot_frames(slot)
        lo, lo_req, hi = self._needed_input_frames(m)
        src = None
        have_dred = False
        for i, pkt in enumerate(ctx.future):
            if pkt is None:
                continue
            s = self._source(slot + 1 + i, pkt, lo)
            if s is None:
                continue
            have_dred = True
            # The older interpolation neighbour may be missing; the newer frame must be there.
            if s.covers(lo_req, hi):
                src = s
                break
        if src is None:
            if have_dred and count:
                self.stats["uncovered"] += 1
            return None
        # The earliest covering packet needs the shortest decode; if even it reaches back
        # further than the cap, every later one would too.
        lo = _decode_from(src, lo, lo_req, max_chunks)
        if lo is None:
            if count:
                self.stats["capped"] += 1
            return None
        return src, lo, m

    def _frame_after(self, src: _Source, slot: int) -> np.ndarray | None:
        """Features of the first output frame after ``slot`` from ``src``, or None if it stops short."""
        return self._features_of(src, self._slot_frames(slot + 1)[:1], None, count=False)

    def handback(self, pcm: np.ndarray) -> np.ndarray:
        """Cross-fade from the synthesis run on into the first real slot."""
        out = np.asarray(pcm, np.int16).copy()
        src = self._active
        k = min(self._end_xfade, len(out))
        if src is None or k == 0:
            return out
        feats = self._features_of(src, self._slot_frames(self._active_slot + 1), None, count=False)
        if feats is None:
            feats = self._frame_after(src, self._active_slot)
        if feats is None and not self._cont.wants_ahead:
            return out
        return self._cont.handback(out, feats, k)
