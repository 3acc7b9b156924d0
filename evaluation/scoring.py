"""Score validated bundles against ground truth (arrays in, metric values out; no ORM).

The evaluation protocol is ``evaluation.metrics``: ``evaluate_at_protocol`` resizes masks
(nearest) and maps (bilinear) to ``EVAL_SIZE x EVAL_SIZE`` and computes the four metrics, the
same function the benchmark runner uses. Maps stream from the archive in batches and are
resized batch by batch (``maps_to_protocol``), so a category never needs its maps at the
uploaded resolution in memory all at once.

``suspicion_check`` flags a submission whose maps match the ground truth too well to be a
model's output (it is then held back for an admin instead of being published).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .bundles import BundleReader

__all__ = [
    "GroundTruthLike",
    "SuspicionReport",
    "maps_to_protocol_in_batches",
    "score_arrays",
    "score_bundle",
    "suspicion_check",
]


class GroundTruthLike(Protocol):
    """What scoring needs from ``algorithms.data.GroundTruth`` (ids, labels, masks in test-id order)."""

    ids: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def maps_to_protocol_in_batches(batches: Iterable[tuple[np.ndarray, np.ndarray]], *, n_images: int) -> np.ndarray:
    """Assemble ``(positions, maps)`` batches into one ``(N, EVAL_SIZE, EVAL_SIZE)`` float32 array.

    Each batch is resized on its own (``evaluation.metrics.maps_to_protocol``), so the maps are
    never all in memory at the uploaded resolution.

    Parameters
    ----------
    batches : iterable of (ndarray, ndarray)
        Expected-order positions ``(B,)`` and the maps ``(B, H, W)`` for them.
    n_images : int
        N; every position must be covered exactly once.

    Returns
    -------
    ndarray of shape (N, EVAL_SIZE, EVAL_SIZE), float32

    Raises
    ------
    ValueError
        A position given twice or never, or maps the metrics reject.
    """
    from .metrics import EVAL_SIZE, maps_to_protocol

    out = np.empty((n_images, EVAL_SIZE, EVAL_SIZE), dtype=np.float32)
    seen = np.zeros(n_images, dtype=bool)
    for positions, maps in batches:
        positions = np.asarray(positions, dtype=np.int64)
        if seen[positions].any():
            raise ValueError("a map position was given twice")
        out[positions] = maps_to_protocol(maps)
        seen[positions] = True
    if not seen.all():
        raise ValueError(f"maps were given for {int(seen.sum())} of {n_images} images")
    return out


def score_arrays(*, ground_truth: GroundTruthLike, scores: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """Metric values for one category from arrays already in the ground truth's order.

    ``maps`` may be at any resolution; ``evaluation.metrics.evaluate_at_protocol`` brings them
    (and the masks) to the protocol size. Returns its dict (image_auroc, pixel_auroc, aupro, pl).
    """
    from .metrics import evaluate_at_protocol

    return evaluate_at_protocol(ground_truth.masks, maps, ground_truth.labels, scores)


def score_bundle(
    reader: BundleReader,
    ground_truths: Mapping[str, GroundTruthLike],
    *,
    progress: Callable[[int, int, str], None] | None = None,
    localisations: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """Score every category of a validated bundle: ``{category key: {metric: value}}``.

    ``reader.validate`` must have passed with the same categories and the ground truths' ids.
    ``progress(done, total, key)`` is called after each category. When ``localisations`` is a
    dict, it receives per category what PL decided anomaly by anomaly
    (``LocalisationReport.to_dict`` with the test ids and, when the ground truth has them, the
    defect types; ``size`` the protocol's resolution), as the runner records it for its runs.
    """
    from .metrics import EVAL_SIZE, evaluate_at_protocol, localisation_report, masks_to_protocol

    summary = reader.summary
    results: dict[str, dict[str, float]] = {}
    keys = list(summary.categories)
    for done, key in enumerate(keys, start=1):
        gt = ground_truths[key]
        if [str(image_id) for image_id in gt.ids] != reader.expected_ids(key):
            raise ValueError(f"the ground truth of {key} is not in the order of the ids the bundle was checked against")
        scores = reader.read_scores(key)
        maps = maps_to_protocol_in_batches(reader.iter_map_batches(key), n_images=len(scores))
        results[key] = evaluate_at_protocol(gt.masks, maps, gt.labels, scores)
        if localisations is not None and np.asarray(gt.labels).any():
            report = localisation_report(masks_to_protocol(gt.masks), maps)
            document = report.to_dict(ids=gt.ids, defect_types=getattr(gt, "defect_types", None))
            localisations[key] = {**document, "size": EVAL_SIZE}
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
