"""Reverse Distillation networks: frozen encoder, one-class bottleneck embedding, de-ResNet decoder.

The trainable one-class bottleneck embedding (OCBE) and the de-ResNet decoder are shared
building blocks (``algorithms/components/distillation.py``, where their layout and its agreement
with anomalib's modules are described); this module assembles them with the frozen encoder and
defines RD4AD's loss and anomaly map.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.distillation import (
    BLOCK_KINDS,
    OneClassBottleneck,
    ReverseDecoder,
    cosine_distance_map,
    global_cosine_loss,
)
from ..components.feature_extractor import FeatureExtractor

__all__ = ["ReverseDistillationModel", "cosine_distance"]


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``1 - cos`` along channels: ``(B, C, h, w) x 2 -> (B, h, w)``."""
    return 1.0 - F.cosine_similarity(a, b, dim=1)


class ReverseDistillationModel(nn.Module):
    """Frozen teacher encoder, trainable OCBE + student decoder.

    Parameters
    ----------
    backbone, layers, pretrained, weights_path
        The teacher encoder (three levels), see ``FeatureExtractor``.
    block : {"auto", "basic", "bottleneck"}
        Residual block of bottleneck and decoder; ``"auto"`` picks bottleneck blocks for encoders
        whose last level has at least 1024 channels (ResNet-50 family) and basic blocks otherwise.
    bottleneck_blocks : int, optional
        OCBE depth (default 3 for bottleneck blocks, 2 for basic ones).
    decoder_blocks : sequence of 3 int, optional
        Blocks per decoder stage, deepest first (default ``(3, 4, 6)`` / ``(2, 2, 2)``).
    width_factor : int, optional
        Bottleneck inner width multiplier (default 2 for ``wide_*`` backbones, else 1).
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        pretrained: bool,
        weights_path: str | None,
        block: str = "auto",
        bottleneck_blocks: int | None = None,
        decoder_blocks: Sequence[int] | None = None,
        width_factor: int | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != 3:
            raise ValueError(f"reverse distillation needs exactly 3 encoder levels, got {list(layers)}")
        self.encoder = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        channels = self.encoder.channels
        reductions = self.encoder.reductions
        if any(r2 != 2 * r1 for r1, r2 in itertools.pairwise(reductions)):
            raise ValueError(f"encoder levels must halve the resolution each time, got reductions {reductions}")
        if block == "auto":
            block = "bottleneck" if channels[2] >= 1024 else "basic"
        if block not in BLOCK_KINDS:
            raise ValueError(f"block must be 'auto' or one of {BLOCK_KINDS}, got {block!r}")
        deep = block == "bottleneck"
        bottleneck_blocks = bottleneck_blocks if bottleneck_blocks is not None else (3 if deep else 2)
        decoder_blocks = tuple(decoder_blocks) if decoder_blocks is not None else ((3, 4, 6) if deep else (2, 2, 2))
        if bottleneck_blocks < 1 or len(decoder_blocks) != 3 or min(decoder_blocks) < 1:
            raise ValueError(
                f"bottleneck_blocks must be >= 1 and decoder_blocks three ints >= 1, got "
                f"{bottleneck_blocks} and {list(decoder_blocks)}"
            )
        if width_factor is None:
            width_factor = 2 if backbone.startswith("wide_") else 1
        self.reduction = reductions[2] * 2  # the bottleneck's stride
        self.bottleneck = OneClassBottleneck(channels, blocks=bottleneck_blocks, kind=block, width_factor=width_factor)
        self.decoder = ReverseDecoder(channels, blocks=decoder_blocks, kind=block, width_factor=width_factor)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return ``(teacher_features, student_features)``, three levels each, same shapes."""
        teacher = self.encoder(images)
        student = self.decoder(self.bottleneck(teacher))
        return teacher, student

    @staticmethod
    def loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
        """Sum over levels of the batch mean of ``1 - cos`` between whole flattened feature maps."""
        return global_cosine_loss(teacher, student)

    @staticmethod
    def anomaly_map(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: int) -> torch.Tensor:
        """Sum over levels of per-pixel ``1 - cos``, bilinearly upsampled to ``size`` (unsmoothed)."""
        return cosine_distance_map(teacher, student, size)
