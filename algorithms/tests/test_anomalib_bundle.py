"""Bundles from anomalib's predictions (issue 21): paths -> published ids, the published set, ties, map shapes.

The batches here are what anomalib's ``Engine.predict`` returns, reduced to the fields the writer
reads (``image_path``, ``pred_score``, ``anomaly_map``), as dicts of numpy arrays and as torch
tensors; the end-to-end test with a trained anomalib model and a live server is
``evaluation/tests/test_submit_anomalib.py``.
"""

from __future__ import annotations

import io
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from algorithms.anomalib_bundle import bundle_from_anomalib, collect_predictions, map_paths_to_ids
from algorithms.bundle import BundleWriteError, check_bundle, write_bundle

KEY = "synthetic/woven"
FILES = [f"test/good/{i:03d}.png" for i in range(3)] + [f"test/hole/{i:03d}.png" for i in range(3)]
TABLE = {f"{i:02d}" + "a" * 30: name for i, name in enumerate(FILES)}  # {published id: file name}
ROOT = "/home/me/datasets/synthetic/woven"


def _batches(files=FILES, *, scores=None, size=(64, 64), batch_size=4, four_d=False, root=ROOT):
    """anomalib-like batches (dicts of numpy arrays) for ``files``, ``batch_size`` images each."""
    rng = np.random.default_rng(0)
    n = len(files)
    scores = rng.random(n) * 40 + 3 if scores is None else np.asarray(scores, dtype=np.float64)
    maps = (rng.random((n, 1, *size)) * 50).astype(np.float32)
    out = []
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        out.append({
            "image_path": [f"{root}/{name}" for name in files[rows]],
            "pred_score": scores[rows].astype(np.float32),
            "anomaly_map": maps[rows] if four_d else maps[rows, 0],
        })  # fmt: skip
    return out, scores, maps[:, 0]


def _read(path, member):
    with zipfile.ZipFile(path) as zf:
        if member.endswith(".txt"):
            return zf.read(f"{KEY}/{member}").decode().split()
        with zf.open(f"{KEY}/{member}") as fp:
            return np.lib.format.read_array(fp)


def _write(tmp_path, predictions, **options):
    options = {"method": "anomalib padim", "suite": "synthetic", "id_tables": {KEY: TABLE}, "partial": True} | options
    return bundle_from_anomalib({KEY: predictions}, path=tmp_path / "b.zip", **options)


def test_paths_become_published_ids_and_rows_stay_together(tmp_path):
    batches, scores, maps = _batches()
    made = _write(tmp_path, batches)
    assert made.warnings == [] and made.counts == {KEY: 6}
    ids = _read(made.path, "ids.txt")
    assert ids == list(TABLE)  # each path's published id, in the predictions' order
    np.testing.assert_array_equal(_read(made.path, "scores.npy"), scores.astype(np.float32))
    np.testing.assert_array_equal(_read(made.path, "maps.npy"), maps)  # full maps, as given
    assert check_bundle(made.path, expected_ids={KEY: sorted(TABLE)}) == []


def test_windows_and_relative_paths_and_single_items_are_mapped():
    paths = ["C:\\data\\woven\\test\\hole\\001.png", "woven/test/good/002.png", "./test/hole/000.png"]
    assert map_paths_to_ids(paths, TABLE, key=KEY, published=[table_id(p) for p in FILES[2:5]]) == [
        table_id("test/hole/001.png"), table_id("test/good/002.png"), table_id("test/hole/000.png")
    ]  # fmt: skip
    item = SimpleNamespace(image_path=f"{ROOT}/test/good/000.png", pred_score=np.float32(2.5),
                           anomaly_map=np.zeros((1, 64, 64), np.float32))  # fmt: skip
    paths, scores, maps = collect_predictions([item], key=KEY)
    assert paths == [item.image_path] and scores.tolist() == [2.5] and maps.shape == (1, 64, 64)


def table_id(name):
    return next(image_id for image_id, file in TABLE.items() if file == name)


