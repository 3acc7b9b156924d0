"""Score validated bundles against ground truth (arrays in, metric values out; no ORM).

The evaluation protocol is ``evaluation.metrics``: maps are resized bilinearly to
``EVAL_SIZE x EVAL_SIZE`` by ``to_protocol`` and scored by ``evaluate`` against masks at the
same size. Maps stream from the archive in batches and are resized batch by batch, so a
category never needs its maps at the uploaded resolution in memory all at once.

``suspicion_check`` flags a submission whose maps match the ground truth too well to be a
model's output (it is then held back for an admin instead of being published).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .bundles import BundleReader

__all__ = [
    "GroundTruthLike",
    "SuspicionReport",
    "maps_to_protocol",
    "score_arrays",
    "score_bundle",
    "suspicion_check",
]


class GroundTruthLike(Protocol):
    """What scoring needs from ``algorithms.data.GroundTruth`` (ids, labels, masks in test-id order)."""

    ids: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


#: Floating-point slack tolerated around [0, 1] (sums of many areas can land at 1 + 1e-14).
UNIT_TOLERANCE = 1e-9


def _unit(value: float) -> float:
    """``value`` as a float, with rounding excursions just outside [0, 1] clipped back in."""
    number = float(value)
    if -UNIT_TOLERANCE <= number < 0.0:
        return 0.0
    if 1.0 < number <= 1.0 + UNIT_TOLERANCE:
        return 1.0
    return number


def maps_to_protocol(
    masks: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]], *, n_images: int
) -> np.ndarray:
    """Assemble ``(positions, maps)`` batches into one ``(N, EVAL_SIZE, EVAL_SIZE)`` float32 array.

    Parameters
    ----------
    masks : ndarray of shape (N, S, S)
        Ground-truth masks in the expected order (``to_protocol`` resizes them alongside).
    batches : iterable of (ndarray, ndarray)
        Expected-order positions ``(B,)`` and the maps ``(B, H, W)`` for them.
    n_images : int
        N; every position must be covered exactly once.

    Returns
    -------
    ndarray of shape (N, EVAL_SIZE, EVAL_SIZE), float32
    """
    from .metrics import EVAL_SIZE, to_protocol

    out = np.empty((n_images, EVAL_SIZE, EVAL_SIZE), dtype=np.float32)
    seen = np.zeros(n_images, dtype=bool)
    for positions, maps in batches:
        positions = np.asarray(positions, dtype=np.int64)
        if seen[positions].any():
            raise ValueError("a map position was given twice")
        _, resized = to_protocol(masks[positions], maps)
        out[positions] = resized
        seen[positions] = True
    if not seen.all():
        raise ValueError(f"maps were given for {int(seen.sum())} of {n_images} images")
    return out


def score_arrays(*, ground_truth: GroundTruthLike, scores: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """Metric values for one category from arrays already in the ground truth's order.

    ``maps`` may be at any resolution; they are brought to the protocol size by
    ``to_protocol``. Returns ``evaluation.metrics.evaluate``'s dict (image_auroc,
    pixel_auroc, aupro, pl).
    """
    from .metrics import evaluate, to_protocol

    masks, protocol_maps = to_protocol(ground_truth.masks, maps)
    return {key: _unit(value) for key, value in evaluate(masks, protocol_maps, ground_truth.labels, scores).items()}


def score_bundle(
    reader: BundleReader,
    ground_truths: Mapping[str, GroundTruthLike],
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Score every category of a validated bundle: ``{category key: {metric: value}}``.

    ``reader.validate`` must have passed with the same categories and the ground truths' ids.
    ``progress(done, total, key)`` is called after each category.
    """
    from .metrics import EVAL_SIZE, evaluate, to_protocol

    summary = reader.summary
    results: dict[str, dict[str, float]] = {}
    keys = list(summary.categories)
    for done, key in enumerate(keys, start=1):
        gt = ground_truths[key]
        if [str(image_id) for image_id in gt.ids] != reader.expected_ids(key):
            raise ValueError(f"the ground truth of {key} is not in the order of the ids the bundle was checked against")
        masks = np.asarray(gt.masks)
        if masks.shape[1:] != (EVAL_SIZE, EVAL_SIZE):
            masks, _ = to_protocol(masks, np.zeros(masks.shape, dtype=np.float32))
        scores = reader.read_scores(key)
        maps = maps_to_protocol(masks, reader.iter_map_batches(key), n_images=len(scores))
        results[key] = {name: _unit(value) for name, value in evaluate(masks, maps, gt.labels, scores).items()}
        if progress is not None:
            progress(done, len(keys), key)
    return results


@dataclass(frozen=True)
class SuspicionReport:
    flagged: bool
    categories: list[str] = field(default_factory=list)  # the categories that look like ground truth
    reason: str = ""


def suspicion_check(
    results: Mapping[str, Mapping[str, float]],
    *,
    pixel_auroc_above: float = 0.999,
    aupro_above: float = 0.999,
    pl_at_least: float = 1.0,
    fraction: float = 0.5,
) -> SuspicionReport:
    """Flag results whose maps look like the ground-truth masks themselves.

    A category looks like ground truth when its pixel AUROC exceeds ``pixel_auroc_above`` and
    either its AUPRO exceeds ``aupro_above`` or its PL reaches ``pl_at_least``. (Masks uploaded
    as maps give pixel AUROC = AUPRO = 1; PL can stay below 1 for irregular defects, since it
    compares bounding boxes.) The submission is flagged when more than ``fraction`` of its
    categories look like that. No published method comes close on MVTec AD or VisA, so this
    holds uploaded masks for an admin without troubling honest submissions.
    """
    if not results:
        return SuspicionReport(False)
    hits = sorted(
        key
        for key, values in results.items()
        if values.get("pixel_auroc", 0.0) > pixel_auroc_above
        and (values.get("aupro", 0.0) > aupro_above or values.get("pl", 0.0) >= pl_at_least)
    )
    if len(hits) > fraction * len(results):
        reason = (
            f"{len(hits)} of {len(results)} categories have pixel AUROC > {pixel_auroc_above} and AUPRO > "
            f"{aupro_above} or PL >= {pl_at_least}: the maps match the ground truth too well"
        )
        return SuspicionReport(True, hits, reason)
    return SuspicionReport(False, hits)
