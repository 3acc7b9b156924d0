"""Bundles from anomalib's predictions: image paths -> published ids, checked, then written.

anomalib (https://github.com/open-edge-platform/anomalib) returns from ``Engine.predict`` one
``ImageBatch`` per batch, with ``image_path`` (B absolute paths), ``pred_score`` (B,) and
``anomaly_map`` (B, H, W) or (B, 1, H, W), as torch tensors. :func:`bundle_from_anomalib`
turns those (per category) into a bundle::

    from algorithms.anomalib_bundle import bundle_from_anomalib

    made = bundle_from_anomalib({"mvtec/bottle": engine.predict(model, datamodule=bottle), ...},
                                path="bundle.zip", method="My Padim", suite="mvtec",
                                server="https://<host>")   # or id_tables={key: {id: file name}}
    made.path, made.warnings

What it checks, each refusal naming what is wrong and what to change (``docs/anomalib.md``):

- every image path ends with a file name of the category's published table (``test/crack/003.png``),
  or, for a category without a table (the blind suite), is named ``<published id>.png``;
- the images are exactly the published test set: none missing (anomalib's ``Folder`` datamodule
  drops the normal test images without ``normal_test_dir`` and moves half of the test set into a
  validation set with its default ``val_split_mode``), none twice, none unknown;
- the scores are not clamped or tied (anomalib's default post-processing normalises scores and maps
  into [0, 1] and clamps them, so several images share 1.0 or 0.0 and the ranking the metrics
  measure is lost): refused unless ``allow_ties=True``, which writes the bundle with a warning;
- maps are kept at the resolution given, never cropped; a side outside the bundle's 64-1024 pixels
  is rescaled to fit (one factor for both sides when that suffices), with a warning.

The batches are read by duck typing (attributes or keys ``image_path``, ``pred_score``,
``anomaly_map``; anomalib 1.x's dicts with ``pred_scores`` and ``anomaly_maps`` too; torch tensors
or numpy arrays): this module imports neither anomalib nor torch, except :func:`load_predictions`,
which needs torch to read a ``torch.save`` file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from algorithms.bundle import MAX_MAP_SIDE, MIN_MAP_SIDE, BundleWriteError, write_bundle

__all__ = [
    "AnomalibBundle",
    "bundle_from_anomalib",
    "bundle_from_anomalib_files",
    "collect_predictions",
    "load_predictions",
    "map_paths_to_ids",
]

_OPAQUE_ID = re.compile(r"^[0-9a-f]{32}$")
_NORMALISATION_FIX = (
    "anomalib's default post-processing normalises scores and maps into [0, 1] and clamps them. Turn it off "
    "and predict again: `from anomalib.post_processing import PostProcessor`; "
    "`model = Padim(..., post_processor=PostProcessor(enable_normalization=False))` (any anomalib model takes "
    "post_processor=). Only the ranking within a category matters, so raw scores on any scale are right"
)
_FOLDER_FIX = (
    "anomalib's Folder datamodule keeps every test image only with normal_test_dir='test/good' (without it "
    "the normal test images are not in the test set: normal images are sampled from train/good instead) and "
    "val_split_mode='same_as_test' (the default 'from_test' moves half of the test images into a validation set; "
    "'none' leaves Engine.fit without validation data); predict on datamodule.test_dataloader(), once per category"
)


@dataclass(frozen=True)
class AnomalibBundle:
    """What :func:`bundle_from_anomalib` wrote: the bundle's ``path``, the ``warnings`` (str) it accepted
    (ties with ``allow_ties``, rescaled maps) and ``counts``, the images written per category key."""

    path: Path
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _field(batch: Any, *names: str) -> Any:
    for name in names:
        if isinstance(batch, Mapping):
            if name in batch and batch[name] is not None:
                return batch[name]
        else:
            value = getattr(batch, name, None)
            if value is not None:
                return value
    return None


def _to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device; bfloat16 too) or array-like as a numpy array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        tensor = value.detach().cpu()
        if str(getattr(tensor, "dtype", "")) == "torch.bfloat16":  # numpy has no bfloat16
            tensor = tensor.float()
        return np.asarray(tensor.numpy())
    return np.asarray(value)


def _batches(predictions: Any) -> Iterator[Any]:
    """Every batch of ``predictions``: one batch, a list of them, or lists of lists (several dataloaders)."""
    if isinstance(predictions, Mapping) or _field(predictions, "image_path") is not None:
        yield predictions
        return
    if isinstance(predictions, str | bytes) or not isinstance(predictions, Iterable):
        raise BundleWriteError(
            f"expected anomalib predictions (the list Engine.predict returns), got {type(predictions).__name__}"
        )
    for item in predictions:
        yield from _batches(item)


def collect_predictions(predictions: Any, *, key: str = "predictions") -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(paths, scores (N,), maps (N, H, W))`` gathered from anomalib batches, in their order.

    Parameters
    ----------
    predictions
        What ``Engine.predict`` returns (a list of ``ImageBatch``; a list of such lists for several
        dataloaders), one batch or item, ``NumpyImageBatch``, or dicts with the same keys.
        ``image_path``: B paths (a str for one item); ``pred_score``: (B,) or (B, 1);
        ``anomaly_map``: (B, H, W) or (B, 1, H, W) (an item's (H, W) or (1, H, W)).
    key
        Named in error messages (the category key).

    Raises
    ------
    BundleWriteError
        A batch without ``image_path``, ``pred_score`` or ``anomaly_map``, rows that do not agree,
        maps of several sizes, or no images at all.
    """
    paths: list[str] = []
    scores: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    for index, batch in enumerate(_batches(predictions)):
        batch_paths = _field(batch, "image_path")
        score = _field(batch, "pred_score", "pred_scores")
        amap = _field(batch, "anomaly_map", "anomaly_maps")
        missing = [name for name, value in (("pred_score", score), ("anomaly_map", amap)) if value is None]
        if batch_paths is None or missing:
            missing = (["image_path"] if batch_paths is None else []) + missing
            raise BundleWriteError(
                f"{key}: batch {index} has no {', '.join(missing)}; a bundle needs each image's path, score and "
                "anomaly map (predict with a model that outputs anomaly maps, on a dataloader that keeps image_path)"
            )
        single = isinstance(batch_paths, str | os.PathLike)
        batch_paths = [os.fspath(batch_paths)] if single else [os.fspath(p) for p in batch_paths]
        score_array = _to_numpy(score).astype(np.float64, copy=False).reshape(-1)
        map_array = _to_numpy(amap)
        if single:  # one item: (H, W) or (1, H, W)
            map_array = map_array[None]
        if map_array.ndim == 4 and map_array.shape[1] == 1:  # (B, 1, H, W): one channel
            map_array = map_array[:, 0]
        n = len(batch_paths)
        if map_array.ndim != 3 or map_array.shape[0] != n:
            raise BundleWriteError(
                f"{key}: batch {index}: anomaly_map has shape {tuple(map_array.shape)}; expected ({n}, H, W) or "
                f"({n}, 1, H, W) for its {n} image paths"
            )
        if score_array.shape != (n,):
            raise BundleWriteError(
                f"{key}: batch {index}: pred_score has {score_array.size} values for {n} image paths"
            )
        if maps and map_array.shape[1:] != maps[0].shape[1:]:
            raise BundleWriteError(
                f"{key}: batch {index}: anomaly maps of {map_array.shape[1]} x {map_array.shape[2]}, earlier ones "
                f"{maps[0].shape[1]} x {maps[0].shape[2]}; predict every image of a category at one size"
            )
        paths += batch_paths
        scores.append(score_array)
        maps.append(map_array)
    if not paths:
        raise BundleWriteError(f"{key}: no predictions (an empty list)")
    return paths, np.concatenate(scores), np.concatenate(maps)