def test_unmatched_paths_are_named_with_a_hint(tmp_path):
    batches, _, _ = _batches()
    batches[0]["image_path"][1] = "/home/me/other/bottle/test/broken/007.png"
    with pytest.raises(BundleWriteError) as info:
        _write(tmp_path, batches)
    message = str(info.value)
    assert "synthetic/woven: 1 of 6 image path(s) match no test image: '/home/me/other/bottle/test/broken/007.png'" in (
        message
    )
    assert "such as 'test/good/000.png'" in message and "another category" in message
    assert not (tmp_path / "b.zip").exists()


def test_missing_normal_test_images_name_the_folder_settings(tmp_path):
    batches, _, _ = _batches(FILES[3:])  # anomalib's Folder without normal_test_dir: no test/good image
    with pytest.raises(BundleWriteError) as info:
        _write(tmp_path, batches)
    message = str(info.value)
    assert "synthetic/woven: 3 of the category's 6 test images have no prediction, e.g. 'test/good/000.png'" in message
    assert "all of them are normal ('good') images" in message
    assert "normal_test_dir='test/good'" in message and "val_split_mode='same_as_test'" in message
    half, _, _ = _batches(FILES[::2])  # the default val_split_mode moves half of the test set away
    with pytest.raises(BundleWriteError, match="3 of the category's 6 test images have no prediction") as info:
        _write(tmp_path, half)
    assert "all of them are normal" not in str(info.value) and "'from_test' moves half" in str(info.value)


def test_training_images_in_the_predictions_name_the_folder_settings(tmp_path):
    batches, _, _ = _batches([*FILES[3:], "train/good/004.png"])  # Folder sampled a training image as normal test
    with pytest.raises(BundleWriteError) as info:
        _write(tmp_path, batches)
    message = str(info.value)
    assert f"1 of 4 image path(s) match no test image: '{ROOT}/train/good/004.png'" in message
    assert "training images were predicted as test images" in message and "normal_test_dir='test/good'" in message


def test_an_image_predicted_twice_is_refused(tmp_path):
    batches, _, _ = _batches()
    again, _, _ = _batches(FILES[:2])  # e.g. the validation dataloader predicted as well
    with pytest.raises(BundleWriteError, match=r"the image 'test/good/000.png' is predicted twice") as info:
        _write(tmp_path, [batches, again])  # several dataloaders: a list of lists
    assert "/test/good/000.png' and '" in str(info.value)


def test_ids_not_in_the_published_list_are_refused(tmp_path):
    batches, _, _ = _batches()
    published = sorted(TABLE)[1:]  # the server publishes one image fewer than this (old) table
    with pytest.raises(BundleWriteError, match=r"1 image\(s\) are not in the published test set"):
        _write(tmp_path, batches, published_ids={KEY: published})


def test_clamped_scores_are_refused_with_the_normalisation_fix(tmp_path):
    clamped = [0.2, 1.0, 0.4, 1.0, 1.0, 0.7]  # anomalib's default: normalised into [0, 1], clamped at 1.0
    batches, _, _ = _batches(scores=clamped)
    with pytest.raises(BundleWriteError) as info:
        _write(tmp_path, batches)
    message = str(info.value)
    assert "synthetic/woven: of 6 image scores, 3 are exactly 1.0: clamped scores" in message
    assert "PostProcessor(enable_normalization=False)" in message and "--allow-ties" in message
    assert "Only the ranking within a category matters" in message
    assert not (tmp_path / "b.zip").exists()


def test_tied_raw_scores_are_refused_and_allow_ties_writes_them_with_a_warning(tmp_path):
    tied = [3.0, 7.5, 7.5, 9.0, 12.0, 4.0]
    batches, _, _ = _batches(scores=tied)
    with pytest.raises(BundleWriteError, match=r"6 image scores take only 5 distinct values \(2 images share 7.5\)"):
        _write(tmp_path, batches)
    made = _write(tmp_path, batches, allow_ties=True)
    assert made.warnings == [
        "synthetic/woven: 6 image scores take only 5 distinct values (2 images share 7.5): tied scores"
    ]
    np.testing.assert_array_equal(_read(made.path, "scores.npy"), np.float32(tied))


