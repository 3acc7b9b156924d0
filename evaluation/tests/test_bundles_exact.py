"""Exact answers of the bundle reader's small parts: the ``.npy`` header parser, dtype messages, limits' edges.

Each case pins the whole value or message (the uploader reads these), so that a changed boundary,
a cut-off length or a lost word fails a test; the corpus (``bundle_corpus.py``) covers whole archives.
"""

from __future__ import annotations

import io
import json
import lzma
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from evaluation.bundles import (
    BundleError,
    BundleLimits,
    BundleReader,
    _dtype_problem,
    _json_depth,
    _NpyHeaderSyntax,
    _parse_manifest,
    _parse_npy_dict,
    _text_problem,
    check,
)
from evaluation.tests.bundle_corpus import Spec, members_of, npy_bytes, npy_raw, valid_categories, write_zip
from evaluation.tests.rawzip import LZMA, STORED, Member, build_zip, lzma_payload

SPEC = Spec(suite="synthetic", ids={"synthetic/aa": [f"test/good/{i:03d}.png" for i in range(3)]})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 64, 64), }",
            {"descr": "<f4", "fortran_order": False, "shape": (3, 64, 64)},
        ),
        ("{'a': None, 'b': True, 'c': (3,), 'd': ()}", {"a": None, "b": True, "c": (3,), "d": ()}),
        ("{'a': " + "9" * 19 + "}", {"a": 9_999_999_999_999_999_999}),  # 19 digits: the longest integer taken
        ("{'a': 12L}", {"a": 12}),  # Python 2's long suffix, as old numpy wrote it
        ("{'a': [('x', '<f4')]}", {"a": []}),  # a structured dtype's list is skipped (then refused as such)
        ("{'a': [[]]}", {"a": []}),
        ("{'a': " + "[" * 8 + "]" * 8 + "}", {"a": []}),  # 8 levels: the deepest allowed
        ("{}   \n", {}),
    ],
)
def test_npy_header_dicts_parse_exactly(text, parsed):
    assert _parse_npy_dict(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{'a': (3 4)}", "unexpected '4'"),
        ("{'a': (3,", "the header ends early"),
        ("{'a': (3", "the header ends early"),
        ("{'a': ", "the header ends early"),
        ("{'a': 'b'", "the header ends early"),
        ("{'a': @}", "unexpected text at character 5: ' @}'"),
        ("{'a': @" + "x" * 30, "unexpected text at character 5: ' @xxxxxxxxxxxxxxxxxx'"),  # 20 characters shown
        ("{'a' '" + "b" * 25 + "'}", 'unexpected "\'bbbbbbbbbbbbb..."'),
        ("{'a': " + "9" * 20 + "}", "the integer '99999999999999999999' is too large"),
        ("{'a': " + "9" * 30 + "}", "the integer '999999999999999999...' is too large"),
        ("{'a': " + "[" * 9 + "]" * 9 + "}", "nested too deeply"),
        ("{'a': 1, 'a': 2}", "the key 'a' appears twice"),
        ("{} 1", "text follows the header dict"),
        ("{'a': {}}", "unexpected '{'"),
        ("{'a': )}", "unexpected ')'"),
        ("{1: 2}", "unexpected '1'"),
        ("('a')", "unexpected '('"),
        ("{'a': (1, 'x')}", "unexpected \"'x'\""),
        ("{'a' 1}", "unexpected '1'"),
        ("{'a': 1 'b': 2}", "unexpected \"'b'\""),
        ("{'a': (3: 4)}", "unexpected ':'"),  # only a comma separates a tuple's items
        ("{'a' , 1}", "unexpected ','"),  # only a colon follows a key
        ("{'a': 1: 'b': 2}", "unexpected ':'"),  # only a comma separates items
        ("{'a': 1]", "unexpected ']'"),
        ("{'a': (3, 4]", "unexpected ']'"),
        ("['a': 1}", "unexpected '['"),
        ("{'a': 1, 'b': 2)", "unexpected ')'"),
    ],
)
def test_npy_header_syntax_errors_say_exactly_what(text, message):
    with pytest.raises(_NpyHeaderSyntax) as raised:
        _parse_npy_dict(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("descr", "message"),
    [
        ("<f4x", "has an unsupported dtype '<f4x'; use float16 or float32"),
        ("<X4", "has dtype <X4 (unknown); use float16 or float32"),
        ("<i8", "has dtype <i8 (int64); use float16 or float32"),
        ("<u2", "has dtype <u2 (uint16); use float16 or float32"),
        ("<c16", "has dtype <c16 (complex128); use float16 or float32"),
        ("|b1", "has dtype |b1 (bool); use float16 or float32"),
        ("<S5", "has dtype <S5 (bytes); use float16 or float32"),
        ("<f8", "has dtype <f8 (float64); use float16 or float32"),
        (">f4", "is big-endian (>f4); write little-endian float16/float32"),
        ("=f2", "has dtype =f2 (byte order =); write little-endian '<f2'"),
        ("|O", "holds Python objects (pickle); only float16/float32 arrays are accepted"),
        (3, "has a malformed .npy header (descr is the number 3)"),
        ([1], "has a structured dtype; use float16 or float32"),
    ],
)
def test_dtype_problems_exactly(descr, message):
    assert _dtype_problem(descr) == message


def test_an_error_without_a_member_is_the_message_alone():
    assert str(BundleError("x")) == "x" and BundleError("x").member is None
    assert str(BundleError("x", member="m/ids.txt")) == "m/ids.txt: x"


def _validate(path, **limits):
    reader = BundleReader(path, limits=BundleLimits(**limits))
    reader.validate(suite=SPEC.suite, expected_ids=SPEC.ids)
    return reader


def test_maps_of_exactly_the_largest_and_smallest_sides_are_accepted(tmp_path):
    for shape in ((3, 64, 1024), (3, 1024, 64), (3, 64, 64)):
        categories = valid_categories(SPEC)
        categories["synthetic/aa"]["maps"] = np.zeros(shape, np.float16)
        with _validate(write_zip(tmp_path / "b.zip", members_of(SPEC, categories))) as reader:
            assert reader.summary.categories["synthetic/aa"].map_size == shape[1:]
    categories["synthetic/aa"]["maps"] = np.zeros((3, 64, 1025), np.float16)
    with pytest.raises(BundleError, match=r"maps are 64 x 1025; each side must be between 64 and 1024 pixels$"):
        _validate(write_zip(tmp_path / "b.zip", members_of(SPEC, categories)))


