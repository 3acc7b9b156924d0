"""The bundle reader and writer: every hostile case of the corpus refused, every valid variant scored."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from algorithms.bundle import BundleWriteError, bundle_from_predictions, main, write_bundle
from evaluation.bundles import (
    BundleError,
    BundleLimits,
    BundleReader,
    _dtype_problem,
    _human,
    _json_type,
    _shown,
    precheck,
)
from evaluation.scoring import score_bundle
from evaluation.tests.bundle_corpus import (
    BAD_BUNDLES,
    GOOD_BUNDLES,
    Spec,
    bad_bundle,
    members_of,
    npy_bytes,
    raw_members,
    valid_categories,
    write_valid,
    write_zip,
)
from evaluation.tests.rawzip import LZMA, Member, build_zip, lzma_payload

SPEC = Spec(
    suite="synthetic",
    ids={
        "synthetic/aa": [f"test/good/{i:03d}.png" for i in range(4)] + [f"test/scratch/{i:03d}.png" for i in range(3)],
        "synthetic/bb": [f"test/good/{i:03d}.png" for i in range(3)] + [f"test/hole/{i:03d}.png" for i in range(2)],
    },
)


@dataclass
class GroundTruth:
    ids: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def ground_truths(spec: Spec) -> dict[str, GroundTruth]:
    """Labels from the ids ("good" or not) and one defect rectangle per anomalous image, at 256 x 256."""
    out = {}
    for key, ids in spec.ids.items():
        labels = np.array([0 if "/good/" in image_id else 1 for image_id in ids], dtype=np.uint8)
        masks = np.zeros((len(ids), 256, 256), dtype=np.uint8)
        for i in np.flatnonzero(labels):
            masks[i, 20 + 10 * i : 60 + 10 * i, 30:90] = 1
        out[key] = GroundTruth(np.array(ids), labels, masks)
    return out


GROUND_TRUTHS = ground_truths(SPEC)


def _validate(path, spec: Spec = SPEC, **limits):
    with BundleReader(path, limits=BundleLimits(**limits)) as reader:
        return reader.validate(suite=spec.suite, expected_ids=spec.ids)


def _validate_and_score(path, spec: Spec = SPEC, **limits):
    with BundleReader(path, limits=BundleLimits(**limits)) as reader:
        summary = reader.validate(suite=spec.suite, expected_ids=spec.ids)
        return summary, score_bundle(reader, ground_truths(spec))


#: Every corpus case's exact problem, ``[member, message]``: what the uploader reads, reviewed case by
#: case. After a deliberate change of wording: ``python -m evaluation.tests.test_bundles`` rewrites
#: it; review the diff.
CORPUS_MESSAGES = Path(__file__).with_name("bundle_corpus_messages.json")
EXPECTED_PROBLEMS = json.loads(CORPUS_MESSAGES.read_text(encoding="utf-8"))


def _corpus_problem(case, directory: Path) -> list:
    path = case.build(directory / f"{case.name}.zip", SPEC)
    with pytest.raises(BundleError, match=case.message) as caught:
        _validate(path, **case.limits)
    return [caught.value.member, str(caught.value)]


@pytest.mark.parametrize("case", BAD_BUNDLES, ids=[case.name for case in BAD_BUNDLES])
def test_every_bad_bundle_fails_with_its_message(case, tmp_path):
    member, message = _corpus_problem(case, tmp_path)
    if member is not None:  # the member is named first, as the uploader would write it
        assert message.startswith(f"{member}: ")
    assert len(message) < 600  # quotes from the upload are cut short
    assert [member, message] == EXPECTED_PROBLEMS[case.name]


def test_the_expected_problems_are_those_of_the_corpus():
    assert list(EXPECTED_PROBLEMS) == [case.name for case in BAD_BUNDLES]


def test_the_corpus_covers_every_kind_with_distinct_cases(tmp_path):
    names = [case.name for case in BAD_BUNDLES] + [case.name for case in GOOD_BUNDLES]
    assert len(set(names)) == len(names)
    kinds = {case.kind for case in BAD_BUNDLES}
    assert kinds == {"archive", "limits", "bombs", "structure", "names", "member types", "compressed data",
                     "manifest", "member set", "ids", "npy"}  # fmt: skip
    assert all(sum(case.kind == kind for case in BAD_BUNDLES) >= 5 for kind in kinds)
    summary = _validate(write_valid(tmp_path / "ok.zip", SPEC))
    assert set(summary.categories) == set(SPEC.ids)
    # the low-level writers used by the corpus make valid bundles too
    summary = _validate(write_zip(tmp_path / "ok2.zip", members_of(SPEC)))
    assert summary.manifest.method == SPEC.method
    (tmp_path / "ok3.zip").write_bytes(build_zip([Member(name, data) for name, data in members_of(SPEC)]))
    assert _validate(tmp_path / "ok3.zip").members == 7


#: Valid variants that hold the very arrays of ``write_valid``: they must score exactly like it.
SAME_ARRAYS = {"stored", "bzip2", "lzma", "streamed_with_descriptors", "descriptor_layouts_and_methods",
               "zip64_records", "windows_extras_comments", "shuffled_with_directories", "bom_crlf_description",
               "npy_version_2", "raw_stored", "raw_lzma"}  # fmt: skip


@pytest.mark.parametrize("case", GOOD_BUNDLES, ids=[case.name for case in GOOD_BUNDLES])
def test_every_valid_variant_is_accepted_and_scored(case, tmp_path):
    path = case.build(tmp_path / f"{case.name}.zip", SPEC)
    summary, results = _validate_and_score(path)
    assert set(summary.categories) == set(results) == set(SPEC.ids)
    for values in results.values():
        assert set(values) == {"image_auroc", "pixel_auroc", "aupro", "pl"}
        assert all(0.0 <= value <= 1.0 for value in values.values()), values
    if case.name in SAME_ARRAYS:
        _, reference = _validate_and_score(write_valid(tmp_path / "reference.zip", SPEC))
        assert results == reference
    # the upload-time check passes every valid bundle too
    assert precheck(path, suite=SPEC.suite, method=SPEC.method, categories=list(SPEC.ids)).manifest.suite == "synthetic"


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


@pytest.mark.parametrize("pass_bytes", [64 * 64 * 4, 3 * 64 * 80 * 4, 1 << 20])
def test_fortran_order_float32_and_directory_entries_are_accepted(tmp_path, pass_bytes):
    """Fortran-order maps stream in passes of whole images (one, three, all) and come out in C order."""
    categories = valid_categories(SPEC)
    key = "synthetic/aa"
    maps32 = np.asfortranarray(np.random.default_rng(5).random((7, 64, 80)).astype(np.float32))
    members = [(name, npy_bytes(maps32) if name == f"{key}/maps.npy" else data)
               for name, data in members_of(SPEC, categories)]  # fmt: skip
    members[1:1] = [("synthetic/", b""), ("synthetic/aa/", b"")]
    path = write_zip(tmp_path / "f.zip", members)
    with BundleReader(path, limits=BundleLimits(fortran_pass_bytes=pass_bytes, chunk_bytes=5000)) as reader:
        summary = reader.validate(suite="synthetic", expected_ids=SPEC.ids)
        assert summary.categories[key].maps_dtype == np.float32
        assert summary.categories[key].maps_fortran_order
        assert summary.categories[key].map_size == (64, 80)
        got = np.full_like(maps32, np.nan)
        batches = list(reader.iter_map_batches(key))
        for positions, batch in batches:
            assert batch.flags.c_contiguous
            got[positions] = batch
        assert len(batches) == -(-7 // max(1, pass_bytes // (64 * 80 * 4)))
        rows = [SPEC.ids[key].index(i) for i in categories[key]["ids"]]
        np.testing.assert_array_equal(got[rows], maps32)


def test_ids_with_crlf_and_bom_are_read_in_their_order(tmp_path):
    categories = valid_categories(SPEC)
    members = members_of(SPEC, categories)
    key = "synthetic/bb"
    text = "\ufeff" + "\r\n".join(categories[key]["ids"]) + "\r\n"
    members = [(n, text.encode() if n == f"{key}/ids.txt" else d) for n, d in members]
    with BundleReader(write_zip(tmp_path / "crlf.zip", members)) as reader:
        summary = reader.validate(suite=SPEC.suite, expected_ids=SPEC.ids)
        rows = [SPEC.ids[key].index(i) for i in categories[key]["ids"]]
        np.testing.assert_array_equal(summary.categories[key].order, rows)
        np.testing.assert_array_equal(reader.read_scores(key)[rows], categories[key]["scores"])


def test_manifest_with_a_bom_is_read(tmp_path):
    members = [(n, b"\xef\xbb\xbf" + d if n == "manifest.json" else d) for n, d in members_of(SPEC)]
    assert _validate(write_zip(tmp_path / "bom.zip", members)).manifest.method == SPEC.method


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


def test_a_member_that_decompresses_beyond_its_declared_size_is_refused_after_its_declared_bytes(tmp_path):
    """Headers can lie consistently: both say 10 bytes; the reader stops there and refuses."""
    path = bad_bundle("lying_sizes_both_headers").build(tmp_path / "lie.zip", SPEC)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("synthetic/aa/ids.txt").file_size == 10
    with BundleReader(path) as reader:
        with pytest.raises(BundleError, match=r"^synthetic/aa/ids\.txt: decompresses to more than its declared 10"):
            reader.validate(suite=SPEC.suite, expected_ids=SPEC.ids)
        manifest_size = len(members_of(SPEC)[0][1])
        assert reader._budget.used == manifest_size + 10  # nothing beyond the declared bytes was charged or kept


def test_every_read_is_charged_before_it_happens(tmp_path):
    """A stream refuses a read that would pass the budget before decompressing a byte of it."""
    from evaluation.bundles import _Budget, _MemberStream

    path = write_valid(tmp_path / "b.zip", SPEC)
    with BundleReader(path) as reader:
        entry = reader._infos["synthetic/aa/maps.npy"]
        budget = _Budget(limit=1000)
        stream = _MemberStream(reader._file, entry, reader.limits, budget)
        assert stream.read_exact(600, what="x")[:6] == b"\x93NUMPY"
        with pytest.raises(BundleError, match=r"maps\.npy: reading 500 more bytes would exceed .* of 1,000 bytes"):
            stream.read_exact(500, what="x")
        assert (budget.used, stream.position) == (600, 600)


def test_a_huge_claimed_npy_header_is_refused_before_it_is_read(tmp_path):
    path = bad_bundle("npy_huge_header_claim").build(tmp_path / "h.zip", SPEC)
    with BundleReader(path) as reader:
        with pytest.raises(BundleError, match=r"maps\.npy: its \.npy header claims 4,294,967,280 bytes"):
            reader.validate(suite=SPEC.suite, expected_ids=SPEC.ids)
        stream = reader._stream("synthetic/aa/maps.npy")
        with pytest.raises(BundleError, match="header claims"):
            reader._read_npy_header(stream, ndim=3, n=7)
        assert stream.position == 12  # magic, version and the 4-byte length: the claimed header was not read
        assert reader._budget.used <= reader._index.declared  # never more than the members declare


def test_names_are_read_from_the_raw_bytes_not_as_zipfile_sees_them(tmp_path):
    """zipfile cuts a name at NUL ('maps.npy\\x00../../x' looks like 'maps.npy'); the reader does not."""
    path = bad_bundle("nul_in_name").build(tmp_path / "nul.zip", SPEC)
    with zipfile.ZipFile(path) as zf:
        assert "synthetic/aa/maps.npy" in zf.namelist()  # what a zipfile-based check would have accepted
    with pytest.raises(BundleError, match=r"maps\.npy\\x00\.\./\.\./x: member name contains a NUL byte"):
        _validate(path)


def test_damage_is_reported_as_damage(tmp_path):
    """A flipped byte in deflated map data is a CRC mismatch, whatever the damaged bytes look like."""
    members = [Member(name, data) for name, data in members_of(SPEC)]
    data = bytearray(build_zip(members))
    with BundleReader(io.BytesIO(bytes(data))) as reader:
        entry = reader._infos["synthetic/aa/maps.npy"]
    messages = set()
    for offset in range(entry.data_offset + 5, entry.data_end - 5, max(1, entry.compress_size // 25)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x55
        with pytest.raises(BundleError) as caught:
            _validate(io.BytesIO(bytes(damaged)))
        assert str(caught.value).startswith("synthetic/aa/maps.npy: ")
        messages.add(str(caught.value).split(": ")[1].split(" (")[0])
    assert all(m.startswith(("CRC-32 mismatch", "corrupt deflate data", "decompresses to more", "truncated"))
               for m in messages), messages  # fmt: skip


# Upload-time check -------------------------------------------------------------------------------


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n=-1):
        chunk = super().read(n)
        self.bytes_read += len(chunk)
        return chunk


def test_precheck_reads_the_structure_and_manifest_but_no_array(tmp_path):
    categories = valid_categories(SPEC)
    big = np.random.default_rng(0).random((7, 512, 512)).astype(np.float32)
    categories["synthetic/aa"]["maps"] = big
    data = write_valid(tmp_path / "b.zip", SPEC, categories).read_bytes()
    handle = CountingFile(data)
    handle.seek(123)
    result = precheck(handle, suite="synthetic", method="corpus METHOD", categories=list(SPEC.ids))
    assert result.manifest.suite == "synthetic" and result.manifest.method == SPEC.method
    assert result.members == 7 and result.archive_bytes == len(data)
    assert result.declared_uncompressed_bytes > big.nbytes
    assert handle.bytes_read < 80_000 < len(data) // 50  # headers, central directory and the manifest only
    assert handle.tell() == 123  # the caller's file position is restored


def test_precheck_does_not_look_at_array_data(tmp_path):
    """NaN maps pass the precheck (they are the worker's business) and fail validation."""
    path = bad_bundle("nan_in_maps").build(tmp_path / "nan.zip", SPEC)
    assert precheck(path).manifest.categories == tuple(SPEC.ids)
    with pytest.raises(BundleError, match="NaN"):
        _validate(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"suite": "vadi"}, "manifest.json: the manifest says suite 'synthetic' but the form says 'vadi': choose "
                            "suite 'synthetic', or upload a bundle made for suite 'vadi'"),
        ({"method": "PatchCore"}, "manifest.json: the manifest names method 'Corpus method' but the form says "
                                  "'PatchCore': choose method 'Corpus method', or change the manifest's \"method\" "
                                  "to 'PatchCore'"),
        ({"method": ["Other", "other-key"]}, "the manifest names method 'Corpus method' but the form says 'Other'"),
        ({"categories": ["synthetic/aa"]}, "manifest.json: category 'synthetic/bb' is not in suite 'synthetic'"),
        ({"categories": [*SPEC.ids, "synthetic/cc"]}, "manifest.json: missing category 'synthetic/cc' of suite"),
    ],
)  # fmt: skip
def test_precheck_says_what_to_change(tmp_path, options, message):
    path = write_valid(tmp_path / "b.zip", SPEC)
    with pytest.raises(BundleError) as caught:
        precheck(path, **options)
    assert str(caught.value).startswith(message) if message.startswith("manifest") else message in str(caught.value)