def test_clamped_maps_are_refused(tmp_path):
    batches, _, _ = _batches()
    for batch in batches:
        batch["anomaly_map"] = np.clip(batch["anomaly_map"] / 30, 0, 1)  # normalised maps: many pixels at 1.0
    with pytest.raises(BundleWriteError, match=r"% of the anomaly-map pixels are exactly 0.0 or 1.0: clamped maps"):
        _write(tmp_path, batches)
    assert _write(tmp_path, batches, allow_ties=True).warnings[0].endswith("clamped maps")


def test_four_d_maps_are_squeezed_and_never_cropped(tmp_path):
    batches, _, maps = _batches(size=(80, 120), four_d=True)
    assert batches[0]["anomaly_map"].shape == (4, 1, 80, 120)
    made = _write(tmp_path, batches)
    np.testing.assert_array_equal(_read(made.path, "maps.npy"), maps)  # (N, 80, 120): every pixel kept


def test_maps_beyond_the_bundle_limits_are_rescaled_whole(tmp_path):
    batches, _, _ = _batches(size=(40, 60))  # a side under 64: scaled up by one factor, aspect kept
    made = _write(tmp_path, batches)
    assert _read(made.path, "maps.npy").shape == (6, 64, 96)
    assert made.warnings == ["synthetic/woven: anomaly maps of 40 x 60 rescaled to 64 x 96 (a bundle's maps have sides "
                             "of 64-1024 pixels; the server resizes every map to 256 x 256 anyway)"]  # fmt: skip
    big, _, _ = _batches(size=(1100, 300), batch_size=6)  # a side over 1024: scaled down, aspect kept
    assert _read(_write(tmp_path, big).path, "maps.npy").shape == (6, 1024, 279)


def test_malformed_batches_are_named(tmp_path):
    batches, _, _ = _batches()
    del batches[1]["anomaly_map"]
    with pytest.raises(BundleWriteError, match="synthetic/woven: batch 1 has no anomaly_map"):
        _write(tmp_path, batches)
    batches, _, _ = _batches()
    batches[0]["pred_score"] = batches[0]["pred_score"][:3]
    with pytest.raises(BundleWriteError, match="batch 0: pred_score has 3 values for 4 image paths"):
        _write(tmp_path, batches)
    other, _, _ = _batches(size=(64, 80))
    with pytest.raises(BundleWriteError, match="batch 1: anomaly maps of 64 x 80, earlier ones 64 x 64"):
        _write(tmp_path, [_batches()[0][0], other[1]])


def test_blind_categories_take_the_id_from_the_file_name(tmp_path):
    ids = sorted(TABLE)
    batches, _, _ = _batches([f"{image_id}.png" for image_id in ids], root="/downloads/blind/woven/test")
    made = _write(tmp_path, batches, id_tables=None, published_ids={KEY: ids})
    assert _read(made.path, "ids.txt") == ids
    plain, _, _ = _batches()  # no table and file names that are not ids: say where tables come from
    with pytest.raises(BundleWriteError, match="this category has no id table"):
        _write(tmp_path, plain, id_tables=None)