def test_a_shape_message_quotes_at_most_80_characters(tmp_path):
    members = [
        (
            name,
            npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "3, " * 40 + "), }")
            if name.endswith("scores.npy")
            else data,
        )
        for name, data in members_of(SPEC)
    ]
    with pytest.raises(BundleError) as raised:
        _validate(write_zip(tmp_path / "b.zip", members))
    shown = "(" + ", ".join(["3"] * 40) + ")"
    assert str(raised.value) == (f"synthetic/aa/scores.npy: has shape {shown[:75]}...); expected (N,) with N = 3")


def test_array_data_that_end_early_are_reported_as_truncated(tmp_path):
    full = npy_bytes(np.zeros(3, np.float32))
    members = [Member(name, data) for name, data in members_of(SPEC)]
    scores = next(m for m in members if m.raw_name.endswith(b"scores.npy"))
    scores.data = full[:-4]  # one value short, while both headers declare the full size (and the true CRC)
    scores.local = scores.central = {"usize": len(full)}
    path = tmp_path / "b.zip"
    path.write_bytes(build_zip(members))
    with pytest.raises(BundleError) as raised:
        _validate(path, chunk_bytes=4)
    # the short read is a content problem, so the reader reads on to the end to report the damage itself
    assert str(raised.value) == (
        f"synthetic/aa/scores.npy: truncated: the rest of the member needs 4 bytes but the data end after 0 "
        f"(the member declares {len(full)} bytes in all)"
    )


BIG = Spec(suite="synthetic", ids={"synthetic/aa": [f"test/good/{i:03d}.png" for i in range(20)]})
BIG_HEADER = npy_bytes(np.zeros((20, 1024, 1024), np.float32))[:128]  # numpy's 128-byte header, then data
BIG_SIZE = len(BIG_HEADER) + 20 * 1024 * 1024 * 4  # 80 MiB declared: more than the damage check reads on


@pytest.mark.parametrize(
    ("kept", "message"),
    [
        (5, "the .npy magic and version needs 8 bytes but the data end after 5"),
        (9, "the .npy header length needs 2 bytes but the data end after 1"),
        (20, "the .npy header needs 118 bytes but the data end after 10"),
        (128 + 1000, "the array data from unit 0 needs 8,388,608 bytes but the data end after 1,000"),
        (128 + (8 << 20) + 1000, "the array data from unit 2 needs 8,388,608 bytes but the data end after 1,000"),
    ],
    ids=["magic", "header-length", "header", "data", "second-chunk"],
)
def test_a_large_member_that_ends_early_says_what_was_being_read(tmp_path, kept, message):
    # more than 64 MiB left to read: the damage check does not read on, so the short read is the problem
    full_start = BIG_HEADER + bytes((8 << 20) + 1000)
    members = [Member(name, data) for name, data in members_of(BIG) if not name.endswith("maps.npy")]
    members.append(Member("synthetic/aa/maps.npy", full_start[:kept], local={"usize": BIG_SIZE},
                          central={"usize": BIG_SIZE}))  # fmt: skip
    path = tmp_path / "b.zip"
    path.write_bytes(build_zip(members))
    reader = BundleReader(path, limits=BundleLimits(max_compression_ratio=1e9))
    with pytest.raises(BundleError) as raised:
        reader.validate(suite=BIG.suite, expected_ids=BIG.ids)
    assert str(raised.value) == (
        f"synthetic/aa/maps.npy: truncated: {message} (the member declares {BIG_SIZE:,} bytes in all)"
    )


def test_reading_after_validation_is_not_charged_to_the_spent_budget(tmp_path):
    path = write_zip(tmp_path / "b.zip", members_of(SPEC))
    budget = sum(len(data) for _, data in members_of(SPEC))  # exactly what one validation reads
    with _validate(path, max_uncompressed_bytes=budget) as reader:
        assert len(reader.read_scores("synthetic/aa")) == 3
        assert sum(len(maps) for _, maps in reader.iter_map_batches("synthetic/aa")) == 3


def test_the_damage_check_reads_on_only_within_its_limit(tmp_path):
    members = [Member(name, data, method=0) for name, data in members_of(SPEC)]  # stored
    ids = next(m for m in members if m.raw_name.endswith(b"ids.txt"))
    ids.local = ids.central = {"crc": 0x1234}
    path = tmp_path / "b.zip"
    path.write_bytes(build_zip(members))
    with BundleReader(path) as reader:
        stream = reader._stream("synthetic/aa/ids.txt")
        stream.read_exact(1, what="a byte")
        rest = stream.remaining
        assert stream.corruption(limit=rest - 1) is None  # too much left to read: no verdict
        found = stream.corruption(limit=rest)  # exactly the limit: read on, find the damage
        assert found is not None and str(found).startswith("synthetic/aa/ids.txt: CRC-32 mismatch (the data give ")
        healthy = reader._stream("synthetic/aa/scores.npy")
        healthy.read_exact(1, what="a byte")
        assert healthy.corruption(limit=1 << 30) is None  # read to the end, nothing wrong
    with BundleReader(path) as reader:
        stream = reader._stream("synthetic/aa/ids.txt")
        reader._budget.used = reader._budget.limit - 1  # the archive's budget is all but spent
        assert stream.corruption(limit=1 << 30) is None  # the budget stops the reading: not the member's damage


# ``.npy`` headers, ids.txt and manifest text: exact messages at each boundary -----------------------


def _scores_member(data: bytes):
    return [(name, data if name == "synthetic/aa/scores.npy" else raw) for name, raw in members_of(SPEC)]


def _message(members, **limits) -> str:
    with pytest.raises(BundleError) as raised:
        _validate(write_zip(Path(tempfile.mkdtemp()) / "b.zip", members), **limits)
    return str(raised.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty; not a .npy file"),
        (b"\x93NUMPY\x01\x00\x10", "is only 9 bytes long; not a .npy file"),  # 9 bytes: too short for any header
        (b"\x93NUMPY\x01\x00\x10\x00", "truncated: its .npy header claims 16 bytes but the member holds 10 in all"),
        (
            b"\x93NUMPY\x02\x00\x10\x00",
            "truncated: the .npy header length needs 4 bytes but the member declares only 2 more",
        ),
        (b"\x93NUMPY\x03\x00\x10\x00\x00", "uses .npy format version 3.0; write version 1.0 or 2.0"),
    ],
)
def test_npy_prefix_problems_exactly(data, message):
    assert _message(_scores_member(data)) == f"synthetic/aa/scores.npy: {message}"


