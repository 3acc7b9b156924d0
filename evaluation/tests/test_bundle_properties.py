"""Property-based tests: nothing an upload contains makes the reader raise anything but ``BundleError``.

Valid bundles are mutated at the byte, zip-structure, JSON, ids and ``.npy`` levels. For every
mutant the outcome is one of two: the reader refuses it with a ``BundleError`` (a non-empty
message that names the member first when there is one), or it accepts it and then the scorer
scores it (four metrics in [0, 1]) and the upload-time precheck passes it too. Any other
exception fails the test. A last property draws valid bundles with arbitrary finite values
(float16/float32 bit patterns, extremes near +-3.4e38, subnormals, constants, C or Fortran
order): the validator must accept each and the scorer must score it.

Examples are derandomised (a fixed seed per test) and bounded, so the run takes seconds and
is the same in CI and here.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluation.bundles import BundleError, BundleReader, precheck
from evaluation.scoring import score_bundle
from evaluation.tests.bundle_corpus import Spec, manifest_bytes, members_of, npy_raw, valid_categories
from evaluation.tests.rawzip import BZIP2, DEFLATED, LZMA, STORED, Member, build_zip
from evaluation.tests.test_bundles import ground_truths

SPEC = Spec(
    suite="synthetic",
    ids={
        "synthetic/aa": ["test/good/000.png", "test/good/001.png", "test/crack/000.png", "test/crack/001.png"],
        "synthetic/bb": ["test/good/000.png", "test/hole/000.png", "test/hole/001.png"],
    },
)
GROUND_TRUTHS = ground_truths(SPEC)
CATEGORIES = valid_categories(SPEC)
MEMBERS = members_of(SPEC, CATEGORIES)
METRICS = {"image_auroc", "pixel_auroc", "aupro", "pl"}

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def _archive(members: list[tuple[str, bytes]], *, method: int = DEFLATED, **options) -> bytes:
    return build_zip([Member(name, data, method=method) for name, data in members], **options)


def _replaced(name: str, data: bytes) -> list[tuple[str, bytes]]:
    return [(member, data if member == name else content) for member, content in MEMBERS]


BASES = {
    "deflate": _archive(MEMBERS),
    "stored": _archive(MEMBERS, method=STORED),
    "mixed": build_zip(
        [
            Member(name, data, method=(DEFLATED, STORED, BZIP2, LZMA)[i % 4],
                   descriptor=(None, "signed", "zip64")[i % 3], zip64_local=i % 2 == 1)
            for i, (name, data) in enumerate(MEMBERS)
        ],
        zip64_end=True,
    ),
}  # fmt: skip


def outcome(data: bytes) -> str:
    """``"refused"`` or ``"accepted"`` (then scored); any other exception propagates and fails the test."""
    try:
        passed_precheck = precheck(io.BytesIO(data)) is not None
    except BundleError:
        passed_precheck = False
    try:
        with BundleReader(io.BytesIO(data)) as reader:
            reader.validate(suite=SPEC.suite, expected_ids=SPEC.ids)
            results = score_bundle(reader, GROUND_TRUTHS)
    except BundleError as exc:
        message = str(exc)
        assert message.strip()
        if exc.member is not None:
            assert message.startswith(f"{exc.member}: ")
        return "refused"
    assert passed_precheck, "the precheck refused a bundle that validates"
    assert set(results) == set(SPEC.ids)
    for values in results.values():
        assert set(values) == METRICS
        assert all(0.0 <= value <= 1.0 for value in values.values()), values
    return "accepted"


def test_the_unmutated_bases_are_accepted():
    assert {name: outcome(data) for name, data in BASES.items()} == dict.fromkeys(BASES, "accepted")


# Byte level ------------------------------------------------------------------------------------------


def _structure_offsets(data: bytes) -> list[int]:
    """Offsets of header bytes (local headers, descriptors, central directory, end records)."""
    with BundleReader(io.BytesIO(data)) as reader:
        entries = list(reader._infos.values())
    hot: set[int] = set()
    for entry in entries:
        hot.update(range(entry.header_offset, entry.data_offset + min(entry.compress_size, 140)))
        hot.update(range(entry.data_end, entry.data_end + entry.descriptor_bytes))
    cd_start = max(entry.data_end + entry.descriptor_bytes for entry in entries)
    hot.update(range(cd_start, len(data)))
    return sorted(hot)


HOT = {name: _structure_offsets(data) for name, data in BASES.items()}


@st.composite
def byte_mutants(draw) -> bytes:
    base = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[base])
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        position = draw(st.one_of(st.sampled_from(HOT[base]), st.integers(0, len(BASES[base]) - 1)))
        position = min(position, len(data) - 1)
        op = draw(st.sampled_from(["set", "xor", "insert", "delete", "truncate", "append", "copy"]))
        if op == "set":
            data[position] = draw(st.integers(0, 255))
        elif op == "xor":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[position:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=64))
        else:
            length = draw(st.integers(1, 64))
            target = draw(st.integers(0, len(data)))
            data[target:target] = data[position : position + length]
    return bytes(data)


@PROPERTY
@given(byte_mutants())
def test_byte_mutations_are_refused_or_scored(data):
    outcome(data)


# Zip-structure level --------------------------------------------------------------------------------

_LOCAL_FIELDS = [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)]
_CENTRAL_FIELDS = [(4, 2), (6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (34, 2),
                   (38, 4), (42, 4)]  # fmt: skip
_EOCD_FIELDS = [(4, 2), (6, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]


def _fields(data: bytes) -> list[tuple[int, int]]:
    """(absolute offset, width) of every numeric field of every zip record in ``data``."""
    out = []
    for signature, fields in ((b"PK\x03\x04", _LOCAL_FIELDS), (b"PK\x01\x02", _CENTRAL_FIELDS)):
        pos = data.find(signature)
        while pos >= 0:
            out += [(pos + offset, width) for offset, width in fields]
            pos = data.find(signature, pos + 4)
    eocd = data.rfind(b"PK\x05\x06")
    out += [(eocd + offset, width) for offset, width in _EOCD_FIELDS]
    zip64 = data.rfind(b"PK\x06\x06")
    if zip64 >= 0:
        out += [(zip64 + offset, 8 if offset >= 24 else 4) for offset in (16, 20, 24, 32, 40, 48)]
    return out


FIELDS = {name: _fields(data) for name, data in BASES.items()}


@st.composite
def structure_mutants(draw) -> bytes:
    base = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[base])
    for _ in range(draw(st.integers(1, 2))):
        offset, width = draw(st.sampled_from(FIELDS[base]))
        top = (1 << (8 * width)) - 1
        current = int.from_bytes(data[offset : offset + width], "little")
        value = draw(
            st.one_of(
                st.sampled_from([0, 1, 2, 0x0800, 0x0008, 0x0001, top, top - 1, top // 2 + 1]),
                st.integers(0, top),
                st.integers(-64, 64).map(lambda delta, current=current, top=top: min(top, max(0, current + delta))),
            )
        )
        data[offset : offset + width] = value.to_bytes(width, "little")
    return bytes(data)


@PROPERTY
@given(structure_mutants())
def test_zip_structure_mutations_are_refused_or_scored(data):
    outcome(data)


@st.composite
def member_layouts(draw) -> bytes:
    """Valid members written with drawn methods, flags, descriptors, zip64 records, extras, names and comments."""
    members = []
    for name, content in MEMBERS:
        raw_name = name.encode()
        if draw(st.integers(0, 9)) == 0:
            raw_name = draw(st.sampled_from([
                raw_name + b"\x00x", raw_name.upper(), b"./" + raw_name, raw_name.replace(b"/", b"\\"),
                "synthetic/é".encode(), raw_name + b"/", b"/" + raw_name, raw_name.replace(b"a", b"\xd0\xb0"),
            ]))  # fmt: skip
        members.append(
            Member(
                raw_name,
                content,
                method=draw(st.sampled_from([STORED, DEFLATED, BZIP2, LZMA])),
                flags=draw(st.sampled_from([0] * 20 + [0x0800, 0x0800, 0x0002, 0x0001, 0x0040, 0x1000])),
                descriptor=draw(st.sampled_from([None, None, "plain", "signed", "zip64", "zip64-signed"])),
                zip64_local=draw(st.booleans()),
                zip64_central=draw(st.booleans()),
                external_attr=draw(
                    st.sampled_from([0o100644 << 16] * 12 + [0x20, 0, 0o120777 << 16, (0o40755 << 16) | 0x10])
                ),
                local_extra=draw(
                    st.sampled_from([b""] * 6 + [struct.pack("<2HBL", 0x5455, 5, 1, 0)] * 3 + [b"\x01\x00"])
                ),
                comment=draw(st.sampled_from([b"", b"note"])),
            )
        )
    order = draw(st.permutations(range(len(members))))
    members = [members[i] for i in order]
    if draw(st.booleans()):
        members.append(
            Member(draw(st.sampled_from(["synthetic/", "synthetic/aa/", "extra.txt", "synthetic/aa/x"])), b"")
        )
    return build_zip(
        members,
        comment=draw(st.sampled_from([b""] * 4 + [b"comment", b"PK\x05\x06"])),
        zip64_end=draw(st.booleans()),
        trailing=draw(st.sampled_from([b""] * 9 + [b"\x00"])),
    )


@PROPERTY
@given(member_layouts())
def test_member_layouts_are_refused_or_scored(data):
    outcome(data)


# JSON level -------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
MANIFEST = json.loads(manifest_bytes(SPEC))


@st.composite
def manifests(draw) -> bytes:
    kind = draw(st.sampled_from(["fields", "value", "text", "nesting", "bytes"]))
    if kind == "fields":
        payload = dict(MANIFEST)
        for key in draw(st.lists(st.sampled_from([*MANIFEST, "description", "extra"]), max_size=3)):
            if draw(st.booleans()):
                payload[key] = draw(JSON_VALUES | st.sampled_from([1, "synthetic", list(SPEC.ids), "m" * 121, [1], []]))
            else:
                payload.pop(key, None)
        text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    elif kind == "value":
        text = json.dumps(draw(JSON_VALUES))
    elif kind == "text":
        text = json.dumps(MANIFEST)
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(st.text(max_size=12)) + text[position + draw(st.integers(0, 6)) :]
    elif kind == "nesting":
        depth = draw(st.integers(1, 40_000))
        inner = "[" * depth + "]" * depth
        text = json.dumps(MANIFEST)[:-1] + f', "description": {inner}}}'
    else:
        return draw(st.binary(max_size=200))
    prefix = draw(st.sampled_from(["", "", "\ufeff"]))
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "latin-1"]))
    return (prefix + text).encode(encoding, "surrogatepass" if encoding != "latin-1" else "replace")


@PROPERTY
@given(manifests())
def test_manifest_mutations_are_refused_or_scored(manifest):
    outcome(_archive(_replaced("manifest.json", manifest)))


# ids level --------------------------------------------------------------------------------------------


@st.composite
def ids_texts(draw) -> bytes:
    ids = list(CATEGORIES["synthetic/aa"]["ids"])
    pool = st.sampled_from([*ids, "", " ", "test/nope.png", ids[0] + " ", "\t" + ids[1], ids[2] + "\x00"])
    lines = draw(st.lists(pool | st.text(max_size=16), min_size=0, max_size=8)) if draw(st.booleans()) else ids
    separator = draw(st.sampled_from(["\n", "\r\n", "\r", "\n\n"]))
    text = separator.join(lines) + draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))
    text = draw(st.sampled_from(["", "\ufeff"])) + text
    return text.encode(draw(st.sampled_from(["utf-8"] * 6 + ["utf-16"])), "surrogatepass")


@PROPERTY
@given(ids_texts())
def test_ids_mutations_are_refused_or_scored(ids):
    outcome(_archive(_replaced("synthetic/aa/ids.txt", ids)))


# .npy level ------------------------------------------------------------------------------------------

DESCRS = ["'<f2'"] * 8 + ["'<f4'", "'>f4'", "'<f8'", "'|O'", "'|b1'", "'<i4'", "'=f2'", "'f2'", "'<U3'",
                          "[('a', '<f4')]", "'(2,)<f4'", "b'<f2'", "1", "None", "'<f2"]  # fmt: skip
SHAPES = st.one_of(
    st.just("(4, 64, 64)"),
    st.just("(4, 64, 64)"),
    st.just("(4, 64, 64)"),
    st.lists(st.integers(-2, 2**65), max_size=4).map(lambda dims: "(" + "".join(f"{d}, " for d in dims) + ")"),
    st.sampled_from(["()", "(4,)", "(4, 64)", "(4, 64, 64, 1)", "[4, 64, 64]", "4", "(4, 1024, 1024)", "(4, 64, 65)"]),
)


@st.composite
def npy_members(draw) -> bytes:
    maps = CATEGORIES["synthetic/aa"]["maps"]
    kind = draw(st.sampled_from(["header", "claims", "data", "values"]))
    if kind == "values":  # any float16 bit pattern: NaN, infinities, subnormals, extremes
        bits = np.frombuffer(draw(st.binary(min_size=maps.nbytes, max_size=maps.nbytes)), dtype="<u2")
        order = draw(st.sampled_from(["C", "F"]))
        array = bits.view("<f2").reshape(maps.shape)
        return npy_raw(
            f"{{'descr': '<f2', 'fortran_order': {order == 'F'}, 'shape': (4, 64, 64), }}\n", array.tobytes(order)
        )
    data = maps.tobytes()
    descr = draw(st.sampled_from(DESCRS))
    fortran = draw(st.sampled_from(["False"] * 4 + ["True"] * 2 + ["0", "None", "'no'"]))
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {draw(SHAPES)}, }}"
    if kind == "header":
        header = draw(st.sampled_from([header, header + "\n", header[: draw(st.integers(0, len(header)))], "{}",
                                       header.replace("}", ", 'x': 1}"), draw(st.text(max_size=40))]))  # fmt: skip
    version = draw(st.sampled_from([(1, 0)] * 6 + [(2, 0)] * 4 + [(3, 0), (0, 0), (1, 1), (255, 255)]))
    claimed = None
    if kind == "claims":
        claimed = draw(st.one_of(st.integers(0, 2**16 - 1), st.sampled_from([0, 10_000, 10_001, 2**32 - 1])))
        if version[0] == 1:
            claimed %= 2**16
    if kind == "data":
        data = draw(
            st.sampled_from([data[: draw(st.integers(0, len(data)))], data + draw(st.binary(max_size=64)), b""])
        )
    try:
        return npy_raw(header.encode("latin-1", "replace"), data, version=version, claimed_len=claimed)
    except OverflowError:
        return npy_raw(header.encode("latin-1", "replace"), data, version=version)


@PROPERTY
@given(npy_members(), st.sampled_from(["synthetic/aa/maps.npy", "synthetic/aa/scores.npy"]))
def test_npy_mutations_are_refused_or_scored(npy, name):
    outcome(_archive(_replaced(name, npy)))


# Whatever the validator accepts, the scorer scores ------------------------------------------------------

F32_PALETTE = np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max, 3.0e38, -3.0e38, 1e-45, -1e-45,
                        np.finfo(np.float32).tiny, 0.0, -0.0, 1.0, -1.0, 1e20, -1e20], dtype=np.float32)  # fmt: skip


@st.composite
def finite_arrays(draw, shape: tuple[int, ...]) -> np.ndarray:
    """Finite float16/float32 arrays: random bit patterns (non-finite ones replaced), extremes, constants."""
    dtype = np.dtype(draw(st.sampled_from(["<f2", "<f4"])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["bits", "palette", "constant", "uniform"]))
    if kind == "bits":
        raw = rng.integers(0, 2 ** (8 * dtype.itemsize), size=shape, dtype=np.uint64)
        array = raw.astype(f"<u{dtype.itemsize}").view(dtype)
        array[~np.isfinite(array)] = np.finfo(dtype).max
    elif kind == "palette":
        palette = F32_PALETTE if dtype.itemsize == 4 else np.array([65504, -65504, 6e-8, -6e-8, 0, 1], np.float16)
        array = rng.choice(palette, size=shape).astype(dtype)
    elif kind == "constant":
        array = np.full(shape, draw(st.sampled_from([0.0, 1.0, -65504.0, 65504.0])), dtype=dtype)
    else:
        array = rng.random(shape).astype(dtype)
    return array


@st.composite
def valid_bundles(draw) -> bytes:
    members = [("manifest.json", manifest_bytes(SPEC))]
    for key, entry in CATEGORIES.items():
        n = len(entry["ids"])
        size = (draw(st.sampled_from([64, 65, 97])), draw(st.sampled_from([64, 80, 128])))
        maps = draw(finite_arrays((n, *size)))
        if draw(st.booleans()):
            maps = np.asfortranarray(maps)
        buffer = io.BytesIO()
        np.save(buffer, maps)
        scores = io.BytesIO()
        np.save(scores, draw(finite_arrays((n,))))
        members += [(f"{key}/ids.txt", "".join(f"{i}\n" for i in entry["ids"]).encode()),
                    (f"{key}/scores.npy", scores.getvalue()), (f"{key}/maps.npy", buffer.getvalue())]  # fmt: skip
    return _archive(members, method=draw(st.sampled_from([STORED, DEFLATED])))


@settings(PROPERTY, max_examples=40)
@given(valid_bundles())
def test_whatever_the_validator_accepts_the_scorer_scores(data):
    assert outcome(data) == "accepted"
