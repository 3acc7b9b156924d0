"""MSPBA's networks: three patch encoders on a shared CNN, position classifiers, losses and scoring.

Pure torch (no optimiser, no training loop): the detector (``detector.py``) samples the patch
pairs and trains; this module defines the encoders, the self-supervised heads, the losses, the
patch geometry of the samplers, and the nearest-neighbour anomaly maps. Architecture facts from
the authors' code (Tsai, Wu, Lai, WACV 2022; ``networks.py``, ``datasets.py``, ``inspection.py``
of the public mirror ``Howeng98/MSPBA``), re-implemented; see the package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.feature_extractor import FeatureExtractor
from ..components.nearest import nearest_neighbours

__all__ = [
    "HEAD_SPECS",
    "NUM_POSITIONS",
    "MspbaModel",
    "NormalizedLinear",
    "PatchEncoder",
    "PositionClassifier",
    "cluster_loss",
    "crop_patches",
    "distribute_scores",
    "grid_patches",
    "position_loss",
    "position_offsets",
    "svdd_loss",
    "svdd_offsets",
]

#: The published encoder heads, one per patch scale (large, medium, small): the spatial side of
#: the backbone map they read (patch side / backbone stride: 64/16, 32/4, 16/2) and their
#: ``(out_channels, kernel)`` convolutions (stride 1, no padding; LeakyReLU(0.1) between them,
#: tanh after the last). The last convolution outputs the embedding (``embed_dim`` channels).
HEAD_SPECS: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = (
    (4, ((256, 2), (128, 2), (64, 2), (-1, 1))),  # Encoder64 on VGG16 relu5_3 (512 ch, 4x4)
    (8, ((256, 3), (128, 3), (128, 2), (64, 2), (-1, 2))),  # Encoder32 on relu3_3 (256 ch, 8x8)
    (8, ((128, 3), (64, 3), (32, 3), (-1, 2))),  # Encoder16 on relu2_2 (128 ch, 8x8)
)

#: Relative positions of the self-supervised task: 12 directions, 30 degrees apart (the code's
#: ``pos_to_diff``; Patch SVDD used the 8 neighbours of a 3 x 3 grid).
NUM_POSITIONS = 12


class PatchEncoder(nn.Module):
    """One scale's head: convolutions from a ``(C, n, n)`` backbone map down to a ``(embed_dim,)`` vector."""

    def __init__(self, in_channels: int, spec: Sequence[tuple[int, int]], embed_dim: int) -> None:
        super().__init__()
        convs, channels = [], in_channels
        for out_channels, kernel in spec:
            out_channels = embed_dim if out_channels < 0 else out_channels
            convs.append(nn.Conv2d(channels, out_channels, kernel, stride=1, padding=0, bias=True))
            channels = out_channels
        self.convs = nn.ModuleList(convs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C, n, n)`` backbone features to ``(B, embed_dim)`` embeddings in ``(-1, 1)``."""
        h = features
        for i, conv in enumerate(self.convs):
            h = conv(h)
            h = torch.tanh(h) if i == len(self.convs) - 1 else F.leaky_relu(h, 0.1)
        if h.shape[-2:] != (1, 1):
            raise ValueError(f"the encoder head expected a map reducing to 1 x 1, got {tuple(features.shape[-2:])}")
        return h.flatten(1)


class NormalizedLinear(nn.Module):
    """The classifier's last layer, as in the official code (inherited from Patch SVDD).

    ``y = x W_n^T + b`` with ``W_n = W / ||W||`` normalised per input feature (the norm over the
    output axis, ``dim=0``) and computed without gradient: ``W`` keeps its random initialisation
    and only ``b`` learns. Initialised like ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            weight = self.weight / self.weight.norm(dim=0, keepdim=True)
        return F.linear(x, weight, self.bias)


