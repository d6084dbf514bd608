"""FARGAN-like neural vocoder restricted to ops our int8 C kernels can run.

Signal conventions (the runtime must replicate these exactly)
-------------------------------------------------------------
* Audio is 16 kHz mono; the model works on ``x = pcm_int16 / 32768``.
* The network synthesises the *pre-emphasised* signal
  ``e[n] = x[n] - PREEMPHASIS * x[n-1]`` (PREEMPHASIS = 0.85, the same constant the
  feature extractor uses), because its spectrum is flatter and a tanh output
  stage times one gain per subframe models it well.  Output PCM is recovered by
  de-emphasis ``x[n] = e[n] + PREEMPHASIS * x[n-1]`` and clipping to int16.
* Features: ``edge_dred.dsp.features.compute_features`` rows, one per 10 ms frame,
  frame ``i`` describing samples ``[160 i, 160 i + 160)``.  The vocoder
  synthesises frame ``i`` from features ``i, i-1, i-2`` (causal conv).
* Each frame is 4 subframes of 40 samples.  Per subframe the network sees the
  conditioning vector, the previous 40 output samples, 44 samples of its own
  past output around the pitch lag (integer lag ``round(period)``, 2 extra
  samples on each side so the net can interpolate fractional lags; positions
  that would fall into the not-yet-synthesised future wrap back by one period),
  and the log of the subframe gain.  Signal inputs are divided by the gain so
  they are level-independent.

Allowed op set: Linear (+tanh/sigmoid), causal conv over frames/subframes
implemented as Linear on a concatenated history, ``nn.GRUCell`` (reset-after
form), GLU ``x * sigmoid(W x + b)``, exp, concatenation, an embedding table
and gather at the pitch lag.

Continuation: ``SynthState`` holds everything the recurrent parts need; it is
primed from real past audio (``prime``) so synthesis can start after real
audio exactly as the receiver does when a loss begins.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
import torch.nn.functional as F

PREEMPHASIS = 0.85
FRAME = 160
SUBFRAME = 40
NB_SUB = FRAME // SUBFRAME
NB_FEATURES = 20
PITCH_MIN = 32
PITCH_MAX = 267
PRED_EXTRA = 2  # extra pitch-prediction taps on each side of the lag
PRED_SIZE = SUBFRAME + 2 * PRED_EXTRA
HIST = 320  # synthesised-signal history (>= PITCH_MAX + PRED_EXTRA + 1)
COND_CONV_K = 3


@dataclass
class VocoderConfig:
    """Layer sizes of the vocoder (stored in checkpoints)."""

    pembed_dim: int = 12
    cond_dense1: int = 64
    cond_conv: int = 128
    cond_size: int = 64  # per subframe
    fwc_size: int = 128
    gru_sizes: tuple[int, int, int] = (128, 112, 96)
    skip_size: int = 112

    @classmethod
    def from_dict(cls, d: dict) -> "VocoderConfig":
        d = dict(d)
        if "gru_sizes" in d:
            d["gru_sizes"] = tuple(d["gru_sizes"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gru_sizes"] = list(self.gru_sizes)
        return d


class GLU(nn.Module):
    """Gated linear unit ``x * sigmoid(W x + b)`` (same width in and out)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.gate = nn.Linear(n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


def pitch_lag(period: torch.Tensor) -> torch.Tensor:
    """Integer lag (long tensor) from the float pitch-period feature."""
    return torch.clamp(torch.round(period), PITCH_MIN, PITCH_MAX).long()


def pred_positions(lag: torch.Tensor) -> torch.Tensor:
    """Indices into a ``HIST``-long history of the 44 pitch-prediction taps.

    ``lag`` is (B,) long.  Tap ``j`` reads ``hist[HIST - lag + j - PRED_EXTRA]``;
    indices that would reach the future (``>= HIST``) wrap back by one lag,
    which is enough because ``SUBFRAME + PRED_EXTRA < 2 * PITCH_MIN``.
    """
    j = torch.arange(PRED_SIZE, device=lag.device) - PRED_EXTRA
    pos = HIST - lag[:, None] + j[None, :]
    return torch.where(pos >= HIST, pos - lag[:, None], pos)


class Vocoder(nn.Module):
    """FARGAN-like vocoder: frame-rate conditioning net + subframe signal net."""

    def __init__(self, cfg: VocoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or VocoderConfig()
        # Feature normalisation; set from training data, folded into the first
        # dense layer at export time.
        self.register_buffer("feat_mean", torch.zeros(NB_FEATURES))
        self.register_buffer("feat_std", torch.ones(NB_FEATURES))
        # --- conditioning network (runs once per 10 ms frame) ---
        self.pembed = nn.Embedding(PITCH_MAX - PITCH_MIN + 1, cfg.pembed_dim)
        self.cond_dense1 = nn.Linear(NB_FEATURES + cfg.pembed_dim, cfg.cond_dense1)
        self.cond_conv = nn.Linear(COND_CONV_K * cfg.cond_dense1, cfg.cond_conv)
        self.cond_dense2 = nn.Linear(cfg.cond_conv, NB_SUB * cfg.cond_size)
        # --- subframe network (runs every 40 samples) ---
        c = cfg.cond_size
        self.gain_dense = nn.Linear(c, 1)
        self.pgain_dense = nn.Linear(c, 4)
        sig_in = c + PRED_SIZE + SUBFRAME + 1
        self.sig_in = sig_in
        self.fwc = nn.Linear(2 * sig_in, cfg.fwc_size)  # conv k=2 over subframes
        self.fwc_glu = GLU(cfg.fwc_size)
        g1, g2, g3 = cfg.gru_sizes
        side = PRED_SIZE + SUBFRAME
        self.gru1 = nn.GRUCell(cfg.fwc_size + side, g1)
        self.gru2 = nn.GRUCell(g1 + side, g2)
        self.gru3 = nn.GRUCell(g2 + side, g3)
        self.glu1, self.glu2, self.glu3 = GLU(g1), GLU(g2), GLU(g3)
        self.skip_dense = nn.Linear(cfg.fwc_size + g1 + g2 + g3 + side, cfg.skip_size)
        self.skip_glu = GLU(cfg.skip_size)
        self.out_dense = nn.Linear(cfg.skip_size, SUBFRAME)
        with torch.no_grad():
            # Start near the typical pre-emphasised speech level.
            self.gain_dense.bias.fill_(-4.0)

    # ------------------------------------------------------------------
    def cond_frames(self, feats: torch.Tensor, hist1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame conditioning.

        Parameters
        ----------
        feats : (B, T, 20) raw features.
        hist1 : (B, K-1, cond_dense1) outputs of ``cond_dense1`` for the frames
            before ``feats[:, 0]`` (zeros when None: start of stream).

        Returns
        -------
        cond : (B, T, NB_SUB, cond_size) and the new conv history.
        """
        b, t, _ = feats.shape
        lag = pitch_lag(feats[..., 18]) - PITCH_MIN
        x = (feats - self.feat_mean) / self.feat_std
        h = torch.tanh(self.cond_dense1(torch.cat([x, self.pembed(lag)], -1)))
        if hist1 is None:
            hist1 = h.new_zeros(b, COND_CONV_K - 1, h.shape[-1])
        hh = torch.cat([hist1, h], 1)
        win = torch.cat([hh[:, k : k + t] for k in range(COND_CONV_K)], -1)
        h = torch.tanh(self.cond_conv(win))
        cond = torch.tanh(self.cond_dense2(h)).reshape(b, t, NB_SUB, self.cfg.cond_size)
        return cond, hh[:, -(COND_CONV_K - 1) :]

    def init_state(self, b: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """All-zero synthesis state for a batch of ``b`` streams."""
        z = lambda n: torch.zeros(b, n, device=device)  # noqa: E731
        g1, g2, g3 = self.cfg.gru_sizes
        return {
            "hist": z(HIST),  # pre-emphasised signal history
            "fwc_mem": z(self.sig_in),
            "h1": z(g1),
            "h2": z(g2),
            "h3": z(g3),
            "cond_hist": torch.zeros(b, COND_CONV_K - 1, self.cfg.cond_dense1, device=device),
            "deemph": z(1),
        }

    def subframe(self, cond: torch.Tensor, lag: torch.Tensor, st: dict[str, torch.Tensor]) -> torch.Tensor:
        """One 40-sample subframe; updates the recurrent entries of ``st``.

        Returns the synthesised pre-emphasised subframe (B, 40).  The caller
        appends either it or the real signal to ``st['hist']`` (free-running vs
        teacher forcing).
        """
        hist = st["hist"]
        gain = torch.exp(self.gain_dense(cond))  # (B,1)
        inv = 1.0 / gain
        pgain = torch.sigmoid(self.pgain_dense(cond))
        pred = torch.gather(hist, 1, pred_positions(lag)) * inv
        prev = hist[:, -SUBFRAME:] * inv
        x = torch.cat([cond, pred, prev, torch.log(gain)], -1)
        f = torch.tanh(self.fwc(torch.cat([st["fwc_mem"], x], -1)))
        st["fwc_mem"] = x
        f = self.fwc_glu(f)
        h1 = self.gru1(torch.cat([f, pgain[:, 0:1] * pred, prev], -1), st["h1"])
        o1 = self.glu1(h1)
        h2 = self.gru2(torch.cat([o1, pgain[:, 1:2] * pred, prev], -1), st["h2"])
        o2 = self.glu2(h2)
        h3 = self.gru3(torch.cat([o2, pgain[:, 2:3] * pred, prev], -1), st["h3"])
        o3 = self.glu3(h3)
        st["h1"], st["h2"], st["h3"] = h1, h2, h3
        s = torch.tanh(self.skip_dense(torch.cat([f, o1, o2, o3, pgain[:, 3:4] * pred, prev], -1)))
        s = self.skip_glu(s)
        return torch.tanh(self.out_dense(s)) * gain

    @staticmethod
    def push(st: dict[str, torch.Tensor], sig: torch.Tensor) -> None:
        """Append a subframe of pre-emphasised signal to the history."""
        st["hist"] = torch.cat([st["hist"][:, sig.shape[1] :], sig], 1)

    def run(
        self,
        feats: torch.Tensor,
        st: dict[str, torch.Tensor],
        target: torch.Tensor | None = None,
        n_teacher: int = 0,
    ) -> torch.Tensor:
        """Synthesise ``T`` frames.

        Parameters
        ----------
        feats : (B, T, 20) features for the frames to synthesise.
        st : state from ``init_state``/``prime`` (updated in place).
        target : (B, T*160) real pre-emphasised signal, required when
            ``n_teacher > 0``.
        n_teacher : number of leading frames run teacher-forced (the real
            signal, not the output, is fed back).

        Returns
        -------
        (B, T*160) synthesised pre-emphasised signal.
        """
        b, t, _ = feats.shape
        cond, st["cond_hist"] = self.cond_frames(feats, st["cond_hist"])
        lags = pitch_lag(feats[..., 18])
        outs = []
        for i in range(t):
            for k in range(NB_SUB):
                y = self.subframe(cond[:, i, k], lags[:, i], st)
                outs.append(y)
                if i < n_teacher:
                    assert target is not None
                    a = (i * NB_SUB + k) * SUBFRAME
                    self.push(st, target[:, a : a + SUBFRAME])
                else:
                    self.push(st, y)
        return torch.cat(outs, 1)

    def prime(self, feats: torch.Tensor, sig_pe: torch.Tensor, st: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced priming on real audio.

        ``sig_pe`` is the real pre-emphasised signal (B, HIST + T*160): its
        first ``HIST`` samples fill the history, the remaining ``T`` frames are
        run teacher-forced with ``feats`` (B, T, 20) so the GRU states match.
        """
        b = feats.shape[0]
        if st is None:
            st = self.init_state(b, feats.device)
        st["hist"] = sig_pe[:, :HIST]
        t = feats.shape[1]
        if t:
            self.run(feats, st, sig_pe[:, HIST:], n_teacher=t)
        return st

    # ------------------------------------------------------------------
    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_second(self) -> float:
        """Inference FLOPs/s (2 per MAC) of the matrix products at 16 kHz."""
        cfg = self.cfg
        frame_macs = sum(
            m.in_features * m.out_features for m in (self.cond_dense1, self.cond_conv, self.cond_dense2)
        )
        sub_macs = 0
        for m in self.modules():
            if isinstance(m, nn.Linear) and m not in (self.cond_dense1, self.cond_conv, self.cond_dense2):
                sub_macs += m.in_features * m.out_features
            elif isinstance(m, nn.GRUCell):
                sub_macs += 3 * m.hidden_size * (m.input_size + m.hidden_size)
        del cfg
        return 2.0 * (frame_macs * 100 + sub_macs * 400)


def preemphasis(x: torch.Tensor, mem: torch.Tensor | None = None) -> torch.Tensor:
    """``e[n] = x[n] - PREEMPHASIS x[n-1]`` along the last axis (mem = x[-1] before)."""
    prev = torch.cat([mem if mem is not None else torch.zeros_like(x[..., :1]), x[..., :-1]], -1)
    return x - PREEMPHASIS * prev


def deemphasis(e: torch.Tensor, mem: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`preemphasis` (IIR; done in numpy-speed via lfilter)."""
    import numpy as np
    from scipy.signal import lfilter

    arr = e.detach().cpu().numpy().astype(np.float64)
    zi = None if mem is None else (PREEMPHASIS * mem.detach().cpu().numpy().astype(np.float64))
    if zi is None:
        y = lfilter([1.0], [1.0, -PREEMPHASIS], arr, axis=-1)
    else:
        y, _ = lfilter([1.0], [1.0, -PREEMPHASIS], arr, axis=-1, zi=zi.reshape(arr.shape[:-1] + (1,)))
    return torch.from_numpy(y.astype(np.float32))
