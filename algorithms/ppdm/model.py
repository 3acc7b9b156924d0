"""PPDm networks: the offset (deformation) network, the vector quantiser, the VQ bottleneck, the model.

Liu et al., "Diversity-Measurable Anomaly Detection", CVPR 2023, https://arxiv.org/abs/2303.05047;
the layout, constants and losses below are those of the official ``DMAD-PPDM`` code
(``FlappyPeggy/DMAD`` @ ``b3fefbb``, ``resnet.py``), re-implemented from its description:

* ``OffsetNet``: two CoordConv 3x3 layers (3 -> 64 -> 64, BN, ReLU), a residual block (ReLU, 3x3,
  BN, ReLU, 1x1, + skip) then BN, concatenated with its input (128 ch); four heads ending in a
  3x3 conv to 2 channels and ``tanh``: a coarse field (three stride-2 convs, times 16/256) and a
  fine field (one stride-2 conv, times 6/256), and two "inverse" fields of the same shapes. Fields
  are bilinearly upsampled to the image; the image is warped coarse then fine by ``grid_sample``
  (``align_corners=True``, sampling grid clamped to [-1, 1], zero padding).
* ``VectorQuantizer``: a 200-code codebook of layer-3 vectors, nearest code in L2, straight-through
  gradient, loss ``0.25 * commitment + codebook`` MSE.
* ``VQBottleneck``: RD4AD's OCBE whose input is ``[l1', l2', l3', VQ(l3)]``: each level reduced by a
  3x3 conv + BN + ReLU to ``c3 / 16`` channels, levels 1 and 2 brought to the level-3 grid by
  stride-2 3x3 convs (+ BN + ReLU), then RD's residual stage (``c3 + 3 c3/16 -> 2 c3``, stride 2).
* ``PPDmModel``: offset net, frozen encoder (gradients flow *through* it into the offset net, as in
  the official code, where the frozen encoder is simply left out of the optimiser), VQ bottleneck
  and RD4AD's de-ResNet decoder.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..components.distillation import BLOCK_KINDS, ReverseDecoder, cosine_distance_map, residual_stage
from ..components.feature_extractor import FeatureExtractor

__all__ = [
    "CoordConv2d",
    "OffsetFields",
    "OffsetNet",
    "PPDmModel",
    "VQBottleneck",
    "VectorQuantizer",
    "coord_channels",
    "identity_grid",
    "smoothness_loss",
]


def coord_channels(size: int, reduction: int = 4, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The 4 coordinate channels the official CoordConv appends to a ``(B, C, size, size)`` input.

    With ``g = size // reduction`` cells per axis, the coarse coordinate of index ``i`` is
    ``c(i) = floor(i / (size / g)) / (g - 1)`` and the fine one ``f(i) = i / (size - 1) - c(i)``;
    both are mapped by ``2 v - 1``. Returns ``(4, size, size)``: fine row, coarse row, fine column,
    coarse column (the official concatenation order ``[x, xx, xx_, yy, yy_]``).
    """
    cells = size // reduction
    if cells < 2 or size % cells:
        raise ValueError(f"coord_channels: size {size} must be a multiple of {reduction} with at least 2 cells")
    index = torch.arange(size, device=device, dtype=dtype)
    coarse = torch.div(torch.arange(size, device=device), size // cells, rounding_mode="floor").to(dtype) / (cells - 1)
    fine = index / (size - 1) - coarse
    fine, coarse = fine * 2 - 1, coarse * 2 - 1
    rows = [v.view(size, 1).expand(size, size) for v in (fine, coarse)]
    cols = [v.view(1, size).expand(size, size) for v in (fine, coarse)]
    return torch.stack([*rows, *cols])


class CoordConv2d(nn.Module):
    """A convolution on the input concatenated with :func:`coord_channels` (Liu et al. 2018, CoordConv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, reduction: int = 4) -> None:
        super().__init__()
        self.reduction = reduction
        self.conv = nn.Conv2d(in_channels + 4, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"CoordConv2d: square inputs only, got {tuple(x.shape)}")
        coords = coord_channels(x.shape[-1], self.reduction, device=x.device, dtype=x.dtype)
        return self.conv(torch.cat([x, coords.expand(x.shape[0], -1, -1, -1)], dim=1))


class _ResidualUnit(nn.Module):
    """``x + conv1x1(relu(bn(conv3x3(relu(x)))))`` (both convolutions with bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _field_head(in_channels: int, hidden: int, downsamplings: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(downsamplings):
        layers += [
            nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, stride=2, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        ]
    layers += [nn.Conv2d(hidden, 2, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*layers)


def identity_grid(batch: int, size: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(batch, size, size, 2)`` identity sampling grid of ``grid_sample`` (``align_corners=True``): x, then y."""
    line = torch.linspace(-1.0, 1.0, size, device=device, dtype=dtype)
    x = line.view(1, 1, size).expand(batch, size, size)
    y = line.view(1, size, 1).expand(batch, size, size)
    return torch.stack([x, y], dim=-1)


def smoothness_loss(field: torch.Tensor) -> torch.Tensor:
    """The official ``Smooth_Loss(ks=3)`` of a ``(B, 2, H, W)`` field.

    One 3x3 filter over both channels (centre 1, the 8 neighbours -1/8 each), zero padding, so
    the value at each pixel is ``|sum over the 2 components of (centre - mean of its 8 neighbours)|``;
    the loss is its mean.
    """
    kernel = torch.full((3, 3), -1.0 / 8.0, device=field.device, dtype=field.dtype)
    kernel[1, 1] = 1.0
    kernel = kernel.view(1, 1, 3, 3).expand(1, field.shape[1], 3, 3)
    return F.conv2d(F.pad(field, (1, 1, 1, 1)), kernel).abs().mean()


@dataclass
class OffsetFields:
    """The four displacement fields, ``(B, H, W, 2)`` in ``grid_sample`` units (x, y), at image size."""

    coarse: torch.Tensor
    fine: torch.Tensor
    coarse_inverse: torch.Tensor
    fine_inverse: torch.Tensor

    def grid(self, field: torch.Tensor) -> torch.Tensor:
        """The sampling grid ``clamp(identity + field, -1, 1)``."""
        base = identity_grid(field.shape[0], field.shape[1], device=field.device, dtype=field.dtype)
        return torch.clamp(base + field, -1.0, 1.0)

    def warp(self, x: torch.Tensor) -> torch.Tensor:
        """The deformed input: sampled by the coarse grid, then by the fine one."""
        x = F.grid_sample(x, self.grid(self.coarse), align_corners=True)
        return F.grid_sample(x, self.grid(self.fine), align_corners=True)

    def unwarp(self, x: torch.Tensor) -> torch.Tensor:
        """Back to the input's geometry: sampled by the inverse fine grid, then the inverse coarse one."""
        x = F.grid_sample(x, self.grid(self.fine_inverse), align_corners=True)
        return F.grid_sample(x, self.grid(self.coarse_inverse), align_corners=True)


class OffsetNet(nn.Module):
    """PPDm's learned deformation: four displacement fields from the image.

    Parameters
    ----------
    channels : int
        Input channels (3).
    hidden : int
        Width of every layer (official: 64).
    coarse_scale, fine_scale : float
        Bound of the coarse / fine field in ``grid_sample`` units (official ``2 * 8 / 256`` and
        ``2 * 3 / 256``: 8 and 3 pixels at 256 px).
    """

    def __init__(
        self, channels: int = 3, hidden: int = 64, *, coarse_scale: float = 2 * 8 / 256, fine_scale: float = 2 * 3 / 256
    ) -> None:
        super().__init__()
        self.coarse_scale = coarse_scale
        self.fine_scale = fine_scale
        self.stem = nn.Sequential(
            CoordConv2d(channels, hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            CoordConv2d(hidden, hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.residual = nn.Sequential(_ResidualUnit(hidden), nn.BatchNorm2d(hidden))
        self.coarse = _field_head(2 * hidden, hidden, 3)
        self.fine = _field_head(2 * hidden, hidden, 1)
        self.coarse_inverse = _field_head(2 * hidden, hidden, 3)
        self.fine_inverse = _field_head(2 * hidden, hidden, 1)

    def forward(self, images: torch.Tensor) -> OffsetFields:
        size = images.shape[-2:]
        stem = self.stem(images)
        features = torch.cat([self.residual(stem), stem], dim=1)

        def field(head: nn.Module, scale: float) -> torch.Tensor:
            out = F.interpolate(head(features) * scale, size=size, mode="bilinear", align_corners=True)
            return out.permute(0, 2, 3, 1)

        return OffsetFields(
            coarse=field(self.coarse, self.coarse_scale),
            fine=field(self.fine, self.fine_scale),
            coarse_inverse=field(self.coarse_inverse, self.coarse_scale),
            fine_inverse=field(self.fine_inverse, self.fine_scale),
        )

    @staticmethod
    def loss(images: torch.Tensor, warped: torch.Tensor, fields: OffsetFields, gamma: float = 1.0) -> torch.Tensor:
        """Official offset loss: mean displacement norms of the coarse and fine fields, the smoothness
        of all four fields, and ``gamma`` times the MSE between the un-warped warped image and the image."""
        magnitude = sum(torch.linalg.vector_norm(f, dim=-1).mean() for f in (fields.coarse, fields.fine))
        smooth = sum(
            smoothness_loss(f.permute(0, 3, 1, 2))
            for f in (fields.coarse, fields.fine, fields.coarse_inverse, fields.fine_inverse)
        )
        return magnitude + smooth + gamma * F.mse_loss(fields.unwarp(warped), images)


class VectorQuantizer(nn.Module):
    """Nearest-code vector quantisation with a straight-through gradient (van den Oord et al. 2017).

    ``forward(z (B, D, h, w)) -> (quantised (B, D, h, w), loss)``: each position's vector is replaced
    by its nearest codebook entry in L2; the gradient passes to ``z`` unchanged; the loss is
    ``beta * mse(z, sg(q)) + mse(sg(z), q)`` (commitment + codebook). The codebook is initialised
    uniformly in ``[-1/K, 1/K]`` (official).
    """

    def __init__(self, num_codes: int, dim: int, *, beta: float = 0.25) -> None:
        super().__init__()
        self.beta = beta
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of each row of ``flat`` (N, D)."""
        codes = self.codebook.weight
        distance = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2.0 * flat @ codes.t()
        return distance.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        quantised = self.codebook(self.nearest(flat.detach())).view(b, h, w, d).permute(0, 3, 1, 2)
        commitment = F.mse_loss(z, quantised.detach())
        codebook = F.mse_loss(quantised, z.detach())
        return z + (quantised - z).detach(), self.beta * commitment + codebook


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True)]  # fmt: skip


class VQBottleneck(nn.Module):
    """PPDm's one-class bottleneck (official ``BN_layer`` with ``vq=True``, mode "sp").

    ``forward([l1, l2, l3]) -> (embedding (B, 2 c3, h3/2, w3/2), vq_loss)``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        blocks: int,
        kind: str,
        width_factor: int,
        reduced: int | None = None,
        codebook_size: int = 200,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        r = reduced if reduced is not None else max(1, c3 // 16)
        self.reduce1 = nn.Sequential(*_conv_bn_relu(c1, r))
        self.reduce2 = nn.Sequential(*_conv_bn_relu(c2, r))
        self.reduce3 = nn.Sequential(*_conv_bn_relu(c3, r))
        self.down1 = nn.Sequential(*_conv_bn_relu(r, r, 2), *_conv_bn_relu(r, r, 2))
        self.down2 = nn.Sequential(*_conv_bn_relu(r, r, 2))
        self.quantizer = VectorQuantizer(codebook_size, c3, beta=beta)
        self.embed = residual_stage(c3 + 3 * r, 2 * c3, blocks, kind=kind, width_factor=width_factor, stride=2)
        _published_init(self)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        l1, l2, l3 = features
        quantised, vq_loss = self.quantizer(l3)
        fused = torch.cat(
            [self.down1(self.reduce1(l1)), self.down2(self.reduce2(l2)), self.reduce3(l3), quantised], dim=1
        )
        return self.embed(fused), vq_loss


def _published_init(module: nn.Module) -> None:
    """The official bottleneck's and decoder's initialisation: Kaiming-normal (fan-out, ReLU) for every
    ``Conv2d`` (not the transposed ones), BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass
class PPDmOutput:
    """One forward pass: the fields, the deformed images, encoder and decoder features, the VQ loss."""

    fields: OffsetFields
    warped: torch.Tensor
    teacher: list[torch.Tensor]
    student: list[torch.Tensor]
    vq_loss: torch.Tensor


class PPDmModel(nn.Module):
    """Offset net, frozen encoder (gradients pass through it), VQ bottleneck and de-ResNet decoder.

    Parameters
    ----------
    backbone, layers, pretrained, weights_path
        The frozen teacher encoder (three levels), see ``FeatureExtractor``.
    block : {"auto", "basic", "bottleneck"}
        Residual block of bottleneck and decoder (``"auto"``: bottleneck blocks for encoders whose
        last level has at least 1024 channels).
    bottleneck_blocks, decoder_blocks
        Depths (default 3 and ``(3, 4, 6)`` for bottleneck blocks, 2 and ``(2, 2, 2)`` for basic ones).
    width_factor : int, optional
        Bottleneck inner width multiplier (default 2 for ``wide_*`` backbones, else 1).
    offset_channels : int
        Width of the offset network (official 64).
    codebook_size, beta
        The vector quantiser (official 200 codes, commitment weight 0.25).
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        pretrained: bool,
        weights_path: str | None,
        block: str = "auto",
        bottleneck_blocks: int | None = None,
        decoder_blocks: Sequence[int] | None = None,
        width_factor: int | None = None,
        offset_channels: int = 64,
        codebook_size: int = 200,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        if len(layers) != 3:
            raise ValueError(f"ppdm needs exactly 3 encoder levels, got {list(layers)}")
        self.offset = OffsetNet(hidden=offset_channels)
        # Not ``frozen=True`` (that runs under no_grad): the offset net learns through the encoder.
        self.encoder = FeatureExtractor(
            backbone, layers, pretrained=pretrained, weights_path=weights_path, frozen=False
        )
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        channels, reductions = self.encoder.channels, self.encoder.reductions
        if any(r2 != 2 * r1 for r1, r2 in itertools.pairwise(reductions)):
            raise ValueError(f"encoder levels must halve the resolution each time, got reductions {reductions}")
        if block == "auto":
            block = "bottleneck" if channels[2] >= 1024 else "basic"
        if block not in BLOCK_KINDS:
            raise ValueError(f"block must be 'auto' or one of {BLOCK_KINDS}, got {block!r}")
        deep = block == "bottleneck"
        bottleneck_blocks = bottleneck_blocks if bottleneck_blocks is not None else (3 if deep else 2)
        decoder_blocks = tuple(decoder_blocks) if decoder_blocks is not None else ((3, 4, 6) if deep else (2, 2, 2))
        if bottleneck_blocks < 1 or len(decoder_blocks) != 3 or min(decoder_blocks) < 1:
            raise ValueError(f"bottleneck_blocks must be >= 1 and decoder_blocks three ints >= 1, got "
                             f"{bottleneck_blocks} and {list(decoder_blocks)}")  # fmt: skip
        if width_factor is None:
            width_factor = 2 if backbone.startswith("wide_") else 1
        self.reduction = reductions[2] * 2
        self.bottleneck = VQBottleneck(
            channels, blocks=bottleneck_blocks, kind=block, width_factor=width_factor,
            codebook_size=codebook_size, beta=beta,
        )  # fmt: skip
        self.decoder = ReverseDecoder(channels, blocks=decoder_blocks, kind=block, width_factor=width_factor)
        _published_init(self.decoder)

    def train(self, mode: bool = True) -> PPDmModel:
        super().train(mode)
        self.encoder.eval()  # frozen: its BatchNorm statistics never change
        return self

    def forward(self, images: torch.Tensor) -> PPDmOutput:
        fields = self.offset(images)
        warped = fields.warp(images)
        teacher = self.encoder(warped)
        embedding, vq_loss = self.bottleneck(teacher)
        return PPDmOutput(fields, warped, teacher, self.decoder(embedding), vq_loss)

    def anomaly_map(self, out: PPDmOutput, size: int) -> torch.Tensor:
        """RD's map of the deformed image, brought back to the input's geometry by the inverse fields
        (``(B, size, size)``, unsmoothed)."""
        maps = cosine_distance_map(out.teacher, out.student, size)
        return out.fields.unwarp(maps.unsqueeze(1))[:, 0]