def test_precheck_accepts_any_of_the_method_names_case_insensitively(tmp_path):
    path = write_valid(tmp_path / "b.zip", SPEC)
    assert precheck(path, method=["corpus-method", "CORPUS METHOD"]).manifest.method == "Corpus method"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_a_zip", "not a zip archive"),
        ("trailing_bytes", "bytes follow the end of the zip archive"),
        ("missing_manifest", "manifest.json: missing member"),
        ("manifest_deep_nesting", "manifest.json: nests JSON"),
        ("manifest_duplicate_key", "manifest.json: has the key 'suite' twice"),
        ("missing_maps_member", "synthetic/aa/maps.npy: missing member"),
        ("unexpected_member", "synthetic/notes.txt: unexpected member"),
        ("nul_in_name", "member name contains a NUL byte"),
        ("zip_bomb", "compression ratio"),
    ],
)
def test_precheck_refuses_what_it_can_see(tmp_path, case, message):
    path = bad_bundle(case).build(tmp_path / f"{case}.zip", SPEC)
    with pytest.raises(BundleError, match=re.escape(message)):
        precheck(path)


def test_precheck_applies_the_limits(tmp_path):
    path = write_valid(tmp_path / "b.zip", SPEC)
    with pytest.raises(BundleError, match=r"the archive is .*; the limit is 1\.0 KiB"):
        precheck(path, limits=BundleLimits(max_bytes=1024))
    with pytest.raises(BundleError, match=r"uncompressed; the limit is"):
        precheck(path, limits=BundleLimits(max_uncompressed_bytes=10_000))


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
            write_bundle(out, method="m", suite="synthetic", partial=True, categories=categories, dtype=dtype)
        assert not out.exists()
    with pytest.raises(BundleWriteError, match="<dataset>/<category>"):
        write_bundle(out, method="m", suite="synthetic", partial=True, categories={"flat": good["synthetic/aa"]})
    assert list(tmp_path.iterdir()) == []


