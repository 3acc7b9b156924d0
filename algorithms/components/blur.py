"""Gaussian smoothing of anomaly maps (PatchCore, Reverse Distillation, ... use sigma=4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gaussian_blur", "gaussian_kernel1d"]


def gaussian_kernel1d(sigma: float, *, truncate: float = 4.0, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel of radius ``int(truncate * sigma + 0.5)`` (scipy's rule)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(maps: torch.Tensor, sigma: float = 4.0, *, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, H, W)`` maps with reflect padding (shape preserved)."""
    if maps.ndim != 3:
        raise ValueError(f"expected maps of shape (N, H, W), got {tuple(maps.shape)}")
    kernel = gaussian_kernel1d(sigma, truncate=truncate, dtype=maps.dtype).to(maps.device)
    radius = kernel.numel() // 2
    x = maps.unsqueeze(1)
    # Reflect padding needs pad < size; fall back to replicate for tiny maps.
    mode = "reflect" if min(maps.shape[-2:]) > radius else "replicate"
    x = F.pad(x, (radius, radius, 0, 0), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.squeeze(1)

