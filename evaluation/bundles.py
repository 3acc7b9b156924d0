"""Read and validate uploaded bundles of anomaly maps (no ORM, no Django, no torch).

A bundle is one zip archive (``docs/bundle-format.md``)::

    manifest.json
    <dataset>/<category>/ids.txt      one test-image id per line
    <dataset>/<category>/scores.npy   (N,)      float16 | float32, little-endian
    <dataset>/<category>/maps.npy     (N, H, W) float16 | float32, 64 <= H, W <= 1024

Nothing is ever extracted to disk. Members are looked up by the names the manifest and the
suite imply and read through ``zipfile`` streams with byte budgets; ``.npy`` headers are parsed
(``numpy.lib.format``) before any data is read, and the data is read in bounded chunks and
checked for non-finite values. :meth:`BundleReader.validate` checks the whole archive, every
category, before anything is scored; :meth:`BundleReader.iter_map_batches` then streams one
category's maps, already permuted to the server's test-id order, without holding the archive
in memory.

Every problem raises :class:`BundleError` (a ``ValueError``) whose message names the member.
"""

from __future__ import annotations

import io
import json
import math
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

__all__ = [
    "ALLOWED_DTYPES",
    "FORMAT_VERSION",
    "BundleError",
    "BundleLimits",
    "BundleReader",
    "BundleSummary",
    "CategoryLayout",
    "Manifest",
    "member_names",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
IDS_NAME = "ids.txt"
SCORES_NAME = "scores.npy"
MAPS_NAME = "maps.npy"
#: Array dtypes a bundle may use (little-endian; single-byte order marks are not floats).
ALLOWED_DTYPES = (np.dtype("<f2"), np.dtype("<f4"))
MANIFEST_KEYS = {"format_version", "method", "suite", "categories"}
MANIFEST_OPTIONAL_KEYS = {"description"}

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_NPY_MAGIC = b"\x93NUMPY"
#: Content signatures of archive formats that must not be nested inside a bundle.
_ARCHIVE_SIGNATURES = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!": "rar",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_ARCHIVE_SUFFIXES = (
    ".zip", ".npz", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz4", ".jar", ".whl",
)  # fmt: skip
_ALLOWED_COMPRESSION = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
#: What ``zipfile`` raises on a damaged archive (unsupported "versions" are garbage too).
_CORRUPT_ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, struct.error, ValueError, NotImplementedError,
)  # fmt: skip
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # the 30 fixed bytes of a zip local file header
_CATEGORY_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$", re.IGNORECASE)
_MIB = 1 << 20


class BundleError(ValueError):
    """An uploaded bundle is malformed; the message says what and where (``member``)."""

    def __init__(self, message: str, *, member: str | None = None) -> None:
        self.member = member
        super().__init__(f"{member}: {message}" if member else message)


@dataclass(frozen=True, kw_only=True)
class BundleLimits:
    """Size limits applied to an archive before and while it is read.

    The defaults fit the 27 MVTec AD + VisA categories (3,887 test images) at 256 x 256
    float32 (about 1 GB uncompressed; half that in float16) with room to spare.
    """

    max_bytes: int = 1 << 30  # the archive file itself
    max_uncompressed_bytes: int = 2 << 30  # sum over members, declared and actually read
    max_members: int = 512
    # Per member, uncompressed / compressed. Deflate cannot exceed ~1032:1, so the default admits any
    # deflated member (binary or constant maps compress that well) and refuses the far higher ratios
    # of bzip2/lzma bombs; the uncompressed budget bounds the total work either way.
    max_compression_ratio: float = 1100.0
    ratio_min_bytes: int = _MIB  # members smaller than this are not ratio-checked
    min_map_side: int = 64
    max_map_side: int = 1024
    max_manifest_bytes: int = 64 * 1024
    max_ids_bytes: int = 4 * _MIB
    chunk_bytes: int = 8 * _MIB  # read granularity for array data

    def __post_init__(self) -> None:
        for name in (
            "max_bytes", "max_uncompressed_bytes", "max_members", "min_map_side", "max_map_side",
            "max_manifest_bytes", "max_ids_bytes", "chunk_bytes",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"bundle limit {name} must be a positive integer, got {value!r}")
        if not (isinstance(self.max_compression_ratio, int | float) and self.max_compression_ratio >= 1):
            raise ValueError(f"bundle limit max_compression_ratio must be >= 1, got {self.max_compression_ratio!r}")
        if self.min_map_side > self.max_map_side:
            raise ValueError("bundle limit min_map_side must not exceed max_map_side")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> BundleLimits:
        """Build limits from ``{field: value}``, ignoring ``None`` values (use the default)."""
        return cls(**{key: value for key, value in values.items() if value is not None})


