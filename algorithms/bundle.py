"""Write bundles: the zip of per-category scores and anomaly maps that the leaderboard scores.

A bundle turns any model's outputs into an upload (``docs/bundle-format.md``)::

    manifest.json                       {"format_version": 2, "method": ..., "suite": ..., "categories": [...]}
    <dataset>/<category>/ids.txt        one test-image id per line (the opaque ids the server publishes)
    <dataset>/<category>/scores.npy     (N,)      float16 | float32
    <dataset>/<category>/maps.npy       (N, H, W) float16 | float32, 64 <= H, W <= 1024

Use :func:`write_bundle` from Python, or turn a runner output directory into a bundle::

    python -m algorithms bundle --predictions RUN_DIR --method NAME --suite SUITE --out FILE.zip \
        --id-table ids.json
    python -m algorithms bundle --check FILE.zip [--server URL]     # every problem at once, before uploading

The runner names test images by their path (``test/good/004.png``); the server publishes opaque
ids and, for suites whose ground truth is public, the id -> file-name table
(``GET /api/v1/categories/<key>/test-files``): pass it as ``id_tables`` (``--id-table``) and the
writer translates. Blind-suite images are downloaded already named by their id.

No Django, no torch: numpy and the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BundleWriteError", "bundle_from_predictions", "check_bundle", "load_id_tables", "main", "write_bundle"]

FORMAT_VERSION = 2
MIN_MAP_SIDE = 64
MAX_MAP_SIDE = 1024
_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}


class BundleWriteError(ValueError):
    """The arrays or options given to the writer cannot make a valid bundle."""


def _merged_values(array: np.ndarray, target: np.dtype) -> tuple[int, int, str, str, str] | None:
    """Whether casting ``array`` to ``target`` merges distinct values (ties that were not there).

    Rounding to nearest is monotone, so a cast never reorders values; the only way it changes a
    ranking is by making two different values equal. A cast that round-trips exactly merges
    nothing (checked first, in one pass); otherwise the values are sorted once and each pair of
    neighbours that differed before and are equal after is a merge.

    Returns ``(distinct before, distinct after, a, b, both)`` for the first merged pair, or None.
    """
    flat = array.ravel()
    common = flat.dtype if flat.dtype.kind == "f" else np.dtype(np.float64)  # exact for the target's values
    with np.errstate(over="ignore", invalid="ignore"):
        if np.array_equal(flat.astype(target).astype(common), flat.astype(common, copy=False)):
            return None
        ordered = np.sort(flat)
        cast = ordered.astype(target)
    differed = ordered[1:] != ordered[:-1]
    merged = differed & (cast[1:] == cast[:-1])
    if not merged.any():
        return None
    i = int(np.argmax(merged))
    before = int(np.count_nonzero(differed)) + 1
    after = int(np.count_nonzero(cast[1:] != cast[:-1])) + 1
    return before, after, _shortest(ordered[i]), _shortest(ordered[i + 1]), _shortest(cast[i])


def _shortest(value: np.generic) -> str:
    """The shortest text that identifies ``value`` in its own dtype (``3000.0002`` for float32)."""
    if value.dtype.kind == "f":
        return np.format_float_positional(value, unique=True, trim="-")
    return str(value)


def _as_float_array(
    value: Any, *, dtype: np.dtype | None, what: str, protocol_dtype: np.dtype | None = None
) -> np.ndarray:
    """``value`` as a little-endian float16/float32 array, refusing anything that would change a metric.

    A cast to a narrower float is refused when it overflows (inf) or merges distinct values,
    since every metric here is rank-based; ``protocol_dtype`` is the precision the evaluator
    computes in anyway (float32 for maps: ``evaluation.metrics.to_protocol``), casts to which are
    not checked.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "fiu" or array.dtype.kind == "b":
        raise BundleWriteError(f"{what} must be a real-valued array, got dtype {array.dtype}")
    if dtype is not None:
        target = dtype
    elif array.dtype.kind == "f" and array.dtype.itemsize in (2, 4):
        target = np.dtype(f"<f{array.dtype.itemsize}")  # keep float16/float32, stored little-endian
    else:
        target = _DTYPES["float32"]
    if not np.isfinite(array).all():
        raise BundleWriteError(f"{what} contains NaN or infinite values")
    with np.errstate(over="ignore"):  # an overflow shows as inf, reported just below
        out = np.ascontiguousarray(array, dtype=target)
    suggestion = "; write float32 (dtype='float32', or None to keep float32 input)" if target.itemsize == 2 else ""
    if not np.isfinite(out).all():
        n_over = int(np.count_nonzero(~np.isfinite(out)))
        raise BundleWriteError(
            f"{what} overflows {target.name}: {n_over:,} values would become infinite ({target.name} holds at most "
            f"{np.finfo(target).max:g}){suggestion}"
        )
    reference = array  # what the evaluator would compare: the values at its own precision
    if protocol_dtype is not None and (array.dtype.kind in "iu" or array.dtype.itemsize > protocol_dtype.itemsize):
        reference = array.astype(protocol_dtype)
    if reference.dtype.kind in "iu" or reference.dtype.itemsize > target.itemsize:
        merged = _merged_values(reference, target)
        if merged is not None:
            before, after, a, b, both = merged
            raise BundleWriteError(
                f"{what}: {target.name} would merge {before:,} distinct values into {after:,} (e.g. {a} and "
                f"{b} both become {both}), changing their ranking and so the metrics"
                + (suggestion or "; rescale the values (e.g. subtract their minimum) before writing")
            )
    return out


