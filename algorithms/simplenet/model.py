"""SimpleNet's network: frozen patch features, linear adaptor, discriminator, scoring.

A pure ``torch.nn.Module`` (no training loop; the detector trains it). Architecture of the
official code (github.com/DonaldRR/SimpleNet, ``simplenet.py``: ``Projection``,
``Discriminator``, ``_predict``); see the package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.feature_extractor import FeatureExtractor
from ..components.patch_embedding import patch_embedding

__all__ = ["Discriminator", "SimpleNetModel", "gaussian_feature_noise"]


def _xavier_linear(module: nn.Module) -> None:
    """Xavier-normal weights of every ``nn.Linear`` (official ``init_weight``); biases keep torch's init."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)


class Discriminator(nn.Module):
    """The normality discriminator: ``(N, D)`` features to ``(N,)`` scores (higher = more normal).

    ``layers - 1`` blocks ``Linear(-> hidden) -> BatchNorm1d -> LeakyReLU(0.2)``, then
    ``Linear(hidden -> 1, bias=False)`` (official ``Discriminator(in_planes, n_layers, hidden)``;
    the MVTec run: 2 layers, hidden 1024). Linear weights Xavier-normal.
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
        _xavier_linear(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(features))[:, 0]


def gaussian_feature_noise(
    features: torch.Tensor, std: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """I.i.d. ``N(0, std^2)`` noise shaped like ``features`` (SimpleNet eq. 4), from ``generator``.

    ``generator`` must live on the device of ``features`` (a CUDA generator for CUDA tensors);
    the same generator state gives the same noise.
    """
    noise = torch.randn(features.shape, generator=generator, device=features.device, dtype=features.dtype)
    return noise.mul_(std)


class SimpleNetModel(nn.Module):
    """Frozen backbone + patch embedding, adaptor and discriminator.

    Parameters
    ----------
    backbone, layers, pretrained, weights_path
        The frozen feature extractor (``FeatureExtractor``).
    patch_size, pretrain_embed_dim, target_embed_dim
        PatchCore's locally aware patch embedding (publication: 3, 1536, 1536).
    dsc_layers, dsc_hidden
        Discriminator depth and width (publication: 2, 1024).
    blur_sigma
        Gaussian smoothing of the upsampled map in pixels (publication: 4; 0 disables it).
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        pretrained: bool,
        weights_path: str | None,
        patch_size: int,
        pretrain_embed_dim: int,
        target_embed_dim: int,
        dsc_layers: int,
        dsc_hidden: int,
        blur_sigma: float,
    ) -> None:
        super().__init__()
        self.patch_size = int(patch_size)
        self.pretrain_embed_dim = int(pretrain_embed_dim)
        self.target_embed_dim = int(target_embed_dim)
        self.blur_sigma = float(blur_sigma)
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.adaptor = nn.Linear(target_embed_dim, target_embed_dim)
        _xavier_linear(self.adaptor)
        self.discriminator = Discriminator(target_embed_dim, layers=dsc_layers, hidden=dsc_hidden)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen locally aware patch features ``(B, h, w, target_embed_dim)`` (no gradients)."""
        with torch.no_grad():
            return patch_embedding(
                self.extractor(images),
                patch_size=self.patch_size,
                pretrain_embed_dim=self.pretrain_embed_dim,
                target_embed_dim=self.target_embed_dim,
            )

    def adapted_features(self, images: torch.Tensor) -> torch.Tensor:
        """Adapted patch features ``(B, h, w, D)`` (gradients flow into the adaptor)."""
        return self.adaptor(self.embed(images))

    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly scores ``(B, h, w)`` of the patches: ``-D(adaptor(embedding))``."""
        adapted = self.adapted_features(images)
        b, h, w, d = adapted.shape
        return -self.discriminator(adapted.reshape(-1, d)).reshape(b, h, w)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores ``(B,)`` (maximum patch score) and anomaly maps ``(B, H, W)`` at the input size.

        The map is the patch scores bilinearly upsampled (``align_corners=False``) and smoothed
        with a Gaussian of ``blur_sigma`` (official ``RescaleSegmentor``); the score is taken on
        the patch grid, before upsampling (official ``PatchMaker.score``).
        """
        patches = self.patch_scores(images)
        scores = patches.flatten(1).amax(dim=1)
        maps = F.interpolate(patches[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        if self.blur_sigma > 0:
            maps = gaussian_blur(maps, self.blur_sigma)
        return scores, maps
