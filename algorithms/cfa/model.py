"""CFA's networks: frozen CNN, CoordConv patch descriptor, memory of centroids, soft-boundary loss."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.feature_extractor import FeatureExtractor

__all__ = ["CfaModel", "CoordConv1x1", "patch_features"]


def patch_features(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """CFA's patch features: each map 3x3 average-pooled (stride 1, zero padding counted), resized
    bilinearly (``align_corners=False``) to the first map's grid, concatenated over channels.

    ``[(B, C_l, h_l, w_l)]`` -> ``(B, sum C_l, h_1, w_1)`` (official ``Descriptor.forward``).
    """
    pooled = [F.avg_pool2d(f, 3, 1, 1) for f in features]
    size = pooled[0].shape[-2:]
    resized = [pooled[0]] + [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pooled[1:]]
    return torch.cat(resized, dim=1)


class CoordConv1x1(nn.Module):
    """CoordConv (Liu et al., 2018) with a 1x1 kernel: the input plus two coordinate channels.

    The coordinate channels are the row index and then the column index, each scaled linearly to
    ``[-1, 1]`` (``-1`` at the first row/column), as in the CoordConv reference code CFA uses;
    then one ``Conv2d(in + 2 -> out, 1)`` with bias. ``(B, in, h, w)`` -> ``(B, out, h, w)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        rows = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        cols = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return self.conv(torch.cat([x, rows, cols], dim=1))


class CfaModel(nn.Module):
    """Frozen backbone -> patch features -> CoordConv descriptor; distances to a memory of centroids.

    Parameters
    ----------
    backbone : str
        timm CNN (publication: ``wide_resnet50_2`` with torchvision weights).
    layers : sequence of str
        Levels concatenated into patch features (publication: layers 1-3; 1792 channels for WRN50-2).
    input_size : int
        Square input side; maps are upsampled to it.
    gamma_d : int
        Descriptor compression: ``out = in // gamma_d`` channels (publication: 1).
    radius : float
        Initial hypersphere radius ``r`` (a trainable scalar; publication: 1e-5).
    blur_sigma : float
        Gaussian smoothing of the upsampled map (publication: 4).
    pretrained, weights_path
        Backbone weights.
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        input_size: int,
        gamma_d: int,
        radius: float,
        blur_sigma: float,
        pretrained: bool,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.input_size = input_size
        self.blur_sigma = blur_sigma
        channels = sum(self.extractor.channels)
        if gamma_d < 1 or channels // gamma_d < 1:
            raise ValueError(f"gamma_d must be an integer in [1, {channels}], got {gamma_d}")
        self.descriptor = CoordConv1x1(channels, channels // gamma_d)
        self.radius = nn.Parameter(torch.tensor([float(radius)]))
        self.register_buffer("memory", torch.empty(0, channels // gamma_d))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Descriptor map ``(B, D, h, w)`` of a batch ``(B, 3, S, S)``."""
        return self.descriptor(patch_features(self.extractor(images)))

    @torch.no_grad()
    def build_memory(self, batches: Iterable[torch.Tensor]) -> int:
        """Set the memory to the centroids: the running mean over batches of the batch-mean descriptor map.

        ``memory[(i * w + j)] = mean_batches(mean_b phi(x_b)[:, i, j])``, ``(h * w, D)``, from the
        current (untrained) descriptor (official ``DSVDD._init_centroid``). Returns the number of batches.
        """
        centroid, count = None, 0
        for images in batches:
            mean = self(images).mean(dim=0)
            centroid = mean if centroid is None else (centroid * count + mean) / (count + 1)
            count += 1
        if centroid is None:
            raise ValueError("CFA: no training images to build the memory from")
        self.memory = centroid.flatten(1).T.contiguous()
        return count

    def squared_distances(self, descriptors: torch.Tensor) -> torch.Tensor:
        """``(B, D, h, w)`` -> ``(B, h * w, M)`` squared Euclidean distances to every memory item.

        Expanded as ``|f|^2 + |c|^2 - 2 f.c`` (official code), in one GEMM with the ``|c|^2`` term
        fused (``addmm``) and ``|f|^2`` added in place; rounding can leave tiny negative values
        (clamped where square roots are taken, :meth:`patch_scores`).
        """
        if self.memory.shape[0] == 0:
            raise RuntimeError("CFA: the memory of centroids is empty; train (fit_epoch) first")
        b, d = descriptors.shape[:2]
        f = descriptors.flatten(2).transpose(1, 2)  # (B, hw, D)
        c = self.memory
        dist = torch.addmm((c * c).sum(-1), f.reshape(-1, d), c.T, alpha=-2.0)  # |c|^2 - 2 f.c, (B hw, M)
        return dist.view(b, -1, c.shape[0]).add_((f * f).sum(-1, keepdim=True))

    def loss(self, squared: torch.Tensor, *, k: int, j: int, nu: float, alpha: float) -> torch.Tensor:
        """Soft-boundary attraction plus hard-negative repulsion (Lee et al., eqs. 5-7; official ``_soft_boundary``).

        With ``d`` the ``k + j`` smallest squared distances of each patch in ascending order:
        ``(1/nu) mean(max(0, d[:k] - r^2)) + (1/nu) mean(max(0, r^2 - d[k:k+j] - alpha))``.
        (The official code indexes the repulsion terms ``d[j:]``, the same items since ``k = j``.)
        """
        d = squared.topk(k + j, dim=-1, largest=False).values
        r2 = self.radius.pow(2)
        attraction = torch.relu(d[..., :k] - r2).mean()
        repulsion = torch.relu(r2 - d[..., k : k + j] - alpha).mean()
        return (attraction + repulsion) / nu

    def patch_scores(self, squared: torch.Tensor, grid: tuple[int, int], *, k: int) -> torch.Tensor:
        """``softmin(d)_1 * d_1`` over the ``k`` nearest Euclidean distances, ``(B, h, w)`` (official ``forward``).

        Squared distances below 0 (rounding) count as 0.
        """
        d = squared.topk(k, dim=-1, largest=False).values.clamp_min(0).sqrt()  # sqrt is monotone: same k items
        score = F.softmin(d, dim=-1)[..., 0] * d[..., 0]
        return score.view(-1, *grid)

    def anomaly_map(self, scores: torch.Tensor) -> torch.Tensor:
        """Patch scores ``(B, h, w)`` -> bilinear to ``(B, S, S)``, Gaussian blur (sigma 4)."""
        size = (self.input_size, self.input_size)
        up = F.interpolate(scores[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return gaussian_blur(up, self.blur_sigma, border="reflect") if self.blur_sigma > 0 else up