@dataclass(frozen=True)
class Manifest:
    format_version: int
    method: str
    suite: str
    categories: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class CategoryLayout:
    """What validation learned about one category; ``order[i]`` is the expected index of row ``i``."""

    key: str
    n_images: int
    map_size: tuple[int, int]
    maps_dtype: np.dtype
    scores_dtype: np.dtype
    order: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class BundleSummary:
    manifest: Manifest
    categories: dict[str, CategoryLayout]
    uncompressed_bytes: int
    members: int


def member_names(category_key: str) -> tuple[str, str, str]:
    """The archive member names of one category: ``(ids.txt, scores.npy, maps.npy)``."""
    return (f"{category_key}/{IDS_NAME}", f"{category_key}/{SCORES_NAME}", f"{category_key}/{MAPS_NAME}")


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def _check_member_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    shown = name
    if not name:
        raise BundleError("the archive holds a member with an empty name")
    if "\x00" in name or any(ord(ch) < 32 for ch in name):
        raise BundleError(f"member name {shown!r} contains control characters")
    if "\\" in name:
        raise BundleError(f"member name {shown!r} contains a backslash; use '/' separators", member=shown)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"absolute member name {shown!r} is not allowed", member=shown)
    parts = name.rstrip("/").split("/")
    if any(part == ".." for part in parts):
        raise BundleError(f"member name {shown!r} contains '..' (path traversal is not allowed)", member=shown)
    if any(part in ("", ".") for part in parts):
        raise BundleError(f"member name {shown!r} has an empty or '.' path component", member=shown)
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        raise BundleError("symbolic links are not allowed in a bundle", member=shown)
    if info.flag_bits & 0x1:
        raise BundleError("encrypted members are not allowed", member=shown)
    if info.compress_type not in _ALLOWED_COMPRESSION:
        raise BundleError(
            f"unsupported compression method {info.compress_type}; use one of "
            f"{', '.join(sorted(_ALLOWED_COMPRESSION.values()))}",
            member=shown,
        )


