"""Cost of validating ground truth when read, and of EXIF orientation when decoding images.

Builds one MVTec-AD-sized category on disk (1024 x 1024 PNG images; ``--anomalous`` defective
test images with 0/255 PNG masks holding a few blobs, ``--good`` good test images, 4 training
images) and times, interleaved (A, B, A, B, ...) so that a change of the machine's load hits both
sides alike, the median of ``--repeats`` passes of:

* ground truth: the previous reader (``cv2.imread`` + ``> 0`` + Pillow header size + nearest
  resize to 256, no validation) against ``load_category(...).ground_truth()`` (a fresh category
  each pass: the format probe, two-level check, oriented sizes, non-empty check);
* category load: ``load_category`` alone (scans folders; unchanged by the validation, which runs
  in ``ground_truth``), for scale;
* image decoding: the previous ``read_image_bgr`` (``cv2.imread`` and channel conversion) against
  the current one (plus the EXIF orientation read from the header), over every image.

    .venv/bin/python benchmarks/ground_truth_bench.py [--anomalous 60] [--good 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algorithms.data import load_category
from algorithms.data.decode import read_image_bgr

SIDE = 1024
EVAL = 256


def build(root: Path, n_anomalous: int, n_good: int) -> Path:
    rng = np.random.default_rng(0)
    base = root / "bottle"
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    smooth = ((np.sin(xx / 37.0) + np.cos(yy / 53.0)) * 60 + 128).astype(np.uint8)

    def image(k: int) -> np.ndarray:
        noise = rng.integers(0, 12, (SIDE, SIDE), dtype=np.uint8)
        return np.dstack([smooth + noise, smooth, (smooth + k) % 255])

    for folder, n in (("train/good", 4), ("test/good", n_good)):
        (base / folder).mkdir(parents=True)
        for k in range(n):
            cv2.imwrite(str(base / folder / f"{k:03d}.png"), image(k))
    (base / "test/crack").mkdir(parents=True)
    (base / "ground_truth/crack").mkdir(parents=True)
    for k in range(n_anomalous):
        cv2.imwrite(str(base / "test/crack" / f"{k:03d}.png"), image(k))
        mask = np.zeros((SIDE, SIDE), np.uint8)
        for _ in range(3):
            cy, cx = rng.integers(100, SIDE - 100, 2)
            cv2.ellipse(mask, (int(cx), int(cy)), (int(rng.integers(5, 80)), int(rng.integers(5, 40))),
                        float(rng.uniform(0, 180)), 0, 360, 255, -1)  # fmt: skip
        cv2.imwrite(str(base / "ground_truth/crack" / f"{k:03d}_mask.png"), mask)
    return root


def previous_ground_truth(category) -> np.ndarray:
    """The reader before validation: any non-zero pixel is defect, sizes from Pillow headers."""
    from PIL import Image

    items = category._test_items
    masks = np.zeros((len(items), EVAL, EVAL), np.uint8)
    for index, item in enumerate(items):
        if item.mask_path is None:
            continue
        array = cv2.imread(str(item.mask_path), cv2.IMREAD_UNCHANGED)
        if array.ndim == 3:
            array = array[:, :, :3].max(axis=2)
        mask = (array > 0).astype(np.uint8)
        with Image.open(item.path) as image:
            assert mask.shape == image.size[::-1]
        masks[index] = cv2.resize(mask, (EVAL, EVAL), interpolation=cv2.INTER_NEAREST_EXACT)
    return masks


def previous_read_image_bgr(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return array if array.ndim == 3 and array.shape[2] == 3 else cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anomalous", type=int, default=60, help="defective test images (with masks)")
    parser.add_argument("--good", type=int, default=20, help="good test images")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved passes per side (median reported)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"mvtec": build(Path(tmp), args.anomalous, args.good)}
        category = load_category("mvtec/bottle", roots=roots)
        np.testing.assert_array_equal(previous_ground_truth(category), category.ground_truth().masks)  # same masks
        paths = [item.path for item in category._test_items] + list(category._train_paths)
        sides = {
            "ground truth, previous reader": lambda: previous_ground_truth(load_category("mvtec/bottle", roots=roots)),
            "ground truth, validated": lambda: load_category("mvtec/bottle", roots=roots).ground_truth(),
            "load_category alone": lambda: load_category("mvtec/bottle", roots=roots),
            "images, previous decode": lambda: [previous_read_image_bgr(p) for p in paths],
            "images, decode + EXIF orientation": lambda: [read_image_bgr(p) for p in paths],
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, fn in sides.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"{args.anomalous} masks + {args.anomalous + args.good} test images of {SIDE}x{SIDE} PNG, "
              f"{len(paths)} images decoded; median of {args.repeats} interleaved passes")  # fmt: skip
        for name, seconds in median.items():
            print(f"{name:36s}: {seconds * 1e3:8.1f} ms")
        gt_new, gt_old = median["ground truth, validated"], median["ground truth, previous reader"]
        img_new, img_old = median["images, decode + EXIF orientation"], median["images, previous decode"]
        print(f"ratio validated / previous ground truth: {gt_new / gt_old:.3f}x "
              f"({(gt_new - gt_old) / args.anomalous * 1e3:+.2f} ms per mask)")  # fmt: skip
        print(f"ratio decode with / without orientation: {img_new / img_old:.3f}x "
              f"({(img_new - img_old) / len(paths) * 1e3:+.3f} ms per image)")  # fmt: skip


if __name__ == "__main__":
    main()
