"""CDO networks and losses: frozen expert, trainable apprentice, noise rectangles, OOM loss.

Cao et al., "Collaborative Discrepancy Optimization for Reliable Image Anomaly Localization",
IEEE TII 2023; official code ``caoyunkang/CDO`` at ``c4ba550`` (MIT).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import FeatureExtractor

__all__ = ["CDOModel", "cdo_loss", "discrepancy", "noise_rectangle_masks", "paste_noise"]

# ImageNet statistics of the harness's normalisation (docs/contracts.md): the noise is uniform
# over RGB [0, 1] (official: uniform uint8 pasted before normalising), so normalised like images.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def noise_rectangle_masks(n: int, size: int, *, generator: torch.Generator, max_rectangles: int = 4) -> torch.Tensor:
    """Binary masks of CDO's synthetic anomalies: ``(n, 1, size, size)`` float32 in {0, 1}.

    Per image, ``k`` uniform in ``{0, ..., max_rectangles}`` axis-aligned rectangles; each
    half-extent (per axis) is an integer uniform in ``[size // 40, size // 10)`` (at least 1 px)
    and the centre is uniform among the positions keeping the rectangle inside the image
    (official code, ``c4ba550``: 0-4 rectangles, half-extent input/40 to input/10). Drawn on the
    CPU from ``generator`` only, so the same seed gives the same masks.
    """
    if n < 0 or size < 4 or max_rectangles < 0:
        raise ValueError(f"noise_rectangle_masks: need n >= 0, size >= 4, max_rectangles >= 0, got "
                         f"{n}, {size}, {max_rectangles}")  # fmt: skip
    low = max(1, size // 40)
    high = max(low + 1, size // 10)
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        count = int(torch.randint(0, max_rectangles + 1, (), generator=generator))
        for _ in range(count):
            hy, hx = (int(v) for v in torch.randint(low, high, (2,), generator=generator))
            cy = int(torch.randint(hy, size - hy, (), generator=generator))
            cx = int(torch.randint(hx, size - hx, (), generator=generator))
            masks[i, 0, cy - hy : cy + hy, cx - hx : cx + hx] = 1.0
    return masks


def paste_noise(images: torch.Tensor, masks: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Replace the masked pixels of ImageNet-normalised ``(B, 3, H, W)`` images by uniform RGB noise.

    The noise is uniform in ``[0, 1]`` per pixel and channel (the official uint8 uniform noise),
    then ImageNet-normalised; drawn on the CPU from ``generator``. Returns a new tensor.
    """
    noise = torch.rand(images.shape, generator=generator).to(images.device, images.dtype)
    mean = images.new_tensor(_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(_STD).view(1, 3, 1, 1)
    masks = masks.to(images.device, images.dtype)
    return images * (1 - masks) + (noise - mean) / std * masks


def discrepancy(expert: Sequence[torch.Tensor], apprentice: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per-scale squared distance of L2-normalised features: ``[(B, h1, w1), ...]``, values in [0, 4].

    Both feature maps are normalised along channels at each position; every scale is resized
    bilinearly (``align_corners=True``) to the first scale's size (official code).
    """
    size = expert[0].shape[-2:]
    out = []
    for e, a in zip(expert, apprentice):
        d = (F.normalize(e, dim=1) - F.normalize(a, dim=1)).pow(2).sum(dim=1, keepdim=True)
        if d.shape[-2:] != size:
            d = F.interpolate(d, size=size, mode="bilinear", align_corners=True)
        out.append(d[:, 0])
    return out


def cdo_loss(
    distances: Sequence[torch.Tensor], masks: torch.Tensor | None, *, gamma: float = 2.0, oom: bool = True
) -> torch.Tensor:
    """CDO's loss, summed over scales (paper sec. III-C, D; official ``cal_loss``).

    Parameters
    ----------
    distances : sequence of (B, h, w) tensors
        ``discrepancy`` per scale.
    masks : (B, 1, H, W) tensor or None
        Synthetic-anomaly masks (nearest-resized to ``(h, w)``); ``None``: all positions normal.
    gamma : float
        OOM exponent (publication: 2).
    oom : bool
        Over-/under-optimisation weighting; ``False`` gives every position weight 1.

    Returns
    -------
    torch.Tensor
        Scalar: per scale ``B (sum w_n d_n - sum w_s d_s) / (sum w_n + sum w_s)`` with detached
        weights ``w_n = (d_n / mean d_n)^gamma`` (normal positions: the badly fitted ones weigh
        more) and ``w_s = (mean d_s / d_s)^gamma`` (synthetic positions: the poorly separated ones
        weigh more); the synthetic term is absent when no position is synthetic.
    """
    total = distances[0].new_zeros(())
    for d in distances:
        batch = d.shape[0]
        if masks is None:
            synthetic = torch.zeros_like(d, dtype=torch.bool)
        else:
            synthetic = F.interpolate(masks.to(d.dtype), size=d.shape[-2:], mode="nearest")[:, 0] > 0.5
        d_n, d_s = d[~synthetic], d[synthetic]
        if oom:
            with torch.no_grad():
                eps = torch.finfo(d.dtype).tiny
                w_n = (d_n / d_n.mean().clamp_min(eps)).pow(gamma) if d_n.numel() else d_n
                w_s = (d_s.mean() / d_s.clamp_min(eps)).pow(gamma) if d_s.numel() else d_s
        else:
            w_n, w_s = torch.ones_like(d_n), torch.ones_like(d_s)
        numerator = (w_n * d_n).sum() - (w_s * d_s).sum()
        total = total + batch * numerator / (w_n.sum() + w_s.sum())
    return total


class CDOModel(nn.Module):
    """Expert (pretrained, frozen) and apprentice (same architecture, random init, trained).

    ``forward`` maps ``(B, 3, S, S)`` images to the expert's and the apprentice's feature lists,
    one ``(B, C_l, S/s_l, S/s_l)`` map per level each.
    """

    def __init__(self, *, backbone: str, layers: Sequence[str | int], pretrained: bool, weights_path: str | None):
        super().__init__()
        self.expert = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.apprentice = FeatureExtractor(backbone, layers, pretrained=False, frozen=False)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.expert(images), self.apprentice(images)

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        """Unsmoothed ``(B, S, S)`` map: the sum over scales of ``discrepancy``, bilinear to ``S``."""
        total = torch.stack(discrepancy(*self(images))).sum(dim=0).unsqueeze(1)
        return F.interpolate(total, size=images.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