def _is_archive_name(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


class _MemberStream:
    """A read-only view of one member that never yields more than its budget allows.

    ``zipfile`` stops at the declared size and checks the CRC, but the sizes in the headers are
    the uploader's; this wrapper counts the bytes actually decompressed against the member's
    declared size and the archive-wide budget, so a lying header cannot inflate the reader.
    """

    def __init__(self, reader: BundleReader, info: zipfile.ZipInfo, *, charge: bool = True) -> None:
        self._reader = reader
        self._info = info
        self._counted = charge
        self._fp = reader._zip.open(info, "r")
        self.position = 0

    def read(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("read size must be given")
        data = self._fp.read(n)
        self.position += len(data)
        if self.position > self._info.file_size:
            raise BundleError(
                f"decompressed to more than its declared {self._info.file_size:,} bytes", member=self._info.filename
            )
        if self._counted:
            self._reader._charge(len(data), self._info.filename)
        return data

    def read_exact(self, n: int, *, what: str) -> bytes:
        chunks = []
        remaining = n
        while remaining:
            chunk = self.read(min(remaining, 1 << 20))
            if not chunk:
                raise BundleError(
                    f"truncated: {what} needs {n:,} bytes but the member ended after {n - remaining:,}",
                    member=self._info.filename,
                )
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def at_end(self) -> bool:
        return self.read(1) == b""

    def close(self) -> None:
        self._fp.close()


@dataclass
class _NpyHeader:
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    header_bytes: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class BundleReader:
    """Validate a bundle and stream its arrays. Use as a context manager.

    Parameters
    ----------
    source : str, Path or binary file object
        The archive. A file object must be seekable; it is not closed by the reader.
    limits : BundleLimits, optional
        Size limits; the defaults fit MVTec AD + VisA at 256 x 256.

    Raises
    ------
    BundleError
        When the archive is too large, not a zip archive, or corrupt.
    """

    def __init__(self, source: str | Path | BinaryIO, *, limits: BundleLimits | None = None) -> None:
        self.limits = limits or BundleLimits()
        self._owns_file = isinstance(source, str | Path)
        self._file: BinaryIO = open(source, "rb") if self._owns_file else source  # noqa: SIM115
        self._zip: zipfile.ZipFile | None = None
        self._read_budget = 0
        self._summary: BundleSummary | None = None
        self._expected: dict[str, list[str]] = {}
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._owns_file:
            self._file.close()

    # -- archive-level checks ----------------------------------------------------------------

    def _open(self) -> None:
        limits = self.limits
        self._file.seek(0, io.SEEK_END)
        size = self._file.tell()
        self._file.seek(0)
        if size == 0:
            raise BundleError("the archive is empty (0 bytes)")
        if size > limits.max_bytes:
            raise BundleError(f"the archive is {_human(size)}; the limit is {_human(limits.max_bytes)}")
        magic = self._file.read(4)
        self._file.seek(0)
        if magic == _EMPTY_ZIP_MAGIC:
            raise BundleError("the zip archive holds no members (manifest.json is missing)")
        if magic != _ZIP_MAGIC:
            raise BundleError("not a zip archive (the file does not start with the zip signature 'PK\\x03\\x04')")
        try:
            self._zip = zipfile.ZipFile(self._file, "r")
            infos = self._zip.infolist()
        except _CORRUPT_ZIP_ERRORS as exc:
            raise BundleError(f"corrupt or truncated zip archive ({exc})") from exc
        if len(infos) > limits.max_members:
            raise BundleError(f"the archive has {len(infos):,} members; the limit is {limits.max_members:,}")
        seen: set[str] = set()
        declared = 0
        for info in infos:
            _check_member_name(info)
            if info.filename in seen:
                raise BundleError("the member name appears twice in the archive", member=info.filename)
            seen.add(info.filename)
            declared += info.file_size
            if (
                info.file_size >= limits.ratio_min_bytes
                and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1)
            ):
                raise BundleError(
                    f"compression ratio {info.file_size / max(info.compress_size, 1):,.0f}:1 exceeds the limit of "
                    f"{limits.max_compression_ratio:,.0f}:1 (zip bomb?)",
                    member=info.filename,
                )
        if declared > limits.max_uncompressed_bytes:
            raise BundleError(
                f"the members declare {_human(declared)} uncompressed; the limit is "
                f"{_human(limits.max_uncompressed_bytes)}"
            )
        self._check_no_overlap(infos, size)
        self._infos = {info.filename: info for info in infos}
        self._declared = declared

    def _check_no_overlap(self, infos: list[zipfile.ZipInfo], size: int) -> None:
        """Reject members whose data overlap (the overlapped-entry zip bomb; gh-109858)."""
        end_of_data = getattr(self._zip, "start_dir", size)
        previous_end, previous_name = 0, None
        for info in sorted(infos, key=lambda item: item.header_offset):
            if info.header_offset < previous_end:
                raise BundleError(
                    f"its data overlaps member {previous_name!r} (overlapping entries: zip bomb?)",
                    member=info.filename,
                )
            self._file.seek(info.header_offset)
            raw = self._file.read(_LOCAL_HEADER.size)
            if len(raw) != _LOCAL_HEADER.size:
                raise BundleError("its local header lies beyond the end of the archive", member=info.filename)
            fields = _LOCAL_HEADER.unpack(raw)
            if fields[0] != _ZIP_MAGIC:
                raise BundleError("bad local header signature (corrupt zip archive)", member=info.filename)
            name_len, extra_len = fields[9], fields[10]
            data_start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
            previous_end = data_start + info.compress_size
            previous_name = info.filename
            if previous_end > end_of_data:
                raise BundleError(
                    "its data run past the start of the central directory (truncated or corrupt archive)",
                    member=info.filename,
                )
        self._file.seek(0)

    def _charge(self, n: int, member: str) -> None:
        self._read_budget += n
        if self._read_budget > self.limits.max_uncompressed_bytes:
            raise BundleError(
                f"reading the archive produced more than {_human(self.limits.max_uncompressed_bytes)} "
                "(the uncompressed limit)",
                member=member,
            )

    def _member(self, name: str, *, charge: bool = True) -> _MemberStream:
        info = self._infos.get(name)
        if info is None:
            raise BundleError("missing member", member=name)
        try:
            return _MemberStream(self, info, charge=charge)
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, struct.error) as exc:
            raise BundleError(f"cannot be opened ({exc})", member=name) from exc

    def _read_small(self, name: str, *, limit: int) -> bytes:
        info = self._infos.get(name)
        if info is None:
            raise BundleError("missing member", member=name)
        if info.file_size > limit:
            raise BundleError(f"is {_human(info.file_size)}; the limit for this member is {_human(limit)}", member=name)
        stream = self._member(name)
        try:
            data = stream.read_exact(info.file_size, what="the member")
            if not stream.at_end():
                raise BundleError("holds more data than its header declares", member=name)
            return data
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise BundleError(f"corrupt data ({exc})", member=name) from exc
        finally:
            stream.close()

    # -- manifest ------------------------------------------------------------------------------

    def read_manifest(self) -> Manifest:
        """Parse and check ``manifest.json`` on its own (keys, types, format version)."""
        raw = self._read_small(MANIFEST_NAME, limit=self.limits.max_manifest_bytes)
        try:
            payload = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BundleError("is not UTF-8 text", member=MANIFEST_NAME) from exc
        except json.JSONDecodeError as exc:
            raise BundleError(f"is not valid JSON ({exc})", member=MANIFEST_NAME) from exc
        if not isinstance(payload, dict):
            raise BundleError("must hold a JSON object", member=MANIFEST_NAME)
        missing = sorted(MANIFEST_KEYS - payload.keys())
        if missing:
            raise BundleError(f"missing key(s) {', '.join(map(repr, missing))}", member=MANIFEST_NAME)
        unknown = sorted(payload.keys() - MANIFEST_KEYS - MANIFEST_OPTIONAL_KEYS)
        if unknown:
            raise BundleError(f"unknown key(s) {', '.join(map(repr, unknown))}", member=MANIFEST_NAME)
        version = payload["format_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise BundleError(f"format_version must be an integer, got {version!r}", member=MANIFEST_NAME)
        if version != FORMAT_VERSION:
            raise BundleError(
                f"format_version {version} is not supported (this server reads version {FORMAT_VERSION})",
                member=MANIFEST_NAME,
            )
        method = payload["method"]
        if not isinstance(method, str) or not method.strip() or len(method) > 120:
            raise BundleError("method must be a non-empty string of at most 120 characters", member=MANIFEST_NAME)
        suite = payload["suite"]
        if not isinstance(suite, str) or not suite:
            raise BundleError("suite must be a non-empty string", member=MANIFEST_NAME)
        categories = payload["categories"]
        if not isinstance(categories, list) or not categories or not all(isinstance(c, str) for c in categories):
            raise BundleError("categories must be a non-empty list of category keys", member=MANIFEST_NAME)
        for key in categories:
            if not _CATEGORY_KEY.match(key):
                raise BundleError(
                    f"category key {key!r} is not of the form '<dataset>/<category>'", member=MANIFEST_NAME
                )
        duplicates = sorted({key for key in categories if categories.count(key) > 1})
        if duplicates:
            raise BundleError(f"categories lists {', '.join(map(repr, duplicates))} twice", member=MANIFEST_NAME)
        description = payload.get("description", "")
        if not isinstance(description, str):
            raise BundleError("description must be a string", member=MANIFEST_NAME)
        return Manifest(version, method.strip(), suite, tuple(categories), description)

    # -- full validation ------------------------------------------------------------------------

    def validate(self, *, suite: str, expected_ids: Mapping[str, Sequence[str]], progress=None) -> BundleSummary:
        """Check the whole bundle against a suite; nothing is scored until this passes.

        Parameters
        ----------
        suite : str
            The suite key the bundle must declare.
        expected_ids : mapping of str to sequence of str
            Category key -> the published test-image ids, in the server's (ground-truth) order.
            The manifest must list exactly these categories.
        progress : callable, optional
            Called as ``progress(done, total, key)`` after each category.

        Returns
        -------
        BundleSummary

        Raises
        ------
        BundleError
            The first problem found, naming the member.
        """
        self._read_budget = 0
        manifest = self.read_manifest()
        if manifest.suite != suite:
            raise BundleError(
                f"suite {manifest.suite!r} does not match the submission's suite {suite!r}", member=MANIFEST_NAME
            )
        expected_keys = list(expected_ids)
        missing = [key for key in expected_keys if key not in manifest.categories]
        if missing:
            raise BundleError(
                f"missing categor{'y' if len(missing) == 1 else 'ies'} {', '.join(map(repr, missing))} of suite "
                f"{suite!r}",
                member=MANIFEST_NAME,
            )
        extra = [key for key in manifest.categories if key not in expected_ids]
        if extra:
            raise BundleError(
                f"categor{'y' if len(extra) == 1 else 'ies'} {', '.join(map(repr, extra))} "
                f"{'is' if len(extra) == 1 else 'are'} not in suite {suite!r}",
                member=MANIFEST_NAME,
            )
        self._check_member_set(expected_keys)
        self._expected = {key: list(ids) for key, ids in expected_ids.items()}
        layouts: dict[str, CategoryLayout] = {}
        for done, key in enumerate(expected_keys, start=1):
            layouts[key] = self._validate_category(key, self._expected[key])
            if progress is not None:
                progress(done, len(expected_keys), key)
        self._summary = BundleSummary(manifest, layouts, self._read_budget, len(self._infos))
        return self._summary

    def _check_member_set(self, keys: Sequence[str]) -> None:
        expected = {MANIFEST_NAME}
        for key in keys:
            expected.update(member_names(key))
        parents = {f"{parent}/" for name in expected for parent in PurePosixPath(name).parents if str(parent) != "."}
        for name in self._infos:
            if name in expected:
                continue
            if name.endswith("/") and name in parents and self._infos[name].file_size == 0:
                continue  # a directory entry on the way to an expected member
            if _is_archive_name(name):
                raise BundleError("nested archives are not allowed in a bundle", member=name)
            raise BundleError(
                "unexpected member (a bundle holds only manifest.json and <dataset>/<category>/"
                "{ids.txt, scores.npy, maps.npy} for the suite's categories)",
                member=name,
            )
        for name in sorted(expected - self._infos.keys()):
            raise BundleError("missing member", member=name)

    def _validate_category(self, key: str, expected: list[str]) -> CategoryLayout:
        ids_name, scores_name, maps_name = member_names(key)
        order = self._read_ids(ids_name, expected)
        n = len(expected)
        scores_header = self._check_array(scores_name, ndim=1, n=n, scan=True)
        maps_header = self._check_array(maps_name, ndim=3, n=n, scan=True)
        return CategoryLayout(
            key=key,
            n_images=n,
            map_size=(maps_header.shape[1], maps_header.shape[2]),
            maps_dtype=maps_header.dtype,
            scores_dtype=scores_header.dtype,
            order=order,
        )

    def _read_ids(self, name: str, expected: list[str]) -> np.ndarray:
        raw = self._read_small(name, limit=self.limits.max_ids_bytes)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError("is not UTF-8 text", member=name) from exc
        text = text.removeprefix("\ufeff")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the last line
        ids = [line.removesuffix("\r") for line in lines]
        positions: dict[str, int] = {}
        for line_no, image_id in enumerate(ids, start=1):
            if not image_id.strip():
                raise BundleError(f"line {line_no} is empty", member=name)
            if image_id in positions:
                raise BundleError(
                    f"duplicate id {image_id!r} (lines {positions[image_id] + 1} and {line_no})", member=name
                )
            positions[image_id] = line_no - 1
        index = {image_id: i for i, image_id in enumerate(expected)}
        unknown = [image_id for image_id in ids if image_id not in index]
        if unknown:
            raise BundleError(
                f"{len(unknown)} unknown id(s), e.g. {', '.join(map(repr, unknown[:3]))}; use the ids published "
                f"for this category",
                member=name,
            )
        absent = [image_id for image_id in expected if image_id not in positions]
        if absent:
            raise BundleError(
                f"missing {len(absent)} of the category's {len(expected)} test ids, e.g. "
                f"{', '.join(map(repr, absent[:3]))}",
                member=name,
            )
        return np.fromiter((index[image_id] for image_id in ids), dtype=np.int64, count=len(ids))

    def _read_npy_header(self, stream: _MemberStream, name: str) -> _NpyHeader:
        prefix = stream.read_exact(min(6, self._infos[name].file_size), what="the .npy magic")
        for signature, kind in _ARCHIVE_SIGNATURES.items():
            if prefix.startswith(signature):
                raise BundleError(f"is a nested {kind} archive, not a .npy file", member=name)
        if prefix != _NPY_MAGIC:
            raise BundleError("is not a .npy file (bad magic bytes)", member=name)
        version = stream.read_exact(2, what="the .npy version")
        major, minor = version[0], version[1]
        if (major, minor) not in ((1, 0), (2, 0)):
            raise BundleError(f"uses .npy format version {major}.{minor}; write version 1.0 or 2.0", member=name)
        fp = _PrefixedStream(_NPY_MAGIC + version, stream)
        try:
            np.lib.format.read_magic(fp)
            reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = reader(fp, max_header_size=10_000)
        except BundleError:
            raise
        except (ValueError, SyntaxError, TypeError) as exc:
            raise BundleError(f"has a malformed .npy header ({exc})", member=name) from exc
        return _NpyHeader(tuple(int(s) for s in shape), bool(fortran_order), np.dtype(dtype), stream.position)

    def _check_array(self, name: str, *, ndim: int, n: int, scan: bool) -> _NpyHeader:
        info = self._infos[name]
        stream = self._member(name)
        try:
            header = self._read_npy_header(stream, name)
            self._check_header(header, name=name, ndim=ndim, n=n)
            expected_size = header.header_bytes + header.data_bytes
            if info.file_size < expected_size:
                raise BundleError(
                    f"truncated: the header promises {header.data_bytes:,} data bytes for shape {header.shape} but "
                    f"the member holds {info.file_size - header.header_bytes:,}",
                    member=name,
                )
            if info.file_size > expected_size:
                raise BundleError(
                    f"has {info.file_size - expected_size:,} bytes of trailing data after the array", member=name
                )
            if scan:
                for start, chunk in self._iter_rows(stream, header, name):
                    bad = ~np.isfinite(chunk)
                    if bad.any():
                        first = int(np.argwhere(bad.reshape(len(chunk), -1).any(axis=1))[0][0]) + start
                        row_id = self._row_id(name, first)
                        raise BundleError(
                            f"contains NaN or infinite values (first at row {first}{row_id})", member=name
                        )
                if not stream.at_end():
                    raise BundleError("holds more data than its header declares", member=name)
            return header
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise BundleError(f"corrupt or truncated data ({exc})", member=name) from exc
        finally:
            stream.close()

    def _row_id(self, name: str, row: int) -> str:
        key = name.rsplit("/", 1)[0]
        ids_name = f"{key}/{IDS_NAME}"
        try:
            raw = self._read_small(ids_name, limit=self.limits.max_ids_bytes)
            lines = raw.decode("utf-8").removeprefix("\ufeff").split("\n")
            return f", id {lines[row].removesuffix(chr(13))!r}"
        except (BundleError, UnicodeDecodeError, IndexError):
            return ""

    def _check_header(self, header: _NpyHeader, *, name: str, ndim: int, n: int) -> None:
        dtype = header.dtype
        if dtype.hasobject or dtype.kind == "O":
            raise BundleError("holds Python objects (pickle); only float16/float32 arrays are accepted", member=name)
        if dtype.fields is not None or dtype.subdtype is not None:
            raise BundleError(f"has a structured dtype {dtype}; use float16 or float32", member=name)
        if dtype not in ALLOWED_DTYPES:
            if dtype.kind == "f" and dtype.byteorder == ">":
                raise BundleError(f"is big-endian ({dtype.str}); write little-endian float16/float32", member=name)
            raise BundleError(f"has dtype {dtype.str} ({dtype.name}); use float16 or float32", member=name)
        shape = header.shape
        what = "(N,)" if ndim == 1 else "(N, H, W)"
        if len(shape) != ndim:
            raise BundleError(f"has shape {shape}; expected {what} with N = {n}", member=name)
        if shape[0] != n:
            raise BundleError(f"has {shape[0]} rows; the category has {n} test images", member=name)
        if ndim == 3:
            low, high = self.limits.min_map_side, self.limits.max_map_side
            h, w = shape[1], shape[2]
            if not (low <= h <= high and low <= w <= high):
                raise BundleError(
                    f"maps are {h} x {w}; each side must be between {low} and {high} pixels", member=name
                )

    def _iter_rows(self, stream: _MemberStream, header: _NpyHeader, name: str) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, rows)`` chunks in bundle row order (C order); Fortran order is read whole."""
        shape, dtype = header.shape, header.dtype
        if header.fortran_order and len(shape) > 1:
            data = stream.read_exact(header.data_bytes, what="the array data")
            array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F")
            step = max(1, self.limits.chunk_bytes // max(1, math.prod(shape[1:]) * dtype.itemsize))
            for start in range(0, shape[0], step):
                yield start, np.ascontiguousarray(array[start : start + step])
            return
        row_items = math.prod(shape[1:]) if len(shape) > 1 else 1
        row_bytes = row_items * dtype.itemsize
        step = max(1, self.limits.chunk_bytes // max(1, row_bytes))
        for start in range(0, shape[0], step):
            rows = min(step, shape[0] - start)
            data = stream.read_exact(rows * row_bytes, what=f"rows {start}..{start + rows - 1}")
            yield start, np.frombuffer(data, dtype=dtype).reshape((rows, *shape[1:]))

    # -- data access after validation -----------------------------------------------------------------

    @property
    def summary(self) -> BundleSummary:
        if self._summary is None:
            raise RuntimeError("call validate() before reading arrays")
        return self._summary

    def expected_ids(self, key: str) -> list[str]:
        """The server's test ids of ``key``, in the order the arrays are returned (after ``validate``)."""
        self.summary  # noqa: B018  (raises before validation)
        return list(self._expected[key])

    def read_scores(self, key: str) -> np.ndarray:
        """The image scores of ``key`` in the expected (server) order, as stored (float16/float32)."""
        layout = self.summary.categories[key]
        name = member_names(key)[1]
        stream = self._member(name, charge=False)
        try:
            header = self._read_npy_header(stream, name)
            self._check_header(header, name=name, ndim=1, n=layout.n_images)
            rows = np.concatenate([chunk for _, chunk in self._iter_rows(stream, header, name)])
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise BundleError(f"corrupt or truncated data ({exc})", member=name) from exc
        finally:
            stream.close()
        if not np.isfinite(rows).all():
            raise BundleError("contains NaN or infinite values", member=name)
        out = np.empty_like(rows)
        out[layout.order] = rows
        return out

    def iter_map_batches(self, key: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, maps)``: bundle rows in chunks, with their indices in the expected order.

        The data are re-checked as they stream (the file could change between passes).
        """
        layout = self.summary.categories[key]
        name = member_names(key)[2]
        stream = self._member(name, charge=False)
        try:
            header = self._read_npy_header(stream, name)
            self._check_header(header, name=name, ndim=3, n=layout.n_images)
            for start, chunk in self._iter_rows(stream, header, name):
                if not np.isfinite(chunk).all():
                    raise BundleError("contains NaN or infinite values", member=name)
                yield layout.order[start : start + len(chunk)], chunk
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise BundleError(f"corrupt or truncated data ({exc})", member=name) from exc
        finally:
            stream.close()


class _PrefixedStream:
    """Replays bytes already consumed, then continues from the member stream (for numpy's header reader)."""

    def __init__(self, prefix: bytes, stream: _MemberStream) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise ValueError("an unbounded read is not allowed")
        head, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(head) == n:
            return head
        return head + self._stream.read(n - len(head))