def test_the_npy_header_limit_is_inclusive():
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"
    values = np.zeros(3, np.float32).tobytes()
    with _validate(
        write_zip(Path(tempfile.mkdtemp()) / "b.zip", _scores_member(npy_raw(header.ljust(200), values))),
        max_npy_header_bytes=200,
    ):
        pass
    assert _message(_scores_member(npy_raw(header.ljust(201), values)), max_npy_header_bytes=200) == (
        "synthetic/aa/scores.npy: its .npy header claims 201 bytes; the limit is 200 (a numpy.save header takes "
        "about 128)"
    )


def _ids_member(text: str):
    return [(name, text.encode() if name == "synthetic/aa/ids.txt" else raw) for name, raw in members_of(SPEC)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\n" * 22, "line 1 is empty"),  # 2N + 16 lines for N = 3: split and read
        ("\n" * 21 + "x", "line 1 is empty"),  # the last line needs no newline: 22 lines too
        ("\n" * 23, "has 23 lines; the category has 3 test images (one id per line)"),
        ("\n" * 22 + "x", "has 23 lines; the category has 3 test images (one id per line)"),
        (
            "test/good/000.png\n",
            "missing 2 of the category's 3 test ids, e.g. 'test/good/001.png', 'test/good/002.png'",
        ),
    ],
)
def test_ids_txt_line_counts_and_missing_ids_exactly(text, message):
    assert _message(_ids_member(text)) == f"synthetic/aa/ids.txt: {message}"


def test_missing_ids_show_three_examples():
    spec = Spec(suite="synthetic", ids={"synthetic/aa": [f"test/good/{i:03d}.png" for i in range(6)]})
    members = [
        (n, b"test/good/000.png\ntest/good/001.png\n" if n.endswith("ids.txt") else d) for n, d in members_of(spec)
    ]
    path = write_zip(Path(tempfile.mkdtemp()) / "b.zip", members)
    with pytest.raises(BundleError) as raised, BundleReader(path) as reader:
        reader.validate(suite="synthetic", expected_ids=spec.ids)
    assert str(raised.value) == (
        "synthetic/aa/ids.txt: missing 4 of the category's 6 test ids, e.g. 'test/good/002.png', "
        "'test/good/003.png', 'test/good/004.png'"
    )


@pytest.mark.parametrize(
    ("text", "newlines", "problem"),
    [
        ("a\x1fb", False, "contains the control character '\\x1f'"),
        ("a\x7fb", False, "contains the control character '\\x7f'"),  # DEL, the first of 127..159
        ("a\x9fb", True, "contains the control character '\\x9f'"),  # the last C1 control
        ("a\xa0b", False, None),  # no-break space: text
        ("a\ud800b", False, "contains an unpaired UTF-16 surrogate"),
        ("a\udfffb", False, "contains an unpaired UTF-16 surrogate"),  # the last surrogate
        ("a\ue000b", False, None),  # the first code point after them
        ("a\tb\r\n", False, "contains the control character '\\t'"),
        ("a\tb\r\n", True, None),  # a description may hold tabs and line breaks
        ("a\u202eb", True, "contains the bidirectional control character U+202E"),
    ],
)
def test_manifest_text_problems_exactly(text, newlines, problem):
    assert _text_problem(text, newlines=newlines) == problem
    if not newlines:
        assert _text_problem(text) == problem  # the default: no line breaks allowed


# validate(): format-1 ids, progress, the layout it returns ----------------------------------------


def test_format_1_bundles_use_the_legacy_ids_or_are_refused_for_a_blind_suite(tmp_path):
    path = write_zip(tmp_path / "b.zip", members_of(SPEC))  # the corpus writes format 1: file-path ids
    opaque = {"synthetic/aa": ["id-a", "id-b", "id-c"]}
    with BundleReader(path) as reader:
        summary = reader.validate(suite="synthetic", expected_ids=opaque, legacy_ids=SPEC.ids)
        assert reader.expected_ids("synthetic/aa") == SPEC.ids["synthetic/aa"]
        assert summary.categories["synthetic/aa"].n_images == 3
    with pytest.raises(BundleError) as raised, BundleReader(path) as reader:
        reader.validate(suite="synthetic", expected_ids=SPEC.ids, allow_legacy=False)
    assert raised.value.member == "manifest.json"
    assert str(raised.value) == (
        "manifest.json: format_version 1 (file-path ids) is not accepted for suite 'synthetic', whose ground truth "
        "is not public; write format_version 2 with the ids the server publishes"
    )


def test_validate_reports_progress_and_the_layout_of_each_category(tmp_path):
    spec = Spec(
        suite="synthetic", ids={"synthetic/aa": SPEC.ids["synthetic/aa"], "synthetic/bb": ["test/good/000.png"]}
    )
    members = members_of(spec)
    calls = []
    with BundleReader(write_zip(tmp_path / "b.zip", members)) as reader:
        summary = reader.validate(suite="synthetic", expected_ids=spec.ids, progress=lambda *a: calls.append(a))
    assert calls == [(1, 2, "synthetic/aa"), (2, 2, "synthetic/bb")]
    layout = summary.categories["synthetic/aa"]
    assert (layout.key, layout.n_images, layout.map_size) == ("synthetic/aa", 3, (64, 64))
    assert (layout.scores_dtype, layout.maps_dtype) == (np.dtype("<f4"), np.dtype("<f2"))
    assert summary.uncompressed_bytes == sum(len(data) for _, data in members)
    assert summary.members == len(members)


def test_a_nan_names_its_row_and_id_from_row_0(tmp_path):
    categories = valid_categories(SPEC)
    entry = categories["synthetic/aa"]
    entry["scores"] = np.array([np.nan, 1.0, 2.0], np.float32)
    members = members_of(SPEC, categories)
    assert _message(members) == (
        f"synthetic/aa/scores.npy: contains NaN or infinite values (first at row 0, id {entry['ids'][0]!r})"
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "{'descr': '<f4', 'shape': (3,), }",
            "has a malformed .npy header (keys 'descr', 'shape'; expected 'descr', 'fortran_order' and 'shape')",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}",
            "has a malformed .npy header (keys 'descr', 'fortran_order', 'shape', 'x'; expected 'descr', "
            "'fortran_order' and 'shape')",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 1, 'shape': (3,), }",
            "has a malformed .npy header (fortran_order must be True or False)",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': 3, }",
            "has a malformed .npy header (shape must be a tuple of integers)",
        ),
    ],
)
def test_malformed_npy_headers_exactly(header, message):
    members = _scores_member(npy_raw(header, np.zeros(3, np.float32).tobytes()))
    assert _message(members) == f"synthetic/aa/scores.npy: {message}"


