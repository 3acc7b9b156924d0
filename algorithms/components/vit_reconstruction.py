"""Blocks shared by the ViT feature-reconstruction methods: Dinomaly and INP-Former.

Both reconstruct the mean of the middle-block tokens of a frozen DINOv2 encoder with a trainable
transformer decoder, group the layers for a "loose" reconstruction and score by the channel-wise
cosine distance (Guo et al., "Dinomaly", CVPR 2025, sec. 3; Luo et al., "INP-Former", CVPR 2025,
sec. 3, built on Dinomaly's code). What is the same in their official codes
(guojiajeremy/Dinomaly, Apache-2.0; luow23/INP-Former, MIT) lives here, written from their
equations:

* :class:`FeedForward` / :class:`NoisyBottleneck`: the ``Linear -> GELU -> Linear`` MLP of the
  transformer blocks and the bottleneck (Dinomaly's with dropout 0.2 as noise; INP-Former's
  official bottleneck has dropout 0);
* :func:`scale_gradient`: identity forward, gradient multiplied by a mask backward (Dinomaly's
  hard mining, INP-Former's soft mining; the official codes use ``register_hook``);
* :func:`cosine_anomaly_map`, :func:`box_gaussian_blur`: the inference map (``cal_anomaly_maps``)
  and the official ``get_gaussian_kernel(5, 4)`` smoothing;
* :func:`warm_cosine_lr`: the official ``WarmCosineScheduler``;
* :func:`init_reconstruction_weights`: trunc-normal(0.01) cut at +-0.03 Linear weights, zero biases,
  unit LayerNorms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FeedForward",
    "NoisyBottleneck",
    "box_gaussian_blur",
    "cosine_anomaly_map",
    "count_parameters",
    "init_reconstruction_weights",
    "scale_gradient",
    "warm_cosine_lr",
]


class FeedForward(nn.Module):
    """``fc2(GELU(fc1(x)))``: ``(..., dim)`` to ``(..., dim)`` through ``hidden`` units (biases on).

    The MLP of a ViT block (official ``Mlp`` with dropout 0). ``2 dim hidden + hidden + dim`` parameters.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class NoisyBottleneck(nn.Module):
    """Dropout -> Linear(C, H) -> GELU -> Dropout -> Linear(H, C) -> Dropout (Dinomaly's ``bMlp``).

    The dropout is Dinomaly's "noisy bottleneck" (its sec. 3.2), active in training only; with
    ``dropout=0`` it is the plain ``FeedForward`` (INP-Former's official bottleneck, ``Mlp(drop=0)``).
    """

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(self.drop(x))))))


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale, None


def scale_gradient(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by ``scale`` (broadcast) backward.

    The official codes do this with a ``register_hook`` on the decoder map; an autograd function
    does the same without hooks.
    """
    return _ScaleGradient.apply(x, scale)


def cosine_anomaly_map(encoder: Sequence[torch.Tensor], decoder: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """Mean over groups of the per-point ``1 - cos`` (over channels), bilinear (``align_corners=True``) to ``size``.

    ``(B, C, h, w)`` pairs to ``(B, size, size)`` (official ``cal_anomaly_maps`` of both methods).
    """
    maps = [
        F.interpolate(
            (1.0 - F.cosine_similarity(e, d, dim=1))[:, None], size=(size, size), mode="bilinear", align_corners=True
        )
        for e, d in zip(encoder, decoder)
    ]
    return torch.cat(maps, dim=1).mean(dim=1)


def box_gaussian_blur(maps: torch.Tensor, *, kernel_size: int = 5, sigma: float = 4.0) -> torch.Tensor:
    """The official ``get_gaussian_kernel(5, 4)`` filter: a ``kernel_size`` square Gaussian, zero padding.

    ``(B, H, W)`` to ``(B, H, W)``. With sigma 4 over 5 pixels it is nearly a box filter; the zero
    padding (``nn.Conv2d``'s) lowers values within ``kernel_size // 2`` pixels of the border.
    """
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise ValueError(f"need an odd kernel_size >= 1 and sigma > 0, got {kernel_size} and {sigma}")
    x = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    kernel1d = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = torch.outer(kernel1d, kernel1d)
    kernel = (kernel / kernel.sum()).to(maps.dtype).to(maps.device)
    return F.conv2d(maps[:, None], kernel[None, None], padding=kernel_size // 2)[:, 0]


def warm_cosine_lr(step: int, *, base: float, final: float, total: int, warmup: int) -> float:
    """The official ``WarmCosineScheduler`` value at 0-based ``step``.

    ``linspace(0, base, warmup)`` for the first ``warmup`` steps, then
    ``final + (base - final)(1 + cos(pi i / (total - warmup))) / 2`` for ``i = step - warmup``;
    ``final`` from ``total`` on.
    """
    if step >= total:
        return final
    if step < warmup:
        return base * step / (warmup - 1) if warmup > 1 else 0.0
    i, n = step - warmup, total - warmup
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * i / n))


def init_reconstruction_weights(modules: Iterable[nn.Module]) -> None:
    """The official initialisation of the trainable part of both methods.

    Every ``nn.Linear`` among ``modules`` (and their submodules): weight trunc-normal(0, 0.01) cut
    at +-0.03, bias 0; every ``nn.LayerNorm``: weight 1, bias 0. Other parameters are left alone.
    """
    for root in modules:
        for module in root.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.01, a=-0.03, b=0.03)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