def _parts(path: str) -> tuple[str, ...]:
    """A path's components, whichever the separator (anomalib on Windows writes backslashes)."""
    if "\\" in path:
        return PureWindowsPath(path).parts
    return PurePosixPath(path).parts


def map_paths_to_ids(
    paths: Sequence[str], table: Mapping[str, str] | None, *, key: str, published: Sequence[str] | None = None
) -> list[str]:
    """The published ids of anomalib's image paths, checked against the category's published list.

    Parameters
    ----------
    paths
        anomalib's ``image_path`` values (absolute or relative, ``/`` or ``\\``), one per row.
    table
        ``{published id: file name}`` (``GET /api/v1/categories/<key>/test-files``): a path maps
        to the id whose file name (``test/crack/003.png``) its last components are. ``None`` for a
        category without a table (the blind suite): the path's stem is the id (``<id>.png``).
    key
        The category key, named in messages.
    published
        The published ids (``GET .../test-ids``); by default the table's ids.

    Returns
    -------
    list of str
        One id per path, in the paths' order.

    Raises
    ------
    BundleWriteError
        Paths matching no file name (up to 3 named, with what the table's names look like), a
        path matching two, an image predicted twice, or published ids without a prediction
        (how many, examples, and anomalib's ``Folder`` settings that keep every test image).
    """
    if table is not None:
        by_file = {tuple(PurePosixPath(str(name)).parts): str(image_id) for image_id, name in table.items()}
        lengths = sorted({len(parts) for parts in by_file}, reverse=True)
        expected = list(published) if published is not None else list(table)
    else:
        by_file, lengths = {}, []
        expected = list(published) if published is not None else None
    ids: list[str] = []
    unmatched: list[str] = []
    for path in paths:
        parts = _parts(path)
        if table is None:
            stem = PurePosixPath(parts[-1] if parts else path).stem
            if not _OPAQUE_ID.match(stem):
                unmatched.append(path)
                continue
            ids.append(stem)
            continue
        found = {by_file[parts[-k:]] for k in lengths if len(parts) >= k and parts[-k:] in by_file}
        if len(found) > 1:
            raise BundleWriteError(f"{key}: image path {path!r} ends with two file names of the id table")
        if not found:
            unmatched.append(path)
            continue
        ids.append(found.pop())
    if unmatched:
        shown = ", ".join(map(repr, unmatched[:3])) + (", ..." if len(unmatched) > 3 else "")
        if table is None:
            hint = (
                "this category has no id table, so its images must be named <published id>.png (as the blind "
                "suite's downloads are); for a suite with public ground truth give the id tables (server= or "
                "id_tables=, --server or --id-table)"
            )
        elif any("train" in _parts(path)[:-1] for path in unmatched):
            hint = (
                "training images were predicted as test images: anomalib's Folder datamodule samples 'normal test' "
                f"images from the training folder when normal_test_dir is not given. {_FOLDER_FIX}"
            )
        else:
            example = next(iter(table.values()), "?")
            hint = (
                f"each path must end with a file name of the category's test set, such as {example!r}: are these "
                f"the predictions of another category, or of images outside the test folder?"
            )
        raise BundleWriteError(
            f"{key}: {len(unmatched)} of {len(paths)} image path(s) match no test image: {shown}; {hint}"
        )
    seen: dict[str, str] = {}
    for path, image_id in zip(paths, ids, strict=True):
        if image_id in seen:
            raise BundleWriteError(
                f"{key}: the image {(table or {}).get(image_id, image_id)!r} is predicted twice ({seen[image_id]!r} "
                f"and {path!r}); predict each test image once (one dataloader: datamodule.test_dataloader())"
            )
        seen[image_id] = path
    if expected is not None:
        absent = [image_id for image_id in expected if image_id not in seen]
        extra = [image_id for image_id in ids if image_id not in set(expected)]
        if extra:
            raise BundleWriteError(
                f"{key}: {len(extra)} image(s) are not in the published test set, e.g. "
                f"{(table or {}).get(extra[0], extra[0])!r}; download the id table again"
            )
        if absent:
            names = [(table or {}).get(image_id, image_id) for image_id in absent]
            normal = [name for name in names if "/good/" in f"/{name}"]
            cause = (
                "all of them are normal ('good') images: " if normal and len(normal) == len(names) else ""
            ) + _FOLDER_FIX
            raise BundleWriteError(
                f"{key}: {len(absent)} of the category's {len(expected)} test images have no prediction, e.g. "
                f"{', '.join(map(repr, names[:3]))}; {cause}"
            )
    return ids