def test_a_member_shorter_than_its_header_promises_exactly():
    members = _scores_member(npy_bytes(np.zeros(3, np.float32))[:-4])
    assert _message(members) == (
        "synthetic/aa/scores.npy: truncated: the header promises 12 data bytes for shape (3,) but the member holds 8"
    )


def test_the_fortran_order_limit_is_inclusive(tmp_path):
    categories = valid_categories(SPEC)
    categories["synthetic/aa"]["maps"] = np.asfortranarray(categories["synthetic/aa"]["maps"])
    size = 3 * 64 * 64 * 2
    path = write_zip(tmp_path / "b.zip", members_of(SPEC, categories))
    _validate(path, max_fortran_bytes=size).close()
    with pytest.raises(BundleError, match=r"^synthetic/aa/maps\.npy: is a Fortran-order array of 24\.0 KiB"):
        _validate(path, max_fortran_bytes=size - 1)


def test_the_dry_run_names_the_row_and_id_and_goes_on_past_a_missing_member(tmp_path):
    categories = valid_categories(SPEC)
    entry = categories["synthetic/aa"]
    entry["scores"] = np.array([np.nan, 1.0, 2.0], np.float32)
    path = write_zip(tmp_path / "nan.zip", members_of(SPEC, categories))
    assert [str(p) for p in check(path, suite=None, expected_ids=SPEC.ids)] == [
        f"synthetic/aa/scores.npy: contains NaN or infinite values (first at row 0, id {entry['ids'][0]!r})"
    ]
    members = [
        (name, npy_bytes(np.zeros((3, 8, 8), np.float32)) if name.endswith("maps.npy") else data)
        for name, data in members_of(SPEC)
        if not name.endswith("scores.npy")
    ]
    problems = check(
        write_zip(tmp_path / "b.zip", members), suite=None, expected_ids={**SPEC.ids, "synthetic/zz": ["a"]}
    )
    assert [str(p) for p in problems] == [
        "manifest.json: missing category 'synthetic/zz' of suite 'synthetic'",  # no suite given: the manifest's
        "synthetic/aa/scores.npy: missing member",
        "synthetic/aa/maps.npy: maps are 8 x 8; each side must be between 64 and 1024 pixels",
    ]


def test_the_dry_run_reports_a_nan_without_an_id_when_the_ids_are_unreadable(tmp_path):
    categories = valid_categories(SPEC)
    categories["synthetic/aa"]["scores"] = np.array([1.0, np.nan, 2.0], np.float32)
    members = [(n, b"nope\n" if n.endswith("ids.txt") else d) for n, d in members_of(SPEC, categories)]
    problems = [str(p) for p in check(write_zip(tmp_path / "b.zip", members), suite="synthetic", expected_ids=SPEC.ids)]
    assert problems[1:] == ["synthetic/aa/scores.npy: contains NaN or infinite values (first at row 1)"]
    assert problems[0].startswith("synthetic/aa/ids.txt: 1 unknown id(s), e.g. 'nope'")


# The manifest: exact messages at each boundary ------------------------------------------------------

GOOD = {"format_version": 2, "method": "M", "suite": "mvtec", "categories": ["mvtec/bottle"]}


def _manifest_problem(payload: dict | str) -> str:
    raw = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
    with pytest.raises(BundleError) as raised:
        _parse_manifest(raw)
    return str(raised.value).removeprefix("manifest.json: ")


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [[1]], "b": [[1]], "c": [[1]]}', 3),
        ('{"a": "[[[{{{", "b": []}', 2),
        ("1", 0),
        ("[][]", 1),  # siblings: a closed bracket gives its level back
        ('{"a": [[], [[]]]}', 4),  # deeper after a sibling closed
    ],
)
def test_json_depth_counts_the_deepest_nesting_not_the_brackets(text, depth):
    assert _json_depth(text) == depth


def test_a_manifest_nested_16_levels_is_read_and_17_is_refused():
    def nested(levels: int) -> str:  # the object itself is level 1
        return '{"x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    assert _manifest_problem(nested(16)) == (
        "missing key(s) 'categories', 'format_version', 'method', 'suite'"
    )
    assert _manifest_problem(nested(17)) == (
        "nests JSON arrays/objects 17 levels deep; a manifest is one flat object (at most 16 levels are read)"
    )


def test_an_integer_json_cannot_convert_is_quoted_cut_to_about_80_characters():
    message = _manifest_problem('{"format_version": ' + "9" * 5000 + "}")
    assert message.startswith("is not valid JSON ('Exceeds the limit (4300 digits) for integer string conv")
    quoted = message.removeprefix("is not valid JSON (").removesuffix(")")
    assert len(quoted) == 79 and quoted.endswith("...'")  # the first 75 characters, "...", the closing quote


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        (["zz"], "'zz'"),
        ([f"k{i}" for i in range(5)], "'k0', 'k1', 'k2', 'k3', 'k4'"),
        ([f"k{i}" for i in range(6)], "'k0', 'k1', 'k2', 'k3', 'k4', ..."),
        (["k" * 38], "'" + "k" * 38 + "'"),  # 40 characters with its quotes: shown whole
        (["k" * 39], "'" + "k" * 34 + "...'"),  # 41: cut to 40
    ],
)
def test_unknown_keys_show_five_of_at_most_40_characters(extra, shown):
    assert _manifest_problem({**GOOD, **{key: 1 for key in extra}}) == f"unknown key(s) {shown}"


def test_missing_keys_are_all_named():
    assert _manifest_problem({"method": "M", "suite": "mvtec"}) == "missing key(s) 'categories', 'format_version'"


def test_an_unsupported_format_version_is_quoted_cut_to_24_characters():
    assert _manifest_problem({**GOOD, "format_version": 10**30}) == (
        "format_version 1000000000000000000...0 is not supported (this server reads versions 1 and 2; write "
        "version 2)"
    )
    assert _manifest_problem({**GOOD, "format_version": 10**23}) == (
        "format_version 100000000000000000000000 is not supported (this server reads versions 1 and 2; write "
        "version 2)"
    )


