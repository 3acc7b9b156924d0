"""The blind suite: categories generated on this server with a secret seed, images out, ground truth never.

``blind_suite_generate`` writes the categories of ``algorithms.data.BLIND_CATEGORIES`` with the
synthetic generator (``docs/synthetic-suite.md``) and ``VADI_BLIND_SEED`` under the ``blind``
dataset root, then syncs the catalog (opaque ids; ``Dataset.ground_truth_public`` False, so the
id -> file-name table is never published). ``blind_archive`` builds the downloads users get: per
category one zip of the training images and one of the test images, each test image named
``<opaque id>.png`` and the members sorted by name, with fixed timestamps, so neither a name,
the order nor a date says anything about a label. Masks and labels stay on disk, read only by the
scoring and benchmark workers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings

from ..models import Category
from .catalog import catalog_sync

logger = logging.getLogger(__name__)

__all__ = ["BLIND_SPLITS", "BlindSuiteError", "blind_archive", "blind_root", "blind_suite_generate"]

BLIND_SUITE = "blind"
BLIND_SPLITS = ("train", "test")
MARKER = ".vadi-blind.json"
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class BlindSuiteError(ValueError):
    """A blind category or split that does not exist, or a suite not generated yet."""


def blind_root() -> Path:
    return Path(settings.DATASET_ROOTS[BLIND_SUITE])


def _downloads_dir() -> Path:
    return Path(settings.VAR_DIR) / "blind-downloads"


def blind_suite_generate(
    *,
    image_size: int | None = None,
    n_train: int | None = None,
    n_test_good: int | None = None,
    n_test_defect: int | None = None,
    force: bool = False,
    workers: int | None = None,
) -> list[str]:
    """Generate the blind suite (when missing, or ``force``) and sync its catalog rows; returns its keys.

    Sizes default to the ``VADI_BLIND_*`` settings; the seed is always ``VADI_BLIND_SEED`` (never
    written anywhere but the settings). Regenerating deletes the cached downloads.
    """
    from algorithms.data import BLIND_CATEGORIES, generate_suite

    sizes = {
        "image_size": image_size or settings.VADI_BLIND_IMAGE_SIZE,
        "n_train": n_train or settings.VADI_BLIND_N_TRAIN,
        "n_test_good": n_test_good or settings.VADI_BLIND_N_TEST_GOOD,
        "n_test_defect": n_test_defect or settings.VADI_BLIND_N_TEST_DEFECT,
    }
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise BlindSuiteError(f"{name} must be a positive integer, got {value!r}")
    root = blind_root()
    present = all((root / name / "train").is_dir() and (root / name / "test").is_dir() for name in BLIND_CATEGORIES)
    if force or not present:
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        generate_suite(
            root, seed=int(settings.VADI_BLIND_SEED), categories=list(BLIND_CATEGORIES), workers=workers, **sizes
        )
        (root / MARKER).write_text(json.dumps(sizes, indent=2))  # the sizes only, never the seed
        shutil.rmtree(_downloads_dir(), ignore_errors=True)
        logger.info("blind suite generated in %s: %s", root, sizes)
    catalog_sync(suites=[BLIND_SUITE])
    return [f"{BLIND_SUITE}/{name}" for name in BLIND_CATEGORIES]


def _blind_category(key: str) -> Category:
    category = Category.objects.select_related("dataset").filter(key=key, suites__key=BLIND_SUITE).first()
    if category is None:
        raise BlindSuiteError(f"no blind category {key!r}")
    if not category.test_files:
        raise BlindSuiteError(f"the blind category {key!r} has not been generated on this server yet")
    return category


def blind_archive(*, key: str, split: str) -> Path:
    """The zip of one blind category's ``train`` or ``test`` images (built once, then served from disk).

    ``train``: ``<name>/train/000.png, ...`` (defect-free images). ``test``: ``<name>/test/<id>.png``
    for every published id, sorted by id; the id of an image is its file name without ``.png``.
    The images are the generator's PNG files, byte for byte (they carry no metadata).
    """
    if split not in BLIND_SPLITS:
        raise BlindSuiteError(f"split must be one of {', '.join(BLIND_SPLITS)}, got {split!r}")
    category = _blind_category(key)
    name = key.partition("/")[2]
    version = category.test_ids[0][:12]  # changes when the suite (or the id key) changes
    out = _downloads_dir() / f"{name}-{split}-{version}.zip"
    if out.is_file():
        return out
    source = blind_root() / name
    if split == "train":
        from algorithms.data.core import list_image_files

        files = list_image_files(source / "train" / "good")
        members = [(f"{name}/train/{i:03d}{path.suffix.lower()}", path) for i, path in enumerate(files)]
    else:
        members = [
            (f"{name}/test/{image_id}.png", source / path) for image_id, path in sorted(category.test_files.items())
        ]
    if not members:
        raise BlindSuiteError(f"the blind category {key!r} has no {split} images on this server")
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(tmp_name, "w", compression=zipfile.ZIP_STORED) as zf:
            for member, path in members:
                info = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out
