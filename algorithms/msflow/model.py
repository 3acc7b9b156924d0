"""MSFlow's networks: a frozen encoder, asymmetrical parallel flows per scale and a fusion flow.

Zhou, Xu, Song, Shen & Shen, "MSFlow: Multi-Scale Flow-based Framework for Unsupervised Anomaly
Detection", IEEE TNNLS 2024 (https://arxiv.org/abs/2308.15300), sec. 3, as summarised in the
project's reference facts (``algorithms-next.md`` section A2). Written from those facts only: the
official code is CC BY-NC-ND 4.0 and none of it is used here.

1. **Encoder.** A frozen CNN (WRN50-2, torchvision V1 weights), layers 1-3; each map is average-pooled
   3 x 3 with stride 2 (padding 1), halving its side: at 512 px, 256 ch @ 64^2, 512 @ 32^2, 1024 @ 16^2.
2. **Parallel flows.** One conditional flow per scale, with 2, 5 and 8 all-in-one couplings
   (:class:`~algorithms.components.flows.ConditionalFlow`): the condition is the 64-d 2-D
   sinusoidal positional encoding, the subnet ``Conv3x3(d -> d) -> LayerNorm -> ReLU ->
   Conv3x3(d -> C)`` with ``d = C/2 + 64``, clamp 1.9, SOFTPLUS global affine, hard permutation.
3. **Fusion flow** (:class:`FusionFlow`). A fixed random channel permutation per scale, then one
   Glow-style two-sided coupling acting on all scales jointly (:class:`FusionCoupling`): each
   scale is split into halves; the subnet (:class:`FusionSubnet`) average-pools one half of every
   scale to the smallest resolution, concatenates them, mixes them with ``Conv3x3(S -> S/4) ->
   LayerNorm -> ReLU -> Conv3x3(S/4 -> S) -> ReLU``, splits the result back per scale, upsamples
   each part bilinearly to its scale and adds it to that scale's half (residual); one 3 x 3
   convolution per scale then gives the log-scales and another the shifts for the other half.
4. **Loss.** ``mean_b [sum_scales 0.5 sum_{c,h,w} z^2 - log|det J|]`` (:func:`msflow_loss`), the
   log-determinant of the parallel and fusion flows together; not normalised by the dimension.
5. **Maps** (per image only). Per scale ``log p = -0.5 mean_c z^2`` (:func:`log_prob_maps`); the
   localisation map ``"add"`` (:func:`add_map`) and the detection map ``"mul"`` (:func:`mul_map`).

Upsampling is bilinear with ``align_corners=True`` (as CFlow-AD's code, on which MSFlow builds;
the facts do not say which). The output clamp of the fusion coupling (+-1e6) is the Glow block's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import FeatureExtractor
from ..components.flows import ChannelLayerNorm, ConditionalFlow, Permutation, atan_clamp
from ..components.positional import positional_encoding_2d

__all__ = [
    "FusionCoupling",
    "FusionFlow",
    "FusionSubnet",
    "MsflowModel",
    "MultiScaleFlow",
    "add_map",
    "log_prob_maps",
    "msflow_loss",
    "mul_map",
]

_ALIGN_CORNERS = True


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=_ALIGN_CORNERS)


def msflow_loss(latents: Sequence[torch.Tensor], log_det: torch.Tensor) -> torch.Tensor:
    """MSFlow's negative log-likelihood: ``mean_b [sum_s 0.5 sum_{c,h,w} z_s^2 - log|det J|]``.

    ``latents``: the per-scale outputs ``(B, C_s, h_s, w_s)`` of the fusion flow; ``log_det`` ``(B,)``
    the log-determinant of the whole flow (parallel + fusion). The constant ``D ln sqrt(2 pi)`` is
    dropped and nothing is divided by the dimension, as in the publication.
    """
    energy = sum(0.5 * z.pow(2).flatten(1).sum(dim=1) for z in latents)
    return (energy - log_det).mean()


def log_prob_maps(latents: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per scale, ``log p = -0.5 mean_c z^2`` at every position: ``(B, h_s, w_s)`` (log-det unused)."""
    return [-0.5 * z.pow(2).mean(dim=1) for z in latents]


def _per_image_max(maps: torch.Tensor) -> torch.Tensor:
    return maps.amax(dim=(-2, -1), keepdim=True)