class PositionClassifier(nn.Module):
    """Predicts the relative position (one of 12) of two patches from ``h1 - h2``.

    ``embed_dim -> 128 -> 256 -> 512`` (LeakyReLU 0.1 after each), then ``NormalizedLinear(512, 12)``.
    """

    def __init__(self, embed_dim: int, num_positions: int = NUM_POSITIONS) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, 128)
        self.fc2 = nn.Linear(128, 256)
        self.fc3 = nn.Linear(256, 512)
        self.fc4 = NormalizedLinear(512, num_positions)

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        h = h1 - h2
        for fc in (self.fc1, self.fc2, self.fc3):
            h = F.leaky_relu(fc(h), 0.1)
        return self.fc4(h)


# -- losses ---------------------------------------------------------------------------------------


def position_loss(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the relative-position classifier (mean over the batch)."""
    return F.cross_entropy(logits, positions)


def svdd_loss(h1: torch.Tensor, h2: torch.Tensor, h3: torch.Tensor) -> torch.Tensor:
    """The multi-distance SVDD loss of the official code.

    ``mean ||h1 - h2||_2 + mean(-cos(h1, h2) + cos(h1, h3))``: ``h2`` embeds a patch a few pixels
    from ``h1``'s (pulled together, in distance and in direction), ``h3`` one far away (pushed
    apart in direction). ``(B, D)`` embeddings.
    """
    pull = torch.linalg.vector_norm(h1 - h2, dim=1).mean()
    return pull + (F.cosine_similarity(h1, h3, dim=1) - F.cosine_similarity(h1, h2, dim=1)).mean()


def cluster_loss(h: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared distance of each embedding to its nearest centre."""
    return torch.cdist(h, centres).pow(2).min(dim=1).values.mean()


# -- patch geometry ---------------------------------------------------------------------------------


