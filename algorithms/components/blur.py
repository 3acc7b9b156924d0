"""Gaussian smoothing of anomaly maps as ``scipy.ndimage.gaussian_filter`` (PatchCore, RD4AD: sigma 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gaussian_blur", "gaussian_kernel1d", "symmetric_pad_indices"]


def gaussian_kernel1d(sigma: float, *, truncate: float = 4.0, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel of radius ``int(truncate * sigma + 0.5)`` (scipy's rule)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)


def symmetric_pad_indices(size: int, radius: int, *, device=None) -> torch.Tensor:
    """Source indices of a ``size``-long axis padded by ``radius`` on both sides, scipy's ``"reflect"``.

    scipy.ndimage's default border mode ``"reflect"`` is the half-sample symmetric extension
    ``(d c b a | a b c d | d c b a)``: the edge sample is repeated (numpy's ``"symmetric"``, not
    torch's ``"reflect"``, which skips it). It is periodic with period ``2 * size``, so any
    ``radius`` works, also beyond the axis length. Returns ``(size + 2 radius,)`` int64.
    """
    if size < 1 or radius < 0:
        raise ValueError(f"need size >= 1 and radius >= 0, got {size} and {radius}")
    index = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def gaussian_blur(
    maps: torch.Tensor, sigma: float = 4.0, *, truncate: float = 4.0, border: str = "scipy"
) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, H, W)`` maps, equal to ``scipy.ndimage.gaussian_filter`` per map.

    The official PatchCore and RD4AD code smooth each map with ``gaussian_filter(map, sigma=4)``:
    scipy's kernel (radius ``int(truncate * sigma + 0.5)``, normalised) and its default border
    mode ``"reflect"`` (half-sample symmetric, :func:`symmetric_pad_indices`), filtering along
    rows then columns. Shape and dtype preserved; float32 maps agree with scipy (which
    accumulates in float64) to rounding. ``border="reflect"`` pads with torch's "reflect" instead
    (edge not repeated; replicate for maps smaller than the radius): the kornia/anomalib
    ``GaussianBlur2d`` border that SuperSimpleNet's official code uses. Raises ``ValueError`` for
    a non-3-D input or an unknown border.
    """
    if maps.ndim != 3:
        raise ValueError(f"expected maps of shape (N, H, W), got {tuple(maps.shape)}")
    if border not in ("scipy", "reflect"):
        raise ValueError(f"border must be 'scipy' or 'reflect', got {border!r}")
    kernel = gaussian_kernel1d(sigma, truncate=truncate, dtype=maps.dtype).to(maps.device)
    radius = kernel.numel() // 2
    height, width = maps.shape[-2:]
    x = maps.unsqueeze(1)
    if border == "reflect":
        mode = "reflect" if min(height, width) > radius else "replicate"
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
        return x.squeeze(1)
    # scipy filters the first axis (rows, H) first, then the second (W).
    x = x.index_select(2, symmetric_pad_indices(height, radius, device=maps.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = x.index_select(3, symmetric_pad_indices(width, radius, device=maps.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return x.squeeze(1)

