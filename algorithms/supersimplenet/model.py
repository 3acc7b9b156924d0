"""SuperSimpleNet's network: upscaled frozen features, adaptor, feature-noise synthesis, two heads.

A pure ``torch.nn.Module`` (the detector trains it). Architecture of the official code
(github.com/blaz-r/SuperSimpleNet, ``model/supersimplenet.py`` and ``model/feature_extractor.py``);
see the package docstring for the method.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.feature_extractor import FeatureExtractor
from ..components.perlin import perlin_masks

__all__ = ["SuperSimpleNetModel", "synthesize_anomalies"]


def _init_weights(module: nn.Module) -> None:
    """Official ``init_weights``: Xavier-normal conv / linear weights, BatchNorm weights 1."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1.0)


def synthesize_anomalies(
    adapted: torch.Tensor,
    features: torch.Tensor | None,
    *,
    threshold: float,
    noise_std: float,
    empty_probability: float,
    mask_generator: torch.Generator,
    noise_generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """SuperSimpleNet's feature-level anomalies (ICPR 2024, section 3.3), for normal training batches.

    The batch is duplicated to ``2B``; each item gets a Perlin mask at the feature resolution
    (``perlin_masks`` at ``threshold``), emptied with probability ``empty_probability``; inside it
    ``N(0, noise_std^2)`` noise is added to the adapted features (and the same noise to the
    unadapted ``features`` when given: the JIMS variant feeds them to the classification head).

    Parameters
    ----------
    adapted : torch.Tensor
        ``(B, C, h, w)`` adapted features.
    features : torch.Tensor or None
        ``(B, C, h, w)`` unadapted features, or ``None``.
    mask_generator : torch.Generator
        CPU generator of the masks and the empty-mask draws.
    noise_generator : torch.Generator, optional
        Generator on the features' device for the Gaussian noise.

    Returns
    -------
    adapted, features, masks, labels
        ``(2B, C, h, w)`` perturbed adapted features, the perturbed features (or ``None``), the
        ``(2B, 1, h, w)`` float masks and ``(2B,)`` float labels (1 = non-empty mask).
    """
    b, _, h, w = adapted.shape
    masks = perlin_masks(2 * b, h, w, threshold=threshold, generator=mask_generator)
    empty = torch.rand(2 * b, generator=mask_generator) < empty_probability
    masks[empty] = 0.0
    masks = masks.to(adapted.device)
    labels = masks.flatten(1).amax(dim=1)
    adapted = torch.cat([adapted, adapted])
    noise = torch.randn(adapted.shape, generator=noise_generator, device=adapted.device, dtype=adapted.dtype)
    noise = noise.mul_(noise_std).mul_(masks)
    if features is not None:
        features = torch.cat([features, features]) + noise
    return adapted + noise, features, masks, labels


class SuperSimpleNetModel(nn.Module):
    """Frozen upscaling feature extractor, 1x1 adaptor, segmentation and classification heads.

    Parameters
    ----------
    backbone, layers, pretrained, weights_path
        The frozen feature extractor (``FeatureExtractor``).
    align_corners : bool
        Of the bilinear upsampling of the backbone features to twice the first layer's grid
        (official code: ``True``; anomalib 2.7: ``False``).
    seg_hidden, cls_hidden : int
        Widths of the segmentation head (publication: 1024) and of the classification conv (128).
    adapt_cls_features : bool
        The classification branch reads the adapted features (ICPR 2024, default) or the raw ones
        (JIMS 2025, anomalib's default).
    stop_grad : bool
        Detach the segmentation map where the classification branch reads it (unsupervised: True).
    blur_sigma : float
        Gaussian smoothing of the upsampled map (publication: 4, kernel 25; 0 disables it).
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        pretrained: bool,
        weights_path: str | None,
        align_corners: bool = True,
        seg_hidden: int = 1024,
        cls_hidden: int = 128,
        adapt_cls_features: bool = True,
        stop_grad: bool = True,
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.align_corners = bool(align_corners)
        self.adapt_cls_features = bool(adapt_cls_features)
        self.stop_grad = bool(stop_grad)
        self.blur_sigma = float(blur_sigma)
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        channels = sum(self.extractor.channels)
        self.channels = channels
        self.adaptor = nn.Conv2d(channels, channels, kernel_size=1)
        self.seg_head = nn.Sequential(
            nn.Conv2d(channels, seg_hidden, kernel_size=1),
            nn.BatchNorm2d(seg_hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(seg_hidden, 1, kernel_size=1, bias=False),
        )
        self.cls_conv = nn.Sequential(
            nn.Conv2d(channels + 1, cls_hidden, kernel_size=5, padding=2),
            nn.BatchNorm2d(cls_hidden),
            nn.ReLU(inplace=True),
        )
        self.cls_fc = nn.Linear(2 * cls_hidden + 2, 1)
        _init_weights(self)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen features ``(B, C, 2 h2, 2 w2)``: every layer upsampled to twice the first layer's grid,
        concatenated, 3 x 3 average-pooled (stride 1, zero padding counted, as ``nn.AvgPool2d``)."""
        with torch.no_grad():
            maps = self.extractor(images)
            h, w = maps[0].shape[-2:]
            size = (2 * h, 2 * w)
            up = [F.interpolate(m, size=size, mode="bilinear", align_corners=self.align_corners) for m in maps]
            return F.avg_pool2d(torch.cat(up, dim=1), kernel_size=3, stride=1, padding=1)

    def heads(self, seg_features: torch.Tensor, cls_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits ``(B, 1, h, w)`` and classification logits ``(B,)``."""
        seg = self.seg_head(seg_features)
        seg_in = seg.detach() if self.stop_grad else seg
        conv = self.cls_conv(torch.cat([cls_features, seg_in], dim=1))
        pooled = torch.cat(
            [conv.amax(dim=(2, 3)), conv.mean(dim=(2, 3)), seg_in.amax(dim=(2, 3)), seg_in.mean(dim=(2, 3))], dim=1
        )
        return seg, self.cls_fc(pooled)[:, 0]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: image scores ``(B,)`` = the classification logits, maps ``(B, H, W)`` = the
        segmentation logits bilinearly upsampled to the input size and blurred (sigma 4, kernel 25).

        The official code reports ``sigmoid`` of the logit as the score: a monotone transform, so
        every ranking metric is the same, but in float32 it saturates to exactly 1.0 above a logit
        of about 17, which would tie confident images; the logit keeps them apart.
        """
        features = self.features(images)
        adapted = self.adaptor(features)
        seg, logits = self.heads(adapted, adapted if self.adapt_cls_features else features)
        maps = F.interpolate(seg, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        if self.blur_sigma > 0:
            maps = gaussian_blur(maps, self.blur_sigma, truncate=3.0, border="reflect")  # kornia/anomalib border
        return logits, maps