def test_method_and_suite_lengths_at_their_limits():
    assert _parse_manifest(json.dumps({**GOOD, "method": " " + "m" * 120 + " "}).encode()).method == "m" * 120
    assert _manifest_problem({**GOOD, "method": "m" * 121}) == (
        "method must be a non-empty string of at most 120 characters, got 121 characters"
    )
    assert _parse_manifest(json.dumps({**GOOD, "suite": "S" * 64}).encode()).suite == "S" * 64
    assert _manifest_problem({**GOOD, "suite": "s" * 65}) == (
        f"suite must be a suite key such as 'mvtec' or 'vadi', got the string '{'s' * 54}...'"
    )
    assert _parse_manifest(json.dumps({**GOOD, "suite": "MVTec-AD_2.v1"}).encode()).suite == "MVTec-AD_2.v1"


@pytest.mark.parametrize(("given", "kept"), [({}, ""), ({"description": None}, ""), ({"description": "a\nb"}, "a\nb")])
def test_the_description_is_kept_and_empty_when_absent_or_null(given, kept):
    manifest = _parse_manifest(json.dumps({**GOOD, **given}).encode())
    assert manifest.description == kept and manifest.method == "M" and manifest.categories == ("mvtec/bottle",)


def test_finishing_a_member_before_its_end_names_the_trailing_bytes(tmp_path):
    path = write_zip(tmp_path / "b.zip", members_of(SPEC))
    with BundleReader(path) as reader:
        reader.read_manifest()
        stream = reader._stream("synthetic/aa/ids.txt")
        stream.read_exact(3, what="three bytes")
        with pytest.raises(BundleError) as raised:
            stream.finish()
    left = stream.entry.file_size - 3
    assert str(raised.value) == (
        f"synthetic/aa/ids.txt: holds {left:,} bytes more than its content needs (trailing data)"
    )
    assert raised.value.member == "synthetic/aa/ids.txt"


# Compressed members: how a stream ends, and what follows it ----------------------------------------

IDS_NAME = "synthetic/aa/ids.txt"
IDS = dict(members_of(SPEC))[IDS_NAME]


def _ids_problem(tmp_path: Path, member: Member) -> BundleError | None:
    """Validate SPEC's bundle with ``member`` as its ids.txt: the problem raised, or None."""
    members = [member if m.raw_name == IDS_NAME.encode() else m for m in (Member(n, d) for n, d in members_of(SPEC))]
    path = tmp_path / "ids.zip"
    path.write_bytes(build_zip(members))
    try:
        _validate(path).close()
    except BundleError as problem:
        assert problem.member == IDS_NAME
        return problem
    return None


def _deflate(data: bytes, flush: int = zlib.Z_FINISH) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush(flush)


def test_a_deflate_stream_without_its_final_block_does_not_end(tmp_path):
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, payload=_deflate(IDS, zlib.Z_SYNC_FLUSH)))
    assert str(problem) == f"{IDS_NAME}: truncated or corrupt deflate data (the compressed stream does not end)"


def test_compressed_bytes_after_the_stream_are_counted_read_or_not(tmp_path):
    # 100,000 bytes: part of them already read with the stream's end (unused data), the rest not yet read
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, payload=_deflate(IDS) + bytes(100_000)))
    assert str(problem) == f"{IDS_NAME}: 100,000 bytes of compressed data follow the end of its stream"


def test_undecodable_deflate_data_are_named_with_the_decoder_error(tmp_path):
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, payload=b"\xff" * 16))
    assert str(problem) == (
        f"{IDS_NAME}: corrupt deflate data (error: Error -3 while decompressing data: invalid block type)"
    )


def test_a_decoder_error_after_the_last_byte_is_found_when_the_member_is_finished(tmp_path):
    # the data, then empty blocks filling the first 64 KiB input chunk exactly, then a block of the
    # reserved type: every byte of the member is produced before the bad block is read
    stream = _deflate(IDS, zlib.Z_SYNC_FLUSH)  # ends byte-aligned
    stored = b"\x00\x00\x00\xff\xff"  # an empty stored block (BFINAL 0, LEN 0, NLEN 0xffff): 5 bytes
    fixed_then_stored = b"\x02\x00\x00\x00\xff\xff"  # an empty fixed-Huffman block, then one stored: 6 bytes
    pad = 64 * 1024 - len(stream)
    sixes = next(b for b in range(5) if (pad - 6 * b) % 5 == 0)
    stream += fixed_then_stored * sixes + stored * ((pad - 6 * sixes) // 5)
    assert len(stream) == 64 * 1024 and zlib.decompressobj(-15).decompress(stream) == IDS
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, payload=stream + b"\xff" * 16))
    assert str(problem) == (
        f"{IDS_NAME}: corrupt deflate data (error: Error -3 while decompressing data: invalid block type)"
    )


def _marker_less_lzma(data: bytes) -> bytes:
    """The zip LZMA payload of ``data`` without its end-of-stream marker: the shortest prefix of the
    raw stream that still decodes to every byte (found with the lzma module itself)."""
    payload = lzma_payload(data)
    header, raw = payload[:9], payload[9:]
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 16, "lc": 3, "lp": 0, "pb": 2}]
    for cut in range(len(raw) - 1, 0, -1):
        decoder = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
        if decoder.decompress(raw[:cut], len(data)) != data or decoder.eof:
            return header + raw[: cut + 1]
    raise AssertionError("no marker-less prefix")


def test_lzma_without_an_end_marker_is_accepted_only_when_its_flag_says_so(tmp_path):
    payload = _marker_less_lzma(IDS)
    no_marker = {"flags": 0}  # general-purpose bit 1 clear: the stream may end without the marker
    assert _ids_problem(tmp_path, Member(IDS_NAME, IDS, method=LZMA, payload=payload, local=no_marker,
                                          central=no_marker)) is None  # fmt: skip
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, method=LZMA, payload=payload))  # bit 1 set
    assert str(problem) == f"{IDS_NAME}: truncated or corrupt lzma data (the compressed stream does not end)"


def test_an_lzma_member_without_compressed_bytes_is_too_short_for_its_header(tmp_path):
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, method=LZMA, payload=b""))
    assert str(problem) == f"{IDS_NAME}: corrupt LZMA data (too short for its header)"


