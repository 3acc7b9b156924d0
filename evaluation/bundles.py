"""Read and validate uploaded bundles of anomaly maps (no ORM, no Django, no torch).

A bundle is one zip archive (``docs/bundle-format.md``)::

    manifest.json
    <dataset>/<category>/ids.txt      one test-image id per line
    <dataset>/<category>/scores.npy   (N,)      float16 | float32, little-endian
    <dataset>/<category>/maps.npy     (N, H, W) float16 | float32, 64 <= H, W <= 1024

Nothing is ever extracted to disk, and the archive is not read with :mod:`zipfile`: that
library cuts member names at a NUL byte, reads the whole central directory into memory,
decompresses bzip2/LZMA input without an output bound and lets a lying header decide how much
it inflates. This module parses the zip structures itself (:class:`_ZipIndex`): the
end-of-central-directory record must end the file, the central directory and the local headers
must agree byte for byte on every name and on sizes, flags, method and CRC, and the members
must tile the archive exactly (no gaps, no overlaps, nothing before or after). Member data are
decompressed by :class:`_MemberStream` with an output bound on every call, every read charged
against the archive's byte budget *before* it happens, and the CRC-32 checked at the end.

``.npy`` headers are parsed by a strict parser of their own (no ``eval``) and checked against
the limits before any data is read; the data are then read in bounded chunks and checked for
non-finite values. :meth:`BundleReader.validate` checks the whole archive, every category,
before anything is scored; :meth:`BundleReader.iter_map_batches` then streams one category's
maps, already permuted to the server's test-id order. :func:`precheck` is the cheap
upload-time check (structure, limits, manifest) that never reads an array.

Every problem an upload can contain raises :class:`BundleError` (a ``ValueError``) whose
message names the member and the problem; nothing in an upload can raise anything else.
Failures of the server's own storage (an ``OSError`` while reading the file) propagate.
"""

from __future__ import annotations

import bz2
import io
import json
import lzma
import math
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    "Precheck",
    "check",
    "member_names",
    "precheck",
    "unknown_ids_message",
]

#: The format written today: ``ids.txt`` holds the opaque ids the server publishes.
FORMAT_VERSION = 2
#: The formats read: version 1 (path ids such as ``test/good/004.png``) only for suites whose
#: ground truth is public (the caller passes their path ids as ``legacy_ids``).
FORMAT_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
IDS_NAME = "ids.txt"
SCORES_NAME = "scores.npy"
MAPS_NAME = "maps.npy"
#: Array dtypes a bundle may use (little-endian; single-byte order marks are not floats).
ALLOWED_DTYPES = (np.dtype("<f2"), np.dtype("<f4"))
_ALLOWED_DESCR = {"<f2": np.dtype("<f2"), "<f4": np.dtype("<f4")}
MANIFEST_KEYS = {"format_version", "method", "suite", "categories"}
MANIFEST_OPTIONAL_KEYS = {"description"}
#: The manifest is a flat object holding one list; deeper JSON is refused before it is parsed
#: (``json`` recurses once per level: 30,000 nested ``[`` raise ``RecursionError``).
MAX_JSON_DEPTH = 16
MAX_METHOD_CHARS = 120
MAX_SUITE_CHARS = 64

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
_CATEGORY_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$", re.IGNORECASE)
#: Characters a member name may use (every name a bundle needs is made of these).
_NAME_CHARS = re.compile(r"^[A-Za-z0-9._/-]+$")
_MIB = 1 << 20

# zip structures (PKWARE APPNOTE 6.3.10, sections 4.3.7-4.3.16)
_SIG_LOCAL = b"PK\x03\x04"
_SIG_CENTRAL = b"PK\x01\x02"
_SIG_EOCD = b"PK\x05\x06"
_SIG_ZIP64_EOCD = b"PK\x06\x06"
_SIG_ZIP64_LOCATOR = b"PK\x06\x07"
_SIG_DESCRIPTOR = b"PK\x07\x08"
_LOCAL = struct.Struct("<4s5H3L2H")  # 30 bytes
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # 46 bytes
_EOCD = struct.Struct("<4s4H2LH")  # 22 bytes
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
_MAX_COMMENT = 0xFFFF
_STORED, _DEFLATED, _BZIP2, _LZMA = 0, 8, 12, 14
_METHODS = {_STORED: "stored", _DEFLATED: "deflate", _BZIP2: "bzip2", _LZMA: "lzma"}
_OTHER_METHODS = {
    1: "shrink", 2: "reduce", 3: "reduce", 4: "reduce", 5: "reduce", 6: "implode", 9: "deflate64",
    10: "PKWARE imploding", 18: "IBM TERSE", 19: "IBM LZ77", 20: "zstandard (old id)", 93: "zstandard",
    94: "MP3", 95: "xz", 96: "JPEG", 97: "WavPack", 98: "PPMd", 99: "AES encryption",
}  # fmt: skip
_FLAG_ENCRYPTED = 0x0001
_FLAG_LZMA_EOS = 0x0002  # for method 14: the stream ends with an end-of-stream marker
_FLAG_DESCRIPTOR = 0x0008
_FLAG_UTF8 = 0x0800
_FLAGS_ENCRYPTION = 0x0001 | 0x0040 | 0x2000  # traditional, strong, masked central directory
_FLAG_PATCHED = 0x0020
_FLAGS_ALLOWED = 0x0002 | 0x0004 | _FLAG_DESCRIPTOR | _FLAG_UTF8  # compression options, descriptor, UTF-8
_EXTRA_ZIP64 = 0x0001
_EXTRA_UNICODE_PATH = 0x7075
_EXTRA_AES = 0x9901
_U16, _U32 = 0xFFFF, 0xFFFFFFFF
_INPUT_CHUNK = 64 * 1024  # compressed bytes fed to a decompressor per call


class BundleError(ValueError):
    """An uploaded bundle is malformed; the message says what and where (``member``)."""

    def __init__(self, message: str, *, member: str | None = None) -> None:
        self.member = member
        super().__init__(f"{member}: {message}" if member else message)


@dataclass(frozen=True, kw_only=True)
class BundleLimits:
    """Size limits applied to an archive before and while it is read.

    The defaults fit the 27 MVTec AD + VisA categories (3,887 test images) at 256 x 256
    float32 (about 1 GB uncompressed; half that in float16) with room to spare, and keep the
    memory of validating any archive below 256 MiB (``benchmarks/bundle_memory.py``).
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
    max_name_bytes: int = 255  # per member name
    max_npy_header_bytes: int = 10_000  # numpy's own limit for safe header parsing
    max_lzma_dict_bytes: int = 64 * _MIB  # the LZMA decoder allocates its dictionary up front
    max_fortran_bytes: int = 256 * _MIB  # Fortran-order maps are transposed in passes when scored
    fortran_pass_bytes: int = 64 * _MIB  # images gathered per pass over a Fortran-order member
    chunk_bytes: int = 8 * _MIB  # read granularity for array data

    def __post_init__(self) -> None:
        for name in (
            "max_bytes", "max_uncompressed_bytes", "max_members", "min_map_side", "max_map_side",
            "max_manifest_bytes", "max_ids_bytes", "max_name_bytes", "max_npy_header_bytes",
            "max_lzma_dict_bytes", "max_fortran_bytes", "fortran_pass_bytes", "chunk_bytes", "ratio_min_bytes",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"bundle limit {name} must be a positive integer, got {value!r}")
        ratio = self.max_compression_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio >= 1:
            raise ValueError(f"bundle limit max_compression_ratio must be >= 1, got {ratio!r}")
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
    maps_fortran_order: bool = False


@dataclass(frozen=True)
class BundleSummary:
    manifest: Manifest
    categories: dict[str, CategoryLayout]
    uncompressed_bytes: int
    members: int


@dataclass(frozen=True)
class Precheck:
    """What :func:`precheck` learned: the manifest and the archive's size (nothing else was read)."""

    manifest: Manifest
    archive_bytes: int
    members: int
    declared_uncompressed_bytes: int


def member_names(category_key: str) -> tuple[str, str, str]:
    """The archive member names of one category: ``(ids.txt, scores.npy, maps.npy)``."""
    return (f"{category_key}/{IDS_NAME}", f"{category_key}/{SCORES_NAME}", f"{category_key}/{MAPS_NAME}")


# -- small helpers ------------------------------------------------------------------------------


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def _shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters (messages quote what the uploader sent)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {_shown(value, 24)}"
    if isinstance(value, str):
        return f"the string {_shown(value)}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _raw_name_shown(raw: bytes) -> str:
    """A member name as it can be printed in a message: control and non-UTF-8 bytes escaped."""
    text = raw.decode("utf-8", "backslashreplace")
    escaped = repr(text)[1:-1].replace("\\\\x", "\\x")
    return escaped if len(escaped) <= 120 else f"{escaped[:115]}..."


