"""The dry run (``evaluation.bundles.check``), the unknown-id hint and re-reads after validation, without Django.

``check`` must report every problem of a bundle at once, each naming its member, and nothing for
a valid one; the hint for unknown ids must offer a prefix to strip only when it is certain.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from evaluation.bundles import BundleError, BundleLimits, BundleReader, _prefix_to_strip, check, unknown_ids_message
from evaluation.tests.bundle_corpus import Spec, members_of, npy_bytes, raw_members, valid_categories, write_zip
from evaluation.tests.rawzip import STORED, UNIX_DIR, Member, build_zip

SPEC = Spec(
    suite="synthetic",
    ids={
        "synthetic/aa": [f"test/good/{i:03d}.png" for i in range(4)] + [f"test/scratch/{i:03d}.png" for i in range(3)],
        "synthetic/bb": [f"test/good/{i:03d}.png" for i in range(3)] + [f"test/hole/{i:03d}.png" for i in range(2)],
    },
)
UNEXPECTED = (
    "unexpected member (a bundle holds only manifest.json and <dataset>/<category>/{ids.txt, scores.npy, "
    "maps.npy} for the suite's categories)"
)


def _problems(tmp_path: Path, members, **options) -> list[tuple[str | None, str]]:
    path = write_zip(tmp_path / "bundle.zip", members)
    return [(problem.member, str(problem)) for problem in check(path, **options)]


def _replaced(members, replacements: dict[str, bytes]):
    return [(name, replacements.get(name, data)) for name, data in members]


def test_a_valid_bundle_has_no_problem_with_or_without_the_ids(tmp_path):
    members = members_of(SPEC)
    assert _problems(tmp_path, members, suite="synthetic", expected_ids=SPEC.ids) == []
    assert _problems(tmp_path, members, suite="synthetic", expected_ids=None) == []
    assert _problems(tmp_path, members) == []
    # the method is matched without regard to case, against any of the names given
    assert _problems(tmp_path, members, expected_ids=SPEC.ids, method="CORPUS METHOD") == []
    assert _problems(tmp_path, members, expected_ids=SPEC.ids, method=["other", "corpus method"]) == []
    assert _problems(tmp_path, members, expected_ids=SPEC.ids, method=[]) == []


def test_suite_and_method_mismatches_are_both_reported_naming_the_fix(tmp_path):
    problems = _problems(tmp_path, members_of(SPEC), suite="other", expected_ids=SPEC.ids, method=["Nope", "No"])
    assert problems == [
        (
            "manifest.json",
            "manifest.json: the manifest says suite 'synthetic' but the submission is for suite 'other': choose "
            "suite 'synthetic', or make the bundle for suite 'other'",
        ),
        (
            "manifest.json",
            "manifest.json: the manifest names method 'Corpus method' but the submission is for 'Nope': choose "
            "method 'Corpus method', or change the manifest's \"method\" to 'Nope'",
        ),
    ]
    # with the suite's ids but no suite named, the manifest's suite is the one checked against
    assert _problems(tmp_path, members_of(SPEC), suite=None, expected_ids=SPEC.ids) == []


def test_missing_and_extra_categories_are_named_in_the_suite_that_was_asked_for(tmp_path):
    expected = {"synthetic/aa": SPEC.ids["synthetic/aa"], "synthetic/cc": ["test/good/000.png"]}
    problems = _problems(tmp_path, members_of(SPEC), suite="synthetic", expected_ids=expected)
    assert problems[:2] == [
        ("manifest.json", "manifest.json: missing category 'synthetic/cc' of suite 'synthetic'"),
        ("manifest.json", "manifest.json: category 'synthetic/bb' is not in suite 'synthetic'"),
    ]
    assert len(problems) == 2  # the extra category's members are the manifest's: not unexpected; aa is valid
    many = {f"synthetic/k{i:02d}": ["x"] for i in range(12)}
    (first, *_) = _problems(tmp_path, members_of(SPEC), suite="synthetic", expected_ids=many)
    shown = ", ".join(repr(key) for key in list(many)[:10])
    assert first == ("manifest.json", f"manifest.json: missing categories {shown}, ... of suite 'synthetic'")


def _category_messages(tmp_path: Path, bundle: list[str], suite: list[str]) -> list[str]:
    spec = Spec(suite="synthetic", ids={key: ["test/good/000.png"] for key in bundle})
    path = write_zip(tmp_path / "categories.zip", members_of(spec))
    return [str(p) for p in check(path, suite="synthetic", expected_ids={key: ["test/good/000.png"] for key in suite})]


KEYS = [f"synthetic/k{i:02d}" for i in range(12)]


def _listed(keys: list[str]) -> str:
    return ", ".join(repr(key) for key in keys)


@pytest.mark.parametrize("n", [1, 2, 10, 11, 12])
def test_missing_categories_list_ten_then_an_ellipsis(tmp_path, n):
    (message,) = _category_messages(tmp_path, ["synthetic/zz"], ["synthetic/zz", *KEYS[:n]])
    noun = "category" if n == 1 else "categories"
    more = ", ..." if n > 10 else ""
    assert message == f"manifest.json: missing {noun} {_listed(KEYS[:min(n, 10)])}{more} of suite 'synthetic'"


@pytest.mark.parametrize("n", [1, 2, 10, 11, 12])
def test_extra_categories_list_ten_then_an_ellipsis(tmp_path, n):
    (message,) = _category_messages(tmp_path, ["synthetic/zz", *KEYS[:n]], ["synthetic/zz"])
    noun, verb = ("category", "is") if n == 1 else ("categories", "are")
    more = ", ..." if n > 10 else ""
    assert message == f"manifest.json: {noun} {_listed(KEYS[:min(n, 10)])}{more} {verb} not in suite 'synthetic'"


def test_validate_names_the_suite_a_category_is_missing_from(tmp_path):
    path = write_zip(tmp_path / "bundle.zip", members_of(SPEC))
    expected = {**SPEC.ids, "synthetic/cc": ["test/good/000.png"]}
    with pytest.raises(BundleError) as raised, BundleReader(path) as reader:
        reader.validate(suite="synthetic", expected_ids=expected)
    assert str(raised.value) == "manifest.json: missing category 'synthetic/cc' of suite 'synthetic'"


def test_a_directory_entry_on_the_way_does_not_end_the_member_set_check(tmp_path):
    members = raw_members(SPEC)
    members.insert(1, Member("synthetic/", b"", method=STORED, external_attr=UNIX_DIR))
    members.append(Member("synthetic/aa/extra.txt", b"x"))
    path = tmp_path / "bundle.zip"
    path.write_bytes(build_zip(members))
    for expected_ids in (None, SPEC.ids):
        problems = [(p.member, str(p)) for p in check(path, suite="synthetic", expected_ids=expected_ids)]
        assert problems == [("synthetic/aa/extra.txt", f"synthetic/aa/extra.txt: {UNEXPECTED}")]


def test_a_nested_archive_does_not_end_the_member_set_check(tmp_path):
    members = [*members_of(SPEC), ("synthetic/inner.zip", b"PK"), ("synthetic/notes.txt", b"x")]
    problems = _problems(tmp_path, members, suite="synthetic", expected_ids=SPEC.ids)
    assert problems == [
        ("synthetic/inner.zip", "synthetic/inner.zip: nested archives are not allowed in a bundle"),
        ("synthetic/notes.txt", f"synthetic/notes.txt: {UNEXPECTED}"),
    ]


def test_member_set_problems_without_the_suite_ids(tmp_path):
    members = [m for m in members_of(SPEC) if not m[0].startswith("synthetic/bb/")]
    members.append(("synthetic/bb/extra.txt", b"x"))
    for expected_ids in (None, SPEC.ids):
        problems = _problems(tmp_path, members, suite="synthetic", expected_ids=expected_ids)
        assert problems == [
            ("synthetic/bb/extra.txt", f"synthetic/bb/extra.txt: {UNEXPECTED}"),
            ("synthetic/bb/ids.txt", "synthetic/bb/ids.txt: missing member"),
            ("synthetic/bb/maps.npy", "synthetic/bb/maps.npy: missing member"),
            ("synthetic/bb/scores.npy", "synthetic/bb/scores.npy: missing member"),
        ]


def test_every_array_problem_of_every_category_is_reported(tmp_path):
    members = _replaced(
        members_of(SPEC),
        {
            "synthetic/aa/scores.npy": npy_bytes(np.zeros(7, np.float64)),
            "synthetic/aa/maps.npy": npy_bytes(np.zeros((6, 64, 64), np.float32)),
            "synthetic/bb/maps.npy": npy_bytes(np.zeros((5, 8, 8), np.float32)),
        },
    )
    problems = _problems(tmp_path, members, suite="synthetic", expected_ids=SPEC.ids)
    assert [member for member, _ in problems] == [
        "synthetic/aa/scores.npy",
        "synthetic/aa/maps.npy",
        "synthetic/bb/maps.npy",
    ]
    assert problems[0][1] == "synthetic/aa/scores.npy: has dtype <f8 (float64); use float16 or float32"
    assert "6" in problems[1][1] and "7" in problems[1][1]
    assert problems[2][1] == "synthetic/bb/maps.npy: maps are 8 x 8; each side must be between 64 and 1024 pixels"


def test_an_ids_problem_does_not_hide_the_arrays_problems(tmp_path):
    members = _replaced(
        members_of(SPEC),
        {
            "synthetic/aa/ids.txt": b"C/x/test/good/000.png\n",
            "synthetic/aa/scores.npy": npy_bytes(np.zeros(7, np.float64)),
        },
    )
    problems = _problems(tmp_path, members, suite="synthetic", expected_ids=SPEC.ids)
    assert problems == [
        (
            "synthetic/aa/ids.txt",
            "synthetic/aa/ids.txt: 1 unknown id(s), e.g. 'C/x/test/good/000.png'; use the ids published for this "
            "category (one of them: 'test/good/000.png'); your ids look like published ids with the prefix 'C/x/' "
            "in front: strip it",
        ),
        ("synthetic/aa/scores.npy", "synthetic/aa/scores.npy: has dtype <f8 (float64); use float16 or float32"),
    ]


def test_an_unreadable_manifest_or_archive_is_the_only_problem(tmp_path):
    members = _replaced(members_of(SPEC), {"manifest.json": b"{"})
    problems = _problems(tmp_path, members, suite="other", expected_ids=SPEC.ids, method="x")
    assert len(problems) == 1 and problems[0][0] == "manifest.json" and "is not valid JSON" in problems[0][1]
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"this is not a zip file at all" * 10)
    (only,) = check(not_zip, suite="synthetic", expected_ids=SPEC.ids)
    assert "zip" in str(only)


def test_a_damaged_directory_entry_on_the_way_to_a_member_is_reported_once_by_name(tmp_path):
    # an empty directory entry whose CRC-32 is not that of no data: read (and refused) while the
    # member set is checked, which then stops; every other problem is still reported
    members = raw_members(SPEC)
    members.insert(1, Member("synthetic/", b"", method=STORED, external_attr=UNIX_DIR,
                             local={"crc": 0x1234ABCD}, central={"crc": 0x1234ABCD}))  # fmt: skip
    members = [m for m in members if m.name != "synthetic/bb/scores.npy"]
    path = tmp_path / "bundle.zip"
    path.write_bytes(build_zip(members))
    crc = (
        "synthetic/: CRC-32 mismatch (the data give 00000000, the archive says 1234abcd): the member is corrupt"
    )
    for expected_ids in (None, SPEC.ids):
        problems = [(p.member, str(p)) for p in check(path, suite="synthetic", expected_ids=expected_ids)]
        assert problems == [("synthetic/", crc)]
    with pytest.raises(BundleError) as raised, BundleReader(path) as reader:
        reader.validate(suite="synthetic", expected_ids=SPEC.ids)
    assert str(raised.value) == crc


def test_a_checked_reader_reports_the_same_after_a_full_read(tmp_path):
    # check() starts a fresh uncompressed budget: one spent by validate() and a re-check does not count
    members = _replaced(members_of(SPEC), {"synthetic/bb/scores.npy": npy_bytes(np.zeros(5, np.float64))})
    path = write_zip(tmp_path / "bundle.zip", members)
    declared = sum(len(data) for _, data in members)
    with BundleReader(path, limits=BundleLimits(max_uncompressed_bytes=declared)) as reader:
        first = [str(p) for p in reader.check(suite="synthetic", expected_ids=SPEC.ids)]
        again = [str(p) for p in reader.check(suite="synthetic", expected_ids=SPEC.ids)]
    assert first == again == ["synthetic/bb/scores.npy: has dtype <f8 (float64); use float16 or float32"]


def test_an_archive_over_a_limit_is_one_problem_before_any_member_is_read(tmp_path):
    members = members_of(SPEC)
    budget = sum(len(data) for name, data in members if not name.endswith("maps.npy"))
    path = write_zip(tmp_path / "bundle.zip", members)
    problems = check(path, suite="other", expected_ids=SPEC.ids, limits=BundleLimits(max_uncompressed_bytes=budget))
    assert [(p.member, str(p)) for p in problems] == [
        (None, f"the members declare 96.9 KiB uncompressed; the limit is {budget:,} bytes")
    ]


# The unknown-id hint ------------------------------------------------------------------------

VALID = ["test/good/000.png", "test/crack/001.png", "test/crack/002.png"]


@pytest.mark.parametrize(
    ("unknown", "prefix"),
    [
        (["/data/mvtec/bottle/test/good/000.png"], "/data/mvtec/bottle/"),
        (["C/x/test/good/000.png", "C/x/test/crack/001.png"], "C/x/"),  # the second cut finds it
        (["a/test/good/000.png", "b/test/crack/001.png"], None),  # two prefixes
        (["a/test/good/000.png", "a/nothing.png"], None),  # one id with no valid id inside
        (["nothing.png"], None),  # no "/" at all
        (["test/good/000.png/"], None),  # cut at the end: an empty rest is no id
        (["x//test/good/000.png"], "x//"),  # the next cut is the very next character
        ([], None),
    ],
)
def test_the_prefix_is_offered_only_when_every_unknown_id_shares_it(unknown, prefix):
    assert _prefix_to_strip(unknown, VALID) == prefix


def test_no_prefix_that_a_valid_id_itself_starts_with():
    assert _prefix_to_strip(["b/test/x.png"], ["test/x.png", "a/other.png"]) == "b/"
    # cutting "a/" leaves a valid id, but a valid id starts with "a/" too: stripping it is no safe advice
    assert _prefix_to_strip(["a/test/x.png"], ["test/x.png", "a/other.png"]) is None


def test_only_the_first_200_unknown_ids_are_examined():
    shared = ["p/test/good/000.png"] * 200
    assert _prefix_to_strip([*shared, "q/test/good/000.png"], VALID) == "p/"
    assert _prefix_to_strip([*shared, "unrelated"], VALID) == "p/"
    assert _prefix_to_strip([*shared[:199], "q/test/good/000.png"], VALID) is None


def test_unknown_id_message_exactly():
    assert unknown_ids_message(["a", "b", "c", "d"], VALID) == (
        "4 unknown id(s), e.g. 'a', 'b', 'c'; use the ids published for this category (one of them: "
        "'test/good/000.png')"
    )
    assert unknown_ids_message(["x/test/crack/002.png"], VALID) == (
        "1 unknown id(s), e.g. 'x/test/crack/002.png'; use the ids published for this category (one of them: "
        "'test/good/000.png'); your ids look like published ids with the prefix 'x/' in front: strip it"
    )
    assert unknown_ids_message(["a"], []) == "1 unknown id(s), e.g. 'a'; use the ids published for this category"


# A file that changes after validation --------------------------------------------------------


def _data_offset(path: Path, name: str) -> int:
    """Where ``name``'s (stored) bytes begin in the archive file."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    with open(path, "rb") as fp:
        fp.seek(info.header_offset)
        local = fp.read(30)
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def _poke_nan(path: Path, name: str, itemsize: int) -> None:
    """Overwrite the first value after the .npy header of stored member ``name`` with NaN, in place."""
    start = _data_offset(path, name)
    with open(path, "r+b") as fp:
        fp.seek(start + 8)
        header_len = int.from_bytes(fp.read(2), "little")
        fp.seek(start + 10 + header_len)
        fp.write(np.array([np.nan], dtype=f"<f{itemsize}").tobytes())


