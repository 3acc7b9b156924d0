"""Proportion Localised (PL): the share of defects that a model localises.

A re-implementation of the authors' ``proportion-localised`` 0.1.3 package (called with
``anomaly_likelihood_definitely_increasing=True``), reproducing its every step, but vectorised:
each pixel is binned once against the 25 thresholds, and each box's IoU at all thresholds
comes from two cumulative histograms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist
from shapely.geometry import Polygon

from ._regions import label_regions
from ._validate import check_fraction, check_maps, check_masks, check_same_shape

__all__ = ["AnomalyLocalisation", "LocalisationReport", "localisation_report", "proportion_localised"]

N_THRESHOLDS = 25
MIN_SCALE_INVERSE = 8
OVERLAP_LIMIT = 1 / 3

Rect = tuple[tuple[float, float], tuple[float, float], float]


# --- thresholds -------------------------------------------------------------------------------

def _thresholds(anomalous_maps: np.ndarray) -> np.ndarray:
    """The package's thresholds: 25 percentiles (``linspace(0, 100, 27)[1:-1]``) of all pooled values.

    ``anomalous_maps`` is consumed (sorted in place); sorting first makes numpy's partition cheap.
    """
    pooled = anomalous_maps.reshape(-1)
    pooled.sort()
    return np.percentile(pooled, np.linspace(0, 100, N_THRESHOLDS + 2)[1:-1], overwrite_input=True)


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

    Distances are ``sqrt((row - cy)**2 + (col - cx)**2)``, bit-for-bit what the package's
    ``cdist`` computes.
    """
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    nearest = np.zeros(shape, dtype=np.intp)
    best = None
    for k, rect in enumerate(rects):
        (cx, cy), _, _ = rect
        distance = np.sqrt((rows - cy) ** 2 + (cols - cx) ** 2)
        if best is None:
            best = distance
        else:
            closer = distance < best
            nearest[closer] = k
            np.minimum(best, distance, out=best)
    return nearest


def _count_above(values: np.ndarray, comparable: np.ndarray) -> np.ndarray:
    """Number of ``values`` strictly above each threshold (``values`` are sorted in place)."""
    values.sort()
    return values.size - np.searchsorted(values, comparable, side="right")


def _image_ious(amap: np.ndarray, rects: list[Rect], comparable: np.ndarray) -> np.ndarray:
    """IoU of each box with the thresholded, Voronoi-filtered map at every threshold: (boxes, thresholds).

    For box k the prediction is ``(map > t) AND (pixels nearest centre k OR inside box k)``; the
    IoU is taken against the filled rotated box: ``|box & map > t| / (|box| + |outside & map > t|)``
    with ``outside`` the pixels nearest centre k but not in the box.
    """
    shape = amap.shape
    nearest = _nearest_centre(shape, rects) if len(rects) > 1 else None
    above_all = _count_above(amap.ravel().copy(), comparable) if nearest is None else None
    ious = np.empty((len(rects), comparable.size))
    canvas = np.empty(shape, dtype=np.uint8)
    for k, rect in enumerate(rects):
        canvas.fill(0)
        cv2.drawContours(canvas, [np.intp(cv2.boxPoints(rect))], 0, 1, -1)
        box = canvas.view(bool)
        inside = amap[box]
        area = inside.size
        above_in = _count_above(inside, comparable)
        if nearest is None:
            above_out = above_all - above_in
        else:
            above_out = _count_above(amap[(nearest == k) & ~box], comparable)
        union = area + above_out
        ious[k] = np.divide(above_in, union, out=np.zeros(comparable.size), where=union > 0)
    return ious


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


@dataclass(frozen=True)
class LocalisationReport:
    """Per-anomaly outcome of PL at the threshold that gave the best PL.

    ``threshold`` / ``threshold_index`` pick one of ``thresholds``; each anomaly's ``iou`` is its
    IoU there and ``localised`` is ``iou > iou_limit``; ``best_iou`` is its best over all thresholds.
    """

    pl: float
    iou_limit: float
    threshold: float
    threshold_index: int
    thresholds: tuple[float, ...]
    anomalies: tuple[AnomalyLocalisation, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (plain floats, ints, bools, lists)."""
        data = asdict(self)
        data["thresholds"] = list(self.thresholds)
        data["anomalies"] = [asdict(anomaly) for anomaly in self.anomalies]
        return data


@dataclass
class _PLTable:
    thresholds: np.ndarray
    ious: np.ndarray  # (thresholds, anomalies)
    boxes: list[tuple[int, Rect]]


def _anomalous_indices(masks: np.ndarray) -> np.ndarray:
    return np.flatnonzero(masks.reshape(masks.shape[0], -1).any(axis=1))


def _pl_table(masks: np.ndarray, maps: np.ndarray, anomalous: np.ndarray,
              labelled: dict[int, tuple[np.ndarray, int]] | None = None) -> _PLTable:
    thresholds = _thresholds(maps[anomalous])
    comparable = _comparable_thresholds(thresholds, maps.dtype)
    rows: list[np.ndarray] = []
    boxes: list[tuple[int, Rect]] = []
    for index in anomalous.tolist():
        labels, count = labelled[index] if labelled and index in labelled else label_regions(masks[index])
        rects = _image_boxes(masks[index], labels, count)
        rows.append(_image_ious(maps[index], rects, comparable))
        boxes.extend((index, rect) for rect in rects)
    return _PLTable(thresholds, np.concatenate(rows).T, boxes)


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
        in degrees as ``cv2.minAreaRect`` gives it), best IoU, IoU at the chosen threshold and
        whether it was localised.
    """
    masks_b, maps_f, anomalous, limit = _prepare(masks, maps, iou_limit)
    return _report_from_table(_pl_table(masks_b, maps_f, anomalous), limit)