def add_map(log_probs: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """The localisation map: ``m = sum_s up(exp(log p_s - max_image log p_s))``, returned as ``max_image m - m``.

    ``(B, H, W)`` at ``size``, ``>= 0``, higher is more anomalous; every maximum is per image.
    """
    total = None
    for log_p in log_probs:
        prob = torch.exp(log_p - _per_image_max(log_p)).unsqueeze(1)
        up = _upsample(prob, size)[:, 0]
        total = up if total is None else total + up
    return _per_image_max(total) - total


def mul_map(log_probs: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """The detection map: ``p = exp(l - max_image l)`` with ``l = sum_s up(log p_s)``, returned as ``max_image p - p``.

    ``(B, H, W)`` at ``size``, in ``[0, 1]`` (``max p = 1``), higher is more anomalous. Summing
    log-likelihoods multiplies the scales' likelihoods, hence the name.
    """
    total = None
    for log_p in log_probs:
        up = _upsample(log_p.unsqueeze(1), size)[:, 0]
        total = up if total is None else total + up
    prob = torch.exp(total - _per_image_max(total))
    return _per_image_max(prob) - prob


class FusionSubnet(nn.Module):
    """The fusion flow's multi-scale subnet: one half of every scale in, ``(log-scale, shift)`` per scale out.

    Parameters
    ----------
    in_channels : sequence of int
        Channels of the conditioning half of each scale (publication: 128, 256, 512).
    out_channels : sequence of int
        Channels of the transformed half of each scale (its log-scales and shifts).
    hidden_ratio : float
        Width of the mixing convolutions relative to ``sum(in_channels)`` (publication: 1/4, 896 -> 224).
    kernel_size : int
        Kernel of every convolution (publication: 3).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        *,
        hidden_ratio: float = 0.25,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(out_channels) or not in_channels:
            raise ValueError(f"FusionSubnet: one in and one out width per scale, got {in_channels}, {out_channels}")
        if hidden_ratio <= 0 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"FusionSubnet: need hidden_ratio > 0, an odd kernel, got {hidden_ratio}, {kernel_size}")
        self.in_channels = [int(c) for c in in_channels]
        total = sum(self.in_channels)
        hidden = max(1, int(total * hidden_ratio))
        pad = kernel_size // 2
        self.mix = nn.Sequential(
            nn.Conv2d(total, hidden, kernel_size, padding=pad),
            ChannelLayerNorm(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, total, kernel_size, padding=pad),
            nn.ReLU(),
        )
        self.scale = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, padding=pad) for c_in, c_out in zip(in_channels, out_channels)
        )
        self.shift = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, padding=pad) for c_in, c_out in zip(in_channels, out_channels)
        )

    def forward(self, halves: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(raw log-scale, shift)]`` per scale, each ``(B, out_s, h_s, w_s)``."""
        smallest = min((tuple(h.shape[-2:]) for h in halves), key=lambda hw: hw[0] * hw[1])
        pooled = [F.adaptive_avg_pool2d(h, smallest) if tuple(h.shape[-2:]) != smallest else h for h in halves]
        mixed = self.mix(torch.cat(pooled, dim=1)).split(self.in_channels, dim=1)
        out = []
        for half, part, scale, shift in zip(halves, mixed, self.scale, self.shift):
            hidden = half + _upsample(part, tuple(half.shape[-2:]))
            out.append((scale(hidden), shift(hidden)))
        return out


class FusionCoupling(nn.Module):
    """One Glow-style two-sided affine coupling acting jointly on all scales.

    Each scale ``x_s = [a_s, b_s]`` (``a_s`` the first ``C_s // 2`` channels). With the
    :class:`FusionSubnet` ``N_b`` on the ``b`` halves and ``N_a`` on the new ``a`` halves and
    ``e = atan_clamp(., clamp)``::

        (s_s, t_s) = N_b(b)_s;   a'_s = exp(e(s_s)) a_s + t_s
        (u_s, v_s) = N_a(a')_s;  b'_s = exp(e(u_s)) b_s + v_s

    ``log|det J| = sum_s [sum e(s_s) + sum e(u_s)]``; outputs clamped to ``+-output_clamp``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        clamp: float = 1.9,
        hidden_ratio: float = 0.25,
        kernel_size: int = 3,
        output_clamp: float = 1e6,
    ) -> None:
        super().__init__()
        if not channels or min(channels) < 2:
            raise ValueError(f"FusionCoupling: every scale needs at least 2 channels, got {list(channels)}")
        if clamp <= 0 or output_clamp <= 0:
            raise ValueError(f"FusionCoupling: clamp and output_clamp must be positive, got {clamp}, {output_clamp}")
        self.channels = [int(c) for c in channels]
        self.clamp, self.output_clamp = float(clamp), float(output_clamp)
        self.len_a = [c // 2 for c in self.channels]
        self.len_b = [c - c // 2 for c in self.channels]
        kwargs = {"hidden_ratio": hidden_ratio, "kernel_size": kernel_size}
        self.subnet_b = FusionSubnet(self.len_b, self.len_a, **kwargs)  # b halves -> parameters for a
        self.subnet_a = FusionSubnet(self.len_a, self.len_b, **kwargs)  # new a halves -> parameters for b

    def _check(self, xs: Sequence[torch.Tensor]) -> None:
        shapes = [tuple(x.shape) for x in xs]
        if len(xs) != len(self.channels) or any(x.ndim != 4 or x.shape[1] != c for x, c in zip(xs, self.channels)):
            raise ValueError(f"FusionCoupling: expected maps with channels {self.channels}, got shapes {shapes}")
        if len({x.shape[0] for x in xs}) != 1:
            raise ValueError(f"FusionCoupling: the scales have different batch sizes: {shapes}")

    def _split(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [x[:, :n] for x, n in zip(xs, self.len_a)], [x[:, n:] for x, n in zip(xs, self.len_a)]

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(ys, log_det (B,))`` with ``ys`` shaped as ``xs``."""
        self._check(xs)
        a, b = self._split(xs)
        log_det = xs[0].new_zeros(xs[0].shape[0])
        new_a = []
        for a_s, (s, t) in zip(a, self.subnet_b(b)):
            s = atan_clamp(s, self.clamp)
            new_a.append(torch.exp(s) * a_s + t)
            log_det = log_det + s.flatten(1).sum(dim=1)
        ys = []
        for a_s, b_s, (u, v) in zip(new_a, b, self.subnet_a(new_a)):
            u = atan_clamp(u, self.clamp)
            log_det = log_det + u.flatten(1).sum(dim=1)
            y = torch.cat([a_s, torch.exp(u) * b_s + v], dim=1)
            ys.append(y.clamp(-self.output_clamp, self.output_clamp))
        return ys, log_det

    def inverse(self, ys: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Exact inverse of :meth:`forward` (for outputs inside the clamp)."""
        self._check(ys)
        new_a, new_b = self._split(ys)
        b = [(b_s - v) * torch.exp(-atan_clamp(u, self.clamp)) for b_s, (u, v) in zip(new_b, self.subnet_a(new_a))]
        return [
            torch.cat([(a_s - t) * torch.exp(-atan_clamp(s, self.clamp)), b_s], dim=1)
            for a_s, b_s, (s, t) in zip(new_a, b, self.subnet_b(b))
        ]


class FusionFlow(nn.Module):
    """MSFlow's fusion flow: a fixed random channel permutation per scale, then one :class:`FusionCoupling`.

    ``forward(xs)`` returns ``(zs, log|det J| (B,))`` (the permutations add nothing to it);
    ``inverse(zs)`` maps back. ``generator`` seeds the permutations.
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        clamp: float = 1.9,
        hidden_ratio: float = 0.25,
        kernel_size: int = 3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.permutations = nn.ModuleList(Permutation(int(c), generator=generator) for c in channels)
        self.coupling = FusionCoupling(channels, clamp=clamp, hidden_ratio=hidden_ratio, kernel_size=kernel_size)

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(zs, log_det (B,))``."""
        if len(xs) != len(self.permutations):
            raise ValueError(f"FusionFlow: expected {len(self.permutations)} scales, got {len(xs)}")
        return self.coupling([perm(x)[0] for perm, x in zip(self.permutations, xs)])

    def inverse(self, zs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Exact inverse of :meth:`forward`."""
        return [perm.inverse(y) for perm, y in zip(self.permutations, self.coupling.inverse(zs))]


class MultiScaleFlow(nn.Module):
    """MSFlow's whole flow: a parallel :class:`ConditionalFlow` per scale, then the :class:`FusionFlow`.

    ``forward(features)`` maps the per-scale maps ``(B, C_s, h_s, w_s)`` to latents of the same
    shapes and ``log|det J| (B,)`` of the whole assembly; ``inverse(latents)`` maps back exactly.

    Parameters
    ----------
    channels : sequence of int
        Channels of each scale (publication: 256, 512, 1024).
    parallel_blocks : sequence of int
        All-in-one couplings of each scale's parallel flow (publication: 2, 5, 8).
    cond_channels : int
        Positional-encoding channels (publication: 64), a multiple of 4.
    clamp : float
        Soft-clamp bound of every coupling (publication: 1.9).
    generator : torch.Generator, optional
        Seeds the fixed permutations (parallel flows first, then the fusion flow).
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        parallel_blocks: Sequence[int],
        cond_channels: int,
        clamp: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if cond_channels < 4 or cond_channels % 4:
            raise ValueError(f"msflow: cond_channels must be a positive multiple of 4, got {cond_channels}")
        if len(parallel_blocks) != len(channels) or min(parallel_blocks, default=0) < 1:
            raise ValueError(
                f"msflow: one positive block count per scale, got parallel_blocks={list(parallel_blocks)} "
                f"for {len(channels)} scales"
            )
        self.cond_channels = cond_channels
        self.parallel_flows = nn.ModuleList(
            ConditionalFlow(
                int(c),
                steps=int(blocks),
                cond_channels=cond_channels,
                subnet="conv_ln",
                hidden_ratio=1.0,  # Conv3x3(d -> d) -> LayerNorm -> ReLU -> Conv3x3(d -> C), d = C/2 + P
                kernel_size=3,
                clamp=clamp,
                permute_soft=False,
                generator=generator,
            )
            for c, blocks in zip(channels, parallel_blocks)
        )
        self.fusion_flow = FusionFlow(channels, clamp=clamp, generator=generator)

    def condition(self, feature: torch.Tensor) -> torch.Tensor:
        """The positional encoding of ``feature (B, C, h, w)``'s grid, ``(B, P, h, w)``."""
        b, _, h, w = feature.shape
        pe = positional_encoding_2d(self.cond_channels, h, w, dtype=feature.dtype, device=feature.device)
        return pe.unsqueeze(0).expand(b, -1, -1, -1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(latents per scale, log|det J| (B,))``: parallel flows, then the fusion flow."""
        if len(features) != len(self.parallel_flows):
            raise ValueError(f"msflow: expected {len(self.parallel_flows)} feature maps, got {len(features)}")
        outputs, log_det = [], None
        for flow, feature in zip(self.parallel_flows, features):
            z, ld = flow(feature, self.condition(feature))
            outputs.append(z)
            log_det = ld if log_det is None else log_det + ld
        latents, fusion_log_det = self.fusion_flow(outputs)
        return latents, log_det + fusion_log_det

    def inverse(self, latents: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Map latents back to feature space: the exact inverse of :meth:`forward`."""
        outputs = self.fusion_flow.inverse(latents)
        return [flow.inverse(y, self.condition(y)) for flow, y in zip(self.parallel_flows, outputs)]


class MsflowModel(nn.Module):
    """Frozen encoder, 3 x 3 / stride-2 average pooling and the :class:`MultiScaleFlow`.

    Parameters
    ----------
    backbone : str
        timm CNN name (publication: ``wide_resnet50_2.tv_in1k``).
    layers : sequence of str or int
        Encoder levels (publication: layer1, layer2, layer3).
    parallel_blocks, cond_channels, clamp, generator
        As :class:`MultiScaleFlow`.
    pretrained, weights_path
        Encoder weights (see :class:`~algorithms.components.feature_extractor.FeatureExtractor`).
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        parallel_blocks: Sequence[int],
        cond_channels: int,
        clamp: float,
        pretrained: bool,
        weights_path: str | None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if len(parallel_blocks) != len(layers):
            raise ValueError(
                f"msflow: one block count per layer, got parallel_blocks={list(parallel_blocks)} "
                f"for layers={list(layers)}"
            )
        if cond_channels < 4 or cond_channels % 4:  # checked before building the encoder
            raise ValueError(f"msflow: cond_channels must be a positive multiple of 4, got {cond_channels}")
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.flows = MultiScaleFlow(
            self.extractor.channels,
            parallel_blocks=parallel_blocks,
            cond_channels=cond_channels,
            clamp=clamp,
            generator=generator,
        )

    @property
    def channels(self) -> list[int]:
        return list(self.extractor.channels)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Frozen encoder maps, each average-pooled 3 x 3 / stride 2: ``(B, C_s, S / (2 r_s), S / (2 r_s))``."""
        with torch.no_grad():
            return [self.pool(f).detach() for f in self.extractor(images)]

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(latents, log_det)`` of ``images (B, 3, S, S)``."""
        return self.flows(self.features(images))
