"""Neural PLC feature predictor: next 10 ms feature frame from past frames.

Per 10 ms frame the model consumes one input vector and predicts the features
of the *next* frame.  The input is the 20 features of the current frame,
normalised with ``feat_mean``/``feat_std`` (buffers, foldable into the first
dense layer), plus a "lost" flag: for a received frame the real features and
flag 0; for a lost frame the model's own prediction for that frame and flag 1.
The prediction for frame ``t`` is used at run time only when frame ``t`` is
lost; the fade to silence after long losses is applied at run time.

Ops: Linear + tanh, two ``nn.GRUCell`` (reset-after form), Linear output.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

NB_FEATURES = 20


@dataclass
class PLCConfig:
    """Layer sizes of the PLC predictor (stored in checkpoints)."""

    dense_in: int = 96
    gru1: int = 128
    gru2: int = 128

    @classmethod
    def from_dict(cls, d: dict) -> "PLCConfig":
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class PLCPredictor(nn.Module):
    """dense(21 -> 96, tanh) -> GRU 128 -> GRU 128 -> dense(-> 20)."""

    def __init__(self, cfg: PLCConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or PLCConfig()
        self.register_buffer("feat_mean", torch.zeros(NB_FEATURES))
        self.register_buffer("feat_std", torch.ones(NB_FEATURES))
        self.dense_in = nn.Linear(NB_FEATURES + 1, cfg.dense_in)
        self.gru1 = nn.GRUCell(cfg.dense_in, cfg.gru1)
        self.gru2 = nn.GRUCell(cfg.gru1, cfg.gru2)
        self.out = nn.Linear(cfg.gru1 + cfg.gru2, NB_FEATURES)

    def init_state(self, b: int) -> list[torch.Tensor]:
        return [torch.zeros(b, self.cfg.gru1), torch.zeros(b, self.cfg.gru2)]

    def normalize(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.feat_mean) / self.feat_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.feat_std + self.feat_mean

    def step(self, z_in: torch.Tensor, lost: torch.Tensor, st: list[torch.Tensor]) -> torch.Tensor:
        """One frame: normalised input (B, 20), lost flag (B, 1) -> normalised next-frame prediction."""
        h = torch.tanh(self.dense_in(torch.cat([z_in, lost], -1)))
        st[0] = self.gru1(h, st[0])
        st[1] = self.gru2(st[0], st[1])
        return self.out(torch.cat([st[0], st[1]], -1))

    def run(self, feats: torch.Tensor, lost: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions for frames ``1..T`` of a sequence under a loss mask.

        Parameters
        ----------
        feats : (B, T, 20) real features (only read where not lost).
        lost : (B, T) bool; ``lost[:, 0]`` must be False (start after real audio).
        inputs : (B, T, 20), optional
            What the received frames are observed as (e.g. features of the
            Opus-decoded speech, as at run time); default ``feats``.

        Returns
        -------
        (B, T, 20) normalised predictions; row ``t`` predicts frame ``t`` from
        frames ``< t`` (row 0 is the prediction before any input: zeros).
        """
        b, t, _ = feats.shape
        z = self.normalize(feats if inputs is None else inputs)
        st = self.init_state(b)
        preds = [torch.zeros(b, NB_FEATURES)]
        for i in range(t - 1):
            li = lost[:, i : i + 1].float()
            # Lost frame: feed back our own prediction for it.
            zin = li * preds[-1] + (1.0 - li) * z[:, i]
            preds.append(self.step(zin, li, st))
        return torch.stack(preds, 1)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_second(self) -> float:
        macs = self.dense_in.in_features * self.dense_in.out_features + self.out.in_features * self.out.out_features
        for g in (self.gru1, self.gru2):
            macs += 3 * g.hidden_size * (g.input_size + g.hidden_size)
        return 2.0 * macs * 100