def _tie_problems(key: str, scores: np.ndarray, maps: np.ndarray) -> list[str]:
    """Clamped or tied scores, and clamped maps: the signs of anomalib's normalisation."""
    problems = []
    n = len(scores)
    low, high = float(scores.min()), float(scores.max())
    in_unit = low >= 0.0 and high <= 1.0
    at_one = int(np.count_nonzero(scores == 1.0)) if in_unit else 0
    at_zero = int(np.count_nonzero(scores == 0.0)) if in_unit else 0
    distinct = len(np.unique(scores))
    if at_one > 1 or at_zero > 1:
        shares = " and ".join(
            text
            for count, text in ((at_one, f"{at_one} are exactly 1.0"), (at_zero, f"{at_zero} exactly 0.0"))
            if count > 1
        )
        problems.append(f"{key}: of {n} image scores, {shares}: clamped scores, tied in the ranking")
    elif distinct < n:
        values, counts = np.unique(scores, return_counts=True)
        worst = int(np.argmax(counts))
        problems.append(
            f"{key}: {n} image scores take only {distinct} distinct values ({int(counts[worst])} images share "
            f"{float(values[worst]):g}): tied scores"
        )
    map_low, map_high = float(maps.min()), float(maps.max())
    if map_low >= 0.0 and map_high <= 1.0:
        clamped = int(np.count_nonzero(maps == 1.0)) + int(np.count_nonzero(maps == 0.0))
        if clamped > 0.01 * maps.size:
            problems.append(
                f"{key}: {clamped / maps.size:.1%} of the anomaly-map pixels are exactly 0.0 or 1.0: clamped maps"
            )
    return problems


