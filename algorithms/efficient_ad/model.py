"""EfficientAD networks: patch description networks (PDN) and the autoencoder.

The PDNs are ``nn.Sequential`` in the original layer order, so a teacher ``state_dict`` saved by
the authors' code (keys ``0.weight``, ``3.weight``, ...) loads directly; files with other key
names (e.g. ``conv1.weight``) load by layer order, with every shape checked.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODEL_SIZES", "AutoEncoder", "load_pdn_weights", "make_pdn", "pdn_output_size"]

MODEL_SIZES = ("small", "medium")


def make_pdn(size: str, out_channels: int, *, width: float = 1.0) -> nn.Sequential:
    """A patch description network (no padding: 33x33 receptive field per output pixel).

    Parameters
    ----------
    size : {"small", "medium"}
        PDN variant of the paper.
    out_channels : int
        Output channels (teacher: 384; the student has twice as many).
    width : float, optional
        Multiplier of the inner channel counts (1.0 = the paper; smaller for quick tests).
    """
    if size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {MODEL_SIZES}, got {size!r}")
    if width <= 0 or out_channels < 1:
        raise ValueError(f"width and out_channels must be positive, got {width} and {out_channels}")
    c1, c2 = max(1, round(128 * width)), max(1, round(256 * width))
    if size == "small":
        return nn.Sequential(
            nn.Conv2d(3, c1, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
            nn.Conv2d(c1, c2, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
            nn.Conv2d(c2, c2, 3), nn.ReLU(inplace=True),
            nn.Conv2d(c2, out_channels, 4),
        )  # fmt: skip
    c1, c2 = 2 * c1, 2 * c2
    return nn.Sequential(
        nn.Conv2d(3, c1, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(c1, c2, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(c2, c2, 1), nn.ReLU(inplace=True),
        nn.Conv2d(c2, c2, 3), nn.ReLU(inplace=True),
        nn.Conv2d(c2, out_channels, 4), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1),
    )  # fmt: skip


def pdn_output_size(input_size: int) -> int:
    """Output side of a PDN (small or medium) for a square input: 56 for 256."""
    side = (input_size - 3) // 2  # 4x4 conv, 2x2 pool
    side = (side - 3) // 2  # 4x4 conv, 2x2 pool
    return side - 2 - 3  # 3x3 conv, 4x4 conv (1x1 convs keep the size)


def load_pdn_weights(pdn: nn.Sequential, path: str | Path) -> None:
    """Load a teacher PDN ``state_dict`` from ``path`` (matched by layer order, shapes checked)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"teacher weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled whole modules, corrupt files, ...
        raise ValueError(
            f"could not read teacher weights {path} as a state_dict ({type(exc).__name__}: {exc}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from exc
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"teacher weights {path} hold a {type(state).__name__}, not a state_dict")
    is_param = lambda key: key.rsplit(".", 1)[-1] in ("weight", "bias")  # noqa: E731
    tensors = [v for k, v in state.items() if isinstance(v, torch.Tensor) and is_param(k)]
    own = [p for _, p in pdn.named_parameters()]
    if len(tensors) != len(own) or any(t.shape != p.shape for t, p in zip(tensors, own)):
        expected = [tuple(p.shape) for p in own]
        found = [tuple(t.shape) for t in tensors]
        raise ValueError(
            f"teacher weights {path} do not fit this PDN (model_size/out_channels/width): "
            f"expected shapes {expected}, found {found}"
        )
    with torch.no_grad():
        for p, t in zip(own, tensors):
            p.copy_(t.to(p.dtype))


def _decoder_sizes(input_size: int) -> list[int]:
    """Intermediate up-sampling sizes of the decoder: 3, 8, 15, 32, 63, 127 at 256 px."""
    return [max(1, round(s * input_size / 256)) for s in (3, 8, 15, 32, 63, 127)]


class AutoEncoder(nn.Module):
    """The paper's convolutional autoencoder: 6 encoder convolutions to a 64-d code, 8 decoder ones.

    Parameters
    ----------
    out_channels : int
        Output channels (as the teacher's).
    input_size : int
        Square input side; the bottleneck kernel and the up-sampling sizes scale with it
        (at 256 px they are the paper's).
    output_size : int
        Output side (the PDN output size).
    """

    def __init__(self, out_channels: int, *, input_size: int, output_size: int) -> None:
        super().__init__()
        side = input_size
        for _ in range(5):
            side //= 2  # 4x4 stride-2 convolutions with padding 1
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for the autoencoder (need at least 32)")
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, side),
        )  # fmt: skip
        self.sizes = [*_decoder_sizes(input_size), output_size]
        self.up_convs = nn.ModuleList(nn.Conv2d(64, 64, 4, padding=2) for _ in range(6))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Sequential(
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(64, out_channels, 3, padding=1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.encoder(images)
        for size, conv in zip(self.sizes, self.up_convs):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = self.dropout(F.relu(conv(x)))
        x = F.interpolate(x, size=(self.sizes[-1], self.sizes[-1]), mode="bilinear", align_corners=False)
        return self.head(x)
