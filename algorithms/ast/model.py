"""AST's networks: a frozen EfficientNet tap, a conditional normalising-flow teacher and a CNN student.

Rudolph, Wehrbein, Rosenhahn & Wandt, "Asymmetric Student-Teacher Networks for Industrial Anomaly
Detection", WACV 2023, sec. 3, and the facts of its official code (github.com/marco-rudolph/AST,
no licence: re-implemented from the paper and ``shared/reference/algorithms-next.md`` A4):

* features: EfficientNet-B5 (ImageNet), the output of its 36th MBConv block (0-based index 35,
  the last block of the sixth stage: 304 channels at stride 32, 24 x 24 at 768 px);
* teacher: 4 x (fixed random channel permutation, Glow coupling) on the feature map, each
  coupling's two subnets ``Conv(k) -> ReLU -> Conv(k)`` (replicate padding, 64 hidden channels,
  output times a learned scalar initialised to 0, so every coupling starts as the identity) fed
  ``[half || 32-d positional encoding]``; kernel sizes 3, 3, 3, 5; soft clamp 1.9;
* student: ``Conv3x3(P + C -> 1024) -> LeakyReLU``, 4 residual blocks
  ``[Conv3x3 -> BN -> LeakyReLU -> Conv3x3 -> BN -> LeakyReLU] + skip``, ``Conv3x3(1024 -> C)``,
  fed ``[positional encoding || features]`` and regressing the teacher's latent ``z``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import PretrainedWeightsUnavailable, _load_weights_file, calibrate_batchnorm
from ..components.flows import GlowCoupling, Permutation
from ..components.positional import positional_encoding_2d

__all__ = [
    "AstModel",
    "AstStudent",
    "AstTeacher",
    "EfficientNetTap",
    "GatedConvSubnet",
    "StudentResidualBlock",
    "distillation_loss",
    "distillation_map",
    "teacher_nll",
]


def teacher_nll(z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """AST's flow loss: per position ``0.5 * sum_c z^2 - log|det J|``, averaged over positions and images.

    ``z (B, C, h, w)``; ``log_det (B,)`` is the log-determinant of the whole map, i.e. the sum of the
    per-position log-determinants (the official code keeps them per position; the mean over
    positions is the same number), so the per-image loss is ``(0.5 ||z||^2 - log_det) / (h w)``.
    """
    positions = z.shape[2] * z.shape[3]
    return ((0.5 * z.pow(2).sum(dim=(1, 2, 3)) - log_det) / positions).mean()


def distillation_map(teacher_z: torch.Tensor, student_out: torch.Tensor) -> torch.Tensor:
    """Per-position distance ``mean_c (z_t - s)^2``: ``(B, C, h, w)`` twice -> ``(B, h, w)``."""
    return (teacher_z - student_out).pow(2).mean(dim=1)


def distillation_loss(teacher_z: torch.Tensor, student_out: torch.Tensor) -> torch.Tensor:
    """The student's loss: the mean of :func:`distillation_map` over positions and images."""
    return distillation_map(teacher_z, student_out).mean()


def _last_conv_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no convolution to read its output channels from")
    return int(convs[-1].out_channels)


class EfficientNetTap(nn.Module):
    """A frozen timm EfficientNet run up to the end of one stage of MBConv blocks.

    ``forward(images)`` computes ``conv_stem -> bn1 (with its SiLU) -> blocks[0] ... blocks[stage]``
    and returns that output. AST taps the last block of the sixth stage (``stage=5``) of
    EfficientNet-B5, which timm's ``features_only`` does not offer (its stride-32 feature is the end of
    the seventh stage, 512 channels): the later blocks and the head are dropped after the weights load.

    Parameters
    ----------
    backbone : str
        timm EfficientNet with its pretrained tag (publication: ``tf_efficientnet_b5.aa_in1k``, the
        TensorFlow AutoAugment weights that efficientnet-pytorch ships as ``efficientnet-b5``).
    stage : int
        0-based index into ``model.blocks`` of the last stage run (publication: 5).
    pretrained : bool
        Load ImageNet weights (hub cache or ``weights_path``); ``False`` only for tests and the demo.
    weights_path : str, optional
        Local weights file of the whole backbone (``.pth`` or ``.safetensors``).
    """

    def __init__(self, backbone: str, stage: int = 5, *, pretrained: bool = True, weights_path: str | None = None):
        super().__init__()
        import timm

        self.backbone_name = backbone
        if pretrained and not weights_path:
            try:
                model = timm.create_model(backbone, pretrained=True)
            except Exception as exc:  # hub unreachable, not cached, unknown tag, ...
                raise PretrainedWeightsUnavailable(
                    f"pretrained weights for {backbone!r} are not available ({type(exc).__name__}: {exc}). "
                    "Provide them by (a) putting them in the Hugging Face cache (run once with network access, "
                    "or copy a cache and set HF_HOME), (b) naming a local weights file with "
                    "weights_path=/path/to/weights.(pth|safetensors), or (c) passing pretrained=False "
                    "(random initialisation, for tests only)."
                ) from exc
        else:
            model = timm.create_model(backbone, pretrained=False)
            if pretrained and weights_path:
                _load_weights_file(model, Path(weights_path).expanduser(), backbone)
        if not all(hasattr(model, name) for name in ("conv_stem", "bn1", "blocks")):
            raise ValueError(f"{backbone!r} is not a timm EfficientNet (conv_stem, bn1, blocks)")
        if not 0 <= stage < len(model.blocks):
            raise ValueError(f"{backbone!r} has {len(model.blocks)} stages of blocks, got stage={stage}")
        self.stage = stage
        self.conv_stem, self.bn1 = model.conv_stem, model.bn1
        self.blocks = nn.Sequential(*list(model.blocks)[: stage + 1])
        self.channels = _last_conv_channels(self.blocks[-1])
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> EfficientNetTap:
        return super().train(False)  # frozen: batch-norm statistics never change in training

    @torch.no_grad()
    def calibrate_batchnorm(self, images: torch.Tensor | Iterable) -> int:
        """Re-estimate the BatchNorm statistics of a random-initialised backbone from training images."""
        seen = calibrate_batchnorm(self, images)
        self.eval()
        return seen

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.blocks(self.bn1(self.conv_stem(images)))


