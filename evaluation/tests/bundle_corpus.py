"""A corpus of bundles by kind: hostile ones the reader must refuse, and valid variants it must score.

Every case starts from a valid bundle for a :class:`Spec` (suite key, category keys and their
test ids) and changes one thing. Archives are written either with :mod:`zipfile` (the
ordinary way) or byte by byte with :mod:`evaluation.tests.rawzip`, so that names, headers,
descriptors and contents can be anything an attacker writes.

``BAD_BUNDLES`` lists the hostile cases: each knows its kind, the message (a regular
expression) the reader must raise, naming the member where there is one, and any tightened
limits it needs to stay small. ``GOOD_BUNDLES`` lists valid variants (every compression
method, data descriptors, zip64 records, directory entries, BOMs, CRLF, Fortran order,
float32 extremes, ...) that must be accepted and scored.

Used by ``test_bundles.py`` (reader and scorer), ``test_submissions*.py`` (through the service
and a real worker, against ground truth on disk) and ``benchmarks/bundle_memory.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from algorithms.bundle import write_bundle
from evaluation.tests.rawzip import BZIP2, DEFLATED, LZMA, STORED, UNIX_DIR, Member, build_zip, lzma_payload

F32_MAX = float(np.finfo(np.float32).max)


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
    """A valid bundle with the spec's ids as given: format 1 (the corpus's ids are file paths)."""
    return write_bundle(
        path,
        method=spec.method,
        suite=spec.suite,
        categories=categories or valid_categories(spec),
        partial=True,
        format_version=1,
    )


def npy_bytes(array: np.ndarray, *, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def npy_raw(
    header: str | bytes, data: bytes = b"", *, version: tuple[int, int] = (1, 0), claimed_len: int | None = None
) -> bytes:
    """A ``.npy`` file with any header text (and any claimed header length)."""
    text = header.encode("latin-1") if isinstance(header, str) else header
    width = 2 if version[0] == 1 else 4
    length = len(text) if claimed_len is None else claimed_len
    return b"\x93NUMPY" + bytes(version) + length.to_bytes(width, "little") + text + data


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


def raw_members(spec: Spec, categories: dict[str, dict] | None = None, **fields) -> list[Member]:
    """The valid bundle's members as :class:`rawzip.Member` (deflated unless ``method`` is given)."""
    return [Member(name, data, **fields) for name, data in members_of(spec, categories)]


