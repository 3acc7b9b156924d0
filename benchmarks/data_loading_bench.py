"""Data loading: our ``make_loader`` against a plain OpenCV loop over the same files.

Generates a 500-image synthetic category (400 train + 100 test), then times one full pass of
(a) ``make_loader(category.train_images() + test ...)`` and (b) a plain loop doing
``cv2.imread`` + ``cvtColor`` + ``cv2.resize`` + per-image ImageNet normalisation into float32
(B, 3, S, S) batches. Both produce the same tensors' shape and dtype; prints timings and ratio.

    .venv/bin/python benchmarks/data_loading_bench.py [--image-size 256] [--size 224] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algorithms.data import generate_suite, load_category, make_loader
from algorithms.data.core import ImageList

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def plain_opencv(paths: list[Path], size: int, batch_size: int) -> int:
    seen = 0
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start : start + batch_size]:
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
            image = (image.astype(np.float32) / 255.0 - MEAN) / STD
            batch.append(image.transpose(2, 0, 1))
        tensor = torch.from_numpy(np.stack(batch))
        seen += tensor.shape[0]
    return seen


def ours(images: ImageList, size: int, batch_size: int, num_workers: int) -> int:
    return sum(
        batch.shape[0] for batch in make_loader(images, size=size, batch_size=batch_size, num_workers=num_workers)
    )


def best_of(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        assert fn(*args) == 500
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=256, help="side of the generated images")
    parser.add_argument("--size", type=int, default=224, help="side the loaders resize to")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        generate_suite(tmp, categories=["leather"], image_size=args.image_size, n_train=400, n_test_good=40,
                       n_test_defect=60, workers=1)  # fmt: skip
        category = load_category("synthetic/leather", roots={"synthetic": tmp})
        paths = list(category.train_images()._paths + category.test_images()._paths)
        images = ImageList(paths)
        ours(images, args.size, args.batch_size, 0)  # warm the page cache for both sides
        plain = best_of(args.repeats, plain_opencv, paths, args.size, args.batch_size)
        mine = best_of(args.repeats, ours, images, args.size, args.batch_size, 0)
        print(f"500 images {args.image_size}px -> {args.size}px, batch {args.batch_size}, best of {args.repeats}")
        print(f"plain OpenCV loop     : {plain:.3f} s  ({500 / plain:.0f} img/s)")
        print(f"make_loader (workers=0): {mine:.3f} s  ({500 / mine:.0f} img/s)")
        print(f"speed ratio (plain / ours): {plain / mine:.2f}x")


if __name__ == "__main__":
    main()
