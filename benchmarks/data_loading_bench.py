"""Data loading: our ``make_loader`` against a plain OpenCV loop over the same files.

Generates a 500-image synthetic category (400 train + 100 test), then times one full pass of
(a) a plain single-threaded loop, as a user would write it: ``cv2.imread`` + ``cvtColor`` +
``cv2.resize`` + per-image ImageNet normalisation, stacked into float32 (B, 3, S, S) batches;
(b) the same per-image function mapped over each batch by a thread pool with as many threads as
``make_loader`` uses; (c) ``make_loader(images, size=S, batch_size=B)`` (``num_workers=0``).
All three read the same files and yield tensors of the same shape and dtype. The passes are
interleaved (a, b, c, a, b, c, ...) so a change in the machine's load hits all sides alike;
each side's median wall-clock time is reported, with the ratios plain / ours (> 1: ours is
faster), and its median CPU time (all threads), which a busy machine disturbs much less: on a
saturated machine threads cannot buy more CPU, so the CPU ratio is what remains of the speed-up.

    .venv/bin/python benchmarks/data_loading_bench.py [--image-size 256] [--size 224] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algorithms.data import generate_suite, load_category, make_loader
from algorithms.data.core import ImageList
from algorithms.data.loaders import _threads

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
N_IMAGES = 500


def load_one(path: Path, size: int) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    image = (image.astype(np.float32) / 255.0 - MEAN) / STD
    return image.transpose(2, 0, 1)


def plain_opencv(paths: list[Path], size: int, batch_size: int) -> int:
    seen = 0
    for start in range(0, len(paths), batch_size):
        batch = [load_one(path, size) for path in paths[start : start + batch_size]]
        tensor = torch.from_numpy(np.stack(batch))
        seen += tensor.shape[0]
    return seen


def plain_opencv_threads(paths: list[Path], size: int, batch_size: int, threads: int) -> int:
    seen = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), batch_size):
            batch = list(pool.map(load_one, paths[start : start + batch_size], [size] * batch_size))
            tensor = torch.from_numpy(np.stack(batch))
            seen += tensor.shape[0]
    return seen


def ours(images: ImageList, size: int, batch_size: int) -> int:
    seen = 0
    for batch in make_loader(images, size=size, batch_size=batch_size):
        assert batch.dtype == torch.float32 and tuple(batch.shape[1:]) == (3, size, size)
        seen += batch.shape[0]
    return seen


def timed(fn, *args) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    assert fn(*args) == N_IMAGES
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=256, help="side of the generated images")
    parser.add_argument("--size", type=int, default=224, help="side the loaders resize to")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved passes per side (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    threads = _threads()
    with tempfile.TemporaryDirectory() as tmp:
        generate_suite(tmp, categories=["leather"], image_size=args.image_size, n_train=400, n_test_good=40,
                       n_test_defect=60, workers=1)  # fmt: skip
        category = load_category("synthetic/leather", roots={"synthetic": tmp})
        paths = list(category.train_images()._paths + category.test_images()._paths)
        images = ImageList(paths)
        ours(images, args.size, args.batch_size)  # warm the page cache for every side
        sides = {
            "plain OpenCV loop, 1 thread": (plain_opencv, paths, args.size, args.batch_size),
            f"plain OpenCV loop, {threads}-thread pool": (
                plain_opencv_threads,
                paths,
                args.size,
                args.batch_size,
                threads,
            ),
            "make_loader (num_workers=0)": (ours, images, args.size, args.batch_size),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, (fn, *fn_args) in sides.items():
                times[name].append(timed(fn, *fn_args))
        median = {name: statistics.median(wall for wall, _ in values) for name, values in times.items()}
        cpu = {name: statistics.median(used for _, used in values) for name, values in times.items()}
        print(
            f"{N_IMAGES} images {args.image_size}px -> {args.size}px, batch {args.batch_size}, "
            f"median of {args.repeats} interleaved passes; make_loader uses {threads} decoding thread(s)"
        )
        for name, seconds in median.items():
            print(f"{name:34s}: {seconds:.3f} s wall ({N_IMAGES / seconds:4.0f} img/s), {cpu[name]:.3f} s CPU")
        ours_name = "make_loader (num_workers=0)"
        for name in list(median)[:2]:
            print(
                f"ratio {name} / make_loader: {median[name] / median[ours_name]:.2f}x wall, "
                f"{cpu[name] / cpu[ours_name]:.2f}x CPU"
            )


if __name__ == "__main__":
    main()
