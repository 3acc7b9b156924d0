"""PatchCore's locally aware patch features: neighbourhood aggregation and channel pooling.

Shared by PatchCore (Roth et al., CVPR 2022, section 3.1) and the methods built on its feature
pipeline (SimpleNet, Liu et al., CVPR 2023, section 3.1, uses the same ``PatchMaker`` /
``Preprocessing`` / ``Aggregator`` of the reference code). The arithmetic follows the reference
code (github.com/amazon-science/patchcore-inspection, ``patchcore.py`` and ``common.py``):

1. every layer's map is unfolded into its zero-padded ``p x p`` neighbourhoods (``F.unfold``);
2. each position's flattened ``C * p * p`` vector is adaptive-average-pooled to
   ``pretrain_embed_dim`` (``F.adaptive_avg_pool1d``);
3. deeper layers are upsampled (bilinear, ``align_corners=False``) to the first layer's
   resolution; pooling a channel axis and interpolating a spatial axis commute, so the pooling
   of step 2 runs at the layer's own, smaller, resolution;
4. the per-layer vectors are concatenated layer-major and adaptive-average-pooled to
   ``target_embed_dim``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["adaptive_avg_pool_channels", "patch_embedding"]


def adaptive_avg_pool_channels(x: torch.Tensor, size: int) -> torch.Tensor:
    """Adaptive average pooling of the channel axis of ``(B, L, N)`` to ``(B, size, N)``.

    The same windows and arithmetic as ``F.adaptive_avg_pool1d`` applied to each position's
    ``L``-vector (output ``i`` is the mean of ``x[:, floor(i L / size) : ceil((i + 1) L / size)]``,
    summed left to right, then divided by the window length), but computed as a few whole-row
    gathers of the channel-first tensor: no transposed copy of ``x`` is made, and a window of
    ``n`` elements costs ``n`` vectorised additions over the ``N`` positions.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, L, N)`` float tensor (channel-first: one row per channel).
    size : int
        Number of output channels, at least 1.

    Returns
    -------
    torch.Tensor
        ``(B, size, N)`` pooled tensor (a new tensor, ``x`` is not modified).

    Raises
    ------
    ValueError
        If ``x`` is not 3-D or ``size < 1``.
    """
    if x.ndim != 3:
        raise ValueError(f"expected a (B, L, N) tensor, got {tuple(x.shape)}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    length = x.shape[1]
    i = torch.arange(size, device=x.device)
    start = torch.div(i * length, size, rounding_mode="floor")
    count = torch.div((i + 1) * length + size - 1, size, rounding_mode="floor") - start
    out = x.index_select(1, start)
    for offset in range(1, int(count.max())):
        rows = (count > offset).nonzero()[:, 0]
        if rows.numel() == size:
            out += x.index_select(1, start + offset)
        else:
            out.index_add_(1, rows, x.index_select(1, start[rows] + offset))
    return out.div_(count.to(x.dtype)[:, None])


def patch_embedding(
    features: Sequence[torch.Tensor], *, patch_size: int, pretrain_embed_dim: int, target_embed_dim: int
) -> torch.Tensor:
    """Locally aware patch features ``(B, h, w, target_embed_dim)`` of a list of feature maps.

    Arithmetically the reference code's ``unfold -> adaptive_avg_pool1d`` per layer and
    ``adaptive_avg_pool1d`` over the layer-major concatenation (module docstring), laid out for
    speed: the pooling runs on the channel-first unfolded tensor (:func:`adaptive_avg_pool_channels`,
    no transposed copy), the deeper layers are upsampled in channels-last memory (the fast CPU
    path of bilinear interpolation, same numbers) and written straight into the concatenation
    buffer.

    Parameters
    ----------
    features : sequence of torch.Tensor
        One ``(B, C_l, h_l, w_l)`` float map per layer, shallowest first; ``(h, w)`` of the first
        is the output resolution.
    patch_size : int
        Side ``p`` of the neighbourhood (odd; zero padding ``(p - 1) // 2`` keeps the resolution).
    pretrain_embed_dim, target_embed_dim : int
        Per-layer and final feature dimensions (at least 1).

    Returns
    -------
    torch.Tensor
        ``(B, h, w, target_embed_dim)`` float tensor, same dtype and device as ``features``.

    Raises
    ------
    ValueError
        If ``features`` is empty or not 4-D, the batch sizes differ, ``patch_size`` is not a
        positive odd number or a dimension is below 1.
    """
    if not features:
        raise ValueError("features is empty: expected at least one (B, C, h, w) map")
    if any(f.ndim != 4 for f in features) or len({f.shape[0] for f in features}) != 1:
        raise ValueError(f"expected (B, C, h, w) maps of one batch size, got {[tuple(f.shape) for f in features]}")
    p = int(patch_size)
    if p < 1 or p % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")
    if pretrain_embed_dim < 1 or target_embed_dim < 1:
        raise ValueError(f"embedding dimensions must be at least 1, got {pretrain_embed_dim}, {target_embed_dim}")
    pre_dim = int(pretrain_embed_dim)
    b = features[0].shape[0]
    height, width = features[0].shape[-2:]
    stacked = features[0].new_empty(b, len(features) * pre_dim, height, width)  # layer-major channels
    for layer, feature in enumerate(features):
        h, w = feature.shape[-2:]
        patches = F.unfold(feature, kernel_size=p, padding=(p - 1) // 2)  # (B, C*p*p, h*w)
        pooled = adaptive_avg_pool_channels(patches, pre_dim).reshape(b, pre_dim, h, w)
        if (h, w) != (height, width):
            pooled = F.interpolate(
                pooled.contiguous(memory_format=torch.channels_last),
                size=(height, width),
                mode="bilinear",
                align_corners=False,
            )
        stacked[:, layer * pre_dim : (layer + 1) * pre_dim] = pooled
    out = adaptive_avg_pool_channels(stacked.reshape(b, -1, height * width), int(target_embed_dim))
    return out.transpose(1, 2).reshape(b, height, width, -1)
