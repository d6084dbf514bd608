"""Rate-distortion-optimised variational autoencoder (RDO-VAE) for DRED.

Follows the idea of Valin et al., "Low-Bitrate Redundancy Coding of Speech
Using a Rate-Distortion-Optimized Variational Autoencoder" (ICASSP 2023); the
code and sizes are our own and restricted to ops the int8 C kernels run
(dense, GRU in reset-after form, tanh/sigmoid).

Conventions (shared with ``edge_dred``; the runtime contract is in ``training/README.md``)
---------------------------------------------------------------------------------------
* Features: rows of ``edge_dred.dsp.features.compute_features`` (20 per 10 ms
  frame).  Networks see *normalised* features ``(f - feature_mean) /
  feature_std`` (per-dimension constants exported with the models).
* Encoder: one step per 20 ms.  Step ``j`` reads frames ``2j, 2j+1``
  (40 values, older frame first) and emits the latent ``z_j`` (dim
  :data:`LATENT_DIM`) describing frames ``2j-2 .. 2j+1`` and the decoder
  initial state ``s_j`` (dim :data:`STATE_DIM`).  Recurrent state: two GRU
  hidden vectors, explicit inputs/outputs of :meth:`RDOVAEEncoder.step`.
* Decoder: starts from ``s_t`` and runs backward: latent ``z_t`` gives 80
  values = frames ``2t+1, 2t, 2t-1, 2t-2`` (newest first, 20 values each),
  then ``z_{t-2}`` the 4 frames before, and so on.
* GRUs use PyTorch's gate layout: weights ``W_ih (3H, in)``, ``W_hh (3H, H)``,
  biases ``b_ih, b_hh``; gate order r, u(z), n;
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` (reset *after* the
  matmul); ``h' = (1 - u) * n + u * h``.
* Quantisation per the contract: ``k = deadzone_round(z * quant_scale[q, i],
  dead_zone[q, i])``, ``z_hat = k / quant_scale[q, i]``; entropy model
  ``P(k = 0) = p0``, ``P(|k| = m) = (1 - p0)(1 - decay) decay^(m - 1)`` for
  ``m >= 1`` with an equiprobable sign.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NB_FEATURES = 20
NB_CEPS = 18
ENC_FRAMES = 2          # feature frames consumed per encoder step (20 ms)
DEC_FRAMES = 4          # feature frames produced per decoder step (40 ms)
LATENT_DIM = 32
STATE_DIM = 32
QUANT_LEVELS = 16
MAX_CHUNKS = 26         # latents per packet (1.04 s)
MAX_ABS_K = 1023


@dataclass
class RDOVAEConfig:
    """Sizes and rate-loss settings (stored in checkpoints)."""

    latent_dim: int = LATENT_DIM
    state_dim: int = STATE_DIM
    quant_levels: int = QUANT_LEVELS
    enc_dense: int = 128
    enc_gru: int = 128
    dec_dense: int = 128
    dec_gru: int = 128
    init_hidden: int = 128
    lambda_min: float = 2e-4     # rate weight of q = 0 (finest)
    lambda_max: float = 1.04e-2  # rate weight of q = 15 (coarsest)

    def lambdas(self) -> torch.Tensor:
        """Log-uniform rate weights, one per quantiser level (q = 0 smallest)."""
        q = torch.arange(self.quant_levels, dtype=torch.float32)
        return self.lambda_min * (self.lambda_max / self.lambda_min) ** (q / (self.quant_levels - 1))


def gru_step(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One reset-after GRU step with explicit matmuls (same maths as ``nn.GRU``).

    Written out so the single-step graph converts to TFLite without a
    recurrent op and so the C kernels can mirror it line by line.
    """
    gi = F.linear(x, w_ih, b_ih)
    gh = F.linear(h, w_hh, b_hh)
    hs = h.shape[-1]
    r = torch.sigmoid(gi[..., :hs] + gh[..., :hs])
    u = torch.sigmoid(gi[..., hs:2 * hs] + gh[..., hs:2 * hs])
    n = torch.tanh(gi[..., 2 * hs:] + r * gh[..., 2 * hs:])
    return (1.0 - u) * n + u * h


def _gru_params(g: nn.GRU) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0


def _init_gru(g: nn.GRU) -> None:
    # Orthogonal recurrent weights help long backward decodes stay stable early on.
    for k in range(3):
        nn.init.orthogonal_(g.weight_hh_l0.data[k * g.hidden_size:(k + 1) * g.hidden_size])


