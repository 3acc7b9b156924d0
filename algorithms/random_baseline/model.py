"""The random baseline's "network": seeded uniform noise of the right shapes."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RandomMaps"]


class RandomMaps(nn.Module):
    """Uniform random scores ``(B,)`` and maps ``(B, H, W)`` in ``[0, 1)``.

    The generator of each call is seeded by ``seed * 1_000_003 + calls`` (``calls`` counts the
    earlier calls, a buffer, so it survives ``save``/``load``): repeated runs are identical.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = int(seed)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.calls))
        self.calls += 1
        n, _, h, w = images.shape
        maps = torch.rand((n, h, w), generator=generator)
        scores = torch.rand((n,), generator=generator)
        return scores, maps
