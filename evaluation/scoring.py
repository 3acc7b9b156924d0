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
    return {key: float(value) for key, value in evaluate(masks, protocol_maps, ground_truth.labels, scores).items()}


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
        masks = np.asarray(gt.masks)
        if masks.shape[1:] != (EVAL_SIZE, EVAL_SIZE):
            masks, _ = to_protocol(masks, np.zeros(masks.shape, dtype=np.float32))
        scores = reader.read_scores(key)
        maps = maps_to_protocol(masks, reader.iter_map_batches(key), n_images=len(scores))
        results[key] = {name: float(value) for name, value in evaluate(masks, maps, gt.labels, scores).items()}
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
    pl_at_least: float = 1.0,
    fraction: float = 0.5,
) -> SuspicionReport:
    """Flag results whose maps look like the ground truth masks themselves.

    A category looks like ground truth when its pixel AUROC exceeds ``pixel_auroc_above`` and
    its PL reaches ``pl_at_least``. The submission is flagged when more than ``fraction`` of
    its categories do. No published method comes close on MVTec AD or VisA (paper, Table 2),
    so this catches uploaded masks without troubling honest submissions.
    """
    if not results:
        return SuspicionReport(False)
    hits = sorted(
        key
        for key, values in results.items()
        if values.get("pixel_auroc", 0.0) > pixel_auroc_above and values.get("pl", 0.0) >= pl_at_least
    )
    if len(hits) > fraction * len(results):
        reason = (
            f"{len(hits)} of {len(results)} categories have pixel AUROC > {pixel_auroc_above} and PL >= "
            f"{pl_at_least}: the maps match the ground truth too well; held for review"
        )
        return SuspicionReport(True, hits, reason)
    return SuspicionReport(False, hits)
