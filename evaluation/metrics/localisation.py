"""Proportion Localised (PL): the share of defects that a model localises.

A re-implementation of the authors' ``proportion-localised`` 0.1.3 package (called with
``anomaly_likelihood_definitely_increasing=True``), reproducing its every step bit for bit, but
with each pixel's value sorted once: per image, the values nearest to each box centre (the whole
image for one box) are sorted into one pool. Those sorted runs give the 25 percentile thresholds
exactly (numpy's 'linear' percentile rebuilt from two order statistics each, found from a sample
of the runs instead of a second sort of all pixels), and every box's count of pixels above all 25
thresholds is a binary search in sorted values, so its IoU needs no per-threshold image masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist
from shapely.geometry import Polygon

from ._regions import label_regions
from ._validate import check_fraction, check_maps, check_masks, check_same_shape

__all__ = [
    "AnomalyLocalisation",
    "LocalisationReport",
    "localisation_report",
    "proportion_localised",
    "proportion_localised_from_ious",
]

N_THRESHOLDS = 25
MIN_SCALE_INVERSE = 8
OVERLAP_LIMIT = 1 / 3

Rect = tuple[tuple[float, float], tuple[float, float], float]


# --- thresholds -------------------------------------------------------------------------------

PERCENTILES = np.linspace(0, 100, N_THRESHOLDS + 2)[1:-1]
_SAMPLE_STRIDE = 32


def _linear_percentile_plan(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks and weights with which ``np.percentile(..., method="linear")`` picks :data:`PERCENTILES`.

    Mirrors numpy's own steps (``_quantile`` / ``_get_indexes`` / ``_get_gamma``) so the result
    is bit-identical: ``virtual = (count - 1) * q / 100``, neighbours ``floor(virtual)`` and
    ``floor(virtual) + 1`` (both the last element when ``virtual >= count - 1``) and the weight
    ``virtual - previous``. Returns ``(previous, next, gamma)`` with non-negative ranks.
    """
    virtual = (count - 1) * np.true_divide(PERCENTILES, 100)
    previous = np.floor(virtual)
    following = previous + 1
    last = virtual >= count - 1
    previous[last] = -1
    following[last] = -1
    previous = previous.astype(np.intp)
    following = following.astype(np.intp)
    gamma = np.asarray(virtual - previous, dtype=virtual.dtype)
    return previous % count, following % count, gamma