def write_zip(path: Path, members: list, *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write ``members`` (``(name, bytes)`` or ``(ZipInfo, bytes)``) with :mod:`zipfile`, duplicates included."""
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
# Each takes (path, spec) and returns the path of the bundle it wrote.

Builder = Callable[[Path, Spec], Path]


def _bytes(make: Callable[[Spec], bytes]) -> Builder:
    def build(path: Path, spec: Spec) -> Path:
        path.write_bytes(make(spec))
        return path

    return build


def _raw(change: Callable[[list[Member], Spec], list[Member] | None] | None = None, **zip_options) -> Builder:
    """A byte-level archive of the valid members after ``change(members, spec)`` (in place or returned)."""

    def build(path: Path, spec: Spec) -> Path:
        members = raw_members(spec)
        if change is not None:
            members = change(members, spec) or members
        options = {k: (v(members) if callable(v) else v) for k, v in zip_options.items()}
        path.write_bytes(build_zip(members, **options))
        return path

    return build


def _edit(suffix: str, **fields) -> Callable[[list[Member], Spec], None]:
    """Set ``fields`` on the first member whose name ends with ``suffix`` (a callable value gets the spec)."""

    def change(members: list[Member], spec: Spec) -> None:
        member = next(m for m in members if m.raw_name.endswith(suffix.encode()))
        for key, value in fields.items():
            setattr(member, key, value(spec) if callable(value) else value)

    return change


def _add(*extra: Member) -> Callable[[list[Member], Spec], list[Member]]:
    def change(members: list[Member], spec: Spec) -> list[Member]:
        return [*members, *[replace(m) for m in extra]]

    return change


def _with_member(name: str, data: bytes = b"x") -> Builder:
    def build(path: Path, spec: Spec) -> Path:
        return write_zip(path, [*members_of(spec), (name, data)])

    return build


def _member_data(name_suffix: str, make: Callable[[Spec, dict], bytes | None]) -> Builder:
    def build(path: Path, spec: Spec) -> Path:
        categories = valid_categories(spec)
        key = _first(spec)
        data = make(spec, categories[key])
        return write_zip(path, _replace(members_of(spec, categories), f"{key}/{name_suffix}", data))

    return build


def _manifest(make: Callable[[Spec], bytes]) -> Builder:
    def build(path: Path, spec: Spec) -> Path:
        return write_zip(path, _replace(members_of(spec), "manifest.json", make(spec)))

    return build


def _manifest_text(template: Callable[[Spec], str]) -> Builder:
    return _manifest(lambda spec: template(spec).encode("utf-8", "surrogatepass"))


def _manifest_dict(spec: Spec) -> str:
    return json.dumps({"format_version": 1, "method": spec.method, "suite": spec.suite, "categories": list(spec.ids)})


def _ids_text(entry: dict, ids: list[str], newline: str = "\n") -> bytes:
    return "".join(f"{i}{newline}" for i in ids).encode()


def _not_zip(path: Path, spec: Spec) -> Path:
    path.write_bytes(b"this is not a zip archive at all\n" * 10)
    return path


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
    write_zip(path, members_of(spec), compression=zipfile.ZIP_STORED)
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


def _lzma_bomb(path: Path, spec: Spec) -> Path:
    return _zip_bomb(path, spec, compression=zipfile.ZIP_LZMA)


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


def _symlink(path: Path, spec: Spec) -> Path:
    info = zipfile.ZipInfo(f"{_first(spec)}/ids.txt", date_time=(2024, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    members = [m for m in members_of(spec) if m[0] != f"{_first(spec)}/ids.txt"]
    return write_zip(path, [*members, (info, b"/etc/passwd")])


def _duplicate_member(path: Path, spec: Spec) -> Path:
    members = members_of(spec)
    return write_zip(path, [*members, members[1]])


def _concatenated(path: Path, spec: Spec) -> Path:
    """A small zip followed by the real bundle: both start with a local header, one end record."""
    small = build_zip([Member("inner.txt", b"hello")])
    path.write_bytes(small + build_zip(raw_members(spec)))
    return path


def _many_members(path: Path, spec: Spec) -> Path:
    members = raw_members(spec, method=STORED)
    members += [Member(f"{_first(spec)}/x{i:04d}.txt", b"", method=STORED) for i in range(600)]
    path.write_bytes(build_zip(members))
    return path


def _lying_both_headers(member_suffix: str, usize: int) -> Callable[[list[Member], Spec], None]:
    """Local header and central directory agree on a false uncompressed size (and the true CRC)."""

    def change(members: list[Member], spec: Spec) -> None:
        member = next(m for m in members if m.raw_name.endswith(member_suffix.encode()))
        member.local = {"usize": usize}
        member.central = {"usize": usize}

    return change


def _deflate_with_trailing_garbage(members: list[Member], spec: Spec) -> None:
    member = next(m for m in members if m.raw_name.endswith(b"ids.txt"))
    packer = zlib.compressobj(6, 8, -15)
    member.payload = packer.compress(member.data) + packer.flush() + b"GARBAGE!"


def _truncated_deflate(members: list[Member], spec: Spec) -> None:
    member = next(m for m in members if m.raw_name.endswith(b"maps.npy"))
    packer = zlib.compressobj(6, 8, -15)
    member.payload = (packer.compress(member.data) + packer.flush())[:-40]


def _garbled(suffix: str, method: int) -> Callable[[list[Member], Spec], None]:
    """``suffix``'s compressed bytes garbled in the middle (headers and CRC of the true data)."""
    from evaluation.tests.rawzip import compress

    def change(members: list[Member], spec: Spec) -> None:
        member = next(m for m in members if m.raw_name.endswith(suffix.encode()))
        member.method = method
        payload = bytearray(compress(member.data, method))
        middle = max(12, len(payload) // 2)
        payload[middle : middle + 16] = bytes(range(250, 250 - 16, -1))
        member.payload = bytes(payload)

    return change


def _ids_many_lines(spec: Spec, entry: dict) -> bytes:
    return b"a\n" * 2_000_000


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


def _header(descr: str = "'<f2'", fortran: str = "False", shape: str | None = None, *, n: int = 0) -> str:
    shape = shape if shape is not None else f"({n}, 64, 64)"
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}\n"


def _npy_with_header(suffix: str, header: Callable[[int], str], **options) -> Builder:
    """``suffix`` (scores.npy or maps.npy) with a crafted header over the valid data."""

    def make(spec: Spec, entry: dict) -> bytes:
        array = entry["maps" if suffix == "maps.npy" else "scores"]
        return npy_raw(header(len(entry["ids"])), array.tobytes(), **options)

    return _member_data(suffix, make)


def _fortran_nan(spec: Spec, entry: dict) -> bytes:
    maps = np.asfortranarray(entry["maps"].astype(np.float32))
    maps[3, 60, 2] = -np.inf
    return npy_bytes(maps)


def _huge_header_claim(spec: Spec, entry: dict) -> bytes:
    """A .npy v2 header claiming about 4 GiB, then zeros: the header must not be read."""
    return npy_raw(b" " * 1024, b"\x00" * 4096, version=(2, 0), claimed_len=0xFFFFFFF0)


def _zip_in_memory() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("inner.txt", "hello")
    return buffer.getvalue()


def _cd_gap(path: Path, spec: Spec) -> Path:
    """Bytes between the central directory and the end record (the end record's offsets still exact)."""
    data = build_zip(raw_members(spec))
    eocd = data.rfind(b"PK\x05\x06")
    path.write_bytes(data[:eocd] + b"hidden" + data[eocd:])
    return path


def _zip64_disagree(path: Path, spec: Spec) -> Path:
    data = bytearray(build_zip(raw_members(spec), zip64_end=True))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<H", data, eocd + 10, 3)  # the classic record's entry count, not the 0xFFFF marker
    path.write_bytes(bytes(data))
    return path


def _bad_descriptor_sig(path: Path, spec: Spec) -> Path:
    members = raw_members(spec)
    member = next(m for m in members if m.raw_name.endswith(b"scores.npy"))
    member.descriptor = "signed"
    data = bytearray(build_zip(members))
    at = data.find(b"PK\x07\x08")
    data[at : at + 4] = b"XX\x07\x08"
    path.write_bytes(bytes(data))
    return path


def _bad_local_signature(path: Path, spec: Spec) -> Path:
    data = bytearray(build_zip(raw_members(spec)))
    second = data.find(b"PK\x03\x04", 4)
    data[second : second + 4] = b"PK\x03\x05"
    path.write_bytes(bytes(data))
    return path


def _unicode_path(name: bytes) -> bytes:
    body = b"\x01" + struct.pack("<L", 0) + name
    return struct.pack("<2H", 0x7075, len(body)) + body


def _lzma_dict(members: list[Member], dict_size: int) -> None:
    member = next(m for m in members if m.raw_name.endswith(b"ids.txt"))
    member.method = LZMA
    member.payload = lzma_payload(member.data, claimed_dict=dict_size)


# The corpus -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadBundle:
    name: str
    message: str  # a regular expression the BundleError message must match
    build: Builder
    limits: dict = field(default_factory=dict)  # BundleLimits overrides needed by the case
    kind: str = ""


def _cases(kind: str, *cases: BadBundle) -> tuple[BadBundle, ...]:
    return tuple(replace(case, kind=kind) for case in cases)


_M = "manifest\\.json: "

BAD_BUNDLES: tuple[BadBundle, ...] = (
    *_cases(
        "archive",
        BadBundle("not_a_zip", r"not a zip archive", _not_zip),
        BadBundle("empty_file", r"the archive is empty", _bytes(lambda spec: b"")),
        BadBundle("empty_zip", r"holds no members", lambda path, spec: write_zip(path, [])),
        BadBundle("truncated_zip", r"corrupt or truncated zip archive", _truncated_zip),
        BadBundle("corrupt_zip", r"corrupt|truncated|bad local header|central directory", _corrupt_central_directory),
        BadBundle("trailing_bytes", r"17 bytes follow the end of the zip archive", _raw(trailing=b"appended garbage!")),
        BadBundle(
            "trailing_zip",
            r"bytes before its end record: bytes were inserted, or the archive was joined to another",
            _raw(trailing=build_zip([Member("x.txt", b"x")])),
        ),
        BadBundle("concatenated_zips", r"bytes before its end record: .*joined", _concatenated),
        BadBundle("prepended_data", r"not a zip archive", _raw(prefix=b"MZ\x90\x00 self-extractor stub")),
        BadBundle(
            "comment_hides_end_record",
            r"archive comment contains .*signature",
            _raw(comment=b"PK\x05\x06" + b"\x00" * 16 + b"\x00\x00"),
        ),
        BadBundle(
            "comment_hides_member", r"archive comment contains zip record signatures", _raw(comment=b"PK\x03\x04evil")
        ),
        BadBundle("split_archive_marker", r"split or spanned", _bytes(lambda spec: b"PK\x07\x08" + b"\x00" * 64)),
        BadBundle("multi_disk", r"spans several disks", _raw(eocd={"disk": 1, "cd_disk": 1})),
        BadBundle("entry_counts_disagree", r"entry counts disagree", _raw(eocd={"entries_here": 1})),
        BadBundle(
            "member_on_other_disk",
            r"manifest\.json: it starts on another disk",
            _raw(_edit("manifest.json", central={"disk": 2})),
        ),
        BadBundle(
            "entry_count_too_high",
            r"central directory ends after \d+ of its \d+ entries",
            _raw(eocd={"entries": 40, "entries_here": 40}),
        ),
        BadBundle(
            "entry_count_too_low", r"bytes beyond its 3 declared entries", _raw(eocd={"entries": 3, "entries_here": 3})
        ),
        BadBundle(
            "zip64_markers_without_record",
            r"zip64 markers but the archive has no zip64 record",
            _raw(eocd={"entries": 0xFFFF, "entries_here": 0xFFFF}),
        ),
        BadBundle("zip64_records_disagree", r"zip64 and classic end records disagree", _zip64_disagree),
        BadBundle("central_directory_gap", r"the central directory ends 6 bytes before its end record", _cd_gap),
    ),
    *_cases(
        "limits",
        BadBundle("archive_too_large", r"the archive is .*; the limit is", write_valid, {"max_bytes": 4096}),
        BadBundle(
            "uncompressed_too_large",
            r"declare .* uncompressed; the limit is",
            write_valid,
            {"max_uncompressed_bytes": 50_000},
        ),
        BadBundle("too_many_members", r"members; the limit is 3", write_valid, {"max_members": 3}),
        BadBundle("too_many_members_default", r"\d\d\d members; the limit is 512", _many_members),
        BadBundle(
            "manifest_too_large",
            _M + r"is .*; the limit for this member is 64\.0 KiB",
            _manifest(lambda spec: manifest_bytes(spec, description="x" * 70_000)),
        ),
        BadBundle(
            "ids_too_large",
            r"ids\.txt: is .*; the limit for this member is 4\.0 MiB",
            _member_data("ids.txt", lambda s, e: b"x" * (4 * 2**20 + 1)),
        ),
        BadBundle(
            "ids_millions_of_lines",
            r"ids\.txt: has 2,000,000 lines; the category has \d+ test images",
            _member_data("ids.txt", _ids_many_lines),
        ),
        BadBundle("name_too_long", r"member name is 300 bytes long; the limit is 255", _with_member("a" * 300)),
        BadBundle(
            "fortran_too_large",
            r"maps\.npy: is a Fortran-order array of .*save np\.ascontiguousarray",
            _member_data("maps.npy", lambda s, e: npy_bytes(np.asfortranarray(e["maps"]))),
            {"max_fortran_bytes": 1024},
        ),
    ),
    *_cases(
        "bombs",
        BadBundle("zip_bomb", r"maps\.npy: compression ratio .* exceeds the limit of 1,100:1", _zip_bomb),
        BadBundle("lzma_bomb", r"maps\.npy: compression ratio .* exceeds the limit of 1,100:1", _lzma_bomb),
        BadBundle(
            "deflate_bomb_with_tight_ratio",
            r"maps\.npy: compression ratio 1,0\d\d:1 exceeds the limit of 100:1",
            _deflate_bomb,
            {"max_compression_ratio": 100},
        ),
        BadBundle("overlapping_entries", r"overlap", _overlapping_entries),
        BadBundle(
            "overlapping_data",
            r"manifest\.json: its data run past the start of the next record \(overlapping",
            _raw(_edit("manifest.json", local={"csize": 400}, central={"csize": 400})),
        ),
        BadBundle(
            "hidden_data_between_members",
            r"unaccounted bytes lie between this member and member",
            _raw(gaps={0: b"hidden payload"}),
        ),
        BadBundle(
            "hidden_data_before_central_directory",
            r"unaccounted bytes lie between the last member and the central",
            _raw(gaps=lambda members: {len(members) - 1: b"hidden payload"}),
        ),
        BadBundle(
            "lying_header_sizes",
            r"maps\.npy: its local header and central directory disagree on the CRC or sizes",
            _lying_sizes,
        ),
        BadBundle(
            "lying_sizes_both_headers",
            r"ids\.txt: decompresses to more than its declared 10 bytes",
            _raw(_lying_both_headers("ids.txt", 10)),
        ),
        BadBundle(
            "lying_sizes_npy_both_headers",
            r"maps\.npy: decompresses to more than its declared 1,000 bytes",
            _raw(_lying_both_headers("maps.npy", 1000)),
        ),
        BadBundle(
            "declared_larger_than_data",
            r"ids\.txt: truncated: the member needs .* the data end after",
            _raw(_lying_both_headers("ids.txt", 10_000)),
        ),
        BadBundle(
            "lzma_huge_dictionary",
            r"ids\.txt: its LZMA dictionary is 1\.0 GiB; the limit is 64\.0 MiB "
            r"\(compress with a smaller dictionary\)",
            _raw(lambda members, spec: _lzma_dict(members, 1 << 30)),
        ),
        BadBundle(
            "npy_huge_header_claim",
            r"maps\.npy: its \.npy header claims 4,294,967,280 bytes; the limit",
            _member_data("maps.npy", _huge_header_claim),
        ),
        BadBundle(
            "npy_huge_shape_claim",
            r"maps\.npy: maps are 1000000 x 1000000",
            _npy_with_header("maps.npy", lambda n: _header(shape=f"({n}, 1000000, 1000000)")),
        ),
        BadBundle(
            "npy_huge_rows_claim",
            r"scores\.npy: has 9,223,372,036,854,775,807 rows",
            _npy_with_header("scores.npy", lambda n: _header("'<f4'", shape="(9223372036854775807,)")),
        ),
    ),
    *_cases(
        "structure",
        BadBundle("crc_mismatch", r"maps\.npy: CRC-32 mismatch", _crc_mismatch),
        BadBundle(
            "crc_disagrees",
            r"scores\.npy: its local header and central directory disagree on the CRC",
            _raw(_edit("scores.npy", central={"crc": 1234})),
        ),
        BadBundle(
            "flags_disagree",
            r"manifest\.json: its local header and central directory disagree on the flags",
            _raw(_edit("manifest.json", local={"flags": 0x0800})),
        ),
        BadBundle(
            "method_disagrees",
            r"ids\.txt: .*disagree on the compression method \(0 vs 8\)",
            _raw(_edit("ids.txt", local={"method": 0})),
        ),
        BadBundle(
            "stored_sizes_disagree",
            r"manifest\.json: is stored .* but declares",
            _raw(_edit("manifest.json", method=STORED, local={"csize": 10}, central={"csize": 10})),
        ),
        BadBundle(
            "descriptor_flag_without_descriptor",
            r"ids\.txt: has flag bit 3 \(data descriptor\) but 0 bytes follow its data; a descriptor takes 12, 16, "
            r"20 or 24 bytes$",
            _raw(_edit("ids.txt", flags=0x0008)),
        ),
        BadBundle(
            "descriptor_disagrees",
            r"ids\.txt: its data descriptor and the central directory disagree on the CRC or sizes$",
            _raw(_edit("ids.txt", descriptor="signed", central={"crc": 77}, local={"crc": 0, "csize": 0, "usize": 0})),
        ),
        BadBundle(
            "descriptor_bad_signature", r"scores\.npy: its data descriptor has a bad signature", _bad_descriptor_sig
        ),
        BadBundle(
            "zip64_marker_without_extra",
            r"maps\.npy: its central directory entry marks .* as zip64",
            _raw(_edit("maps.npy", central={"usize": 0xFFFFFFFF})),
        ),
        BadBundle(
            "zip64_extra_too_short",
            r"maps\.npy: the zip64 extra field of its central directory entry is too short",
            _raw(
                _edit(
                    "maps.npy",
                    central={"usize": 0xFFFFFFFF, "csize": 0xFFFFFFFF},
                    central_extra=struct.pack("<2HQ", 1, 8, 5),
                )
            ),
        ),
        BadBundle(
            "extra_field_stray_bytes",
            r"ids\.txt: the extra field of its local header ends with 3 stray bytes",
            _raw(_edit("ids.txt", local_extra=b"\x01\x02\x03")),
        ),
        BadBundle(
            "extra_field_overrun",
            r"ids\.txt: the extra field of its central directory entry is malformed",
            _raw(_edit("ids.txt", central_extra=struct.pack("<2H", 0x5455, 40) + b"\x00" * 4)),
        ),
        BadBundle(
            "extra_field_duplicate",
            r"ids\.txt: .* holds record 0x5455 twice",
            _raw(_edit("ids.txt", central_extra=(struct.pack("<2H", 0x5455, 1) + b"\x00") * 2)),
        ),
        BadBundle(
            "unicode_path_extra_differs",
            r"maps\.npy: the Unicode-path extra field .* names another file",
            _raw(_edit("maps.npy", central_extra=_unicode_path(b"../../etc/passwd"))),
        ),
        BadBundle("local_header_bad_signature", r"bad local header signature", _bad_local_signature),
    ),
    *_cases(
        "names",
        BadBundle(
            "nul_in_name",
            r"[a-z]+/[a-z]+/maps\.npy\\x00\.\./\.\./x: member name contains a NUL byte",
            _raw(_edit("maps.npy", name=lambda spec: f"{_first(spec)}/maps.npy\x00../../x".encode())),
        ),
        BadBundle(
            "nul_in_local_name_only",
            r"maps\.npy\\x00evil: member name contains a NUL byte",
            _raw(_edit("maps.npy", local_name=lambda spec: f"{_first(spec)}/maps.npy\x00evil".encode())),
        ),
        BadBundle(
            "local_name_differs",
            r"maps\.npy: its local header names it '[a-z]+/[a-z]+/mapz\.npy'",
            _raw(_edit("maps.npy", local_name=lambda spec: f"{_first(spec)}/mapz.npy".encode())),
        ),
        BadBundle(
            "control_character_in_name",
            r"[a-z]+/[a-z]+/ids\\x07\.txt: member name contains control characters",
            _raw(_edit("ids.txt", name=lambda spec: f"{_first(spec)}/ids\x07.txt".encode())),
        ),
        BadBundle("newline_in_name", r"member name contains control characters", _with_member("synthetic/a\nb.txt")),
        BadBundle("non_ascii_name", r"member name contains non-ASCII characters", _with_member("synthetic/résumé.txt")),
        BadBundle(
            "unicode_normalisation_name",
            r"member name contains non-ASCII characters",
            _raw(_edit("ids.txt", name=lambda spec: f"{_first(spec)}/i\u0301ds.txt".encode(), flags=0x0800)),
        ),
        BadBundle(
            "fullwidth_name",
            r"member name contains non-ASCII characters",
            _raw(_edit("manifest.json", name="ｍanifest.json".encode(), flags=0x0800)),
        ),
        BadBundle(
            "invalid_utf8_name",
            r"member name contains non-ASCII characters",
            _raw(_add(Member(b"synthetic/\xff\xfe.txt", b"x"))),
        ),
        BadBundle(
            "bidi_override_name", r"member name contains non-ASCII characters", _with_member("synthetic/\u202etxt.npy")
        ),
        BadBundle(
            "case_colliding_names",
            r"Manifest\.json: differs from member 'manifest\.json' only in letter case",
            _raw(_add(Member("Manifest.json", b"{}"))),
        ),
        BadBundle("path_traversal", r"'\.\./evil\.txt'.*path traversal", _with_member("../evil.txt")),
        BadBundle("path_traversal_inner", r"path traversal", _with_member("synthetic/../../evil.txt")),
        BadBundle("absolute_name", r"absolute member name '/etc/cron\.d/x'", _with_member("/etc/cron.d/x")),
        BadBundle("windows_drive", r"absolute member name 'C:/x'", _with_member("C:/x")),
        BadBundle("backslash_name", r"backslash", _with_member("synthetic\\x.txt")),
        BadBundle("backslash_traversal", r"backslash", _raw(_add(Member(b"..\\..\\evil.txt", b"x")))),
        BadBundle(
            "dot_component",
            r"'\./manifest\.json' has an empty or '\.' path component",
            _raw(_edit("manifest.json", name="./manifest.json")),
        ),
        BadBundle("empty_component", r"has an empty or '\.' path component", _with_member("synthetic//aa/x.txt")),
        BadBundle("space_in_name", r"member name contains ' '", _with_member("synthetic/aa/ids .txt")),
        BadBundle("empty_name", r"a member with an empty name", _raw(_add(Member(b"", b"x")))),
        BadBundle("duplicate_member", r"appears twice", _duplicate_member),
        BadBundle(
            "duplicate_directory",
            r"appears twice",
            _raw(
                _add(
                    Member("synthetic/", b"", external_attr=UNIX_DIR), Member("synthetic/", b"", external_attr=UNIX_DIR)
                )
            ),
        ),
    ),
    *_cases(
        "member types",
        BadBundle("symlink_member", r"ids\.txt: symbolic links are not allowed", _symlink),
        BadBundle(
            "fifo_member",
            r"scores\.npy: is a special file \(unix mode 0o10644\)",
            _raw(_edit("scores.npy", external_attr=(stat.S_IFIFO | 0o644) << 16)),
        ),
        BadBundle(
            "device_member", r"is a special file", _raw(_edit("ids.txt", external_attr=(stat.S_IFCHR | 0o600) << 16))
        ),
        BadBundle(
            "directory_with_data",
            r"synthetic/: is a directory entry holding 5 bytes",
            _raw(_add(Member("synthetic/", b"hello", external_attr=UNIX_DIR))),
        ),
        BadBundle(
            "file_marked_directory",
            r"manifest\.json: is marked as a directory",
            _raw(_edit("manifest.json", external_attr=UNIX_DIR)),
        ),
        BadBundle(
            "expected_member_as_directory",
            r"ids\.txt/: (unexpected member|differs)",
            _raw(_add(Member("synthetic/aa/ids.txt/", b"", external_attr=UNIX_DIR))),
        ),
        BadBundle(
            "encrypted_member", r"maps\.npy: encrypted members are not allowed", _raw(_edit("maps.npy", flags=0x1))
        ),
        BadBundle("strong_encryption", r"encrypted members are not allowed", _raw(_edit("ids.txt", flags=0x40))),
        BadBundle(
            "aes_encrypted_member",
            r"ids\.txt: encrypted members are not allowed",
            _raw(_edit("ids.txt", central_extra=struct.pack("<2HH2sBH", 0x9901, 7, 2, b"AE", 3, 8))),
        ),
        BadBundle("patched_data_flag", r"patched-data members", _raw(_edit("ids.txt", flags=0x20))),
        BadBundle(
            "unknown_flag_bits", r"unsupported general-purpose flag bits 0x1000", _raw(_edit("ids.txt", flags=0x1000))
        ),
        BadBundle(
            "deflate64_member",
            r"unsupported compression method 9 \(deflate64\)",
            _raw(_edit("ids.txt", method=9, payload=b"\x00" * 8)),
        ),
        BadBundle(
            "zstd_member",
            r"unsupported compression method 93 \(zstandard\)",
            _raw(_edit("ids.txt", method=93, payload=b"\x28\xb5\x2f\xfd")),
        ),
        BadBundle(
            "unknown_method",
            r"unsupported compression method 77 \(unknown\)",
            _raw(_edit("ids.txt", method=77, payload=b"\x00")),
        ),
    ),
    *_cases(
        "compressed data",
        BadBundle(
            "corrupt_deflate",
            r"maps\.npy: (corrupt deflate data|truncated|CRC-32|decompresses to more)",
            _raw(_garbled("maps.npy", DEFLATED)),
        ),
        BadBundle(
            "corrupt_bzip2",
            r"maps\.npy: (corrupt bzip2 data|truncated|CRC-32|decompresses to more)",
            _raw(_garbled("maps.npy", BZIP2)),
        ),
        BadBundle(
            "corrupt_lzma",
            r"maps\.npy: (corrupt lzma data|truncated|CRC-32|decompresses to more)",
            _raw(_garbled("maps.npy", LZMA)),
        ),
        BadBundle(
            "lzma_bad_properties",
            r"ids\.txt: corrupt LZMA data \(properties of 3 bytes; LZMA1 has 5\)",
            _raw(_edit("ids.txt", method=LZMA, payload=b"\x09\x14\x03\x00abc" + b"\x00" * 20)),
        ),
        BadBundle(
            "lzma_too_short_for_its_header",
            r"ids\.txt: corrupt LZMA data \(too short for its header\)",
            _raw(_edit("ids.txt", method=LZMA, payload=b"\x09\x14")),
        ),
        BadBundle(  # lc + 9 (lp + 5 pb) = 225 is the first value out of range (pb = 5)
            "lzma_properties_out_of_range",
            r"ids\.txt: corrupt LZMA data \(bad properties\)",
            _raw(_edit("ids.txt", method=LZMA, payload=b"\x09\x14\x05\x00\xe1\x00\x00\x01\x00" + b"\x00" * 20)),
        ),
        BadBundle(  # lc = 8: in range for the byte, refused by the decoder (lc + lp > 4)
            "lzma_properties_the_decoder_refuses",
            r"ids\.txt: corrupt LZMA data \(.+\)",
            _raw(_edit("ids.txt", method=LZMA, payload=b"\x09\x14\x05\x00\x08\x00\x00\x01\x00" + b"\x00" * 20)),
        ),
        BadBundle(
            "lzma_properties_cut_short",
            r"ids\.txt: corrupt LZMA data \(bad properties\)",
            _raw(_edit("ids.txt", method=LZMA, payload=b"\x09\x14\x05\x00\x5d\x00")),
        ),
        BadBundle(
            "garbage_after_deflate_stream",
            r"ids\.txt: 8 bytes of compressed data follow the end of its stream",
            _raw(_deflate_with_trailing_garbage),
        ),
        BadBundle("truncated_deflate_stream", r"maps\.npy: (truncated|corrupt)", _raw(_truncated_deflate)),
        BadBundle(
            "stored_payload_truncated",
            r"maps\.npy: is stored \(not compressed\) but declares 6 compressed and [\d,]+ uncompressed bytes",
            _raw(_edit("maps.npy", method=STORED, payload=b"\x93NUMPY")),
        ),
    ),
    *_cases(
        "manifest",
        BadBundle("missing_manifest", _M + r"missing member", lambda path, spec: write_zip(path, members_of(spec)[1:])),
        BadBundle("manifest_not_json", _M + r"is not valid JSON", _manifest(lambda spec: b"{not json")),
        BadBundle(
            "manifest_trailing_text",
            _M + r"is not valid JSON \(Extra data",
            _manifest(lambda spec: manifest_bytes(spec) + b" trailing"),
        ),
        BadBundle(
            "manifest_not_object", _M + r"must hold a JSON object, not a list", _manifest(lambda spec: b"[1, 2]")
        ),
        BadBundle(
            "manifest_deep_nesting",
            _M + r"nests JSON arrays/objects 30,000 levels deep",
            _manifest(lambda spec: b"[" * 30_000 + b"]" * 30_000),
        ),
        BadBundle(
            "manifest_deep_value",
            _M + r"nests JSON arrays/objects 40 levels deep",
            _manifest_text(lambda spec: _manifest_dict(spec)[:-1] + ', "description": ' + "[" * 39 + "]" * 39 + "}"),
        ),
        BadBundle(
            "manifest_duplicate_key",
            _M + r"has the key 'suite' twice",
            _manifest_text(lambda spec: _manifest_dict(spec)[:-1] + ', "suite": "mvtec"}'),
        ),
        BadBundle(
            "manifest_utf16",
            _M + r"is not UTF-8 text",
            _manifest(lambda spec: manifest_bytes(spec).decode().encode("utf-16")),
        ),
        BadBundle(
            "manifest_nan",
            _M + r"is not valid JSON \(NaN is not a JSON number\)",
            _manifest_text(lambda spec: _manifest_dict(spec)[:-1] + ', "description": NaN}'),
        ),
        BadBundle(
            "manifest_huge_integer",
            _M + r"is not valid JSON \(.*(digits|limit)",
            _manifest_text(
                lambda spec: _manifest_dict(spec).replace('"format_version": 1', '"format_version": ' + "9" * 5000)
            ),
        ),
        BadBundle(
            "manifest_version",
            _M + r"format_version 3 is not supported",
            _manifest(lambda spec: manifest_bytes(spec, format_version=3)),
        ),
        BadBundle(
            "manifest_version_bool",
            _M + r"format_version must be the integer 2 \(or 1\), got true",
            _manifest(lambda spec: manifest_bytes(spec, format_version=True)),
        ),
        BadBundle(
            "manifest_version_string",
            _M + r"format_version must be the integer 2 \(or 1\), got the string '1'",
            _manifest(lambda spec: manifest_bytes(spec, format_version="1")),
        ),
        BadBundle(
            "manifest_version_float",
            _M + r"format_version must be the integer 2 \(or 1\), got the number 1\.0",
            _manifest(lambda spec: manifest_bytes(spec, format_version=1.0)),
        ),
        BadBundle(
            "manifest_missing_key",
            _M + r"missing key\(s\) 'suite'",
            _manifest(lambda spec: manifest_bytes(spec, suite=_DROP)),
        ),
        BadBundle(
            "manifest_unknown_key",
            _M + r"unknown key\(s\) 'weights'",
            _manifest(lambda spec: manifest_bytes(spec, weights=1)),
        ),
        BadBundle(
            "manifest_wrong_suite",
            _M + r"suite 'other' does not match the submission's suite",
            _manifest(lambda spec: manifest_bytes(spec, suite="other")),
        ),
        BadBundle(
            "manifest_suite_not_string",
            _M + r"suite must be a suite key .*got the number 7",
            _manifest(lambda spec: manifest_bytes(spec, suite=7)),
        ),
        BadBundle(
            "manifest_suite_odd_characters",
            _M + r"suite must be a suite key",
            _manifest(lambda spec: manifest_bytes(spec, suite="mvtec\x00")),
        ),
        BadBundle(
            "manifest_method_empty",
            _M + r"method must be a non-empty string .*got the string ' '",
            _manifest(lambda spec: manifest_bytes(spec, method=" ")),
        ),
        BadBundle(
            "manifest_method_too_long",
            _M + r"method must be .* at most 120 characters, got 121 characters",
            _manifest(lambda spec: manifest_bytes(spec, method="m" * 121)),
        ),
        BadBundle(
            "manifest_method_not_string",
            _M + r"method must be .*got a list",
            _manifest(lambda spec: manifest_bytes(spec, method=["m"])),
        ),
        BadBundle(
            "manifest_method_control_character",
            _M + r"method contains the control character '\\x00'",
            _manifest(lambda spec: manifest_bytes(spec, method="Corpus\x00method")),
        ),
        BadBundle(
            "manifest_method_surrogate",
            _M + r"method contains an unpaired UTF-16 surrogate",
            _manifest_text(lambda spec: _manifest_dict(spec).replace(spec.method, "m\\ud800")),
        ),
        BadBundle(
            "manifest_method_bidi",
            _M + r"method contains the bidirectional control character U\+202E",
            _manifest(lambda spec: manifest_bytes(spec, method="m\u202eevil")),
        ),
        BadBundle(
            "manifest_description_not_string",
            _M + r"description must be a string, got an object",
            _manifest(lambda spec: manifest_bytes(spec, description={"a": 1})),
        ),
        BadBundle(
            "manifest_description_nul",
            _M + r"description contains the control character",
            _manifest(lambda spec: manifest_bytes(spec, description="a\x00b")),
        ),
        BadBundle(
            "manifest_categories_empty",
            _M + r"categories must be a non-empty list .*got an empty list",
            _manifest(lambda spec: manifest_bytes(spec, categories=[])),
        ),
        BadBundle(
            "manifest_categories_number",
            _M + r"categories\[0\] must be a category key .*got the number 1",
            _manifest(lambda spec: manifest_bytes(spec, categories=[1])),
        ),
        BadBundle(
            "manifest_categories_nested",
            _M + r"categories\[0\] must be a category key .*got a list",
            _manifest(lambda spec: manifest_bytes(spec, categories=[["a"]])),
        ),
        BadBundle(
            "manifest_categories_string",
            _M + r"categories must be a non-empty list .*got the string",
            _manifest(lambda spec: manifest_bytes(spec, categories="synthetic/aa")),
        ),
        BadBundle(
            "manifest_category_bad_key",
            _M + r"category key 'bottle' is not of the form",
            _manifest(lambda spec: manifest_bytes(spec, categories=["bottle"])),
        ),
        BadBundle(
            "manifest_category_twice",
            _M + r"categories lists '.+' twice",
            _manifest(lambda spec: manifest_bytes(spec, categories=[*spec.ids, _first(spec)])),
        ),
        BadBundle(
            "missing_category",
            _M + r"missing category '.+' of suite",
            _manifest(lambda spec: manifest_bytes(spec, categories=list(spec.ids)[:-1])),
        ),
        BadBundle(
            "unknown_category",
            _M + r"category 'synthetic/unknown' is not in suite",
            _manifest(lambda spec: manifest_bytes(spec, categories=[*spec.ids, "synthetic/unknown"])),
        ),
        BadBundle(
            "manifest_name_differs_in_case",
            r"manifest\.json: missing member \(the archive has 'Manifest\.json'; names are case-sensitive\)",
            _raw(_edit("manifest.json", name="Manifest.json")),
        ),
        BadBundle(
            "manifest_is_directory",
            _M + r"is a directory entry, not a file",
            _raw(_edit("manifest.json", name="manifest.json/", data=b"", external_attr=UNIX_DIR)),
        ),
    ),
    *_cases(
        "member set",
        BadBundle("missing_maps_member", r"maps\.npy: missing member", _member_data("maps.npy", lambda s, e: None)),
        BadBundle("missing_ids_member", r"ids\.txt: missing member", _member_data("ids.txt", lambda s, e: None)),
        BadBundle("unexpected_member", r"notes\.txt: unexpected member", _with_member("synthetic/notes.txt")),
        BadBundle(
            "macos_metadata", r"__MACOSX/\._manifest\.json: unexpected member", _with_member("__MACOSX/._manifest.json")
        ),
        BadBundle(
            "extra_category_folder", r"synthetic/zz/ids\.txt: unexpected member", _with_member("synthetic/zz/ids.txt")
        ),
        BadBundle(
            "unexpected_directory",
            r"other/: unexpected member",
            _raw(_add(Member("other/", b"", external_attr=UNIX_DIR))),
        ),
        BadBundle("nested_archive_name", r"inner\.zip: nested archives are not allowed", _with_member("inner.zip")),
        BadBundle(
            "nested_archive_npz", r"extra\.npz: nested archives", _with_member("synthetic/extra.npz", b"PK\x03\x04")
        ),
        BadBundle(
            "nested_archive_content",
            r"maps\.npy: is a nested zip archive",
            _member_data("maps.npy", lambda spec, entry: _zip_in_memory()),
        ),
        BadBundle(
            "nested_gzip_content",
            r"scores\.npy: is a nested gzip archive",
            _member_data("scores.npy", lambda spec, entry: gzip.compress(b"x" * 100)),
        ),
    ),
    *_cases(
        "ids",
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
            "blank_line_at_end",
            r"ids\.txt: line \d+ is empty",
            _member_data("ids.txt", lambda s, e: _ids_text(e, e["ids"]) + b"\n"),
        ),
        BadBundle(
            "whitespace_around_id",
            r"ids\.txt: line 3: id ' .+' has leading or trailing whitespace",
            _member_data("ids.txt", lambda s, e: _ids_text(e, [*e["ids"][:2], " " + e["ids"][2], *e["ids"][3:]])),
        ),
        BadBundle(
            "tab_after_id",
            r"ids\.txt: line 1: id '.+\\t' has leading or trailing whitespace",
            _member_data("ids.txt", lambda s, e: _ids_text(e, [e["ids"][0] + "\t", *e["ids"][1:]])),
        ),
        BadBundle(
            "lone_carriage_returns",
            r"ids\.txt: (\d+ unknown id|line \d+)",
            _member_data("ids.txt", lambda s, e: "\r".join(e["ids"]).encode()),
        ),
        BadBundle(
            "nul_in_id",
            r"ids\.txt: 1 unknown id\(s\), e\.g\. '.+\\x00'",
            _member_data("ids.txt", lambda s, e: _ids_text(e, [*e["ids"][:-1], e["ids"][-1] + "\x00"])),
        ),
        BadBundle(
            "ids_not_utf8", r"ids\.txt: is not UTF-8", _member_data("ids.txt", lambda s, e: b"\xff\xfe\xfa bad\n")
        ),
        BadBundle(
            "ids_utf16",
            r"ids\.txt: is not UTF-8",
            _member_data("ids.txt", lambda s, e: "\n".join(e["ids"]).encode("utf-16")),
        ),
        BadBundle("ids_empty", r"ids\.txt: missing \d+ of the category's", _member_data("ids.txt", lambda s, e: b"")),
    ),
    *_cases(
        "npy",
        BadBundle(
            "pickled_object_array",
            r"scores\.npy: holds Python objects \(pickle\)",
            _member_data("scores.npy", _object_array),
        ),
        BadBundle(
            "object_dtype_header_only",
            r"maps\.npy: holds Python objects \(pickle\)",
            _npy_with_header("maps.npy", lambda n: _header("'|O'", n=n)),
        ),
        BadBundle(
            "wrong_dtype_float64",
            r"maps\.npy: has dtype <f8 \(float64\)",
            _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"].astype(np.float64))),
        ),
        BadBundle(
            "wrong_dtype_int",
            r"scores\.npy: has dtype <i8 \(int64\)",
            _member_data("scores.npy", lambda s, e: npy_bytes(np.arange(len(e["ids"]), dtype="<i8"))),
        ),
        BadBundle(
            "wrong_dtype_bool",
            r"maps\.npy: has dtype \|b1 \(bool\)",
            _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"] > 0.5)),
        ),
        BadBundle(
            "wrong_dtype_complex",
            r"scores\.npy: has dtype <c8 \(complex64\)",
            _member_data("scores.npy", lambda s, e: npy_bytes(e["scores"].astype(np.complex64))),
        ),
        BadBundle(
            "wrong_dtype_string",
            r"scores\.npy: has dtype <U\d+ \(str\)",
            _member_data("scores.npy", lambda s, e: npy_bytes(np.array(e["ids"]))),
        ),
        BadBundle(
            "native_byte_order_marker",
            r"maps\.npy: has dtype =f2 \(byte order =\)",
            _npy_with_header("maps.npy", lambda n: _header("'=f2'", n=n)),
        ),
        BadBundle(
            "big_endian",
            r"maps\.npy: is big-endian",
            _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"].astype(">f4"))),
        ),
        BadBundle(
            "structured_dtype",
            r"scores\.npy: has a structured dtype",
            _member_data("scores.npy", lambda s, e: npy_bytes(np.zeros(len(e["ids"]), dtype=[("a", "<f4")]))),
        ),
        BadBundle(
            "subarray_dtype",
            r"scores\.npy: has a malformed \.npy header|has an unsupported dtype",
            _npy_with_header("scores.npy", lambda n: _header("'(2,)<f4'", shape=f"({n},)")),
        ),
        BadBundle(
            "bad_npy_magic", r"scores\.npy: is not a \.npy file", _member_data("scores.npy", lambda s, e: b"\x00" * 200)
        ),
        BadBundle("empty_npy", r"maps\.npy: is empty; not a \.npy file", _member_data("maps.npy", lambda s, e: b"")),
        BadBundle(
            "npy_version_3",
            r"uses \.npy format version 3\.0",
            _member_data("scores.npy", lambda s, e: npy_bytes(e["scores"], version=(3, 0))),
        ),
        BadBundle(
            "npy_header_code",
            r"maps\.npy: has a malformed \.npy header",
            _npy_with_header("maps.npy", lambda n: "__import__('os').system('echo pwned')\n"),
        ),
        BadBundle(
            "npy_header_not_dict",
            r"scores\.npy: has a malformed \.npy header",
            _npy_with_header("scores.npy", lambda n: f"[{n}]\n"),
        ),
        BadBundle(
            "npy_header_deep_nesting",
            r"maps\.npy: has a malformed \.npy header",
            _npy_with_header("maps.npy", lambda n: "{'descr': " + "(" * 3000 + ")" * 3000 + "}"),
        ),
        BadBundle(
            "npy_header_extra_key",
            r"maps\.npy: has a malformed \.npy header \(keys",
            _npy_with_header("maps.npy", lambda n: _header(n=n)[:-3] + "'evil': 1, }\n"),
        ),
        BadBundle(
            "npy_header_duplicate_key",
            r"maps\.npy: has a malformed \.npy header .*twice",
            _npy_with_header("maps.npy", lambda n: _header(n=n)[:-3] + "'shape': (1,), }\n"),
        ),
        BadBundle(
            "npy_fortran_not_bool",
            r"maps\.npy: .*fortran_order must be True or False",
            _npy_with_header("maps.npy", lambda n: _header(fortran="1", n=n)),
        ),
        BadBundle(
            "npy_shape_not_tuple",
            r"scores\.npy: .*shape must be a tuple",
            _npy_with_header("scores.npy", lambda n: _header("'<f4'", shape=str(n))),
        ),
        BadBundle(
            "npy_shape_huge_integer",
            r"maps\.npy: has a malformed \.npy header \(the integer",
            _npy_with_header("maps.npy", lambda n: _header(shape=f"({n}, {'9' * 400}, 64)")),
        ),
        BadBundle(
            "npy_shape_negative",
            r"maps\.npy: has a malformed \.npy header",
            _npy_with_header("maps.npy", lambda n: _header(shape=f"({n}, -64, 64)")),
        ),
        BadBundle(
            "npy_header_claims_more_than_member",
            r"scores\.npy: truncated: its \.npy header claims 5,000 bytes",
            _member_data("scores.npy", lambda s, e: npy_raw(b"{", claimed_len=5000)),
        ),
        BadBundle(
            "npy_header_not_latin1_text",
            r"maps\.npy: has a malformed \.npy header",
            _npy_with_header("maps.npy", lambda n: "{\x00\xff}"),
        ),
        BadBundle(
            "truncated_npy", r"maps\.npy: truncated", _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"])[:-100])
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
            "inf_in_fortran_maps",
            r"maps\.npy: contains NaN or infinite values \(first at row 3, id '",
            _member_data("maps.npy", _fortran_nan),
        ),
        BadBundle(
            "inf_in_scores",
            r"scores\.npy: contains NaN or infinite values \(first at row 1",
            _member_data("scores.npy", _inf_in_scores),
        ),
        BadBundle(
            "float16_infinity_bits",
            r"maps\.npy: contains NaN or infinite values",
            _member_data("maps.npy", lambda s, e: npy_bytes(np.full_like(e["maps"], np.inf))),
        ),
        BadBundle(
            "maps_wrong_ndim",
            r"maps\.npy: has shape \(\d+, 4096\); expected \(N, H, W\)",
            _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"].reshape(len(e["ids"]), -1))),
        ),
        BadBundle(
            "maps_4d",
            r"maps\.npy: has shape \(\d+, 1, 64, 64\); expected \(N, H, W\)",
            _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"][:, None])),
        ),
        BadBundle(
            "maps_0d",
            r"maps\.npy: has shape \(\); expected \(N, H, W\)",
            _member_data("maps.npy", lambda s, e: npy_bytes(np.float16(1.0).reshape(()))),
        ),
        BadBundle(
            "scores_0d",
            r"scores\.npy: has shape \(\); expected \(N,\)",
            _member_data("scores.npy", lambda s, e: npy_bytes(np.array(1.0, dtype=np.float32))),
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
            "maps_zero_size",
            r"maps\.npy: maps are 0 x 64; each side must be between 64 and 1024",
            _member_data("maps.npy", lambda s, e: npy_bytes(e["maps"][:, :0, :].copy())),
        ),
        BadBundle(
            "maps_too_large",
            r"maps\.npy: maps are 1100 x 64; each side must be between 64 and 1024",
            _member_data(
                "maps.npy",
                lambda s, e: npy_bytes(np.random.default_rng(0).random((len(e["ids"]), 1100, 64)).astype(np.float16)),
            ),
        ),
    ),
)


