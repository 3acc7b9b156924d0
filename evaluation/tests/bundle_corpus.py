"""A corpus of bad bundles: one per failure mode the reader must catch, each with its message.

Every case starts from a valid bundle for a :class:`Spec` (suite key, category keys and their
test ids) and breaks one thing, writing the zip with low-level ``zipfile`` calls so that names,
headers and contents can be anything. ``BAD_BUNDLES`` lists the cases; each knows the message
(a regular expression) the reader must raise and any tightened limits it needs to stay small.

Used by ``test_bundles.py`` (reader only) and ``test_submissions*.py`` (through the service
and a real worker, against ground truth on disk).
"""

from __future__ import annotations

import io
import json
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from algorithms.bundle import write_bundle


@dataclass(frozen=True)
class Spec:
    """What a bundle is for: the suite key and, per category, the server's test ids (in its order)."""

    suite: str
    ids: dict[str, list[str]]
    method: str = "Corpus method"
    map_size: tuple[int, int] = (64, 64)
    seed: int = 0


def valid_categories(spec: Spec) -> dict[str, dict]:
    """Per category ``{"ids", "scores", "maps"}`` with rows in a shuffled (not the server's) order."""
    rng = np.random.default_rng(spec.seed)
    out = {}
    for key, ids in spec.ids.items():
        order = rng.permutation(len(ids))
        out[key] = {
            "ids": [ids[i] for i in order],
            "scores": rng.random(len(ids)).astype(np.float32),
            "maps": rng.random((len(ids), *spec.map_size)).astype(np.float16),
        }
    return out


def write_valid(path: Path, spec: Spec, categories: dict[str, dict] | None = None) -> Path:
    return write_bundle(
        path, method=spec.method, suite=spec.suite, categories=categories or valid_categories(spec)
    )