def _lerp(below: np.ndarray, above: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """numpy's ``_lerp`` as ``np.percentile`` applies it (same operations, dtypes and branch).

    Where float32 overflows (``above - below`` beyond 3.4e38, for finite maps near the float32
    limits) numpy's result is infinite or NaN; those thresholds alone are recomputed in float64
    (the result is then float64, holding the float32 values exactly elsewhere).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        step = above - below
        result = np.add(below, step * gamma)
        np.subtract(above, step * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe",
                    dtype=type(result.dtype))
    overflowed = ~np.isfinite(result)
    if overflowed.any() and below.dtype != np.float64:
        wide = _lerp(below.astype(np.float64), above.astype(np.float64), gamma)
        result = result.astype(np.float64)
        result[overflowed] = wide[overflowed]
    return result


def _adjacent_order_statistics(pool: np.ndarray, runs: list[tuple[int, int]],
                               ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact values at 0-based ``ranks`` and ``ranks + 1`` (capped at the last) of all of ``pool``.

    ``pool`` is made of sorted ``runs`` (``(start, stop)`` slices covering it). Sorting (or
    ``np.partition``-ing, far slower for many ranks) the whole pool again is avoided: every
    ``s``-th value of each run is sampled (``s = _SAMPLE_STRIDE``) and the sample sorted. A value
    with ``A`` samples below it has at most ``s * A`` pool values below it, and one with ``B``
    samples at or below it has at least ``s * B - (s - 1) * R`` pool values at or below it
    (``R`` runs). So for rank ``k`` the sample values at ``k // s`` and at
    ``ceil((k + 2 + (s - 1) * R) / s) - 1`` bracket ranks ``k`` and ``k + 1``; only the pool
    values between them (about ``s * R``) are gathered, and both picked with ``np.partition``.
    """
    stride = _SAMPLE_STRIDE
    runs = [(start, stop) for start, stop in runs if stop > start]
    sample = np.concatenate([pool[start:stop:stride] for start, stop in runs])
    sample.sort()
    low = sample[ranks // stride]
    high_index = -(-(ranks + 2 + (stride - 1) * len(runs)) // stride) - 1
    unbounded = high_index >= sample.size
    high = sample[np.minimum(high_index, sample.size - 1)]

    below = np.zeros(ranks.size, dtype=np.intp)  # pool values strictly below ``low``
    firsts = np.empty((ranks.size, len(runs)), dtype=np.intp)
    lasts = np.empty((ranks.size, len(runs)), dtype=np.intp)
    for r, (start, stop) in enumerate(runs):
        run = pool[start:stop]
        first = np.searchsorted(run, low, side="left")
        below += first
        firsts[:, r] = start + first
        lasts[:, r] = np.where(unbounded, stop, start + np.searchsorted(run, high, side="right"))

    at_rank = np.empty(ranks.size, dtype=pool.dtype)
    after_rank = np.empty(ranks.size, dtype=pool.dtype)
    for j in range(ranks.size):
        lengths = lasts[j] - firsts[j]
        ends = np.cumsum(lengths)
        # positions firsts[j, r] .. lasts[j, r] - 1 of every run, as one index array
        candidates = pool[np.arange(ends[-1]) + np.repeat(firsts[j] - (ends - lengths), lengths)]
        within = int(ranks[j] - below[j])
        following = min(within + 1, candidates.size - 1)
        candidates.partition([within, following])
        at_rank[j], after_rank[j] = candidates[within], candidates[following]
    return at_rank, after_rank


def _thresholds(pool: np.ndarray, runs: list[tuple[int, int]]) -> np.ndarray:
    """The package's thresholds: ``np.percentile(pooled, linspace(0, 100, 27)[1:-1])``, bit for bit.

    ``pool`` holds every map value of the anomalous images as sorted ``runs`` (see
    :func:`_adjacent_order_statistics`); the percentiles are numpy's 'linear' method rebuilt
    from the two order statistics around each one, so they equal numpy's own exactly.
    """
    previous, _, gamma = _linear_percentile_plan(pool.size)
    # numpy's right neighbour is ``previous + 1``, or the last value again at the very end
    below, above = _adjacent_order_statistics(pool, runs, previous)
    return _lerp(below, above, gamma)


def _comparable_thresholds(thresholds: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Thresholds in the maps' dtype such that ``value > t'`` equals ``value > t`` compared exactly.

    For a narrower map dtype each threshold is rounded down to the largest representable value
    not above it, which keeps the strict comparison exact without widening every pixel.
    """
    if np.result_type(thresholds.dtype, dtype) == dtype:
        return thresholds.astype(dtype)
    narrow = thresholds.astype(dtype)
    too_high = narrow.astype(thresholds.dtype) > thresholds
    narrow[too_high] = np.nextafter(narrow[too_high], np.array(-np.inf, dtype=dtype))
    return narrow


# --- boxes ------------------------------------------------------------------------------------

def _min_side(shape: tuple[int, int]) -> float:
    """Minimum box side: ``min(H, W) // 8`` (the package hard-codes ``256 // 8 = 32``), at least 1."""
    return float(max(1, min(shape) // MIN_SCALE_INVERSE))


def _crop(slices: tuple[slice, slice], shape: tuple[int, int]) -> tuple[slice, slice]:
    """Grow a region's bounding slices by one background pixel, except where it meets the image edge.

    Contours traced in the crop then equal those traced in the whole image, point for point.
    """
    rows, cols = slices
    return (slice(max(rows.start - 1, 0), min(rows.stop + 1, shape[0])),
            slice(max(cols.start - 1, 0), min(cols.stop + 1, shape[1])))


def _scaled_rect(mask_crop: np.ndarray, origin: tuple[int, int], min_side: float) -> Rect:
    """Minimum-area rotated box of the convex hull of all external contours, sides widened to ``min_side``."""
    contours, _ = cv2.findContours(mask_crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(origin[1], origin[0]))
    hull = cv2.convexHull(np.concatenate([contour[:, 0, :] for contour in contours]))
    (cx, cy), (width, height), angle = cv2.minAreaRect(hull)
    return (cx, cy), (max(width, min_side), max(height, min_side)), angle


def _group_rect(labels: np.ndarray, members: list[int], slices: list[tuple[slice, slice]], min_side: float) -> Rect:
    """Box of the union of some labelled regions (labels are 1-based, ``members`` 0-based)."""
    rows = slice(min(slices[m][0].start for m in members), max(slices[m][0].stop for m in members))
    cols = slice(min(slices[m][1].start for m in members), max(slices[m][1].stop for m in members))
    window = _crop((rows, cols), labels.shape)
    crop = labels[window]
    mask = crop == members[0] + 1 if len(members) == 1 else np.isin(crop, np.asarray(members) + 1)
    return _scaled_rect(mask, (window[0].start, window[1].start), min_side)


def _overlapping_groups(rects: list[Rect]) -> list[list[int]]:
    """Group boxes whose overlap exceeds 1/3, in the package's order.

    Pairs are taken in order of centre distance (``argsort`` of the distance matrix, every
    second off-diagonal entry); the overlap is the intersection area over the area of the box
    with the smaller ``w + h`` (the second of the pair on a tie). Linked groups come in order of
    first appearance among the linked pairs, each sorted, then the unlinked boxes in order.
    """
    count = len(rects)
    centres = [rect[0] for rect in rects]
    distances = cdist(centres, centres)
    np.fill_diagonal(distances, np.inf)
    rows, cols = np.unravel_index(np.argsort(distances, axis=None), distances.shape)
    off_diagonal = rows != cols
    pairs = list(zip(rows[off_diagonal].tolist(), cols[off_diagonal].tolist()))[::2]
    reach = [0.5 * float(np.hypot(*rect[1])) for rect in rects]

    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: list[int] = []
    for a, b in pairs:
        if distances[a, b] > reach[a] + reach[b] + 1e-6:
            continue  # the circumscribed circles are apart, so the boxes cannot intersect
        poly_a, poly_b = Polygon(cv2.boxPoints(rects[a])), Polygon(cv2.boxPoints(rects[b]))
        smaller = poly_a if sum(rects[a][1]) < sum(rects[b][1]) else poly_b
        if poly_a.intersection(poly_b).area / smaller.area > OVERLAP_LIMIT:
            for vertex in (a, b):
                if vertex not in seen:
                    seen.append(vertex)
            parent[root(a)] = root(b)

    groups: dict[int, list[int]] = {}
    for vertex in seen:
        groups.setdefault(root(vertex), []).append(vertex)
    ordered = [sorted(group) for group in groups.values()]
    ordered += [[i] for i in range(count) if i not in seen]
    return ordered


def _image_boxes(mask: np.ndarray, labels: np.ndarray | None = None, count: int | None = None) -> list[Rect]:
    """The package's merged, widened rotated boxes of one anomalous image, in its order."""
    if labels is None or count is None:
        labels, count = label_regions(mask)
    min_side = _min_side(mask.shape)
    slices = ndimage.find_objects(labels)
    rects = [_group_rect(labels, [k], slices, min_side) for k in range(count)]
    if count == 1:
        return rects  # one region: the package boxes the whole mask and skips merging
    groups: list[list[int]] = [[k] for k in range(count)]
    for _ in range(2):  # the package merges in exactly two passes
        merged = _overlapping_groups(rects)
        new_groups = [sorted(m for g in group for m in groups[g]) for group in merged]
        rects = [rects[group[0]] if len(group) == 1 else _group_rect(labels, members, slices, min_side)
                 for group, members in zip(merged, new_groups)]
        groups = new_groups
    return rects


# --- IoU ----------------------------------------------------------------------------------------

def _nearest_centre(shape: tuple[int, int], rects: list[Rect]) -> np.ndarray:
    """Index of the nearest box centre for every pixel (first box on a tie, like ``argmin``).

    The package compares ``sqrt((row - cy)**2 + (col - cx)**2)`` (``cdist``). Squared distances
    formed the same way order pixels identically except where ``sqrt`` rounds two different
    squares to one value (they are then within a relative ``2**-51``), a tie the package gives
    to the earlier centre. So squares are compared, and only pixels within a relative
    ``2**-48`` of switching are re-decided with ``sqrt``: bit-for-bit the package's choice,
    without a square root per pixel and box.
    """
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    nearest = np.zeros(shape, dtype=np.min_scalar_type(len(rects) - 1))
    best = np.empty(shape)  # smallest squared distance so far
    squared = np.empty(shape)
    scaled = np.empty(shape)
    closer = np.empty(shape, dtype=bool)
    borderline = np.empty(shape, dtype=bool)
    for k, ((cx, cy), _, _) in enumerate(rects):
        np.add((rows - cy) ** 2, (cols - cx) ** 2, out=best if k == 0 else squared)
        if k == 0:
            continue
        np.less(squared, best, out=closer)
        np.multiply(best, 1 - 2.0**-48, out=scaled)
        np.greater_equal(squared, scaled, out=borderline)
        np.logical_and(borderline, closer, out=borderline)
        if borderline.any():
            near_tie = np.nonzero(borderline)
            closer[near_tie] = np.sqrt(squared[near_tie]) < np.sqrt(best[near_tie])
        np.copyto(nearest, k, where=closer, casting="unsafe")
        np.minimum(best, squared, out=best)
    return nearest


def _filled_box(rect: Rect, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
    """The package's filled rotated box (``cv2.drawContours`` of ``np.intp(cv2.boxPoints)``), cropped.

    Returns the window (the box's bounding rectangle clipped to the image) and a boolean mask
    of the box's pixels inside it; drawing the shifted polygon into the window gives exactly the
    pixels drawing it into the whole image would.
    """
    corners = np.intp(cv2.boxPoints(rect))
    x0, y0 = np.maximum(corners.min(axis=0), 0).tolist()
    x1 = min(int(corners[:, 0].max()) + 1, shape[1])
    y1 = min(int(corners[:, 1].max()) + 1, shape[0])
    canvas = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=np.uint8)
    if canvas.size:
        cv2.drawContours(canvas, [corners - np.intp([x0, y0])], 0, 1, -1)
    return (slice(y0, y0 + canvas.shape[0]), slice(x0, x0 + canvas.shape[1])), canvas.view(bool)


@dataclass
class _BoxValues:
    """What one box needs to know of the map, before the thresholds are known (all sorted)."""

    inside: np.ndarray          # map values in the filled box
    nearest_inside: np.ndarray  # of those, the ones nearest to this box's centre
    run: tuple[int, int]        # pool slice: every value nearest to this box's centre


def _collect_image(amap: np.ndarray, rects: list[Rect], pool: np.ndarray, offset: int) -> tuple[list[_BoxValues], int]:
    """Sort one image's map values for its boxes, writing the per-centre runs into ``pool``.

    The pixels nearest to each centre (a partition of the image; the whole image for one box)
    are written, sorted, to ``pool[offset:]``; the values in each box are sorted separately.
    Returns the per-box values and the new offset.
    """
    single = len(rects) == 1
    nearest = None if single else _nearest_centre(amap.shape, rects)
    boxes: list[_BoxValues] = []
    for k, rect in enumerate(rects):
        if single:
            stop = offset + amap.size
            pool[offset:stop] = amap.reshape(-1)
        else:
            mine = amap[nearest == k]
            stop = offset + mine.size
            pool[offset:stop] = mine
        pool[offset:stop].sort()
        window, box = _filled_box(rect, amap.shape)
        inside = amap[window][box]
        inside.sort()
        if single:
            nearest_inside = inside
        else:
            nearest_inside = amap[window][box & (nearest[window] == k)]
            nearest_inside.sort()
        boxes.append(_BoxValues(inside, nearest_inside, (offset, stop)))
        offset = stop
    return boxes, offset


def _count_above(sorted_values: np.ndarray, comparable: np.ndarray) -> np.ndarray:
    """Number of ``sorted_values`` strictly above each threshold."""
    return sorted_values.size - np.searchsorted(sorted_values, comparable, side="right")


def _box_ious(box: _BoxValues, pool: np.ndarray, comparable: np.ndarray) -> np.ndarray:
    """IoU of one box with the thresholded, Voronoi-filtered map at every threshold.

    For box k the prediction is ``(map > t) AND (pixels nearest centre k OR inside box k)``; the
    IoU is taken against the filled rotated box: ``|box & map > t| / (|box| + |outside & map > t|)``
    with ``outside`` the pixels nearest centre k but not in the box, counted as all pixels
    nearest centre k minus those inside the box.
    """
    above_in = _count_above(box.inside, comparable)
    above_near = _count_above(pool[box.run[0]:box.run[1]], comparable)
    near_in = above_in if box.nearest_inside is box.inside else _count_above(box.nearest_inside, comparable)
    union = box.inside.size + (above_near - near_in)
    return np.divide(above_in, union, out=np.zeros(comparable.size), where=union > 0)


# --- public API -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AnomalyLocalisation:
    """What PL decided for one anomaly (one merged, widened rotated box)."""

    image_index: int
    center_x: float
    center_y: float
    width: float
    height: float
    angle: float
    best_iou: float
    iou: float
    localised: bool
    ious: tuple[float, ...] = ()  # its IoU at each of the report's thresholds, in order


@dataclass(frozen=True)
class LocalisationReport:
    """Per-anomaly outcome of PL at the threshold that gave the best PL.

    ``threshold`` / ``threshold_index`` pick one of ``thresholds``; each anomaly's ``iou`` is its
    IoU there and ``localised`` is ``iou > iou_limit``; ``best_iou`` is its best over all thresholds
    and ``ious`` its IoU at every threshold, from which PL at any other IoU limit follows without
    measuring again (:func:`proportion_localised_from_ious`).
    """

    pl: float
    iou_limit: float
    threshold: float
    threshold_index: int
    thresholds: tuple[float, ...]
    anomalies: tuple[AnomalyLocalisation, ...]

    def to_dict(self, *, ids: Sequence[Any] | None = None, defect_types: Sequence[Any] | None = None) -> dict[str, Any]:
        """A JSON-serialisable dict (plain floats, ints, bools, lists).

        ``ids`` and ``defect_types``, given per image (the masks' order), add each anomaly's
        ``image_id`` and ``defect_type`` (as ``str``).
        """
        data = asdict(self)
        data["thresholds"] = list(self.thresholds)
        data["anomalies"] = [{**asdict(anomaly), "ious": list(anomaly.ious)} for anomaly in self.anomalies]
        for anomaly in data["anomalies"]:
            if ids is not None:
                anomaly["image_id"] = str(ids[anomaly["image_index"]])
            if defect_types is not None:
                anomaly["defect_type"] = str(defect_types[anomaly["image_index"]])
        return data


@dataclass
class _PLTable:
    thresholds: np.ndarray
    ious: np.ndarray  # (thresholds, anomalies)
    boxes: list[tuple[int, Rect]]


def _anomalous_indices(masks: np.ndarray) -> np.ndarray:
    return np.flatnonzero(masks.reshape(masks.shape[0], -1).any(axis=1))


def _pl_table(masks: np.ndarray, maps: np.ndarray, anomalous: np.ndarray, *,
              visit: Callable[[int, np.ndarray, int], None] | None = None) -> _PLTable:
    """IoU of every box at every threshold, in three passes.

    1. Per anomalous image: label, box, and sort its map values per nearest centre into one
       pool (plus each box's own values).
    2. Thresholds: exact percentiles of the pool, read off its sorted runs.
    3. Per box: counts above all 25 thresholds by binary search in the sorted values.

    ``visit(index, labels, count)`` is called with each image's region labels, so that
    :func:`evaluate` can reuse them.
    """
    pool = np.empty(anomalous.size * masks.shape[1] * masks.shape[2], dtype=maps.dtype)
    offset = 0
    box_values: list[_BoxValues] = []
    boxes: list[tuple[int, Rect]] = []
    for index in anomalous.tolist():
        labels, count = label_regions(masks[index])
        if visit is not None:
            visit(index, labels, count)
        rects = _image_boxes(masks[index], labels, count)
        values, offset = _collect_image(maps[index], rects, pool, offset)
        box_values.extend(values)
        boxes.extend((index, rect) for rect in rects)
    runs = [box.run for box in box_values]
    thresholds = _thresholds(pool, runs)
    comparable = _comparable_thresholds(thresholds, maps.dtype)
    ious = np.stack([_box_ious(box, pool, comparable) for box in box_values], axis=1)
    return _PLTable(thresholds, ious, boxes)


def _prepare(masks: object, maps: object, iou_limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    limit = check_fraction(iou_limit, "iou_limit", allow_zero=True)
    masks_b = check_masks(masks)
    maps_f = check_maps(maps)
    check_same_shape(masks_b, maps_f, ("masks", "maps"))
    anomalous = _anomalous_indices(masks_b)
    if anomalous.size == 0:
        raise ValueError("PL is undefined: no image has an anomaly (every mask is empty)")
    return masks_b, maps_f, anomalous, limit


def _pl_score(ious: np.ndarray, iou_limit: float) -> tuple[float, int]:
    fractions = (ious > iou_limit).sum(axis=1) / ious.shape[1]
    best = int(np.argmax(fractions))
    return float(fractions[best]), best


def proportion_localised(masks: object, maps: object, *, iou_limit: float = 0.3) -> float:
    """Proportion Localised: the share of anomalies localised at the best of 25 thresholds.

    Computed exactly as the authors' ``proportion-localised`` 0.1.3 package computes it with
    ``anomaly_likelihood_definitely_increasing=True`` (no direction flip):

    1. Only anomalous images (whose mask has a positive pixel) take part; images with an
       empty mask are skipped (the package would crash on them).
    2. Thresholds are the 25 *percentiles* ``np.linspace(0, 100, 27)[1:-1]`` of all map values
       of those images pooled (the paper's text says "linearly spaced"; the package, and so
       this function, uses percentiles).
    3. Each 8-connected region gets the minimum-area rotated box (``cv2.minAreaRect``) of the
       convex hull of its external contour; each side is widened to at least
       ``min(H, W) // 8`` pixels (the package hard-codes ``256 // 8 = 32``; identical at 256 x 256,
       and for other sizes this uses the shorter image side, at least 1 pixel).
    4. With more than one region, boxes overlapping by more than 1/3 (intersection over the
       area of the box with the smaller ``w + h``) are merged, their pixels re-boxed, in the
       package's two passes and pair order. An image with one region is boxed whole.
    5. Each pixel belongs to its nearest box centre; for box k and threshold t the prediction is
       ``(map > t) AND (nearest to k OR inside box k)`` and its IoU is taken with the filled box.
    6. An anomaly is localised when that IoU is strictly above ``iou_limit``; PL is the maximum
       over thresholds of the fraction of all anomalies (pooled over images) localised.

    Parameters
    ----------
    masks : array_like of shape (N, H, W)
        Binary ground truth; normal images (empty masks) may be included and are ignored.
    maps : array_like of shape (N, H, W)
        Anomaly maps; higher means more anomalous.
    iou_limit : float, default 0.3
        IoU an anomaly must exceed to count as localised (the paper's PL_xx variants), in [0, 1].

    Returns
    -------
    float
        PL in [0, 1].

    Raises
    ------
    ValueError
        On bad shapes or values, when no image has an anomaly, or ``iou_limit`` outside [0, 1].

    References
    ----------
    Taylor et al., "VisionAD, a software package of performant anomaly detection algorithms,
    and Proportion Localised, an interpretable metric", section 3.4 and Appendix C.
    """
    masks_b, maps_f, anomalous, limit = _prepare(masks, maps, iou_limit)
    return _pl_score(_pl_table(masks_b, maps_f, anomalous).ious, limit)[0]


def _report_from_table(table: _PLTable, limit: float) -> LocalisationReport:
    pl, best = _pl_score(table.ious, limit)
    best_ious = table.ious.max(axis=0)
    anomalies = tuple(
        AnomalyLocalisation(
            image_index=int(index),
            center_x=float(rect[0][0]),
            center_y=float(rect[0][1]),
            width=float(rect[1][0]),
            height=float(rect[1][1]),
            angle=float(rect[2]),
            best_iou=float(best_ious[k]),
            iou=float(table.ious[best, k]),
            localised=bool(table.ious[best, k] > limit),
            ious=tuple(float(v) for v in table.ious[:, k]),
        )
        for k, (index, rect) in enumerate(table.boxes)
    )
    return LocalisationReport(
        pl=pl,
        iou_limit=limit,
        threshold=float(table.thresholds[best]),
        threshold_index=best,
        thresholds=tuple(float(t) for t in table.thresholds),
        anomalies=anomalies,
    )


def proportion_localised_from_ious(ious: object, *, iou_limit: float = 0.3) -> float:
    """PL at ``iou_limit`` from IoUs already measured: no map or mask is read again.

    Parameters
    ----------
    ious : array_like of shape (n_anomalies, n_thresholds)
        Each anomaly's IoU at every threshold (``AnomalyLocalisation.ious`` of a
        :class:`LocalisationReport`, one row per anomaly).
    iou_limit : float, default 0.3
        IoU an anomaly must exceed to count as localised, in [0, 1].

    Returns
    -------
    float
        The best over thresholds of the share of anomalies whose IoU is above ``iou_limit``:
        equal to :func:`proportion_localised` on the masks and maps that gave ``ious``.

    Raises
    ------
    ValueError
        When ``ious`` is not a non-empty 2-D table of finite values in [0, 1], or for a bad limit.

    Examples
    --------
    >>> proportion_localised_from_ious([[0.1, 0.5], [0.4, 0.2]], iou_limit=0.3)
    0.5
    """
    limit = check_fraction(iou_limit, "iou_limit", allow_zero=True)
    table = np.asarray(ious, dtype=np.float64)
    if table.ndim != 2 or table.size == 0:
        raise ValueError(f"ious must be a non-empty (anomalies, thresholds) table, got shape {table.shape}")
    if not np.all(np.isfinite(table)) or table.min() < 0 or table.max() > 1:
        raise ValueError("ious must be finite values in [0, 1]")
    return _pl_score(table.T, limit)[0]


def localisation_report(masks: object, maps: object, *, iou_limit: float = 0.3) -> LocalisationReport:
    """Per-anomaly detail behind :func:`proportion_localised`, for drawing what PL decided.

    Parameters
    ----------
    masks, maps : array_like of shape (N, H, W)
        As for :func:`proportion_localised`.
    iou_limit : float, default 0.3
        IoU an anomaly must exceed to count as localised.

    Returns
    -------
    LocalisationReport
        PL, the thresholds, the chosen one (first best), and per anomaly (in image order, then
        the package's box order) its image index, rotated box (centre x/y, width, height, angle
        in degrees as ``cv2.minAreaRect`` gives it), best IoU, IoU at the chosen threshold,
        whether it was localised, and its IoU at every threshold.
    """
    masks_b, maps_f, anomalous, limit = _prepare(masks, maps, iou_limit)
    return _report_from_table(_pl_table(masks_b, maps_f, anomalous), limit)
