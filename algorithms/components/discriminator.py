"""The patch discriminator of SimpleNet and GLASS: an MLP from a patch feature to one score.

SimpleNet (Liu et al., CVPR 2023, section 3.4; github.com/DonaldRR/SimpleNet ``Discriminator``)
and GLASS (Chen et al., ECCV 2024, which builds on it; github.com/cqylunlun/GLASS
``Discriminator``) share the architecture: ``layers - 1`` blocks ``Linear(-> hidden) ->
BatchNorm1d -> LeakyReLU(0.2)``, then ``Linear(hidden -> 1, bias=False)``; every ``nn.Linear``
weight Xavier-normal. SimpleNet reads the raw output as a *normality* score; GLASS puts a
``Sigmoid`` on it and reads an *anomaly* probability (the caller applies it).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Discriminator", "xavier_normal_linear"]


def xavier_normal_linear(module: nn.Module) -> None:
    """Xavier-normal weights of every ``nn.Linear`` in ``module`` (the official ``init_weight``);
    biases keep torch's default initialisation."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)


class Discriminator(nn.Module):
    """``(N, D)`` features to ``(N,)`` raw scores (see the module docstring).

    Parameters
    ----------
    in_dim : int
        Feature dimension ``D``.
    layers : int
        Number of Linear layers (publication: 2; 1 is a single linear map).
    hidden : int
        Width of the hidden blocks (publication: 1024).
    """

    def __init__(self, in_dim: int, *, layers: int = 2, hidden: int = 1024) -> None:
        super().__init__()
        if layers < 1 or hidden < 1 or in_dim < 1:
            raise ValueError(f"Discriminator: layers, hidden and in_dim must be positive, got {layers}, {hidden}, "
                             f"{in_dim}")  # fmt: skip
        blocks = []
        width = in_dim
        for _ in range(layers - 1):
            blocks.append(nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)))
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.tail = nn.Linear(width, 1, bias=False)
        xavier_normal_linear(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(features))[:, 0]
