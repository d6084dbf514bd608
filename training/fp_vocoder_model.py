"""Frame-parallel source-filter vocoder ("fp vocoder"): a frame-rate network steering DSP.

Nothing in the training graph recurs per sample or per subframe: a small network
runs once per 10 ms frame (two causal convs and a GRU over frames) and every
sample-rate operation is a cumulative sum, a scatter of pulses or a batch of FFTs.

The fixed DSP definitions (knots, bases, pulse kernel, filter lengths) live in
``edge_dred.neural.fp_vocoder``, whose ``FPVocoderStream`` is the numpy
streaming reference of this model (tests check they agree).

Signal conventions (as ``vocoder_model.py``): ``x = pcm / 32768``; the model
synthesises the pre-emphasised signal ``e[n] = x[n] - 0.85 x[n-1]``, whose
spectrum the 18 cepstra describe; frame ``i`` = samples ``[160 i, 160 i + 160)``
and its features (analysis window ``[160 i - 160, 160 i + 160)``) are known
when the frame ends, so the model uses features ``<= i`` for frame ``i``.

Synthesis of one sequence
-------------------------
1. **Knots.**  Filters and pitch are defined at knots every ``KNOT_HOP`` = 80
   samples (5 ms).  Frame ``i`` produces the knots at ``160 i + 80`` and
   ``160 i + 160``; knot ``160 i`` came from frame ``i - 1``.  Output sample
   ``n`` between two knots is a linear cross-fade of the excitation filtered by
   each knot's filter (each filtering is exact, with the full excitation
   history), so filters change smoothly at every sample and the pulse train's
   periodicity is never cut by block switching.  No look-ahead: algorithmic
   delay = the feature framing plus the pulse kernel's 1 ms (below).
2. **Pitch.**  Period at a knot = feature period of its frame times
   ``exp(dlogT)`` (network, bounded to +-15 %); f0 = 1/period is interpolated
   linearly per sample between knots and summed: ``c[n] = c0 + sum f0``
   (cycles).  A pulse sits where ``c`` crosses an integer, at the fractional
   time found by linear interpolation, as a causal windowed sinc of
   ``PULSE_TAPS`` = 32 taps (band-limited to 7.5 kHz, 16 samples = 1 ms of
   delay), height ``sqrt(period)`` so the train has unit variance like the
   noise.  ``c0`` (phase in cycles) is what a continuation takes from the real
   signal; training draws it at random.
3. **Filters.**  Base log-magnitude per knot = half the log of the envelope the
   cepstra describe (band energies spread over the 257 bins of a 512-point FFT
   with the features' own triangular band weights), plus a voicing prior
   (``0.5 ln v`` for the harmonic filter, ``0.5 ln (1 - v)`` for the noise
   filter, ``v`` = pitch correlation), plus the network's corrections on
   ``NB_CORR`` = 32 mel-spaced triangles.  Each magnitude becomes a minimum-phase
   filter (real cepstrum, folded), truncated with a taper to ``IR_LEN`` taps,
   and is applied by overlap-save (``NFFT`` = 512): knot ``j``'s segment
   yields the 160 exact output samples around it, weighted by a triangle.
4. **Noise normalisation** (``noise_norm``): each knot's noise filter also
   divides out the white noise's realised power on the ``NB_CORR`` triangles
   over a 20 ms window centred on the knot (``NOISE_WIN``), so the filtered
   noise has the band energies the filter asks for, not a random spread
   around them (Rayleigh fluctuations that PESQ-WB scores as distortion).
   The window reaches ``NOISE_AHEAD`` samples past a knot: the noise is the
   model's own, drawn that far ahead, not a delay.  No parameters, no gradient.
5. Output = harmonic part + noise part (pre-emphasised).

Continuation: the network's state (conv history, GRU) runs over real frames'
features at frame rate, the excitation needs no recurrent state beyond its
phase ``c0`` and the last ``NFFT - 2 KNOT_HOP`` excitation samples, so a
synthesis can start with its pulses aligned to the real signal's last pitch
pulses (``estimate_phase``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from edge_dred.constants import FRAME_SIZE as FRAME, NB_BANDS, NB_FEATURES, PITCH_MAX, PITCH_MIN, PREEMPHASIS as PREEMPH, SAMPLE_RATE as FS
from edge_dred.dsp.features import C0_OFFSET
from edge_dred.neural.fp_vocoder import (CORR_MAX, DLOGT_MAX, INT16_SCALE, IR_LEN, KNOT_HOP, KNOTS_PER_FRAME, NB_CORR,
                                         NBIN, NFFT, NOISE_AHEAD, NOISE_FLOOR, NOISE_WIN, PULSE_BETA, PULSE_CUTOFF_HZ,
                                         PULSE_DELAY, PULSE_TAPS, SEG_OUT, VOICING_FLOOR, correction_basis, dct_matrix,
                                         envelope_basis, ir_taper, knot_window, noise_window)

__all__ = ["FPVocoder", "FPVocoderConfig", "pulse_kernel", "FRAME", "FS", "PREEMPH", "NOISE_AHEAD"]


def pulse_kernel(frac: torch.Tensor) -> torch.Tensor:
    """Causal band-limited pulse taps for pulses at fractional delay ``frac`` in [0, 1).

    Tap ``d`` (0..31) of a pulse at time ``t`` lands on sample ``floor(t) + 1 + d``
    and has the value of a Kaiser-windowed sinc centred ``PULSE_DELAY`` samples
    after ``t``: ``s = d + 1 - frac - PULSE_DELAY``.
    """
    d = torch.arange(PULSE_TAPS, dtype=frac.dtype, device=frac.device)
    s = d[None, :] + 1.0 - frac[:, None] - PULSE_DELAY
    fc = PULSE_CUTOFF_HZ / FS  # cycles per sample
    r = (s / PULSE_DELAY).clamp(-1.0, 1.0)
    # the floor keeps the gradient finite where a tap lands exactly on the window's edge
    win = torch.special.i0(PULSE_BETA * torch.sqrt((1.0 - r * r).clamp_min(1e-6))) / float(np.i0(PULSE_BETA))
    return 2 * fc * torch.sinc(2 * fc * s) * win


# ---------------------------------------------------------------- model

@dataclass
class FPVocoderConfig:
    """Layer sizes (stored in checkpoints)."""

    conv: int = 128
    gru: int = 128
    # frame i's knots at 160 i and 160 i + 80 (its own analysis centre and 5 ms on) instead of
    # 160 i + 80 and 160 i + 160: samples 160 i + 80 .. 160 i + 160 then wait for frame i + 1
    # (5 ms algorithmic delay) and the envelope is not drawn 5-10 ms after the time it describes
    lookahead: bool = True
    # noise filters divide out the noise's realised band powers around each knot (module docstring, 4.)
    noise_norm: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "FPVocoderConfig":
        # checkpoints from before an option had neither
        return cls(**{"lookahead": False, "noise_norm": False, **d})

    def to_dict(self) -> dict:
        return asdict(self)


class FPVocoder(nn.Module):
    """Frame-rate network + differentiable source-filter synthesis (see the module docstring)."""

    def __init__(self, cfg: FPVocoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FPVocoderConfig()
        self.register_buffer("feat_mean", torch.zeros(NB_FEATURES))
        self.register_buffer("feat_std", torch.ones(NB_FEATURES))
        self.conv1 = nn.Conv1d(NB_FEATURES, cfg.conv, 3)
        self.conv2 = nn.Conv1d(cfg.conv, cfg.conv, 3)
        self.gru = nn.GRU(cfg.conv, cfg.gru, batch_first=True)
        self.n_out = KNOTS_PER_FRAME * (2 * NB_CORR + 1)
        self.out = nn.Linear(cfg.gru + cfg.conv, self.n_out)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
        self.register_buffer("env_basis", torch.from_numpy(envelope_basis()).float())
        self.register_buffer("corr_basis", torch.from_numpy(correction_basis()).float())
        self.register_buffer("dct", torch.from_numpy(dct_matrix()).float())
        self.register_buffer("ir_taper", torch.from_numpy(ir_taper()).float())
        self.register_buffer("tri", torch.from_numpy(knot_window()).float())
        self.register_buffer("noise_win", torch.from_numpy(noise_window()).float(), persistent=False)

    # -- frame-rate network ------------------------------------------------
    def frame_net(self, feats: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """(B, F, 20) features -> (B, F, n_out) raw outputs; ``state`` carries conv/GRU history."""
        x = ((feats - self.feat_mean) / self.feat_std).transpose(1, 2)
        b = feats.shape[0]
        if state is None:
            h1 = x.new_zeros(b, NB_FEATURES, 2)
            h2 = x.new_zeros(b, self.cfg.conv, 2)
            g = None
        else:
            h1, h2, g = state["c1"], state["c2"], state["gru"]
        x1 = torch.cat([h1, x], 2)
        y1 = torch.tanh(self.conv1(x1))
        x2 = torch.cat([h2, y1], 2)
        y2 = torch.tanh(self.conv2(x2))
        z, g = self.gru(y2.transpose(1, 2), g)
        out = self.out(torch.cat([z, y2.transpose(1, 2)], 2))
        return out, {"c1": x1[:, :, -2:], "c2": x2[:, :, -2:], "gru": g}

    def knot_params(self, feats: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-knot log-magnitudes of the harmonic and noise filters (B, 2F, 257) and periods (B, 2F)."""
        b, f, _ = feats.shape
        raw = raw.reshape(b, f, KNOTS_PER_FRAME, 2 * NB_CORR + 1)
        corr = CORR_MAX * torch.tanh(raw[..., : 2 * NB_CORR] / CORR_MAX)
        dlogt = DLOGT_MAX * torch.tanh(raw[..., -1])
        # envelope from the cepstrum (ln power per bin, float scale)
        c = feats[..., :NB_BANDS].clone()
        c[..., 0] = c[..., 0] + C0_OFFSET
        log10e = c @ self.dct  # (B, F, 18) log10 band energies (int16^2 units)
        # interpolated over frequency in the log domain: linear interpolation of power
        # would fill the valleys between bands (the lowest band most: pre-emphasis)
        ln_env = (log10e.clamp(max=12.0) * math.log(10.0) - 2 * math.log(INT16_SCALE)) @ self.env_basis
        v = feats[..., 19].clamp(VOICING_FLOOR, 1.0 - VOICING_FLOOR)
        base_h = 0.5 * ln_env + 0.5 * torch.log(v)[..., None]
        base_n = 0.5 * ln_env + 0.5 * torch.log(1.0 - v)[..., None]
        ch = corr[..., :NB_CORR] @ self.corr_basis  # (B, F, K, 257)
        cn = corr[..., NB_CORR:] @ self.corr_basis
        lm_h = (base_h[:, :, None] + ch).reshape(b, f * KNOTS_PER_FRAME, NBIN)
        lm_n = (base_n[:, :, None] + cn).reshape(b, f * KNOTS_PER_FRAME, NBIN)
        period = (feats[..., 18:19].clamp(PITCH_MIN, PITCH_MAX) * torch.exp(dlogt)).reshape(b, f * KNOTS_PER_FRAME)
        return lm_h, lm_n, period

    # -- DSP -----------------------------------------------------------------
    def min_phase(self, logmag: torch.Tensor) -> torch.Tensor:
        """ln|H| on the 257-bin grid -> spectrum of the tapered minimum-phase impulse response."""
        cep = torch.fft.irfft(logmag, NFFT)
        fold = torch.zeros(NFFT, device=logmag.device, dtype=logmag.dtype)
        fold[0] = 1.0
        fold[1 : NFFT // 2] = 2.0
        fold[NFFT // 2] = 1.0
        hmin = torch.exp(torch.fft.rfft(cep * fold))
        ir = torch.fft.irfft(hmin, NFFT) * self.ir_taper
        return torch.fft.rfft(ir)

    @staticmethod
    def excitation(period_knots: torch.Tensor, n: int, c0: torch.Tensor) -> torch.Tensor:
        """Band-limited pulse train (B, n) for knot periods (B, J) (knot j at sample ``KNOT_HOP * j``).

        ``c0`` (B,) is the phase in cycles at sample 0 (a pulse where it crosses an integer).
        """
        b = period_knots.shape[0]
        f0k = 1.0 / period_knots  # cycles per sample
        pos = torch.arange(n, device=f0k.device, dtype=f0k.dtype) / KNOT_HOP
        j = pos.floor().long().clamp(max=f0k.shape[1] - 2)
        a = (pos - j).to(f0k.dtype)
        f0 = f0k[:, j] * (1 - a) + f0k[:, j + 1] * a  # (B, n)
        cyc = c0[:, None].double() + torch.cumsum(f0.double(), 1)
        prev = torch.cat([c0[:, None].double(), cyc[:, :-1]], 1)
        cross = torch.floor(cyc) > torch.floor(prev)
        bi, ni = torch.nonzero(cross, as_tuple=True)
        # fractional crossing time inside (n - 1, n]: t = n - 1 + tau
        num = torch.floor(cyc[bi, ni]) - prev[bi, ni]
        tau = (num / (cyc[bi, ni] - prev[bi, ni])).float()
        amp = torch.sqrt(1.0 / f0[bi, ni])
        frac = tau  # tap d lands on n + d, kernel argument d + 1 - frac' with t = (n - 1) + tau
        taps = pulse_kernel(frac) * amp[:, None]  # (P, 32)
        out = f0.new_zeros(b, n + PULSE_TAPS)
        idx = (bi * (n + PULSE_TAPS) + ni)[:, None] + torch.arange(PULSE_TAPS, device=f0.device)[None, :]
        out = out.reshape(-1).index_add(0, idx.reshape(-1), taps.reshape(-1)).reshape(b, n + PULSE_TAPS)
        return out[:, :n]

    @torch.no_grad()
    def noise_normalisation(self, noise: torch.Tensor, n_knots: int) -> torch.Tensor:
        """(B, n_knots, 257) ln-magnitudes dividing out the noise's realised spectrum around knots ``80 j``.

        ``noise`` (B, >= n): beyond its end (and before sample 0) it counts as zero; the last knot
        needs ``NOISE_AHEAD`` samples past it.  Same maths as ``fp_vocoder.noise_normalisation``.
        """
        need = (n_knots - 1) * KNOT_HOP + NOISE_WIN
        xp = F.pad(noise, (NOISE_AHEAD, max(0, need - NOISE_AHEAD - noise.shape[1])))[:, :need]
        seg = xp.unfold(1, NOISE_WIN, KNOT_HOP)  # (B, J, NOISE_WIN): knot j's window [80 j - 160, 80 j + 160)
        spec = torch.fft.rfft(seg * self.noise_win, NFFT)
        p = spec.real**2 + spec.imag**2
        band_avg = self.corr_basis / self.corr_basis.sum(1, keepdim=True)
        ratio = (p @ band_avg.T) / (self.noise_win**2).sum()
        return (-0.5 * torch.log(ratio.clamp_min(NOISE_FLOOR))) @ self.corr_basis

    def filter_ola(self, exc: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """Excitation (B, n) through per-knot filters (B, J = n/KNOT_HOP + 1, 257), cross-faded per sample."""
        b, n = exc.shape
        xp = F.pad(exc, (NFFT - KNOT_HOP, KNOT_HOP))
        seg = xp.unfold(1, NFFT, KNOT_HOP)  # (B, J, NFFT); segment j ends at sample p_j + KNOT_HOP
        y = torch.fft.irfft(torch.fft.rfft(seg) * spec, NFFT)[..., NFFT - SEG_OUT :] * self.tri
        # output block [p_j, p_j + HOP) = second half of knot j + first half of knot j + 1
        out = y[:, :-1, KNOT_HOP:] + y[:, 1:, :KNOT_HOP]
        return out.reshape(b, -1)[:, :n]

    def synthesize(self, feats: torch.Tensor, c0: torch.Tensor, noise: torch.Tensor,
                   state: dict | None = None) -> torch.Tensor:
        """(B, F, 20) features -> (B, 160 F) pre-emphasised signal (zero excitation before it).

        ``noise`` (B, >= 160 F): white noise excitation from sample 0; with ``noise_norm``, the
        ``NOISE_AHEAD`` samples after ``160 F`` (zero if absent) shape the last knot's filter.
        """
        b, f, _ = feats.shape
        raw, _ = self.frame_net(feats, state)
        lm_h, lm_n, period = self.knot_params(feats, raw)
        if self.cfg.lookahead:
            # the knot after the last frame belongs to the next frame: repeat the last one
            lm_h = torch.cat([lm_h, lm_h[:, -1:]], 1)
            lm_n = torch.cat([lm_n, lm_n[:, -1:]], 1)
            period = torch.cat([period, period[:, -1:]], 1)
        else:
            # knot 0 (sample 0) belongs to the frame before: take knot 1's values
            lm_h = torch.cat([lm_h[:, :1], lm_h], 1)
            lm_n = torch.cat([lm_n[:, :1], lm_n], 1)
            period = torch.cat([period[:, :1], period], 1)
        n = f * FRAME
        if self.cfg.noise_norm:
            lm_n = lm_n + self.noise_normalisation(noise, lm_n.shape[1])
        exc = self.excitation(period, n, c0)
        y_h = self.filter_ola(exc, self.min_phase(lm_h))
        y_n = self.filter_ola(noise[:, :n], self.min_phase(lm_n))
        return y_h + y_n

    # -- bookkeeping -----------------------------------------------------------
    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_second(self) -> float:
        """Inference FLOPs per second of audio (2 per MAC; real FFT of size N ~ 2.5 N log2 N)."""
        c, g = self.cfg.conv, self.cfg.gru
        macs = 3 * NB_FEATURES * c + 3 * c * c + 3 * (c + g) * g + (g + c) * self.n_out
        net = 2 * macs * (FS / FRAME)
        fft = 2.5 * NFFT * math.log2(NFFT)
        knots = FS / KNOT_HOP
        # per knot and filter: design (irfft, rfft, exp, irfft, taper, rfft), basis products, apply (rfft, irfft)
        per_filter = 6 * fft + 2 * NB_CORR * NBIN + 20 * NBIN + 6 * NBIN + 3 * SEG_OUT
        # noise normalisation per knot: window, rfft, power, band averages, log, spread back
        norm = (NOISE_WIN + fft + 3 * NBIN + 4 * NB_CORR * NBIN + 20 * NB_CORR) if self.cfg.noise_norm else 0
        env = 2 * NB_BANDS * NBIN * (FS / FRAME) + 2 * NB_BANDS * NB_BANDS * (FS / FRAME)
        pulses = 2 * PULSE_TAPS * 500 + 10 * FS  # at most 500 pulses/s; phase accumulation per sample
        return net + knots * (2 * per_filter + norm) + env + pulses + 2 * FS


def estimate_phase(history_pe: np.ndarray, period: float) -> float:
    """Phase ``c0`` (cycles) that puts the next pulse where the real signal's period continues.

    ``history_pe``: the last real pre-emphasised samples (at least one period).  The largest
    magnitude sample of the last period marks a pitch pulse at ``t`` samples before the end;
    the synthesis pulse lands ``PULSE_DELAY`` samples after its phase crossing, so the
    phase at the first new sample is ``(t - PULSE_DELAY) / period`` cycles past a pulse,
    i.e. ``c0 = frac((t + 1 - PULSE_DELAY) / period)``.
    """
    p = int(round(min(max(period, PITCH_MIN), PITCH_MAX)))
    seg = np.asarray(history_pe, np.float64)[-p:]
    t = len(seg) - 1 - int(np.argmax(np.abs(seg)))  # samples from that pulse to the last real sample
    return float(((t + 1 - PULSE_DELAY) / p) % 1.0)


class TorchEnvelopePostfilter(torch.nn.Module):
    """The runtime's envelope postfilter (``edge_dred.dsp.postfilter.EnvelopePostfilter``, numpy
    reference ``postfilter_reference.EnvelopePostfilterReference``) as a differentiable batch op (training only).

    Same windows, band analysis, clipped log gains, minimum-phase FIR design and per-frame
    cross-fade between the two filters; history before the first sample is zero (as a fresh
    runtime stream).  Lets a model be trained through the runtime's envelope correction.
    """

    def __init__(self, strength: float) -> None:
        super().__init__()
        from edge_dred.dsp.postfilter_reference import EXACT_NFFT, EnvelopePostfilterReference

        ref = EnvelopePostfilterReference(strength=strength)
        self.taps, self.half, self.lo, self.hi = ref.taps, ref._half_strength, ref._lo, ref._hi
        self.nfft = EXACT_NFFT
        for k, v in (("windows", ref._windows), ("w_scaled", ref._w_scaled), ("fold", ref._fold),
                     ("ramp", ref._ramp)):
            self.register_buffer(k, torch.from_numpy(np.ascontiguousarray(v)).float())

    def forward(self, e: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 160 T) pre-emphasised float output, (B, T, 18) linear target band energies + 1 -> (B, 160 T)."""
        b, n = e.shape
        t = n // FRAME
        h0 = FRAME + self.taps - 1
        seg = torch.nn.functional.pad(e, (h0, 0)).unfold(1, h0 + FRAME, FRAME)[:, :t]   # (B, T, 383)
        spec = torch.fft.rfft(seg[:, :, None, -2 * FRAME:] * self.windows, dim=-1)       # (B, T, 2, 161)
        bands = (spec.real ** 2 + spec.imag ** 2) @ self.w_scaled + 1.0
        g = torch.clamp(self.half * torch.log(target[:, :, None, :] / bands), self.lo, self.hi)
        s = torch.exp(torch.fft.rfft(g @ self.fold, n=self.nfft, dim=-1))                 # minimum phase
        h = torch.fft.irfft(s, n=self.nfft, dim=-1)[..., :self.taps]                      # (B, T, 2, taps)
        src = seg[:, :, FRAME:].unfold(-1, self.taps, 1)                                  # (B, T, 160, taps)
        a = torch.einsum("btki,btfi->btfk", src, h.flip(-1))                              # (B, T, 2, 160)
        return (a[:, :, 0] + self.ramp * (a[:, :, 1] - a[:, :, 0])).reshape(b, t * FRAME)