def npy_bytes(array: np.ndarray, *, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def manifest_bytes(spec: Spec, **changes) -> bytes:
    payload = {"format_version": 1, "method": spec.method, "suite": spec.suite, "categories": list(spec.ids)}
    for key, value in changes.items():
        if value is _DROP:
            payload.pop(key)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


_DROP = object()


def members_of(spec: Spec, categories: dict[str, dict] | None = None) -> list[tuple[str, bytes]]:
    """The valid bundle's members as ``(name, bytes)``, manifest first."""
    categories = categories or valid_categories(spec)
    members = [("manifest.json", manifest_bytes(spec))]
    for key, entry in categories.items():
        members.append((f"{key}/ids.txt", "".join(f"{i}\n" for i in entry["ids"]).encode()))
        members.append((f"{key}/scores.npy", npy_bytes(entry["scores"])))
        members.append((f"{key}/maps.npy", npy_bytes(entry["maps"])))
    return members


def write_zip(path: Path, members: list, *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write ``members`` (``(name, bytes)`` or ``(ZipInfo, bytes)``) verbatim, duplicates included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point of one case
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in members:
                if isinstance(name, zipfile.ZipInfo):
                    info = name
                else:
                    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                    info.compress_type = compression
                zf.writestr(info, data)
    return path


def _replace(members: list, name: str, data: bytes | None) -> list:
    """Members with ``name``'s data replaced (or the member dropped when ``data`` is None)."""
    out = []
    for member, content in members:
        if member == name:
            if data is not None:
                out.append((member, data))
        else:
            out.append((member, content))
    return out


def _first(spec: Spec) -> str:
    return next(iter(spec.ids))


# Builders ---------------------------------------------------------------------------------------
# Each takes (path, spec) and returns the path of the bad bundle it wrote.


def _not_zip(path: Path, spec: Spec) -> Path:
    path.write_bytes(b"this is not a zip archive at all\n" * 10)
    return path


def _empty_file(path: Path, spec: Spec) -> Path:
    path.write_bytes(b"")
    return path


def _empty_zip(path: Path, spec: Spec) -> Path:
    return write_zip(path, [])


def _truncated_zip(path: Path, spec: Spec) -> Path:
    write_valid(path, spec)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_central_directory(path: Path, spec: Spec) -> Path:
    write_valid(path, spec)
    data = bytearray(path.read_bytes())
    start = data.rfind(b"PK\x01\x02")  # the last central directory entry: garble its fields
    data[start + 4 : start + 46] = b"\xff" * 42
    path.write_bytes(bytes(data))
    return path


def _crc_mismatch(path: Path, spec: Spec) -> Path:
    members = members_of(spec)
    write_zip(path, members, compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    target = npy_bytes(valid_categories(spec)[_first(spec)]["maps"])
    at = data.find(target[200:264])  # inside the first category's map data
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _zip_bomb(path: Path, spec: Spec, *, compression: int = zipfile.ZIP_BZIP2) -> Path:
    """maps.npy of zeros at 1024 x 1024: bzip2 packs 2 MiB per image into a few dozen bytes."""
    key = _first(spec)
    bomb = np.zeros((len(spec.ids[key]), 1024, 1024), dtype=np.float16)
    members = [(n, d) for n, d in members_of(spec) if n != f"{key}/maps.npy"]
    info = zipfile.ZipInfo(f"{key}/maps.npy", date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = compression
    return write_zip(path, [*members, (info, npy_bytes(bomb))])


def _deflate_bomb(path: Path, spec: Spec) -> Path:
    return _zip_bomb(path, spec, compression=zipfile.ZIP_DEFLATED)


def _overlapping_entries(path: Path, spec: Spec) -> Path:
    """Two central-directory entries pointing at the same local header (the overlapped-entry bomb)."""
    key = _first(spec)
    members = [(f"{key}/ids.txt", b"a" * 4000), (f"{key}/idz.txt", b"b" * 4000)]
    write_zip(path, members, compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    first = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", first + 4)
    offset = struct.unpack_from("<L", data, first + 42)[0]
    struct.pack_into("<L", data, second + 42, offset)
    path.write_bytes(bytes(data))
    return path


def _lying_sizes(path: Path, spec: Spec) -> Path:
    """The central directory declares 100 bytes for maps.npy; the data are much longer."""
    key = _first(spec)
    write_zip(path, members_of(spec), compression=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    name = f"{key}/maps.npy".encode()
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + n] == name:
            struct.pack_into("<L", data, pos + 24, 100)  # uncompressed size
            break
        pos += 4
    path.write_bytes(bytes(data))
    return path


def _with_member(name: str, data: bytes = b"x") -> Callable[[Path, Spec], Path]:
    def build(path: Path, spec: Spec) -> Path:
        return write_zip(path, [*members_of(spec), (name, data)])

    return build


def _symlink(path: Path, spec: Spec) -> Path:
    info = zipfile.ZipInfo(f"{_first(spec)}/ids.txt", date_time=(2024, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    members = [m for m in members_of(spec) if m[0] != f"{_first(spec)}/ids.txt"]
    return write_zip(path, [*members, (info, b"/etc/passwd")])


def _duplicate_member(path: Path, spec: Spec) -> Path:
    members = members_of(spec)
    return write_zip(path, [*members, members[1]])


def _member_data(name_suffix: str, make: Callable[[Spec, dict], bytes | None]) -> Callable[[Path, Spec], Path]:
    def build(path: Path, spec: Spec) -> Path:
        categories = valid_categories(spec)
        key = _first(spec)
        data = make(spec, categories[key])
        return write_zip(path, _replace(members_of(spec, categories), f"{key}/{name_suffix}", data))

    return build


def _manifest(make: Callable[[Spec], bytes]) -> Callable[[Path, Spec], Path]:
    def build(path: Path, spec: Spec) -> Path:
        return write_zip(path, _replace(members_of(spec), "manifest.json", make(spec)))

    return build


def _ids_text(entry: dict, ids: list[str]) -> bytes:
    return "".join(f"{i}\n" for i in ids).encode()


def _nan_in_maps(spec: Spec, entry: dict) -> bytes:
    maps = entry["maps"].copy()
    maps[2, 5, 7] = np.nan
    return npy_bytes(maps)


def _inf_in_scores(spec: Spec, entry: dict) -> bytes:
    scores = entry["scores"].copy()
    scores[1] = np.inf
    return npy_bytes(scores)


def _object_array(spec: Spec, entry: dict) -> bytes:
    objects = np.empty(len(entry["ids"]), dtype=object)
    objects[:] = [{"payload": i} for i in range(len(objects))]
    return npy_bytes(objects)


@dataclass(frozen=True)
class BadBundle:
    name: str
    message: str  # a regular expression the BundleError message must match
    build: Callable[[Path, Spec], Path]
    limits: dict = field(default_factory=dict)  # BundleLimits overrides needed by the case


BAD_BUNDLES: tuple[BadBundle, ...] = (
    BadBundle("not_a_zip", r"not a zip archive", _not_zip),
    BadBundle("empty_file", r"the archive is empty", _empty_file),
    BadBundle("empty_zip", r"holds no members", _empty_zip),
    BadBundle("truncated_zip", r"corrupt or truncated zip archive", _truncated_zip),
    BadBundle("corrupt_zip", r"corrupt|truncated|bad local header|central directory", _corrupt_central_directory),
    BadBundle("crc_mismatch", r"maps\.npy: CRC-32 mismatch", _crc_mismatch),
    BadBundle("zip_bomb", r"maps\.npy: compression ratio .* exceeds the limit of 1,100:1", _zip_bomb),
    BadBundle(
        "deflate_bomb_with_tight_ratio",
        r"maps\.npy: compression ratio 1,0\d\d:1 exceeds the limit of 100:1",
        _deflate_bomb,
        {"max_compression_ratio": 100},
    ),
    BadBundle("overlapping_entries", r"overlaps member", _overlapping_entries),
    BadBundle("lying_header_sizes", r"maps\.npy: its local header and central directory disagree on the CRC or sizes", _lying_sizes),
    BadBundle("archive_too_large", r"the archive is .*; the limit is", write_valid, {"max_bytes": 4096}),
    BadBundle(
        "uncompressed_too_large", r"declare .* uncompressed; the limit is", write_valid,
        {"max_uncompressed_bytes": 50_000},
    ),
    BadBundle("too_many_members", r"members; the limit is 3", write_valid, {"max_members": 3}),
    BadBundle("path_traversal", r"'\.\./evil\.txt'.*path traversal", _with_member("../evil.txt")),
    BadBundle("path_traversal_inner", r"path traversal", _with_member("synthetic/../../evil.txt")),
    BadBundle("absolute_name", r"absolute member name '/etc/cron\.d/x'", _with_member("/etc/cron.d/x")),
    BadBundle("windows_drive", r"absolute member name 'C:/x'", _with_member("C:/x")),
    BadBundle("backslash_name", r"backslash", _with_member("synthetic\\x.txt")),
    BadBundle("symlink_member", r"ids\.txt: symbolic links are not allowed", _symlink),
    BadBundle("nested_archive_name", r"inner\.zip: nested archives are not allowed", _with_member("inner.zip")),
    BadBundle(
        "nested_archive_npz", r"extra\.npz: nested archives", _with_member("synthetic/extra.npz", b"PK\x03\x04")
    ),
    BadBundle(
        "nested_archive_content",
        r"maps\.npy: is a nested zip archive",
        _member_data("maps.npy", lambda spec, entry: _zip_in_memory().getvalue()),
    ),
    BadBundle("duplicate_member", r"appears twice", _duplicate_member),
    BadBundle("unexpected_member", r"notes\.txt: unexpected member", _with_member("synthetic/notes.txt")),
    BadBundle(
        "missing_manifest",
        r"manifest\.json: missing member",
        lambda path, spec: write_zip(path, members_of(spec)[1:]),
    ),
    BadBundle("manifest_not_json", r"manifest\.json: is not valid JSON", _manifest(lambda spec: b"{not json")),
    BadBundle("manifest_not_object", r"must hold a JSON object", _manifest(lambda spec: b"[1, 2]")),
    BadBundle(
        "manifest_version",
        r"format_version 2 is not supported",
        _manifest(lambda spec: manifest_bytes(spec, format_version=2)),
    ),
    BadBundle(
        "manifest_missing_key", r"missing key\(s\) 'suite'", _manifest(lambda spec: manifest_bytes(spec, suite=_DROP))
    ),
    BadBundle(
        "manifest_unknown_key", r"unknown key\(s\) 'weights'", _manifest(lambda spec: manifest_bytes(spec, weights=1))
    ),
    BadBundle(
        "manifest_wrong_suite",
        r"suite 'other' does not match the submission's suite",
        _manifest(lambda spec: manifest_bytes(spec, suite="other")),
    ),
    BadBundle(
        "missing_category",
        r"manifest\.json: missing category '.+' of suite",
        _manifest(lambda spec: manifest_bytes(spec, categories=list(spec.ids)[:-1])),
    ),
    BadBundle(
        "unknown_category",
        r"'synthetic/unknown' is not in suite",
        _manifest(lambda spec: manifest_bytes(spec, categories=[*spec.ids, "synthetic/unknown"])),
    ),
    BadBundle("missing_maps_member", r"maps\.npy: missing member", _member_data("maps.npy", lambda s, e: None)),
    BadBundle(
        "pickled_object_array",
        r"scores\.npy: holds Python objects \(pickle\)",
        _member_data("scores.npy", _object_array),
    ),
    BadBundle(
        "wrong_dtype_float64",
        r"maps\.npy: has dtype <f8",
        _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"].astype(np.float64))),
    ),
    BadBundle(
        "wrong_dtype_int",
        r"scores\.npy: has dtype <i8",
        _member_data("scores.npy", lambda s, e: npy_bytes(np.arange(len(e["ids"]), dtype="<i8"))),
    ),
    BadBundle(
        "big_endian",
        r"maps\.npy: is big-endian",
        _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"].astype(">f4"))),
    ),
    BadBundle(
        "bad_npy_magic", r"scores\.npy: is not a \.npy file", _member_data("scores.npy", lambda s, e: b"\x00" * 200)
    ),
    BadBundle(
        "npy_version_3",
        r"uses \.npy format version 3\.0",
        _member_data("scores.npy", lambda s, e: npy_bytes(e["scores"], version=(3, 0))),
    ),
    BadBundle(
        "truncated_npy",
        r"maps\.npy: truncated",
        _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"])[:-100]),
    ),
    BadBundle(
        "trailing_npy_data",
        r"maps\.npy: has 64 bytes of trailing data",
        _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"]) + b"\x00" * 64),
    ),
    BadBundle(
        "nan_in_maps",
        r"maps\.npy: contains NaN or infinite values \(first at row 2, id '",
        _member_data("maps.npy", _nan_in_maps),
    ),
    BadBundle(
        "inf_in_scores",
        r"scores\.npy: contains NaN or infinite values",
        _member_data("scores.npy", _inf_in_scores),
    ),
    BadBundle(
        "duplicate_ids",
        r"ids\.txt: duplicate id '.+' \(lines 1 and \d+\)",
        _member_data("ids.txt", lambda s, e: _ids_text(e, [*e["ids"][:-1], e["ids"][0]])),
    ),
    BadBundle(
        "missing_ids",
        r"ids\.txt: missing 1 of the category's \d+ test ids",
        _member_data("ids.txt", lambda s, e: _ids_text(e, e["ids"][:-1])),
    ),
    BadBundle(
        "unknown_ids",
        r"ids\.txt: 1 unknown id\(s\), e\.g\. 'test/nope\.png'",
        _member_data("ids.txt", lambda s, e: _ids_text(e, [*e["ids"][:-1], "test/nope.png"])),
    ),
    BadBundle(
        "empty_id_line",
        r"ids\.txt: line 2 is empty",
        _member_data("ids.txt", lambda s, e: _ids_text(e, [e["ids"][0], "", *e["ids"][1:]])),
    ),
    BadBundle(
        "ids_not_utf8", r"ids\.txt: is not UTF-8", _member_data("ids.txt", lambda s, e: b"\xff\xfe\xfa bad\n")
    ),
    BadBundle(
        "maps_wrong_ndim",
        r"maps\.npy: has shape \(\d+, 4096\); expected \(N, H, W\)",
        _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"].reshape(len(e["ids"]), -1))),
    ),
    BadBundle(
        "maps_wrong_rows",
        r"maps\.npy: has \d+ rows; the category has \d+ test images",
        _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"][:-1])),
    ),
    BadBundle(
        "scores_wrong_shape",
        r"scores\.npy: has shape \(\d+, 2\)",
        _member_data("scores.npy", lambda s, e: npy_bytes(np.stack([e["scores"], e["scores"]], axis=1))),
    ),
    BadBundle(
        "maps_too_small",
        r"maps\.npy: maps are 32 x 32; each side must be between 64 and 1024",
        _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"][:, :32, :32].copy())),
    ),
    BadBundle(
        "maps_too_large",
        r"maps\.npy: maps are 1100 x 64; each side must be between 64 and 1024",
        _member_data(
            "maps.npy",
            lambda s, e: npy_bytes(np.random.default_rng(0).random((len(e["ids"]), 1100, 64)).astype(np.float16)),
        ),
    ),
)


def _zip_in_memory() -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("inner.txt", "hello")
    return buffer


def bad_bundle(name: str) -> BadBundle:
    for case in BAD_BUNDLES:
        if case.name == name:
            return case
    raise KeyError(name)