def test_torch_batches_are_read_as_anomalib_returns_them(tmp_path):
    import torch

    batches, scores, maps = _batches(four_d=True)
    as_torch = [
        SimpleNamespace(image_path=b["image_path"], pred_score=torch.from_numpy(b["pred_score"]),
                        anomaly_map=torch.from_numpy(b["anomaly_map"]).to(torch.bfloat16))
        for b in batches
    ]  # fmt: skip
    paths, got_scores, got_maps = collect_predictions(as_torch, key=KEY)
    assert len(paths) == 6 and got_maps.shape == (6, 64, 64) and got_maps.dtype == np.float32
    np.testing.assert_array_equal(got_scores, scores.astype(np.float32))
    np.testing.assert_array_equal(got_maps, torch.from_numpy(maps).to(torch.bfloat16).float().numpy())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_write_bundle_draws_a_bar_only_on_a_terminal(tmp_path, monkeypatch):
    _, scores, maps = _batches()
    categories = {key: {"ids": list(TABLE), "scores": scores, "maps": maps} for key in (KEY, "synthetic/screw")}
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    write_bundle(tmp_path / "a.zip", method="m", suite="synthetic", partial=True, categories=categories)
    assert quiet.getvalue() == ""  # logs and pipes stay clean
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", partial=True, categories=categories)
    assert "writing b.zip" in terminal.getvalue() and "/2 [" in terminal.getvalue()


def test_a_cropping_pre_processor_is_refused(tmp_path):
    from torchvision.transforms.v2 import CenterCrop, Compose, Normalize, Resize

    batches, _, _ = _batches()
    cropping = SimpleNamespace(pre_processor=SimpleNamespace(transform=Compose([Resize((256, 256)), CenterCrop(224)])))
    with pytest.raises(BundleWriteError, match=r"the model's pre-processor crops the images \(CenterCrop\)"):
        _write(tmp_path, batches, model=cropping)
    whole = SimpleNamespace(pre_processor=SimpleNamespace(transform=Compose([Resize((256, 256)), Normalize([0], [1])])))
    assert _write(tmp_path, batches, model=whole).counts == {KEY: 6}


def test_the_command_lines_check_their_anomalib_options(tmp_path, capsys, monkeypatch):
    from algorithms.__main__ import main

    monkeypatch.setenv("VADI_TOKEN", "t")
    for argv, expected in [
        (["submit", "--anomalib", f"{KEY}=p.pt", "--server", "http://x"], "--anomalib needs --method and --suite"),
        (["submit", "b.zip", "--anomalib", f"{KEY}=p.pt", "--server", "http://x"], "a bundle or --anomalib, not both"),
        (["submit", "--server", "http://x"], "required: bundle (or --anomalib CATEGORY_KEY=FILE)"),
        (
            ["bundle", "--anomalib", f"{KEY}=p.pt", "--predictions", "run", "--method", "m", "--suite", "s"],
            "--predictions or --anomalib, not both",
        ),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2 and expected in capsys.readouterr().err, argv
    # a malformed option and a missing file are named; nothing is written
    common = ["--method", "m", "--suite", "synthetic", "--out", str(tmp_path / "b.zip"), "--partial"]
    assert main(["bundle", "--anomalib", "woven=p.pt", *common]) == 2
    assert "--anomalib expects CATEGORY_KEY=FILE (e.g. mvtec/bottle=bottle.pt), got 'woven=p.pt'" in (
        capsys.readouterr().err
    )
    assert main(["bundle", "--anomalib", f"{KEY}={tmp_path / 'nope.pt'}", *common]) == 2
    assert f"{tmp_path / 'nope.pt'}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "b.zip").exists()


def test_bundle_from_saved_dict_predictions_on_the_command_line(tmp_path, capsys):
    import json

    import torch

    from algorithms.__main__ import main

    batches, _, maps = _batches()
    torch.save([{k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in b.items()} for b in batches],
               tmp_path / "woven.pt")  # fmt: skip
    (tmp_path / "ids.json").write_text(json.dumps({"category": KEY, "files": TABLE}))
    code = main(["bundle", "--anomalib", f"{KEY}={tmp_path / 'woven.pt'}", "--id-table", str(tmp_path / "ids.json"),
                 "--method", "m", "--suite", "synthetic", "--out", str(tmp_path / "b.zip"), "--partial"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "1 categories, 6 images" in capsys.readouterr().out
    assert _read(tmp_path / "b.zip", "ids.txt") == list(TABLE)
    np.testing.assert_array_equal(_read(tmp_path / "b.zip", "maps.npy"), maps)
