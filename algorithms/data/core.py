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

from .decode import read_image, read_image_bgr, read_mask, read_mask_file
from .errors import DatasetError
from .orientation import image_header, oriented_size

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


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names an image file we read (hidden files such as ``.DS_Store`` are not)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def list_image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name; non-image files are ignored."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


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


def _image_size(path: Path) -> tuple[tuple[int, int], tuple[int, int], int]:
    """``(upright (H, W), stored (H, W), EXIF orientation)`` of an image, from its header only.

    The upright size is what :func:`read_image` returns (see :mod:`algorithms.data.orientation`).
    """
    try:
        _, height, width, orientation = image_header(path)
    except Exception as exc:  # Pillow cannot parse the header: decode with OpenCV (which ignores EXIF)
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise DatasetError(f"{path}: cannot read image header ({exc})") from exc
        height, width = array.shape[:2]
        orientation = 1
    return oriented_size(height, width, orientation), (height, width), orientation


def _size_text(upright: tuple[int, int], stored: tuple[int, int], orientation: int) -> str:
    text = f"{upright[1]}x{upright[0]}"
    if orientation != 1:
        text += f" (after its EXIF orientation {orientation}; stored as {stored[1]}x{stored[0]})"
    return text


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


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
        self._ground_truths: dict[int, GroundTruth] = {}

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

        Every mask is read and validated here, once per category and size (the result is kept;
        its arrays are read-only): lossless, two levels (or a raw VisA class map), alpha read when
        it holds the shape, EXIF orientation applied (rules: :mod:`algorithms.data.decode`); the
        upright size equal to its image's; at least one defect pixel for an anomalous image.

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
            Naming the mask (and its image) and what was found: an unreadable, lossy or
            grey-level mask, a size different from its image's, or an anomalous image whose mask
            has no defect pixel.
        """
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        size = int(size)
        cached = self._ground_truths.get(size)
        if cached is not None:
            return cached
        n = len(self._test_items)
        masks = np.zeros((n, size, size), dtype=np.uint8)
        class_ids = self.layout == "visa-csv"  # raw VisA masks hold defect-class ids (decode.py)
        for index, item in enumerate(self._test_items):
            if item.mask_path is None:
                continue
            read = read_mask_file(item.mask_path, class_ids=class_ids)
            mask = read.mask
            image_hw, image_stored, image_orientation = _image_size(item.path)
            if mask.shape != image_hw:
                mask_text = _size_text(mask.shape, read.stored_hw, read.orientation)
                image_text = _size_text(image_hw, image_stored, image_orientation)
                raise DatasetError(
                    f"{self.key}: mask {item.mask_path} is {mask_text} but its image {item.path} is {image_text}; "
                    "a mask must have its image's size"
                )
            if item.label == 1 and not mask.any():
                raise DatasetError(
                    f"{self.key}: anomalous test image {item.path} has no defect pixel in its mask "
                    f"{item.mask_path} ({read.format}, all background); draw the defect, or move the "
                    "image to the good test images"
                )
            if mask.shape != (size, size):
                mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
            masks[index] = mask
        ground_truth = GroundTruth(
            ids=_read_only(np.array(self.test_ids, dtype=str)),
            labels=_read_only(np.array([item.label for item in self._test_items], dtype=np.uint8)),
            masks=_read_only(masks),
            defect_types=_read_only(np.array([item.defect_type for item in self._test_items], dtype=str)),
        )
        self._ground_truths[size] = ground_truth
        return ground_truth