def test_an_archive_cut_short_after_validation_says_so_when_read(tmp_path):
    path = write_zip(tmp_path / "stored.zip", members_of(SPEC), compression=0)
    with _validate(path) as reader:
        size = path.stat().st_size
        with open(path, "r+b") as fp:
            fp.truncate(size // 2)  # the maps member's data are past the middle
        with pytest.raises(BundleError) as raised:
            list(reader.iter_map_batches("synthetic/aa"))
    assert str(raised.value) == "synthetic/aa/maps.npy: the archive changed or ended while it was read (truncated?)"
    assert raised.value.member == "synthetic/aa/maps.npy"


def test_the_manifest_may_be_exactly_its_limit(tmp_path):
    manifest = dict(members_of(SPEC))["manifest.json"]
    path = write_zip(tmp_path / "b.zip", members_of(SPEC))
    _validate(path, max_manifest_bytes=len(manifest)).close()
    with pytest.raises(BundleError) as raised:
        _validate(path, max_manifest_bytes=len(manifest) - 1)
    assert str(raised.value) == (
        f"manifest.json: is {len(manifest)} bytes; the limit for this member is {len(manifest) - 1} bytes"
    )


def test_a_bad_local_header_signature_names_its_member(tmp_path):
    data = bytearray(build_zip([Member(n, d) for n, d in members_of(SPEC)]))
    second = data.find(b"PK\x03\x04", 4)  # the local header of the second member: ids.txt
    data[second : second + 4] = b"PK\x03\x05"
    path = tmp_path / "b.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as raised:
        _validate(path)
    assert str(raised.value) == f"{IDS_NAME}: bad local header signature (corrupt zip archive)"
    assert raised.value.member == IDS_NAME


# Local headers: each disagreement with the central directory, named exactly -----------------------


def _ids_local_header_problem(tmp_path: Path, patch=None, **fields) -> str:
    """Validate SPEC's bundle whose ids.txt member has ``fields`` (rawzip.Member) and ``patch(data, start,
    next_start)`` applied to the archive's bytes; the problem's text (its member checked)."""
    members = [Member(n, d, **(fields if n == IDS_NAME else {})) for n, d in members_of(SPEC)]
    data = bytearray(build_zip(members))
    if patch is not None:
        start = data.find(b"PK\x03\x04", 4)  # ids.txt is the second member
        patch(data, start, data.find(b"PK\x03\x04", start + 4))
    path = tmp_path / "local.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as raised:
        _validate(path)
    assert raised.value.member == IDS_NAME
    return str(raised.value).removeprefix(f"{IDS_NAME}: ")


def _extra_len_reaching(data: bytearray, start: int, next_start: int) -> None:
    name_len = int.from_bytes(data[start + 26 : start + 28], "little")
    reach = next_start - (start + 30 + name_len) + 1  # one byte into the next local header
    data[start + 28 : start + 30] = reach.to_bytes(2, "little")


def test_a_local_header_one_byte_into_the_next_record(tmp_path):
    assert _ids_local_header_problem(tmp_path, _extra_len_reaching) == (
        "its local header runs into the next record (overlapping or corrupt entries)"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"local_name": b"synthetic/aa/idz.txt"},
            "its local header names it 'synthetic/aa/idz.txt'; the central directory and the local header must "
            "agree on every name",
        ),
        (
            {"local_extra": struct.pack("<2HB", 0x7075, 5 + 5, 1) + bytes(4) + b"other"},
            "the Unicode-path extra field of its local header names another file than its header (ambiguous name)",
        ),
        (
            {"local_extra": struct.pack("<2H", 0x9901, 7) + b"\x02\x00AE\x03\x08\x00"},  # an AES record
            "encrypted members are not allowed",
        ),
        (
            {"local": {"usize": 0xFFFFFFFF}},
            "its local header marks uncompressed size, compressed size as zip64 (0xFFFFFFFF) but has no zip64 extra "
            "field",
        ),
        (
            {"local": {"usize": 0xFFFFFFFF}, "local_extra": struct.pack("<2HQ", 0x0001, 8, len(IDS))},
            "the zip64 extra field of its local header is too short for its compressed size",
        ),
    ],
    ids=["name", "unicode-path", "aes", "zip64-missing", "zip64-short"],
)
def test_local_header_disagreements_are_named_exactly(tmp_path, fields, message):
    assert _ids_local_header_problem(tmp_path, **fields) == message


def test_method_99_alone_marks_an_encrypted_member(tmp_path):
    # WinZip AES: method 99, here without the encryption flag bit and without the AES extra record
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, method=99, payload=IDS))
    assert str(problem) == f"{IDS_NAME}: encrypted members are not allowed"


# Zip structure at its edges: names, extra fields, attributes, ratios -------------------------------


def _with_extra_member(tmp_path: Path, member: Member, **limits) -> str | None:
    """Validate SPEC's bundle plus ``member``: the problem's text, or None (the extra member is then
    refused as unexpected, which shows its name and headers passed every structural check)."""
    data = build_zip([*(Member(n, d) for n, d in members_of(SPEC)), member])
    path = tmp_path / "extra.zip"
    path.write_bytes(data)
    with pytest.raises(BundleError) as raised:
        _validate(path, **limits)
    return raised.value.member, str(raised.value)


UNEXPECTED_TAIL = (
    "unexpected member (a bundle holds only manifest.json and <dataset>/<category>/{ids.txt, scores.npy, "
    "maps.npy} for the suite's categories)"
)


NAME_23 = "synthetic/" + "z" * 9 + ".txt"  # as long as the bundle's longest name, synthetic/aa/scores.npy


@pytest.mark.parametrize(
    ("name", "limit", "member", "message"),
    [
        (NAME_23.encode(), 23, NAME_23, f"{NAME_23}: {UNEXPECTED_TAIL}"),  # at the limit
        (
            b"synthetic/" + b"z" * 10 + b".txt",
            23,
            "synthetic/zzzzzzzzzz.txt...",
            "synthetic/zzzzzzzzzz.txt...: member name is 24 bytes long; the limit is 23",
        ),
        (
            b"synthetic/\x80.txt",
            255,
            "synthetic/\\x80.txt",
            "synthetic/\\x80.txt: member name contains non-ASCII characters; names are ASCII letters, digits, '.', "
            "'_', '-' and '/'",
        ),
        (b"c:/x.txt", 255, "c:/x.txt", "c:/x.txt: absolute member name 'c:/x.txt' is not allowed"),
        (b"syn//X", 255, "syn//X", "syn//X: member name 'syn//X' has an empty or '.' path component"),
    ],
    ids=["name-at-limit", "name-over-limit", "byte-128", "lower-case-drive", "empty-component-before-X"],
)
def test_member_names_at_their_edges(tmp_path, name, limit, member, message):
    assert _with_extra_member(tmp_path, Member(name, b"x"), max_name_bytes=limit) == (member, message)


