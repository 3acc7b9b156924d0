"""MemSeg's network: partly trainable ResNet, memory module, MSFF, U-Net decoder; and its synthesis.

Shapes are given for the publication setting (ResNet-18, 256 x 256 input; timm feature indices
0-4 = stem 64 @ 1/2, layer1 64 @ 1/4, layer2 128 @ 1/8, layer3 256 @ 1/16, layer4 512 @ 1/32).
Sources: Yang et al., "MemSeg: A semi-supervised method for image surface defect detection
using differences and commonalities", 2022 (arXiv 2205.00908), sections 3.1-3.5, and the
unofficial implementation VisionAD uses (TooTouch/MemSeg @ 836bd46, MIT), as summarised in
``shared/reference/algorithms-next.md`` section A10. Written from those facts, not copied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import FeatureExtractor
from ..components.perlin import perlin_masks
from ..components.texture import TextureSource

__all__ = [
    "MSFF",
    "CoordinateAttention",
    "MSFFBlock",
    "MemSegModel",
    "MemoryModule",
    "SegmentationDecoder",
    "UpConvBlock",
    "synthesize_anomalies",
    "warmup_cosine_lr",
]


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou, Zhou & Feng, CVPR 2021), reduction 32, at least 8 mid channels.

    ``(B, C, H, W) -> (B, C, H, W)``: ``x * a_h * a_w`` with ``a_h = sigmoid(conv_h(.)) (B, C, H, 1)``
    and ``a_w (B, C, 1, W)`` from the shared ``1x1 conv -> BN -> h-swish`` of the row and column
    average pools.
    """

    def __init__(self, channels: int, reduction: int = 32) -> None:
        super().__init__()
        mid = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mid, channels, 1)
        self.conv_w = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        y = self.act(self.bn1(self.conv1(torch.cat([pooled_h, pooled_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))
        return x * a_h * a_w


class MSFFBlock(nn.Module):
    """One MSFF level: ``Conv3x3(x) * CoordAtt(x) -> Conv3x3(C -> C/2) -> Conv3x3(C/2 -> C/2)``.

    ``(B, C, H, W) -> (B, C/2, H, W)``; ``C`` is the concatenated (feature | difference) width.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.attention = CoordinateAttention(channels)
        self.conv2 = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1), nn.Conv2d(channels // 2, channels // 2, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x) * self.attention(x))


class MSFF(nn.Module):
    """Multi-scale feature fusion with spatial attention (MemSeg section 3.4).

    Input: three concatenated maps ``(B, 2 c_l, H_l, W_l)`` (fine to coarse, each level half the
    previous size), whose second halves are the squared differences to the memory sample.
    Output: three maps ``(B, c_l, H_l, W_l)``: per-level blocks, top-down addition of
    ``Conv3x3(up2(coarser))``, each multiplied by the spatial attention ``m_l`` = channel mean of
    the level's difference half, times the upsampled coarser attention.
    """

    def __init__(self, channels: tuple[int, int, int]) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.blocks = nn.ModuleList(MSFFBlock(2 * c) for c in channels)
        self.top_down = nn.ModuleList(
            nn.Conv2d(channels[i + 1], channels[i], 3, padding=1) for i in range(len(channels) - 1)
        )

    def forward(self, concatenated: list[torch.Tensor]) -> list[torch.Tensor]:
        fused = [block(x) for block, x in zip(self.blocks, concatenated, strict=True)]
        for i in range(len(fused) - 2, -1, -1):
            fused[i] = fused[i] + self.top_down[i](_up(fused[i + 1]))
        attention = [x[:, c:].mean(dim=1, keepdim=True) for x, c in zip(concatenated, self.channels, strict=True)]
        for i in range(len(attention) - 2, -1, -1):
            attention[i] = attention[i] * _up(attention[i + 1])
        return [f * a for f, a in zip(fused, attention, strict=True)]


class UpConvBlock(nn.Sequential):
    """``Upsample x2 (bilinear) -> Conv3x3 -> BN -> ReLU``: ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SegmentationDecoder(nn.Module):
    """MemSeg's U-Net decoder (section 3.5): two logits per pixel at the input resolution.

    ``deep (B, c4, S/32, S/32)``, ``stem (B, c0, S/2, S/2)`` and the MSFF outputs
    ``[(B, c1, S/4), (B, c2, S/8), (B, c3, S/16)]`` give ``(B, 2, S, S)`` (channel 0 normal,
    1 anomalous). ResNet-18: 512 -> 256 | concat 512 -> 128 | concat 256 -> 64 | concat 128 -> 48
    | concat Conv3x3(stem 64 -> 48) 96 -> 48 | Conv3x3 48 -> 2.
    """

    def __init__(self, stem: int, levels: tuple[int, int, int], deep: int, width: int = 48) -> None:
        super().__init__()
        c1, c2, c3 = levels
        self.up3 = UpConvBlock(deep, c3)
        self.up2 = UpConvBlock(2 * c3, c2)
        self.up1 = UpConvBlock(2 * c2, c1)
        self.up0 = UpConvBlock(2 * c1, width)
        self.stem_conv = nn.Conv2d(stem, width, 3, padding=1)
        self.up_mask = UpConvBlock(2 * width, width)
        self.final = nn.Conv2d(width, 2, 3, padding=1)

    def forward(self, deep: torch.Tensor, stem: torch.Tensor, fused: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([self.up3(deep), fused[2]], dim=1)
        x = torch.cat([self.up2(x), fused[1]], dim=1)
        x = torch.cat([self.up1(x), fused[0]], dim=1)
        x = torch.cat([self.up0(x), self.stem_conv(stem)], dim=1)
        return self.final(self.up_mask(x))


class MemoryModule(nn.Module):
    """Memory of normal features (MemSeg section 3.3): layer1-3 features of ``M`` normal images.

    ``select`` picks, per input, the memory image with the smallest sum over levels of the mean
    squared feature difference, and returns per level ``cat([f, (f - m)^2])``, ``(B, 2 C_l, H_l, W_l)``.
    The bank is three buffers ``bank{0,1,2}`` ``(M, C_l, H_l, W_l)``, empty until ``fill``.
    """

    def __init__(self, levels: int = 3) -> None:
        super().__init__()
        self.levels = levels
        for i in range(levels):
            self.register_buffer(f"bank{i}", torch.empty(0))

    @property
    def banks(self) -> list[torch.Tensor]:
        return [getattr(self, f"bank{i}") for i in range(self.levels)]

    @property
    def size(self) -> int:
        return int(self.bank0.shape[0]) if self.bank0.ndim == 4 else 0

    def fill(self, features: list[torch.Tensor]) -> None:
        for i, f in enumerate(features):
            setattr(self, f"bank{i}", f.detach().clone())

    def nearest(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``(B,)`` index of the nearest memory sample (summed per-level MSE)."""
        if self.size == 0:
            raise RuntimeError("memseg: the memory bank is empty: train (fit_epoch) before predicting")
        distance = 0
        for f, bank in zip(features, self.banks, strict=True):
            b, m = f.shape[0], bank.shape[0]
            # mean over (C, H, W) of (f - bank)^2 for all pairs, via ||f||^2 + ||m||^2 - 2 <f, m>
            ff, mm = f.flatten(1), bank.flatten(1)
            d = (ff * ff).sum(1, keepdim=True) + (mm * mm).sum(1)[None] - 2 * ff @ mm.T
            distance = distance + d.view(b, m) / ff.shape[1]
        return distance.argmin(dim=1)

    def select(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        index = self.nearest(features)
        return [torch.cat([f, (f - bank[index]) ** 2], dim=1) for f, bank in zip(features, self.banks, strict=True)]


class MemSegModel(nn.Module):
    """Backbone (stem + layers 1-3 frozen, layer 4 trained), memory, MSFF and decoder.

    ``forward(images (B, 3, S, S), ImageNet-normalised) -> logits (B, 2, S, S)``; ``S`` a
    multiple of 32.
    """

    def __init__(self, *, backbone: str, pretrained: bool, weights_path: str | None, decoder_width: int = 48) -> None:
        super().__init__()
        self.extractor = FeatureExtractor(
            backbone, [0, 1, 2, 3, 4], pretrained=pretrained, weights_path=weights_path, frozen=False
        )
        self.deep_stage = self._deep_stage()
        for name, parameter in self.extractor.model.named_parameters():
            parameter.requires_grad_(name.startswith(self.deep_stage + "."))
        c = self.extractor.channels
        self.memory = MemoryModule(3)
        self.msff = MSFF((c[1], c[2], c[3]))
        self.decoder = SegmentationDecoder(c[0], (c[1], c[2], c[3]), c[4], decoder_width)
        self.train()  # puts the frozen stages in eval mode from the start

    def _deep_stage(self) -> str:
        names = [name for name, _ in self.extractor.model.named_children()]
        if "layer4" not in names:
            raise ValueError(f"memseg: the backbone {self.extractor.backbone_name!r} has no 'layer4' stage "
                             "(a ResNet-style timm model is needed)")  # fmt: skip
        return "layer4"

    def train(self, mode: bool = True) -> MemSegModel:
        super().train(mode)
        for name, module in self.extractor.model.named_children():
            if name != self.deep_stage:
                module.eval()  # frozen stages: their BatchNorm statistics never change
        return self

    def frozen_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Layer1-3 features ``[(B, c_l, S/2^(l+1), ...)]`` without gradients (memory samples)."""
        with torch.no_grad():
            return self.extractor(images)[1:4]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        stem, f1, f2, f3, deep = self.extractor(images)
        fused = self.msff(self.memory.select([f1.detach(), f2.detach(), f3.detach()]))
        return self.decoder(deep, stem, fused)


def synthesize_anomalies(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    textures: TextureSource | None,
    structure: TextureSource,
    threshold: float = 0.5,
    transparency: tuple[float, float] = (0.15, 1.0),
    texture_probability: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-level synthetic anomalies (MemSeg section 3.2): ``(images', masks)``.

    ``images`` ``(B, 3, S, S)`` RGB in ``[0, 1]`` (CPU or GPU). Per image: a Perlin mask
    (threshold 0.5, random rotation), a source texture (``textures``, e.g. DTD, with probability
    ``texture_probability``; otherwise, or when ``textures`` is None, the "structure" source: the
    image itself augmented and cut into 8 x 8 shuffled tiles), a factor ``d ~ U(transparency)``,
    and ``I' = (1 - M) I + M (d T + (1 - d) I)``. Returns images ``(B, 3, S, S)`` in ``[0, 1]`` and
    masks ``(B, 1, S, S)`` of 0/1. Every random draw comes from ``generator`` (CPU).
    """
    b, _, h, w = images.shape
    if h != w:
        raise ValueError(f"memseg: synthesis needs square images, got {h} x {w}")
    masks = perlin_masks(b, h, w, threshold=threshold, generator=generator, rotate=True, device=images.device)
    sources = []
    for i in range(b):
        use_texture = textures is not None and float(torch.rand((), generator=generator)) < texture_probability
        if use_texture:
            sources.append(textures.sample(1, h, generator))
        else:
            sources.append(structure.sample(1, h, generator, images=images[i : i + 1]))
    source = torch.cat(sources).to(images.device, images.dtype)
    low, high = transparency
    factor = (low + (high - low) * torch.rand(b, generator=generator)).to(images.device, images.dtype).view(b, 1, 1, 1)
    out = (1 - masks) * images + masks * (factor * source + (1 - factor) * images)
    return out, masks


def warmup_cosine_lr(step: int, *, base: float, minimum: float, total: int, warmup: int) -> float:
    """Learning rate at 0-based ``step``: linear ``minimum -> base`` over ``warmup`` steps, then
    cosine ``base -> minimum`` until ``total`` (one cycle of TooTouch/MemSeg's
    CosineAnnealingWarmupRestarts: 5000 steps, 10 % warm-up, 3e-3 to 1e-4); ``minimum`` after."""
    if step < warmup:
        return minimum + (base - minimum) * step / warmup
    if step >= total:
        return minimum
    progress = (step - warmup) / max(total - warmup, 1)
    return minimum + (base - minimum) * (1 + math.cos(math.pi * progress)) / 2
