"""Builders for miniature dataset trees in the exact on-disk layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write an RGB (H, W, 3) or grey (H, W) uint8 array with OpenCV (RGB -> BGR on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), array), path
    return path


def coloured(value: int, size: tuple[int, int] = (20, 24)) -> np.ndarray:
    """An RGB image whose red channel encodes ``value`` (so tests can tell images apart)."""
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = value
    image[..., 1] = 7
    image[..., 2] = 200
    return image


def square_mask(size: tuple[int, int], top: int, left: int, side: int, on: int = 255) -> np.ndarray:
    mask = np.zeros(size, np.uint8)
    mask[top : top + side, left : left + side] = on
    return mask


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    """``mvtec/bottle`` (colour) and ``mvtec/grid`` (grey-scale) in the MVTec AD layout."""
    root = tmp_path / "mvtec"
    size = (24, 24)
    for category, grey in (("bottle", False), ("grid", True)):
        base = root / category
        for i in range(3):
            image = coloured(10 + i, size)
            write_image(base / "train" / "good" / f"{i:03d}.png", image[..., 0] if grey else image)
        for i in range(2):
            write_image(base / "test" / "good" / f"{i:03d}.png", coloured(50 + i, size))
        for d, defect in enumerate(("broken_large", "contamination")):
            for i in range(2):
                write_image(base / "test" / defect / f"{i:03d}.png", coloured(100 + 10 * d + i, size))
                mask = square_mask(size, top=2 + i, left=3 + 5 * d, side=4)
                write_image(base / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
        (base / "train" / "good" / ".DS_Store").write_bytes(b"\x00junk")
        (base / "test" / "good" / "notes.txt").write_text("not an image")
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    return root


@pytest.fixture
def visa_root(tmp_path: Path) -> Path:
    """``visa/candle`` and ``visa/pcb1`` as distributed, with ``split_csv/1cls.csv``; raw masks are 0/1."""
    root = tmp_path / "visa"
    size = (16, 18)
    rows = ["object,split,label,image,mask"]
    for category in ("candle", "pcb1"):
        images = root / category / "Data" / "Images"
        masks = root / category / "Data" / "Masks" / "Anomaly"
        for i in range(4):
            name = f"{i:04d}.JPG"
            write_image(images / "Normal" / name, coloured(20 + 40 * i, size))
            split = "train" if i < 3 else "test"
            rows.append(f"{category},{split},normal,{category}/Data/Images/Normal/{name},")
        for i in range(2):
            write_image(images / "Anomaly" / f"{i:03d}.JPG", coloured(200 + 20 * i, size))
            write_image(masks / f"{i:03d}.png", square_mask(size, top=1, left=2 + i, side=3, on=1))
            rows.append(
                f"{category},test,anomaly,{category}/Data/Images/Anomaly/{i:03d}.JPG,"
                f"{category}/Data/Masks/Anomaly/{i:03d}.png"
            )
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root
