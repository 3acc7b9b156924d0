"""PatchCore's network: locally aware patch features and nearest-neighbour scoring against a memory bank.

A pure ``torch.nn.Module`` (no training logic): the detector (``detector.py``) fills the memory
bank; this module embeds images and scores them against it. The arithmetic follows the paper
(Roth et al., CVPR 2022, section 3) and its reference code; see the package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.feature_extractor import FeatureExtractor
from ..components.nearest import DISTANCE_BLOCK_ELEMENTS, nearest_neighbours
from ..components.patch_embedding import patch_embedding

__all__ = ["DISTANCE_BLOCK_ELEMENTS", "PatchCoreModel", "nearest_neighbours"]  # the search lives in components


class PatchCoreModel(nn.Module):
    """Backbone, patch embedding, memory bank and scoring (section 3 of the paper).

    Parameters
    ----------
    backbone, layers, pretrained, weights_path
        The frozen feature extractor (see ``FeatureExtractor``).
    patch_size : int
        Side of the neighbourhood aggregated into each patch feature (odd).
    pretrain_embed_dim, target_embed_dim : int
        Per-layer and final patch-feature dimensions.
    num_neighbours : int
        Bank neighbours ``b`` of the image-score reweighting (1 disables it).
    blur_sigma : float
        Gaussian smoothing of the anomaly map in pixels (0 disables it).

    Buffers
    -------
    memory_bank : (M, target_embed_dim) float
        The normal patch features; empty until the detector fills it.
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
        num_neighbours: int,
        blur_sigma: float,
    ) -> None:
        super().__init__()
        self.patch_size = int(patch_size)
        self.pretrain_embed_dim = int(pretrain_embed_dim)
        self.target_embed_dim = int(target_embed_dim)
        self.num_neighbours = int(num_neighbours)
        self.blur_sigma = float(blur_sigma)
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.register_buffer("memory_bank", torch.empty(0, target_embed_dim))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features ``(B, h, w, target_embed_dim)`` of a batch of images.

        The backbone's maps through the shared :func:`~algorithms.components.patch_embedding.patch_embedding`
        (the reference code's ``unfold -> adaptive_avg_pool1d`` per layer, then over the layer-major
        concatenation).
        """
        return patch_embedding(
            self.extractor(images),
            patch_size=self.patch_size,
            pretrain_embed_dim=self.pretrain_embed_dim,
            target_embed_dim=self.target_embed_dim,
        )

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores ``(B,)`` and anomaly maps ``(B, H, W)`` at the input resolution.

        Patch score = distance to the nearest bank feature; image score = the largest patch
        score reweighted by eq. 7; map = patch scores upsampled (bilinear) and blurred.
        Raises ``RuntimeError`` while the memory bank is empty.
        """
        bank = self.memory_bank
        if bank.shape[0] == 0:
            raise RuntimeError("the memory bank is empty; the detector's pre_eval builds it")
        embedding = self.embed(images)
        b, h, w, d = embedding.shape
        distances, indices = nearest_neighbours(embedding.reshape(-1, d), bank, k=1)
        patch_scores = distances.reshape(b, h * w)
        scores = self.image_scores(embedding.reshape(b, h * w, d), patch_scores, indices.reshape(b, h * w))
        maps = F.interpolate(
            patch_scores.reshape(b, 1, h, w), size=images.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
        if self.blur_sigma > 0:
            maps = gaussian_blur(maps, self.blur_sigma)
        return scores, maps

    def image_scores(self, embedding: torch.Tensor, patch_scores: torch.Tensor, nn_index: torch.Tensor) -> torch.Tensor:
        """Largest patch score per image, reweighted by the paper's eq. 7.

        ``s = (1 - exp(s*) / sum_{m in N_b(m*)} exp|m_test* - m|) * s*``, where ``m_test*`` is the
        patch with the largest score ``s*``, ``m*`` its nearest bank feature and ``N_b(m*)`` the
        ``b = num_neighbours`` bank features nearest to ``m*`` (``m*`` included).
        """
        rows = torch.arange(patch_scores.shape[0], device=patch_scores.device)
        worst = patch_scores.argmax(dim=1)
        s_star = patch_scores[rows, worst]
        k = min(self.num_neighbours, self.memory_bank.shape[0])
        if k <= 1:
            return s_star
        test_feature = embedding[rows, worst]  # m_test*
        m_star = self.memory_bank[nn_index[rows, worst]]  # its nearest bank feature
        _, support = nearest_neighbours(m_star, self.memory_bank, k=k)  # N_b(m*), m* included
        support_dist = torch.linalg.vector_norm(self.memory_bank[support] - test_feature[:, None, :], dim=-1)
        # exp(s*) / sum exp(|m_test* - m|), computed stably.
        top = support_dist.max(dim=1, keepdim=True).values
        ratio = torch.exp(s_star - top[:, 0]) / torch.exp(support_dist - top).sum(dim=1)
        return (1.0 - ratio) * s_star
