"""Peak memory and time of validating hostile and ordinary bundles, each in a fresh process.

Every case is an archive within the default limits (1 GiB archive, 2 GiB uncompressed, 512
members) built to make a validator allocate: a ``.npy`` v2 header claiming 4 GiB followed by
1.9 GiB of deflated zeros (the case of issue 11), lying sizes over deflate and bzip2 bombs, an
LZMA dictionary claim, 800 MiB of valid zero maps, Fortran-order maps at the cap, the most and
the longest members with 64 KiB extra fields, a 64 KiB nested JSON manifest, millions of ids
lines, overlapping entries, ... plus ordinary bundles. Each is validated by
``BundleReader.validate`` in a subprocess that reports:

- ``traced``: peak of ``tracemalloc`` (every Python, NumPy and zlib/bz2/lzma allocation);
- ``rss``: the process's peak resident set (``ru_maxrss``: interpreter and NumPy included),
  and ``+rss``, its growth over the same process just before validating.

``--reference COMMIT`` runs the validator of that commit side by side (for example the one
before issue 11, ``2addf21``), each case capped at 6 GiB of address space and 120 s.
The script exits with status 1 when a case of ours peaks above ``--bound`` MiB (256).

    .venv/bin/python benchmarks/bundle_memory.py [--reference 2addf21] [--cases a,b] [--bound 256]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1 << 20


# Building the archives -----------------------------------------------------------------------------


def _deflated_zeros(n: int, prefix: bytes = b"") -> tuple[bytes, int]:
    """(raw deflate of ``prefix`` + ``n`` zero bytes, CRC-32), made in 1 MiB steps."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [packer.compress(prefix)]
    crc = zlib.crc32(prefix)
    zero = bytes(MIB)
    left = n
    while left:
        step = min(left, MIB)
        out.append(packer.compress(zero[:step]))
        crc = zlib.crc32(zero[:step], crc)
        left -= step
    out.append(packer.flush())
    return b"".join(out), crc


def _big_member(name: str, prefix: bytes, zeros: int, *, declared: int | None = None, method: int = 8):
    from evaluation.tests.rawzip import Member

    if method == 8:
        payload, crc = _deflated_zeros(zeros, prefix)
    else:  # bzip2
        import bz2

        packer = bz2.BZ2Compressor(9)
        chunks, crc, left = [packer.compress(prefix)], zlib.crc32(prefix), zeros
        while left:
            step = min(left, 16 * MIB)
            chunks.append(packer.compress(bytes(step)))
            crc = zlib.crc32(bytes(step), crc)
            left -= step
        chunks.append(packer.flush())
        payload = b"".join(chunks)
    size = len(prefix) + zeros if declared is None else declared
    fields = {"crc": crc, "usize": size}
    return Member(name, b"", method=method, payload=payload, local=dict(fields), central=dict(fields))


