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

The conditional blocks (CFlow-AD, MSFlow, AST) act on fibres ``(B, C)`` (fully connected subnet)
or maps ``(B, C, H, W)`` (convolutional subnet) and take an optional condition concatenated to the
subnet input (``(B, D)`` or ``(B, D, H, W)``): :class:`ConditionalAffineCoupling` (FrEIA
``AllInOneBlock``'s coupling), :class:`GlobalAffine`, :class:`SoftPermutation` (fixed random
orthogonal matrix, ``permute_soft=True``) and :class:`Permutation`, assembled by
:class:`AllInOneStep` and chained by :class:`ConditionalFlow`; :class:`GlowCoupling` is the
two-sided coupling of Glow / DifferNet / AST. Every block's ``forward(x, cond)`` returns
``(y, log|det J| (B,))`` and ``inverse(y, cond)`` its exact inverse. The subnets are fully
connected (``"fc"``), convolutional (``"conv"``) or convolutional with a LayerNorm over the
channels after the first convolution (``"conv_ln"``, MSFlow's parallel flows).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AffineCouplingStep",
    "AllInOneStep",
    "ChannelLayerNorm",
    "ConditionalAffineCoupling",
    "ConditionalFlow",
    "Flow2d",
    "GlobalAffine",
    "GlowCoupling",
    "Permutation",
    "SoftPermutation",
    "atan_clamp",
    "conv_ln_subnet",
    "conv_subnet",
    "fc_subnet",
    "global_scale",
    "random_orthogonal",
    "soft_clamp",
]

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


# --------------------------------------------------------------------------------------------
# Conditional blocks (CFlow-AD, MSFlow, AST)
# --------------------------------------------------------------------------------------------


def atan_clamp(values: torch.Tensor, clamp: float) -> torch.Tensor:
    """The arctan soft clamp of DifferNet / CS-Flow / AST's Glow coupling: ``clamp * 0.636 * atan(s / clamp)``.

    ``0.636 ~ 2 / pi``, so the result lies in ``(-clamp, clamp)`` with slope 0.636 at zero
    (AST's ``freia_funcs.glow_coupling_layer.log_e``; reference facts section 0.2).
    """
    return clamp * 0.636 * torch.atan(values / clamp)


