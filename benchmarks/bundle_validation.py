"""Bundle validation: our streaming reader vs the naive in-memory way, on the same archive.

The naive reference is what most graders do: ``zipfile.read`` each member, ``np.load`` it
(``allow_pickle=False``) and check it, holding every decompressed array at once. Ours reads
``.npy`` headers first and streams the data in bounded chunks. Both check the same things
(shapes, dtypes, finite values, ids); the script prints wall time and peak traced memory
(tracemalloc: Python and NumPy allocations) of each, and their ratios.

    .venv/bin/python benchmarks/bundle_validation.py [--categories 5] [--images 120] [--size 256]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from algorithms.bundle import write_bundle
from evaluation.bundles import BundleReader


def make_bundle(path: Path, *, categories: int, images: int, size: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    expected, payload = {}, {}
    for c in range(categories):
        key = f"synthetic/cat{c:02d}"
        ids = [f"test/x/{i:04d}.png" for i in range(images)]
        expected[key] = ids
        # blocky structure plus fine noise: compresses about as poorly as real float16 maps
        base = rng.random((images, size // 16, size // 16)).astype(np.float32)
        maps = np.repeat(np.repeat(base, 16, axis=1), 16, axis=2)
        maps = (maps + 0.05 * rng.random(maps.shape, dtype=np.float32)).astype(np.float16)
        payload[key] = {"ids": ids, "scores": rng.random(images).astype(np.float32), "maps": maps}
    write_bundle(path, method="bench", suite="synthetic", partial=True, categories=payload)
    return expected


def naive_validate(path: Path, expected: dict[str, list[str]]) -> None:
    with zipfile.ZipFile(path) as zf:
        arrays = {}
        for key, ids in expected.items():
            got = zf.read(f"{key}/ids.txt").decode().splitlines()
            assert sorted(got) == sorted(ids)
            scores = np.load(io.BytesIO(zf.read(f"{key}/scores.npy")), allow_pickle=False)
            maps = np.load(io.BytesIO(zf.read(f"{key}/maps.npy")), allow_pickle=False)
            assert scores.shape == (len(ids),) and maps.ndim == 3 and maps.shape[0] == len(ids)
            assert np.isfinite(scores).all() and np.isfinite(maps).all()
            arrays[key] = (scores, maps)  # what a grader keeps to score next


def ours_validate(path: Path, expected: dict[str, list[str]]) -> None:
    with BundleReader(path) as reader:
        reader.validate(suite="synthetic", expected_ids=expected)


def measure(fn, *args, repeats: int) -> tuple[float, float]:
    best, peak = float("inf"), 0
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return best, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=5)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.zip"
        expected = make_bundle(path, categories=args.categories, images=args.images, size=args.size)
        raw = args.categories * args.images * args.size * args.size * 2 / 2**20
        zipped = path.stat().st_size / 2**20
        print(f"bundle: {args.categories} categories x {args.images} maps of {args.size}^2 float16 = "
              f"{raw:.0f} MiB raw, {zipped:.1f} MiB zipped")  # fmt: skip
        t_naive, m_naive = measure(naive_validate, path, expected, repeats=args.repeats)
        t_ours, m_ours = measure(ours_validate, path, expected, repeats=args.repeats)
        print(f"naive (read all, np.load):   {t_naive:7.3f} s   peak {m_naive:8.1f} MiB")
        print(f"ours (headers first, stream): {t_ours:7.3f} s   peak {m_ours:8.1f} MiB")
        print(f"ratio ours/naive: time {t_ours / t_naive:.2f}x, peak memory {m_ours / m_naive:.3f}x")


if __name__ == "__main__":
    main()
