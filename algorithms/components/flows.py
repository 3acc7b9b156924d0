"""2-D normalising-flow blocks (FrEIA-style "all-in-one" affine coupling), written for FastFlow.

Each :class:`AffineCouplingStep` follows FrEIA's ``AllInOneBlock`` as the official FastFlow code
(github.com/gathierry/FastFlow) and anomalib use it (``permute_soft=False``, SOFTPLUS global
affine): an affine coupling of one half of the channels conditioned on the other half (through a
small convolutional subnet whose outputs are scaled by 0.1, log-scales soft-clamped by
:func:`soft_clamp`), a learned global affine transform per channel (scale
``0.1 * softplus_{beta=0.5}(g)``, initialised to 1) and a fixed random channel permutation. The
forward pass returns the transformed tensor and the log-determinant of its Jacobian per sample,
so that the negative log-likelihood under a standard normal is ``0.5 * sum(z**2) - log|det J|``
(plus a constant). :class:`Flow2d` chains several steps. Everything is exactly invertible
(:meth:`Flow2d.inverse`), which the tests use to check the log-determinants.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AffineCouplingStep", "Flow2d", "global_scale", "soft_clamp"]

#: ``g`` such that ``0.1 * softplus_{0.5}(g) = 1`` (FrEIA's SOFTPLUS initialisation of the global scale).
_GLOBAL_SCALE_INIT = 2.0 * math.log(math.exp(0.5 * 10.0) - 1.0)


def soft_clamp(values: torch.Tensor, clamp: float) -> torch.Tensor:
    """Smoothly limit coupling log-scales to ``(-clamp, clamp)``: ``clamp * tanh(values)``.

    The form of FrEIA's ``AllInOneBlock._affine`` (``sub_jac = clamp * tanh(a)``, applied to the
    subnet's output already scaled by 0.1), used by the official FastFlow code and anomalib 2.7
    (``affine_clamping=2.0``). Its slope at zero is ``clamp``, not 1. (The arctan form
    ``(2 clamp / pi) atan(s / clamp)`` of FrEIA's GLOW/RNVP blocks is a different function.)
    """
    return clamp * torch.tanh(values)


def global_scale(parameter: torch.Tensor) -> torch.Tensor:
    """FrEIA's SOFTPLUS global-affine activation: ``0.1 * softplus(parameter, beta=0.5)`` (positive)."""
    return 0.1 * F.softplus(parameter, beta=0.5)


def _subnet(in_channels: int, out_channels: int, hidden: int, kernel_size: int) -> nn.Sequential:
    padding = kernel_size // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size, padding=padding),
        nn.ReLU(),
        nn.Conv2d(hidden, out_channels, kernel_size, padding=padding),
    )


class AffineCouplingStep(nn.Module):
    """One flow step: affine coupling + global affine + fixed channel permutation (FrEIA's ``AllInOneBlock``).

    ``x = [x1, x2]`` (``x1`` the first ``C - C // 2`` channels); ``a = 0.1 * subnet(x1)``;
    ``s = clamp * tanh(a[:, :C2])``, ``t = a[:, C2:]``; ``y = [x1, x2 * exp(s) + t] * g + b``
    with ``g = global_scale(global_scale)``; output ``y[:, permutation]``;
    ``log|det J| = sum(s) + H W sum(log g)``.

    Parameters
    ----------
    channels : int
        Number of input (and output) channels; at least 2.
    kernel_size : int
        Kernel size of the subnet's two convolutions (FastFlow alternates 3 and 1).
    hidden_ratio : float, optional
        Hidden channels of the subnet relative to its input, the conditioning half of the
        channels (FastFlow: 1.0).
    clamp : float, optional
        Soft-clamping bound of the log-scales (FastFlow: 2.0).
    generator : torch.Generator, optional
        Source of randomness for the permutation (and nothing else).
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int,
        hidden_ratio: float = 1.0,
        clamp: float = 2.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling step needs at least 2 channels, got {channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        if hidden_ratio <= 0 or clamp <= 0:
            raise ValueError(f"hidden_ratio and clamp must be positive, got {hidden_ratio} and {clamp}")
        self.channels = channels
        self.clamp = float(clamp)
        self.split = channels - channels // 2  # conditioning half (first channels)
        transformed = channels - self.split
        hidden = max(1, int(self.split * hidden_ratio))  # relative to the subnet's input, as the reference
        self.subnet = _subnet(self.split, 2 * transformed, hidden, kernel_size)
        # PyTorch's default initialisation of both convolutions, as FrEIA / the official code
        # (no zero-initialised last layer).
        self.global_scale = nn.Parameter(torch.full((1, channels, 1, 1), _GLOBAL_SCALE_INIT))
        self.global_offset = nn.Parameter(torch.zeros(1, channels, 1, 1))
        permutation = torch.randperm(channels, generator=generator)
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    def _scale_shift(self, conditioning: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = 0.1 * self.subnet(conditioning)
        transformed = self.channels - self.split
        log_s = soft_clamp(params[:, :transformed], self.clamp)
        return log_s, params[:, transformed:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x (B, C, H, W)`` to ``(z, log_det)`` with ``log_det`` of shape ``(B,)``."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected (B, {self.channels}, H, W), got {tuple(x.shape)}")
        x1, x2 = x[:, : self.split], x[:, self.split :]
        log_s, shift = self._scale_shift(x1)
        y2 = x2 * torch.exp(log_s) + shift
        log_det = log_s.sum(dim=(1, 2, 3))
        scale = global_scale(self.global_scale)
        y = torch.cat([x1, y2], dim=1)
        y = y * scale + self.global_offset
        log_det = log_det + torch.log(scale).sum() * (x.shape[2] * x.shape[3])
        return y[:, self.permutation], log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`forward` (the log-determinant is not needed here)."""
        y = z[:, self.inverse_permutation]
        y = (y - self.global_offset) / global_scale(self.global_scale)
        y1, y2 = y[:, : self.split], y[:, self.split :]
        log_s, shift = self._scale_shift(y1)
        x2 = (y2 - shift) * torch.exp(-log_s)
        return torch.cat([y1, x2], dim=1)


class Flow2d(nn.Module):
    """A chain of :class:`AffineCouplingStep` on ``(B, C, H, W)`` feature maps.

    Parameters
    ----------
    channels : int
        Feature channels.
    steps : int
        Number of coupling steps (FastFlow: 8).
    hidden_ratio : float, optional
        Subnet width relative to its input, half the channels (FastFlow: 1.0).
    clamp : float, optional
        Soft-clamping bound (FastFlow: 2.0).
    conv3x3_only : bool, optional
        Use 3x3 kernels in every step instead of alternating 3x3 (even steps) and 1x1 (odd steps).
    generator : torch.Generator, optional
        Seeds the permutations.
    """

    def __init__(
        self,
        channels: int,
        *,
        steps: int = 8,
        hidden_ratio: float = 1.0,
        clamp: float = 2.0,
        conv3x3_only: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"a flow needs at least one step, got {steps}")
        self.steps = nn.ModuleList(
            AffineCouplingStep(
                channels,
                kernel_size=3 if (conv3x3_only or i % 2 == 0) else 1,
                hidden_ratio=hidden_ratio,
                clamp=clamp,
                generator=generator,
            )
            for i in range(steps)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z, log_det)``: the latent (same shape as ``x``) and ``log|det J|`` per sample."""
        log_det = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, step_log_det = step(x)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Map a latent back to feature space."""
        for step in reversed(self.steps):
            z = step.inverse(z)
        return z
