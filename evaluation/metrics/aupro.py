"""Area under the per-region overlap curve up to a false-positive-rate limit (MVTec AD AUPRO)."""

from __future__ import annotations

import numpy as np

from ._regions import label_regions
from ._validate import check_fraction, check_maps, check_masks, check_same_shape

__all__ = ["aupro"]

_CHUNK = 1 << 18  # normal pixels integrated per block, to bound memory


def _region_pixels(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Values of the anomalous pixels and their PRO weights (1 / size of their region).

    Returns the values, the weights (same order) and the number of regions over all images.
    """
    values: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    n_regions = 0
    for index in np.flatnonzero(masks.reshape(masks.shape[0], -1).any(axis=1)):
        v, w, n = _image_region_pixels(masks[index], maps[index])
        values.append(v)
        weights.append(w)
        n_regions += n
    if not values:
        return np.empty(0, maps.dtype), np.empty(0), 0
    return np.concatenate(values), np.concatenate(weights), n_regions


def _image_region_pixels(mask: np.ndarray, amap: np.ndarray, labels: np.ndarray | None = None,
                         count: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """One image's anomalous pixel values, their weights and its region count."""
    if labels is None or count is None:
        labels, count = label_regions(mask)
    inside = labels[mask]
    sizes = np.bincount(inside, minlength=count + 1).astype(np.float64)
    sizes[0] = 1.0
    return amap[mask], (1.0 / sizes)[inside], count


def _aupro_from_sorted(negatives: np.ndarray, pos_values: np.ndarray, pos_weights: np.ndarray,
                       n_regions: int, fpr_limit: float) -> float:
    """Normalised area under PRO(FPR) on [0, fpr_limit], from pre-sorted pixel values.

    Parameters
    ----------
    negatives : numpy.ndarray
        Values of all normal pixels, sorted ascending.
    pos_values, pos_weights : numpy.ndarray
        Values of all anomalous pixels sorted ascending, and each pixel's weight
        ``1 / size of its region`` in the same order.
    n_regions : int
        Number of anomalous regions over all images.
    fpr_limit : float
        Upper end of the integration, in (0, 1].

    Notes
    -----
    The curve has one point per distinct map value (a pixel is positive when its value is at
    or above the threshold). Only normal pixels move the FPR, so the area is a sum over the
    distinct normal values ``v`` (from the top) of trapezoids from ``(FPR(> v), PRO(> v))`` to
    ``(FPR(>= v), PRO(>= v))``; segments where only PRO moves are vertical and add nothing.
    The segment crossing ``fpr_limit`` is interpolated linearly, as anomalib does.
    """
    n_neg = negatives.size
    cumulative = np.concatenate(([0.0], np.cumsum(pos_weights)))
    total = cumulative[-1]
    area = 0.0
    upper = n_neg  # negatives[upper:] (the highest values) are already integrated
    while upper > 0 and (n_neg - upper) / n_neg < fpr_limit:
        lower = int(np.searchsorted(negatives, negatives[max(0, upper - _CHUNK)], side="left"))
        block = negatives[lower:upper]  # whole tie groups, ascending
        starts = np.flatnonzero(np.concatenate(([True], block[1:] != block[:-1])))
        ends = np.append(starts[1:], block.size)
        values = block[starts]
        fpr_after = (n_neg - lower - starts) / n_neg  # FPR once the group's value is reached
        fpr_before = (n_neg - lower - ends) / n_neg
        keep = fpr_before < fpr_limit
        values, fpr_before, fpr_after = values[keep], fpr_before[keep], fpr_after[keep]
        pro_above = (total - cumulative[np.searchsorted(pos_values, values, side="right")]) / n_regions
        pro_end = (total - cumulative[np.searchsorted(pos_values, values, side="left")]) / n_regions
        cut = fpr_after > fpr_limit  # at most one segment crosses the limit: interpolate on it
        if cut.any():
            f1, f2, p1 = fpr_before[cut], fpr_after[cut], pro_above[cut]
            pro_end[cut] = p1 + (pro_end[cut] - p1) * (fpr_limit - f1) / (f2 - f1)
            fpr_after[cut] = fpr_limit
        area += float(np.sum((fpr_after - fpr_before) * (pro_above + pro_end))) / 2.0
        upper = lower
    # PRO is a sum of per-pixel weights 1/|region|; rounding can leave it a few ulp above 1.
    # Clamp to the metric's range so a perfect map scores exactly 1.0, never 1 + 1e-14.
    return min(1.0, max(0.0, area / fpr_limit))


def _check_aupro_inputs(masks_b: np.ndarray) -> None:
    if not masks_b.any():
        raise ValueError("AUPRO is undefined: the masks have no anomalous region")
    if masks_b.all():
        raise ValueError("AUPRO is undefined: the masks have no normal pixel, so there is no false-positive rate")


def aupro(masks: object, maps: object, *, fpr_limit: float = 0.3) -> float:
    """Area under the per-region overlap (PRO) curve up to ``fpr_limit``, normalised to [0, 1].

    The MVTec AD definition: every test image takes part (pixels of normal images are
    false positives too); regions are the 8-connected components of each mask; PRO at a
    threshold is the mean over all regions of the fraction of the region's pixels at or above
    the threshold; the curve has a point at every distinct map value (ties collapsed); PRO is
    integrated over FPR from 0 to ``fpr_limit`` by the trapezoid rule, with linear
    interpolation at the limit, and divided by ``fpr_limit``.

    Parameters
    ----------
    masks : array_like of shape (N, H, W)
        Binary ground truth.
    maps : array_like of shape (N, H, W)
        Anomaly maps; higher means more anomalous.
    fpr_limit : float, default 0.3
        Upper limit of the false-positive rate, in (0, 1].

    Returns
    -------
    float
        The normalised AUPRO in [0, 1].

    Raises
    ------
    ValueError
        On bad shapes or values, when there is no anomalous region or no normal pixel, or
        when ``fpr_limit`` is outside (0, 1].

    References
    ----------
    Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021.
    """
    limit = check_fraction(fpr_limit, "fpr_limit", allow_zero=False)
    masks_b = check_masks(masks)
    maps_f = check_maps(maps)
    check_same_shape(masks_b, maps_f, ("masks", "maps"))
    _check_aupro_inputs(masks_b)
    pos_values, pos_weights, n_regions = _region_pixels(masks_b, maps_f)
    order = np.argsort(pos_values, kind="stable")
    negatives = maps_f[~masks_b]
    negatives.sort()
    return _aupro_from_sorted(negatives, pos_values[order], pos_weights[order], n_regions, limit)