@pytest.mark.parametrize("fortran", [False, True], ids=["c-order", "fortran-order"])
def test_arrays_changed_after_validation_are_refused_as_they_are_read(tmp_path, fortran):
    categories = valid_categories(SPEC)
    if fortran:
        categories["synthetic/aa"]["maps"] = np.asfortranarray(categories["synthetic/aa"]["maps"])
    path = write_zip(tmp_path / "stored.zip", members_of(SPEC, categories), compression=zipfile.ZIP_STORED)
    with BundleReader(path) as reader:
        summary = reader.validate(suite=SPEC.suite, expected_ids=SPEC.ids)
        assert summary.categories["synthetic/aa"].maps_fortran_order is fortran
        scores = reader.read_scores("synthetic/aa")
        assert scores.dtype == np.float32 and np.isfinite(scores).all()
        batches = list(reader.iter_map_batches("synthetic/aa"))
        assert {maps.dtype for _, maps in batches} == {np.dtype(np.float16)}  # as stored, never widened
        assert sum(len(maps) for _, maps in batches) == len(SPEC.ids["synthetic/aa"])
        _poke_nan(path, "synthetic/aa/scores.npy", 4)
        _poke_nan(path, "synthetic/aa/maps.npy", 2)
        with pytest.raises(BundleError) as raised:
            reader.read_scores("synthetic/aa")
        assert str(raised.value) == "synthetic/aa/scores.npy: contains NaN or infinite values"
        assert raised.value.member == "synthetic/aa/scores.npy"
        with pytest.raises(BundleError) as raised:
            list(reader.iter_map_batches("synthetic/aa"))
        assert str(raised.value) == "synthetic/aa/maps.npy: contains NaN or infinite values"
        assert raised.value.member == "synthetic/aa/maps.npy"
        # the untouched category still reads
        assert np.isfinite(reader.read_scores("synthetic/bb")).all()