def _fit_map_size(key: str, maps: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Maps whose sides are within the bundle's limits: as given, else rescaled (bilinear), never cropped."""
    h, w = maps.shape[1:]
    if MIN_MAP_SIDE <= h <= MAX_MAP_SIDE and MIN_MAP_SIDE <= w <= MAX_MAP_SIDE:
        return maps, None
    factor = min(1.0, MAX_MAP_SIDE / max(h, w)) if max(h, w) > MAX_MAP_SIDE else MIN_MAP_SIDE / min(h, w)
    new_h = min(MAX_MAP_SIDE, max(MIN_MAP_SIDE, round(h * factor)))
    new_w = min(MAX_MAP_SIDE, max(MIN_MAP_SIDE, round(w * factor)))
    import cv2

    interpolation = cv2.INTER_AREA if new_h * new_w < h * w else cv2.INTER_LINEAR
    source = maps.astype(np.float32, copy=False)
    out = np.stack([cv2.resize(m, (new_w, new_h), interpolation=interpolation) for m in source])
    return out, (
        f"{key}: anomaly maps of {h} x {w} rescaled to {new_h} x {new_w} (a bundle's maps have sides of "
        f"{MIN_MAP_SIDE}-{MAX_MAP_SIDE} pixels; the server resizes every map to 256 x 256 anyway)"
    )


def _crops(model: Any) -> list[str]:
    """The crop transforms (by class name) in an anomalib model's pre-processor, found by duck typing."""
    found, stack = [], [getattr(getattr(model, "pre_processor", None), "transform", None)]
    while stack:
        transform = stack.pop()
        if transform is None:
            continue
        if "Crop" in type(transform).__name__:
            found.append(type(transform).__name__)
        stack.extend(getattr(transform, "transforms", None) or [])
    return found


def bundle_from_anomalib(
    predictions_by_category: Mapping[str, Any],
    *,
    path: str | os.PathLike,
    method: str,
    suite: str,
    id_tables: Mapping[str, Mapping[str, str]] | None = None,
    server: str | None = None,
    published_ids: Mapping[str, Sequence[str]] | None = None,
    allow_ties: bool = False,
    dtype: str | None = None,
    description: str = "",
    partial: bool = False,
    model: Any = None,
) -> AnomalibBundle:
    """Write a bundle from anomalib's predictions, one entry per category.

    Parameters
    ----------
    predictions_by_category
        Category key (``"mvtec/bottle"``) -> what ``Engine.predict`` returned for that category
        (see :func:`collect_predictions` for the accepted forms).
    path
        The bundle zip to write (atomically).
    method, suite, dtype, description, partial
        As for :func:`algorithms.bundle.write_bundle`.
    id_tables
        Category key -> ``{published id: file name}`` (``GET /api/v1/categories/<key>/test-files``).
    server
        The leaderboard's URL: its id tables and published id lists are fetched (when
        ``id_tables`` is not given) and every category is checked against its published ids.
    published_ids
        Category key -> the published ids (``GET .../test-ids``), to check against without a server
        (default: the ids of each category's table).
    allow_ties
        Write clamped or tied scores (and clamped maps) anyway, with a warning each, instead of
        refusing them.
    model
        Optional: the anomalib model that predicted. Its pre-processor is checked for a crop
        (``CenterCrop``...): a cropped image's map covers only part of the image and cannot line
        up with the ground-truth masks, so it is refused.

    Returns
    -------
    AnomalibBundle
        ``path`` (the written file), ``warnings`` (what was accepted: ties with ``allow_ties``,
        rescaled maps), ``counts`` (images per category).

    Raises
    ------
    BundleWriteError
        Naming the category and what to change: unmatched paths, missing or duplicated images,
        clamped or tied scores (without ``allow_ties``), a cropping pre-processor, malformed batches, or anything
        :func:`~algorithms.bundle.write_bundle` refuses. Nothing is written.
    """
    if not predictions_by_category:
        raise BundleWriteError("no categories: give {category key: predictions}")
    crops = _crops(model) if model is not None else []
    if crops:
        raise BundleWriteError(
            f"the model's pre-processor crops the images ({', '.join(crops)}): its anomaly maps cover part of each "
            "image only and cannot line up with the masks; use a pre-processor that resizes the whole image, e.g. "
            "pre_processor=Model.configure_pre_processor(image_size=(256, 256)) without center_crop_size"
        )
    tables = {key: dict(table) for key, table in (id_tables or {}).items()}
    expected = {key: list(ids) for key, ids in (published_ids or {}).items()}
    if server:
        from algorithms.bundle import _server_id_tables
        from algorithms.client import ClientError, published_test_ids

        if not tables:
            tables = _server_id_tables(server, suite)
        try:
            for key in predictions_by_category:
                if key not in expected:
                    expected[key] = published_test_ids(server, key)
        except ClientError as exc:
            raise BundleWriteError(f"cannot read the published test ids from {server}: {exc}") from exc
    warnings: list[str] = []
    categories: dict[str, dict[str, Any]] = {}
    for key in sorted(predictions_by_category):
        paths, scores, maps = collect_predictions(predictions_by_category[key], key=key)
        ids = map_paths_to_ids(paths, tables.get(key), key=key, published=expected.get(key))
        if not np.isfinite(scores).all() or not np.isfinite(maps).all():
            raise BundleWriteError(f"{key}: the predictions contain NaN or infinite values")
        problems = _tie_problems(key, scores, maps)
        if problems and not allow_ties:
            raise BundleWriteError(
                "; ".join(problems) + f". The metrics rank the images within a category, and tied values lose that "
                f"ranking. {_NORMALISATION_FIX}. (allow_ties=True or --allow-ties writes them anyway)"
            )
        warnings += problems
        maps, resized = _fit_map_size(key, maps)
        if resized:
            warnings.append(resized)
        categories[key] = {"ids": ids, "scores": scores, "maps": maps}
    written = write_bundle(
        path, method=method, suite=suite, categories=categories, dtype=dtype, description=description,
        partial=partial,
    )  # fmt: skip
    return AnomalibBundle(written, warnings, {key: len(entry["ids"]) for key, entry in categories.items()})


def load_predictions(path: str | os.PathLike) -> Any:
    """Read predictions saved with ``torch.save(engine.predict(...), path)``.

    This unpickles the file (``torch.load(weights_only=False)``), which can run any code the
    file's author chose: load only files you made yourself. anomalib must be installed to read
    its ``ImageBatch`` objects (save ``[{"image_path", "pred_score", "anomaly_map"}, ...]`` dicts
    of tensors to read them without it).

    Raises
    ------
    BundleWriteError
        The file is missing or cannot be read; torch is not installed.
    """
    file = Path(path)
    if not file.is_file():
        raise BundleWriteError(f"{file}: no such file")
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of the library
        raise BundleWriteError(f"{file}: reading torch.save files needs torch") from exc
    try:
        return torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling raises anything: a missing module, a damaged file, ...
        raise BundleWriteError(f"{file}: cannot be read with torch.load ({type(exc).__name__}: {exc})") from exc


def bundle_from_anomalib_files(files: Sequence[tuple[str, Path]], **options: Any) -> AnomalibBundle:
    """:func:`bundle_from_anomalib` on ``torch.save`` files: ``[(category key, path), ...]``; the same options."""
    predictions: dict[str, Any] = {}
    for key, file in files:
        if key in predictions:
            raise BundleWriteError(f"{key}: given twice (--anomalib {key}=...)")
        predictions[key] = load_predictions(file)
    return bundle_from_anomalib(predictions, **options)
