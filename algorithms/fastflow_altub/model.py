"""AltUB's network: FastFlow's model followed by a learnable per-channel Gaussian base distribution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..fastflow.model import FastflowModel

__all__ = ["AltubModel", "LearnedBase"]

Outputs = list[tuple[torch.Tensor, torch.Tensor]]


class LearnedBase(nn.Module):
    """A diagonal Gaussian ``N(mu_c, sigma_c^2)`` per scale and channel (AltUB's "multi-channel mean/var").

    Parameters ``means[i]`` and ``log_stds[i]`` of shape ``(C_i,)``, sized from the flows' channel
    counts, initialised to the standard normal (0 and 0). :meth:`standardise` expresses the flows'
    latents in this base: ``z' = (z - mu) / sigma`` and ``log|det J'| = log|det J| - h w sum_c log sigma_c``,
    so that FastFlow's standard-normal NLL ``0.5 sum z'^2 - log|det J'|`` is exactly AltUB's
    ``0.5 sum ((z - mu) / sigma)^2 + sum log sigma - log|det J|`` (Kim et al. 2022, sec. 3).
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.means = nn.ParameterList(nn.Parameter(torch.zeros(int(c))) for c in channels)
        self.log_stds = nn.ParameterList(nn.Parameter(torch.zeros(int(c))) for c in channels)

    def standardise(self, outputs: Outputs) -> Outputs:
        """Per scale ``(z (B, C, h, w), log_det (B,))`` -> ``(z', log_det')`` in the learned base."""
        if len(outputs) != len(self.means):
            raise ValueError(f"expected {len(self.means)} scales, got {len(outputs)}")
        standardised = []
        for (z, log_det), mean, log_std in zip(outputs, self.means, self.log_stds):
            z = (z - mean.view(1, -1, 1, 1)) * torch.exp(-log_std).view(1, -1, 1, 1)
            standardised.append((z, log_det - z.shape[-2] * z.shape[-1] * log_std.sum()))
        return standardised


class AltubModel(nn.Module):
    """``FastflowModel`` (unchanged) with a :class:`LearnedBase`; the same interface as FastFlow's model.

    ``forward`` returns the standardised ``(z', log_det')`` per scale, and ``negative_log_likelihood``
    and ``anomaly_map`` are FastFlow's own applied to them: the loss is AltUB's NLL and the map
    FastFlow's map of the standardised latents (the paper's inference).
    """

    def __init__(self, flow: FastflowModel) -> None:
        super().__init__()
        self.flow = flow
        self.base = LearnedBase(flow.extractor.channels)

    @property
    def extractor(self):
        return self.flow.extractor

    def forward(self, images: torch.Tensor) -> Outputs:
        return self.base.standardise(self.flow(images))

    def negative_log_likelihood(self, outputs: Outputs) -> torch.Tensor:
        return self.flow.negative_log_likelihood(outputs)

    def anomaly_map(self, outputs: Outputs) -> torch.Tensor:
        return self.flow.anomaly_map(outputs)
