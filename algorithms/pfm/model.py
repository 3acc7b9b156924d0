"""PFM's networks: two frozen CNNs and one dual projector per scale (1x1 convolutions only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import FeatureExtractor
from ..components.positional import positional_encoding_2d

__all__ = ["DualProjection", "PfmModel", "conv_bn_relu"]


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv 1x1 (with bias) -> BatchNorm -> ReLU, the projectors' building block (official ``Conv_BN_Relu``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _branch(in_channels: int, out_channels: int, latent: int) -> tuple[nn.Sequential, nn.Sequential]:
    encoder = nn.Sequential(
        conv_bn_relu(in_channels, in_channels // 2 + latent), conv_bn_relu(in_channels // 2 + latent, 2 * latent)
    )
    decoder = nn.Sequential(
        conv_bn_relu(latent, 2 * latent),
        conv_bn_relu(2 * latent, out_channels // 2 + latent),
        nn.Conv2d(out_channels // 2 + latent, out_channels, 1),
    )
    return encoder, decoder


class DualProjection(nn.Module):
    """Bidirectional feature mapping S <-> T at one scale (Wan et al., PFM sec. III-B; official ``DualProjectionNet``).

    S -> T: ``Conv_BN_ReLU(c_s -> c_s/2 + L) -> Conv_BN_ReLU(-> 2L) -> shared Conv1x1(2L -> L)
    -> Conv_BN_ReLU(L -> 2L) -> Conv_BN_ReLU(-> c_t/2 + L) -> Conv1x1(-> c_t)``; T -> S is the mirror
    image and shares the middle 1x1 convolution (integer division for the halves).

    Parameters
    ----------
    student_channels, teacher_channels : int
        ``c_s`` and ``c_t``, the channel counts of the two feature maps.
    latent : int
        ``L`` (PFM: 200 / 400 / 900 per scale; PEFM: 200 / 400 / 800).
    positional_grid : (int, int), optional
        ``(h, w)``: add the fixed 2-D sinusoidal encoding (:func:`positional_encoding_2d`, ``c_s``
        resp. ``c_t`` channels) to each branch's input (PEFM, official ``DualProjectionWithPENet``);
        the module then accepts only ``h x w`` maps.
    """

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        latent: int,
        *,
        positional_grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if min(student_channels, teacher_channels, latent) < 1:
            raise ValueError(
                f"channels and latent must be positive, got {student_channels}, {teacher_channels}, {latent}"
            )
        self.s_encoder, self.t_decoder = _branch(student_channels, teacher_channels, latent)
        self.t_encoder, self.s_decoder = _branch(teacher_channels, student_channels, latent)
        self.shared = nn.Conv2d(2 * latent, latent, 1)
        self.positional_grid = tuple(positional_grid) if positional_grid is not None else None
        if positional_grid is not None:
            h, w = positional_grid
            self.register_buffer("s_position", positional_encoding_2d(student_channels, h, w), persistent=False)
            self.register_buffer("t_position", positional_encoding_2d(teacher_channels, h, w), persistent=False)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s (B, c_s, h, w), t (B, c_t, h, w))`` -> ``(s_hat from t, t_hat from s)``, same shapes."""
        if self.positional_grid is not None:
            if tuple(s.shape[-2:]) != self.positional_grid:
                raise ValueError(
                    f"this projector encodes a {self.positional_grid} grid, got maps of {tuple(s.shape[-2:])}"
                )
            s, t = s + self.s_position, t + self.t_position
        t_hat = self.t_decoder(self.shared(self.s_encoder(s)))
        s_hat = self.s_decoder(self.shared(self.t_encoder(t)))
        return s_hat, t_hat


class PfmModel(nn.Module):
    """Frozen student and teacher CNNs, L2-normalised features, one :class:`DualProjection` per scale.

    Parameters
    ----------
    student_backbone, teacher_backbone : str
        timm names (publication: ResNet34 and ResNet50 with torchvision weights).
    layers : sequence of str
        The levels tapped in both (publication: layers 1-3); they must have equal strides.
    latent_dims : sequence of int
        ``L`` per level.
    input_size : int
        Square input side (fixes the positional grids).
    pretrained, student_weights_path, teacher_weights_path
        Backbone weights, see :class:`~algorithms.components.feature_extractor.FeatureExtractor`.
    positional : bool
        Add the 2-D positional encoding to each projector input (PEFM).
    """

    def __init__(
        self,
        *,
        student_backbone: str,
        teacher_backbone: str,
        layers: Sequence[str | int],
        latent_dims: Sequence[int],
        input_size: int,
        pretrained: bool,
        student_weights_path: str | None = None,
        teacher_weights_path: str | None = None,
        positional: bool = False,
    ) -> None:
        super().__init__()
        if len(latent_dims) != len(layers):
            raise ValueError(f"one latent dimension per layer: {len(layers)} layers, got {list(latent_dims)}")
        self.input_size = input_size
        self.student = FeatureExtractor(
            student_backbone, layers, pretrained=pretrained, weights_path=student_weights_path
        )
        self.teacher = FeatureExtractor(
            teacher_backbone, layers, pretrained=pretrained, weights_path=teacher_weights_path
        )
        with torch.no_grad():
            probe = torch.zeros(1, 3, input_size, input_size)
            grids = [tuple(f.shape[-2:]) for f in self.student(probe)]
            teacher_grids = [tuple(f.shape[-2:]) for f in self.teacher(probe)]
        if grids != teacher_grids:
            raise ValueError(f"student and teacher layers must give equal grids, got {grids} and {teacher_grids}")
        self.projectors = nn.ModuleList(
            DualProjection(cs, ct, int(latent), positional_grid=grid if positional else None)
            for cs, ct, latent, grid in zip(self.student.channels, self.teacher.channels, latent_dims, grids)
        )

    def forward(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per scale ``(s, t, s_hat, t_hat)``: the channel-L2-normalised features and their mappings."""
        outputs = []
        students, teachers = self.student(images), self.teacher(images)
        for s, t, projector in zip(students, teachers, self.projectors):
            s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
            outputs.append((s, t, *projector(s, t)))
        return outputs

    @staticmethod
    def scale_losses(outputs) -> list[torch.Tensor]:
        """Per scale ``mean((s - s_hat)^2) + mean((t - t_hat)^2)`` (official loss ``l2norm+l2``)."""
        return [torch.mean((s - s_hat) ** 2) + torch.mean((t - t_hat) ** 2) for s, t, s_hat, t_hat in outputs]

    def anomaly_map(self, outputs) -> torch.Tensor:
        """Mean over scales of ``(sum_c (s - s_hat)^2 + sum_c (t - t_hat)^2) / 2``, bilinear to ``(B, S, S)``."""
        size = (self.input_size, self.input_size)
        maps = []
        for s, t, s_hat, t_hat in outputs:
            error = 0.5 * (
                torch.sum((s - s_hat) ** 2, dim=1, keepdim=True) + torch.sum((t - t_hat) ** 2, dim=1, keepdim=True)
            )
            maps.append(F.interpolate(error, size=size, mode="bilinear", align_corners=False)[:, 0])
        return torch.stack(maps).mean(dim=0)