def test_writer_casts_float64_to_float32_and_keeps_float16(tmp_path):
    categories = valid_categories(SPEC)
    categories["synthetic/aa"]["maps"] = categories["synthetic/aa"]["maps"].astype(np.float64)
    path = write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", partial=True, categories=categories)
    with BundleReader(path) as reader:
        summary = reader.validate(suite="synthetic", expected_ids=SPEC.ids)
    assert summary.categories["synthetic/aa"].maps_dtype == np.float32
    assert summary.categories["synthetic/bb"].maps_dtype == np.float16
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert manifest == {"format_version": 2, "method": "m", "suite": "synthetic", "categories": sorted(SPEC.ids)}


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
    with pytest.raises(BundleWriteError, match=r"suite .synthetic. has 9 categories and|not in suite"):
        bundle_from_predictions(run, tmp_path / "b.zip", method="m", suite="synthetic")
    with pytest.raises(BundleWriteError, match="unknown suite 'nope'"):
        bundle_from_predictions(run, tmp_path / "b.zip", method="m", suite="nope")


def test_runner_predictions_become_a_bundle_the_server_scores(tmp_path, monkeypatch):
    """Any registered model's saved outputs (here the random baseline's) turn into a valid bundle."""
    import algorithms.bundle as bundle_module
    from algorithms.data import generate_suite, load_category
    from algorithms.runner import run_category
    from algorithms.runspec import RunSpec
    from evaluation.scoring import score_bundle

    monkeypatch.setattr(bundle_module, "_check_suite", lambda suite, keys: None)  # a one-category suite
    roots = {"synthetic": tmp_path / "data"}
    generate_suite(roots["synthetic"], seed=0, categories=["woven"], image_size=64, n_train=2, n_test_good=3,
                   n_test_defect=3, workers=1)  # fmt: skip
    out = tmp_path / "run" / "random" / "synthetic" / "woven"
    spec = RunSpec.from_entry({"algorithm": "random", "categories": ["synthetic/woven"], "save_predictions": True,
                               "train_time_limit_s": 60, "device": "cpu"})  # fmt: skip
    result = run_category(spec, "synthetic/woven", roots=roots, out_dir=out)
    assert result["status"] == "ok", result["error"]
    bundle = tmp_path / "bundle.zip"
    assert main(["--predictions", str(tmp_path / "run"), "--method", "Random", "--suite", "synthetic",
                 "--out", str(bundle)]) == 0  # fmt: skip
    category = load_category("synthetic/woven", roots=roots)
    with BundleReader(bundle) as reader:
        reader.validate(suite="synthetic", expected_ids={"synthetic/woven": list(category.test_ids)})
        values = score_bundle(reader, {"synthetic/woven": category.ground_truth(size=256)})
    assert set(values["synthetic/woven"]) == {"image_auroc", "pixel_auroc", "aupro", "pl"}


