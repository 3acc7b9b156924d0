"""The torch adapter: turn an :class:`~algorithms.data.core.ImageList` into a ``DataLoader``.

This is the only module of :mod:`algorithms.data` that imports torch. Each image is decoded
with OpenCV, resized on uint8 with torch's antialiased bilinear filter (the torchvision/PIL
definition), and whole batches are ImageNet-normalised in one vectorised step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .core import ImageList, read_image

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "make_loader", "resize_image"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def resize_image(image: np.ndarray, size: int) -> torch.Tensor:
    """Resize an ``(H, W, 3)`` uint8 RGB image to a ``(3, size, size)`` uint8 tensor.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8.
    size : int
        Output side in pixels.

    Returns
    -------
    torch.Tensor
        ``(3, size, size)`` uint8; bilinear with antialiasing when shrinking (as torchvision's
        ``Resize(antialias=True)``), the image unchanged when it already has that size.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if image.shape[0] == size and image.shape[1] == size:
        return tensor
    resized = F.interpolate(tensor[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0]


@lru_cache(maxsize=1)
def _threads() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """One decoding thread pool per process (re-created after a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="vadi-decode"))
    return _POOL[1]


class _ResizedImages(Dataset):
    def __init__(self, paths: Sequence, size: int) -> None:
        self.paths = tuple(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return resize_image(read_image(self.paths[index]), self.size)

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        # Batched fetch: OpenCV decoding and torch resizing release the GIL, so a few threads
        # overlap them (in the main process or inside each worker process).
        if len(indices) < 2 or _threads() < 2:
            return [self[i] for i in indices]
        return list(_pool().map(self.__getitem__, indices))


class _NormalisingCollate:
    """Stack uint8 images and ImageNet-normalise the batch: ``(x / 255 - mean) / std`` in float32."""

    def __init__(self) -> None:
        self.scale = (1.0 / (255.0 * torch.tensor(IMAGENET_STD, dtype=torch.float32))).view(1, 3, 1, 1)
        self.shift = (torch.tensor(IMAGENET_MEAN, dtype=torch.float32) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1)

    def __call__(self, batch: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(batch).to(torch.float32, memory_format=torch.contiguous_format)
        return stacked.mul_(self.scale).sub_(self.shift)


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(1)


def make_loader(
    images: ImageList,
    *,
    size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """A ``DataLoader`` of normalised image batches for an algorithm (images only, nothing else).

    Parameters
    ----------
    images : ImageList
        From ``Category.train_images()`` or ``Category.test_images()``.
    size : int
        Square side the images are resized to (bilinear, antialiased).
    batch_size : int
        Images per batch; the last batch may be smaller.
    shuffle : bool, default False
        Reshuffle every epoch, reproducibly from ``seed``.
    seed : int, default 0
        Seed of the shuffling generator.
    num_workers : int, default 0
        Decoding processes (0 decodes in the calling process). Within a process, each batch is
        decoded and resized by a small thread pool (up to 4 threads, one per available core).

    Returns
    -------
    torch.utils.data.DataLoader
        Yields float32 tensors ``(B, 3, size, size)``, ImageNet-normalised, in ``images`` order
        unless ``shuffle``.
    """
    if not isinstance(images, ImageList):
        raise TypeError(
            f"images must be an ImageList (from Category.train_images/test_images), got {type(images).__name__}"
        )
    for name, value, minimum in (("size", size, 1), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if len(images) == 0:
        raise ValueError("images is empty: nothing to load")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        _ResizedImages(images._paths, int(size)),
        batch_size=int(batch_size),
        shuffle=bool(shuffle),
        num_workers=int(num_workers),
        collate_fn=_NormalisingCollate(),
        generator=generator,
        worker_init_fn=_worker_init if num_workers else None,
    )
