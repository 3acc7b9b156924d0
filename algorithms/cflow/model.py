"""CFlow-AD's networks: a frozen encoder and one conditional normalising flow per feature scale.

Gudovskiy, Ishizaka & Kozuka, "CFLOW-AD", WACV 2022, sec. 3 and the official code
(github.com/gudovskiy/cflow-ad, ``model.py``, ``train.py``). Each decoder maps single feature
vectors ("fibres", length ``C``) conditioned on the 2-D positional encoding of their position
(``P = 128`` channels) to a standard normal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import FeatureExtractor
from ..components.flows import ConditionalFlow
from ..components.positional import positional_encoding_2d

__all__ = ["CflowModel", "fibre_log_likelihood", "fibre_loss"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def fibre_log_likelihood(z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """``log p(x) = -C ln sqrt(2 pi) - 0.5 ||z||^2 + log|det J|`` per fibre; ``z (N, C)``, ``log_det (N,)`` -> ``(N,)``.

    The exact log-density of a standard normal latent (cflow-ad ``utils.get_logp``).
    """
    channels = z.shape[1]
    return -channels * _HALF_LOG_2PI - 0.5 * torch.sum(z**2, dim=1) + log_det


def fibre_loss(log_p: torch.Tensor, channels: int) -> torch.Tensor:
    """CFlow-AD's training loss: ``mean(-logsigmoid(log p / C))`` (cflow-ad ``train.py``)."""
    return -F.logsigmoid(log_p / channels).mean()


class CflowModel(nn.Module):
    """Frozen encoder + one :class:`~algorithms.components.flows.ConditionalFlow` per scale.

    Parameters
    ----------
    backbone : str
        timm CNN name (publication: ``wide_resnet50_2.tv_in1k``).
    layers : sequence of str or int
        Encoder levels (publication: layer2, layer3, layer4 -- ``pool_layers=3``).
    cond_channels : int
        Positional-encoding channels ``P`` (publication: 128), a multiple of 4.
    coupling_blocks : int
        ``AllInOneStep`` blocks per decoder (publication: 8).
    clamp : float
        Soft-clamp bound (publication ``clamp_alpha``: 1.9).
    pretrained, weights_path
        Encoder weights (see :class:`~algorithms.components.feature_extractor.FeatureExtractor`).
    generator : torch.Generator, optional
        Seeds the decoders' fixed orthogonal mixing matrices.
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        cond_channels: int,
        coupling_blocks: int,
        clamp: float,
        pretrained: bool,
        weights_path: str | None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if cond_channels < 4 or cond_channels % 4:
            raise ValueError(f"cflow: cond_channels must be a positive multiple of 4, got {cond_channels}")
        self.extractor = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.cond_channels = cond_channels
        self.decoders = nn.ModuleList(
            ConditionalFlow(
                c,
                steps=coupling_blocks,
                cond_channels=cond_channels,
                subnet="fc",
                hidden_ratio=2.0,  # subnet_fc: Linear(d, 2 d) -> ReLU -> Linear(2 d, C)
                clamp=clamp,
                permute_soft=True,
                generator=generator,
            )
            for c in self.extractor.channels
        )

    @property
    def channels(self) -> list[int]:
        return list(self.extractor.channels)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Frozen encoder maps ``(B, C_l, h_l, w_l)`` (no gradients)."""
        with torch.no_grad():
            return [f.detach() for f in self.extractor(images)]

    def condition(self, feature: torch.Tensor) -> torch.Tensor:
        """Positional encoding of every fibre of ``feature (B, C, h, w)``: ``(B h w, P)``, rows in fibre order."""
        b, _, h, w = feature.shape
        pe = positional_encoding_2d(self.cond_channels, h, w, dtype=feature.dtype, device=feature.device)
        return pe.reshape(self.cond_channels, h * w).t().repeat(b, 1)

    @staticmethod
    def fibres(feature: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B h w, C)`` in (image, row, column) order."""
        return feature.permute(0, 2, 3, 1).reshape(-1, feature.shape[1])

    def log_likelihood(self, level: int, fibres: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``log p`` of fibres ``(N, C_level)`` with their conditions ``(N, P)``: ``(N,)``."""
        z, log_det = self.decoders[level](fibres, cond)
        return fibre_log_likelihood(z, log_det)

    def log_prob_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per scale, ``log p / C`` of every fibre as a map ``(B, h_l, w_l)`` (cflow-ad ``test_meta_epoch``)."""
        maps = []
        for level, feature in enumerate(self.features(images)):
            b, c, h, w = feature.shape
            log_p = self.log_likelihood(level, self.fibres(feature), self.condition(feature))
            maps.append((log_p / c).reshape(b, h, w))
        return maps
