"""Neural packet-loss concealment: the receiver's concealer plug-in.

:class:`NeuralPLC` (a :class:`edge_dred.receiver.Concealer`) is a *feature
source*: it analyses every output slot, keeps the PLC feature predictor
(:mod:`edge_dred.neural.predictor`) running on real frames, and on a loss
hands the predicted frames to the vocoder continuation
(:mod:`edge_dred.neural.continuation`) that DRED uses too.  When the vocoder
runs, and how libopus's concealment is shaped otherwise, is the policy
:data:`POLICY`; with it a loss goes:

* **gate**: only a loss that starts in voiced speech (pitch correlation of
  the last frame played >= ``voiced_gate``) gets the vocoder; after
  unvoiced frames or silence libopus conceals the whole loss, pulled towards
  the predicted frames' band energies by an envelope filter
  (``shape_gated``; libopus keeps the waveform, the predictor the envelope).
  At the hand-back that filter runs on into the first real frame and fades
  out over it (the real decode continues libopus's unshaped concealment);
* **lead**: libopus's concealment plays the first ``opus_lead_ms``: it
  continues its own decoder state exactly and is hard to beat that early;
* **vocoder**: then the continuation, primed from the output so far,
  cross-fades in from libopus's concealment over ``start_xfade`` samples;
* **fade**: after ``fade_start_ms`` of loss the synthesis fades over
  ``fade_ms`` into libopus's concealment, which decays to silence and is
  shaped like a gated loss from then on (``shape_tail``): predictions drift
  the further they go, and silence is better than babble;
* **hand-back**: the first real samples cross-fade over ``end_xfade``
  samples (the whole first real slot) from the synthesis run on, at the
  fade's gain.

The policy's values were chosen on training speech under seeded bursty loss
with ``training/tune_concealment.py`` (the measurements are in ``docs/``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import FRAME_SAMPLES, FRAME_SIZE, NB_FEATURES, PITCH_CORR
from .dsp.postfilter import EnvelopePostfilter
from .neural.continuation import Continuation, fade_from, raised_cosine, to_int16
from .neural.predictor import FeaturePredictor, FeaturePredictorReference, PLCInputError, PLCModel
from .plugins import Decision

__all__ = ["NeuralPLC", "ConcealmentPolicy", "POLICY", "default_models"]


@dataclass(frozen=True)
class ConcealmentPolicy:
    """When the vocoder takes a loss, for how long, and how libopus's concealment is shaped.

    Attributes
    ----------
    opus_lead_ms : int
        libopus's concealment plays the first ms of every loss (a multiple of 20).
    fade_start_ms, fade_ms : float
        The synthesis starts fading into libopus's concealment after
        ``fade_start_ms`` of loss, along a raised cosine of ``fade_ms``.
    start_xfade, end_xfade : int
        Cross-fades (samples) from libopus's concealment into the synthesis,
        and from the synthesis into the first real samples.
    voiced_gate : float or None
        Smallest pitch correlation of the last frame played for the vocoder
        to take a loss (None: every loss).
    shape_gated : float or None
        Strength of the envelope filter on libopus's concealment of gated
        losses (None: untouched).
    shape_tail : bool
        Shape libopus's concealment the same way past the vocoder's fade.
    postfilter : bool or a postfilter from :mod:`edge_dred.dsp.postfilter`
        The vocoder's postfilter.
    history_ms : int or None
        A number (shipped: 1000): analyse nothing while packets arrive; when
        a loss starts, catch up: the output played since the last analysis
        goes through the extractor and the predictor in one block each,
        continuing their state, so every frame is analysed once, as it would
        be eagerly.  The plug-in's own output is caught up the same way (the
        extractor only: it is not evidence for the predictor), when the
        vocoder is primed or at the next loss; where the last frames before
        the loss are real, it is only history for the extractor
        (``skip_block``: its features would not be used).  Only when more than
        ``history_ms`` went by since the last analysis are both restarted on
        the last ``history_ms`` (the plug-in keeps that much output), which
        bounds the work at a loss start; the end of a loss is then never
        analysed.
        None: analyse every output slot as it is played and keep the
        predictor running on it (the same concealment while losses are at
        most ``history_ms`` apart; more work per received packet, none at a
        loss start).
    prime_frames : int
        Teacher-forced vocoder frames when the continuation starts (0–3;
        the vocoder trains with 3; 0: the real signal only fills its pitch
        history and the recurrent states start from zero).
    """

    opus_lead_ms: int = 20
    fade_start_ms: float = 40.0
    fade_ms: float = 40.0
    start_xfade: int = FRAME_SAMPLES
    end_xfade: int = FRAME_SAMPLES
    voiced_gate: float | None = 0.5
    shape_gated: float | None = 0.5
    shape_tail: bool = True
    postfilter: Any = True
    history_ms: int | None = 1000
    prime_frames: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.fade_start_ms <= 60_000 and 1 <= self.fade_ms <= 60_000):
            raise ValueError("fade_start_ms must be in [0, 60000] and fade_ms in [1, 60000]")
        if not (0 <= self.start_xfade <= Continuation.max_start_xfade
                and 0 <= self.end_xfade <= Continuation.max_end_xfade):
            raise ValueError(f"start_xfade must be in [0, {Continuation.max_start_xfade}] and end_xfade in "
                             f"[0, {Continuation.max_end_xfade}] samples")
        lead = self.opus_lead_ms
        if isinstance(lead, bool) or not isinstance(lead, int) or lead not in range(0, 1001, 20):
            raise ValueError(f"opus_lead_ms must be a multiple of 20 in [0, 1000], got {lead!r}")
        g = self.voiced_gate
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.0 <= g <= 1.0):
            raise ValueError(f"voiced_gate must be None or in [0, 1], got {g!r}")
        s = self.shape_gated
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 < s <= 1.0):
            raise ValueError(f"shape_gated must be None or in (0, 1], got {s!r}")
        if self.prime_frames not in (0, 1, 2, 3):
            raise ValueError(f"prime_frames must be 0, 1, 2 or 3, got {self.prime_frames!r}")
        h = self.history_ms
        if h is not None and (isinstance(h, bool) or not isinstance(h, int) or not 40 <= h <= 10_000):
            raise ValueError(f"history_ms must be None or an integer in [40, 10000], got {h!r}")


#: The shipped concealment policy.
POLICY = ConcealmentPolicy()


@functools.lru_cache(maxsize=1)
def default_models() -> tuple[Any, PLCModel]:
    """The shipped (vocoder, PLC) models, loaded and checked once per process."""
    from .neural.vocoder import shipped_vocoder

    return shipped_vocoder(), PLCModel.load()


class NeuralPLC:
    """Receiver concealer plug-in: predicted features through the vocoder continuation.

    Parameters
    ----------
    vocoder_model, plc_model : optional
        Shared models (default: the shipped ones, loaded once per process).
    reference : bool
        Float64 numpy networks instead of the int8 kernels (tests).

    Attributes
    ----------
    stats : dict
        ``losses``, ``slots`` concealed, ``lead_slots`` (libopus's lead),
        ``gated_losses`` / ``gated_slots`` (left to libopus by the voicing
        gate), ``shaped_slots``, ``silent_slots`` (past the vocoder's fade).

    Notes
    -----
    Per slot outside losses: a copy of the output into the history (with the
    policy's ``history_ms = None``: feature analysis and two predictor steps).
    At a loss start: feature analysis of the history and the predictor over it.
    During a loss: two predictor steps and two vocoder frames (plus priming,
    once per loss, after analysing libopus's lead), or for a gated loss two
    predictor steps and two frames of the envelope filter.  The loss's own
    output is analysed at the next loss start, if that is within
    ``history_ms``.
    """

    def __init__(self, vocoder_model: Any = None, plc_model: PLCModel | None = None, *,
                 reference: bool = False, _policy: ConcealmentPolicy = POLICY) -> None:
        from .dsp.features import FeatureExtractor

        if not isinstance(_policy, ConcealmentPolicy):
            raise TypeError(f"_policy must be a ConcealmentPolicy, got {type(_policy).__name__}")
        if vocoder_model is None or plc_model is None:
            dv, dp = default_models()
            vocoder_model = vocoder_model or dv
            plc_model = plc_model or dp
        p = self.policy = _policy
        self.decision = Decision.NEURAL_PLC
        self._decisions_real = (Decision.REGULAR, Decision.RED, Decision.LBRR)
        self._fx = FeatureExtractor()   # the output stream's, or (history_ms) reset before each analysis
        self._ring = np.zeros((p.history_ms or 0) * 16 // FRAME_SIZE * FRAME_SIZE, np.int16)
        self._pos = 0              # where the ring's next sample goes (its oldest sample once full)
        self._filled = 0           # samples of the ring written so far
        self._pred = (FeaturePredictorReference if reference else FeaturePredictor)(plc_model)
        self._cont = Continuation(vocoder_model, postfilter=p.postfilter, reference=reference)
        self._feats = np.zeros((Continuation.history_frames, NB_FEATURES), np.float32)
        self._fade_start = int(round(p.fade_start_ms * 16))
        self._fade_len = int(round(p.fade_ms * 16))
        self._fade_curve = raised_cosine(self._fade_len)
        self._lead = p.opus_lead_ms * 16
        self._shaper = None if p.shape_gated is None else EnvelopePostfilter(strength=float(p.shape_gated))
        self._active = False       # the previous slot was ours
        self._primed = False       # the continuation runs in the current loss (past the libopus lead)
        self._started = False      # the vocoder is primed for the current loss (maybe ahead, by prepare)
        self._last_real = False    # the previous slot came from libopus (regular/LBRR)
        self._lost = 0             # samples concealed in the current loss
        self._gated = False        # the current loss is left to libopus (voicing gate)
        self._shaping = False      # libopus's output of the current loss is being shaped
        self._backlog = 0          # (history_ms) samples played since the last analysis, not analysed yet
        self._own = 0              # (history_ms) the backlog's first samples that were our own output
        self.stats = {"losses": 0, "slots": 0, "silent_slots": 0, "lead_slots": 0, "gated_losses": 0,
                      "gated_slots": 0, "shaped_slots": 0}

    # ------------------------------------------------------------- hooks
    def observe(self, pcm: np.ndarray, decision: Any) -> None:
        """Note every output slot; eagerly, analyse it and feed what we did not invent to the predictor.

        With ``history_ms``, keep it and count it as not analysed yet (the
        backlog: our own slots first, then the others).
        """
        if self.policy.history_ms is not None:
            full = np.asarray(pcm, np.int16)
            n = full.shape[0]
            x = full[-self._ring.shape[0]:]
            k = min(x.shape[0], self._ring.shape[0] - self._pos)
            self._ring[self._pos:self._pos + k] = x[:k]
            self._ring[:x.shape[0] - k] = x[k:]
            self._pos = (self._pos + x.shape[0]) % self._ring.shape[0]
            self._filled = min(self._filled + x.shape[0], self._ring.shape[0])
            if decision == self.decision and self._backlog == self._own:
                self._own += n              # ours: analysed (features only) when next needed
            self._backlog += n
        else:
            feats = self._fx.process_block(np.asarray(pcm))
            self._feats = np.concatenate([self._feats, feats])[-Continuation.history_frames:]
            if decision != self.decision:
                self._pred.update_block(feats)
        if decision != self.decision:
            self._active = False
        self._last_real = decision in self._decisions_real

    def conceal(self, ctx: Any) -> np.ndarray:
        """Fill one lost slot (20 ms)."""
        n = len(ctx.opus_plc) if ctx.opus_plc is not None else FRAME_SAMPLES
        if n <= 0 or n % FRAME_SIZE:
            raise PLCInputError(f"slot length {n} is not a positive multiple of {FRAME_SIZE}")
        if not self._active:
            if self.policy.history_ms is not None and self._backlog:
                self._catch_up()
            self._lost = 0
            self._active = True
            self._primed = False
            self._started = False
            self._shaping = False
            self._gated = self._leave_to_libopus(self._feats[-1])   # the last frame played before the loss
            self.stats["losses"] += 1
            self.stats["gated_losses"] += int(self._gated)
        self.stats["slots"] += 1
        # Every lost frame advances the predictor on its own prediction, as in training.
        feats = np.stack([self._pred.lost() for _ in range(n // FRAME_SIZE)])
        if ctx.opus_plc is not None and (self._lost < self._lead or self._gated):
            out = np.asarray(ctx.opus_plc, np.int16).copy()
            if self._gated and self._shaper is not None:
                out = self._shape_opus(ctx, feats)[0]
            self._lost += n
            self.stats["gated_slots" if self._gated else "lead_slots"] += 1
            return out
        first = not self._primed
        if first:
            if not self._started:
                self._start(ctx.history)
            self._primed = True
        gain = self._gain(self._lost, n)
        y = self._cont.synthesize(feats, gain, under=ctx.opus_plc, ahead=self._pred.prediction[None],
                                  align=ctx.opus_plc if first else None)
        if not np.any(gain > 0):
            self.stats["silent_slots"] += 1
            if ctx.opus_plc is not None and self.policy.shape_tail and self._shaper is not None:
                # Past the vocoder's fade: libopus's concealment shaped as for gated losses,
                # the shaping faded in over its first frame.
                shaped, first_tail = self._shape_opus(ctx, feats)
                shaped = shaped.astype(np.float64)
                y = fade_from(shaped, y, FRAME_SIZE) if first_tail else shaped
        k = self.policy.start_xfade
        if first and (self._last_real or self._lost > 0) and ctx.opus_plc is not None and k:
            fade_from(y, ctx.opus_plc, k)
        self._lost += n
        return to_int16(y)

    def prepare(self, ctx: Any) -> bool:
        """Do now what lost slot ``ctx.slot`` (not decided yet) would start with.

        Called by the receiver after deciding the slot before, when no packet
        covers ``ctx.slot`` as things stand.  After real audio: the catch-up
        analysis of a loss start; after libopus's lead: the vocoder's priming.
        The output is the same; the work leaves the slot that also synthesises
        for one that was cheap.
        """
        if not self._active:
            if self._last_real and self.policy.history_ms is not None and self._backlog:
                self._catch_up()
        elif not self._started and not self._gated and self._lead and self._lost == self._lead:
            self._start(ctx.history)
        return True

    def handback(self, pcm: np.ndarray) -> np.ndarray:
        """Cross-fade from the concealment into the first real samples."""
        out = np.asarray(pcm, np.int16).copy()
        k = min(self.policy.end_xfade, len(out))
        if self._active and self._shaping:
            # The real decode continues libopus's unshaped concealment: fade the shaping out
            # over the first frame (the same filter runs on across the boundary).
            self._shaping = False
            if k and len(out) >= FRAME_SIZE:
                shaped = self._shaper.process_pcm(out[:FRAME_SIZE], self._pred.prediction[None]).astype(np.float64)
                k = min(k, FRAME_SIZE)   # the shaping fades out over one frame
                w = raised_cosine(k)
                out[:k] = to_int16(w * shaped[:k] + (1.0 - w) * out[:k])
            return out
        if not self._active or not self._primed or k == 0:
            # (A loss that ended inside the libopus lead was libopus's own concealment.)
            return out
        return self._cont.handback(out, self._pred.prediction[None], k, self._gain(self._lost, k))

    # ---------------------------------------------------------- helpers
    def _start(self, history: np.ndarray) -> None:
        """Prime the vocoder from the output so far (real audio, or libopus's lead): continuous with it."""
        if self._backlog:
            self._catch_up()
        self._cont.start(history, self._feats, self.policy.prime_frames)
        self._started = True

    def _catch_up(self) -> None:
        """Analyse the output played since the last analysis and run the predictor over it.

        The backlog continues the extractor's and predictor's state when the ring still
        holds all of it; after a longer stretch without losses both restart on the ring
        (only what was played: a stream shorter than the history from its start).
        """
        n, own = self._backlog, self._own
        if n > self._ring.shape[0]:
            self._fx.reset()
            self._pred.reset()
            m = self._filled // FRAME_SIZE * FRAME_SIZE
            own, n = max(0, own - (n - m)), m
        hist = np.concatenate([self._ring[self._pos:], self._ring[:self._pos]])[self._ring.shape[0] - n:]
        # Our own output's features are needed only among the last frames (the vocoder's priming):
        # before those it is only history for the extractor.
        skip = max(0, min(own, n - Continuation.history_frames * FRAME_SIZE)) // FRAME_SIZE * FRAME_SIZE
        if skip:
            self._fx.skip_block(hist[:skip])
        feats = self._fx.process_block(hist[skip:])        # one C call
        self._feats = np.concatenate([self._feats, feats])[-Continuation.history_frames:]
        if n > own:
            # Our own output is not evidence of the speaker: only the rest feeds the predictor.
            self._pred.update_block(feats[(own - skip) // FRAME_SIZE:])   # one C call
        self._backlog = self._own = 0

    def _shape_opus(self, ctx: Any, feats: np.ndarray) -> tuple[np.ndarray, bool]:
        """libopus's concealment of this slot pulled towards ``feats``; the filter is primed
        from the output so far on its first slot in a loss (second value True)."""
        first = not self._shaping
        if first:
            self._shaper.prime_pcm(np.asarray(ctx.history))
            self._shaping = True
        self.stats["shaped_slots"] += 1
        return self._shaper.process_pcm(np.asarray(ctx.opus_plc, np.int16), feats), first

    def _leave_to_libopus(self, last_frame: np.ndarray) -> bool:
        """The voicing gate: whether a loss after this frame is libopus's concealment throughout."""
        gate = self.policy.voiced_gate
        return gate is not None and float(last_frame[PITCH_CORR]) < gate

    def _gain(self, start: int, n: int) -> np.ndarray:
        """Fade gain for samples [start, start + n) of a loss."""
        t = np.arange(start, start + n) - self._fade_start
        g = np.ones(n)
        inside = (t >= 0) & (t < self._fade_len)
        g[inside] = self._fade_curve[t[inside]]
        g[t >= self._fade_len] = 0.0
        return g

    @property
    def state_bytes(self) -> int:
        """Approximate per-stream memory (predictor, vocoder, shaping filter, feature history)."""
        n = self._feats.nbytes + self._ring.nbytes + getattr(self._pred, "state_bytes", 0) + self._cont.state_bytes
        n += self._shaper.state_bytes if self._shaper is not None else 0
        n += self._fx.state_bytes
        return int(n)