@pytest.mark.parametrize(("size", "ratio_checked"), [(1 << 20, True), ((1 << 20) - 1, False)])
def test_the_compression_ratio_check_starts_at_exactly_one_mib(tmp_path, size, ratio_checked):
    """``ratio_min_bytes`` (1 MiB) is the first size checked: a member of exactly 1 MiB is checked."""
    members = [(name, b"\n" * size if name.endswith("ids.txt") else data) for name, data in members_of(SPEC)]
    path = write_zip(tmp_path / "b.zip", members)
    with pytest.raises(BundleError) as caught:
        _validate(path, max_compression_ratio=100)
    ratio = re.fullmatch(r"synthetic/aa/ids\.txt: compression ratio [\d,]+:1 exceeds the limit of 100:1 \(zip bomb\?\)",
                         str(caught.value))  # fmt: skip
    assert (ratio is not None) is ratio_checked, str(caught.value)
    assert caught.value.member == "synthetic/aa/ids.txt"


@pytest.mark.parametrize(("lc", "lp", "pb"), [(0, 2, 1), (1, 3, 4), (4, 0, 0)])
def test_lzma_members_decode_with_their_own_properties_and_a_dictionary_at_the_limit(tmp_path, lc, lp, pb):
    limit = BundleLimits().max_lzma_dict_bytes  # a claimed dictionary of exactly the limit is allowed

    members = raw_members(SPEC)
    for member in members:
        member.method = LZMA
        member.payload = lzma_payload(member.data, claimed_dict=limit, lc=lc, lp=lp, pb=pb)
    path = tmp_path / "lzma.zip"
    path.write_bytes(build_zip(members))
    summary = _validate(path)
    assert set(summary.categories) == set(SPEC.ids) and summary.members == 7
    _, reference = _validate_and_score(write_valid(tmp_path / "ref.zip", SPEC))
    assert _validate_and_score(path)[1] == reference


