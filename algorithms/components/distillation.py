"""Reverse-distillation networks shared by RD4AD, UniNet and PPDm: the one-class bottleneck
embedding (OCBE, multi-scale fusion) and the de-ResNet decoder.

Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding", CVPR 2022,
sec. 3.2-3.3 and the official code (``hq-deng/RD4AD``, ``resnet.py`` / ``de_resnet.py``).

Both adapt to an encoder's channel counts ``(c1, c2, c3)`` at strides 4, 8 and 16: the
bottleneck fuses the three scales into ``2 * c3`` channels at stride 32, and the decoder mirrors
the encoder back to ``c3``, ``c2`` and ``c1`` channels. With ``wide_resnet50_2`` this is exactly
the published layout (OCBE with 3 wide bottleneck blocks, decoder stages of 3, 4 and 6 wide
bottleneck blocks); with ``resnet18`` it uses basic blocks (OCBE 2 blocks, decoder 2, 2, 2), as
the reference's ``de_resnet18``. The basic (resnet18) and bottleneck (resnet50) layouts give
identical outputs to anomalib's RD4AD modules with copied weights
(``algorithms/tests/test_reverse_distillation.py``); anomalib's OCBE also defines an unused
``conv4``/``bn4``, which we omit, and builds the OCBE non-wide for ``wide_resnet50_2``, where we
follow the original RD4AD code (wide bottleneck blocks, ``width_per_group=128``). UniNet (Wei et
al., CVPR 2025) uses the decoder unchanged and the bottleneck's multi-scale fusion unchanged, but
its embedding blocks are split-branch blocks (``kind="split"``, :class:`SplitBranchBlock`); PPDm
(DMAD, Liu et al., CVPR 2023) changes the bottleneck's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BLOCK_KINDS",
    "BOTTLENECK_KINDS",
    "OneClassBottleneck",
    "ResidualBlock",
    "ReverseDecoder",
    "SplitBranchBlock",
    "cosine_distance_map",
    "global_cosine_loss",
    "residual_stage",
]

BLOCK_KINDS = ("basic", "bottleneck")
#: Blocks the one-class bottleneck's embedding accepts: RD4AD's two and UniNet's split-branch block.
BOTTLENECK_KINDS = (*BLOCK_KINDS, "split")


def _conv_bn(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, up: bool = False) -> list[nn.Module]:
    if up:  # a stride-2 upsampling in place of a stride-2 convolution
        conv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2, bias=False)
    else:
        conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_ch)]


class ResidualBlock(nn.Module):
    """A ResNet block (basic or bottleneck) that can halve (``stride=2``) or double (``up=True``) the size.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kind : {"basic", "bottleneck"}
        Two 3x3 convolutions, or 1x1 -> 3x3 -> 1x1 with ``width`` inner channels.
    width : int
        Inner channels of a bottleneck block (``out_channels / 4 * width_factor`` in ResNets).
    stride : int
        1 or 2 (down-sampling).
    up : bool
        Up-sample by 2 with a 2x2 transposed convolution (decoder blocks).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, kind: str, width: int, stride: int = 1, up: bool = False
    ) -> None:
        super().__init__()
        if kind not in BLOCK_KINDS:
            raise ValueError(f"block kind must be one of {BLOCK_KINDS}, got {kind!r}")
        if kind == "basic":
            layers = [*_conv_bn(in_channels, out_channels, 3, stride=stride, up=up), nn.ReLU(inplace=True)]
            layers += _conv_bn(out_channels, out_channels, 3)
        else:
            layers = [*_conv_bn(in_channels, width, 1), nn.ReLU(inplace=True)]
            layers += [*_conv_bn(width, width, 3, stride=stride, up=up), nn.ReLU(inplace=True)]
            layers += _conv_bn(width, out_channels, 1)
        self.body = nn.Sequential(*layers)
        if stride != 1 or up or in_channels != out_channels:
            if up:
                self.shortcut = nn.Sequential(*_conv_bn(in_channels, out_channels, 2, up=True))
            else:
                shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                self.shortcut = nn.Sequential(shortcut, nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        out += self.shortcut(x)  # in place, as torchvision's blocks: one (B, C, H, W) buffer less
        return self.relu(out)


class SplitBranchBlock(nn.Module):
    """UniNet's bottleneck-embedding block: the input's two channel halves through two conv branches.

    Wei et al., CVPR 2025, official code ``pangdatangtt/UniNet`` @ ``7b3469f``, ``UniNet_lib/resnet.py``
    (``AttnBottleneck`` with ``halve=2``, as ``BN_layer`` builds it). Each half of the ``in_channels``
    goes through 3x3 conv (``stride``) -> BN -> ReLU -> 3x3 conv -> BN, to ``width / 2`` channels;
    the two results are concatenated, projected by a 1x1 conv + BN to ``out_channels``, added to the
    shortcut (1x1 conv + BN when the shape changes) and passed through a ReLU. The official block
    declares the second branch with 7x7 kernels, but ``BN_layer.__init__`` calls ``merge_kernel``,
    which replaces both 7x7 convolutions by 3x3 convolutions *with bias* before they are ever used;
    the block that trains therefore has two 3x3 branches, the second with biases (zero at
    initialisation; a bias before a training-mode BatchNorm never receives a gradient). The
    official block's ``bn7`` is never used and is omitted here. anomalib 2.7's
    ``AttentionBottleneck`` is the same block.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts (``in_channels`` even).
    width : int
        Channels of the two branches together (even); ResNet convention ``out / 4 * width_factor``.
    stride : int
        1 or 2 (both branches and the shortcut down-sample).
    """

    def __init__(self, in_channels: int, out_channels: int, *, width: int, stride: int = 1) -> None:
        super().__init__()
        if in_channels % 2 or width % 2:
            raise ValueError(f"split-branch blocks need even in_channels and width, got {in_channels} and {width}")
        half_in, half = in_channels // 2, width // 2

        def branch(bias: bool) -> nn.Sequential:
            first = nn.Conv2d(half_in, half, 3, stride=stride, padding=1, bias=bias)
            second = nn.Conv2d(half, half, 3, padding=1, bias=bias)
            return nn.Sequential(first, nn.BatchNorm2d(half), nn.ReLU(inplace=True), second, nn.BatchNorm2d(half))

        self.branch_a = branch(bias=False)
        self.branch_b = branch(bias=True)  # the official "7x7" branch after merge_kernel: 3x3 with bias
        nn.init.zeros_(self.branch_b[0].bias)
        nn.init.zeros_(self.branch_b[3].bias)
        self.fuse = nn.Sequential(nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        if stride != 1 or in_channels != out_channels:
            shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.shortcut = nn.Sequential(shortcut, nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        out = self.fuse(torch.cat([self.branch_a(a), self.branch_b(b)], dim=1))
        out += self.shortcut(x)
        return self.relu(out)


def residual_stage(
    in_ch: int, out_ch: int, blocks: int, *, kind: str, width_factor: int, stride: int = 1, up: bool = False
) -> nn.Sequential:
    """A ResNet stage: ``blocks`` residual blocks, the first changing ``in_ch`` to ``out_ch`` (and the size).

    Bottleneck (and split-branch) blocks have ``out_ch / 4 * width_factor`` inner channels (ResNets'
    ``planes * base_width / 64``); RD4AD's OCBE embedding and decoder stages, PPDm's OCBE on its
    VQ-augmented input, and UniNet's OCBE embedding (``kind="split"``, no up-sampling).
    """
    width = max(1, out_ch // 4 * width_factor) if kind in ("bottleneck", "split") else out_ch
    if kind == "split":
        if up:
            raise ValueError("split-branch blocks do not up-sample (they are UniNet's bottleneck blocks)")
        first = SplitBranchBlock(in_ch, out_ch, width=width, stride=stride)
        return nn.Sequential(first, *[SplitBranchBlock(out_ch, out_ch, width=width) for _ in range(blocks - 1)])
    first = ResidualBlock(in_ch, out_ch, kind=kind, width=width, stride=stride, up=up)
    rest = [ResidualBlock(out_ch, out_ch, kind=kind, width=width) for _ in range(blocks - 1)]
    return nn.Sequential(first, *rest)


class OneClassBottleneck(nn.Module):
    """Multi-scale feature fusion + one-class embedding (OCBE).

    Scales 1 and 2 are brought to scale 3 by stride-2 3x3 convolutions (``c1 -> c2 -> c3`` and
    ``c2 -> c3``), concatenated with scale 3 (``3 * c3`` channels) and compressed by ResNet blocks
    to ``2 * c3`` channels at half the size: RD4AD's ``"basic"`` / ``"bottleneck"`` blocks, or
    UniNet's ``"split"`` blocks (:class:`SplitBranchBlock`; the fusion is the same).
    """

    def __init__(self, channels: Sequence[int], *, blocks: int, kind: str, width_factor: int) -> None:
        super().__init__()
        if kind not in BOTTLENECK_KINDS:
            raise ValueError(f"bottleneck block kind must be one of {BOTTLENECK_KINDS}, got {kind!r}")
        c1, c2, c3 = channels
        self.down1 = nn.Sequential(
            *_conv_bn(c1, c2, 3, stride=2), nn.ReLU(inplace=True), *_conv_bn(c2, c3, 3, stride=2), nn.ReLU(inplace=True)
        )
        self.down2 = nn.Sequential(*_conv_bn(c2, c3, 3, stride=2), nn.ReLU(inplace=True))
        self.embed = residual_stage(3 * c3, 2 * c3, blocks, kind=kind, width_factor=width_factor, stride=2)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = features
        return self.embed(torch.cat([self.down1(f1), self.down2(f2), f3], dim=1))


class ReverseDecoder(nn.Module):
    """De-ResNet: three up-sampling stages from ``2 * c3`` back to ``c3``, ``c2`` and ``c1`` channels."""

    def __init__(self, channels: Sequence[int], *, blocks: Sequence[int], kind: str, width_factor: int) -> None:
        super().__init__()
        c1, c2, c3 = channels
        b3, b2, b1 = blocks
        self.stage3 = residual_stage(2 * c3, c3, b3, kind=kind, width_factor=width_factor, up=True)
        self.stage2 = residual_stage(c3, c2, b2, kind=kind, width_factor=width_factor, up=True)
        self.stage1 = residual_stage(c2, c1, b1, kind=kind, width_factor=width_factor, up=True)

    def forward(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        """Return the reconstructions in encoder order ``[scale1, scale2, scale3]``."""
        d3 = self.stage3(embedding)
        d2 = self.stage2(d3)
        d1 = self.stage1(d2)
        return [d1, d2, d3]


def global_cosine_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """RD4AD's loss: the sum over levels of the batch mean of ``1 - cos`` between whole flattened maps.

    Each level's ``(B, C, h, w)`` teacher and student maps are flattened to ``(B, C h w)`` vectors
    (Deng & Li 2022, eq. 2 as in the official code's ``loss_fucntion``; DMAD's PPDm uses it unchanged).
    """
    total = teacher[0].new_zeros(())
    for t, s in zip(teacher, student, strict=True):
        cos = F.cosine_similarity(t.flatten(1), s.flatten(1), dim=1)
        total = total + torch.mean(1.0 - cos)
    return total


def cosine_distance_map(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """RD4AD's anomaly map: the sum over levels of per-pixel ``1 - cos`` along channels, each level
    bilinearly upsampled (``align_corners=True``) to ``size``; ``(B, size, size)``, unsmoothed."""
    total = None
    for t, s in zip(teacher, student, strict=True):
        level = (1.0 - F.cosine_similarity(t, s, dim=1)).unsqueeze(1)
        level = F.interpolate(level, size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        total = level if total is None else total + level
    return total
