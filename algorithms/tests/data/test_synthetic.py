"""The synthetic industrial suite: determinism, exact masks, layout, CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from algorithms.data import SYNTHETIC_CATEGORIES, generate_suite, load_category
from algorithms.data.synthetic import DEFECT_TYPES, render_sample

ROOT = Path(__file__).resolve().parents[3]


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def test_categories_and_defect_types():
    assert set(SYNTHETIC_CATEGORIES) == set(DEFECT_TYPES)
    assert {"woven", "grain", "grid", "leather", "brushed_metal", "washer", "screw", "pill", "pcb"} == set(
        SYNTHETIC_CATEGORIES
    )
    assert all(2 <= len(types) <= 4 for types in DEFECT_TYPES.values())


def test_generation_is_byte_identical_for_a_seed(tmp_path):
    kwargs = dict(categories=["pcb", "synthetic/leather"], image_size=64, n_train=3, n_test_good=2, n_test_defect=4)
    keys = generate_suite(tmp_path / "a", seed=7, workers=1, **kwargs)
    assert keys == ["synthetic/pcb", "synthetic/leather"]
    generate_suite(tmp_path / "b", seed=7, workers=2, **kwargs)
    generate_suite(tmp_path / "c", seed=8, workers=1, **kwargs)
    first, second, other = (_digests(tmp_path / n) for n in "abc")
    assert len(first) == 2 * (3 + 2 + 4 + 4)  # images + masks
    assert first == second
    assert first != other


def test_every_mask_is_exactly_the_changed_pixels(tmp_path):
    size = 96
    generate_suite(tmp_path, seed=3, image_size=size, n_train=2, n_test_good=2, n_test_defect=8, workers=1)
    for name in SYNTHETIC_CATEGORIES:
        folder = tmp_path / name
        types = DEFECT_TYPES[name]
        for j in range(8):
            defect = types[j % len(types)]
            k = j // len(types)
            written = cv2.cvtColor(cv2.imread(str(folder / "test" / defect / f"{k:03d}.png")), cv2.COLOR_BGR2RGB)
            mask = cv2.imread(str(folder / "ground_truth" / defect / f"{k:03d}_mask.png"), cv2.IMREAD_UNCHANGED)
            clean = render_sample(name, seed=3, split="test_defect", index=j, image_size=size, clean=True).image
            changed = (written != clean).any(axis=2)
            assert set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(mask > 0, changed, err_msg=f"{name}/{defect}/{k:03d}")
            assert changed.sum() >= 4
        good = cv2.cvtColor(cv2.imread(str(folder / "train" / "good" / "001.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(good, render_sample(name, seed=3, split="train", index=1, image_size=size).image)


def test_good_samples_vary_and_some_defects_are_thin_subtle_or_multiple():
    for name in ("woven", "washer"):
        a = render_sample(name, seed=0, split="train", index=0, image_size=64).image
        b = render_sample(name, seed=0, split="train", index=1, image_size=64).image
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 2  # lighting / position / phase differ
    areas, contrasts = [], []
    for j in range(60):
        sample = render_sample("brushed_metal", seed=0, split="test_defect", index=j, image_size=128)
        clean = render_sample("brushed_metal", seed=0, split="test_defect", index=j, image_size=128, clean=True)
        m = sample.mask.astype(bool)
        areas.append(int(m.sum()))
        contrasts.append(float(np.abs(sample.image[m].astype(int) - clean.image[m].astype(int)).mean()))
        if sample.defect_type == "scratch":
            n_labels = cv2.connectedComponents(sample.mask)[0] - 1
            assert n_labels >= 1
    assert min(contrasts) < 10 < max(contrasts)  # subtle and obvious defects
    assert min(areas) < 40 and max(areas) > 400  # several scales


def test_suite_loads_through_the_mvtec_reader(tmp_path):
    generate_suite(tmp_path, categories=["screw"], image_size=64, n_train=4, n_test_good=3, n_test_defect=6, workers=1)
    category = load_category("synthetic/screw", roots={"synthetic": tmp_path})
    assert category.n_train == 4 and category.n_test == 9
    truth = category.ground_truth(size=64)
    assert int(truth.labels.sum()) == 6
    assert {str(t) for t in truth.defect_types[truth.labels == 1]} == set(DEFECT_TYPES["screw"])
    assert all(truth.masks[i].sum() > 0 for i in np.flatnonzero(truth.labels))


def test_refuses_to_overwrite_foreign_folder_and_validates(tmp_path):
    (tmp_path / "woven").mkdir()
    (tmp_path / "woven" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not written by this generator"):
        generate_suite(tmp_path, categories=["woven"], image_size=32, n_train=1, n_test_good=0, n_test_defect=1)
    assert (tmp_path / "woven" / "mine.txt").exists()
    with pytest.raises(ValueError, match="unknown synthetic category 'gears'"):
        generate_suite(tmp_path, categories=["gears"])
    with pytest.raises(ValueError, match="n_train must be"):
        generate_suite(tmp_path, categories=["woven"], n_train=0)


def test_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "algorithms.data.synthetic", "--out", str(tmp_path), "--seed", "1",
         "--categories", "grid", "--image-size", "48", "--n-train", "2", "--n-test-good", "1", "--n-test-defect", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "synthetic/grid" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "grid" / "test").iterdir()) == ["contamination", "good", "missing"]


def test_every_category_has_a_difficulty_and_easy_defects_are_clearly_visible():
    from algorithms.data.synthetic import DIFFICULTY, EASY_CATEGORIES, HARD_CATEGORIES

    assert set(DIFFICULTY) == set(SYNTHETIC_CATEGORIES) and set(DIFFICULTY.values()) == {"easy", "hard"}
    assert set(EASY_CATEGORIES) | set(HARD_CATEGORIES) == set(SYNTHETIC_CATEGORIES)
    assert len(EASY_CATEGORIES) >= 4 and len(HARD_CATEGORIES) >= 3
    for name in EASY_CATEGORIES:
        for j in range(2 * len(DEFECT_TYPES[name])):
            sample = render_sample(name, seed=0, split="test_defect", index=j, image_size=128)
            clean = render_sample(name, seed=0, split="test_defect", index=j, image_size=128, clean=True)
            change = np.abs(sample.image.astype(int) - clean.image.astype(int)).max(axis=2)
            strong = change >= 24
            assert strong.sum() >= 16, f"{name}/{sample.defect_type}/{j}"  # >= 64 px at 256 px
            # at least 2 px wide at 128 px: something survives an erosion with a 2 x 2 element
            assert cv2.erode(strong.astype(np.uint8), np.ones((2, 2), np.uint8)).any(), f"{name}/{j}"


def test_defects_survive_the_nearest_resize_to_the_evaluation_size():
    for name in ("grid", "grain"):  # thin (1 px) defects of a hard and an easy category
        for j in range(3):
            mask = render_sample(name, seed=0, split="test_defect", index=j, image_size=600).mask
            assert cv2.resize(mask, (256, 256), interpolation=cv2.INTER_NEAREST).any(), f"{name}/{j}"