@pytest.mark.parametrize("length", [120, 121, 130])
def test_a_differing_local_name_is_quoted_whole_up_to_120_characters(tmp_path, length):
    local = ("synthetic/" + "n" * length)[:length].encode()
    problem = _ids_problem(tmp_path, Member(IDS_NAME, IDS, local_name=local))
    shown = local.decode() if length <= 120 else local.decode()[:115] + "..."
    assert str(problem) == (
        f"{IDS_NAME}: its local header names it {shown!r}; the central directory and the local header must agree "
        "on every name"
    )


@pytest.mark.parametrize(
    ("central_extra", "problem"),
    [
        (struct.pack("<2H", 0x5455, 0), None),  # a record of size 0: exactly its 4-byte header
        (struct.pack("<2HB", 0x5455, 1, 0) + b"\x01\x02", "ends with 2 stray bytes"),  # after a record
        (struct.pack("<2H", 0x5455, 3) + b"\x01\x02", "is malformed (record 0x5455 runs past its end)"),  # by 1
    ],
    ids=["empty-record", "stray-after-record", "overrun-by-one"],
)
def test_extra_fields_tile_exactly(tmp_path, central_extra, problem):
    got = _ids_problem(tmp_path, Member(IDS_NAME, IDS, central_extra=central_extra))
    if problem is None:
        assert got is None
    else:
        assert str(got) == f"{IDS_NAME}: the extra field of its central directory entry {problem}"


def test_a_unicode_path_record_followed_by_another_is_read_to_its_own_end(tmp_path):
    unicode_path = struct.pack("<2HB", 0x7075, 5 + len(IDS_NAME), 1) + bytes(4) + IDS_NAME.encode()
    timestamp = struct.pack("<2HB", 0x5455, 1, 0)
    assert _ids_problem(tmp_path, Member(IDS_NAME, IDS, central_extra=unicode_path + timestamp)) is None
    # the same agreeing record in the local header is accepted there too
    assert _ids_problem(tmp_path, Member(IDS_NAME, IDS, local_extra=unicode_path + timestamp)) is None


def test_a_zip64_disk_number_alone_is_read_from_its_4_bytes(tmp_path):
    zip64_disk = struct.pack("<2HL", 0x0001, 4, 0)  # only the disk number is marked (0xFFFF): 4 bytes
    member = Member(IDS_NAME, IDS, central={"disk": 0xFFFF}, central_extra=zip64_disk)
    assert _ids_problem(tmp_path, member) is None


@pytest.mark.parametrize(
    ("external_attr", "problem"),
    [
        (0x10, "is marked as a directory but its name does not end with '/'"),  # MS-DOS directory bit alone
        (0x01, None),  # MS-DOS read-only bit: a plain file
    ],
)
def test_ms_dos_attributes(tmp_path, external_attr, problem):
    got = _ids_problem(tmp_path, Member(IDS_NAME, IDS, external_attr=external_attr, made_by=20))
    assert (None if got is None else str(got)) == (None if problem is None else f"{IDS_NAME}: {problem}")


def test_the_compression_ratio_limit_is_inclusive(tmp_path):
    data = bytes(4096)
    payload = _deflate(data)
    ratio = len(data) / len(payload)
    name = "synthetic/zeros.bin"
    at_limit = _with_extra_member(tmp_path, Member(name, data, payload=payload), max_compression_ratio=ratio,
                                  ratio_min_bytes=len(data))  # fmt: skip
    assert at_limit == (name, f"{name}: {UNEXPECTED_TAIL}")
    over = _with_extra_member(tmp_path, Member(name, data, payload=payload), max_compression_ratio=ratio - 0.01,
                              ratio_min_bytes=len(data))  # fmt: skip
    assert over == (name, f"{name}: compression ratio {ratio:,.0f}:1 exceeds the limit of {ratio - 0.01:,.0f}:1 "
                          "(zip bomb?)")  # fmt: skip


@pytest.mark.parametrize("size", [2000, 3000])
def test_a_ratio_over_one_compressed_byte_is_computed_against_that_byte(tmp_path, size):
    name = "synthetic/one.bin"
    member = Member(name, bytes(size), payload=b"\x00", central={"csize": 1}, local={"csize": 1})
    assert _with_extra_member(tmp_path, member, ratio_min_bytes=1000) == (
        name, f"{name}: compression ratio {size:,}:1 exceeds the limit of 1,100:1 (zip bomb?)"
    )


def _patch_last_central(data: bytearray, offset: int, value: int) -> None:
    start = data.rfind(b"PK\x01\x02")
    data[start + offset : start + offset + 2] = value.to_bytes(2, "little")


def test_the_last_central_entry_one_byte_past_the_directory(tmp_path):
    members = [Member(n, d) for n, d in members_of(SPEC)]
    members[-1].central_extra = struct.pack("<2HB", 0x5455, 1, 0)
    data = bytearray(build_zip(members))
    _patch_last_central(data, 32, 1)  # comment length 1: the entry now ends one byte into the end record
    path = tmp_path / "cd.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as raised:
        _validate(path)
    assert str(raised.value) == "central directory entry 4 runs past the central directory (corrupt)"


def test_a_bad_central_signature_names_the_entry_by_its_position(tmp_path):
    data = bytearray(build_zip([Member(n, d) for n, d in members_of(SPEC)]))
    first = data.find(b"PK\x01\x02")
    third = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02", first + 4) + 4)
    data[third : third + 4] = b"PK\x01\x09"
    path = tmp_path / "cd.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as raised:
        _validate(path)
    assert str(raised.value) == "bad signature in central directory entry 3 (corrupt zip archive)"


