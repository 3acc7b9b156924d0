"""AnomalyDINO's network: DINOv2 patch tokens, cosine nearest neighbours, top-1 % image score, masking.

A pure ``torch.nn.Module`` (no training logic): the detector (``detector.py``) fills the memory
bank; this module embeds images and scores them against it. The arithmetic follows the paper
(Damm et al., WACV 2025, sec. 3) and the official code (``src/detection.py``, ``src/backbones.py``,
``src/utils.py``, ``src/post_eval.py``); see the package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.scores import topk_mean
from ..components.vit_extractor import ViTFeatureExtractor

__all__ = [
    "ROTATION_ANGLES",
    "AnomalyDinoModel",
    "background_mask",
    "cosine_nearest_distances",
    "rotate_images",
]

#: The official ``augment_image`` angles (degrees); 0 is the image itself.
ROTATION_ANGLES = (0, 45, 90, 135, 180, 225, 270, 315)

#: Upper bound on the elements of one query-by-bank similarity block (16 MiB of float32).
SIMILARITY_BLOCK_ELEMENTS = 2**22


def cosine_nearest_distances(
    queries: torch.Tensor, bank: torch.Tensor, *, k: int = 1, block_elements: int = SIMILARITY_BLOCK_ELEMENTS
) -> torch.Tensor:
    """Mean cosine distance of each query row to its ``k`` nearest rows of an L2-normalised bank.

    Parameters
    ----------
    queries : torch.Tensor
        ``(Q, D)`` features, L2-normalised.
    bank : torch.Tensor
        ``(M, D)`` features, L2-normalised, ``M >= k``.
    k : int
        Neighbours averaged (the paper: 1).
    block_elements : int
        Largest similarity block computed at once (bounds the peak memory).

    Returns
    -------
    torch.Tensor
        ``(Q,)`` distances ``1 - cos`` in ``[0, 2]`` (the official faiss L2 on unit vectors, halved:
        ``|x - m|^2 / 2 = 1 - <x, m>``).
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(f"expected (Q, D) queries and (M, D) bank, got {tuple(queries.shape)} and {tuple(bank.shape)}")
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k must be in [1, {bank.shape[0]}] (the bank size), got {k}")
    rows = max(1, block_elements // bank.shape[0])
    bank_t = bank.t()
    out = []
    for chunk in queries.split(rows):
        similarity = chunk @ bank_t
        if k == 1:
            best = similarity.amax(dim=1)
        else:
            best = similarity.topk(k, dim=1).values.mean(dim=1)
        out.append((1.0 - best).clamp_(0.0, 2.0))
    if not out:
        return queries.new_empty(0)
    return torch.cat(out)


def rotate_images(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate ``(B, C, H, W)`` images by ``degrees`` (counter-clockwise) about their centre.

    Bilinear sampling with a reflected border, the tensor counterpart of the official
    ``cv2.warpAffine(..., INTER_LINEAR, BORDER_DEFAULT)`` of ``rotate_image``. Multiples of 90
    degrees are exact (``torch.rot90``).
    """
    if degrees % 90 == 0:
        return torch.rot90(images, k=int(degrees // 90) % 4, dims=(-2, -1))
    radians = math.radians(degrees)
    cos, sin = math.cos(radians), math.sin(radians)
    h, w = images.shape[-2:]
    # Output pixel (x, y) samples input (cos x - sin y, sin x + cos y) in pixel units about the centre
    # (counter-clockwise for a y-down image, as cv2.getRotationMatrix2D with a positive angle).
    theta = images.new_tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]])
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def background_mask(
    tokens: torch.Tensor,
    grid_size: tuple[int, int],
    *,
    threshold: float = 10.0,
    border: float = 0.2,
    kernel_size: int = 3,
) -> torch.Tensor:
    """The official zero-shot foreground mask of one image's patch tokens (``compute_background_mask``).

    1. Project the centred tokens on their first principal component (the sign fixed as
       scikit-learn >= 1.5 fixes it: the component's largest absolute entry is positive).
    2. Foreground = projection > ``threshold``; if the centre crop (``border`` of each side
       dropped) holds at most 35 % foreground, use -projection > ``threshold`` instead.
    3. A ``kernel_size`` square dilation, then a closing (dilation, erosion); the border does not
       erode (OpenCV's default border value for morphology).

    Parameters
    ----------
    tokens : torch.Tensor
        ``(h * w, C)`` patch tokens of one image, row-major over the grid.
    grid_size : tuple of int
        ``(h, w)``.

    Returns
    -------
    torch.Tensor
        ``(h * w,)`` bool, True where the patch is kept (foreground).
    """
    h, w = grid_size
    if tokens.ndim != 2 or tokens.shape[0] != h * w:
        raise ValueError(f"expected ({h * w}, C) tokens for a {h} x {w} grid, got {tuple(tokens.shape)}")
    x = tokens.double()
    x = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    component = vh[0]
    if component[component.abs().argmax()] < 0:
        component = -component
    projection = (x @ component).reshape(h, w)
    mask = projection > threshold
    y0, y1 = int(h * border), int(h * (1 - border))
    x0, x1 = int(w * border), int(w * (1 - border))
    centre = mask[y0:y1, x0:x1]
    if centre.sum() <= centre.numel() * 0.35:
        mask = -projection > threshold
    pad = kernel_size // 2
    m = mask.to(torch.float32)[None, None]
    dilate = lambda t: F.max_pool2d(t, kernel_size, stride=1, padding=pad)  # noqa: E731
    erode = lambda t: -F.max_pool2d(-t, kernel_size, stride=1, padding=pad)  # noqa: E731
    m = dilate(m)
    m = erode(dilate(m))
    return m[0, 0].reshape(-1) > 0.5


class AnomalyDinoModel(nn.Module):
    """DINOv2 patch tokens, the memory bank and the scoring of AnomalyDINO (paper sec. 3).

    Parameters
    ----------
    backbone, input_size, pretrained, weights_path, model_kwargs
        The frozen ViT (:class:`~algorithms.components.vit_extractor.ViTFeatureExtractor`), tapped
        at its last block after the final LayerNorm.
    num_neighbours : int
        Nearest bank tokens averaged per patch (paper: 1).
    masking : bool
        Zero-shot foreground masking of test images (:func:`background_mask`).
    mask_threshold : float
        Threshold on the first principal component (official: 10).
    top_fraction : float
        Share of the largest patch distances averaged into the image score (paper: 0.01).
    blur_sigma : float
        Gaussian smoothing of the anomaly map in pixels (official: 4; 0 disables it).

    Buffers
    -------
    memory_bank : (M, C) float
        L2-normalised reference patch tokens; empty until the detector fills it.
    """

    def __init__(
        self,
        *,
        backbone: str,
        input_size: int,
        pretrained: bool,
        weights_path: str | None,
        model_kwargs: Mapping[str, Any] | None,
        num_neighbours: int,
        masking: bool,
        mask_threshold: float,
        top_fraction: float,
        blur_sigma: float,
    ) -> None:
        super().__init__()
        self.extractor = ViTFeatureExtractor(
            backbone,
            [-1],
            input_size=input_size,
            pretrained=pretrained,
            weights_path=weights_path,
            norm=True,
            model_kwargs=model_kwargs,
        )
        self.num_neighbours = int(num_neighbours)
        self.masking = bool(masking)
        self.mask_threshold = float(mask_threshold)
        self.top_fraction = float(top_fraction)
        self.blur_sigma = float(blur_sigma)
        self.register_buffer("memory_bank", torch.empty(0, self.extractor.embed_dim))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised patch tokens ``(B, h * w, C)`` of the last block (after the final norm)."""
        tokens = self.extractor.forward_tokens(images)[0][:, self.extractor.num_prefix_tokens :]
        return F.normalize(tokens, dim=-1)

    def patch_distances(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, h, w)`` cosine distances to the nearest bank tokens; 0 on masked-out patches."""
        bank = self.memory_bank
        if bank.shape[0] == 0:
            raise RuntimeError("the memory bank is empty; the detector's pre_eval builds it")
        if self.masking:
            raw = self.extractor.forward_tokens(images)[0][:, self.extractor.num_prefix_tokens :]
            grid = self.extractor.grid_size
            keep = torch.stack([background_mask(t, grid, threshold=self.mask_threshold) for t in raw])
            tokens = F.normalize(raw, dim=-1)
        else:
            tokens = self.embed(images)
            keep = None
        b, n, d = tokens.shape
        k = min(self.num_neighbours, bank.shape[0])
        distances = cosine_nearest_distances(tokens.reshape(-1, d), bank, k=k).reshape(b, n)
        if keep is not None:
            distances = distances * keep
        return distances.reshape(b, *self.extractor.grid_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores ``(B,)`` and anomaly maps ``(B, H, W)`` at the input resolution.

        Raises ``RuntimeError`` while the memory bank is empty.
        """
        distances = self.patch_distances(images)
        b = distances.shape[0]
        # the mean of the int(0.01 n) largest patch distances, the maximum when that is 0 (official mean_top1p)
        scores = topk_mean(distances.reshape(b, -1), ratio=self.top_fraction)
        maps = F.interpolate(distances[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        if self.blur_sigma > 0:
            maps = gaussian_blur(maps, self.blur_sigma)
        return scores, maps