def fc_subnet(in_features: int, out_features: int, hidden: int) -> nn.Sequential:
    """``Linear(in, hidden) -> ReLU -> Linear(hidden, out)`` (CFlow-AD's ``subnet_fc`` with hidden ``2 * in``)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))


def conv_subnet(in_channels: int, out_channels: int, hidden: int, kernel_size: int = 3) -> nn.Sequential:
    """``Conv(k) -> ReLU -> Conv(k)`` with same padding (FastFlow's subnet; MSFlow uses it with a condition)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    return _subnet(in_channels, out_channels, hidden, kernel_size)


class ChannelLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the channels of ``(B, C, H, W)`` maps (each position normalised on its own).

    The learned per-channel weight and bias of ``nn.LayerNorm`` (``elementwise_affine=True``).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"ChannelLayerNorm: expected (B, C, H, W), got {tuple(x.shape)}")
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_ln_subnet(in_channels: int, out_channels: int, hidden: int, kernel_size: int = 3) -> nn.Sequential:
    """``Conv(k) -> LayerNorm over channels -> ReLU -> Conv(k)``, same padding (MSFlow's parallel-flow subnet).

    MSFlow (Zhou et al., TNNLS 2024; reference facts section A2): ``Conv3x3(in -> in) -> LayerNorm
    -> ReLU -> Conv3x3(in -> out)``, i.e. ``hidden = in``.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    padding = kernel_size // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size, padding=padding),
        ChannelLayerNorm(hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, out_channels, kernel_size, padding=padding),
    )


_SUBNETS = ("fc", "conv", "conv_ln")


def _make_subnet(kind: str, in_channels: int, out_channels: int, hidden: int, kernel_size: int) -> nn.Sequential:
    if kind == "fc":
        return fc_subnet(in_channels, out_channels, hidden)
    if kind == "conv":
        return conv_subnet(in_channels, out_channels, hidden, kernel_size)
    if kind == "conv_ln":
        return conv_ln_subnet(in_channels, out_channels, hidden, kernel_size)
    raise ValueError(f"subnet must be one of {_SUBNETS}, got {kind!r}")


def _check_input(name: str, x: torch.Tensor, channels: int, subnet: str) -> None:
    ndim = 2 if subnet == "fc" else 4
    if x.ndim != ndim or x.shape[1] != channels:
        shape = f"(B, {channels})" if ndim == 2 else f"(B, {channels}, H, W)"
        raise ValueError(f"{name}: expected {shape}, got {tuple(x.shape)}")


def _with_condition(name: str, x: torch.Tensor, cond: torch.Tensor | None, cond_channels: int) -> torch.Tensor:
    if cond_channels == 0:
        if cond is not None:
            raise ValueError(f"{name} was built without a condition (cond_channels=0) but got one")
        return x
    if cond is None:
        raise ValueError(f"{name} needs a condition of {cond_channels} channels, got None")
    if cond.shape[0] != x.shape[0] or cond.shape[1] != cond_channels or cond.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"{name}: condition shape {tuple(cond.shape)} does not match input {tuple(x.shape)} "
            f"with {cond_channels} condition channels"
        )
    return torch.cat([x, cond], dim=1)


def _sum_per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(dim=1)


class ConditionalAffineCoupling(nn.Module):
    """One-sided affine coupling with an optional condition (FrEIA ``AllInOneBlock``'s coupling).

    ``x = [x1, x2]`` split on dim 1 (``x1`` the first ``C - C // 2`` channels);
    ``a = 0.1 * subnet([x1 || cond])``; ``s = soft_clamp(a[:, :C // 2], clamp)`` (``clamp * tanh``),
    ``t = a[:, C // 2:]``; ``y = [x1, x2 * exp(s) + t]``; ``log|det J| = sum(s)`` per sample.

    Parameters
    ----------
    channels : int
        Channels ``C`` of ``x`` (at least 2): ``(B, C)`` for ``subnet="fc"``, ``(B, C, H, W)`` for ``"conv"``.
    cond_channels : int, optional
        Channels of the condition concatenated to the subnet input (0: unconditional).
    subnet : {"fc", "conv", "conv_ln"}
        Fully connected (CFlow-AD), convolutional (FastFlow) or convolutional with a channel
        LayerNorm after the first convolution (MSFlow) subnet.
    hidden_ratio : float, optional
        Subnet hidden width relative to its input ``C - C // 2 + cond_channels`` (CFlow-AD: 2.0).
    kernel_size : int, optional
        Convolution kernel of the conv subnet.
    clamp : float, optional
        Soft-clamp bound of the log-scales (CFlow-AD ``clamp_alpha`` 1.9; FastFlow 2.0).
    """

    def __init__(
        self,
        channels: int,
        *,
        cond_channels: int = 0,
        subnet: str = "fc",
        hidden_ratio: float = 2.0,
        kernel_size: int = 3,
        clamp: float = 1.9,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels, got {channels}")
        if cond_channels < 0:
            raise ValueError(f"cond_channels must be >= 0, got {cond_channels}")
        if hidden_ratio <= 0 or clamp <= 0:
            raise ValueError(f"hidden_ratio and clamp must be positive, got {hidden_ratio} and {clamp}")
        self.channels, self.cond_channels, self.kind = channels, cond_channels, subnet
        self.clamp = float(clamp)
        self.split = channels - channels // 2
        self.transformed = channels // 2
        in_channels = self.split + cond_channels
        hidden = max(1, int(in_channels * hidden_ratio))
        self.subnet = _make_subnet(subnet, in_channels, 2 * self.transformed, hidden, kernel_size)

    def _scale_shift(self, x1: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        params = 0.1 * self.subnet(_with_condition(type(self).__name__, x1, cond, self.cond_channels))
        return soft_clamp(params[:, : self.transformed], self.clamp), params[:, self.transformed :]

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log_det)``: ``y`` shaped as ``x``, ``log_det`` ``(B,)``; ``ValueError`` on a wrong shape."""
        _check_input(type(self).__name__, x, self.channels, self.kind)
        x1, x2 = x[:, : self.split], x[:, self.split :]
        log_s, shift = self._scale_shift(x1, cond)
        return torch.cat([x1, x2 * torch.exp(log_s) + shift], dim=1), _sum_per_sample(log_s)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact inverse of :meth:`forward`."""
        _check_input(type(self).__name__, y, self.channels, self.kind)
        y1, y2 = y[:, : self.split], y[:, self.split :]
        log_s, shift = self._scale_shift(y1, cond)
        return torch.cat([y1, (y2 - shift) * torch.exp(-log_s)], dim=1)


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, -1) + (1,) * (x.ndim - 2)


class GlobalAffine(nn.Module):
    """Learned per-channel affine ``y = x * g + b``, ``g = global_scale(a) > 0`` (FrEIA SOFTPLUS type).

    Initialised to the identity (``g = 1``, ``b = 0``). Works on ``(B, C)`` or ``(B, C, *spatial)``;
    ``log|det J| = prod(spatial) * sum(log g)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels = channels
        self.global_scale = nn.Parameter(torch.full((channels,), _GLOBAL_SCALE_INIT))
        self.global_offset = nn.Parameter(torch.zeros(channels))

    def _params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"GlobalAffine: expected (B, {self.channels}, ...), got {tuple(x.shape)}")
        shape = _channel_shape(x)
        return global_scale(self.global_scale).view(shape), self.global_offset.view(shape)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x * g + b, log_det (B,))``; ``cond`` is ignored (uniform block interface)."""
        scale, offset = self._params(x)
        pixels = x[0, 0].numel()
        log_det = torch.log(global_scale(self.global_scale)).sum() * pixels
        return x * scale + offset, log_det.expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact inverse of :meth:`forward`."""
        scale, offset = self._params(y)
        return (y - offset) / scale


def random_orthogonal(channels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Haar-random special orthogonal ``(C, C)`` float64 matrix (det +1), as scipy's ``special_ortho_group``.

    QR of a standard Gaussian matrix with the signs of ``R``'s diagonal moved into ``Q``
    (Mezzadri 2007), then one row negated if the determinant is -1.
    """
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    gaussian = torch.randn(channels, channels, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.linalg.det(q) < 0:
        q[0] = -q[0]
    return q


def _mix_channels(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # y[:, i] = sum_j weight[i, j] x[:, j] (F.linear on fibres, a 1x1 convolution on maps).
    if x.ndim == 2:
        return F.linear(x, weight)
    return torch.einsum("ij,bj...->bi...", weight, x)


class SoftPermutation(nn.Module):
    """Fixed random orthogonal channel mixing ``y[:, i] = sum_j W[i, j] x[:, j]`` (FrEIA ``permute_soft=True``).

    ``W`` is drawn once by :func:`random_orthogonal` and stored as a buffer; ``|det W| = 1``, so
    the log-determinant is 0. The inverse uses ``W^T``.
    """

    def __init__(self, channels: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.channels = channels
        weight = random_orthogonal(channels, generator).float()
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W x, zeros (B,))``."""
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"SoftPermutation: expected (B, {self.channels}, ...), got {tuple(x.shape)}")
        return _mix_channels(x, self.weight), x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``W^T y``."""
        return _mix_channels(y, self.weight.t())


class Permutation(nn.Module):
    """Fixed random channel permutation ``y = x[:, perm]`` (log-determinant 0)."""

    def __init__(self, channels: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.channels = channels
        permutation = torch.randperm(channels, generator=generator)
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x[:, perm], zeros (B,))``."""
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"Permutation: expected (B, {self.channels}, ...), got {tuple(x.shape)}")
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``y[:, argsort(perm)]``."""
        return y[:, self.inverse_permutation]


class AllInOneStep(nn.Module):
    """FrEIA's ``AllInOneBlock`` with a condition: coupling, then global affine, then (soft) permutation.

    ``y = P(g * coupling(x, cond) + b)``; ``log|det J|`` = the coupling's + the global affine's.
    CFlow-AD: ``subnet="fc"``, ``hidden_ratio=2``, ``clamp=1.9``, ``permute_soft=True``, condition
    the 128-d positional encoding (cflow-ad ``model.py``, ``Ff.AllInOneBlock(..., affine_clamping=
    clamp_alpha, global_affine_type='SOFTPLUS', permute_soft=True)``).
    Parameters as :class:`ConditionalAffineCoupling`; ``permute_soft`` chooses
    :class:`SoftPermutation` over :class:`Permutation`; ``generator`` seeds it.
    """

    def __init__(
        self,
        channels: int,
        *,
        cond_channels: int = 0,
        subnet: str = "fc",
        hidden_ratio: float = 2.0,
        kernel_size: int = 3,
        clamp: float = 1.9,
        permute_soft: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.coupling = ConditionalAffineCoupling(
            channels,
            cond_channels=cond_channels,
            subnet=subnet,
            hidden_ratio=hidden_ratio,
            kernel_size=kernel_size,
            clamp=clamp,
        )
        self.affine = GlobalAffine(channels)
        self.permute = (SoftPermutation if permute_soft else Permutation)(channels, generator=generator)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log_det (B,))``."""
        y, log_det = self.coupling(x, cond)
        y, affine_log_det = self.affine(y)
        y, _ = self.permute(y)
        return y, log_det + affine_log_det

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact inverse of :meth:`forward`."""
        return self.coupling.inverse(self.affine.inverse(self.permute.inverse(y)), cond)


class ConditionalFlow(nn.Module):
    """A chain of :class:`AllInOneStep` sharing one condition (CFlow-AD's per-scale decoder: 8 steps).

    ``forward(x, cond)`` returns ``(z, log|det J| (B,))``; ``inverse(z, cond)`` maps back.
    Keyword parameters are passed to every step; ``generator`` seeds the permutations in order.
    """

    def __init__(
        self, channels: int, *, steps: int = 8, generator: torch.Generator | None = None, **step_kwargs
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"a flow needs at least one step, got {steps}")
        self.steps = nn.ModuleList(AllInOneStep(channels, generator=generator, **step_kwargs) for _ in range(steps))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log_det (B,))``."""
        log_det = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, step_log_det = step(x, cond)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact inverse of :meth:`forward`."""
        for step in reversed(self.steps):
            z = step.inverse(z, cond)
        return z


class GlowCoupling(nn.Module):
    """Two-sided (Glow / RealNVP-style) affine coupling with an optional condition.

    ``x = [x1, x2]`` (``x1`` the first ``C // 2`` channels); ``[s2, t2] = subnet2([x2 || c])``,
    ``y1 = exp(e(s2)) * x1 + t2``; ``[s1, t1] = subnet1([y1 || c])``, ``y2 = exp(e(s1)) * x2 + t1``
    with ``e = atan_clamp(., clamp)``; ``log|det J| = sum e(s1) + sum e(s2)``. Outputs are clamped
    to ``+-output_clamp`` (AST / DifferNet ``glow_coupling_layer``; reference facts section 0.2),
    which leaves the map exactly invertible for outputs inside that range.

    Parameters as :class:`ConditionalAffineCoupling` (``hidden_ratio`` relative to each subnet's
    input), plus ``output_clamp`` (1e6) and ``subnet_factory``: a callable ``(in_channels,
    out_channels) -> nn.Module`` building both subnets instead of :func:`fc_subnet` /
    :func:`conv_subnet` (AST's replicate-padded, zero-gated convolutions); ``subnet`` then only
    names the input layout (``"fc"``: ``(B, C)``, ``"conv"``: ``(B, C, H, W)``).
    """

    def __init__(
        self,
        channels: int,
        *,
        cond_channels: int = 0,
        subnet: str = "conv",
        hidden_ratio: float = 1.0,
        kernel_size: int = 3,
        clamp: float = 3.0,
        output_clamp: float = 1e6,
        subnet_factory: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels, got {channels}")
        if cond_channels < 0 or hidden_ratio <= 0 or clamp <= 0 or output_clamp <= 0:
            raise ValueError("cond_channels must be >= 0 and hidden_ratio, clamp, output_clamp positive")
        if subnet not in ("fc", "conv"):
            raise ValueError(f"subnet must be 'fc' or 'conv', got {subnet!r}")
        self.channels, self.cond_channels, self.kind = channels, cond_channels, subnet
        self.clamp, self.output_clamp = float(clamp), float(output_clamp)
        self.len1, self.len2 = channels // 2, channels - channels // 2
        in2, in1 = self.len2 + cond_channels, self.len1 + cond_channels
        if subnet_factory is not None:
            self.subnet2 = subnet_factory(in2, 2 * self.len1)
            self.subnet1 = subnet_factory(in1, 2 * self.len2)
        else:
            self.subnet2 = _make_subnet(subnet, in2, 2 * self.len1, max(1, int(in2 * hidden_ratio)), kernel_size)
            self.subnet1 = _make_subnet(subnet, in1, 2 * self.len2, max(1, int(in1 * hidden_ratio)), kernel_size)

    def _params(self, net: nn.Module, x: torch.Tensor, cond, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = net(_with_condition(type(self).__name__, x, cond, self.cond_channels))
        return atan_clamp(out[:, :n], self.clamp), out[:, n:]

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log_det (B,))``."""
        _check_input(type(self).__name__, x, self.channels, self.kind)
        x1, x2 = x[:, : self.len1], x[:, self.len1 :]
        s2, t2 = self._params(self.subnet2, x2, cond, self.len1)
        y1 = torch.exp(s2) * x1 + t2
        s1, t1 = self._params(self.subnet1, y1, cond, self.len2)
        y2 = torch.exp(s1) * x2 + t1
        y = torch.cat([y1, y2], dim=1).clamp(-self.output_clamp, self.output_clamp)
        return y, _sum_per_sample(s1) + _sum_per_sample(s2)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact inverse of :meth:`forward` (for outputs inside the clamp)."""
        _check_input(type(self).__name__, y, self.channels, self.kind)
        y1, y2 = y[:, : self.len1], y[:, self.len1 :]
        s1, t1 = self._params(self.subnet1, y1, cond, self.len2)
        x2 = (y2 - t1) * torch.exp(-s1)
        s2, t2 = self._params(self.subnet2, x2, cond, self.len1)
        return torch.cat([(y1 - t2) * torch.exp(-s2), x2], dim=1)