class GatedConvSubnet(nn.Module):
    """AST's coupling subnet: ``gamma * Conv(k)(ReLU(Conv(k)(x)))``, replicate padding, ``gamma`` starts at 0."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size, padding=pad, padding_mode="replicate")
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size, padding=pad, padding_mode="replicate")
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x))) * self.gamma


class AstTeacher(nn.Module):
    """The teacher: a conditional normalising flow of ``len(kernel_sizes)`` (permutation, Glow coupling) steps.

    ``forward(x (B, C, h, w), cond (B, P, h, w))`` returns ``(z, log|det J| (B,))``; ``inverse`` maps back.

    Parameters
    ----------
    channels : int
        Feature channels ``C`` (publication: 304).
    cond_channels : int
        Positional-encoding channels ``P`` (publication: 32).
    hidden : int
        Hidden channels of every subnet (publication: 64).
    kernel_sizes : sequence of int
        One per coupling (publication: 3, 3, 3, 5).
    clamp : float
        Soft clamp of the log-scales (publication: 1.9).
    generator : torch.Generator, optional
        Seeds the fixed channel permutations.
    """

    def __init__(
        self,
        channels: int,
        *,
        cond_channels: int,
        hidden: int,
        kernel_sizes: Sequence[int],
        clamp: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not kernel_sizes:
            raise ValueError("the teacher needs at least one coupling (kernel_sizes is empty)")
        self.permutations = nn.ModuleList(Permutation(channels, generator=generator) for _ in kernel_sizes)
        self.couplings = nn.ModuleList(
            GlowCoupling(
                channels,
                cond_channels=cond_channels,
                subnet="conv",
                clamp=clamp,
                subnet_factory=lambda i, o, k=k: GatedConvSubnet(i, o, hidden, k),
            )
            for k in kernel_sizes
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for permutation, coupling in zip(self.permutations, self.couplings):
            x, _ = permutation(x)
            x, step_log_det = coupling(x, cond)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`forward`."""
        for permutation, coupling in zip(reversed(self.permutations), reversed(self.couplings)):
            z = permutation.inverse(coupling.inverse(z, cond))
        return z


class StudentResidualBlock(nn.Module):
    """``x + LReLU(BN(Conv3x3(LReLU(BN(Conv3x3(x))))))`` at constant width (AST's student block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.bn1(self.conv1(x)))
        y = F.leaky_relu(self.bn2(self.conv2(y)))
        return x + y


class AstStudent(nn.Module):
    """The asymmetric student: a plain CNN from ``[positional encoding || features]`` to the teacher's ``z``.

    Parameters
    ----------
    channels : int
        Feature (and output) channels ``C`` (publication: 304).
    cond_channels : int
        Positional-encoding channels ``P`` concatenated to the input (publication: 32).
    hidden : int
        Width (publication: 1024).
    blocks : int
        Residual blocks (publication: 4).
    """

    def __init__(self, channels: int, *, cond_channels: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(channels + cond_channels, hidden, 3, padding=1)
        self.blocks = nn.Sequential(*(StudentResidualBlock(hidden) for _ in range(blocks)))
        self.conv_out = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv_in(torch.cat([cond, x], dim=1)))  # the official order: encoding first
        return self.conv_out(self.blocks(x))


class AstModel(nn.Module):
    """Extractor + teacher + student; :meth:`forward` gives the distance map at feature resolution.

    Parameters are those of :class:`EfficientNetTap`, :class:`AstTeacher` and :class:`AstStudent`.
    """

    def __init__(
        self,
        *,
        backbone: str,
        stage: int,
        pretrained: bool,
        weights_path: str | None,
        cond_channels: int,
        teacher_hidden: int,
        kernel_sizes: Sequence[int],
        clamp: float,
        student_hidden: int,
        student_blocks: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if cond_channels < 4 or cond_channels % 4:
            raise ValueError(f"ast: cond_channels must be a positive multiple of 4, got {cond_channels}")
        self.extractor = EfficientNetTap(backbone, stage, pretrained=pretrained, weights_path=weights_path)
        channels = self.extractor.channels
        self.cond_channels = cond_channels
        self.teacher = AstTeacher(
            channels,
            cond_channels=cond_channels,
            hidden=teacher_hidden,
            kernel_sizes=kernel_sizes,
            clamp=clamp,
            generator=generator,
        )
        self.student = AstStudent(channels, cond_channels=cond_channels, hidden=student_hidden, blocks=student_blocks)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen features ``(B, C, h, w)``."""
        return self.extractor(images).detach()

    def condition(self, features: torch.Tensor) -> torch.Tensor:
        """The positional encoding of the feature grid, repeated per image: ``(B, P, h, w)``."""
        b, _, h, w = features.shape
        pe = positional_encoding_2d(self.cond_channels, h, w, dtype=features.dtype, device=features.device)
        return pe.unsqueeze(0).expand(b, -1, -1, -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``mean_c (z_teacher - student)^2`` per feature position: ``(B, h, w)``."""
        features = self.features(images)
        cond = self.condition(features)
        z, _ = self.teacher(features, cond)
        return distillation_map(z, self.student(features, cond))
