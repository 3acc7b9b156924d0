"""GLASS's network and its two anomaly syntheses (pure functions and one ``nn.Module``).

Architecture of the official code (github.com/cqylunlun/GLASS, MIT, ``glass.py``: ``Projection``,
``Discriminator``, ``_train_discriminator``, ``_predict``; ``perlin.py``; ``datasets/mvtec.py``),
re-implemented from ``shared/reference/algorithms-next.md`` section B2 and the paper (Chen et
al., "A Unified Anomaly Synthesis Strategy with Gradient Ascent for Industrial Anomaly Detection
and Localization", ECCV 2024, sections 3.2-3.5):

* :class:`GlassModel`: frozen backbone + PatchCore's patch embedding (as SimpleNet), a linear
  projection and the shared discriminator with a sigmoid (anomaly probability);
* :func:`las_masks`, :func:`blend_local_anomalies`, :func:`draw_blend_factors`,
  :func:`estimate_foreground`: local anomaly synthesis (LAS) in image space;
* :func:`truncated_projection`, :func:`global_anomaly_losses`: global anomaly synthesis (GAS), the
  gradient ascent in feature space with its truncated projection;
* :func:`hard_focal_loss`: the focal loss on the hardest half of the LAS points.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.discriminator import Discriminator, xavier_normal_linear
from ..components.feature_extractor import FeatureExtractor
from ..components.losses import binary_focal_loss
from ..components.patch_embedding import patch_embedding
from ..components.perlin import perlin_noise
from ..components.training import quantile

__all__ = [
    "DISTRIBUTIONS",
    "GlassModel",
    "blend_local_anomalies",
    "draw_blend_factors",
    "estimate_foreground",
    "global_anomaly_losses",
    "hard_focal_loss",
    "las_masks",
    "truncated_projection",
]

#: The two GAS/LAS variants of the paper (section 3.4): the official code's ``svd`` 0 and 1.
DISTRIBUTIONS = ("manifold", "hypersphere")


class GlassModel(nn.Module):
    """Frozen backbone + patch embedding, projection and discriminator; scoring.

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
    blur_border
        Border of the smoothing: ``"scipy"`` (the official ``ndimage.gaussian_filter``) or
        ``"reflect"`` (torch's reflect padding, anomalib 2.7's ``RescaleSegmentor``).
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
        blur_border: str = "scipy",
    ) -> None:
        super().__init__()
        self.blur_border = blur_border
        self.patch_size = int(patch_size)
        self.pretrain_embed_dim = int(pretrain_embed_dim)
        self.target_embed_dim = int(target_embed_dim)
        self.blur_sigma = float(blur_sigma)
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.projection = nn.Linear(target_embed_dim, target_embed_dim)  # official pre_proj = 1
        xavier_normal_linear(self.projection)
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

    def projected_features(self, images: torch.Tensor) -> torch.Tensor:
        """Projected patch features ``(B, h, w, D)`` (gradients flow into the projection)."""
        return self.projection(self.embed(images))

    def anomaly_probability(self, features: torch.Tensor) -> torch.Tensor:
        """``sigmoid(D(features))`` of ``(N, D)`` projected features: ``(N,)`` anomaly probabilities."""
        return torch.sigmoid(self.discriminator(features))

    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly probabilities ``(B, h, w)`` of the patches."""
        features = self.projected_features(images)
        b, h, w, d = features.shape
        return self.anomaly_probability(features.reshape(-1, d)).reshape(b, h, w)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores ``(B,)`` (the largest patch probability) and maps ``(B, H, W)`` at the input size.

        The map is the patch probabilities bilinearly upsampled (``align_corners=False``) and
        smoothed with a Gaussian of ``blur_sigma`` (scipy's ``gaussian_filter``, as the official
        ``RescaleSegmentor``); the score is taken on the patch grid (official ``PatchMaker.score``).
        """
        patches = self.patch_scores(images)
        scores = patches.flatten(1).amax(dim=1)
        maps = F.interpolate(patches[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        if self.blur_sigma > 0:
            maps = gaussian_blur(maps, self.blur_sigma, border=self.blur_border)
        return scores, maps


# -- local anomaly synthesis (LAS) ---------------------------------------------------------------


def _perlin_field(size: int, generator: torch.Generator, threshold: float) -> torch.Tensor:
    """One binarised, randomly rotated Perlin field ``(size, size)`` (lattice ``2**k``, k in 0..5)."""
    return (perlin_noise(size, size, generator=generator, rotate=True) > threshold).float()


def las_masks(
    n: int,
    size: int,
    grid: int,
    *,
    generator: torch.Generator,
    threshold: float = 0.5,
    foreground: torch.Tensor | None = None,
    max_tries: int = 50,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LAS masks: pixel masks ``(n, 1, size, size)`` and feature masks ``(n, 1, grid, grid)``, 0/1.

    Per image (official ``perlin_mask``): two binarised Perlin fields (threshold 0.5, random
    rotation in ``[-90, 90]`` degrees, lattice ``2**k`` per axis, ``k`` in 0..5) and a uniform
    draw ``u``: ``u > 2/3`` their union, ``1/3 < u <= 2/3`` their intersection, else the first
    alone; times the foreground mask; the feature mask is its max-pooling to the ``grid`` (8 x 8
    windows at stride 8 for WRN50-2 layer 2). Drawn again until the feature mask is not empty.
    After ``max_tries`` empty draws with a foreground mask (an empty or tiny foreground) the
    foreground is ignored for that image (the official loop would never end).

    Parameters
    ----------
    n, size, grid : int
        Number of masks, image side and feature-grid side.
    generator : torch.Generator
        CPU generator supplying every random number.
    threshold : float
        Binarisation threshold of the noise (publication: 0.5).
    foreground : torch.Tensor, optional
        ``(n, 1, size, size)`` 0/1 foreground masks (official ``fg=1``); ``None``: everywhere.
    max_tries : int
        Draws with the foreground before it is ignored.
    """
    if n < 0 or size < 1 or grid < 1 or grid > size:
        raise ValueError(f"las_masks: need n >= 0 and 1 <= grid <= size, got {n}, {grid}, {size}")
    if foreground is not None and tuple(foreground.shape) != (n, 1, size, size):
        raise ValueError(f"las_masks: foreground must be ({n}, 1, {size}, {size}), got {tuple(foreground.shape)}")
    pixel = torch.zeros(n, 1, size, size)
    feature = torch.zeros(n, 1, grid, grid)
    for i in range(n):
        tries = 0
        while True:
            first = _perlin_field(size, generator, threshold)
            second = _perlin_field(size, generator, threshold)
            u = float(torch.rand((), generator=generator))
            if u > 2 / 3:
                mask = ((first + second) > 0).float()
            elif u > 1 / 3:
                mask = first * second
            else:
                mask = first
            if foreground is not None and tries < max_tries:
                mask = mask * foreground[i, 0].cpu().float()
            tries += 1
            pooled = F.adaptive_max_pool2d(mask[None, None], grid)[0, 0]
            if pooled.max() > 0:
                break
        pixel[i, 0], feature[i, 0] = mask, pooled
    return pixel, feature


def draw_blend_factors(
    n: int, generator: torch.Generator, *, mean: float = 0.5, std: float = 0.1, low: float = 0.2, high: float = 0.8
) -> torch.Tensor:
    """``(n,)`` blend factors ``beta ~ N(mean, std^2)`` clipped to ``[low, high]`` (official 0.5, 0.1, 0.2, 0.8)."""
    return (mean + std * torch.randn(n, generator=generator)).clamp(low, high)


def blend_local_anomalies(
    images: torch.Tensor, textures: torch.Tensor, masks: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """LAS images ``x (1 - m) + (1 - beta) t m + beta x m`` (paper eq. 9; official ``datasets/mvtec.py``).

    ``images`` and ``textures`` ``(B, 3, S, S)`` on one scale (the blend is affine with weights
    summing to 1, so blending ImageNet-normalised images, as the official code does, equals
    normalising the blend of ``[0, 1]`` images); ``masks`` ``(B, 1, S, S)``; ``beta`` ``(B,)``.
    """
    beta = beta.to(images.device, images.dtype).view(-1, 1, 1, 1)
    masks = masks.to(images.device, images.dtype)
    textures = textures.to(images.device, images.dtype)
    return images * (1 - masks) + (1 - beta) * textures * masks + beta * images * masks


def estimate_foreground(images: torch.Tensor, *, threshold: float = 0.1, min_fraction: float = 0.01) -> torch.Tensor:
    """Foreground masks ``(B, 1, S, S)`` estimated from ``[0, 1]`` RGB images (our fallback).

    The official code reads binarised foreground images that its authors made per category (as
    BGAD); the harness has no such files. Estimate: a pixel is foreground when its RGB distance
    to the median colour of the image's one-pixel border exceeds ``threshold`` (objects on a
    plain background). A mask covering less than ``min_fraction`` of the image is replaced by
    the whole image (no restriction), as is done for texture categories.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"estimate_foreground: expected (B, 3, S, S) images, got {tuple(images.shape)}")
    border = torch.cat(
        [images[..., 0, :], images[..., -1, :], images[..., 1:-1, 0], images[..., 1:-1, -1]], dim=-1
    )  # (B, 3, P)
    background = border.median(dim=-1).values[..., None, None]  # (B, 3, 1, 1)
    masks = ((images - background).norm(dim=1, keepdim=True) > threshold).float()
    small = masks.mean(dim=(1, 2, 3)) < min_fraction
    masks[small] = 1.0
    return masks


# -- global anomaly synthesis (GAS) and the losses -----------------------------------------------


def truncated_projection(points: torch.Tensor, anchors: torch.Tensor, low, high) -> torch.Tensor:
    """Rescale ``points - anchors`` (rows of ``(N, D)``) so that its norm lies in ``[low, high]``.

    ``anchors + clamp(|h|, low, high) / (|h| + 1e-10) * h`` with ``h = points - anchors`` (the
    official truncated projection; differentiable, as there). ``low``/``high``: floats or 0-d or
    ``(1,)`` tensors.
    """
    h = points - anchors
    norm = h.norm(dim=1)
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        low = torch.as_tensor(low, device=norm.device, dtype=norm.dtype)
        high = torch.as_tensor(high, device=norm.device, dtype=norm.dtype)
        alpha = torch.minimum(torch.maximum(norm, low), high)
    else:
        alpha = norm.clamp(low, high)
    return anchors + (alpha / (norm + 1e-10))[:, None] * h


def global_anomaly_losses(
    score_fn,
    true: torch.Tensor,
    noise: torch.Tensor,
    *,
    steps: int = 20,
    step_size: float = 0.001,
    project_every: int = 5,
    distribution: str = "manifold",
    center: torch.Tensor | None = None,
    radius: torch.Tensor | None = None,
    manifold_radius: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAS: the BCE terms ``(BCE(D(true), 0), BCE(D(gas), 1))`` after ``steps`` ascent steps.

    ``gas`` starts at ``true + noise`` (noise ``N(0, 0.015^2)``). Each step scores
    ``[true; gas]`` with ``score_fn`` (the discriminator's sigmoid; BatchNorm sees the pair),
    takes the gradient of ``BCE(D(gas), 1)`` with respect to ``gas``, normalises it per row and
    moves ``gas`` by ``step_size`` along it: ascent on the "anomalous" loss, towards points the
    discriminator calls normal. After every ``project_every``-th step the truncated projection:
    manifold, ``|gas - true|`` into ``[manifold_radius, 2 manifold_radius]`` (0.5 to 1);
    hypersphere, ``|gas - center|`` into ``[radius, 2 radius]``. The returned terms are those of
    the final scoring (step ``steps + 1``); their gradients reach ``true`` through ``gas`` too,
    as in the official code.

    Parameters
    ----------
    score_fn : callable
        ``(N, D) -> (N,)`` anomaly probabilities.
    true, noise : torch.Tensor
        ``(N, D)`` projected normal features and the Gaussian noise.
    center, radius : torch.Tensor, optional
        Hypersphere mode: ``(N, D)`` centre per point and the radius ``r_t`` (0-d or ``(1,)``).
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if distribution == "hypersphere" and (center is None or radius is None):
        raise ValueError("the hypersphere distribution needs center and radius")
    n = len(true)
    gas = true + noise
    for step in range(steps + 1):
        scores = score_fn(torch.cat([true, gas]))
        true_loss = F.binary_cross_entropy(scores[:n], torch.zeros_like(scores[:n]))
        gas_loss = F.binary_cross_entropy(scores[n:], torch.ones_like(scores[n:]))
        if step == steps:
            break
        (grad,) = torch.autograd.grad(gas_loss, [gas])
        gas = gas + step_size * (grad / (grad.norm(dim=1, keepdim=True) + 1e-10))
        if (step + 1) % project_every == 0:
            if distribution == "hypersphere":
                gas = truncated_projection(gas, center, radius, 2 * radius)
            else:
                gas = truncated_projection(gas, true, manifold_radius, 2 * manifold_radius)
    return true_loss, gas_loss


def hard_focal_loss(
    scores: torch.Tensor, masks: torch.Tensor, *, p: float = 0.5, gamma: float = 2.0, smooth: float = 1e-5
) -> torch.Tensor:
    """Focal loss of the LAS points on the hardest ones (official ``p = 0.5``).

    ``scores`` ``(N,)`` anomaly probabilities, ``masks`` ``(N,)`` 0/1. With ``p > 0`` only the
    points whose ``(score - mask)^2`` is at least its ``p``-quantile enter; the loss is the
    two-class focal loss (gamma 2, label smoothing 1e-5 of the official ``FocalLoss``).
    """
    masks = masks.to(scores.dtype)
    if p > 0:
        distance = (scores - masks) ** 2
        keep = distance >= quantile(distance.detach(), p)
        scores, masks = scores[keep], masks[keep]
    return binary_focal_loss(scores, masks, gamma=gamma, from_logits=False, smooth=smooth)
