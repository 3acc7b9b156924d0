"""FastFlow's networks: frozen backbone, trainable LayerNorm per scale, one 2-D flow per scale."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import FeatureExtractor
from ..components.flows import Flow2d

__all__ = ["FastflowModel"]


class FastflowModel(nn.Module):
    """Backbone features -> LayerNorm -> ``Flow2d`` per scale.

    Parameters
    ----------
    backbone : str
        timm model name (a CNN with ``features_only`` support).
    layers : sequence of str or int
        Feature levels, e.g. ``("layer1", "layer2", "layer3")``.
    input_size : int
        Square input side; fixes the LayerNorm shapes (as in the reference implementation).
    flow_steps, hidden_ratio, clamp, conv3x3_only
        Flow settings, see :class:`~algorithms.components.flows.Flow2d`.
    pretrained, weights_path
        Backbone weights, see :class:`~algorithms.components.feature_extractor.FeatureExtractor`.
    generator : torch.Generator, optional
        Seeds the flows' channel permutations.
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        input_size: int,
        flow_steps: int,
        hidden_ratio: float,
        clamp: float,
        conv3x3_only: bool,
        pretrained: bool,
        weights_path: str | None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.input_size = input_size
        with torch.no_grad():  # the feature sizes at this input size fix the LayerNorm shapes
            probe = self.extractor(torch.zeros(1, 3, input_size, input_size))
        sizes = [f.shape[-1] for f in probe]
        self.norms = nn.ModuleList(
            nn.LayerNorm([c, s, s], elementwise_affine=True) for c, s in zip(self.extractor.channels, sizes)
        )
        self.flows = nn.ModuleList(
            Flow2d(
                c,
                steps=flow_steps,
                hidden_ratio=hidden_ratio,
                clamp=clamp,
                conv3x3_only=conv3x3_only,
                generator=generator,
            )
            for c in self.extractor.channels
        )

    def forward(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per scale: ``(z (B, C, h, w), log_det (B,))``."""
        features = self.extractor(images)
        return [flow(norm(f)) for f, norm, flow in zip(features, self.norms, self.flows)]

    @staticmethod
    def negative_log_likelihood(outputs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Sum over scales of the batch-mean ``0.5 * sum(z**2) - log|det J|`` (nats per sample).

        Summed, as the official code (``FastFlow.forward``: ``loss += torch.mean(...)`` per scale)
        and anomalib's ``FastflowLoss``: with weight decay the sum, not the mean, sets the balance.
        """
        loss = outputs[0][0].new_zeros(())
        for z, log_det in outputs:
            loss = loss + torch.mean(0.5 * torch.sum(z**2, dim=(1, 2, 3)) - log_det)
        return loss

    def anomaly_map(self, outputs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Mean over scales of ``1 - exp(-0.5 * mean_c z**2)`` at input size, ``(B, H, W)`` in ``[0, 1]``."""
        maps = []
        for z, _ in outputs:
            log_prob = -0.5 * torch.mean(z**2, dim=1, keepdim=True)
            size = (self.input_size, self.input_size)
            up = F.interpolate(-torch.expm1(log_prob), size=size, mode="bilinear", align_corners=False)
            maps.append(up[:, 0])
        return torch.stack(maps).mean(dim=0)