def bad_bundle(name: str) -> BadBundle:
    for case in BAD_BUNDLES:
        if case.name == name:
            return case
    raise KeyError(name)


# Valid variants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoodBundle:
    name: str
    build: Builder
    kind: str = "valid"


def _zipfile_with(compression: int) -> Builder:
    def build(path: Path, spec: Spec) -> Path:
        return write_zip(path, members_of(spec), compression=compression)

    return build


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk) -> int:
        self.data += chunk
        return len(chunk)


def _streamed(path: Path, spec: Spec) -> Path:
    """zipfile writing to a pipe: data descriptors after every member, zip64 local headers."""
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members_of(spec):
            with zf.open(name, "w", force_zip64=name.endswith(".npy")) as fp:
                fp.write(data)
    path.write_bytes(bytes(sink.data))
    return path


def _arrays(change: Callable[[Spec, dict[str, dict]], None]) -> Builder:
    """A zipfile bundle whose arrays ``change(spec, categories)`` edits in place (any dtype/order kept)."""

    def build(path: Path, spec: Spec) -> Path:
        categories = valid_categories(spec)
        change(spec, categories)
        return write_zip(path, members_of(spec, categories))

    return build


def _extremes(spec: Spec, categories: dict[str, dict]) -> None:
    rng = np.random.default_rng(1)
    for entry in categories.values():
        shape = entry["maps"].shape
        choices = np.array([F32_MAX, -F32_MAX, 0.0, 1e-45, -1e-45, 3e38, -3e38], dtype=np.float32)
        entry["maps"] = rng.choice(choices, size=shape).astype(np.float32)
        entry["scores"] = rng.choice(choices, size=len(entry["ids"])).astype(np.float32)


