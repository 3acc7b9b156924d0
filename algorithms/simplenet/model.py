"""SimpleNet's network: frozen patch features, linear adaptor, discriminator, scoring.

A pure ``torch.nn.Module`` (no training loop; the detector trains it). Architecture of the
official code (github.com/DonaldRR/SimpleNet, ``simplenet.py``: ``Projection``,
``Discriminator``, ``_predict``); see the package docstring. The discriminator is the shared
``components.discriminator.Discriminator`` (GLASS uses it too), re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.discriminator import Discriminator, xavier_normal_linear
from ..components.feature_extractor import FeatureExtractor
from ..components.patch_embedding import patch_embedding

__all__ = ["Discriminator", "SimpleNetModel", "gaussian_feature_noise"]


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
        xavier_normal_linear(self.adaptor)
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
