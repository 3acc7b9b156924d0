"""The bundle reader and writer: every failure mode of the corpus, and valid bundles round-tripping."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from algorithms.bundle import BundleWriteError, bundle_from_predictions, main, write_bundle
from evaluation.bundles import BundleError, BundleLimits, BundleReader
from evaluation.tests.bundle_corpus import BAD_BUNDLES, Spec, members_of, valid_categories, write_valid, write_zip

SPEC = Spec(
    suite="synthetic",
    ids={
        "synthetic/aa": [f"test/good/{i:03d}.png" for i in range(4)] + [f"test/scratch/{i:03d}.png" for i in range(3)],
        "synthetic/bb": [f"test/good/{i:03d}.png" for i in range(3)] + [f"test/hole/{i:03d}.png" for i in range(2)],
    },
)


def _validate(path, spec: Spec = SPEC, **limits):
    with BundleReader(path, limits=BundleLimits(**limits)) as reader:
        return reader.validate(suite=spec.suite, expected_ids=spec.ids)


@pytest.mark.parametrize("case", BAD_BUNDLES, ids=[case.name for case in BAD_BUNDLES])
def test_every_bad_bundle_fails_with_its_message(case, tmp_path):
    path = case.build(tmp_path / f"{case.name}.zip", SPEC)
    with pytest.raises(BundleError, match=case.message) as caught:
        _validate(path, **case.limits)
    assert isinstance(caught.value, ValueError)


def test_corpus_cases_are_distinct_and_their_base_is_valid(tmp_path):
    assert len({case.name for case in BAD_BUNDLES}) == len(BAD_BUNDLES)
    summary = _validate(write_valid(tmp_path / "ok.zip", SPEC))
    assert set(summary.categories) == set(SPEC.ids)
    # the low-level writer used by the corpus makes valid bundles too
    summary = _validate(write_zip(tmp_path / "ok2.zip", members_of(SPEC)))
    assert summary.manifest.method == SPEC.method


def test_valid_bundle_round_trips_in_server_order(tmp_path):
    categories = valid_categories(SPEC)
    path = write_valid(tmp_path / "b.zip", SPEC, categories)
    with BundleReader(path, limits=BundleLimits(chunk_bytes=3 * 64 * 64 * 2)) as reader:  # 3 rows per chunk
        summary = reader.validate(suite="synthetic", expected_ids=SPEC.ids)
        assert summary.manifest.categories == tuple(sorted(SPEC.ids))
        for key, expected in SPEC.ids.items():
            layout = summary.categories[key]
            assert layout.n_images == len(expected)
            assert layout.map_size == (64, 64)
            assert layout.maps_dtype == np.float16
            rows = [expected.index(i) for i in categories[key]["ids"]]
            scores = reader.read_scores(key)
            np.testing.assert_array_equal(scores[rows], categories[key]["scores"])
            maps = np.full((len(expected), 64, 64), np.nan, dtype=np.float16)
            batches = list(reader.iter_map_batches(key))
            assert len(batches) == -(-len(expected) // 3)
            for positions, batch in batches:
                maps[positions] = batch
            np.testing.assert_array_equal(maps[rows], categories[key]["maps"])


def test_fortran_order_float32_and_directory_entries_are_accepted(tmp_path):
    categories = valid_categories(SPEC)
    key = "synthetic/aa"
    maps32 = np.asfortranarray(categories[key]["maps"].astype(np.float32))
    members = []
    for name, data in members_of(SPEC, categories):
        if name == f"{key}/maps.npy":
            import io

            buffer = io.BytesIO()
            np.save(buffer, maps32)
            data = buffer.getvalue()
        members.append((name, data))
    members[1:1] = [("synthetic/", b""), ("synthetic/aa/", b"")]
    path = write_zip(tmp_path / "f.zip", members)
    with BundleReader(path) as reader:
        summary = reader.validate(suite="synthetic", expected_ids=SPEC.ids)
        assert summary.categories[key].maps_dtype == np.float32
        got = np.empty_like(maps32)
        for positions, batch in reader.iter_map_batches(key):
            got[positions] = batch
        rows = [SPEC.ids[key].index(i) for i in categories[key]["ids"]]
        np.testing.assert_array_equal(got[rows], maps32)


def test_ids_with_crlf_and_bom_are_read(tmp_path):
    categories = valid_categories(SPEC)
    members = members_of(SPEC, categories)
    key = "synthetic/bb"
    text = "\ufeff" + "\r\n".join(categories[key]["ids"]) + "\r\n"
    members = [(n, text.encode() if n == f"{key}/ids.txt" else d) for n, d in members]
    _validate(write_zip(tmp_path / "crlf.zip", members))


def test_readers_refuse_arrays_before_validation(tmp_path):
    with BundleReader(write_valid(tmp_path / "b.zip", SPEC)) as reader, pytest.raises(RuntimeError, match="validate"):
        reader.read_scores("synthetic/aa")


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        BundleLimits(max_bytes=0)
    with pytest.raises(ValueError, match="max_compression_ratio"):
        BundleLimits(max_compression_ratio=0.5)
    with pytest.raises(ValueError, match="min_map_side"):
        BundleLimits(min_map_side=512, max_map_side=256)
    assert BundleLimits.from_mapping({"max_members": 9, "max_bytes": None}).max_members == 9


def test_a_member_that_decompresses_beyond_its_declared_size_is_refused(tmp_path):
    """Headers can lie: the declared sizes pass the budget, the real data are far larger."""
    from evaluation.tests.bundle_corpus import bad_bundle

    path = bad_bundle("lying_header_sizes").build(tmp_path / "lie.zip", SPEC)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("synthetic/aa/maps.npy").file_size == 100
    with pytest.raises(BundleError, match=r"maps\.npy"):
        _validate(path, max_uncompressed_bytes=200_000)


# Writer -------------------------------------------------------------------------------------------


def test_writer_refuses_bad_arrays_and_writes_nothing(tmp_path):
    good = valid_categories(SPEC)
    out = tmp_path / "x.zip"
    cases = {
        "NaN": {"maps": np.full((7, 64, 64), np.nan, np.float32)},
        "shape": {"maps": np.zeros((7, 64), np.float32)},
        "between 64 and 1024": {"maps": np.zeros((7, 32, 64), np.float32)},
        "duplicate id": {"ids": ["a"] * 7},
        "expected \\(7,\\)": {"scores": np.zeros(6, np.float32)},
        "overflows float16": {"maps": np.full((7, 64, 64), 1e6, np.float32)},
        "real-valued": {"scores": np.array(["a"] * 7)},
    }
    for message, change in cases.items():
        categories = {**good, "synthetic/aa": {**good["synthetic/aa"], **change}}
        dtype = "float16" if message == "overflows float16" else None
        with pytest.raises(BundleWriteError, match=message):
            write_bundle(out, method="m", suite="synthetic", categories=categories, dtype=dtype)
        assert not out.exists()
    with pytest.raises(BundleWriteError, match="<dataset>/<category>"):
        write_bundle(out, method="m", suite="synthetic", categories={"flat": good["synthetic/aa"]})
    assert list(tmp_path.iterdir()) == []


def test_writer_casts_float64_to_float32_and_keeps_float16(tmp_path):
    categories = valid_categories(SPEC)
    categories["synthetic/aa"]["maps"] = categories["synthetic/aa"]["maps"].astype(np.float64)
    path = write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", categories=categories)
    with BundleReader(path) as reader:
        summary = reader.validate(suite="synthetic", expected_ids=SPEC.ids)
    assert summary.categories["synthetic/aa"].maps_dtype == np.float32
    assert summary.categories["synthetic/bb"].maps_dtype == np.float16
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert manifest == {"format_version": 1, "method": "m", "suite": "synthetic", "categories": sorted(SPEC.ids)}


def _predictions_dir(tmp_path, categories, *, variants=("anomaly_map",), with_json=True):
    run = tmp_path / "run"
    for key, entry in categories.items():
        folder = run / "patchcore" / key
        folder.mkdir(parents=True)
        arrays = {"ids": np.array(entry["ids"]), "scores": entry["scores"]}
        for variant in variants:
            arrays[f"map__{variant}"] = entry["maps"]
        np.savez(folder / "predictions.npz", **arrays)
        if with_json:
            payload = {"schema": "vadi-run/1", "category": key, "primary_variant": variants[0]}
            (folder / "results.json").write_text(json.dumps(payload))
    return run


def test_cli_turns_runner_predictions_into_a_valid_bundle(tmp_path, capsys, monkeypatch):
    import algorithms.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_check_suite", lambda suite, keys: None)  # two-category test suite
    categories = valid_categories(SPEC)
    run = _predictions_dir(tmp_path, categories, variants=("anomaly_map", "layer2"))
    out = tmp_path / "bundle.zip"
    code = main(["--predictions", str(run), "--method", "PatchCore", "--suite", "synthetic", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    with BundleReader(out) as reader:
        summary = reader.validate(suite="synthetic", expected_ids=SPEC.ids)
        assert summary.manifest.method == "PatchCore"
        key = "synthetic/aa"
        rows = [SPEC.ids[key].index(i) for i in categories[key]["ids"]]
        np.testing.assert_array_equal(reader.read_scores(key)[rows], categories[key]["scores"])


def test_cli_reports_ambiguous_variants_and_missing_predictions(tmp_path, capsys, monkeypatch):
    import algorithms.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_check_suite", lambda suite, keys: None)
    run = _predictions_dir(tmp_path, valid_categories(SPEC), variants=("a", "b"), with_json=False)
    out = tmp_path / "b.zip"
    assert main(["--predictions", str(run), "--method", "m", "--suite", "synthetic", "--out", str(out)]) == 2
    assert "several map variants (a, b)" in capsys.readouterr().err
    assert main(["--predictions", str(run), "--method", "m", "--suite", "synthetic", "--out", str(out),
                 "--variant", "b"]) == 0  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleWriteError, match=r"no predictions\.npz"):
        bundle_from_predictions(empty, out, method="m", suite="synthetic")


def test_cli_checks_the_suite_against_the_dataset_registry(tmp_path):
    run = _predictions_dir(tmp_path, valid_categories(SPEC))
    with pytest.raises(BundleWriteError, match=r"suite 'synthetic' needs predictions for|not in suite"):
        bundle_from_predictions(run, tmp_path / "b.zip", method="m", suite="synthetic")
    with pytest.raises(BundleWriteError, match="unknown suite 'nope'"):
        bundle_from_predictions(run, tmp_path / "b.zip", method="m", suite="nope")


def test_runner_predictions_become_a_bundle_the_server_scores(tmp_path, monkeypatch):
    """Any registered model's saved outputs (here the random baseline's) turn into a valid bundle."""
    import algorithms.bundle as bundle_module
    from algorithms.data import generate_suite, load_category
    from algorithms.runner import run_category
    from evaluation.scoring import score_bundle

    monkeypatch.setattr(bundle_module, "_check_suite", lambda suite, keys: None)  # a one-category suite
    roots = {"synthetic": tmp_path / "data"}
    generate_suite(roots["synthetic"], seed=0, categories=["woven"], image_size=64, n_train=2, n_test_good=3,
                   n_test_defect=3, workers=1)  # fmt: skip
    out = tmp_path / "run" / "random" / "synthetic" / "woven"
    result = run_category(algorithm="random", params={}, category="synthetic/woven", roots=roots, epochs=1,
                          train_time_limit_s=60, out_dir=out, save_predictions=True)  # fmt: skip
    assert result["status"] == "ok", result["error"]
    bundle = tmp_path / "bundle.zip"
    assert main(["--predictions", str(tmp_path / "run"), "--method", "Random", "--suite", "synthetic",
                 "--out", str(bundle)]) == 0  # fmt: skip
    category = load_category("synthetic/woven", roots=roots)
    with BundleReader(bundle) as reader:
        reader.validate(suite="synthetic", expected_ids={"synthetic/woven": list(category.test_ids)})
        values = score_bundle(reader, {"synthetic/woven": category.ground_truth(size=256)})
    assert set(values["synthetic/woven"]) == {"image_auroc", "pixel_auroc", "aupro", "pl"}
