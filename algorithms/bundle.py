"""Write bundles: the zip of per-category scores and anomaly maps that the leaderboard scores.

A bundle turns any model's outputs into an upload (``docs/bundle-format.md``)::

    manifest.json                       {"format_version": 1, "method": ..., "suite": ..., "categories": [...]}
    <dataset>/<category>/ids.txt        one test-image id per line (the ids the server publishes)
    <dataset>/<category>/scores.npy     (N,)      float16 | float32
    <dataset>/<category>/maps.npy       (N, H, W) float16 | float32, 64 <= H, W <= 1024

Use :func:`write_bundle` from Python, or turn a runner output directory into a bundle::

    python -m algorithms bundle --predictions RUN_DIR --method NAME --suite SUITE --out FILE.zip

No Django, no torch: numpy and the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BundleWriteError", "bundle_from_predictions", "main", "write_bundle"]

FORMAT_VERSION = 1
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


def write_bundle(
    path: str | os.PathLike,
    *,
    method: str,
    suite: str,
    categories: Mapping[str, Mapping[str, Any]],
    dtype: str | None = None,
    description: str = "",
) -> Path:
    """Write a bundle zip for upload to the leaderboard.

    Parameters
    ----------
    path : path-like
        The zip file to write; written atomically (a temporary file, then a rename).
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

    Returns
    -------
    Path
        The written file.

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
    target = _DTYPES[dtype] if dtype else None

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
        "format_version": FORMAT_VERSION,
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
            for key, (ids, scores, maps) in prepared.items():
                zf.writestr(f"{key}/ids.txt", "".join(f"{image_id}\n" for image_id in ids))
                for member, array in (("scores.npy", scores), ("maps.npy", maps)):
                    with zf.open(f"{key}/{member}", "w", force_zip64=array.nbytes > (1 << 30)) as fp:
                        np.lib.format.write_array(fp, array, allow_pickle=False)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out


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
            if isinstance(payload, dict) and payload.get("schema", "").startswith("vadi-run/") and payload.get(
                "category"
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
                    raise BundleWriteError(
                        f"{npz}: no map variant {chosen!r}; it has {', '.join(variants) or 'none'}"
                    )
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
    return write_bundle(out, method=method, suite=suite, categories=categories, dtype=dtype)


def _check_suite(suite: str, keys: list[str]) -> None:
    try:
        from algorithms import data
    except ImportError:  # pragma: no cover - the data package is part of this library
        return
    suites = getattr(data, "SUITES", None)
    if not suites:
        return
    if suite not in suites:
        raise BundleWriteError(f"unknown suite {suite!r}; expected one of {', '.join(suites)}")
    wanted = set(data.list_categories(suite))
    missing = sorted(wanted - set(keys))
    extra = sorted(set(keys) - wanted)
    if missing:
        raise BundleWriteError(f"suite {suite!r} needs predictions for {', '.join(missing)}")
    if extra:
        raise BundleWriteError(f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not in suite {suite!r}")


def main(argv: list[str] | None = None) -> int:
    """``python -m algorithms bundle``: predictions directory -> bundle zip. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m algorithms bundle",
        description="Turn a runner output directory (per-category predictions.npz) into an upload bundle.",
    )
    parser.add_argument("--predictions", required=True, type=Path, help="runner output directory (RUN_DIR)")
    parser.add_argument("--method", required=True, help="method name shown on the leaderboard")
    parser.add_argument("--suite", required=True, help="suite key: vadi, mvtec, visa or synthetic")
    parser.add_argument("--out", required=True, type=Path, help="bundle zip to write")
    parser.add_argument("--variant", default=None, help="map variant to submit (default: the primary one)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default=None, help="storage dtype (default: as saved)")
    args = parser.parse_args(argv)
    try:
        path = bundle_from_predictions(
            args.predictions, args.out, method=args.method, suite=args.suite, variant=args.variant, dtype=args.dtype
        )
    except BundleWriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
