"""My Algorithm's network: a pure ``torch.nn.Module`` (layers and forward pass, no training logic)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvAutoencoder"]


class ConvAutoencoder(nn.Module):
    """Three stride-2 convolutions down, three transposed convolutions up.

    Parameters
    ----------
    width : int
        Channels of the first layer (doubled at each level).

    ``forward`` maps ``(B, 3, S, S)`` images (``S`` a multiple of 8) to reconstructions of the
    same shape.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(w, 3, 4, stride=2, padding=1),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))