# Limits and the reader's own file handling ---------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"max_members": 0}, "bundle limit max_members must be a positive integer, got 0"),
        ({"chunk_bytes": -1}, "bundle limit chunk_bytes must be a positive integer, got -1"),
        ({"max_bytes": True}, "bundle limit max_bytes must be a positive integer, got True"),
        ({"max_bytes": 1.5}, "bundle limit max_bytes must be a positive integer, got 1.5"),
        ({"max_compression_ratio": 0.99}, "bundle limit max_compression_ratio must be >= 1, got 0.99"),
        ({"max_compression_ratio": True}, "bundle limit max_compression_ratio must be >= 1, got True"),
        ({"max_compression_ratio": "9"}, "bundle limit max_compression_ratio must be >= 1, got '9'"),
        ({"min_map_side": 65, "max_map_side": 64}, "bundle limit min_map_side must not exceed max_map_side"),
    ],
)
def test_limits_refused_exactly(given, message):
    with pytest.raises(ValueError) as raised:
        BundleLimits(**given)
    assert str(raised.value) == message


def test_the_smallest_limits_are_accepted():
    limits = BundleLimits(max_members=1, chunk_bytes=1, max_compression_ratio=1, min_map_side=64, max_map_side=64)
    assert (limits.max_members, limits.chunk_bytes, limits.max_compression_ratio) == (1, 1, 1)
    assert BundleLimits(max_compression_ratio=1.5).max_compression_ratio == 1.5


def test_a_reader_of_a_caller_file_puts_it_back_and_tolerates_it_closed(tmp_path):
    handle = io.BytesIO(write_zip(tmp_path / "b.zip", members_of(SPEC)).read_bytes())
    handle.seek(5)
    reader = BundleReader(handle)
    assert reader.read_manifest().suite == SPEC.suite  # read from the archive's start
    reader.close()
    assert handle.tell() == 5  # where the caller left it
    reader = BundleReader(handle)
    handle.close()
    reader.close()  # the caller closed it first: nothing to put back, no error


def _layout_problem(tmp_path: Path, members: list[Member], **zip_options) -> tuple[str | None, str]:
    path = tmp_path / "layout.zip"
    path.write_bytes(build_zip(members, **zip_options))
    with pytest.raises(BundleError) as raised:
        _validate(path)
    return raised.value.member, str(raised.value)


def test_bytes_before_a_first_member_that_looks_like_a_zip(tmp_path):
    members = [Member(n, d) for n, d in members_of(SPEC)]
    assert _layout_problem(tmp_path, members, prefix=b"PK\x03\x04" + bytes(10)) == (
        "manifest.json",
        "manifest.json: 14 unaccounted bytes precede the first member (prepended data is not allowed)",
    )


@pytest.mark.parametrize("index", [1, -1], ids=["middle", "last"])
def test_data_declared_longer_than_the_gap_to_the_next_record(tmp_path, index):
    members = [Member(n, d, method=STORED) for n, d in members_of(SPEC)]
    grown = members[index]
    size = len(grown.data) + 5
    grown.local = grown.central = {"csize": size, "usize": size}
    name = grown.raw_name.decode()
    assert _layout_problem(tmp_path, members) == (
        name, f"{name}: its data run past the start of the next record (overlapping, truncated or corrupt archive)"
    )


def test_a_streamed_member_whose_local_header_keeps_a_wrong_value(tmp_path):
    members = [Member(n, d) for n, d in members_of(SPEC)]
    members[1] = Member(IDS_NAME, IDS, descriptor="plain", local={"crc": 0x1234})  # neither 0 nor the true CRC
    assert _layout_problem(tmp_path, members) == (
        IDS_NAME, f"{IDS_NAME}: its local header and central directory disagree on the CRC or sizes"
    )


def test_an_archive_of_exactly_the_size_limit_is_read(tmp_path):
    path = write_zip(tmp_path / "b.zip", members_of(SPEC))
    size = path.stat().st_size
    _validate(path, max_bytes=size).close()
    with pytest.raises(BundleError) as raised:
        _validate(path, max_bytes=size - 1)
    assert str(raised.value) == f"the archive is {size / 1024:,.1f} KiB; the limit is {(size - 1) / 1024:,.1f} KiB"


@pytest.mark.parametrize("magic", [b"PK00", b"PK\x07\x08"])
def test_a_spanned_archive_marker_is_named(tmp_path, magic):
    path = tmp_path / "spanned.zip"
    path.write_bytes(magic + write_zip(tmp_path / "b.zip", members_of(SPEC)).read_bytes())
    with pytest.raises(BundleError) as raised:
        _validate(path)
    assert str(raised.value) == "the archive is split or spanned over several files; upload one plain zip archive"


# End records: the archive comment, counts, disks --------------------------------------------------


def _archive_problem(data: bytes, **limits) -> str | None:
    try:
        with BundleReader(io.BytesIO(data), limits=BundleLimits(**limits)) as reader:
            reader.validate(suite=SPEC.suite, expected_ids=SPEC.ids)
    except BundleError as problem:
        return str(problem)
    return None


def _members() -> list[Member]:
    return [Member(n, d) for n, d in members_of(SPEC)]


def test_an_archive_comment_of_the_greatest_length_is_read():
    # 65,535 bytes: the end record starts at the very first byte searched
    assert _archive_problem(build_zip(_members(), comment=b"c" * 65535)) is None


def test_a_signature_too_close_to_the_end_for_a_record_is_trailing_data():
    assert _archive_problem(build_zip(_members()) + b"PK\x05\x06") == (
        "4 bytes follow the end of the zip archive; trailing data is not allowed (remove them)"
    )


def test_the_member_count_limit_is_inclusive():
    assert _archive_problem(build_zip(_members()), max_members=4) is None
    assert _archive_problem(build_zip(_members()), max_members=3) == "the archive has 4 members; the limit is 3"


@pytest.mark.parametrize("field", ["disk", "cd_disk"])
def test_either_disk_number_alone_marks_a_spanned_archive(field):
    assert _archive_problem(build_zip(_members(), eocd={field: 1})) == (
        "the archive spans several disks (split or spanned zip archives are not supported)"
    )


def test_a_central_directory_one_byte_longer_than_the_room_before_its_end_record():
    data = build_zip(_members())
    cd_size = struct.unpack_from("<L", data, data.rfind(b"PK\x05\x06") + 12)[0]
    assert _archive_problem(build_zip(_members(), eocd={"cd_size": cd_size + 1})) == (
        "the central directory runs past its end record (corrupt or truncated zip archive)"
    )


def test_a_local_header_then_an_end_record_of_no_entries_holds_no_members():
    data = b"PK\x03\x04" + bytes(26) + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0, 0, 0, 30, 0)
    assert _archive_problem(data) == "the zip archive holds no members (manifest.json is missing)"
