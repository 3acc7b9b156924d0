"""One category on disk: lazy image lists, hidden ground truth, image and mask decoding.

Nothing here imports torch: the torch adapter lives in :mod:`algorithms.data.loaders`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import cv2
import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "Category",
    "DatasetError",
    "GroundTruth",
    "ImageList",
    "TestItem",
    "is_image_file",
    "list_image_files",
    "read_image",
    "read_image_bgr",
    "read_mask",
    "test_order_key",
]

#: File suffixes accepted as images (compared case-insensitively).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class DatasetError(ValueError):
    """A dataset root is missing or malformed; the message names the path and what was expected."""


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names an image file we read (hidden files such as ``.DS_Store`` are not)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def list_image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name; non-image files are ignored."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        # Keep the high byte: 0..65535 -> 0..255 (rounded), exact for 8-bit data stored as 16-bit*257.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if float(finite.max(initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    raise DatasetError(f"{path}: unsupported pixel type {array.dtype} (expected 8- or 16-bit images)")


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image as an ``H x W x 3`` uint8 RGB array at its original size.

    Grey-scale images are repeated over three channels, 16-bit images are scaled to 8 bits and
    an alpha channel is dropped.

    Parameters
    ----------
    path : str or Path
        The image file.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, RGB channel order.

    Raises
    ------
    DatasetError
        If the file is missing or OpenCV cannot decode it.
    """
    return cv2.cvtColor(read_image_bgr(path), cv2.COLOR_BGR2RGB)