def _npy_header(shape: tuple[int, ...], descr: str = "<f2", fortran: bool = False, version: int = 1) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"
    width = 2 if version == 1 else 4
    text += " " * (64 - (8 + width + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY" + bytes([version, 0]) + len(text).to_bytes(width, "little") + text.encode()


def _spec(n_categories: int, n_images: int):
    from evaluation.tests.bundle_corpus import Spec

    ids = {f"synthetic/c{c:02d}": [f"test/x/{i:04d}.png" for i in range(n_images)] for c in range(n_categories)}
    return Spec(suite="synthetic", ids=ids)


def _members_with(spec, replace: dict):
    """The valid members of ``spec`` (small maps), some replaced by ready ``rawzip.Member`` objects."""
    from evaluation.tests.bundle_corpus import raw_members

    members = raw_members(spec)
    return [replace.get(m.name, m) for m in members]


def build_cases(folder: Path) -> dict[str, tuple[Path, dict]]:
    """name -> (archive, expected ids); every archive within the default size limits."""
    import numpy as np

    from algorithms.bundle import write_bundle
    from evaluation.tests.bundle_corpus import BAD_BUNDLES, raw_members
    from evaluation.tests.rawzip import LZMA, Member, build_zip, lzma_payload

    cases: dict[str, tuple[Path, dict]] = {}

    def add(name: str, spec, data: bytes) -> None:
        path = folder / f"{name}.zip"
        path.write_bytes(data)
        cases[name] = (path, spec.ids)

    rng = np.random.default_rng(0)

    # ordinary bundles
    for name, (cats, images, size, dtype) in {
        "ordinary_5x120_256_f16": (5, 120, 256, np.float16),
        "ordinary_2x30_1024_f32": (2, 30, 1024, np.float32),
    }.items():
        spec = _spec(cats, images)
        payload = {}
        for key, ids in spec.ids.items():
            base = rng.random((images, size // 16, size // 16)).astype(np.float32)
            maps = np.repeat(np.repeat(base, 16, axis=1), 16, axis=2)
            maps = (maps + 0.05 * rng.random(maps.shape, dtype=np.float32)).astype(dtype)
            payload[key] = {"ids": ids, "scores": rng.random(images).astype(np.float32), "maps": maps}
        path = folder / f"{name}.zip"
        write_bundle(path, method="bench", suite="synthetic", partial=True, categories=payload)
        cases[name] = (path, spec.ids)
        del payload

    spec = _spec(2, 8)
    key = "synthetic/c00"
    maps_name = f"{key}/maps.npy"
    # issue 11: a v2 header claiming ~4 GiB, then 1.9 GiB of deflated zeros
    claim = b"\x93NUMPY\x02\x00" + (0xFFFFFFF0).to_bytes(4, "little")
    add("npy_header_claims_4gib", spec,
        build_zip(_members_with(spec, {maps_name: _big_member(maps_name, claim, 1900 * MIB)})))  # fmt: skip
    # a header claiming 10^12 images of 1024 x 1024
    add("npy_shape_claims_4e18_bytes", spec, build_zip(_members_with(
        spec, {maps_name: _big_member(maps_name, _npy_header((10**12, 1024, 1024)), 1900 * MIB)})))  # fmt: skip
    # a 1.9 GiB deflate bomb declaring 4 KiB in both headers (the ratio check sees 4 KiB)
    add("deflate_bomb_lying_sizes", spec, build_zip(_members_with(
        spec, {maps_name: _big_member(maps_name, _npy_header((8, 64, 64)), 1900 * MIB, declared=4096)})))  # fmt: skip
    # a bzip2 bomb (1.9 GiB of zeros in ~1.4 KB) declaring 4 KiB
    add("bzip2_bomb_lying_sizes", spec, build_zip(_members_with(
        spec, {maps_name: _big_member(maps_name, _npy_header((8, 64, 64)), 1900 * MIB, declared=4096,
                                      method=12)})))  # fmt: skip
    # an LZMA stream claiming a 4 GiB dictionary; and a valid one using the largest allowed (64 MiB)
    members = raw_members(spec)
    members[3] = Member(maps_name, members[3].data, method=LZMA,
                        payload=lzma_payload(members[3].data, claimed_dict=0xFFFFFFFF))  # fmt: skip
    add("lzma_dictionary_claims_4gib", spec, build_zip(members))
    big = _spec(1, 160)  # 80 MiB of maps: the decoder needs the whole 64 MiB dictionary
    big_maps = np.repeat(rng.random((160, 512, 32)).astype(np.float16), 16, axis=2)
    members = raw_members(big)
    npy = _npy_header((160, 512, 512)) + big_maps.tobytes()
    payload = lzma_payload(npy, dict_size=64 * MIB, preset=1)
    members[-1] = Member(members[-1].name, npy, method=LZMA, payload=payload)
    add("lzma_64mib_dictionary_valid", big, build_zip(members))
    # 800 MiB of valid all-zero maps (1024 x 1024 float16), deflated to about 800 KB
    zeros_spec = _spec(1, 400)
    name = "synthetic/c00/maps.npy"
    add("zero_maps_800mib_valid", zeros_spec, build_zip(_members_with(
        zeros_spec, {name: _big_member(name, _npy_header((400, 1024, 1024)), 400 * 1024 * 1024 * 2)})))  # fmt: skip
    # Fortran-order float32 maps at the 256 MiB cap, valid
    fortran_spec = _spec(1, 64)
    add("fortran_maps_256mib_valid", fortran_spec, build_zip(_members_with(
        fortran_spec, {name: _big_member(name, _npy_header((64, 1024, 1024), "<f4", True), 256 * MIB)})))  # fmt: skip
    # 512 members (the limit) with 255-byte names and 64 KiB extra fields in both headers
    extra = (0xCAFE).to_bytes(2, "little") + (65531).to_bytes(2, "little") + bytes(65531)
    members = raw_members(spec) + [
        Member(f"synthetic/{'n' * 230}{i:04d}.txt".encode(), b"x", local_extra=extra, central_extra=extra)
        for i in range(512 - 7)
    ]
    add("max_members_long_names_64kib_extras", spec, build_zip(members))
    # an end record claiming 60,000 members
    data = bytearray(build_zip(raw_members(spec)))
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = (60000).to_bytes(2, "little") * 2
    add("entry_count_claims_60000", spec, bytes(data))
    # a manifest of 64 KiB nested arrays
    nested = b"[" * 32_000 + b"]" * 32_000
    members = raw_members(spec)
    members[0] = Member("manifest.json", nested)
    add("manifest_32000_nested_arrays", spec, build_zip(members))
    # ids.txt of 4 MiB: two million one-character lines
    members = raw_members(spec)
    members[1] = Member(members[1].name, b"a\n" * (2 * MIB))
    add("ids_2m_lines", spec, build_zip(members))
    # 500 central-directory entries pointing at one 100 MiB deflated member (overlapped-entry bomb)
    data = bytearray(build_zip(_members_with(
        spec, {maps_name: _big_member(maps_name, _npy_header((8, 64, 64)), 100 * MIB)})))  # fmt: skip
    add("overlapped_entries", spec, bytes(_overlap(data, 400)))
    # a 64 KiB archive comment
    add("comment_64kib", spec, build_zip(raw_members(spec), comment=b"c" * 65535))
    # every small hostile case of the test corpus, at default limits
    corpus = folder / "corpus"
    corpus.mkdir()
    small = _spec(2, 8)
    for case in BAD_BUNDLES:
        if not case.limits:
            case.build(corpus / f"{case.name}.zip", small)
    cases["corpus_all_hostile_cases"] = (corpus, small.ids)
    return cases


def _overlap(data: bytearray, copies: int) -> bytearray:
    """Append ``copies`` more central-directory entries naming the same local header as the last entry."""
    end = data.rfind(b"PK\x05\x06")
    count = int.from_bytes(data[end + 10 : end + 12], "little")
    cd_size = int.from_bytes(data[end + 12 : end + 16], "little")
    cd_offset = int.from_bytes(data[end + 16 : end + 20], "little")
    last = data.rfind(b"PK\x01\x02", cd_offset, end)
    name_len = int.from_bytes(data[last + 28 : last + 30], "little")
    extra_len = int.from_bytes(data[last + 30 : last + 32], "little")
    entry = bytes(data[last : last + 46 + name_len + extra_len])
    clones = []
    for i in range(copies):
        name = f"synthetic/dup{i:04d}.npy".encode()
        clone = bytearray(entry[:46])
        clone[28:30] = len(name).to_bytes(2, "little")
        clone[30:32] = (0).to_bytes(2, "little")
        clones.append(bytes(clone) + name)
    added = b"".join(clones)
    out = data[:end] + added + data[end:]
    tail = len(data[:end]) + len(added)
    out[tail + 8 : tail + 12] = (count + copies).to_bytes(2, "little") * 2
    out[tail + 12 : tail + 16] = (cd_size + len(added)).to_bytes(4, "little")
    return out


# Measuring --------------------------------------------------------------------------------------------


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(path: str, expected: str, module_path: str | None) -> None:
    """Validate one archive (or every archive of a folder); print JSON with the peaks."""
    import importlib.util
    import tracemalloc

    import numpy  # noqa: F401  (imported before the baseline, as in a worker)

    if module_path:
        spec = importlib.util.spec_from_file_location("reference_bundles", module_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    else:
        from evaluation import bundles as module
    ids = json.loads(Path(expected).read_text())
    paths = sorted(Path(path).glob("*.zip")) if Path(path).is_dir() else [Path(path)]
    baseline = _rss_mib()
    tracemalloc.start()
    start = time.perf_counter()
    outcomes = []
    for archive in paths:
        try:
            with module.BundleReader(archive) as reader:
                reader.validate(suite="synthetic", expected_ids=ids)
            outcomes.append("accepted")
        except module.BundleError as exc:
            outcomes.append(f"refused: {str(exc)[:90]}")
        except Exception as exc:  # the reference may crash; ours must not (the tests say so)
            outcomes.append(f"CRASH {type(exc).__name__}: {str(exc)[:80]}")
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] / MIB
    refused = sum(o.startswith("refused") for o in outcomes)
    crashed = sum(o.startswith("CRASH") for o in outcomes)
    summary = outcomes[0] if len(outcomes) == 1 else f"{refused}/{len(outcomes)} refused, {crashed} crashed"
    result = {"seconds": seconds, "traced": traced, "rss": _rss_mib(), "baseline": baseline, "outcome": summary}
    print(json.dumps(result))


def measure(path: Path, expected: dict, *, module_path: str | None, cap_gib: float | None, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(expected, handle)
    command = [sys.executable, __file__, "--worker", str(path), handle.name]
    if module_path:
        command.append(module_path)

    def limit() -> None:
        if cap_gib:
            cap = int(cap_gib * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"outcome": f"timed out after {timeout:.0f} s"}
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"outcome": f"process died ({last[:80]})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="commit whose evaluation/bundles.py runs side by side")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--bound", type=float, default=256.0, help="MiB; exit 1 if ours peaks above it")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.worker[2] if len(args.worker) > 2 else None)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        reference = None
        if args.reference:
            reference = folder / "reference_bundles.py"
            source = subprocess.run(["git", "show", f"{args.reference}:evaluation/bundles.py"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout  # fmt: skip
            reference.write_text(source)
        started = time.perf_counter()
        cases = build_cases(folder)
        print(f"built {len(cases)} cases in {time.perf_counter() - started:.0f} s "
              f"(sizes: archive MiB, uncompressed as declared)")  # fmt: skip
        wanted = args.cases.split(",") if args.cases else list(cases)
        header = f"{'case':38} {'archive':>8} {'time s':>7} {'traced':>7} {'rss':>6} {'+rss':>6}  outcome"
        print(header)
        worst = 0.0
        for name in wanted:
            path, expected = cases[name]
            size = sum(p.stat().st_size for p in path.glob("*.zip")) if path.is_dir() else path.stat().st_size
            ours = measure(path, expected, module_path=None, cap_gib=None, timeout=600)
            worst = max(worst, ours.get("rss", float("inf")), ours.get("traced", 0.0))
            print(f"{name:38} {size / MIB:8.2f} {ours['seconds']:7.2f} {ours['traced']:7.1f} {ours['rss']:6.0f} "
                  f"{ours['rss'] - ours['baseline']:6.0f}  {ours['outcome']}")  # fmt: skip
            if reference is not None:
                theirs = measure(path, expected, module_path=str(reference), cap_gib=6, timeout=120)
                if "seconds" in theirs:
                    print(f"{'  reference ' + args.reference:38} {'':8} {theirs['seconds']:7.2f} "
                          f"{theirs['traced']:7.1f} {theirs['rss']:6.0f} {theirs['rss'] - theirs['baseline']:6.0f}  "
                          f"{theirs['outcome']}")  # fmt: skip
                else:
                    print(f"{'  reference ' + args.reference:38} {'':8} {'':>7} {'':>7} {'':>6} {'':>6}  "
                          f"{theirs['outcome']}")  # fmt: skip
        print(f"worst peak of ours: {worst:.0f} MiB (bound {args.bound:.0f} MiB)")
        return 0 if worst <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