def _directions(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    angle = positions.to(torch.float64) * (math.pi / 6)
    return torch.cos(angle), torch.sin(angle)  # (row, column) components


def position_offsets(
    corners: torch.Tensor, size: int, patch: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Second patch of the position task: ``(corners2 (n, 2), positions (n,))``.

    Direction ``p`` in 0..11 at angle ``30 p`` degrees (row component ``cos``, column ``sin``);
    per axis the distance is ``3K/4 + u`` with ``u`` uniform in ``0..K/4-1``; the offset is
    rounded and the corner clipped to the image (the code's ``generate_coords_position``).
    """
    n = corners.shape[0]
    positions = torch.randint(NUM_POSITIONS, (n,), generator=generator)
    jitter = torch.randint(max(patch // 4, 1), (n, 2), generator=generator)
    rows, cols = _directions(positions)
    direction = torch.stack([rows, cols], dim=1)
    offset = torch.round(direction * (jitter + 3 * patch // 4).to(torch.float64)).long()
    return (corners + offset).clamp(0, size - patch), positions


def svdd_offsets(
    corners: torch.Tensor, size: int, patch: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Near and far partners of the SVDD task: ``(near (n, 2), far (n, 2))`` corners.

    Near: a jitter of up to ``K/16`` pixels per axis, never zero on both. Far: a position-task
    offset pushed a further ``3K/4`` outwards on each axis (``+3K/4`` where the offset is zero),
    so at least ``3K/4`` away on both axes before clipping (the code's ``generate_coords_svdd``).
    """
    n = corners.shape[0]
    reach = max(patch // 16, 1)
    side = 2 * reach + 1
    # uniform over the (2J+1)^2 - 1 non-zero jitters: skip the centre cell of the grid
    cell = torch.randint(side * side - 1, (n,), generator=generator)
    cell = cell + (cell >= (side * side) // 2).long()
    near = corners + torch.stack([cell // side - reach, cell % side - reach], dim=1)
    positions = torch.randint(NUM_POSITIONS, (n,), generator=generator)
    jitter = torch.randint(max(patch // 4, 1), (n, 2), generator=generator)
    rows, cols = _directions(positions)
    offset = torch.stack([rows, cols], dim=1) * (jitter + 3 * patch // 4).to(torch.float64)
    offset = torch.where(offset < 0, offset - 3 * patch // 4, offset + 3 * patch // 4)
    far = corners + torch.round(offset).long()
    return near.clamp(0, size - patch), far.clamp(0, size - patch)


def crop_patches(images: torch.Tensor, index: torch.Tensor, corners: torch.Tensor, patch: int) -> torch.Tensor:
    """``(n, C, K, K)`` crops of ``images[index]`` with top-left ``corners`` ``(n, 2)`` (row, column)."""
    steps = torch.arange(patch, device=images.device)
    rows = (corners[:, 0].to(images.device)[:, None] + steps)[:, :, None]  # (n, K, 1)
    cols = (corners[:, 1].to(images.device)[:, None] + steps)[:, None, :]  # (n, 1, K)
    crops = images[index.to(images.device)[:, None, None], :, rows, cols]  # (n, K, K, C)
    return crops.permute(0, 3, 1, 2).contiguous()


def grid_patches(images: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """All ``K x K`` patches on a grid of step ``stride``: ``(B, I, J, C, K, K)``."""
    windows = images.unfold(2, patch, stride).unfold(3, patch, stride)  # (B, C, I, J, K, K)
    return windows.permute(0, 2, 3, 1, 4, 5)


def distribute_scores(scores: torch.Tensor, size: int, patch: int, stride: int) -> torch.Tensor:
    """Spread patch scores ``(B, I, J)`` over their pixels and average overlaps: ``(B, size, size)``.

    Each pixel gets the mean score of the patches covering it, 0 where none does (the code's
    ``distribute_scores``).
    """
    b, i, j = scores.shape
    columns = scores.reshape(b, 1, i * j).expand(b, patch * patch, i * j)
    total = F.fold(columns, (size, size), patch, stride=stride)
    count = F.fold(torch.ones_like(columns[:1]), (size, size), patch, stride=stride)
    return (total / count.clamp(min=1))[:, 0]


# -- the network ------------------------------------------------------------------------------------


class MspbaModel(nn.Module):
    """A shared CNN, three patch encoders, three position classifiers and per-scale memory.

    Parameters
    ----------
    backbone, pretrained, weights_path : str, bool, str or None
        The CNN (``FeatureExtractor``): VGG16 in the publication.
    layers : three timm feature indices
        The backbone map each scale's encoder reads (large, medium, small patches).
    patch_sizes : three ints
        Patch sides; ``patch_size / stride(layer)`` must equal the head's published input side
        (4, 8, 8).
    embed_dim : int
        Embedding size ``D`` (64).
    train_backbone : bool
        Whether the backbone is fine-tuned with the encoders (the official optimiser holds its
        parameters) or frozen.

    Buffers
    -------
    bank_0, bank_1, bank_2 : (M_s, D)
        Training patch embeddings per scale; empty until the detector fills them.
    centres_0, centres_1, centres_2 : (k_s, D)
        Cluster centres per scale; empty until the first clustering.
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[int],
        patch_sizes: Sequence[int],
        embed_dim: int,
        pretrained: bool,
        weights_path: str | None,
        train_backbone: bool,
    ) -> None:
        super().__init__()
        if len(layers) != 3 or len(patch_sizes) != 3:
            raise ValueError(f"mspba has three scales: give three layers and three patch sizes, got {layers}, "
                             f"{patch_sizes}")  # fmt: skip
        self.layers = [int(x) for x in layers]
        self.patch_sizes = [int(k) for k in patch_sizes]
        order = sorted(set(self.layers))
        self.extractor = FeatureExtractor(
            backbone, order, pretrained=pretrained, weights_path=weights_path, frozen=not train_backbone
        )
        self.train_backbone = bool(train_backbone)
        self._position = [order.index(layer) for layer in self.layers]  # output slot of each scale
        channels = dict(zip(order, self.extractor.channels, strict=True))
        strides = dict(zip(order, self.extractor.reductions, strict=True))
        self.encoders = nn.ModuleList()
        for scale, ((side, spec), layer, patch) in enumerate(
            zip(HEAD_SPECS, self.layers, self.patch_sizes, strict=True)
        ):
            if patch % strides[layer] or patch // strides[layer] != side:
                raise ValueError(
                    f"mspba: scale {scale} reads backbone feature {layer} (stride {strides[layer]}) on {patch}-pixel "
                    f"patches, a {patch / strides[layer]:g}-wide map; its published head needs {side} "
                    f"(patch size = {side} x stride)"
                )
            self.encoders.append(PatchEncoder(channels[layer], spec, embed_dim))
        self.classifiers = nn.ModuleList(PositionClassifier(embed_dim) for _ in range(3))
        for scale in range(3):
            self.register_buffer(f"bank_{scale}", torch.empty(0, embed_dim))
            self.register_buffer(f"centres_{scale}", torch.empty(0, embed_dim))

    def train(self, mode: bool = True) -> MspbaModel:
        super().train(mode)
        if not self.train_backbone:
            self.extractor.train(False)
        return self

    def backbone_features(self, patches: torch.Tensor, layer: int) -> torch.Tensor:
        """The backbone map ``layer`` of a batch of patches, computing no deeper stage."""
        net = self.extractor.model
        wanted = sorted(set(self.layers)).index(layer)
        if not hasattr(net, "return_layers"):  # timm's own feature classes (MobileNetV3, ...): one full pass
            return net(patches)[wanted]
        hits, x = 0, patches
        for name, module in net.items():
            x = module(x)
            if name in net.return_layers:
                if hits == wanted:
                    return x
                hits += 1
        raise RuntimeError(f"backbone feature {layer} was not reached")

    def encode(self, patches: torch.Tensor, scale: int) -> torch.Tensor:
        """Embeddings ``(n, D)`` of ``(n, 3, K, K)`` patches at ``scale`` (0: largest)."""
        return self.encoders[scale](self.backbone_features(patches, self.layers[scale]))

    def bank(self, scale: int) -> torch.Tensor:
        return getattr(self, f"bank_{scale}")

    def centres(self, scale: int) -> torch.Tensor:
        return getattr(self, f"centres_{scale}")

    def embed_grid(self, images: torch.Tensor, scale: int, stride: int, chunk: int = 1024) -> torch.Tensor:
        """Embeddings of every grid patch of ``images``: ``(B, I, J, D)``."""
        patch = self.patch_sizes[scale]
        windows = grid_patches(images, patch, stride)
        b, i, j = windows.shape[:3]
        flat = windows.reshape(b * i * j, images.shape[1], patch, patch)
        out = torch.cat([self.encode(part.contiguous(), scale) for part in flat.split(chunk)])
        return out.reshape(b, i, j, -1)

    def scale_map(self, images: torch.Tensor, scale: int, stride: int) -> torch.Tensor:
        """One scale's anomaly map ``(B, S, S)``: nearest-training-patch distances, spread over pixels."""
        bank = self.bank(scale)
        if bank.shape[0] == 0:
            raise RuntimeError("the memory banks are empty; the detector's pre_eval builds them")
        embedding = self.embed_grid(images, scale, stride)
        b, i, j, d = embedding.shape
        distances, _ = nearest_neighbours(embedding.reshape(-1, d), bank, k=1)
        return distribute_scores(distances.reshape(b, i, j), images.shape[-1], self.patch_sizes[scale], stride)

    def forward(self, images: torch.Tensor, strides: Sequence[int]) -> list[torch.Tensor]:
        """The three per-scale anomaly maps ``[(B, S, S)] * 3`` (largest patch first)."""
        return [self.scale_map(images, scale, int(stride)) for scale, stride in enumerate(strides)]
