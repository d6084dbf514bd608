"""The artifact detector network (PyTorch side; exported to int8 TFLite).

Inputs are the front end of :mod:`edge_dred.artifacts.frontend`: a 10 ms frame
sequence ``(B, SEQ_FRAMES, SEQ_CHANNELS)`` and a global vector
``(B, GLOBAL_DIM)``.  Three 1-D convolutions over time (the last two strided)
pooled by mean and max (clicks are local, hum and hiss are everywhere), a
dense branch for the global vector, and a 2-layer head with one sigmoid per
defect (hum, hiss, distortion, clicks): several can be on at once, and "none"
is all of them off.
"""
from __future__ import annotations

import torch
from torch import nn

from edge_dred.artifacts.frontend import GLOBAL_DIM, SEQ_CHANNELS

N_DEFECTS = 4


class ArtifactNet(nn.Module):
    def __init__(self, ch: int = 64, hidden: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(SEQ_CHANNELS, ch, 5, padding=2), nn.BatchNorm1d(ch), nn.ReLU(),
            nn.Conv1d(ch, ch, 3, stride=2, padding=1), nn.BatchNorm1d(ch), nn.ReLU(),
            nn.Conv1d(ch, ch, 3, stride=2, padding=1), nn.BatchNorm1d(ch), nn.ReLU(),
        )
        self.glob = nn.Sequential(nn.Linear(GLOBAL_DIM, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * ch + hidden, hidden), nn.ReLU(), nn.Linear(hidden, N_DEFECTS))

    def forward(self, seq: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """Logits (B, 4) of hum, hiss, distortion, clicks."""
        h = self.conv(seq.transpose(1, 2))
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.head(torch.cat([pooled, self.glob(glob)], dim=1))


class ArtifactExport(nn.Module):
    """The exported graph: sigmoid scores instead of logits."""

    def __init__(self, net: ArtifactNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, seq: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(seq, glob))


def n_weights(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
