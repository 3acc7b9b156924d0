"""The id attacks of issue 15 on the synthetic suite: do the test-image ids reveal the labels?

    .venv/bin/python benchmarks/id_prefix_attack.py [--image-size 64]

For each synthetic category (default sizes: 40 good + 60 defective test images) it scores every
test image by its id alone and prints the image AUROC: the prefix attack (anomalous unless the id
starts with ``test/good/``) on the old path ids and on the published opaque ids
(``algorithms.data.ids``), and the order attack (the position in the published list as the score).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from algorithms.data import SYNTHETIC_CATEGORIES, generate_suite, load_category, opaque_id_table
from evaluation.metrics import image_auroc


def _prefix(ids: list[str]) -> np.ndarray:
    return np.array([0.0 if i.startswith("test/good/") else 1.0 for i in ids])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--key", default="any-server-secret", help="the HMAC key (VADI_TEST_ID_KEY)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        generate_suite(root, seed=0, image_size=args.image_size, n_train=1, workers=1)
        order = []
        for name in SYNTHETIC_CATEGORIES:
            key = f"synthetic/{name}"
            table = opaque_id_table(args.key, key, load_category(key, roots={"synthetic": root}).test_ids)
            ids = list(table)
            paths = [table[i] for i in ids]
            labels = np.array([0 if p.startswith("test/good/") else 1 for p in paths])
            order.append(image_auroc(labels, np.arange(len(ids), dtype=float)))
            print(
                f"{key:26s} prefix attack: path ids {image_auroc(labels, _prefix(paths)):.3f}, published ids "
                f"{image_auroc(labels, _prefix(ids)):.3f}; order attack on published ids {order[-1]:.3f}"
            )
        print(f"order attack, mean over {len(order)} categories: {np.mean(order):.3f} (sd {np.std(order):.3f})")


if __name__ == "__main__":
    main()