class RDOVAEEncoder(nn.Module):
    """Causal encoder: 2 normalised frames per step -> latent z and state s."""

    def __init__(self, cfg: RDOVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.dense_in = nn.Linear(ENC_FRAMES * NB_FEATURES, cfg.enc_dense)
        self.gru1 = nn.GRU(cfg.enc_dense, cfg.enc_gru, batch_first=True)
        self.gru2 = nn.GRU(cfg.enc_dense + cfg.enc_gru, cfg.enc_gru, batch_first=True)
        cat = cfg.enc_dense + 2 * cfg.enc_gru
        self.dense_z = nn.Linear(cat, cfg.latent_dim)
        self.dense_s1 = nn.Linear(cat, cfg.init_hidden)
        self.dense_s2 = nn.Linear(cfg.init_hidden, cfg.state_dim)
        _init_gru(self.gru1)
        _init_gru(self.gru2)

    def _heads(self, x: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cat = torch.cat([x, h1, h2], -1)
        z = self.dense_z(cat)
        s = self.dense_s2(torch.tanh(self.dense_s1(cat)))
        return z, s

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over a sequence.

        Parameters
        ----------
        feats : torch.Tensor
            (B, 2T, 20) normalised features.

        Returns
        -------
        tuple of torch.Tensor
            ``z`` (B, T, D) and ``s`` (B, T, S), unquantised.
        """
        b, n, f = feats.shape
        x = feats.reshape(b, n // ENC_FRAMES, ENC_FRAMES * f)
        x = torch.tanh(self.dense_in(x))
        h1, _ = self.gru1(x)
        h2, _ = self.gru2(torch.cat([x, h1], -1))
        return self._heads(x, h1, h2)

    def step(self, frames: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One 20 ms step with explicit recurrent state (the exported graph).

        Parameters
        ----------
        frames : torch.Tensor
            (B, 40) normalised features: older frame then newer frame.
        h1, h2 : torch.Tensor
            (B, enc_gru) GRU states from the previous step (zeros at start).

        Returns
        -------
        tuple of torch.Tensor
            ``z`` (B, D), ``s`` (B, S), new ``h1``, new ``h2``.
        """
        x = torch.tanh(self.dense_in(frames))
        h1n = gru_step(x, h1, *_gru_params(self.gru1))
        h2n = gru_step(torch.cat([x, h1n], -1), h2, *_gru_params(self.gru2))
        z, s = self._heads(x, h1n, h2n)
        return z, s, h1n, h2n


class RDOVAEDecoder(nn.Module):
    """Backward decoder: state s then latents newest-first -> 4 frames each."""

    def __init__(self, cfg: RDOVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.init1 = nn.Linear(cfg.state_dim, cfg.init_hidden)
        self.init2 = nn.Linear(cfg.init_hidden, 2 * cfg.dec_gru)
        self.dense_in = nn.Linear(cfg.latent_dim, cfg.dec_dense)
        self.gru1 = nn.GRU(cfg.dec_dense, cfg.dec_gru, batch_first=True)
        self.gru2 = nn.GRU(cfg.dec_dense + cfg.dec_gru, cfg.dec_gru, batch_first=True)
        self.dense_out = nn.Linear(cfg.dec_dense + 2 * cfg.dec_gru, DEC_FRAMES * NB_FEATURES)
        _init_gru(self.gru1)
        _init_gru(self.gru2)

    def initial_state(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU states from the (dequantised) decoder state vector ``s`` (B, S)."""
        g = torch.tanh(self.init2(torch.tanh(self.init1(s))))
        hs = self.cfg.dec_gru
        return g[..., :hs], g[..., hs:]

    def forward(self, z_rev: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Decode latents given newest first.

        Parameters
        ----------
        z_rev : torch.Tensor
            (B, L, D) dequantised latents, newest first.
        s : torch.Tensor
            (B, S) dequantised state sent with the newest latent.

        Returns
        -------
        torch.Tensor
            (B, L, 80): per latent 4 normalised frames, newest first.
        """
        h1_0, h2_0 = self.initial_state(s)
        x = torch.tanh(self.dense_in(z_rev))
        h1, _ = self.gru1(x, h1_0.unsqueeze(0).contiguous())
        h2, _ = self.gru2(torch.cat([x, h1], -1), h2_0.unsqueeze(0).contiguous())
        return self.dense_out(torch.cat([x, h1, h2], -1))

    def step(self, z: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder step (reference for the C runtime): returns (80 values, h1, h2)."""
        x = torch.tanh(self.dense_in(z))
        h1n = gru_step(x, h1, *_gru_params(self.gru1))
        h2n = gru_step(torch.cat([x, h1n], -1), h2, *_gru_params(self.gru2))
        return self.dense_out(torch.cat([x, h1n, h2n], -1)), h1n, h2n


def deadzone_round(x: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """Contract rounding: ``sign(x) * floor(max(|x| - dz, 0) + 0.5)``."""
    return torch.sign(x) * torch.floor(torch.clamp(x.abs() - dz, min=0.0) + 0.5)


def soft_deadzone(x: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """Smooth stand-in for the dead-zone shift, ~``x - dz*sign(x)`` away from 0.

    Keeps a non-zero gradient inside the dead zone so latents trapped at zero
    can still move.
    """
    return x - dz * torch.tanh(x / (0.1 + dz))


class QuantStats(nn.Module):
    """Learned per (level, dim) scale, dead zone and Laplace parameters.

    Latents get one row per quantiser level; the state has a single row (the
    contract sends it with fixed tables).
    """

    def __init__(self, cfg: RDOVAEConfig) -> None:
        super().__init__()
        q, d, s = cfg.quant_levels, cfg.latent_dim, cfg.state_dim
        # Coarser levels start with smaller scales (fewer, larger steps).
        scale0 = 4.0 * (0.125 ** (torch.arange(q, dtype=torch.float32) / (q - 1)))
        inv_sp = lambda v: v + torch.log(-torch.expm1(-v))  # noqa: E731  softplus^-1
        self.z_scale = nn.Parameter(inv_sp(scale0)[:, None].repeat(1, d))
        self.z_dz = nn.Parameter(torch.full((q, d), -4.0))
        self.z_p0 = nn.Parameter(torch.zeros(q, d))
        self.z_decay = nn.Parameter(torch.zeros(q, d))
        self.z_rsoft = nn.Parameter(torch.zeros(q, d))
        self.s_scale = nn.Parameter(inv_sp(torch.full((s,), 2.0)))
        self.s_dz = nn.Parameter(torch.full((s,), -4.0))
        self.s_p0 = nn.Parameter(torch.zeros(s))
        self.s_decay = nn.Parameter(torch.zeros(s))
        self.s_rsoft = nn.Parameter(torch.zeros(s))

    @staticmethod
    def _squash(scale, dz, p0, decay, rsoft):
        eps = 1e-4
        return (F.softplus(scale) + 1e-3, F.softplus(dz),
                torch.sigmoid(p0).clamp(eps, 1 - eps), torch.sigmoid(decay).clamp(eps, 1 - eps),
                torch.sigmoid(rsoft).clamp(eps, 1 - eps))

    def latent(self, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(scale, dead_zone, p0, decay, r_soft) rows for level indices ``q`` (any shape)."""
        return self._squash(self.z_scale[q], self.z_dz[q], self.z_p0[q], self.z_decay[q], self.z_rsoft[q])

    def state(self) -> tuple[torch.Tensor, ...]:
        """(scale, dead_zone, p0, decay, r_soft) of the state vector."""
        return self._squash(self.s_scale, self.s_dz, self.s_p0, self.s_decay, self.s_rsoft)

    def tables(self) -> dict[str, np.ndarray]:
        """Contract tables as float32 arrays (names exactly as in the contract)."""
        with torch.no_grad():
            zs, zd, zp, zr, _ = self.latent(torch.arange(self.z_scale.shape[0]))
            ss, sd, sp, sr, _ = self.state()
        f = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        return {"quant_scale": f(zs), "dead_zone": f(zd), "p0": f(zp), "decay": f(zr),
                "state_quant_scale": f(ss), "state_dead_zone": f(sd), "state_p0": f(sp),
                "state_decay": f(sr)}


def soft_rate_bits(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Bits of continuous ``y`` under a unit-step discretised Laplace with ratio r."""
    return -torch.log2((1 - r) / (1 + r)) - y.abs() * torch.log2(r)


def hard_rate_bits(k: torch.Tensor, p0: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """Bits of integer ``k`` under the contract model (ideal code length, no escape)."""
    m = k.abs()
    nz = -(torch.log2(0.5 * (1 - p0)) + torch.log2(1 - decay) + (m - 1).clamp(min=0) * torch.log2(decay))
    return torch.where(m == 0, -torch.log2(p0), nz)


def quantize(x: torch.Tensor, scale: torch.Tensor, dz: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training quantiser.

    Returns
    -------
    tuple of torch.Tensor
        ``y`` soft-dead-zoned scaled value (for the soft rate), ``k`` the exact
        contract integers (no gradient), ``x_hard`` = k / scale with a
        straight-through gradient, ``x_noise`` = (y + U(-1/2, 1/2)) / scale.
    """
    xs = x * scale
    y = soft_deadzone(xs, dz)
    k = deadzone_round(xs, dz).clamp(-MAX_ABS_K, MAX_ABS_K).detach()
    x_hard = (y + (k - y).detach()) / scale
    x_noise = (y + (torch.rand_like(y) - 0.5)) / scale
    return y, k, x_hard, x_noise


class RDOVAE(nn.Module):
    """Encoder, decoder, quantiser statistics and feature normalisation."""

    def __init__(self, cfg: RDOVAEConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or RDOVAEConfig()
        self.encoder = RDOVAEEncoder(self.cfg)
        self.decoder = RDOVAEDecoder(self.cfg)
        self.stats = QuantStats(self.cfg)
        self.register_buffer("feature_mean", torch.zeros(NB_FEATURES))
        self.register_buffer("feature_std", torch.ones(NB_FEATURES))

    def set_normalization(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store per-dimension feature statistics (computed on training data)."""
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32))

    def normalize(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.feature_mean) / self.feature_std

    def denormalize(self, f: torch.Tensor) -> torch.Tensor:
        return f * self.feature_std + self.feature_mean


def feature_distortion(ref: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per-frame distortion in raw feature units (paper-style weighting).

    Cepstral MSE plus the relative pitch-period error weighted by voicing
    (squared true correlation, so unvoiced periods barely matter) plus a
    small correlation term.
    """
    ceps = ((out[..., :NB_CEPS] - ref[..., :NB_CEPS]) ** 2).mean(-1)
    period = ref[..., 18].clamp(min=16.0)
    pitch = 2.0 * (out[..., 18] - ref[..., 18]).abs() / period
    voiced = ref[..., 19].clamp(0.0, 1.0) ** 2
    corr = (out[..., 19] - ref[..., 19]) ** 2
    return ceps + (10.0 / 18.0) * pitch * voiced + (1.0 / 18.0) * corr


def chunk_indices(n_steps: int, chunk_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Latent and frame indices of backward decoder runs over one sequence.

    For each parity of encoder step the usable latents (step >= 1, so that all
    4 frames exist) are cut into runs of ``chunk_len`` starting from the
    newest.

    Returns
    -------
    tuple of numpy.ndarray
        ``zi`` (n, L) latent indices newest first and ``fi`` (n, L, 4) frame
        indices newest first.
    """
    runs = []
    for par in (0, 1):
        js = [j for j in range(n_steps - 1, 0, -1) if j % 2 == par]
        for c in range(len(js) // chunk_len):
            runs.append(js[c * chunk_len:(c + 1) * chunk_len])
    zi = np.asarray(runs, dtype=np.int64).reshape(-1, chunk_len)
    fi = np.stack([2 * zi + 1, 2 * zi, 2 * zi - 1, 2 * zi - 2], -1)
    return zi, fi


def count_params(m: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in m.parameters())


def config_from_dict(d: dict) -> RDOVAEConfig:
    """Rebuild a config saved with :func:`dataclasses.asdict`."""
    return RDOVAEConfig(**d)


def config_to_dict(cfg: RDOVAEConfig) -> dict:
    return asdict(cfg)


def ideal_code_bits(k: np.ndarray, p0: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """Code length in bits of integers ``k`` under the contract coder's model.

    Mirrors the contract closely: 15-bit probabilities (clamped to keep every
    symbol codable), a truncated geometric over m = 0..14 with an escape whose
    payload is an Elias-gamma code of ``m - 15``.
    """
    one = 1 << 15
    p0i = np.clip(np.round(p0 * one), 1, one - 1) / one
    dq = np.clip(np.round(decay * one), 1, one - 1) / one
    m = np.abs(k).astype(np.int64) - 1
    bits = np.where(k == 0, -np.log2(p0i), -np.log2(1 - p0i) + 1.0)
    mm = np.clip(m, 0, 15)
    pm = (1 - dq) * dq ** mm  # geometric mass of m (m < 15); the tail dq^15 is the escape
    esc = dq ** 15
    geo = np.where(m >= 15, -np.log2(np.maximum(esc, 1e-30)), -np.log2(np.maximum(pm, 1e-30)))
    eg = np.where(m >= 15, 2 * np.floor(np.log2(np.maximum(m - 15, 0) + 1)) + 1, 0)
    return np.where(k == 0, bits, bits + geo + eg)


LOG2E = 1.0 / math.log(2.0)