def _check_ids(ids: Any, *, key: str) -> list[str]:
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise BundleWriteError(f"{key}: ids must be a sequence of strings")
    out = []
    seen: set[str] = set()
    for image_id in ids:
        if not isinstance(image_id, str) or not image_id.strip():
            raise BundleWriteError(f"{key}: every id must be a non-empty string, got {image_id!r}")
        if "\n" in image_id or "\r" in image_id:
            raise BundleWriteError(f"{key}: id {image_id!r} contains a line break")
        if image_id in seen:
            raise BundleWriteError(f"{key}: duplicate id {image_id!r}")
        seen.add(image_id)
        out.append(image_id)
    if not out:
        raise BundleWriteError(f"{key}: no ids")
    return out


def _translate_ids(ids: list[str], table: Mapping[str, str], *, key: str) -> list[str]:
    """File names -> published ids through the server's ``{id: file name}`` table of ``key``."""
    by_file = {str(file): str(image_id) for image_id, file in table.items()}
    if len(by_file) != len(table):
        raise BundleWriteError(f"{key}: the id table names a file twice")
    out = []
    for image_id in ids:
        if image_id in by_file:
            out.append(by_file[image_id])
        elif image_id in table:  # already a published id
            out.append(image_id)
        else:
            raise BundleWriteError(
                f"{key}: {image_id!r} is neither a file name nor an id of the id table; download the table of "
                "this category again (GET /api/v1/categories/<key>/test-files)"
            )
    if len(set(out)) != len(out):
        raise BundleWriteError(f"{key}: two rows name the same test image")
    return out