def _float16_extremes(spec: Spec, categories: dict[str, dict]) -> None:
    for entry in categories.values():
        maps = entry["maps"].copy()
        maps[:, ::2] = np.float16(65504)
        maps[:, 1::3] = np.float16(-65504)
        entry["maps"] = maps


def _constant(spec: Spec, categories: dict[str, dict]) -> None:
    for entry in categories.values():
        entry["maps"] = np.zeros_like(entry["maps"])
        entry["scores"] = np.zeros_like(entry["scores"])


def _fortran(spec: Spec, categories: dict[str, dict]) -> None:
    for entry in categories.values():
        entry["maps"] = np.asfortranarray(entry["maps"].astype(np.float32))


def _mixed_sizes(spec: Spec, categories: dict[str, dict]) -> None:
    rng = np.random.default_rng(2)
    sizes = [(64, 100), (1024, 64), (97, 203)]
    for entry, size in zip(categories.values(), sizes, strict=False):
        entry["maps"] = rng.random((len(entry["ids"]), *size)).astype(np.float32 if size[0] == 97 else np.float16)


def _text_variants(path: Path, spec: Spec) -> Path:
    """BOM and CRLF in the manifest and ids, one ids.txt without its final newline, a description."""
    categories = valid_categories(spec)
    members = members_of(spec, categories)
    payload = json.loads(manifest_bytes(spec))
    payload["description"] = "Maps from a test run.\nSecond line: ünïcödé, 日本語 ✓"
    manifest = ("\ufeff" + json.dumps(payload, indent=2, ensure_ascii=False).replace("\n", "\r\n")).encode()
    out = []
    for index, (name, data) in enumerate(members):
        if name == "manifest.json":
            data = manifest
        elif name.endswith("ids.txt"):
            key = name.rsplit("/", 1)[0]
            ids = categories[key]["ids"]
            data = ("\ufeff" + "\r\n".join(ids) + "\r\n").encode() if index % 2 else "\n".join(ids).encode()
        out.append((name, data))
    return write_zip(path, out)