def _is_archive_name(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


class _Budget:
    """Bytes decompressed so far; every read is charged *before* it happens."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, n: int, member: str) -> None:
        if self.used + n > self.limit:
            raise BundleError(
                f"reading {n:,} more bytes would exceed the archive's uncompressed limit of {_human(self.limit)} "
                f"({self.used:,} bytes read so far)",
                member=member,
            )
        self.used += n


# -- the zip layer ------------------------------------------------------------------------------


@dataclass
class _Entry:
    """One archive member as the central directory and its local header describe it."""

    name: str  # ASCII, checked
    raw_name: bytes
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int
    external_attr: int
    data_offset: int = 0
    descriptor_bytes: int = 0  # the data descriptor after the data (flag bit 3)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def data_end(self) -> int:
        return self.data_offset + self.compress_size


def _parse_extra(extra: bytes, where: str, member: str) -> dict[int, bytes]:
    """The records of a zip extra field, ``{header id: data}``; they must tile it exactly, each id once."""
    records: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + 4 > len(extra):
            raise BundleError(f"the extra field of its {where} ends with {len(extra) - pos} stray bytes", member=member)
        header_id, size = struct.unpack_from("<2H", extra, pos)
        if pos + 4 + size > len(extra):
            raise BundleError(
                f"the extra field of its {where} is malformed (record 0x{header_id:04x} runs past its end)",
                member=member,
            )
        if header_id in records:
            raise BundleError(f"the extra field of its {where} holds record 0x{header_id:04x} twice", member=member)
        records[header_id] = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return records


def _zip64_values(records: dict[int, bytes], wanted: Sequence[str], where: str, member: str) -> dict[str, int]:
    """Values of the zip64 extra record for the fields whose 32/16-bit slots hold the 0xFF.. marker."""
    if not wanted:
        return {}
    data = records.get(_EXTRA_ZIP64)
    if data is None:
        raise BundleError(
            f"its {where} marks {', '.join(wanted)} as zip64 (0xFFFFFFFF) but has no zip64 extra field", member=member
        )
    sizes = {"uncompressed size": 8, "compressed size": 8, "header offset": 8, "disk number": 4}
    out, pos = {}, 0
    for name in wanted:
        width = sizes[name]
        if pos + width > len(data):
            raise BundleError(f"the zip64 extra field of its {where} is too short for its {name}", member=member)
        out[name] = int.from_bytes(data[pos : pos + width], "little")
        pos += width
    return out


def _check_name(raw: bytes, limits: BundleLimits) -> str:
    """The member name from its raw bytes, or a ``BundleError`` saying what is wrong with it."""
    shown = _raw_name_shown(raw)
    if not raw:
        raise BundleError("the archive holds a member with an empty name")
    if len(raw) > limits.max_name_bytes:
        raise BundleError(
            f"member name is {len(raw):,} bytes long; the limit is {limits.max_name_bytes}", member=shown[:60] + "..."
        )
    if b"\x00" in raw:
        raise BundleError("member name contains a NUL byte (\\x00)", member=shown)
    if any(byte < 32 or byte == 127 for byte in raw):
        raise BundleError("member name contains control characters", member=shown)
    if any(byte >= 128 for byte in raw):
        raise BundleError(
            "member name contains non-ASCII characters; names are ASCII letters, digits, '.', '_', '-' and '/'",
            member=shown,
        )
    name = raw.decode("ascii")
    if "\\" in name:
        raise BundleError("member name contains a backslash; use '/' separators", member=shown)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"absolute member name {_shown(name)} is not allowed", member=shown)
    parts = name.rstrip("/").split("/")
    if any(part == ".." for part in parts):
        raise BundleError(f"member name {_shown(name)} contains '..' (path traversal is not allowed)", member=shown)
    if any(part in ("", ".") for part in parts):
        raise BundleError(f"member name {_shown(name)} has an empty or '.' path component", member=shown)
    if not _NAME_CHARS.match(name):
        bad = next(ch for ch in name if not _NAME_CHARS.match(ch))
        raise BundleError(
            f"member name contains {bad!r}; names are ASCII letters, digits, '.', '_', '-' and '/'", member=shown
        )
    return name


class _ZipIndex:
    """The members of a zip archive, parsed from its raw bytes and checked for consistency.

    Raises ``BundleError`` for anything that is not one plain, single-disk, unencrypted zip
    archive whose central directory and local headers agree and whose members tile the file.
    """

    def __init__(self, fp: BinaryIO, size: int, limits: BundleLimits) -> None:
        self._fp = fp
        self.size = size
        self.limits = limits
        cd_offset, cd_size, count = self._end_records()
        entries = self._central_directory(cd_offset, cd_size, count)
        self._check_set(entries)
        self._local_headers(entries, cd_offset)
        self.entries: dict[str, _Entry] = {entry.name: entry for entry in entries}
        self.declared = sum(entry.file_size for entry in entries)

    def _read(self, offset: int, n: int) -> bytes:
        self._fp.seek(offset)
        data = self._fp.read(n)
        if len(data) != n:
            raise BundleError("the archive changed or ended while it was read (truncated?)")
        return data

    # end of central directory -----------------------------------------------------------------

    def _end_records(self) -> tuple[int, int, int]:
        size = self.size
        tail_start = max(0, size - (_EOCD.size + _MAX_COMMENT))
        tail = self._read(tail_start, size - tail_start)
        exact, any_record = [], None
        pos = tail.rfind(_SIG_EOCD)
        while pos >= 0:
            if pos + _EOCD.size <= len(tail):
                comment_len = struct.unpack_from("<H", tail, pos + 20)[0]
                end = pos + _EOCD.size + comment_len
                if end == len(tail):
                    exact.append(pos)
                elif end < len(tail) and any_record is None:
                    any_record = (pos, end)
            pos = tail.rfind(_SIG_EOCD, 0, pos)
        if not exact:
            if any_record is not None:
                extra = len(tail) - any_record[1]
                raise BundleError(
                    f"{extra:,} bytes follow the end of the zip archive; trailing data is not allowed (remove them)"
                )
            raise BundleError(
                "corrupt or truncated zip archive, or bytes appended after it (no end-of-central-directory record "
                "at its end)"
            )
        if len(exact) > 1:
            raise BundleError(
                "the archive comment contains a zip end-of-central-directory signature (ambiguous archive)"
            )
        eocd_pos = tail_start + exact[0]
        (_, disk, cd_disk, entries_here, entries, cd_size, cd_offset, comment_len) = _EOCD.unpack_from(tail, exact[0])
        comment = tail[exact[0] + _EOCD.size :]
        if any(sig in comment for sig in (_SIG_LOCAL, _SIG_CENTRAL, _SIG_EOCD, _SIG_ZIP64_EOCD, _SIG_ZIP64_LOCATOR)):
            raise BundleError("the archive comment contains zip record signatures (a hidden or ambiguous archive)")
        cd_end = eocd_pos
        locator_pos = eocd_pos - _ZIP64_LOCATOR.size
        zip64 = locator_pos >= 0 and self._read(locator_pos, 4) == _SIG_ZIP64_LOCATOR
        if zip64:
            _, z_disk, z_offset, z_disks = _ZIP64_LOCATOR.unpack(self._read(locator_pos, _ZIP64_LOCATOR.size))
            if z_disk != 0 or z_disks > 1:
                raise BundleError("the archive spans several disks (split or spanned zip archives are not supported)")
            if z_offset + _ZIP64_EOCD.size != locator_pos:
                raise BundleError(
                    "the zip64 end-of-central-directory record is not where its locator says, or carries extensible "
                    "data (corrupt zip archive)"
                )
            record = _ZIP64_EOCD.unpack(self._read(z_offset, _ZIP64_EOCD.size))
            sig, record_size, _, _, disk64, cd_disk64, here64, entries64, cd_size64, cd_offset64 = record
            if sig != _SIG_ZIP64_EOCD or record_size != _ZIP64_EOCD.size - 12:
                raise BundleError("bad zip64 end-of-central-directory record (corrupt zip archive)")
            for name, value, value64, marker in (
                ("disk number", disk, disk64, _U16), ("central directory disk", cd_disk, cd_disk64, _U16),
                ("entries on this disk", entries_here, here64, _U16), ("entry count", entries, entries64, _U16),
                ("central directory size", cd_size, cd_size64, _U32),
                ("central directory offset", cd_offset, cd_offset64, _U32),
            ):  # fmt: skip
                if value not in (marker, value64):
                    raise BundleError(f"the zip64 and classic end records disagree on the {name} (corrupt zip archive)")
            disk, cd_disk, entries_here, entries, cd_size, cd_offset = (
                disk64, cd_disk64, here64, entries64, cd_size64, cd_offset64,
            )  # fmt: skip
            cd_end = z_offset
        elif _U16 in (disk, cd_disk, entries_here, entries) or _U32 in (cd_size, cd_offset):
            raise BundleError(
                "the end record uses zip64 markers but the archive has no zip64 record (corrupt zip archive)"
            )
        if disk != 0 or cd_disk != 0:
            raise BundleError("the archive spans several disks (split or spanned zip archives are not supported)")
        if entries_here != entries:
            raise BundleError("the end record's entry counts disagree (multi-disk or corrupt zip archive)")
        if entries == 0:
            raise BundleError("the zip archive holds no members (manifest.json is missing)")
        if entries > self.limits.max_members:
            raise BundleError(f"the archive has {entries:,} members; the limit is {self.limits.max_members:,}")
        if cd_offset + cd_size != cd_end:
            if cd_offset + cd_size > cd_end:
                raise BundleError("the central directory runs past its end record (corrupt or truncated zip archive)")
            raise BundleError(
                f"the central directory ends {cd_end - cd_offset - cd_size:,} bytes before its end record: bytes were "
                "inserted, or the archive was joined to another (corrupt or concatenated zip archive)"
            )
        return cd_offset, cd_size, entries

    # central directory --------------------------------------------------------------------------

    def _central_directory(self, cd_offset: int, cd_size: int, count: int) -> list[_Entry]:
        entries: list[_Entry] = []
        pos, end = cd_offset, cd_offset + cd_size
        for index in range(count):
            if pos + _CENTRAL.size > end:
                raise BundleError(
                    f"the central directory ends after {index} of its {count} entries (corrupt zip archive)"
                )
            fixed = _CENTRAL.unpack(self._read(pos, _CENTRAL.size))
            (sig, _made_by, _needed, flags, method, _time, _date, crc, csize, usize, name_len, extra_len,
             comment_len, disk_start, _internal, external, offset) = fixed  # fmt: skip
            if sig != _SIG_CENTRAL:
                raise BundleError(f"bad signature in central directory entry {index + 1} (corrupt zip archive)")
            if pos + _CENTRAL.size + name_len + extra_len + comment_len > end:
                raise BundleError(f"central directory entry {index + 1} runs past the central directory (corrupt)")
            raw_name = self._read(pos + _CENTRAL.size, name_len)
            name = _check_name(raw_name, self.limits)
            extra = self._read(pos + _CENTRAL.size + name_len, extra_len)
            records = _parse_extra(extra, "central directory entry", name)
            marked = [
                label for label, value, marker in (
                    ("uncompressed size", usize, _U32), ("compressed size", csize, _U32),
                    ("header offset", offset, _U32), ("disk number", disk_start, _U16),
                ) if value == marker
            ]  # fmt: skip
            values = _zip64_values(records, marked, "central directory entry", name)
            usize = values.get("uncompressed size", usize)
            csize = values.get("compressed size", csize)
            offset = values.get("header offset", offset)
            disk_start = values.get("disk number", disk_start)
            if disk_start != 0:
                raise BundleError("it starts on another disk (multi-disk zip archives are not supported)", member=name)
            self._check_unicode_path(records, raw_name, "central directory entry", name)
            entry = _Entry(name, raw_name, flags, method, crc, csize, usize, offset, external)
            self._check_entry(entry, records)
            entries.append(entry)
            pos += _CENTRAL.size + name_len + extra_len + comment_len
        if pos != end:
            raise BundleError(
                f"the central directory holds {end - pos:,} bytes beyond its {count} declared entries (corrupt zip "
                "archive)"
            )
        return entries

    @staticmethod
    def _check_unicode_path(records: dict[int, bytes], raw_name: bytes, where: str, name: str) -> None:
        data = records.get(_EXTRA_UNICODE_PATH)
        if data is not None and (len(data) < 5 or data[5:] != raw_name):
            raise BundleError(
                f"the Unicode-path extra field of its {where} names another file than its header (ambiguous name)",
                member=name,
            )

    def _check_entry(self, entry: _Entry, records: dict[int, bytes]) -> None:
        name, limits = entry.name, self.limits
        if entry.flags & _FLAGS_ENCRYPTION or _EXTRA_AES in records or entry.method == 99:
            raise BundleError("encrypted members are not allowed", member=name)
        if entry.flags & _FLAG_PATCHED:
            raise BundleError("patched-data members (general-purpose flag bit 5) are not supported", member=name)
        if entry.flags & ~_FLAGS_ALLOWED:
            raise BundleError(
                f"uses unsupported general-purpose flag bits 0x{entry.flags & ~_FLAGS_ALLOWED:04x}", member=name
            )
        if entry.method not in _METHODS:
            label = _OTHER_METHODS.get(entry.method, "unknown")
            raise BundleError(
                f"unsupported compression method {entry.method} ({label}); use one of "
                f"{', '.join(sorted(_METHODS.values()))}",
                member=name,
            )
        mode = entry.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise BundleError("symbolic links are not allowed in a bundle", member=name)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise BundleError(f"is a special file (unix mode 0o{mode:o}); only regular files are allowed", member=name)
        marked_dir = kind == stat.S_IFDIR or bool(entry.external_attr & 0x10)
        if entry.is_dir:
            if entry.file_size != 0:
                raise BundleError(f"is a directory entry holding {entry.file_size:,} bytes of data", member=name)
        elif marked_dir:
            raise BundleError("is marked as a directory but its name does not end with '/'", member=name)
        if entry.method == _STORED and entry.compress_size != entry.file_size:
            raise BundleError(
                f"is stored (not compressed) but declares {entry.compress_size:,} compressed and {entry.file_size:,} "
                "uncompressed bytes",
                member=name,
            )
        if entry.file_size >= limits.ratio_min_bytes and entry.file_size > limits.max_compression_ratio * max(
            entry.compress_size, 1
        ):
            raise BundleError(
                f"compression ratio {entry.file_size / max(entry.compress_size, 1):,.0f}:1 exceeds the limit of "
                f"{limits.max_compression_ratio:,.0f}:1 (zip bomb?)",
                member=name,
            )

    def _check_set(self, entries: list[_Entry]) -> None:
        seen: dict[str, str] = {}
        folded: dict[str, str] = {}
        declared = 0
        for entry in entries:
            if entry.name in seen:
                raise BundleError("the member name appears twice in the archive", member=entry.name)
            seen[entry.name] = entry.name
            key = entry.name.rstrip("/").lower()
            if key in folded:
                raise BundleError(
                    f"differs from member {folded[key]!r} only in letter case or a trailing '/' (names must be "
                    "distinct on every file system)",
                    member=entry.name,
                )
            folded[key] = entry.name
            declared += entry.file_size
        if declared > self.limits.max_uncompressed_bytes:
            raise BundleError(
                f"the members declare {_human(declared)} uncompressed; the limit is "
                f"{_human(self.limits.max_uncompressed_bytes)}"
            )

    # local headers and tiling -------------------------------------------------------------------

    def _local_headers(self, entries: list[_Entry], cd_offset: int) -> None:
        ordered = sorted(entries, key=lambda item: item.header_offset)
        if ordered[0].header_offset != 0:
            raise BundleError(
                f"{ordered[0].header_offset:,} unaccounted bytes precede the first member (prepended data is not "
                "allowed)",
                member=ordered[0].name,
            )
        for index, entry in enumerate(ordered):
            following = ordered[index + 1] if index + 1 < len(ordered) else None
            next_start = following.header_offset if following is not None else cd_offset
            if entry.header_offset + _LOCAL.size > next_start:
                other = f"member {following.name!r}" if following is not None else "the central directory"
                raise BundleError(f"its local header overlaps {other} (overlapping entries)", member=entry.name)
            self._local_header(entry, next_start)
            # never past next_start: _local_header refused data that run past it, and a descriptor fills its gap
            end = entry.data_end + entry.descriptor_bytes
            if end == next_start:
                continue
            between = "the last member and the central directory" if following is None else (
                f"this member and member {following.name!r}"
            )
            raise BundleError(
                f"{next_start - end:,} unaccounted bytes lie between {between} (hidden data is not allowed)",
                member=entry.name,
            )

    def _local_header(self, entry: _Entry, next_start: int) -> None:
        name = entry.name
        fixed = _LOCAL.unpack(self._read(entry.header_offset, _LOCAL.size))
        sig, _needed, flags, method, _time, _date, crc, csize, usize, name_len, extra_len = fixed
        if sig != _SIG_LOCAL:
            raise BundleError("bad local header signature (corrupt zip archive)", member=name)
        start = entry.header_offset + _LOCAL.size
        if start + name_len + extra_len > next_start:
            raise BundleError(
                "its local header runs into the next record (overlapping or corrupt entries)", member=name
            )
        raw_name = self._read(start, name_len)
        if raw_name != entry.raw_name:
            _check_name(raw_name, self.limits)  # a bad local name is reported as such
            raise BundleError(
                f"its local header names it {_raw_name_shown(raw_name)!r}; the central directory and the local header "
                "must agree on every name",
                member=name,
            )
        if flags != entry.flags:
            raise BundleError(
                f"its local header and central directory disagree on the flags (0x{flags:04x} vs 0x{entry.flags:04x})",
                member=name,
            )
        if method != entry.method:
            raise BundleError(
                f"its local header and central directory disagree on the compression method ({method} vs "
                f"{entry.method})",
                member=name,
            )
        extra = self._read(start + name_len, extra_len)
        records = _parse_extra(extra, "local header", name)
        self._check_unicode_path(records, raw_name, "local header", name)
        if _EXTRA_AES in records:
            raise BundleError("encrypted members are not allowed", member=name)
        if _U32 in (usize, csize):
            values = _zip64_values(records, ["uncompressed size", "compressed size"], "local header", name)
            usize, csize = values["uncompressed size"], values["compressed size"]
        entry.data_offset = start + name_len + extra_len
        local = (crc, csize, usize)
        central = (entry.crc, entry.compress_size, entry.file_size)
        if flags & _FLAG_DESCRIPTOR:
            # the values follow the data; writers leave zeros here (Info-ZIP keeps some real ones)
            if any(value not in (0, true) for value, true in zip(local, central, strict=True)):
                raise BundleError("its local header and central directory disagree on the CRC or sizes", member=name)
        elif local != central:
            raise BundleError(
                f"its local header and central directory disagree on the CRC or sizes (local: CRC {crc:08x}, "
                f"{csize:,} compressed, {usize:,} uncompressed; central: CRC {entry.crc:08x}, "
                f"{entry.compress_size:,} compressed, {entry.file_size:,} uncompressed)",
                member=name,
            )
        if entry.data_end > next_start:
            raise BundleError(
                "its data run past the start of the next record (overlapping, truncated or corrupt archive)",
                member=name,
            )
        if flags & _FLAG_DESCRIPTOR:
            self._descriptor(entry, next_start)

    def _descriptor(self, entry: _Entry, next_start: int) -> None:
        """Read the data descriptor after the data; its length is fixed by where the next record starts."""
        gap = next_start - entry.data_end
        layouts = {12: (False, 4), 16: (True, 4), 20: (False, 8), 24: (True, 8)}
        if gap not in layouts:
            raise BundleError(
                f"has flag bit 3 (data descriptor) but {gap:,} bytes follow its data; a descriptor takes 12, 16, 20 "
                "or 24 bytes",
                member=entry.name,
            )
        signed, width = layouts[gap]
        data = self._read(entry.data_end, gap)
        if signed and data[:4] != _SIG_DESCRIPTOR:
            raise BundleError("its data descriptor has a bad signature", member=entry.name)
        body = data[4:] if signed else data
        crc = int.from_bytes(body[:4], "little")
        csize = int.from_bytes(body[4 : 4 + width], "little")
        usize = int.from_bytes(body[4 + width : 4 + 2 * width], "little")
        if (crc, csize, usize) != (entry.crc, entry.compress_size, entry.file_size):
            raise BundleError(
                "its data descriptor and the central directory disagree on the CRC or sizes", member=entry.name
            )
        entry.descriptor_bytes = gap


# -- member data --------------------------------------------------------------------------------


class _Inflate:
    """Raw deflate with the bz2/lzma decompressor interface (``needs_input``, ``eof``, ``unused_data``)."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(-15)

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, data: bytes, max_length: int) -> bytes:
        tail = self._d.unconsumed_tail
        return self._d.decompress(tail + data if tail else data, max_length)