def load_id_tables(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Read id tables saved from the server: ``{category key: {id: file name}}``.

    Accepts that mapping, one ``test-files`` answer (``{"category": key, "files": {...}}``) or a
    list of such answers.
    """
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleWriteError(f"{path}: cannot read the id table ({exc})") from exc
    answers = payload if isinstance(payload, list) else [payload]
    tables: dict[str, dict[str, str]] = {}
    for answer in answers:
        if (
            isinstance(answer, dict)
            and isinstance(answer.get("category"), str)
            and isinstance(answer.get("files"), dict)
        ):
            tables[answer["category"]] = {str(k): str(v) for k, v in answer["files"].items()}
        elif isinstance(answer, dict) and all(isinstance(v, dict) for v in answer.values()):
            for key, table in answer.items():
                tables[str(key)] = {str(k): str(v) for k, v in table.items()}
        else:
            raise BundleWriteError(f"{path}: not an id table (expected the JSON of GET .../test-files)")
    return tables


def write_bundle(
    path: str | os.PathLike,
    *,
    method: str,
    suite: str,
    categories: Mapping[str, Mapping[str, Any]],
    dtype: str | None = None,
    description: str = "",
    partial: bool = False,
    id_tables: Mapping[str, Mapping[str, str]] | None = None,
    format_version: int = FORMAT_VERSION,
) -> Path:
    """Write a bundle zip for upload to the leaderboard.

    Parameters
    ----------
    path : path-like
        The zip file to write; written atomically (a temporary file, then a rename). While it is
        written, a progress bar (one step per category) is drawn on stderr when stderr is a
        terminal (tqdm); nothing is printed otherwise.
    method : str
        The method's name, as it will appear on the leaderboard.
    suite : str
        The suite key the bundle is for (``"vadi"``, ``"mvtec"``, ``"visa"``, ``"synthetic"``).
    categories : mapping of str to mapping
        Category key (``"<dataset>/<category>"``) -> ``{"ids", "scores", "maps"}``: the test-image
        ids (N,), image scores (N,) and anomaly maps (N, H, W), rows in the same order.
    dtype : {None, "float16", "float32"}, optional
        Storage dtype. ``None`` keeps float16/float32 input as is and stores anything else
        as float32. float16 halves the size but is refused when it would change a metric: values
        beyond 65504 (overflow to inf), or distinct values that float16 rounds to one (maps of
        the form 3000 + U(0, 1), or millions of values in [0, 1): float16 has 2,048 steps per
        octave). Scores are also refused when float32 would merge distinct float64 scores; maps
        are not, as the evaluator computes in float32 anyway.
    description : str, optional
        Free text stored in the manifest.
    partial : bool, optional
        By default the categories must be exactly the suite's, as the server requires, for a
        suite this library knows (``algorithms.data.SUITES``; other suite keys are left to the
        server): a bundle covering 1 of 9 categories is refused before anything is written.
        ``partial=True`` writes it anyway (e.g. to try the format on one category; the server
        will refuse it).
    id_tables : mapping, optional
        Category key -> the server's ``{published id: file name}`` table
        (``GET /api/v1/categories/<key>/test-files``): ids given as file names (the runner's
        ``test/good/004.png``) are written as the published ids. Categories without a table
        are written with their ids as given (they must be the published ids).
    format_version : {2, 1}
        2 (the default): ``ids.txt`` holds the published opaque ids. 1: file-path ids, still
        accepted for suites whose ground truth is public (never for the blind suite).

    Returns
    -------
    Path
        The written file, readable by others (mode ``0o644`` less the umask), as files are.

    Raises
    ------
    BundleWriteError
        Naming the category and array at fault (for a refused cast: how many values overflow, or
        how many distinct values would merge, with an example); nothing is written.
    """
    if not isinstance(method, str) or not method.strip() or len(method) > 120:
        raise BundleWriteError("method must be a non-empty string of at most 120 characters")
    if not isinstance(suite, str) or not suite:
        raise BundleWriteError("suite must be a non-empty string")
    if dtype is not None and dtype not in _DTYPES:
        raise BundleWriteError(f"dtype must be one of {sorted(_DTYPES)} or None, got {dtype!r}")
    if not categories:
        raise BundleWriteError("categories is empty")
    if format_version not in (1, 2) or isinstance(format_version, bool):
        raise BundleWriteError(f"format_version must be 2 (or 1), got {format_version!r}")
    if id_tables and format_version == 1:
        raise BundleWriteError(
            "id_tables translate file names to format-2 ids; do not combine them with format_version=1"
        )
    target = _DTYPES[dtype] if dtype else None
    if not partial:
        _check_suite(suite, list(categories), partial_hint=True, unknown_ok=True)

    prepared: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    for key in sorted(categories):
        entry = categories[key]
        dataset, sep, name = key.partition("/")
        if not sep or not dataset or not name or "/" in name:
            raise BundleWriteError(f"category key {key!r} is not of the form '<dataset>/<category>'")
        missing = {"ids", "scores", "maps"} - set(entry)
        if missing:
            raise BundleWriteError(f"{key}: missing {', '.join(sorted(missing))}")
        ids = _check_ids(entry["ids"], key=key)
        if id_tables and key in id_tables:
            ids = _translate_ids(ids, id_tables[key], key=key)
        scores = _as_float_array(entry["scores"], dtype=target, what=f"{key}: scores")
        maps = _as_float_array(entry["maps"], dtype=target, what=f"{key}: maps", protocol_dtype=_DTYPES["float32"])
        n = len(ids)
        if scores.shape != (n,):
            raise BundleWriteError(f"{key}: scores have shape {scores.shape}; expected ({n},) for {n} ids")
        if maps.ndim != 3 or maps.shape[0] != n:
            raise BundleWriteError(f"{key}: maps have shape {maps.shape}; expected ({n}, H, W) for {n} ids")
        h, w = maps.shape[1:]
        if not (MIN_MAP_SIDE <= h <= MAX_MAP_SIDE and MIN_MAP_SIDE <= w <= MAX_MAP_SIDE):
            raise BundleWriteError(
                f"{key}: maps are {h} x {w}; each side must be between {MIN_MAP_SIDE} and {MAX_MAP_SIDE}"
            )
        prepared[key] = (ids, scores, maps)

    manifest: dict[str, Any] = {
        "format_version": format_version,
        "method": method.strip(),
        "suite": suite,
        "categories": list(prepared),
    }
    if description:
        manifest["description"] = description

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(tmp_name, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
            for key, (ids, scores, maps) in _progress(prepared.items(), total=len(prepared), what=out.name):
                zf.writestr(f"{key}/ids.txt", "".join(f"{image_id}\n" for image_id in ids))
                for member, array in (("scores.npy", scores), ("maps.npy", maps)):
                    with zf.open(f"{key}/{member}", "w", force_zip64=array.nbytes > (1 << 30)) as fp:
                        np.lib.format.write_array(fp, array, allow_pickle=False)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes it owner-only; a bundle is an ordinary file
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out


def _progress(items: Any, *, total: int, what: str) -> Any:
    """``items`` with a tqdm bar (one step per category) on stderr when it is a terminal; ``items`` otherwise."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the library
        return items
    # disable=None: tqdm draws nothing unless its file (stderr) is a terminal (logs, CI, pipes stay clean)
    return tqdm(items, total=total, desc=f"writing {what}", unit="category", file=sys.stderr, disable=None,
                leave=False)  # fmt: skip


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _find_predictions(run_dir: Path) -> list[tuple[str, Path, dict]]:
    """``(category key, predictions.npz, results JSON or {})`` for every prediction file under ``run_dir``."""
    found: dict[str, tuple[str, Path, dict]] = {}
    for npz in sorted(run_dir.rglob("predictions.npz")):
        results: dict = {}
        for candidate in sorted(npz.parent.glob("*.json")):
            try:
                payload = json.loads(candidate.read_text())
            except (OSError, ValueError):
                continue
            if (
                isinstance(payload, dict)
                and payload.get("schema", "").startswith("vadi-run/")
                and payload.get("category")
            ):
                results = payload
                break
        key = results.get("category")
        if not key:
            rel = npz.parent.relative_to(run_dir).parts
            if len(rel) < 2:
                raise BundleWriteError(
                    f"{npz}: no results JSON names its category and the path does not end in <dataset>/<category>"
                )
            key = f"{rel[-2]}/{rel[-1]}"
        if key in found:
            raise BundleWriteError(
                f"category {key!r} has two prediction files: {found[key][1]} and {npz}; "
                "point --predictions at one model's directory"
            )
        found[key] = (key, npz, results)
    return list(found.values())


def bundle_from_predictions(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str,
    suite: str,
    variant: str | None = None,
    dtype: str | None = None,
    partial: bool = False,
    id_tables: Mapping[str, Mapping[str, str]] | None = None,
    format_version: int = FORMAT_VERSION,
) -> Path:
    """Build a bundle from a runner output directory holding per-category ``predictions.npz``.

    Each ``predictions.npz`` holds ``ids`` (N,), ``scores`` (N,) and one ``map__<variant>``
    (N, H, W) per map variant. The category key comes from the runner's results JSON next to
    it (``"category"``), else from the last two directories of its path. The map variant is
    ``variant`` if given, else the results JSON's ``primary_variant``, else the only one.

    Raises
    ------
    BundleWriteError
        No predictions, an ambiguous variant, a malformed file, or categories that do not
        match the suite (when the suite is known to ``algorithms.data``).
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise BundleWriteError(f"{root}: not a directory")
    found = _find_predictions(root)
    if not found:
        raise BundleWriteError(f"{root}: no predictions.npz found (run with save_predictions=True)")
    if not partial:
        _check_suite(suite, [key for key, _, _ in found])
    categories: dict[str, dict[str, Any]] = {}
    for key, npz, results in found:
        try:
            with np.load(npz, allow_pickle=False) as data:
                names = set(data.files)
                variants = sorted(name.removeprefix("map__") for name in names if name.startswith("map__"))
                chosen = variant or results.get("primary_variant") or (variants[0] if len(variants) == 1 else None)
                if chosen is None:
                    raise BundleWriteError(
                        f"{npz}: several map variants ({', '.join(variants)}); choose one with --variant"
                    )
                if f"map__{chosen}" not in names:
                    raise BundleWriteError(f"{npz}: no map variant {chosen!r}; it has {', '.join(variants) or 'none'}")
                for required in ("ids", "scores"):
                    if required not in names:
                        raise BundleWriteError(f"{npz}: missing array {required!r}")
                categories[key] = {
                    "ids": [str(image_id) for image_id in data["ids"].tolist()],
                    "scores": data["scores"],
                    "maps": data[f"map__{chosen}"],
                }
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            if isinstance(exc, BundleWriteError):
                raise
            raise BundleWriteError(f"{npz}: cannot be read ({exc})") from exc
    return write_bundle(
        out,
        method=method,
        suite=suite,
        categories=categories,
        dtype=dtype,
        partial=True,
        id_tables=id_tables,
        format_version=format_version,
    )


def _check_suite(suite: str, keys: list[str], *, partial_hint: bool = False, unknown_ok: bool = False) -> None:
    try:
        from algorithms import data
    except ImportError:  # pragma: no cover - the data package is part of this library
        return
    suites = getattr(data, "SUITES", None)
    if not suites:
        return
    if suite not in suites:
        if unknown_ok:  # a suite this library does not know (a server's own): the server checks it
            return
        raise BundleWriteError(f"unknown suite {suite!r}; expected one of {', '.join(suites)}")
    wanted = set(data.list_categories(suite))
    missing = sorted(wanted - set(keys))
    extra = sorted(set(keys) - wanted)
    if missing:
        covered = len(wanted) - len(missing)
        shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
        message = (
            f"suite {suite!r} has {len(wanted)} categories and the bundle covers {covered}; the server scores only "
            f"complete bundles: add {shown}"
        )
        if extra:
            message += f"; {', '.join(extra[:10])} {'is' if len(extra) == 1 else 'are'} not in suite {suite!r}"
        if partial_hint:
            message += " (or pass partial=True to write an incomplete bundle anyway, e.g. to try the format)"
        raise BundleWriteError(message)
    if extra:
        raise BundleWriteError(f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not in suite {suite!r}")


# -- checking a bundle before upload -----------------------------------------------------------

_MANIFEST_KEYS = {"format_version", "method", "suite", "categories", "description"}


def _prefix_to_strip(unknown: Sequence[str], expected: Sequence[str]) -> str | None:
    """The one prefix that turns every unknown id into a published one (``/data/mvtec/bottle/``), else None."""
    valid, prefixes = set(expected), set()
    for image_id in unknown[:200]:
        cuts = [i for i, char in enumerate(image_id) if char == "/" and image_id[i + 1 :] in valid]
        if not cuts:
            return None
        prefixes.add(image_id[: cuts[0] + 1])
    if len(prefixes) != 1:
        return None
    (prefix,) = prefixes
    return None if any(image_id.startswith(prefix) for image_id in expected) else prefix


def _ids_problems(key: str, ids: list[str], expected: Sequence[str] | None) -> list[str]:
    name = f"{key}/ids.txt"
    problems = []
    seen: set[str] = set()
    for line_no, image_id in enumerate(ids, start=1):
        if not image_id.strip():
            problems.append(f"{name}: line {line_no} is empty")
        elif image_id != image_id.strip():
            problems.append(f"{name}: line {line_no}: id {image_id!r} has leading or trailing whitespace")
        elif image_id in seen:
            problems.append(f"{name}: duplicate id {image_id!r}")
        seen.add(image_id)
    if expected is None:
        return problems
    valid = set(expected)
    unknown = [image_id for image_id in ids if image_id.strip() and image_id not in valid]
    if unknown:
        text = (
            f"{name}: {len(unknown)} unknown id(s), e.g. {', '.join(map(repr, unknown[:3]))}; use the ids published "
            f"for this category (one of them: {expected[0]!r})"
        )
        prefix = _prefix_to_strip(unknown, expected)
        if prefix is not None:
            text += f"; your ids look like published ids with the prefix {prefix!r} in front: strip it"
        problems.append(text)
    absent = [image_id for image_id in expected if image_id not in seen]
    if absent:
        problems.append(
            f"{name}: missing {len(absent)} of the category's {len(expected)} test ids, e.g. "
            f"{', '.join(map(repr, absent[:3]))}"
        )
    return problems


def _array_problems(zf: zipfile.ZipFile, name: str, *, ndim: int, n: int) -> list[str]:
    try:
        with zf.open(name) as fp:
            version = np.lib.format.read_magic(fp)
            if version not in ((1, 0), (2, 0)):
                return [f"{name}: uses .npy format version {version[0]}.{version[1]}; write version 1.0 or 2.0"]
            npy = np.lib.format
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read_header(fp, max_header_size=10_000)
            if dtype.str not in ("<f2", "<f4"):
                return [f"{name}: has dtype {dtype.str} ({dtype}); use float16 or float32 (little-endian)"]
            what = "(N,)" if ndim == 1 else "(N, H, W)"
            if len(shape) != ndim:
                return [f"{name}: has shape {shape}; expected {what} with N = {n}"]
            if shape[0] != n:
                return [f"{name}: has {shape[0]:,} rows; the category has {n} test images"]
            if ndim == 3 and not all(MIN_MAP_SIDE <= side <= MAX_MAP_SIDE for side in shape[1:]):
                return [f"{name}: maps are {shape[1]} x {shape[2]}; each side must be between {MIN_MAP_SIDE} and "
                        f"{MAX_MAP_SIDE} pixels"]  # fmt: skip
            data = fp.read()
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        return [f"{name}: cannot be read as a .npy file ({exc})"]
    expected_bytes = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected_bytes:
        return [f"{name}: holds {len(data):,} data bytes; shape {shape} needs {expected_bytes:,}"]
    array = np.frombuffer(data, dtype=dtype)
    if not np.isfinite(array).all():
        return [f"{name}: contains NaN or infinite values"]
    return []


def check_bundle(
    path: str | os.PathLike, *, expected_ids: Mapping[str, Sequence[str]] | None = None, suite: str | None = None
) -> list[str]:
    """Every problem of a bundle found on this machine, at once (an empty list: none found).

    The manifest (keys, format version, suite), the suite's category set (``expected_ids``'s
    keys, else the suite's categories in ``algorithms.data``), the member set, each category's
    ``ids.txt`` (against ``expected_ids`` when given: the ids the server publishes) and its
    ``.npy`` headers, shapes, dtypes and values. The server's dry run
    (``POST /api/v1/submissions/validate/``, ``--check --server``) is the authority: it also checks
    the archive's structure byte by byte, the method name and the server's limits.
    """
    problems: list[str] = []
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"not a readable zip archive ({exc})"]
    with zf:
        names = set(zf.namelist())
        try:
            manifest = json.loads(zf.read("manifest.json").decode("utf-8-sig"))
        except KeyError:
            return ["manifest.json: missing member"]
        except (ValueError, zipfile.BadZipFile) as exc:
            return [f"manifest.json: not UTF-8 JSON ({exc})"]
        if not isinstance(manifest, dict):
            return ["manifest.json: must hold one JSON object"]
        extra_keys = sorted(set(manifest) - _MANIFEST_KEYS)
        if extra_keys:
            problems.append(f"manifest.json: unknown key(s) {', '.join(extra_keys)}")
        version = manifest.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            problems.append(f"manifest.json: format_version must be the integer {FORMAT_VERSION}, got {version!r}")
        declared = manifest.get("categories")
        if not isinstance(declared, list) or not all(isinstance(key, str) for key in declared) or not declared:
            return [*problems, "manifest.json: categories must be a non-empty list of category keys"]
        given_suite = manifest.get("suite")
        if suite is not None and given_suite != suite:
            problems.append(f"manifest.json: the manifest says suite {given_suite!r} but you chose {suite!r}")
        wanted: list[str] | None = list(expected_ids) if expected_ids is not None else None
        if wanted is None and isinstance(given_suite, str):
            try:
                from algorithms import data

                if given_suite in getattr(data, "SUITES", {}):
                    wanted = list(data.list_categories(given_suite))
            except ImportError:  # pragma: no cover
                pass
        if wanted is not None:
            missing = [key for key in wanted if key not in declared]
            if missing:
                problems.append(
                    f"manifest.json: missing categor{'y' if len(missing) == 1 else 'ies'} "
                    f"{', '.join(map(repr, missing[:10]))}{', ...' if len(missing) > 10 else ''} of suite "
                    f"{given_suite!r} ({len(declared)} of {len(wanted)} present)"
                )
            extra = [key for key in declared if key not in wanted]
            if extra:
                problems.append(f"manifest.json: {', '.join(map(repr, extra[:10]))} not in suite {given_suite!r}")
        members = {"manifest.json"}
        for key in declared:
            members.update(f"{key}/{member}" for member in ("ids.txt", "scores.npy", "maps.npy"))
        directories = {name for name in names if name.endswith("/")}
        for name in sorted(names - members - directories):
            problems.append(f"{name}: unexpected member")
        for name in sorted(members - names):
            problems.append(f"{name}: missing member")
        for key in declared:
            ids_name = f"{key}/ids.txt"
            if ids_name not in names:
                continue
            try:
                text = zf.read(ids_name).decode("utf-8").removeprefix("\ufeff")
            except (UnicodeDecodeError, zipfile.BadZipFile) as exc:
                problems.append(f"{ids_name}: not UTF-8 text ({exc})")
                continue
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            ids = [line.removesuffix("\r") for line in lines]
            expected = None if expected_ids is None or key not in expected_ids else list(expected_ids[key])
            problems += _ids_problems(key, ids, expected)
            n = len(expected) if expected is not None else len(ids)
            for member, ndim in (("scores.npy", 1), ("maps.npy", 3)):
                if f"{key}/{member}" in names:
                    problems += _array_problems(zf, f"{key}/{member}", ndim=ndim, n=n)
    return problems


def _local_expected_ids(suite: str, keys: Sequence[str]) -> dict[str, list[str]] | None:
    """The test ids of ``keys`` from the datasets on this machine, or None when any is not here."""
    try:
        from algorithms import data

        if suite not in getattr(data, "SUITES", {}):
            return None
        return {key: [str(i) for i in data.load_category(key).test_ids] for key in data.list_categories(suite)}
    except Exception:  # the datasets are not on this machine (DatasetError, a missing folder, ...)
        return None


def _server_expected_ids(server: str, suite: str) -> dict[str, list[str]]:
    from algorithms.client import ClientError, _error_text, _get, published_test_ids

    url = server.rstrip("/") + f"/api/v1/suites/{suite}/"
    status, body, headers = _get(url, token=None, timeout=60)
    if status != 200:
        raise ClientError(f"suite {suite!r}: {_error_text(status, body, headers)}")
    return {key: published_test_ids(server, key) for key in body.get("categories", [])}


def _server_id_tables(server: str, suite: str) -> dict[str, dict[str, str]]:
    """The suite's ``{id: file name}`` tables from the server (none for a blind suite: its images carry their ids)."""
    from algorithms.client import ClientError, _error_text, _get

    base = server.rstrip("/")
    try:
        status, body, headers = _get(f"{base}/api/v1/suites/{suite}/", token=None, timeout=60)
        if status != 200:
            raise BundleWriteError(f"suite {suite!r}: {_error_text(status, body, headers)}")
        tables = {}
        for key in body.get("categories", []):
            status, answer, headers = _get(f"{base}/api/v1/categories/{key}/test-files", token=None, timeout=60)
            if status == 404:
                continue  # a blind category: no table (its downloaded images are named by their ids)
            if status != 200:
                raise BundleWriteError(f"{key}: {_error_text(status, answer, headers)}")
            tables[key] = {str(k): str(v) for k, v in (answer.get("files") or {}).items()}
    except ClientError as exc:
        raise BundleWriteError(f"cannot read the id tables from {server}: {exc}") from exc
    return tables


def _cmd_check(args: argparse.Namespace) -> int:
    """``bundle --check BUNDLE [--server URL]``: every problem, locally and (with a token) on the server."""
    from algorithms.client import ClientError, api_token, format_problems, validate_remote

    path = Path(args.check)
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json").decode("utf-8-sig"))
        suite = args.suite or str(manifest.get("suite"))
        version = manifest.get("format_version")
    except Exception:  # reported by check_bundle below
        suite, version = args.suite, None
    expected, source = None, "not checked against the published ids (give --server, or have the datasets here)"
    try:
        if version == 1 and args.server:  # file-path ids: the server's dry run below checks them
            source = "format 1 (file-path ids): ids checked by the server's dry run only"
        elif args.server and suite:
            expected, source = _server_expected_ids(args.server, suite), f"the ids published by {args.server}"
        elif version != 1:  # the published ids are keyed by the server's secret: only the server knows them
            source = "not checked against the published ids (format 2 ids are keyed by the server: give --server)"
        elif suite:
            expected = _local_expected_ids(suite, [])
            if expected is not None:
                source = "the ids of the datasets on this machine"
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = check_bundle(path, expected_ids=expected, suite=args.suite or None)
    print(f"local check ({source}): " + (f"{len(problems)} problem(s)" if problems else "no problems"))
    for problem in problems:
        print(f"  - {problem}")
    ok = not problems
    if args.server:
        try:
            token = api_token()
        except ClientError as exc:
            print(f"server check skipped: {exc}")
            return 0 if ok else 1
        try:
            report = validate_remote(path, server=args.server, token=token, method=args.method or "",
                                     suite=args.suite or "")  # fmt: skip
        except ClientError as exc:
            print(f"error: server check: {exc}", file=sys.stderr)
            return 2
        print(f"server check ({args.server}): " + format_problems(report.get("problems", [])))
        ok = ok and bool(report.get("valid"))
    return 0 if ok else 1


def _anomalib_help() -> str:
    from algorithms.client import ANOMALIB_HELP

    return ANOMALIB_HELP


def _cmd_anomalib(args: argparse.Namespace, build: Callable[..., Any] | None) -> int:
    """``bundle --anomalib KEY=FILE ...``: anomalib's predictions -> a checked bundle (written only)."""
    from algorithms.client import parse_anomalib_option

    if build is None:
        print("error: --anomalib: run this as `python -m algorithms bundle --anomalib ...`", file=sys.stderr)
        return 2
    if args.format_version != FORMAT_VERSION or args.variant:
        print("error: --format-version and --variant do not apply to --anomalib", file=sys.stderr)
        return 2
    try:
        files = [parse_anomalib_option(text) for text in args.anomalib]
        tables: dict[str, dict[str, str]] = {}
        for table_path in args.id_table:
            tables.update(load_id_tables(table_path))
        made = build(
            files, path=args.out, method=args.method, suite=args.suite, id_tables=tables or None,
            server=args.server, allow_ties=args.allow_ties, dtype=args.dtype, partial=args.partial,
        )  # fmt: skip
    except ValueError as exc:  # BundleWriteError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in made.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {made.path} ({made.path.stat().st_size:,} bytes; {len(made.counts)} categories, "
          f"{sum(made.counts.values())} images)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None, *, build_anomalib: Callable[..., Any] | None = None) -> int:
    """``python -m algorithms bundle``: predictions -> bundle zip, or ``--check BUNDLE``; returns the exit code.

    ``build_anomalib`` writes the bundle for ``--anomalib``
    (:func:`algorithms.anomalib_bundle.bundle_from_anomalib_files`, passed by ``python -m algorithms``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m algorithms bundle",
        description=(
            "Turn a runner output directory (per-category predictions.npz) or anomalib's predictions (--anomalib) "
            "into an upload bundle, or check a "
            "bundle (--check BUNDLE) before spending an upload: every problem at once, here and, with --server, "
            "on the server (its dry run: no quota used; the token from $VADI_TOKEN or ~/.config/vadi/token)."
        ),
    )
    parser.add_argument("--check", metavar="BUNDLE", default=None, help="check this bundle instead of writing one")
    parser.add_argument(
        "--server",
        default=None,
        help="with --check: the server's URL (published ids, dry run); when writing: fetch the suite's id tables "
        "(GET .../test-files) to turn the runner's file names (or anomalib's image paths) into the published ids; "
        "with --anomalib also the published id lists, to check that every test image is predicted",
    )
    parser.add_argument("--predictions", type=Path, help="runner output directory (RUN_DIR)")
    parser.add_argument(
        "--anomalib", action="append", default=[], metavar="CATEGORY_KEY=FILE",
        help="instead of --predictions: anomalib's predictions (image paths mapped to the published ids through "
        "--server or --id-table, and checked: docs/anomalib.md). " + _anomalib_help(),
    )  # fmt: skip
    parser.add_argument(
        "--allow-ties", action="store_true",
        help="with --anomalib: write clamped or tied scores (anomalib's normalisation) with a warning, not refuse",
    )  # fmt: skip
    parser.add_argument("--method", help="method name shown on the leaderboard")
    parser.add_argument("--suite", help="suite key: vadi, mvtec, visa or synthetic")
    parser.add_argument("--out", type=Path, help="bundle zip to write")
    parser.add_argument("--variant", default=None, help="map variant to submit (default: the primary one)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default=None, help="storage dtype (default: as saved)")
    parser.add_argument(
        "--partial", action="store_true", help="write a bundle without every category of the suite (never scored)"
    )
    parser.add_argument(
        "--id-table",
        type=Path,
        action="append",
        default=[],
        help="JSON saved from GET /api/v1/categories/<key>/test-files (repeatable): file names -> published ids",
    )
    parser.add_argument(
        "--format-version", type=int, choices=(1, 2), default=FORMAT_VERSION, help="1: path ids (public suites only)"
    )
    args = parser.parse_args(argv)
    if args.check:
        return _cmd_check(args)
    if args.anomalib and args.predictions is not None:
        parser.error("give --predictions or --anomalib, not both")
    if args.allow_ties and not args.anomalib:
        parser.error("--allow-ties goes with --anomalib")
    source = "anomalib" if args.anomalib else "predictions"
    missing = [f"--{name}" for name in (source, "method", "suite", "out") if getattr(args, name) in (None, "", [])]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --check BUNDLE)")
    if args.anomalib:
        return _cmd_anomalib(args, build_anomalib)
    try:
        tables: dict[str, dict[str, str]] = {}
        for table_path in args.id_table:
            tables.update(load_id_tables(table_path))
        if args.server and not tables and args.format_version == 2:
            tables = _server_id_tables(args.server, args.suite)
        path = bundle_from_predictions(
            args.predictions,
            args.out,
            method=args.method,
            suite=args.suite,
            variant=args.variant,
            dtype=args.dtype,
            partial=args.partial,
            id_tables=tables or None,
            format_version=args.format_version,
        )
    except BundleWriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