def _npy_v2(path: Path, spec: Spec) -> Path:
    categories = valid_categories(spec)
    members = [
        (name, npy_bytes(np.load(io.BytesIO(data)), version=(2, 0)) if name.endswith(".npy") else data)
        for name, data in members_of(spec, categories)
    ]
    return write_zip(path, members)


def _shuffled_with_directories(path: Path, spec: Spec) -> Path:
    """Manifest last, categories listed in reverse, directory entries, members out of order."""
    members = [(n, d) for n, d in members_of(spec) if n != "manifest.json"][::-1]
    dirs = sorted({f"{n.split('/')[0]}/" for n, _ in members} | {f"{n.rsplit('/', 1)[0]}/" for n, _ in members})
    manifest = manifest_bytes(spec, categories=list(spec.ids)[::-1])
    infos = []
    for name in dirs:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = (0o40755 << 16) | 0x10
        infos.append((info, b""))
    return write_zip(path, [*infos, *members, ("manifest.json", manifest)])


def _raw_variant(**fields) -> Builder:
    def build(path: Path, spec: Spec) -> Path:
        members = raw_members(spec, **fields)
        path.write_bytes(build_zip(members))
        return path

    return build


def _descriptor_layouts(path: Path, spec: Spec) -> Path:
    layouts = ["plain", "signed", "zip64", "zip64-signed"]
    members = raw_members(spec)
    for index, member in enumerate(members):
        member.descriptor = layouts[index % len(layouts)]
        member.method = [DEFLATED, STORED, BZIP2, LZMA][index % 4]
    path.write_bytes(build_zip(members))
    return path