#: What a decompressor raises on data it cannot decode (bz2 raises a bare ``OSError``).
_DECOMPRESS_ERRORS = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError, MemoryError)


class _MemberStream:
    """The uncompressed bytes of one member, read with an output bound on every call.

    Every :meth:`read_exact` is charged against ``budget`` before anything is decompressed;
    the stream never yields more than the member's declared size, and :meth:`finish` checks
    that the compressed data end exactly there and that the CRC-32 matches.
    """

    def __init__(self, fp: BinaryIO, entry: _Entry, limits: BundleLimits, budget: _Budget | None) -> None:
        self._fp = fp
        self.entry = entry
        self._budget = budget
        self._pos = entry.data_offset
        self._left = entry.compress_size  # compressed bytes not yet read from the file
        self.position = 0  # uncompressed bytes produced
        self._crc = 0
        self._d = None
        if entry.method == _DEFLATED:
            self._d = _Inflate()
        elif entry.method == _BZIP2:
            self._d = bz2.BZ2Decompressor()
        elif entry.method == _LZMA:
            self._d = self._lzma(limits)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def remaining(self) -> int:
        return self.entry.file_size - self.position

    def _pull(self, n: int) -> bytes:
        n = min(n, self._left)
        if n <= 0:
            return b""
        self._fp.seek(self._pos)
        data = self._fp.read(n)
        if len(data) != n:
            raise BundleError("the archive changed or ended while it was read (truncated?)", member=self.name)
        self._pos += n
        self._left -= n
        return data

    def _lzma(self, limits: BundleLimits):
        """The zip LZMA header (APPNOTE 5.8.8: version, properties size, 5 property bytes), then raw LZMA1."""
        header = self._pull(4)
        if len(header) < 4:
            raise BundleError("corrupt LZMA data (too short for its header)", member=self.name)
        props_size = int.from_bytes(header[2:4], "little")
        if props_size != 5:
            raise BundleError(f"corrupt LZMA data (properties of {props_size} bytes; LZMA1 has 5)", member=self.name)
        props = self._pull(5)
        if len(props) < 5 or props[0] >= 9 * 5 * 5:
            raise BundleError("corrupt LZMA data (bad properties)", member=self.name)
        lc, rest = props[0] % 9, props[0] // 9
        lp, pb = rest % 5, rest // 5
        dict_size = int.from_bytes(props[1:5], "little")
        if dict_size > limits.max_lzma_dict_bytes:
            raise BundleError(
                f"its LZMA dictionary is {_human(dict_size)}; the limit is {_human(limits.max_lzma_dict_bytes)} "
                "(compress with a smaller dictionary)",
                member=self.name,
            )
        # A dictionary larger than the whole output is never needed (back-references cannot reach
        # before the first byte), so the decoder gets no more than the member's size.
        dict_size = max(4096, min(dict_size, self.entry.file_size + 1))
        filters = [{"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}]
        try:
            return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
        except (lzma.LZMAError, ValueError, MemoryError) as exc:
            raise BundleError(f"corrupt LZMA data ({exc})", member=self.name) from exc

    def _produce(self, n: int) -> bytes:
        """Up to ``n`` uncompressed bytes (fewer only where the compressed data run out)."""
        if self._d is None:
            return self._pull(n)
        pieces, got, stalled = [], 0, False
        d = self._d
        while got < n and not d.eof:
            feed = self._pull(_INPUT_CHUNK) if (d.needs_input or stalled) and self._left else b""
            try:
                piece = d.decompress(feed, n - got)
            except _DECOMPRESS_ERRORS as exc:
                raise BundleError(
                    f"corrupt {_METHODS[self.entry.method]} data ({type(exc).__name__}: {exc})", member=self.name
                ) from exc
            if piece:
                pieces.append(piece)
                got += len(piece)
                stalled = False
            elif not feed:
                if not self._left:
                    break
                stalled = True
        return b"".join(pieces)

    def read_exact(self, n: int, *, what: str) -> bytes:
        """Exactly ``n`` bytes, charged to the budget first; ``BundleError`` if the member is shorter."""
        if n > self.remaining:
            raise BundleError(
                f"truncated: {what} needs {n:,} bytes but the member declares only {self.remaining:,} more",
                member=self.name,
            )
        if self._budget is not None:
            self._budget.charge(n, self.name)
        data = self._produce(n)
        self._crc = zlib.crc32(data, self._crc)
        self.position += len(data)
        if len(data) != n:
            raise BundleError(
                f"truncated: {what} needs {n:,} bytes but the data end after {len(data):,} (the member declares "
                f"{self.entry.file_size:,} bytes in all)",
                member=self.name,
            )
        return data

    def corruption(self, *, limit: int) -> BundleError | None:
        """After a content problem: read on to the end (at most ``limit`` more bytes, discarded) and
        return the corruption error (CRC, compressed data) if there is one, which explains the problem
        better than what the damaged bytes happened to look like; ``None`` otherwise."""
        if self.remaining > limit:
            return None
        try:
            while self.remaining:
                self.read_exact(min(self.remaining, 1 << 20), what="the rest of the member")
            self.finish()
        except BundleError as exc:
            if "uncompressed limit" in str(exc):  # the budget is spent: not the member's damage
                return None
            return exc
        return None

    def finish(self) -> None:
        """Check that the member ends exactly at its declared size and that its CRC-32 matches."""
        if self.remaining:
            raise BundleError(
                f"holds {self.remaining:,} bytes more than its content needs (trailing data)", member=self.name
            )
        d = self._d
        if d is not None:
            # drain what is left: nothing may decompress beyond the declared size
            while not d.eof:
                feed = self._pull(_INPUT_CHUNK) if self._left else b""
                try:
                    extra = d.decompress(feed, 1)
                except _DECOMPRESS_ERRORS as exc:
                    raise BundleError(
                        f"corrupt {_METHODS[self.entry.method]} data ({type(exc).__name__}: {exc})", member=self.name
                    ) from exc
                if extra:
                    raise BundleError(
                        f"decompresses to more than its declared {self.entry.file_size:,} bytes", member=self.name
                    )
                if not feed and not self._left:
                    break
            lzma_without_marker = self.entry.method == _LZMA and not self.entry.flags & _FLAG_LZMA_EOS
            if not d.eof and not lzma_without_marker:
                raise BundleError(
                    f"truncated or corrupt {_METHODS[self.entry.method]} data (the compressed stream does not end)",
                    member=self.name,
                )
            if d.unused_data or self._left:
                raise BundleError(
                    f"{len(d.unused_data) + self._left:,} bytes of compressed data follow the end of its stream",
                    member=self.name,
                )
        if self._crc != self.entry.crc:
            raise BundleError(
                f"CRC-32 mismatch (the data give {self._crc:08x}, the archive says {self.entry.crc:08x}): "
                "the member is corrupt",
                member=self.name,
            )


#: After a content problem in a member, up to this many more bytes are read to tell damage (a CRC
#: mismatch) from content; a larger rest is not read (the content message stands).
_CORRUPTION_CHECK_BYTES = 64 * _MIB


def _is_content_problem(problem: BundleError) -> bool:
    """True for problems with what the bytes say, as opposed to the damage or limit checks themselves."""
    text = str(problem)
    return not any(word in text for word in ("CRC-32", "corrupt", "uncompressed limit", "decompresses to more"))


# -- .npy headers -------------------------------------------------------------------------------

_NPY_TOKEN = re.compile(
    r"""\s*(?:(?P<str>'[^'\\\n]*'|"[^"\\\n]*")|(?P<int>[0-9]+)L?|(?P<name>True|False|None)|(?P<punct>[{}()\[\],:]))"""
)
_DESCR = re.compile(r"^([<>|=]?)([a-zA-Z?])(\d*)$")
_KIND_NAMES = {"f": "float", "i": "int", "u": "uint", "c": "complex", "b": "bool", "?": "bool", "S": "bytes",
               "a": "bytes", "U": "str", "V": "void", "M": "datetime64", "m": "timedelta64"}  # fmt: skip


@dataclass
class _NpyHeader:
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _NpyHeaderSyntax(Exception):
    pass


def _parse_npy_dict(text: str) -> dict[str, object]:
    """The header dict of a ``.npy`` file, parsed without ``eval``: strings, integers, booleans,
    tuples of integers and (only to recognise structured dtypes) lists; anything else is refused."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _NPY_TOKEN.match(stripped, pos)
        if match is None or match.end() == pos:
            raise _NpyHeaderSyntax(f"unexpected text at character {pos}: {_shown(stripped[pos : pos + 20])}")
        kind = match.lastgroup or "int"
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    index = 0

    def take(kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise _NpyHeaderSyntax("the header ends early")
        token = tokens[index]
        if (kind and token[0] != kind) or (value and token[1] != value):
            raise _NpyHeaderSyntax(f"unexpected {_shown(token[1], 20)}")
        index += 1
        return token

    def peek(value: str) -> bool:
        return index < len(tokens) and tokens[index][1] == value

    def integer(token: str) -> int:
        if len(token) > 19:
            raise _NpyHeaderSyntax(f"the integer {_shown(token, 24)} is too large")
        return int(token)

    def value() -> object:
        kind, text = take()
        if kind == "str":
            return text[1:-1]
        if kind == "int":
            return integer(text)
        if kind == "name":
            return {"True": True, "False": False, "None": None}[text]
        if text == "(":
            items = []
            while not peek(")"):
                items.append(integer(take("int")[1]))
                if not peek(")"):
                    take("punct", ",")
            take("punct", ")")
            return tuple(items)
        if text == "[":  # a structured dtype's field list: skip it, bounded
            depth = 1
            while depth:
                kind, text = take()
                depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(text, 0)
                if depth > 8:
                    raise _NpyHeaderSyntax("nested too deeply")
            return []
        raise _NpyHeaderSyntax(f"unexpected {_shown(text, 20)}")

    take("punct", "{")
    out: dict[str, object] = {}
    while not peek("}"):
        key = take("str")[1][1:-1]
        take("punct", ":")
        if key in out:
            raise _NpyHeaderSyntax(f"the key {key!r} appears twice")
        out[key] = value()
        if not peek("}"):
            take("punct", ",")
    take("punct", "}")
    if index != len(tokens):
        raise _NpyHeaderSyntax("text follows the header dict")
    return out


def _dtype_problem(descr: object) -> str:
    """Why ``descr`` is not one of the accepted dtypes, in the uploader's terms."""
    if isinstance(descr, list):
        return "has a structured dtype; use float16 or float32"
    if not isinstance(descr, str):
        return f"has a malformed .npy header (descr is {_json_type(descr)})"
    match = _DESCR.match(descr)
    if match is None:
        return f"has an unsupported dtype {_shown(descr)}; use float16 or float32"
    order, kind, size = match.groups()
    if kind == "O":
        return "holds Python objects (pickle); only float16/float32 arrays are accepted"
    if kind == "f" and size in ("2", "4") and order == ">":
        return f"is big-endian ({descr}); write little-endian float16/float32"
    if kind == "f" and size in ("2", "4"):
        return f"has dtype {descr} (byte order {order or 'unspecified'}); write little-endian '<f{size}'"
    name = _KIND_NAMES.get(kind, "unknown")
    if size and kind in "fiuc":
        name += str(8 * int(size[:4]))
    return f"has dtype {descr} ({name}); use float16 or float32"


# -- manifest and ids ---------------------------------------------------------------------------

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_JSON_BRACKETS = re.compile(r"[\[\]{}]")
_BIDI_CONTROLS = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069}


class _DuplicateKey(Exception):
    pass


class _BadConstant(Exception):
    pass


def _json_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (strings skipped), without recursion."""
    depth = deepest = 0
    for match in _JSON_BRACKETS.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    raise _BadConstant(name)


def _text_problem(value: str, *, newlines: bool = False) -> str | None:
    """Why a manifest string cannot be stored and shown (control characters, lone surrogates)."""
    for ch in value:
        code = ord(ch)
        if (code < 32 and not (newlines and ch in "\t\n\r")) or 127 <= code < 160:
            return f"contains the control character {ch!r}"
        if 0xD800 <= code <= 0xDFFF:
            return "contains an unpaired UTF-16 surrogate"
        if code in _BIDI_CONTROLS:
            return f"contains the bidirectional control character U+{code:04X}"
    return None


def _parse_manifest(raw: bytes) -> Manifest:
    member = MANIFEST_NAME
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"is not UTF-8 text (byte {exc.start}: {exc.reason})", member=member) from None
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is accepted, as in ids.txt
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BundleError(
            f"nests JSON arrays/objects {depth:,} levels deep; a manifest is one flat object (at most "
            f"{MAX_JSON_DEPTH} levels are read)",
            member=member,
        )
    try:
        payload = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise BundleError(
            f"has the key {_shown(exc.args[0])} twice (duplicate keys are not allowed)", member=member
        ) from None
    except _BadConstant as exc:
        raise BundleError(f"is not valid JSON ({exc.args[0]} is not a JSON number)", member=member) from None
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", member=member
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. an integer of more than 4,300 digits
        raise BundleError(f"is not valid JSON ({_shown(str(exc), 80)})", member=member) from None
    if not isinstance(payload, dict):
        raise BundleError(f"must hold a JSON object, not {_json_type(payload)}", member=member)
    missing = sorted(MANIFEST_KEYS - payload.keys())
    if missing:
        raise BundleError(f"missing key(s) {', '.join(map(repr, missing))}", member=member)
    unknown = sorted(payload.keys() - MANIFEST_KEYS - MANIFEST_OPTIONAL_KEYS)
    if unknown:
        shown = ", ".join(_shown(key, 40) for key in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise BundleError(f"unknown key(s) {shown}", member=member)
    version = payload["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(f"format_version must be the integer 2 (or 1), got {_json_type(version)}", member=member)
    if version not in FORMAT_VERSIONS:
        raise BundleError(
            f"format_version {_shown(version, 24)} is not supported (this server reads versions 1 and 2; "
            f"write version {FORMAT_VERSION})",
            member=member,
        )
    method = payload["method"]
    if not isinstance(method, str) or not method.strip() or len(method.strip()) > MAX_METHOD_CHARS:
        got = (
            f"{len(method.strip()):,} characters" if isinstance(method, str) and method.strip() else _json_type(method)
        )
        raise BundleError(
            f"method must be a non-empty string of at most {MAX_METHOD_CHARS} characters, got {got}", member=member
        )
    problem = _text_problem(method)
    if problem:
        raise BundleError(f"method {problem}", member=member)
    suite = payload["suite"]
    if not isinstance(suite, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", suite) or len(suite) > 64:
        raise BundleError(
            f"suite must be a suite key such as 'mvtec' or 'vadi', got {_json_type(suite)}", member=member
        )
    categories = payload["categories"]
    if not isinstance(categories, list) or not categories:
        raise BundleError(
            f"categories must be a non-empty list of category keys ('<dataset>/<category>'), got "
            f"{_json_type(categories) if categories != [] else 'an empty list'}",
            member=member,
        )
    for index, key in enumerate(categories):
        if not isinstance(key, str):
            raise BundleError(
                f"categories[{index}] must be a category key such as 'mvtec/bottle', got {_json_type(key)}",
                member=member,
            )
        if not _CATEGORY_KEY.match(key):
            raise BundleError(f"category key {_shown(key)} is not of the form '<dataset>/<category>'", member=member)
    seen: set[str] = set()
    for key in categories:
        if key in seen:
            raise BundleError(f"categories lists {key!r} twice", member=member)
        seen.add(key)
    description = payload.get("description")
    if description is None:  # absent or null: no description
        description = ""
    if not isinstance(description, str):
        raise BundleError(f"description must be a string, got {_json_type(description)}", member=member)
    problem = _text_problem(description, newlines=True)
    if problem:
        raise BundleError(f"description {problem}", member=member)
    return Manifest(version, method.strip(), suite, tuple(categories), description)


def _prefix_to_strip(unknown: Sequence[str], expected: Sequence[str]) -> str | None:
    """The prefix that every unknown id has in front of a valid id (``/data/mvtec/bottle/``), or None.

    Generic: whatever the published ids are, an unknown id counts when cutting it after some
    ``/`` leaves a valid id; the prefix is offered only when every unknown id examined (the
    first 200) has the same one and no valid id starts with it.
    """
    valid = set(expected)
    prefixes = set()
    for image_id in unknown[:200]:
        found = None
        cut = image_id.find("/")
        while cut != -1:
            if image_id[cut + 1 :] in valid:
                found = image_id[: cut + 1]
                break
            cut = image_id.find("/", cut + 1)
        if found is None:
            return None
        prefixes.add(found)
        if len(prefixes) > 1:
            return None
    if len(prefixes) != 1:
        return None
    (prefix,) = prefixes
    if any(image_id.startswith(prefix) for image_id in expected):
        return None
    return prefix


def unknown_ids_message(unknown: Sequence[str], expected: Sequence[str]) -> str:
    """What an ``ids.txt`` with ids the category does not have is told: examples, a valid id, the prefix to strip."""
    message = (
        f"{len(unknown)} unknown id(s), e.g. {', '.join(_shown(i) for i in unknown[:3])}; use the ids published "
        "for this category"
    )
    if expected:
        message += f" (one of them: {_shown(expected[0])})"
    prefix = _prefix_to_strip(unknown, expected)
    if prefix is not None:
        message += f"; your ids look like published ids with the prefix {_shown(prefix)} in front: strip it"
    return message


def _parse_ids(raw: bytes, expected: Sequence[str], name: str) -> np.ndarray:
    """``order[i]``: the expected index of line ``i`` of ``ids.txt``."""
    n = len(expected)
    lines_claimed = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    if lines_claimed > 2 * n + 16:  # checked before splitting: a short file of many lines stays cheap
        raise BundleError(
            f"has {lines_claimed:,} lines; the category has {n:,} test images (one id per line)", member=name
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"is not UTF-8 text (byte {exc.start}: {exc.reason})", member=name) from None
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    ids = [line.removesuffix("\r") for line in lines]
    index = {image_id: i for i, image_id in enumerate(expected)}
    positions: dict[str, int] = {}
    for line_no, image_id in enumerate(ids, start=1):
        if not image_id.strip():
            raise BundleError(f"line {line_no} is empty", member=name)
        if image_id in positions:
            raise BundleError(
                f"duplicate id {_shown(image_id)} (lines {positions[image_id] + 1} and {line_no})", member=name
            )
        if image_id not in index and image_id.strip() in index:
            raise BundleError(
                f"line {line_no}: id {_shown(image_id)} has leading or trailing whitespace; write the id alone",
                member=name,
            )
        positions[image_id] = line_no - 1
    unknown = [image_id for image_id in ids if image_id not in index]
    if unknown:
        raise BundleError(unknown_ids_message(unknown, expected), member=name)
    absent = [image_id for image_id in expected if image_id not in positions]
    if absent:
        raise BundleError(
            f"missing {len(absent)} of the category's {n} test ids, e.g. {', '.join(_shown(i) for i in absent[:3])}",
            member=name,
        )
    return np.fromiter((index[image_id] for image_id in ids), dtype=np.int64, count=len(ids))


# -- the reader ---------------------------------------------------------------------------------


class BundleReader:
    """Validate a bundle and stream its arrays. Use as a context manager.

    Parameters
    ----------
    source : str, Path or binary file object
        The archive. A file object must be seekable; it is not closed by the reader (its
        position is restored on :meth:`close`).
    limits : BundleLimits, optional
        Size limits; the defaults fit MVTec AD + VisA at 256 x 256.

    Raises
    ------
    BundleError
        When the archive is too large, not a zip archive, or its structure is corrupt or
        hostile (see ``docs/bundle-format.md`` for every rule). ``OSError`` from reading the
        file itself (the server's storage) propagates.
    """

    def __init__(self, source: str | Path | BinaryIO, *, limits: BundleLimits | None = None) -> None:
        self.limits = limits or BundleLimits()
        self._owns_file = isinstance(source, str | Path)
        self._file: BinaryIO = open(source, "rb") if self._owns_file else source  # noqa: SIM115
        self._start = None if self._owns_file else self._file.tell()
        self._summary: BundleSummary | None = None
        self._expected: dict[str, list[str]] = {}
        self._manifest: Manifest | None = None
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
        if self._owns_file:
            self._file.close()
        elif self._start is not None and not getattr(self._file, "closed", False):
            self._file.seek(self._start)

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
        if magic == _SIG_EOCD:
            raise BundleError("the zip archive holds no members (manifest.json is missing)")
        if magic in (_SIG_DESCRIPTOR, b"PK00"):
            raise BundleError("the archive is split or spanned over several files; upload one plain zip archive")
        if magic != _SIG_LOCAL:
            raise BundleError("not a zip archive (the file does not start with the zip signature 'PK\\x03\\x04')")
        self._index = _ZipIndex(self._file, size, limits)
        self.size = size
        self._budget = _Budget(limits.max_uncompressed_bytes)

    @property
    def _infos(self) -> dict[str, _Entry]:
        return self._index.entries

    def _missing(self, name: str) -> BundleError:
        """``missing member``, with a hint when a member differs only by case or is a directory entry."""
        if f"{name}/" in self._infos:
            return BundleError("is a directory entry, not a file", member=name)
        folded = [other for other in self._infos if other.lower() == name.lower()]
        if folded:
            return BundleError(f"missing member (the archive has {folded[0]!r}; names are case-sensitive)", member=name)
        return BundleError("missing member", member=name)

    def _stream(self, name: str, *, charge: bool = True) -> _MemberStream:
        """A member known to be in the archive (every caller checked the member set or the name)."""
        return _MemberStream(self._file, self._infos[name], self.limits, self._budget if charge else None)

    def _read_small(self, name: str, *, limit: int) -> bytes:
        entry = self._infos.get(name)
        if entry is None:  # (a name without a trailing "/", so never a directory entry)
            raise self._missing(name)
        if entry.file_size > limit:
            raise BundleError(
                f"is {_human(entry.file_size)}; the limit for this member is {_human(limit)}", member=name
            )
        stream = self._stream(name)
        data = stream.read_exact(entry.file_size, what="the member")
        stream.finish()
        return data

    # -- manifest ------------------------------------------------------------------------------

    def read_manifest(self) -> Manifest:
        """Parse and check ``manifest.json`` on its own (keys, types, format version)."""
        if self._manifest is None:
            self._manifest = _parse_manifest(self._read_small(MANIFEST_NAME, limit=self.limits.max_manifest_bytes))
        return self._manifest

    def _check_categories(self, manifest: Manifest, suite: str, keys: Sequence[str]) -> None:
        for problem in self._category_problems(manifest, suite, keys):
            raise problem

    def _category_problems(self, manifest: Manifest, suite: str, keys: Sequence[str]) -> Iterator[BundleError]:
        missing = [key for key in keys if key not in manifest.categories]
        if missing:
            yield BundleError(
                f"missing categor{'y' if len(missing) == 1 else 'ies'} {', '.join(map(repr, missing[:10]))}"
                f"{', ...' if len(missing) > 10 else ''} of suite {suite!r}",
                member=MANIFEST_NAME,
            )
        extra = [key for key in manifest.categories if key not in set(keys)]
        if extra:
            yield BundleError(
                f"categor{'y' if len(extra) == 1 else 'ies'} {', '.join(_shown(key) for key in extra[:10])}"
                f"{', ...' if len(extra) > 10 else ''} {'is' if len(extra) == 1 else 'are'} not in suite {suite!r}",
                member=MANIFEST_NAME,
            )

    def _check_member_set(self, keys: Sequence[str]) -> None:
        for problem in self._member_set_problems(keys):
            raise problem

    def _member_set_problems(self, keys: Sequence[str]) -> Iterator[BundleError]:
        expected = {MANIFEST_NAME}
        for key in keys:
            expected.update(member_names(key))
        parents = {f"{parent}/" for name in expected for parent in PurePosixPath(name).parents if str(parent) != "."}
        for name, entry in self._infos.items():
            if name in expected:  # never a directory entry: expected names do not end with "/"
                continue
            if entry.is_dir and name in parents:
                stream = self._stream(name)  # a directory entry on the way to an expected member: empty
                stream.finish()
                continue
            if _is_archive_name(name):
                yield BundleError("nested archives are not allowed in a bundle", member=name)
                continue
            yield BundleError(
                "unexpected member (a bundle holds only manifest.json and <dataset>/<category>/"
                "{ids.txt, scores.npy, maps.npy} for the suite's categories)",
                member=name,
            )
        for name in sorted(expected - self._infos.keys()):
            yield self._missing(name)

    # -- upload-time check ----------------------------------------------------------------------

    def precheck(
        self,
        *,
        suite: str | None = None,
        method: str | Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
    ) -> Precheck:
        """The cheap checks for the upload request; no array is read. See :func:`precheck`."""
        manifest = self.read_manifest()
        if suite is not None and manifest.suite != suite:
            raise BundleError(
                f"the manifest says suite {manifest.suite!r} but the form says {suite!r}: choose suite "
                f"{manifest.suite!r}, or upload a bundle made for suite {suite!r}",
                member=MANIFEST_NAME,
            )
        if method is not None:
            names = [method] if isinstance(method, str) else list(method)
            if names and manifest.method.casefold() not in {name.casefold() for name in names}:
                raise BundleError(
                    f"the manifest names method {manifest.method!r} but the form says {names[0]!r}: choose method "
                    f'{manifest.method!r}, or change the manifest\'s "method" to {names[0]!r}',
                    member=MANIFEST_NAME,
                )
        if categories is not None:  # the form's suite, if any, is the manifest's (checked above)
            self._check_categories(manifest, manifest.suite, list(categories))
        self._check_member_set(manifest.categories)
        return Precheck(manifest, self.size, len(self._infos), self._index.declared)

    # -- full validation ------------------------------------------------------------------------

    def validate(
        self,
        *,
        suite: str,
        expected_ids: Mapping[str, Sequence[str]],
        legacy_ids: Mapping[str, Sequence[str]] | None = None,
        allow_legacy: bool = True,
        progress=None,
    ) -> BundleSummary:
        """Check the whole bundle against a suite; nothing is scored until this passes.

        Parameters
        ----------
        suite : str
            The suite key the bundle must declare.
        expected_ids : mapping of str to sequence of str
            Category key -> the published test-image ids, in the server's (ground-truth) order.
            The manifest must list exactly these categories. A format-2 bundle uses these.
        legacy_ids : mapping of str to sequence of str, optional
            The same images' format-1 ids (their paths), in the same order, for a format-1
            bundle; None: a format-1 bundle uses ``expected_ids`` too.
        allow_legacy : bool
            False for a blind suite: a format-1 bundle is refused.
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
        self._budget = _Budget(self.limits.max_uncompressed_bytes)
        self._manifest = None
        manifest = self.read_manifest()
        if manifest.suite != suite:
            raise BundleError(
                f"suite {manifest.suite!r} does not match the submission's suite {suite!r}: upload it as a "
                f"{manifest.suite!r} submission, or make the bundle for suite {suite!r}",
                member=MANIFEST_NAME,
            )
        if manifest.format_version == 1:
            if not allow_legacy:
                raise BundleError(
                    f"format_version 1 (file-path ids) is not accepted for suite {suite!r}, whose ground truth is "
                    f"not public; write format_version {FORMAT_VERSION} with the ids the server publishes",
                    member=MANIFEST_NAME,
                )
            if legacy_ids is not None:
                expected_ids = legacy_ids
        expected_keys = list(expected_ids)
        self._check_categories(manifest, suite, expected_keys)
        self._check_member_set(expected_keys)
        self._expected = {key: list(ids) for key, ids in expected_ids.items()}
        layouts: dict[str, CategoryLayout] = {}
        for done, key in enumerate(expected_keys, start=1):
            layouts[key] = self._validate_category(key, self._expected[key])
            if progress is not None:
                progress(done, len(expected_keys), key)
        self._summary = BundleSummary(manifest, layouts, self._budget.used, len(self._infos))
        return self._summary

    def check(
        self,
        *,
        suite: str | None,
        expected_ids: Mapping[str, Sequence[str]] | None,
        method: str | Sequence[str] | None = None,
    ) -> list[BundleError]:
        """Every problem that :meth:`validate` (and the upload's :meth:`precheck`) would find, at once.

        A dry run: nothing is scored. Where :meth:`validate` stops at the first problem, this goes
        on: the manifest against ``suite`` and ``method``, the categories missing and extra, the
        member set, then each member of each category the bundle and the suite share (its ids,
        its scores, its maps) on its own. Only a problem that leaves nothing to check stops it
        (an unreadable archive or manifest). The budget cannot run out here: the declared sizes
        were checked against it when the archive was opened, and each member is read at most once.

        ``expected_ids`` is None when the suite is not known: then only the manifest and member
        set are checked. Returns the problems (an empty list: the bundle would be accepted).
        """
        # Each problem names its own member and each member is read once, so no two are the same.
        problems: list[BundleError] = []
        self._budget = _Budget(self.limits.max_uncompressed_bytes)
        self._manifest = None
        try:
            manifest = self.read_manifest()
        except BundleError as problem:
            return [problem]
        if suite is not None and manifest.suite != suite:
            problems.append(BundleError(
                f"the manifest says suite {manifest.suite!r} but the submission is for suite {suite!r}: choose suite "
                f"{manifest.suite!r}, or make the bundle for suite {suite!r}",
                member=MANIFEST_NAME,
            ))  # fmt: skip
        if method is not None:
            names = [method] if isinstance(method, str) else list(method)
            if names and manifest.method.casefold() not in {name.casefold() for name in names}:
                problems.append(BundleError(
                    f"the manifest names method {manifest.method!r} but the submission is for {names[0]!r}: choose "
                    f'method {manifest.method!r}, or change the manifest\'s "method" to {names[0]!r}',
                    member=MANIFEST_NAME,
                ))  # fmt: skip
        keys = list(expected_ids) if expected_ids is not None else list(manifest.categories)
        if expected_ids is not None:
            for problem in self._category_problems(manifest, suite or manifest.suite, keys):
                problems.append(problem)
        try:
            for problem in self._member_set_problems(manifest.categories):
                problems.append(problem)
        except BundleError as problem:
            problems.append(problem)
        if expected_ids is None:
            return problems
        for key in (key for key in keys if key in manifest.categories):
            expected = list(expected_ids[key])
            ids_name, scores_name, maps_name = member_names(key)
            order = None
            try:
                if ids_name in self._infos:
                    order = _parse_ids(self._read_small(ids_name, limit=self.limits.max_ids_bytes), expected, ids_name)
            except BundleError as problem:
                problems.append(problem)

            def row_id(row: int, order=order, expected=expected) -> str:
                # row < N: the array's shape was checked against the N ids before its values were read
                return f", id {_shown(expected[order[row]])}" if order is not None else ""

            for name, ndim in ((scores_name, 1), (maps_name, 3)):
                if name not in self._infos:
                    continue
                try:
                    self._scan_array(name, ndim=ndim, n=len(expected), row_id=row_id)
                except BundleError as problem:
                    problems.append(problem)
        return problems

    def _validate_category(self, key: str, expected: list[str]) -> CategoryLayout:
        ids_name, scores_name, maps_name = member_names(key)
        order = _parse_ids(self._read_small(ids_name, limit=self.limits.max_ids_bytes), expected, ids_name)
        n = len(expected)

        def row_id(row: int) -> str:
            return f", id {_shown(expected[order[row]])}"  # row < N: the shape was checked first

        scores_header = self._scan_array(scores_name, ndim=1, n=n, row_id=row_id)
        maps_header = self._scan_array(maps_name, ndim=3, n=n, row_id=row_id)
        return CategoryLayout(
            key=key,
            n_images=n,
            map_size=(maps_header.shape[1], maps_header.shape[2]),
            maps_dtype=maps_header.dtype,
            scores_dtype=scores_header.dtype,
            order=order,
            maps_fortran_order=maps_header.fortran_order,
        )

    # -- .npy members ----------------------------------------------------------------------------

    def _read_npy_header(self, stream: _MemberStream, *, ndim: int, n: int) -> _NpyHeader:
        name, limits = stream.name, self.limits
        size = stream.entry.file_size
        if size < 10:  # nothing read here: _scan_array's damage check reads the few bytes (CRC)
            problem = "is empty" if not size else f"is only {size} bytes long"
            raise BundleError(f"{problem}; not a .npy file", member=name)
        prefix = stream.read_exact(8, what="the .npy magic and version")
        for signature, kind in _ARCHIVE_SIGNATURES.items():
            if prefix.startswith(signature):
                raise BundleError(f"is a nested {kind} archive, not a .npy file", member=name)
        if prefix[:6] != _NPY_MAGIC:
            raise BundleError("is not a .npy file (bad magic bytes)", member=name)
        major, minor = prefix[6], prefix[7]
        if (major, minor) not in ((1, 0), (2, 0)):
            raise BundleError(f"uses .npy format version {major}.{minor}; write version 1.0 or 2.0", member=name)
        width = 2 if major == 1 else 4
        header_len = int.from_bytes(stream.read_exact(width, what="the .npy header length"), "little")
        header_bytes = 8 + width + header_len
        # the claimed length is checked before a byte of the header is read
        if header_len > limits.max_npy_header_bytes:
            raise BundleError(
                f"its .npy header claims {header_len:,} bytes; the limit is {limits.max_npy_header_bytes:,} (a "
                "numpy.save header takes about 128)",
                member=name,
            )
        if header_bytes > size:
            raise BundleError(
                f"truncated: its .npy header claims {header_len:,} bytes but the member holds {size:,} in all",
                member=name,
            )
        text = stream.read_exact(header_len, what="the .npy header").decode("latin-1")
        try:
            fields = _parse_npy_dict(text)
        except _NpyHeaderSyntax as exc:
            raise BundleError(f"has a malformed .npy header ({exc})", member=name) from None
        if set(fields) != {"descr", "fortran_order", "shape"}:
            raise BundleError(
                f"has a malformed .npy header (keys {', '.join(map(repr, sorted(fields)))}; expected 'descr', "
                "'fortran_order' and 'shape')",
                member=name,
            )
        descr, fortran_order, shape = fields["descr"], fields["fortran_order"], fields["shape"]
        if not isinstance(fortran_order, bool):
            raise BundleError("has a malformed .npy header (fortran_order must be True or False)", member=name)
        if not isinstance(shape, tuple):
            raise BundleError("has a malformed .npy header (shape must be a tuple of integers)", member=name)
        if not isinstance(descr, str) or descr not in _ALLOWED_DESCR:
            raise BundleError(_dtype_problem(descr), member=name)
        header = _NpyHeader(shape, fortran_order, _ALLOWED_DESCR[descr])
        self._check_header(header, name=name, ndim=ndim, n=n)
        data_bytes = header.data_bytes
        if size < header_bytes + data_bytes:
            raise BundleError(
                f"truncated: the header promises {data_bytes:,} data bytes for shape {shape} but the member holds "
                f"{size - header_bytes:,}",
                member=name,
            )
        if size > header_bytes + data_bytes:
            raise BundleError(
                f"has {size - header_bytes - data_bytes:,} bytes of trailing data after the array", member=name
            )
        if ndim == 3 and fortran_order and data_bytes > limits.max_fortran_bytes:
            raise BundleError(
                f"is a Fortran-order array of {_human(data_bytes)}; Fortran order is accepted up to "
                f"{_human(limits.max_fortran_bytes)}: save np.ascontiguousarray(maps) (C order) instead",
                member=name,
            )
        return header

    def _check_header(self, header: _NpyHeader, *, name: str, ndim: int, n: int) -> None:
        shape = header.shape
        what = "(N,)" if ndim == 1 else "(N, H, W)"
        if len(shape) != ndim:
            raise BundleError(f"has shape {_shown(shape, 80)}; expected {what} with N = {n}", member=name)
        if shape[0] != n:
            raise BundleError(f"has {shape[0]:,} rows; the category has {n} test images", member=name)
        if ndim == 3:
            low, high = self.limits.min_map_side, self.limits.max_map_side
            h, w = shape[1], shape[2]
            if not (low <= h <= high and low <= w <= high):
                raise BundleError(f"maps are {h} x {w}; each side must be between {low} and {high} pixels", member=name)

    def _chunks(self, stream: _MemberStream, header: _NpyHeader) -> Iterator[tuple[int, np.ndarray]]:
        """``(first, block)`` in storage order: C order yields row blocks ``(rows, ...)`` starting at row
        ``first``; Fortran order (3-D) yields pixel blocks ``(pixels, N)`` starting at pixel ``first``."""
        shape, dtype = header.shape, header.dtype
        if header.fortran_order and len(shape) == 3:
            unit_items, units, block_shape = shape[0], shape[1] * shape[2], (shape[0],)
        else:
            unit_items, units, block_shape = math.prod(shape[1:]), shape[0], shape[1:]
        unit_bytes = max(1, unit_items * dtype.itemsize)
        step = max(1, self.limits.chunk_bytes // unit_bytes)
        for start in range(0, units, step):
            count = min(step, units - start)
            data = stream.read_exact(count * unit_items * dtype.itemsize, what=f"the array data from unit {start}")
            yield start, np.frombuffer(data, dtype=dtype).reshape((count, *block_shape))

    def _scan_array(self, name: str, *, ndim: int, n: int, row_id: Callable[[int], str]) -> _NpyHeader:
        stream = self._stream(name)
        try:
            header = self._read_npy_header(stream, ndim=ndim, n=n)
            fortran = header.fortran_order and ndim == 3
            for start, block in self._chunks(stream, header):
                if np.isfinite(block).all():
                    continue
                bad = ~np.isfinite(block)
                if fortran:
                    first = int(np.flatnonzero(bad.any(axis=0))[0])
                else:
                    first = start + int(np.flatnonzero(bad.reshape(len(block), -1).any(axis=1))[0])
                raise BundleError(f"contains NaN or infinite values (first at row {first}{row_id(first)})", member=name)
        except BundleError as problem:
            # damaged data can look like a bad header or NaNs: report the damage when that is what it is
            corrupt = stream.corruption(limit=_CORRUPTION_CHECK_BYTES) if _is_content_problem(problem) else None
            raise (corrupt or problem) from None
        stream.finish()
        return header

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

    def _array_stream(self, key: str, ndim: int) -> tuple[_MemberStream, _NpyHeader, CategoryLayout]:
        layout = self.summary.categories[key]
        name = member_names(key)[1 if ndim == 1 else 2]
        stream = self._stream(name, charge=False)  # re-read after validation; the budget was spent there
        header = self._read_npy_header(stream, ndim=ndim, n=layout.n_images)
        return stream, header, layout

    def read_scores(self, key: str) -> np.ndarray:
        """The image scores of ``key`` in the expected (server) order, as stored (float16/float32)."""
        stream, header, layout = self._array_stream(key, 1)
        rows = np.concatenate([block for _, block in self._chunks(stream, header)])
        # re-checked before the CRC (as the maps are): a file changed since validation says what it holds now
        if not np.isfinite(rows).all():
            raise BundleError("contains NaN or infinite values", member=stream.name)
        stream.finish()
        out = np.empty_like(rows)
        out[layout.order] = rows
        return out

    def iter_map_batches(self, key: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, maps)``: bundle rows in chunks ``(B, H, W)``, with their indices in the expected order.

        The data are re-checked as they stream (the file could change between passes). A
        Fortran-order member is read in passes, each gathering up to ``fortran_pass_bytes`` of
        whole images, so memory stays bounded whatever the layout.
        """
        stream, header, layout = self._array_stream(key, 3)
        if not header.fortran_order:
            for start, block in self._chunks(stream, header):
                if not np.isfinite(block).all():
                    raise BundleError("contains NaN or infinite values", member=stream.name)
                yield layout.order[start : start + len(block)], block
            stream.finish()
            return
        n, h, w = header.shape
        per_pass = max(1, self.limits.fortran_pass_bytes // (h * w * header.dtype.itemsize))
        for first in range(0, n, per_pass):
            if first:
                stream, header, layout = self._array_stream(key, 3)
            last = min(n, first + per_pass)
            gathered = np.empty((last - first, h * w), dtype=header.dtype)  # pixel p = row + h * column
            for pixel, block in self._chunks(stream, header):
                gathered[:, pixel : pixel + len(block)] = block[:, first:last].T
            if not np.isfinite(gathered).all():
                raise BundleError("contains NaN or infinite values", member=stream.name)
            stream.finish()
            maps = np.ascontiguousarray(gathered.reshape(last - first, w, h).transpose(0, 2, 1))
            yield layout.order[first:last], maps


def precheck(
    source: str | Path | BinaryIO,
    *,
    suite: str | None = None,
    method: str | Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    limits: BundleLimits | None = None,
) -> Precheck:
    """Cheap checks of an upload, for the request path: no array is read, only the zip structure
    (central directory and local headers), the size limits and ``manifest.json``.

    Checks, in order: the file size, the zip signature, the archive structure and names, the
    member count, declared sizes and compression ratios, the manifest (present, UTF-8 JSON, its
    keys and types), then the manifest against the form: ``suite`` (the suite key chosen in the
    form), ``method`` (the form's method: one name, or several accepted names such as the
    method's name and key, compared case-insensitively) and ``categories`` (the suite's category
    keys), each only when given; finally that the archive holds exactly the members the
    manifest's categories need. Costs a few milliseconds whatever the archive's size.

    Returns
    -------
    Precheck
        The manifest (``manifest.suite`` can pre-select the suite when the form left it
        empty), the archive size, the member count and the declared uncompressed size.

    Raises
    ------
    BundleError
        The first problem, naming the member and saying what to change, e.g.
        ``manifest.json: the manifest says suite 'synthetic' but the form says 'vadi': choose
        suite 'synthetic', or upload a bundle made for suite 'vadi'``.
    """
    with BundleReader(source, limits=limits) as reader:
        return reader.precheck(suite=suite, method=method, categories=categories)


def check(
    source: str | Path | BinaryIO,
    *,
    suite: str | None = None,
    expected_ids: Mapping[str, Sequence[str]] | None = None,
    method: str | Sequence[str] | None = None,
    limits: BundleLimits | None = None,
) -> list[BundleError]:
    """Every problem of a bundle at once (a dry run of the upload and the worker's validation).

    ``expected_ids``: category key -> the published test ids of each category of ``suite`` (the
    suite's exact category set); None checks the archive, the manifest and its member set only.
    Returns a list of :class:`BundleError` (empty: valid). An archive whose structure cannot be
    read is one problem (nothing else can be checked).
    """
    try:
        reader = BundleReader(source, limits=limits)
    except BundleError as problem:
        return [problem]
    with reader:
        return reader.check(suite=suite, expected_ids=expected_ids, method=method)
