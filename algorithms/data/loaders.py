"""The torch adapter: turn an :class:`~algorithms.data.core.ImageList` into a ``DataLoader``.

This is the only module of :mod:`algorithms.data` that imports torch. Each batch is filled in
place: a small thread pool decodes every image with OpenCV, resizes it on uint8 with torch's
antialiased bilinear filter (the torchvision/PIL definition) and writes it, ImageNet-normalised
and in RGB order, straight into its row of one preallocated float32 ``(B, 3, S, S)`` tensor.
OpenCV decoding, torch resizing and numpy arithmetic all release the GIL, so the threads overlap;
each image owns its row, so the result does not depend on the number of threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .core import ImageList, read_image_bgr

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "make_loader", "resize_image"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# (x / 255 - mean) / std == x * _SCALE - _SHIFT, per RGB channel, in float32.
_SCALE = tuple(np.float32(1.0) / (np.float32(255.0) * np.float32(s)) for s in IMAGENET_STD)
_SHIFT = tuple(np.float32(m) / np.float32(s) for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))


def _resize_planes(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W, C)`` uint8 -> ``(C, size, size)`` uint8 tensor, channel order kept."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if image.shape[0] == size and image.shape[1] == size:
        return tensor
    resized = F.interpolate(tensor[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0]


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
    return _resize_planes(image, size)


def _load_into(path: os.PathLike | str, size: int, out: np.ndarray) -> None:
    """Decode, resize and normalise one image into ``out``, a ``(3, size, size)`` float32 view."""
    planes = _resize_planes(read_image_bgr(path), size).numpy()  # (3, S, S) uint8, B, G, R
    for channel in range(3):  # RGB channel c is BGR plane 2 - c
        np.multiply(planes[2 - channel], _SCALE[channel], out=out[channel])
        np.subtract(out[channel], _SHIFT[channel], out=out[channel])


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_THREADS: int | None = None  # decoding threads per process; None = one per available core, up to 4
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def _threads() -> int:
    return _THREADS if _THREADS is not None else max(1, min(4, _available_cores()))


def _pool() -> ThreadPoolExecutor:
    """One decoding thread pool per process (re-created after a fork or a change of size)."""
    global _POOL
    threads = _threads()
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != threads:
        _POOL = (os.getpid(), threads, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vadi-decode"))
    return _POOL[2]


class _ImageBatches(Dataset):
    """Images by index; a batch of indices is decoded by threads into one preallocated tensor."""

    def __init__(self, paths: Sequence, size: int) -> None:
        self.paths = tuple(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = torch.empty((3, self.size, self.size), dtype=torch.float32)
        _load_into(self.paths[index], self.size, image.numpy())
        return image

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        batch = torch.empty((len(indices), 3, self.size, self.size), dtype=torch.float32)
        rows = batch.numpy()
        paths = [self.paths[i] for i in indices]
        if len(indices) < 2 or _threads() < 2:
            for row, path in zip(rows, paths, strict=True):
                _load_into(path, self.size, row)
        else:
            # list() waits for every image and re-raises the first error (e.g. a DatasetError).
            list(_pool().map(_load_into, paths, [self.size] * len(paths), rows))
        return batch


def _collate(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Batches come ready from ``__getitems__``; single images (a custom sampler) are stacked."""
    return batch if isinstance(batch, torch.Tensor) else torch.stack(batch)


def _worker_init(threads: int, _worker_id: int) -> None:
    global _THREADS
    _THREADS = threads
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


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
        decoded, resized and normalised by a small thread pool (up to 4 threads, one per
        available core, shared out between worker processes). Batches are the same for any
        number of workers or threads.

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
        _ImageBatches(images._paths, int(size)),
        batch_size=int(batch_size),
        shuffle=bool(shuffle),
        num_workers=int(num_workers),
        collate_fn=_collate,
        generator=generator,
        # Worker processes share the cores: each gets its share of decoding threads.
        worker_init_fn=partial(_worker_init, max(1, _threads() // num_workers)) if num_workers else None,
        # Never fork: a process that already runs threads (torch's OpenMP pool, our decoding
        # pool, tqdm's monitor) can deadlock in a forked child. Spawned workers start clean.
        multiprocessing_context="spawn" if num_workers else None,
    )
