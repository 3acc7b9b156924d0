"""Write zip archives byte by byte, valid or not (test support for the bundle corpus).

:mod:`zipfile` cannot write what an attacker writes: names with NUL bytes, local headers that
disagree with the central directory, data descriptors of every layout, zip64 records on small
archives, gaps, overlaps, lying sizes. :func:`build_zip` writes each structure from
:class:`Member` fields (PKWARE APPNOTE 6.3.10, sections 4.3.7-4.3.16); every field can be
overridden in the local header, the central directory or both.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass, field

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
FLAG_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800
FLAG_LZMA_EOS = 0x0002
UNIX_FILE = 0o100644 << 16
UNIX_DIR = (0o040755 << 16) | 0x10
MADE_BY_UNIX = (3 << 8) | 20
DESCRIPTOR_LAYOUTS = {"plain": (False, 4), "signed": (True, 4), "zip64": (False, 8), "zip64-signed": (True, 8)}


def lzma_payload(data: bytes, *, dict_size: int = 1 << 16, claimed_dict: int | None = None, preset: int = 6,
                 lc: int = 3, lp: int = 0, pb: int = 2) -> bytes:
    """The zip LZMA format: version (2 bytes), properties size (2), 5 property bytes, raw LZMA1 with end marker."""
    filters = [{"id": lzma.FILTER_LZMA1, "preset": preset, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}]
    raw = lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    props = bytes([(pb * 5 + lp) * 9 + lc]) + (claimed_dict or dict_size).to_bytes(4, "little")
    return b"\x09\x14\x05\x00" + props + raw


def compress(data: bytes, method: int) -> bytes:
    if method == STORED:
        return data
    if method == DEFLATED:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        return packer.compress(data) + packer.flush()
    if method == BZIP2:
        return bz2.compress(data)
    if method == LZMA:
        return lzma_payload(data)
    raise ValueError(f"no compressor for method {method}")


@dataclass
class Member:
    """One member; ``local``/``central`` override header fields (flags, method, crc, csize, usize,
    offset, disk) in that header only; ``payload`` replaces the compressed bytes."""

    name: str | bytes
    data: bytes = b""
    method: int = DEFLATED
    flags: int = 0
    descriptor: str | None = None  # one of DESCRIPTOR_LAYOUTS
    zip64_local: bool = False
    zip64_central: bool = False
    external_attr: int = UNIX_FILE
    made_by: int = MADE_BY_UNIX
    local_name: bytes | None = None
    local_extra: bytes = b""
    central_extra: bytes = b""
    comment: bytes = b""
    payload: bytes | None = None
    local: dict = field(default_factory=dict)
    central: dict = field(default_factory=dict)

    @property
    def raw_name(self) -> bytes:
        return self.name.encode("utf-8") if isinstance(self.name, str) else self.name


def _zip64_extra(values: list[int]) -> bytes:
    body = b"".join(struct.pack("<Q", v) for v in values)
    return struct.pack("<2H", 0x0001, len(body)) + body


def build_zip(
    members: list[Member],
    *,
    comment: bytes = b"",
    zip64_end: bool = False,
    eocd: dict | None = None,
    gaps: dict[int, bytes] | None = None,
    prefix: bytes = b"",
    trailing: bytes = b"",
    central_order: list[int] | None = None,
) -> bytes:
    """The archive's bytes. ``gaps[i]`` is written after member ``i``'s data (and descriptor);
    ``eocd`` overrides end-record fields (disk, cd_disk, entries_here, entries, cd_size, cd_offset)."""
    out = bytearray(prefix)
    gaps = gaps or {}
    records = []
    for index, m in enumerate(members):
        payload = compress(m.data, m.method) if m.payload is None else m.payload
        flags = m.flags | (FLAG_LZMA_EOS if m.method == LZMA else 0) | (FLAG_DESCRIPTOR if m.descriptor else 0)
        true = {"crc": zlib.crc32(m.data), "csize": len(payload), "usize": len(m.data)}
        base = {"flags": flags, "method": m.method, **true}
        local = {**base, **m.local}
        offset = len(out)
        name = m.raw_name if m.local_name is None else m.local_name
        extra = m.local_extra
        crc, csize, usize = local["crc"], local["csize"], local["usize"]
        if m.descriptor and not m.local:
            crc, csize, usize = 0, 0, 0
        if m.zip64_local:
            extra = _zip64_extra([usize, csize]) + extra
            csize = usize = 0xFFFFFFFF
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 45 if m.zip64_local else 20, local["flags"], local["method"], 0, 0x5821,
            crc, csize, usize, len(name), len(extra),
        )  # fmt: skip
        out += name + extra + payload
        if m.descriptor:
            signed, width = DESCRIPTOR_LAYOUTS[m.descriptor]
            fmt = "<L" + ("Q" if width == 8 else "L") * 2
            out += (b"PK\x07\x08" if signed else b"") + struct.pack(fmt, true["crc"], true["csize"], true["usize"])
        out += gaps.get(index, b"")
        records.append((m, {**base, "offset": offset, "disk": 0, **m.central}))
    cd_offset = len(out)
    order = central_order if central_order is not None else range(len(records))
    for index in order:
        m, c = records[index]
        extra = m.central_extra
        usize, csize, offset = c["usize"], c["csize"], c["offset"]
        if m.zip64_central:
            extra = _zip64_extra([usize, csize, offset]) + extra
            usize = csize = offset = 0xFFFFFFFF
        out += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", m.made_by, 45 if m.zip64_central else 20, c["flags"], c["method"], 0,
            0x5821, c["crc"], csize, usize, len(m.raw_name), len(extra), len(m.comment), c["disk"], 0,
            m.external_attr, offset,
        )  # fmt: skip
        out += m.raw_name + extra + m.comment
    cd_size = len(out) - cd_offset
    end = {"disk": 0, "cd_disk": 0, "entries_here": len(order), "entries": len(order), "cd_size": cd_size,
           "cd_offset": cd_offset, **(eocd or {})}  # fmt: skip
    if zip64_end:
        record_at = len(out)
        out += struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, end["disk"], end["cd_disk"], end["entries_here"],
            end["entries"], end["cd_size"], end["cd_offset"],
        )  # fmt: skip
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, record_at, 1)
        end = {key: (0xFFFF if key in ("entries_here", "entries") else 0xFFFFFFFF if key.startswith("cd_s")
                     or key == "cd_offset" else value) for key, value in end.items()}  # fmt: skip
    out += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", end["disk"], end["cd_disk"], end["entries_here"], end["entries"], end["cd_size"],
        end["cd_offset"], len(comment),
    )  # fmt: skip
    out += comment + trailing
    return bytes(out)