def read_image_bgr(path: str | Path) -> np.ndarray:
    """:func:`read_image` in OpenCV's ``B, G, R`` channel order (saves a copy when the caller reorders anyway).

    Parameters
    ----------
    path : str or Path
        The image file.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, BGR channel order; ``read_image(path) == read_image_bgr(path)[..., ::-1]``.

    Raises
    ------
    DatasetError
        If the file is missing or OpenCV cannot decode it.
    """
    path = Path(path)
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        reason = "file not found" if not path.exists() else "OpenCV could not decode it"
        raise DatasetError(f"{path}: cannot read image ({reason})")
    array = _to_uint8(array, path)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return array
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    raise DatasetError(f"{path}: unsupported number of channels {channels} (expected 1, 3 or 4)")


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a ground-truth mask as an ``H x W`` uint8 array in {0, 1} (any non-zero pixel is defect).

    Raw VisA masks are not 0/255, so the mask is binarised with ``> 0`` in every channel.
    """
    path = Path(path)
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        reason = "file not found" if not path.exists() else "OpenCV could not decode it"
        raise DatasetError(f"{path}: cannot read mask ({reason})")
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2) if array.shape[2] >= 3 else array.max(axis=2)
    return (array > 0).astype(np.uint8)


def test_order_key(test_id: str) -> tuple[str, str]:
    """Sort key for public test ids: the SHA-1 of the id (stable across runs, label-blind), then the id."""
    return hashlib.sha1(test_id.encode("utf-8")).hexdigest(), test_id


class ImageList(Sequence):
    """A lazy, read-only list of images: each item is decoded from disk when accessed.

    Items are ``(H, W, 3)`` uint8 RGB arrays at their original size. The file paths are kept
    private: algorithms receive images, never paths.
    """

    __slots__ = ("_paths",)

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths: tuple[Path, ...] = tuple(Path(p) for p in paths)

    def __len__(self) -> int:
        return len(self._paths)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> ImageList: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | ImageList:
        if isinstance(index, slice):
            return ImageList(self._paths[index])
        return read_image(self._paths[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self._paths:
            yield read_image(path)

    def __repr__(self) -> str:
        return f"ImageList({len(self)} images)"


@dataclass(frozen=True)
class GroundTruth:
    """Labels and masks of a category's test images, in ``Category.test_ids`` order (evaluation only).

    Attributes
    ----------
    ids : numpy.ndarray
        ``(N,)`` str, the public test ids.
    labels : numpy.ndarray
        ``(N,)`` uint8, 1 for anomalous images.
    masks : numpy.ndarray
        ``(N, size, size)`` uint8 in {0, 1}, resized with pixel-centre nearest neighbour.
    defect_types : numpy.ndarray
        ``(N,)`` str, ``"good"`` for normal images, else the defect folder name (or ``"anomaly"``).
    """

    ids: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    defect_types: np.ndarray


@dataclass(frozen=True)
class TestItem:
    """One test image as found on disk (kept inside ``Category``; never handed to algorithms)."""

    id: str
    path: Path
    label: int
    defect_type: str
    mask_path: Path | None


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding pixels."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError) as exc:  # PIL cannot parse the header: decode with OpenCV instead
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise DatasetError(f"{path}: cannot read image header ({exc})") from exc
        height, width = array.shape[:2]
    return height, width


class Category:
    """One anomaly-detection category on disk, validated on construction.

    Build it with :func:`algorithms.data.load_category`. Algorithms get :meth:`train_images`
    and :meth:`test_images` (images only); evaluation gets :meth:`ground_truth`.

    Parameters
    ----------
    key : str
        ``<dataset>/<category>``, e.g. ``"mvtec/bottle"``.
    root : Path
        The category root; test ids are paths relative to it.
    train_paths : sequence of Path
        Defect-free training images.
    test_items : sequence of TestItem
        Every test image with its label and mask file.
    layout : str
        Which on-disk layout was read (``"mvtec"``, ``"visa-csv"``, ``"visa-1cls"``, ``"folder"``).
    """

    def __init__(
        self,
        key: str,
        root: Path,
        *,
        train_paths: Sequence[Path],
        test_items: Sequence[TestItem],
        layout: str,
    ) -> None:
        if not train_paths:
            raise DatasetError(f"{key}: no training images under {root}")
        if not test_items:
            raise DatasetError(f"{key}: no test images under {root}")
        ids = [item.id for item in test_items]
        if len(set(ids)) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            raise DatasetError(f"{key}: duplicate test ids under {root}: {duplicates[:5]}")
        for item in test_items:
            if item.label == 1 and item.mask_path is None:
                raise DatasetError(f"{key}: anomalous test image {item.path} has no mask")
        self.key = key
        self.root = Path(root)
        self.layout = layout
        self._train_paths = tuple(train_paths)
        self._test_items = tuple(sorted(test_items, key=lambda item: test_order_key(item.id)))
        self.test_ids: list[str] = [item.id for item in self._test_items]

    def __repr__(self) -> str:
        n_anomalous = sum(item.label for item in self._test_items)
        return (
            f"Category({self.key!r}, layout={self.layout!r}, train={len(self._train_paths)}, "
            f"test={len(self._test_items)} ({n_anomalous} anomalous))"
        )

    @property
    def n_train(self) -> int:
        return len(self._train_paths)

    @property
    def n_test(self) -> int:
        return len(self._test_items)

    def train_images(self) -> ImageList:
        """The defect-free training images (lazy)."""
        return ImageList(self._train_paths)

    def test_images(self) -> ImageList:
        """All test images in ``test_ids`` order (lazy): no labels, no masks, no paths."""
        return ImageList([item.path for item in self._test_items])

    def ground_truth(self, size: int = 256) -> GroundTruth:
        """Labels and masks of the test images, masks resized to ``size x size`` (evaluation only).

        Parameters
        ----------
        size : int, default 256
            Side of the square masks; nearest-neighbour (pixel-centre) resize.

        Returns
        -------
        GroundTruth

        Raises
        ------
        DatasetError
            If a mask cannot be read or its size differs from its image's.
        """
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        size = int(size)
        n = len(self._test_items)
        masks = np.zeros((n, size, size), dtype=np.uint8)
        for index, item in enumerate(self._test_items):
            if item.mask_path is None:
                continue
            mask = read_mask(item.mask_path)
            image_hw = _image_size(item.path)
            if mask.shape != image_hw:
                raise DatasetError(
                    f"{self.key}: mask {item.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"{item.path} is {image_hw[1]}x{image_hw[0]}"
                )
            if mask.shape != (size, size):
                mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
            masks[index] = mask
        return GroundTruth(
            ids=np.array(self.test_ids, dtype=str),
            labels=np.array([item.label for item in self._test_items], dtype=np.uint8),
            masks=masks,
            defect_types=np.array([item.defect_type for item in self._test_items], dtype=str),
        )