def _zip64_everything(path: Path, spec: Spec) -> Path:
    members = raw_members(spec, zip64_local=True, zip64_central=True)
    path.write_bytes(build_zip(members, zip64_end=True))
    return path


def _windows_and_extras(path: Path, spec: Spec) -> Path:
    """Made on Windows (MS-DOS attributes), Info-ZIP extras (timestamps, uid/gid), comments, UTF-8 flag."""
    timestamp = struct.pack("<2HBL", 0x5455, 5, 1, 1_700_000_000)
    unix_ids = struct.pack("<2HBBLBL", 0x7875, 11, 1, 4, 1000, 4, 1000)
    members = raw_members(spec)
    for index, member in enumerate(members):
        if index % 2:
            member.made_by, member.external_attr = (0 << 8) | 20, 0x20
        member.local_extra = timestamp + unix_ids
        member.central_extra = timestamp + _unicode_path(member.raw_name)
        member.comment = b"member comment"
        member.flags = 0x0800
    path.write_bytes(build_zip(members, comment=b"Made by the corpus; a comment is allowed."))
    return path


GOOD_BUNDLES: tuple[GoodBundle, ...] = (
    GoodBundle("write_bundle", write_valid),
    GoodBundle("stored", _zipfile_with(zipfile.ZIP_STORED)),
    GoodBundle("bzip2", _zipfile_with(zipfile.ZIP_BZIP2)),
    GoodBundle("lzma", _zipfile_with(zipfile.ZIP_LZMA)),
    GoodBundle("streamed_with_descriptors", _streamed),
    GoodBundle("descriptor_layouts_and_methods", _descriptor_layouts),
    GoodBundle("zip64_records", _zip64_everything),
    GoodBundle("windows_extras_comments", _windows_and_extras),
    GoodBundle("shuffled_with_directories", _shuffled_with_directories),
    GoodBundle("bom_crlf_description", _text_variants),
    GoodBundle("npy_version_2", _npy_v2),
    GoodBundle("fortran_order_float32", _arrays(_fortran)),
    GoodBundle("mixed_sizes_and_dtypes", _arrays(_mixed_sizes)),
    GoodBundle("float32_extremes", _arrays(_extremes)),
    GoodBundle("float16_extremes", _arrays(_float16_extremes)),
    GoodBundle("constant_maps", _arrays(_constant)),
    GoodBundle("raw_stored", _raw_variant(method=STORED)),
    GoodBundle("raw_lzma", _raw_variant(method=LZMA)),
)


def good_bundle(name: str) -> GoodBundle:
    for case in GOOD_BUNDLES:
        if case.name == name:
            return case
    raise KeyError(name)
