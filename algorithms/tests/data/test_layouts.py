"""Real on-disk layouts: MVTec AD, VisA (split csv and converted), user folders; roots and errors."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from algorithms.data import (
    SUITES,
    Category,
    DatasetError,
    dataset_roots,
    list_categories,
    load_category,
    read_image,
)

from .conftest import coloured, square_mask, write_image


def _sha1_order(ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())


class TestSuites:
    def test_suite_sizes_and_keys(self):
        assert len(list_categories("mvtec")) == 15
        assert len(list_categories("visa")) == 12
        assert list_categories("vadi") == list_categories("mvtec") + list_categories("visa")
        assert "mvtec/metal_nut" in SUITES["mvtec"] and "visa/pipe_fryum" in SUITES["visa"]
        assert len(list_categories("synthetic")) == 9 and "synthetic/brushed_metal" in SUITES["synthetic"]

    def test_unknown_suite_and_keys(self, tmp_path):
        with pytest.raises(DatasetError, match="unknown suite 'kitti'"):
            list_categories("kitti")
        with pytest.raises(DatasetError, match="unknown mvtec category"):
            load_category("mvtec/bolt", roots={"mvtec": tmp_path})
        with pytest.raises(DatasetError, match="must look like"):
            load_category("bottle")
        with pytest.raises(DatasetError, match="not a valid folder name"):
            load_category("folder/..", roots={"folder": tmp_path})


class TestRoots:
    def test_precedence_override_env_default(self, monkeypatch, tmp_path):
        for name in ("VADI_DATA_ROOT", "VADI_MVTEC_ROOT", "VADI_VISA_ROOT", "VADI_SYNTHETIC_ROOT", "VADI_FOLDER_ROOT",
                     "VADI_BLIND_ROOT"):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
        assert dataset_roots()["visa"] == Path("var/data/visa")
        monkeypatch.setenv("VADI_DATA_ROOT", str(tmp_path / "base"))
        monkeypatch.setenv("VADI_MVTEC_ROOT", str(tmp_path / "mv"))
        roots = dataset_roots({"synthetic": tmp_path / "syn"})
        assert roots == {
            "mvtec": tmp_path / "mv",
            "visa": tmp_path / "base" / "visa",
            "synthetic": tmp_path / "syn",
            "folder": tmp_path / "base" / "folder",
            "blind": tmp_path / "base" / "blind",
        }
        with pytest.raises(DatasetError, match="unknown dataset"):
            dataset_roots({"kolektor": tmp_path})

    def test_env_root_is_used_by_load_category(self, monkeypatch, mvtec_root):
        monkeypatch.setenv("VADI_MVTEC_ROOT", str(mvtec_root))
        assert load_category("mvtec/bottle").n_train == 3

    def test_missing_root_names_path_and_variable(self, tmp_path):
        missing = tmp_path / "nowhere"
        with pytest.raises(DatasetError) as info:
            load_category("mvtec/bottle", roots={"mvtec": missing})
        assert str(missing) in str(info.value) and "VADI_MVTEC_ROOT" in str(info.value)


class TestMVTec:
    def test_counts_ids_labels_and_order(self, mvtec_root):
        category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        assert isinstance(category, Category) and category.key == "mvtec/bottle"
        assert len(category.train_images()) == 3  # .DS_Store ignored
        expected = {"test/good/000.png", "test/good/001.png"} | {
            f"test/{d}/{i:03d}.png" for d in ("broken_large", "contamination") for i in range(2)
        }
        assert set(category.test_ids) == expected  # notes.txt ignored
        assert category.test_ids == _sha1_order(sorted(expected))
        truth = category.ground_truth(size=24)
        assert list(truth.ids) == category.test_ids
        assert [int(v) for v in truth.labels] == [0 if "/good/" in i else 1 for i in category.test_ids]
        assert truth.labels.dtype == np.uint8 and truth.masks.dtype == np.uint8
        assert set(np.unique(truth.masks)) <= {0, 1}

    def test_images_match_ids_and_masks_align(self, mvtec_root):
        category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        images = category.test_images()
        truth = category.ground_truth(size=24)
        half = category.ground_truth(size=12)
        assert len(images) == len(category.test_ids) == truth.masks.shape[0]
        for index, test_id in enumerate(category.test_ids):
            image = images[index]
            assert image.shape == (24, 24, 3) and image.dtype == np.uint8
            on_disk = read_image(mvtec_root / "bottle" / test_id)
            np.testing.assert_array_equal(image, on_disk)
            if "/good/" in test_id:
                assert truth.masks[index].sum() == 0
                continue
            defect, stem = test_id.split("/")[1], int(test_id[-7:-4])
            d = ("broken_large", "contamination").index(defect)
            raw = square_mask((24, 24), top=2 + stem, left=3 + 5 * d, side=4) // 255
            np.testing.assert_array_equal(truth.masks[index], raw)
            # Nearest (pixel-centre) downscale by 2 keeps the odd rows and columns.
            np.testing.assert_array_equal(half.masks[index], raw[1::2, 1::2])

    def test_rgb_channel_order(self, mvtec_root):
        category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        first = category.train_images()[0]
        assert tuple(first[0, 0]) == (10, 7, 200)  # red channel encodes the value

    def test_grey_scale_becomes_three_channels(self, mvtec_root):
        category = load_category("mvtec/grid", roots={"mvtec": mvtec_root})
        image = category.train_images()[1]
        assert image.shape == (24, 24, 3)
        assert (image == 11).all()

    def test_ground_truth_native_size(self, mvtec_root):
        category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        truth = category.ground_truth(size=8)
        assert truth.masks.shape == (6, 8, 8)
        with pytest.raises(ValueError, match="size must be a positive integer"):
            category.ground_truth(size=0)

    def test_missing_mask_names_image_and_expected_mask(self, mvtec_root):
        (mvtec_root / "bottle" / "ground_truth" / "contamination" / "001_mask.png").unlink()
        with pytest.raises(DatasetError) as info:
            load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        message = str(info.value)
        assert str(mvtec_root / "bottle" / "test" / "contamination" / "001.png") in message
        assert "001_mask.png" in message

    def test_empty_train_folder(self, mvtec_root):
        for path in (mvtec_root / "bottle" / "train" / "good").glob("*.png"):
            path.unlink()
        with pytest.raises(DatasetError, match="holds no images") as info:
            load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        assert str(mvtec_root / "bottle" / "train" / "good") in str(info.value)

    def test_missing_category_and_test_folder(self, mvtec_root):
        with pytest.raises(DatasetError, match="does not exist") as info:
            load_category("mvtec/cable", roots={"mvtec": mvtec_root})
        assert str(mvtec_root / "cable") in str(info.value)
        shutil.rmtree(mvtec_root / "grid" / "test")
        with pytest.raises(DatasetError, match="expected a test folder"):
            load_category("mvtec/grid", roots={"mvtec": mvtec_root})

    def test_mask_size_mismatch(self, mvtec_root):
        write_image(
            mvtec_root / "bottle" / "ground_truth" / "contamination" / "000_mask.png", np.zeros((10, 10), np.uint8)
        )
        category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        with pytest.raises(DatasetError, match=r"000_mask\.png is 10x10 but its image"):
            category.ground_truth()

    def test_corrupt_image_names_path(self, mvtec_root):
        bad = mvtec_root / "bottle" / "train" / "good" / "000.png"
        bad.write_bytes(b"not a png")
        category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
        with pytest.raises(DatasetError, match="could not decode") as info:
            category.train_images()[0]
        assert str(bad) in str(info.value)


class TestVisA:
    def test_split_csv_layout(self, visa_root):
        category = load_category("visa/candle", roots={"visa": visa_root})
        assert category.layout == "visa-csv"
        assert category.n_train == 3 and category.n_test == 3
        assert set(category.test_ids) == {
            "Data/Images/Normal/0003.JPG",
            "Data/Images/Anomaly/000.JPG",
            "Data/Images/Anomaly/001.JPG",
        }
        truth = category.ground_truth(size=18)
        by_id = dict(zip(truth.ids, range(len(truth.ids))))
        assert truth.labels[by_id["Data/Images/Normal/0003.JPG"]] == 0
        anomaly = by_id["Data/Images/Anomaly/001.JPG"]
        assert truth.labels[anomaly] == 1
        # Raw VisA masks hold 1, not 255: binarised with > 0.
        assert set(np.unique(truth.masks[anomaly])) == {0, 1}
        cols = np.nonzero(truth.masks[anomaly].any(axis=0))[0]
        assert (cols.min(), cols.max()) == (3, 5)
        assert category.test_images()[0].shape == (16, 18, 3)

    def test_csv_filters_by_object(self, visa_root):
        pcb = load_category("visa/pcb1", roots={"visa": visa_root})
        assert pcb.n_train == 3 and pcb.root == visa_root / "pcb1"

    def test_csv_row_with_missing_image(self, visa_root):
        missing = visa_root / "candle" / "Data" / "Images" / "Anomaly" / "001.JPG"
        missing.unlink()
        with pytest.raises(DatasetError) as info:
            load_category("visa/candle", roots={"visa": visa_root})
        assert str(missing) in str(info.value) and "1cls.csv line" in str(info.value)

    def test_csv_bad_header_and_label(self, visa_root):
        csv_path = visa_root / "split_csv" / "1cls.csv"
        text = csv_path.read_text()
        csv_path.write_text(
            text.replace("anomaly,candle/Data/Images/Anomaly/000", "broken,candle/Data/Images/Anomaly/000")
        )
        with pytest.raises(DatasetError, match="'broken' is not normal/anomaly"):
            load_category("visa/candle", roots={"visa": visa_root})
        csv_path.write_text(text.replace("object,split,label,image,mask", "object,split,label,image"))
        with pytest.raises(DatasetError, match="lacks column"):
            load_category("visa/candle", roots={"visa": visa_root})

    def test_converted_layout_is_detected(self, tmp_path):
        root = tmp_path / "visa_pytorch"
        base = root / "capsules"
        for i in range(2):
            write_image(base / "train" / "good" / f"{i:03d}.JPG", coloured(i))
            write_image(base / "test" / "good" / f"{i:03d}.JPG", coloured(40 + i))
            write_image(base / "test" / "bad" / f"{i:03d}.JPG", coloured(90 + i))
            write_image(base / "ground_truth" / "bad" / f"{i:03d}.png", square_mask((20, 24), 4, 4, 5, on=1))
        category = load_category("visa/capsules", roots={"visa": root})
        assert category.layout == "visa-1cls"
        assert sorted(category.test_ids) == sorted(
            [f"test/good/{i:03d}.JPG" for i in range(2)] + [f"test/bad/{i:03d}.JPG" for i in range(2)]
        )
        truth = category.ground_truth(size=24)
        assert int(truth.labels.sum()) == 2 and int(truth.masks.sum()) > 0

    def test_unrecognised_root_names_both_layouts(self, tmp_path):
        (tmp_path / "visa").mkdir()
        with pytest.raises(DatasetError) as info:
            load_category("visa/fryum", roots={"visa": tmp_path / "visa"})
        message = str(info.value)
        assert "split_csv/1cls.csv" in message and str(tmp_path / "visa" / "fryum" / "train" / "good") in message


class TestFolder:
    def test_user_folder_with_both_mask_names(self, tmp_path):
        base = tmp_path / "own" / "bracket"
        for i in range(2):
            write_image(base / "train" / "good" / f"img{i}.bmp", coloured(i))
        write_image(base / "test" / "good" / "ok.TIFF", coloured(60))
        write_image(base / "test" / "dent" / "a.jpeg", coloured(70))
        write_image(base / "test" / "dent" / "b.PNG", coloured(80))
        write_image(base / "ground_truth" / "dent" / "a_mask.png", square_mask((20, 24), 1, 1, 3))
        write_image(base / "ground_truth" / "dent" / "b.png", square_mask((20, 24), 5, 5, 3))
        category = load_category("folder/bracket", roots={"folder": tmp_path / "own"})
        assert category.layout == "folder" and category.n_train == 2
        assert set(category.test_ids) == {"test/good/ok.TIFF", "test/dent/a.jpeg", "test/dent/b.PNG"}
        truth = category.ground_truth(size=24)
        assert int(truth.labels.sum()) == 2
        assert list(truth.defect_types[truth.labels == 1]) == ["dent", "dent"]