def test_message_helpers_quote_sizes_values_and_dtypes_exactly():
    """The texts an uploader reads: sizes, quoted values (cut to a limit), JSON types, dtypes."""
    assert [_human(n) for n in (1023, 1024, 5 * 1024**4)] == ["1,023 bytes", "1.0 KiB", "5,120.0 GiB"]
    exact, long = "x" * 58, "x" * 50 + "0123456789"  # reprs of 60 and 62 characters
    assert _shown(exact) == repr(exact)
    assert _shown(long) == repr(long)[:55] + "..." + "'"
    assert [_json_type(v) for v in (None, True, False, 3, "a", [], {})] == [
        "null", "true", "false", "the number 3", "the string 'a'", "a list", "an object"]
    assert _json_type(10**24) == "the number 1000000000000000000...0"  # a 25-digit number is cut at 24
    expected = {
        None: "has a malformed .npy header (descr is null)",
        3: "has a malformed .npy header (descr is the number 3)",
        ">f2": "is big-endian (>f2); write little-endian float16/float32",
        ">f4": "is big-endian (>f4); write little-endian float16/float32",
        "f4": "has dtype f4 (byte order unspecified); write little-endian '<f4'",
        "=f2": "has dtype =f2 (byte order =); write little-endian '<f2'",
        "<i8": "has dtype <i8 (int64); use float16 or float32",
        "<c16": "has dtype <c16 (complex128); use float16 or float32",
        "<x4": "has dtype <x4 (unknown); use float16 or float32",
        "<i12345": "has dtype <i12345 (int9872); use float16 or float32",  # sizes read to 4 digits
        "<U5": "has dtype <U5 (str); use float16 or float32",
    }
    assert {descr: _dtype_problem(descr) for descr in expected} == expected


if __name__ == "__main__":  # rewrite bundle_corpus_messages.json from the reader's answers (review the diff)
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        problems = {case.name: _corpus_problem(case, Path(directory)) for case in BAD_BUNDLES}
    CORPUS_MESSAGES.write_text(json.dumps(problems, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(problems)} problems to {CORPUS_MESSAGES}")
