"""Readers for the on-disk layouts: MVTec AD (and anything shaped like it) and VisA's split csv.

Each reader scans and validates one category and returns a :class:`~algorithms.data.core.Category`;
no image is decoded here.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from .core import IMAGE_SUFFIXES, Category, DatasetError, TestItem, list_image_files
from .decode import MASK_RULE, MASK_SUFFIXES

__all__ = ["read_mvtec_layout", "read_visa_category", "read_visa_csv_layout"]

GOOD = "good"
VISA_SPLIT_CSV = PurePosixPath("split_csv") / "1cls.csv"
VISA_CSV_COLUMNS = ("object", "split", "label", "image", "mask")


def _find_mask(mask_dir: Path, stem: str, image: Path, key: str) -> Path | None:
    """``<stem>_mask.<ext>`` or ``<stem>.<ext>`` in ``mask_dir`` (any mask suffix, any case).

    A file with the right name but a suffix we do not read as a mask (``003_mask.jp2``) is an
    error naming it, not a missing mask; a ``.jpg`` mask is found here and refused when read.
    """
    if not mask_dir.is_dir():
        return None
    wanted = (f"{stem}_mask", stem)
    candidates: dict[str, Path] = {}
    others: list[Path] = []
    for path in sorted(mask_dir.iterdir(), key=lambda p: p.name):
        if path.stem not in wanted or path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() in MASK_SUFFIXES:
            candidates.setdefault(path.stem, path)
        else:
            others.append(path)
    for name in wanted:
        if name in candidates:
            return candidates[name]
    if others:
        raise DatasetError(
            f"{key}: the mask of {image} is {others[0]}, a format not read as a mask; {MASK_RULE} "
            f"(suffixes {', '.join(sorted(MASK_SUFFIXES - {'.jpg', '.jpeg'}))})"
        )
    return None


def read_mvtec_layout(key: str, root: Path, *, layout: str = "mvtec") -> Category:
    """Read a category in the MVTec AD layout.

    ``<root>/train/good/*``, ``<root>/test/<defect>/*`` (``good`` is normal) and masks
    ``<root>/ground_truth/<defect>/<stem>_mask.<ext>`` (or ``<stem>.<ext>``, as in VisA converted
    to this layout and in user folders).

    Parameters
    ----------
    key : str
        The category key, used in messages.
    root : Path
        The category root.
    layout : str, default "mvtec"
        Label recorded on the category.

    Returns
    -------
    Category

    Raises
    ------
    DatasetError
        If a folder is missing or empty, or an anomalous test image has no mask.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{key}: category folder {root} does not exist")
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise DatasetError(f"{key}: expected a training folder {train_dir} (defect-free images)")
    train_paths = list_image_files(train_dir)
    if not train_paths:
        raise DatasetError(f"{key}: training folder {train_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"{key}: expected a test folder {test_dir} with one sub-folder per defect type")
    defect_dirs = sorted(
        (p for p in test_dir.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )
    items: list[TestItem] = []
    for defect_dir in defect_dirs:
        defect = defect_dir.name
        mask_dir = root / "ground_truth" / defect
        for path in list_image_files(defect_dir):
            test_id = path.relative_to(root).as_posix()
            if defect == GOOD:
                items.append(TestItem(test_id, path, 0, GOOD, None))
                continue
            mask_path = _find_mask(mask_dir, path.stem, path, key)
            if mask_path is None:
                raise DatasetError(
                    f"{key}: test image {path} has no mask: expected {mask_dir / (path.stem + '_mask.png')}"
                    f" (or {path.stem}.png)"
                )
            items.append(TestItem(test_id, path, 1, defect, mask_path))
    if not items:
        raise DatasetError(f"{key}: test folder {test_dir} holds no images in its sub-folders")
    return Category(key, root, train_paths=train_paths, test_items=items, layout=layout)


def read_visa_csv_layout(key: str, root: Path, category: str, *, csv_path: Path | None = None) -> Category:
    """Read one VisA category as distributed, split by ``<root>/split_csv/1cls.csv``.

    Rows have columns ``object, split, label, image, mask``; ``label`` is ``normal`` or
    ``anomaly``; paths are relative to ``root``. Test ids are paths relative to the category
    root (``<root>/<category>``), e.g. ``Data/Images/Anomaly/000.JPG``.

    Raises
    ------
    DatasetError
        If the csv is missing or malformed, or a listed image or mask is missing.
    """
    root = Path(root)
    csv_path = Path(csv_path) if csv_path is not None else root / VISA_SPLIT_CSV
    if not csv_path.is_file():
        raise DatasetError(f"{key}: expected the VisA split file {csv_path}")
    category_root = root / category
    train_paths: list[Path] = []
    items: list[TestItem] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().lower() for name in (reader.fieldnames or [])]
        missing = [name for name in VISA_CSV_COLUMNS if name not in header]
        if missing:
            raise DatasetError(f"{key}: {csv_path} lacks column(s) {', '.join(missing)} (header: {header})")
        for line, raw in enumerate(reader, start=2):
            row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if row["object"] != category:
                continue
            split, label = row["split"].lower(), row["label"].lower()
            if label not in ("normal", "anomaly"):
                raise DatasetError(f"{key}: {csv_path} line {line}: label {row['label']!r} is not normal/anomaly")
            if split not in ("train", "test"):
                raise DatasetError(f"{key}: {csv_path} line {line}: split {row['split']!r} is not train/test")
            if not row["image"]:
                raise DatasetError(f"{key}: {csv_path} line {line}: empty image path")
            image = root / row["image"]
            if not image.is_file():
                raise DatasetError(f"{key}: {csv_path} line {line}: image {image} does not exist")
            if split == "train":
                if label != "normal":
                    raise DatasetError(f"{key}: {csv_path} line {line}: training image {image} is labelled anomaly")
                train_paths.append(image)
                continue
            try:
                test_id = image.relative_to(category_root).as_posix()
            except ValueError:
                raise DatasetError(
                    f"{key}: {csv_path} line {line}: image {image} is not inside {category_root}"
                ) from None
            if label == "normal":
                items.append(TestItem(test_id, image, 0, "good", None))
                continue
            if not row["mask"]:
                raise DatasetError(f"{key}: {csv_path} line {line}: anomalous image {image} has no mask path")
            mask = root / row["mask"]
            if not mask.is_file():
                raise DatasetError(f"{key}: {csv_path} line {line}: mask {mask} does not exist")
            items.append(TestItem(test_id, image, 1, "anomaly", mask))
    if not train_paths:
        raise DatasetError(f"{key}: {csv_path} lists no training images for object {category!r}")
    if not items:
        raise DatasetError(f"{key}: {csv_path} lists no test images for object {category!r}")
    return Category(key, category_root, train_paths=sorted(train_paths), test_items=items, layout="visa-csv")


def read_visa_category(key: str, root: Path, category: str) -> Category:
    """Read a VisA category from either layout, detecting which one ``root`` has.

    ``<root>/split_csv/1cls.csv`` means VisA as distributed; ``<root>/<category>/train/good``
    means VisA converted to the MVTec layout (spot-diff's ``1cls`` output).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{key}: VisA root {root} does not exist")
    csv_path = root / VISA_SPLIT_CSV
    if csv_path.is_file():
        return read_visa_csv_layout(key, root, category, csv_path=csv_path)
    converted = root / category / "train" / GOOD
    if converted.is_dir():
        return read_mvtec_layout(key, root / category, layout="visa-1cls")
    raise DatasetError(
        f"{key}: {root} is not a VisA root: expected {csv_path} (VisA as distributed) "
        f"or {converted} (VisA converted to the MVTec layout)"
    )
